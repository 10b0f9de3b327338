//! The official Anthropic Python SDK through levee: levee does the retrying,
//! and its verdict headers stop the SDK from piling its own on top.

use super::levee_for;
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, SseScript, Step};
use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run `make setup` (make test does)",
        venv.display()
    );
    venv
}

/// Runs `tests/sdk/client.py MODE` against levee; returns its JSON line.
async fn sdk(levee: &Levee, mode: &str) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk/client.py");
    let url = levee.url();
    let mode = mode.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg(mode)
            .env("ANTHROPIC_BASE_URL", url)
            .env("ANTHROPIC_API_KEY", "sk-ant-test-secret-0003")
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the SDK failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_call_and_a_streaming_call_work() {
    let upstream = MockUpstream::start(Script::of([
        Step::Reply(Reply::message_with("Hello from the mock", 12, 5)),
        Step::Sse(SseScript::message("Hello, streaming world")),
    ]))
    .await;
    let levee = levee_for(&upstream, "");
    let plain = sdk(&levee, "plain").await;
    assert_eq!(plain["text"], "Hello from the mock");
    let stream = sdk(&levee, "stream").await;
    assert_eq!(stream["text"], "Hello, streaming world");
    assert_eq!(stream["stop_reason"], "end_turn");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    // The SDK sends its key as `x-api-key` or `Authorization: Bearer`;
    // either way it reaches the upstream untouched.
    let key = seen[0].header("x-api-key").or_else(|| {
        seen[0]
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    });
    assert_eq!(key, Some("sk-ant-test-secret-0003"));
    assert!(
        !levee.log().contains("sk-ant-test-secret"),
        "the key leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_429s_then_ok_succeed_with_levees_attempts_and_none_of_the_sdks() {
    let upstream = MockUpstream::start(
        Script::of((0..3).map(|_| Step::Reply(Reply::rate_limited(RetryAfter::Ms(50)))))
            .then(Step::Reply(Reply::message_with("finally", 10, 1))),
    )
    .await;
    let levee = levee_for(&upstream, "");
    let answer = sdk(&levee, "plain").await;
    assert_eq!(answer["text"], "finally");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 4, "levee made the four attempts");
    for r in &seen {
        assert_eq!(
            r.header("x-stainless-retry-count"),
            Some("0"),
            "the SDK never retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn always_529_raises_overloaded_after_levees_attempts_without_the_sdks() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let levee = levee_for(&upstream, "");
    let answer = sdk(&levee, "overloaded").await;
    assert_eq!(answer["raised"], "OverloadedError");
    assert_eq!(answer["status"], 529);
    let seen = upstream.requests();
    assert_eq!(
        seen.len(),
        4,
        "exactly levee's four attempts: x-should-retry: false stopped the SDK"
    );
    assert!(
        seen.iter()
            .all(|r| r.header("x-stainless-retry-count") == Some("0"))
    );
}
