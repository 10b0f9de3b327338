//! The edge on a real Spin 4.1 (`spin up` on the project's `spin.toml` as
//! it is): settings come from Spin variables, limiter and circuit state
//! live in Spin's key-value store (SQLite in the state directory), shared
//! by the fresh instance that serves each request and by both wirings, and
//! a destination Spin refuses is answered at once, naming the fix.

use super::scenarios::{MESSAGE, header};
use super::serve;
use levee_tests::edge::{EdgeServer, Runtime, components};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The edge's limiter window (`guest/edge/src/state.rs`).
const WINDOW_MS: u64 = 60_000;

/// The policy never queues: a closed upstream is answered at once.
const NO_QUEUE: &str = r#"{"max_wait_ms": 0}"#;

const WIRINGS: [Runtime; 2] = [Runtime::Spin, Runtime::SpinDeps];

/// `spin.toml` on Spin, its mock upstreams granted, with these variables.
fn spin(wiring: Runtime, upstreams: &[(&str, String)], variables: &[(&str, &str)]) -> EdgeServer {
    let list: Vec<String> = upstreams
        .iter()
        .enumerate()
        .map(|(group, (name, url))| format!("{name}={url};group={group}"))
        .collect();
    let mut settings: Vec<(&str, String)> = vec![("upstreams", list.join(","))];
    settings.extend(variables.iter().map(|(k, v)| (*k, v.to_string())));
    serve(wiring, components::EDGE_STANDARD, upstreams, &settings)
}

async fn post_to(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await
        .expect("Spin answers")
}

