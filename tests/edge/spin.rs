//! The edge's Spin build (composed with `standard`) in the Spin test host
//! (`levee-spin-host`, on wasmtime-wasi-http): settings come from Spin
//! variables, and limiter and circuit state live in Spin key-value, shared
//! by the fresh instance that serves each request.

use super::scenarios::{MESSAGE, header};
use levee_spin_host::{App, SpinHost};
use levee_tests::edge::components;
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The edge's limiter window (`guest/edge/src/state.rs`).
const WINDOW_MS: u64 = 60_000;

/// The policy never queues: a closed upstream is answered at once.
const NO_QUEUE: &str = r#"{"max_wait_ms": 0}"#;

fn host(variables: &[(&str, &str)], stores: &[&str]) -> SpinHost {
    SpinHost::start(
        Path::new(components::EDGE_SPIN_STANDARD),
        App::new(variables, stores),
    )
    .expect("the Spin host serves the edge")
}

async fn post(host: &SpinHost) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", host.url))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await
        .expect("the Spin host answers")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits, if need be, for a limiter window with at least `need` left, so
/// that a test's requests all fall in it; returns the window's start.
async fn fresh_window(need: Duration) -> u64 {
    let left = WINDOW_MS - now_ms() % WINDOW_MS;
    if left < need.as_millis() as u64 {
        tokio::time::sleep(Duration::from_millis(left + 10)).await;
    }
    let now = now_ms();
    now - now % WINDOW_MS
}

/// Store `label`'s value at `key`, as text.
fn kv_text(host: &SpinHost, label: &str, key: &str) -> Option<String> {
    let store = host.kv().snapshot(label).expect("the store exists");
    store
        .get(key)
        .map(|v| String::from_utf8(v.clone()).expect("numbers are stored as text"))
}

