//! Bodies the edge only passes on (a batch, a file upload): streamed to
//! their one attempt, never held in the component's memory, and bounded
//! by their endpoint's limit.

use crate::serve;
use levee_tests::bodies::{RssSampler, batch_body, batches_overloaded_once, proc_kb};
use levee_tests::edge::{EdgeServer, Runtime, components};
use levee_tests::mock::{MockUpstream, Reply, Script};

/// How much the runtime's memory may grow while a 100 MB batch passes.
const MOST_GROWTH_KB: u64 = 32 << 10;

fn edge(upstream: &MockUpstream, extra: &[(&str, String)]) -> EdgeServer {
    let mut settings = vec![("upstreams", format!("primary={}", upstream.url()))];
    settings.extend(extra.iter().cloned());
    serve(
        Runtime::Wasmtime,
        components::EDGE_STANDARD,
        &[("primary", upstream.url())],
        &settings,
    )
}

async fn post_batch(edge: &EdgeServer, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/messages/batches", edge.url))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the edge answers")
}

/// A 100 MB batch, answered 529: the edge passes the body on whole to its
/// one attempt and the 529 back (it has nowhere to keep the body for a
/// retry), and the runtime's memory grows by a fraction of the body.
#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_batch_passes_through_once_without_being_held() {
    let upstream = batches_overloaded_once().await;
    let edge = edge(&upstream, &[]);
    let warm = post_batch(&edge, batch_body(64 << 10)).await;
    assert_eq!(warm.status(), 200, "{:?}", warm.text().await);
    let pid = edge.pid();
    let before = proc_kb(pid, "VmRSS:");
    let sampler = RssSampler::start(pid);
    let resp = post_batch(&edge, batch_body(100 << 20)).await;
    let status = resp.status();
    let attempts = resp.headers().get("x-levee-attempts").cloned();
    let text = resp.text().await.expect("an answer");
    let (peak, samples) = sampler.stop();
    assert!(samples > 10, "the sampler ran {samples} times");
    let growth = peak.saturating_sub(before);
    println!(
        "a 100 MB batch at the edge: resident {before} kB before, at most {peak} kB: growth {growth} kB"
    );
    assert!(growth < MOST_GROWTH_KB, "the runtime grew by {growth} kB");
    assert_eq!(status, 529, "{text}");
    assert_eq!(attempts.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
    let body = batch_body(100 << 20);
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2, "the warm-up and one attempt");
    assert!(
        requests[1].body == body[..],
        "the attempt carried {} bytes of {}, or other bytes",
        requests[1].body.len(),
        body.len()
    );
    assert!(samples > 10, "the sampler ran {samples} times");
    let growth = peak.saturating_sub(before);
    println!(
        "a 100 MB batch at the edge: resident {before} kB before, at most {peak} kB: growth {growth} kB"
    );
    assert!(growth < MOST_GROWTH_KB, "the runtime grew by {growth} kB");
}

/// A batch over its endpoint's limit is refused before any attempt; a
/// message under the same number of bytes is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_over_its_limit_is_refused_before_any_attempt() {
    let upstream = MockUpstream::start(Script::always(Reply::json(200, "{}"))).await;
    let edge = edge(&upstream, &[("body_limits", "batches=1000000".to_owned())]);
    let resp = post_batch(&edge, batch_body(2_000_000)).await;
    assert_eq!(resp.status(), 413);
    let error: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["type"], "request_too_large");
    assert!(upstream.requests().is_empty(), "no attempt");
    let resp = post_batch(&edge, batch_body(900_000)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.requests().len(), 1);
}
