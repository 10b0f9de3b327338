//! The official Anthropic Python SDK through levee: levee does the retrying,
//! and its verdict headers stop the SDK from piling its own on top.

use super::levee_for;
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, RateLimits, Reply, RetryAfter, Script, SseScript, Step};
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
    let env = [
        ("ANTHROPIC_BASE_URL", levee.url()),
        ("ANTHROPIC_API_KEY", "sk-ant-test-secret-0003".to_owned()),
    ];
    run_client("sdk/client.py", mode, env).await
}

/// Runs `tests/sdk/openai_client.py MODE` against levee's `/v1/`.
async fn openai_sdk(levee: &Levee, mode: &str) -> serde_json::Value {
    let env = [
        ("OPENAI_BASE_URL", format!("{}/v1", levee.url())),
        ("OPENAI_API_KEY", "sk-test-secret-0004".to_owned()),
    ];
    run_client("sdk/openai_client.py", mode, env).await
}

/// Runs a client script with `env`; returns its JSON line.
async fn run_client(
    script: &str,
    mode: &str,
    env: [(&'static str, String); 2],
) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let mode = mode.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg(mode)
            .envs(env)
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

/// The Anthropic SDK's stream survives an `overloaded_error` event sent
/// before any content: levee retried it, and the SDK saw one clean stream.
#[tokio::test(flavor = "multi_thread")]
async fn an_overloaded_error_event_before_content_never_reaches_the_sdk() {
    let overloaded =
        SseScript::message("never sent").error_after(3, "overloaded_error", "Overloaded");
    let upstream = MockUpstream::start(Script::of([
        Step::Sse(overloaded),
        Step::Sse(SseScript::message("Hello after a retry")),
    ]))
    .await;
    let levee = levee_for(&upstream, "");
    let stream = sdk(&levee, "stream").await;
    assert_eq!(stream["text"], "Hello after a retry");
    assert_eq!(stream["stop_reason"], "end_turn");
    assert_eq!(upstream.requests().len(), 2, "levee retried once");
}

/// A chat completion as the OpenAI API sends one.
fn chat_completion(text: &str) -> Reply {
    let body = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "claude-sonnet-4-5",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    });
    Reply::json(200, body.to_string())
}

/// A streamed chat completion: role, the words of `text`, the finish, the
/// usage chunk and `[DONE]`.
fn chat_stream(text: &str) -> SseScript {
    let chunk = |choices: serde_json::Value, usage: serde_json::Value| {
        let c = serde_json::json!({"id": "chatcmpl-2", "object": "chat.completion.chunk",
            "created": 1, "model": "claude-sonnet-4-5", "choices": choices, "usage": usage});
        format!("data: {c}\n\n")
    };
    let delta = |d: serde_json::Value, finish: serde_json::Value| serde_json::json!([{"index": 0, "delta": d, "finish_reason": finish}]);
    let null = serde_json::Value::Null;
    let mut chunks = vec![chunk(
        delta(
            serde_json::json!({"role": "assistant", "content": ""}),
            null.clone(),
        ),
        null.clone(),
    )];
    for word in text.split_inclusive(' ') {
        chunks.push(chunk(
            delta(serde_json::json!({"content": word}), null.clone()),
            null.clone(),
        ));
    }
    chunks.push(chunk(delta(serde_json::json!({}), "stop".into()), null));
    let usage = serde_json::json!({"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13});
    chunks.push(chunk(serde_json::json!([]), usage));
    chunks.push("data: [DONE]\n\n".to_owned());
    SseScript::from_chunks(chunks)
}

/// The official OpenAI SDK at levee's `/v1/`: a plain and a streamed chat
/// completion come through whole, with their usage, after a 529 each that
/// levee retried.
#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_runs_a_plain_and_a_streamed_chat_completion() {
    let upstream = MockUpstream::start(Script::of([
        Step::Reply(Reply::overloaded()),
        Step::Reply(chat_completion("Hello from the mock")),
        Step::Reply(Reply::overloaded()),
        Step::Sse(chat_stream("Hello, streaming world")),
    ]))
    .await;
    let levee = levee_for(&upstream, "");
    let plain = openai_sdk(&levee, "plain").await;
    assert_eq!(plain["text"], "Hello from the mock");
    assert_eq!(plain["completion_tokens"], 3);
    let stream = openai_sdk(&levee, "stream").await;
    assert_eq!(stream["text"], "Hello, streaming world");
    assert_eq!(stream["completion_tokens"], 4);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|r| r.path == "/v1/chat/completions"),
        "{seen:?}"
    );
    // The stream's usage chunk reconciled its tokens (the access line is
    // written within 20 ms of the body's end).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let reconciled = |log: &str| {
        log.lines()
            .any(|l| l.contains("levee::access") && l.contains(" output_tokens=4"))
    };
    while !reconciled(&levee.log()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = levee.log();
    assert!(reconciled(&log), "{log}");
    assert!(
        !log.contains("sk-test-secret"),
        "the key leaked into the log"
    );
}