async fn error_message(resp: reqwest::Response) -> String {
    let body: serde_json::Value = resp.json().await.unwrap();
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_come_from_spin_variables_and_a_bad_one_is_named() {
    let edge = host(&[("upstreams", "primary=ftp://example.com")], &["default"]);
    let resp = post(&edge).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(
        error_message(resp).await,
        "levee edge is misconfigured: `upstreams`: entry 1 (primary): \"ftp://example.com\" must start with http:// or https://"
    );
    assert!(
        edge.stderr()
            .contains("levee edge: configuration error: `upstreams`: entry 1 (primary)"),
        "{}",
        edge.stderr()
    );

    let upstream = MockUpstream::start(Script::new()).await;
    let url = format!("primary={}", upstream.url());
    let edge = host(&[("upstreams", &url), ("limits", "tokens=5")], &["default"]);
    let resp = post(&edge).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(
        error_message(resp).await,
        "levee edge is misconfigured: `limits`: unknown limit \"tokens\"; known: requests, input_tokens (per minute)"
    );
    assert!(upstream.requests().is_empty(), "nothing was sent");

    // Without a variable the setting is unset: the edge names the variable
    // an operator would define, not an environment variable.
    let edge = host(&[], &["default"]);
    let message = error_message(post(&edge).await).await;
    assert!(
        message.starts_with("levee edge is misconfigured: `upstreams`: is not set"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_limit_from_variables_holds_across_instances_through_key_value() {
    let upstream = MockUpstream::start(Script::new()).await;
    let url = format!("primary={}", upstream.url());
    let edge = host(
        &[
            ("upstreams", &url),
            ("limits", "requests=2"),
            ("policy_config", NO_QUEUE),
        ],
        &["default"],
    );
    let window = fresh_window(Duration::from_secs(20)).await;
    for n in 1..=2 {
        let resp = post(&edge).await;
        assert_eq!(resp.status(), 200, "request {n}");
    }
    let requests = format!("levee:v1:primary:w{window}:requests");
    assert_eq!(kv_text(&edge, "default", &requests).as_deref(), Some("2"));

    let resp = post(&edge).await;
    assert_eq!(resp.status(), 429, "the third request is over the limit");
    assert_eq!(header(&resp, "x-should-retry"), Some("true"));
    assert_eq!(header(&resp, "x-levee-attempts"), Some("0"));
    let retry_after: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "until the window resets: {retry_after}"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    assert_eq!(upstream.requests().len(), 2, "the third was never sent");
    assert_eq!(edge.instances(), 3, "one fresh instance per request");
    let keys: Vec<String> = edge.kv().snapshot("default").unwrap().into_keys().collect();
    assert_eq!(
        keys,
        [
            format!("levee:v1:primary:w{window}:input_tokens"),
            requests.clone()
        ],
        "only this window's counters are kept"
    );
    assert_eq!(kv_text(&edge, "default", &requests).as_deref(), Some("2"));

    // Another instance (or edge node) that reset the count lets it through.
    assert!(edge.kv().set("default", &requests, b"0"));
    assert_eq!(post(&edge).await.status(), 200);
    assert_eq!(kv_text(&edge, "default", &requests).as_deref(), Some("1"));
}

/// `reply` from `primary` marks it in key-value at `key`
/// (`now + retry-after`); the next request, in a fresh instance, reads the
/// mark and goes straight to `backup`.
async fn a_mark_in_key_value_is_honoured_by_the_next_instance(reply: Reply, key: &str) {
    let primary = MockUpstream::start(Script::of([reply])).await;
    let backup = MockUpstream::start(Script::new()).await;
    let upstreams = format!(
        "primary={};group=0,backup={};group=1",
        primary.url(),
        backup.url()
    );
    // A store under another label, picked by the `kv_store` variable.
    let edge = host(
        &[("upstreams", &upstreams), ("kv_store", "edge")],
        &["edge"],
    );

    let before = now_ms();
    let resp = post(&edge).await;
    let after = now_ms();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"), "failed over");
    let until: u64 = kv_text(&edge, "edge", &format!("levee:v1:primary:{key}"))
        .expect("the mark is in key-value")
        .parse()
        .unwrap();
    assert!(
        (before + 30_000..=after + 30_000).contains(&until),
        "{key} = {until}, want now + 30 s ({before}..{after})"
    );

    let resp = post(&edge).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-levee-attempts"),
        Some("1"),
        "straight to backup"
    );
    assert_eq!(primary.requests().len(), 1, "primary is left alone");
    assert_eq!(backup.requests().len(), 2);
    assert_eq!(edge.instances(), 2);
    assert!(
        !edge.stderr().contains("not available"),
        "{}",
        edge.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_marks_the_upstream_rate_limited_for_the_next_instance() {
    a_mark_in_key_value_is_honoured_by_the_next_instance(
        Reply::rate_limited(RetryAfter::Secs(30)),
        "rate_limited_until",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_529_marks_the_upstream_overloaded_for_the_next_instance() {
    a_mark_in_key_value_is_honoured_by_the_next_instance(
        Reply::overloaded().header("retry-after", "30"),
        "overloaded_until",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_store_state_is_per_instance_and_the_edge_says_so() {
    let upstream = MockUpstream::start(Script::new()).await;
    let url = format!("primary={}", upstream.url());
    let edge = host(
        &[
            ("upstreams", &url),
            ("limits", "requests=1"),
            ("policy_config", NO_QUEUE),
        ],
        &[],
    );
    fresh_window(Duration::from_secs(20)).await;
    for n in 1..=3 {
        assert_eq!(post(&edge).await.status(), 200, "request {n}");
    }
    assert_eq!(
        upstream.requests().len(),
        3,
        "a limit of 1 is not shared between instances"
    );
    let stderr = edge.stderr();
    let said = stderr
        .lines()
        .filter(|l| {
            l.starts_with("levee edge: key-value store `default` is not available (")
                && l.ends_with("); limiter and circuit state are per instance, not shared")
        })
        .count();
    assert_eq!(said, 3, "each instance says so at its start:\n{stderr}");
}
