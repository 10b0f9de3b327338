//! Trace recording: a run's trace replays to the decisions the run made,
//! and holds no secret.

use super::{MESSAGE, header, levee_for, post};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};
use std::process::Command;
use std::time::{Duration, Instant};

/// The policy config of `FAST_POLICY`, as JSON for `--config`.
const FAST_POLICY_JSON: &str = r#"{"max_attempts": 4, "backoff": {"base_ms": 20, "cap_ms": 100}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_trace_replays_to_the_decisions_the_run_made() {
    let upstream = MockUpstream::start(Script::of([
        Step::Reply(Reply::rate_limited(RetryAfter::Ms(100))),
        Step::Reply(Reply::overloaded()),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let levee = levee_for(
        &upstream,
        &format!(
            "{}\n[trace]\nfile = {:?}\nmax_mb = 1\n",
            super::FAST_POLICY,
            trace.display().to_string()
        ),
    );
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let resp = post(&levee, MESSAGE).await;
        assert_eq!(resp.status(), 200);
        attempts.push(header(&resp, "x-levee-attempts").unwrap().to_owned());
    }
    assert_eq!(attempts, ["3", "1", "1"]);

    // Each request's line is written as it finishes; wait for all three.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.lines().count() >= 3 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        !text.contains("sk-ant"),
        "the API key leaked into the trace"
    );

    let config = dir.path().join("policy.json");
    std::fs::write(&config, FAST_POLICY_JSON).unwrap();
    let out = Command::new(levee_tests::levee_bin())
        .args(["policy", "replay"])
        .arg(&trace)
        .args(["--policy", "builtin:standard", "--config"])
        .arg(&config)
        .env("XDG_CACHE_HOME", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replays: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  policy "))
        .collect();
    assert_eq!(replays.len(), 3, "{stdout}");
    assert!(
        replays[0].contains("#0 up 0: 429 -> retry up 0 in 100 ms")
            && replays[0].contains("#1 up 0: 529 -> retry")
            && replays[0].contains("ok 200, 3 attempts"),
        "{stdout}"
    );
    for line in &replays {
        assert!(line.ends_with(", as recorded"), "{stdout}");
    }
    let summary = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("as recorded"));
    assert_eq!(
        summary.map(|l| l.split_whitespace().last()),
        Some(Some("3")),
        "{stdout}"
    );
}
