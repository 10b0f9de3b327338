//! Compressed upstream bodies: levee reads them through a decoded copy,
//! and the client gets the bytes the upstream sent.

use super::{MESSAGE, STREAM_MESSAGE, access_line, client, levee_for};
use levee_tests::mock::{MockUpstream, Reply, Script, SseScript, Step};
use std::io::Write;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `reply` with its body gzipped, as a compressing CDN sends it.
fn gzipped(reply: Reply) -> Reply {
    let body = gzip(&reply.body);
    Reply {
        body: body.into(),
        ..reply
    }
    .header("content-encoding", "gzip")
}

/// POSTs `body` as the official Python SDK does, accepting gzip.
async fn post_gzip(levee: &levee_tests::levee::Levee, body: &str) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", levee.url()))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("accept-encoding", "gzip, deflate")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("levee answers")
}

/// A gzipped spend-cap 429 is read as one: final after one attempt, with
/// the upstream's compressed bytes passed on as they came.
#[tokio::test(flavor = "multi_thread")]
async fn a_gzipped_spend_cap_is_final_after_one_attempt() {
    let cap = gzipped(Reply::spend_cap());
    let sent = cap.body.clone();
    let upstream = MockUpstream::start(Script::always(Step::Reply(cap))).await;
    let levee = levee_for(&upstream, "");
    let resp = post_gzip(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(super::header(&resp, "x-levee-attempts"), Some("1"));
    assert_eq!(super::header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(super::header(&resp, "content-encoding"), Some("gzip"));
    assert_eq!(resp.bytes().await.unwrap(), sent, "the upstream's bytes");
    assert_eq!(upstream.requests().len(), 1);
}

/// A gzipped answer's usage is reconciled; the upstream was offered only
/// what levee reads, and a stream was asked for `identity`.
#[tokio::test(flavor = "multi_thread")]
async fn a_gzipped_answers_usage_is_reconciled_and_streams_ask_for_identity() {
    let answer = gzipped(Reply::message_with("Hello", 21, 34));
    let upstream = MockUpstream::start(Script::of([
        Step::Reply(answer),
        Step::Sse(SseScript::message("plain stream")),
    ]))
    .await;
    let levee = levee_for(&upstream, "");
    let resp = post_gzip(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    access_line(
        &levee,
        &["status=200", "input_tokens=21", "output_tokens=34"],
    )
    .await;
    let resp = post_gzip(&levee, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let seen = upstream.requests();
    assert_eq!(seen[0].header("accept-encoding"), Some("gzip, deflate"));
    assert_eq!(seen[1].header("accept-encoding"), Some("identity"));
}
