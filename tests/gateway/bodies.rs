//! Request bodies per endpoint: each endpoint's limit, and the spool that
//! keeps a large batch out of memory. The edge holds every body in its
//! component's memory, under one limit, so these are the bundled host's.

use crate::{FAST_POLICY, client, levee_for};
use levee_tests::bodies::{
    BATCH_CREATED, RssSampler, batch_body, batches_overloaded_once, proc_kb,
};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Reply, Script};

/// The size of the batch body: well past the 32 MB standard limit.
const BATCH_BYTES: usize = 100 << 20;

/// How much the gateway's peak memory may grow while it takes the batch:
/// a small fraction of the body, which it must not hold.
const MOST_GROWTH_KB: u64 = 32 << 10;

/// POSTs `body` to `path` on `levee`.
async fn post_to(levee: &Levee, path: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{}{path}", levee.url()))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("levee answers")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_endpoint_takes_a_body_up_to_its_own_limit() {
    let upstream = MockUpstream::start(Script::always(Reply::message())).await;
    let rails = "[rails]\nmax_body_bytes = 200000\n[rails.body_limits]\ncount_tokens = 100000\nbatches = 3000000\n";
    let levee = levee_for(&upstream, &format!("{FAST_POLICY}\n{rails}"));
    let batch = batch_body(2_500_000);
    let cases = [
        ("/v1/messages", batch_body(150_000), 200),
        ("/v1/messages", batch_body(250_000), 413),
        ("/v1/messages/count_tokens", batch_body(150_000), 413),
        ("/v1/messages/batches", batch.clone(), 200),
        ("/v1/messages/batches", batch_body(3_100_000), 413),
    ];
    for (path, body, want) in cases {
        let len = body.len();
        let resp = post_to(&levee, path, body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, want, "{len} bytes to {path}: {text}");
        if want == 413 {
            let error: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(error["error"]["type"], "request_too_large", "{text}");
        }
    }
    let sent: Vec<_> = upstream.requests().iter().map(|r| r.body.len()).collect();
    assert_eq!(
        sent,
        [batch_body(150_000).len(), batch.len()],
        "only the bodies within their limits went on"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spooled_batch_leaves_no_file_and_a_spool_it_cannot_write_is_a_500() {
    let upstream = MockUpstream::start(Script::always(Reply::json(200, "{}"))).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let rails = format!("[rails]\nspool_dir = \"{}\"\n", spool.display());
    let levee = levee_for(&upstream, &format!("{FAST_POLICY}\n{rails}"));
    let resp = post_to(&levee, "/v1/messages/batches", batch_body(4 << 20)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.requests()[0].body.len(), batch_body(4 << 20).len());
    let left: Vec<_> = std::fs::read_dir(&spool).unwrap().collect();
    assert!(left.is_empty(), "the spool kept files: {left:?}");

    // The same spool, gone: the spooled path is the one that ran.
    std::fs::remove_dir(&spool).unwrap();
    let resp = post_to(&levee, "/v1/messages/batches", batch_body(4 << 20)).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["x-should-retry"], "true");
    let error: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["type"], "api_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("could not spool the request body"),
        "{message}"
    );
    assert!(
        !message.contains(&spool.display().to_string()),
        "no path in an answer: {message}"
    );
    // A body small enough to hold is never spooled.
    let resp = post_to(&levee, "/v1/messages/batches", batch_body(64 << 10)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        upstream.requests().len(),
        2,
        "the unspooled batch went no further"
    );
}

/// A 100 MB batch, answered 529 once and then accepted: both attempts
/// carry the whole body, byte for byte, and the gateway's peak memory
/// grows by a fraction of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_batch_is_retried_whole_without_being_held_in_memory() {
    let upstream = batches_overloaded_once().await;
    let levee = levee_for(&upstream, "");
    let pid = levee.pid();
    // A small batch first: the path runs once before memory is measured.
    let warm = post_to(&levee, "/v1/messages/batches", batch_body(64 << 10)).await;
    assert_eq!(warm.status(), 200, "{:?}", warm.text().await);
    let before = proc_kb(pid, "VmRSS:");
    let sampler = RssSampler::start(pid);
    let resp = post_to(&levee, "/v1/messages/batches", batch_body(BATCH_BYTES)).await;
    let status = resp.status();
    let attempts = resp.headers().get("x-levee-attempts").cloned();
    let text = resp.text().await.expect("an answer");
    let (peak, samples) = sampler.stop();
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, BATCH_CREATED);
    assert_eq!(
        attempts.as_ref().map(|v| v.as_bytes()),
        Some(&b"2"[..]),
        "529, then accepted"
    );
    let body = batch_body(BATCH_BYTES);
    let requests = upstream.requests();
    assert_eq!(requests.len(), 3, "the warm-up and two attempts");
    for attempt in &requests[1..] {
        assert_eq!(attempt.path, "/v1/messages/batches");
        assert!(
            attempt.body.len() == body.len() && attempt.body == body[..],
            "an attempt carried {} bytes of {}, or other bytes",
            attempt.body.len(),
            body.len()
        );
    }
    assert!(samples > 10, "the sampler ran {samples} times");
    let growth = peak.saturating_sub(before);
    println!(
        "a {} MB batch: resident {before} kB before, at most {peak} kB while it passed: growth {growth} kB",
        BATCH_BYTES >> 20
    );
    assert!(
        growth < MOST_GROWTH_KB,
        "the gateway's peak memory grew by {growth} kB taking a {} kB body",
        BATCH_BYTES >> 10
    );
}