/// A give-up reaches the OpenAI SDK as a clean error class, and its
/// verdict stops the SDK's own retries; a cut stream raises, never ends
/// as if whole.
#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_gets_a_clean_error_on_a_give_up_and_on_a_cut_stream() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let levee = levee_for(&upstream, "");
    let answer = openai_sdk(&levee, "giveup").await;
    assert_eq!(answer["raised"], "InternalServerError");
    assert_eq!(answer["status"], 529);
    assert_eq!(
        upstream.requests().len(),
        4,
        "levee's attempts, none of the SDK's"
    );
    let mut cut = chat_stream("one two three");
    cut.chunks.truncate(2);
    let upstream = MockUpstream::start(Script::of([Step::Sse(cut)])).await;
    let levee = levee_for(&upstream, "");
    let answer = openai_sdk(&levee, "cut").await;
    assert_eq!(answer["raised"], "APIError", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("before data: [DONE]"), "{message}");
}

/// Claude Code's way: Sonnet and Haiku in one session, against the API's
/// limits per model class (Sonnet 20 a minute, Haiku 600). levee paces
/// Sonnet to its own limit, and Haiku never waits for Sonnet's: the SDK
/// meets no `RateLimitError`, the upstream answers no 429, and only the
/// two Sonnet requests past its burst of 20 wait (3 s each, a refill).
#[tokio::test(flavor = "multi_thread")]
async fn a_two_model_session_meets_no_rate_limit_error() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    upstream.set_class_limits(&[
        ("sonnet", RateLimits::requests(20)),
        ("haiku", RateLimits::requests(600)),
    ]);
    let levee = levee_for(&upstream, "");
    let out = sdk(&levee, "two-models").await;
    assert_eq!(out["raised"], serde_json::Value::Null, "{out}");
    assert_eq!(out["answered"]["claude-sonnet-4-5"], 22, "{out}");
    assert_eq!(out["answered"]["claude-haiku-4-5"], 22, "{out}");
    assert_eq!(upstream.rate_limited(), 0, "no upstream 429");
    assert_eq!(upstream.requests().len(), 44, "one attempt each");
    // Each access line: its class, and how long levee held it.
    let log = levee.log();
    let held: Vec<(String, u64)> = log
        .lines()
        .filter(|l| l.contains("levee::access"))
        .map(|l| {
            let field = |name: &str| {
                l.split(' ')
                    .find_map(|w| w.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {l}"))
                    .trim_matches('"')
                    .to_owned()
            };
            (field("model_class="), field("head_ms=").parse().unwrap())
        })
        .collect();
    assert_eq!(held.len(), 44, "{log}");
    let waited = |class: &str| {
        held.iter()
            .filter(|(c, ms)| c == class && *ms >= 1_000)
            .count()
    };
    assert_eq!(waited("haiku"), 0, "Haiku never waits: {held:?}");
    assert_eq!(waited("sonnet"), 2, "Sonnet past its burst: {held:?}");
}
