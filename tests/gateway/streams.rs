//! What the gateway records of errors inside a `200` stream: an error
//! event after content counts against the upstream and names the stream's
//! end; one before content is an attempt that failed.

use super::{STREAM_MESSAGE, access_line, post, status};
use levee_tests::mock::{MockUpstream, Reply, Script, SseScript, Step};

/// Primary streams content, then the API's `overloaded_error` event; the
/// backup serves. The client gets the primary's stream as it came, the
/// access line says `end=upstream_error`, and the primary is marked
/// overloaded: the next request goes to the backup without trying it.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_event_after_content_marks_the_upstream_and_ends_as_an_upstream_error() {
    let broken =
        SseScript::message("one two three").error_after(4, "overloaded_error", "Overloaded");
    let expected = broken.bytes();
    let primary = MockUpstream::start(Script::always(Step::Sse(broken))).await;
    let backup = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = super::primary_and_backup(&primary, &backup);
    let resp = post(&levee, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap(),
        expected,
        "passed through unchanged"
    );
    access_line(
        &levee,
        &[
            "status=200",
            r#"end="upstream_error""#,
            r#"upstream="primary""#,
        ],
    )
    .await;

    let status = status(&levee).await;
    let ups = status["upstreams"].as_array().expect("upstreams");
    let now = status["now_ms"].as_u64().unwrap();
    let until = ups[0]["overloaded_until_ms"]
        .as_u64()
        .expect("the primary is marked overloaded");
    assert!(until > now, "marked until {until}, now {now}");
    let details = super::status::event_details(&status, "overloaded");
    assert!(
        details
            .iter()
            .any(|d| d.contains("an error event in a stream")),
        "{details:?}"
    );

    let resp = post(&levee, super::MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        primary.requests().len(),
        1,
        "the overloaded primary was skipped"
    );
    assert_eq!(backup.requests().len(), 1);
}

/// An error event before content is counted as the attempt it ended: the
/// metrics count a 529 attempt, and the access line the two attempts.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_event_before_content_counts_as_a_529_attempt() {
    let overloaded = SseScript::message("never").error_after(3, "overloaded_error", "Overloaded");
    let upstream = MockUpstream::start(Script::of([
        Step::Sse(overloaded),
        Step::Sse(SseScript::message("fine")),
    ]))
    .await;
    let levee = super::levee_for(&upstream, "");
    let resp = post(&levee, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    access_line(&levee, &["status=200", "attempts=2", r#"end="complete""#]).await;
    let series = r#"levee_attempts_total{upstream="primary",outcome="529"}"#;
    assert_eq!(super::metric(&levee, series).await, 1.0);
}
