//! Rate limits end to end: levee paces requests to its configured limits
//! and to what the upstream's headers say, queues what does not fit, and
//! answers 429 itself, with an honest `retry-after`, only when a request
//! cannot be admitted in time.

use super::{FAST_POLICY, MESSAGE, client, header, metric, post};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Reply, Script, Step};
use std::time::{Duration, Instant};

/// Levee in front of `upstream` with `[upstreams.limits]` and `[limits]`.
fn levee_with_limits(upstream: &MockUpstream, limits: &str, admission: &str) -> Levee {
    Levee::start(&format!(
        "{FAST_POLICY}\n[limits]\n{admission}\n\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n[upstreams.limits]\n{limits}\n",
        upstream.url()
    ))
}

/// POSTs `MESSAGE` with the client's own timeout (`x-stainless-timeout`).
async fn post_within(levee: &Levee, secs: f64) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", levee.url()))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("x-stainless-timeout", secs.to_string())
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await
        .expect("levee answers")
}

fn retry_after_ms(resp: &reqwest::Response) -> u64 {
    header(resp, "retry-after-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after-ms in {:?}", resp.headers()))
}

/// Polls until `series` reads `want`, for at most 10 s.
async fn until_metric(levee: &Levee, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = metric(levee, series).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_rate_admits_the_burst_then_paces() {
    let upstream = MockUpstream::start(Script::new()).await;
    // 12 a minute: a burst of 12, then one every 5 s.
    let levee = levee_with_limits(&upstream, "requests_per_minute = 12", "");
    let started = Instant::now();
    let burst = futures_util::future::join_all((0..12).map(|_| post(&levee, MESSAGE))).await;
    assert!(burst.iter().all(|r| r.status() == 200));
    // The 13th cannot fit within its half second: levee answers alone.
    let refused = post_within(&levee, 0.5).await;
    let since_burst = started.elapsed().as_millis() as u64;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-should-retry"), Some("true"));
    let wait = retry_after_ms(&refused);
    assert!(
        wait <= 5_000 && wait + since_burst + 200 >= 5_000,
        "retry-after-ms {wait} after {since_burst} ms does not match one request per 5 s"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(upstream.requests().len(), 12, "the refused one never left");
    // The 14th may wait: it queues, then goes through when the bucket has
    // room again.
    let asked = Instant::now();
    let paced = post(&levee, MESSAGE).await;
    assert_eq!(paced.status(), 200);
    assert!(
        asked.elapsed().as_millis() as u64 + 300 >= wait,
        "admitted after {:?}, before the bucket had room ({wait} ms)",
        asked.elapsed()
    );
    assert_eq!(upstream.requests().len(), 13);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstreams_headers_pace_levee_before_any_429() {
    // No configured limit: the upstream says 12 a minute, none left.
    let upstream = MockUpstream::start(Script::always(Step::Reply(
        Reply::message()
            .header("anthropic-ratelimit-requests-limit", "12")
            .header("anthropic-ratelimit-requests-remaining", "0"),
    )))
    .await;
    let levee = super::levee_for(&upstream, "");
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    let refused = post_within(&levee, 0.5).await;
    assert_eq!(
        refused.status(),
        429,
        "levee paces, the upstream is not asked"
    );
    let wait = retry_after_ms(&refused);
    assert!(
        (3_000..=5_000).contains(&wait),
        "12 a minute refill one in 5 s, got {wait} ms"
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_sheds_and_a_client_that_leaves_frees_its_place() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_with_limits(&upstream, "requests_per_minute = 1", "queue_size = 1");
    const DEPTH: &str = "levee_admission_queue_depth";
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    // The second waits a minute for the bucket, in the one place.
    let url = levee.url();
    let waiting = tokio::spawn(async move {
        client()
            .post(format!("{url}/v1/messages"))
            .header("content-type", "application/json")
            .body(MESSAGE)
            .send()
            .await
    });
    until_metric(&levee, DEPTH, 1.0).await;
    // The third finds the queue full and is refused at once.
    let asked = Instant::now();
    let shed = post(&levee, MESSAGE).await;
    assert_eq!(shed.status(), 429);
    assert!(asked.elapsed() < Duration::from_secs(5), "shed at once");
    let wait = retry_after_ms(&shed);
    assert!(wait > 30_000 && wait <= 60_000, "retry-after-ms {wait}");
    assert_eq!(header(&shed, "x-should-retry"), Some("true"));
    assert_eq!(
        metric(
            &levee,
            "levee_local_rejections_total{reason=\"queue_full\"}"
        )
        .await,
        1.0
    );
    // The waiting client goes away: its place is free again.
    waiting.abort();
    until_metric(&levee, DEPTH, 0.0).await;
    let url = levee.url();
    let next = tokio::spawn(async move {
        client()
            .post(format!("{url}/v1/messages"))
            .header("content-type", "application/json")
            .body(MESSAGE)
            .send()
            .await
    });
    until_metric(&levee, DEPTH, 1.0).await;
    next.abort();
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_usage_is_counted() {
    let upstream = MockUpstream::start(Script::always(Step::Sse(
        levee_tests::mock::SseScript::message_with(&["Hel", "lo"], 21, 34),
    )))
    .await;
    let levee = levee_with_limits(&upstream, "output_tokens_per_minute = 100000", "");
    let resp = post(&levee, super::STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let series =
        |dir: &str| format!("levee_tokens_total{{upstream=\"primary\",direction=\"{dir}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&levee, &series("output")).await != 34.0 {
        assert!(Instant::now() < deadline, "output tokens never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&levee, &series("input")).await, 21.0);
}