async fn post(edge: &EdgeServer) -> reqwest::Response {
    post_to(&edge.url).await
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

/// Runs `sql` on Spin's key-value database (`?1`.. bound to `args`);
/// returns the rows as text, one per line, columns tab-separated.
fn kv_sql(edge: &EdgeServer, sql: &str, args: &[&str]) -> String {
    let db = edge.state_dir().join("sqlite_key_value.db");
    let script = "import sqlite3, sys\n\
        db = sqlite3.connect(sys.argv[1], timeout=10)\n\
        rows = db.execute(sys.argv[2], sys.argv[3:]).fetchall()\n\
        db.commit()\n\
        print('\\n'.join('\\t'.join(str(c, 'utf-8') if isinstance(c, bytes) else str(c) for c in r) for r in rows))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&db)
        .arg(sql)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// The `default` store's value at `key`, as text.
fn kv_text(edge: &EdgeServer, key: &str) -> Option<String> {
    let v = kv_sql(
        edge,
        "SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1",
        &[key],
    );
    (!v.is_empty()).then_some(v)
}

/// The `default` store's keys, sorted.
fn kv_keys(edge: &EdgeServer) -> Vec<String> {
    kv_sql(
        edge,
        "SELECT key FROM spin_key_value WHERE store = 'default' ORDER BY key",
        &[],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

async fn error_message(resp: reqwest::Response) -> String {
    let body: serde_json::Value = resp.json().await.unwrap();
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_come_from_spin_variables_and_a_bad_one_is_named() {
    for wiring in WIRINGS {
        let edge = spin(wiring, &[("primary", "ftp://example.com".into())], &[]);
        let resp = post(&edge).await;
        assert_eq!(resp.status(), 500, "{wiring:?}");
        assert_eq!(header(&resp, "x-should-retry"), Some("false"));
        assert_eq!(
            error_message(resp).await,
            "levee edge is misconfigured: `upstreams`: entry 1 (primary): \"ftp://example.com\" must start with http:// or https://"
        );
        edge.wait_log(
            "levee edge: configuration error: `upstreams`: entry 1 (primary)",
            Duration::from_secs(10),
        );

        let upstream = MockUpstream::start(Script::new()).await;
        let edge = spin(
            wiring,
            &[("primary", upstream.url())],
            &[("limits", "tokens=5")],
        );
        let resp = post(&edge).await;
        assert_eq!(resp.status(), 500);
        assert_eq!(
            error_message(resp).await,
            "levee edge is misconfigured: `limits`: unknown limit \"tokens\"; known: requests, input_tokens (per minute), ramp (percent)"
        );
        assert!(upstream.requests().is_empty(), "nothing was sent");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_limit_from_variables_holds_across_instances_through_key_value() {
    let upstream = MockUpstream::start(Script::new()).await;
    let edge = spin(
        Runtime::Spin,
        &[("primary", upstream.url())],
        // No ramp: the whole limit from the first window.
        &[
            ("limits", "requests=2,ramp=100"),
            ("policy_config", NO_QUEUE),
        ],
    );
    let window = fresh_window(Duration::from_secs(20)).await;
    for n in 1..=2 {
        let resp = post(&edge).await;
        assert_eq!(resp.status(), 200, "request {n}");
    }
    // The request's model class keys its window: Sonnet's.
    let requests = format!("levee:v1:primary:sonnet:w{window}:requests");
    assert_eq!(kv_text(&edge, &requests).as_deref(), Some("2"));

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
    assert_eq!(
        kv_keys(&edge),
        [
            format!("levee:v1:primary:sonnet:w{window}:input_tokens"),
            requests.clone()
        ],
        "only this window's counters are kept"
    );

    // Another instance (or edge node) that reset the count lets it through.
    kv_sql(
        &edge,
        "UPDATE spin_key_value SET value = CAST('0' AS BLOB) WHERE store = 'default' AND key = ?1",
        &[&requests],
    );
    assert_eq!(post(&edge).await.status(), 200);
    assert_eq!(kv_text(&edge, &requests).as_deref(), Some("1"));
}

/// After an unused window the edge grants the ramp's share of a limit (half
/// by default), not a burst of the whole: 2 of a limit of 4 pass, and the
/// third is refused until the window ends.
#[tokio::test(flavor = "multi_thread")]
async fn after_an_unused_window_the_limit_ramps_from_half() {
    let upstream = MockUpstream::start(Script::new()).await;
    let edge = spin(
        Runtime::Spin,
        &[("primary", upstream.url())],
        &[("limits", "requests=4"), ("policy_config", NO_QUEUE)],
    );
    fresh_window(Duration::from_secs(20)).await;
    for n in 1..=2 {
        assert_eq!(post(&edge).await.status(), 200, "request {n}");
    }
    let resp = post(&edge).await;
    assert_eq!(resp.status(), 429, "half of 4 after idle");
    assert_eq!(header(&resp, "x-levee-attempts"), Some("0"));
    assert_eq!(upstream.requests().len(), 2);
}

/// Classes from the `classes` variable key the windows: a Sonnet request
/// counts in the configured class `big`, and nothing in `sonnet`.
#[tokio::test(flavor = "multi_thread")]
async fn configured_classes_key_the_windows() {
    let upstream = MockUpstream::start(Script::new()).await;
    let edge = spin(
        Runtime::Spin,
        &[("primary", upstream.url())],
        &[("limits", "requests=5"), ("classes", "big=sonnet|opus")],
    );
    let window = fresh_window(Duration::from_secs(20)).await;
    assert_eq!(post(&edge).await.status(), 200);
    let big = format!("levee:v1:primary:big:w{window}:requests");
    assert_eq!(kv_text(&edge, &big).as_deref(), Some("1"));
    let sonnet = format!("levee:v1:primary:sonnet:w{window}:requests");
    assert_eq!(kv_text(&edge, &sonnet), None);
}

/// `reply` from `primary`, through `first`, marks it in key-value at `key`
/// (`now + retry-after`); the next request, in a fresh instance of the
/// `then` wiring, reads the mark and goes straight to `backup`.
async fn a_mark_in_key_value_steers_the_next_instance(
    reply: Reply,
    key: &str,
    first: Runtime,
    then: Runtime,
) {
    let primary = MockUpstream::start(Script::of([reply])).await;
    let backup = MockUpstream::start(Script::new()).await;
    let edge = spin(
        first,
        &[("primary", primary.url()), ("backup", backup.url())],
        &[],
    );

    let before = now_ms();
    let resp = post(&edge).await;
    let after = now_ms();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"), "failed over");
    let until: u64 = kv_text(&edge, &format!("levee:v1:primary:{key}"))
        .expect("the mark is in key-value")
        .parse()
        .unwrap();
    assert!(
        (before + 30_000..=after + 30_000).contains(&until),
        "{key} = {until}, want now + 30 s ({before}..{after})"
    );

    let base = edge.url.trim_end_matches("/deps");
    let url = match then {
        Runtime::SpinDeps => format!("{base}/deps"),
        _ => base.to_owned(),
    };
    let resp = post_to(&url).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-levee-attempts"),
        Some("1"),
        "straight to backup"
    );
    assert_eq!(primary.requests().len(), 1, "primary is left alone");
    assert_eq!(backup.requests().len(), 2);
    assert!(!edge.log().contains("not available"), "{}", edge.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_marks_the_upstream_rate_limited_for_the_next_instance() {
    a_mark_in_key_value_steers_the_next_instance(
        Reply::rate_limited(RetryAfter::Secs(30)),
        "sonnet:rate_limited_until",
        Runtime::Spin,
        Runtime::Spin,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_529_marks_the_upstream_overloaded_for_the_next_instance() {
    a_mark_in_key_value_steers_the_next_instance(
        Reply::overloaded().header("retry-after", "30"),
        "overloaded_until",
        Runtime::SpinDeps,
        Runtime::SpinDeps,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_learned_through_one_wiring_steers_the_other() {
    a_mark_in_key_value_steers_the_next_instance(
        Reply::rate_limited(RetryAfter::Secs(30)),
        "sonnet:rate_limited_until",
        Runtime::Spin,
        Runtime::SpinDeps,
    )
    .await;
    a_mark_in_key_value_steers_the_next_instance(
        Reply::rate_limited(RetryAfter::Secs(30)),
        "sonnet:rate_limited_until",
        Runtime::SpinDeps,
        Runtime::Spin,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_granted_store_state_is_per_instance_and_the_edge_says_so() {
    let upstream = MockUpstream::start(Script::new()).await;
    // spin.toml grants the `default` store only.
    let edge = spin(
        Runtime::Spin,
        &[("primary", upstream.url())],
        &[
            ("limits", "requests=1"),
            ("policy_config", NO_QUEUE),
            ("kv_store", "elsewhere"),
        ],
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
    let log = edge.wait_log("status=200 attempts=1", Duration::from_secs(10));
    let said = log
        .lines()
        .filter(|l| {
            l.starts_with("levee edge: key-value store `elsewhere` is not available (")
                && l.ends_with("); limiter and circuit state are per instance, not shared")
        })
        .count();
    assert_eq!(said, 3, "each instance says so at its start:\n{log}");
}

/// Spin refuses a destination that `allowed_outbound_hosts` does not
/// grant. The edge answers at once (one attempt, no retry, no failover to
/// the backup), with a 500 that names the host and the variable to set;
/// nothing is marked against the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn a_destination_spin_denies_fails_at_once_naming_the_fix() {
    for wiring in WIRINGS {
        let primary = MockUpstream::start(Script::new()).await;
        let backup = MockUpstream::start(Script::new()).await;
        // A long backoff: a retry would show in the attempts and the time.
        let policy = r#"{"max_attempts": 4, "backoff": {"base_ms": 3000, "cap_ms": 3000}}"#;
        let edge = spin(
            wiring,
            &[("primary", primary.url()), ("backup", backup.url())],
            &[("policy_config", policy), ("allowed_host_b", &backup.url())],
        );
        let resp = post(&edge).await;
        assert_eq!(resp.status(), 500, "{wiring:?}");
        assert_eq!(header(&resp, "x-should-retry"), Some("false"));
        assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
        let message = error_message(resp).await;
        let origin = primary.url();
        assert_eq!(
            message,
            format!(
                "levee edge is misconfigured: the runtime denied the request to {origin} (upstream `primary`): \
                 allow it in spin.toml's allowed_outbound_hosts, with one of levee's `allowed_host_*` \
                 variables (e.g. SPIN_VARIABLE_ALLOWED_HOST_B={origin})"
            )
        );
        let log = edge.wait_log("status=500 attempts=1", Duration::from_secs(10));
        assert_eq!(
            log.matches("levee edge: configuration error: the runtime denied")
                .count(),
            1,
            "{log}"
        );
        assert!(primary.requests().is_empty() && backup.requests().is_empty());
        let marks: Vec<String> = kv_keys(&edge)
            .into_iter()
            .filter(|k| k.ends_with("_until"))
            .collect();
        assert!(
            marks.is_empty(),
            "nothing held against the upstream: {marks:?}"
        );
    }
}
