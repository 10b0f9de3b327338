//! Trace recording: a run's trace replays to the decisions the run made,
//! and holds no secret. The access log: one line per request, written when
//! its body ends, with the tokens the body reported.

use super::{FAST_POLICY, MESSAGE, STREAM_MESSAGE, client, header, levee_for, post, post_on};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, SseScript, Step};
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
        .args(["--policy", "builtin:standard", "--policy-config"])
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

/// `levee policy replay` of `trace` through the standard policy with
/// `FAST_POLICY_JSON` and `--max-attempts max`: the per-request lines.
fn replayed(dir: &std::path::Path, trace: &std::path::Path, max: u32) -> (Vec<String>, String) {
    let config = dir.join("policy.json");
    std::fs::write(&config, FAST_POLICY_JSON).unwrap();
    let out = Command::new(levee_tests::levee_bin())
        .args(["policy", "replay"])
        .arg(trace)
        .args(["--policy", "builtin:standard", "--policy-config"])
        .arg(&config)
        .args(["--max-attempts", &max.to_string()])
        .env("XDG_CACHE_HOME", dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout
        .lines()
        .filter(|l| l.starts_with("  policy "))
        .map(str::to_owned)
        .collect();
    (lines, stdout)
}

/// The trace file's lines, once there are `n` (10 s at most).
async fn trace_lines(trace: &std::path::Path, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(trace).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A live run with a failover, a retry after a 429's wait and a retry the
/// host's attempt ceiling overruled: its trace replays through the same
/// exchange core to the same decisions, rails included.
#[tokio::test(flavor = "multi_thread")]
async fn a_trace_with_failover_retries_and_an_overrule_replays_to_the_same_decisions() {
    let primary = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let backup = MockUpstream::start(
        Script::of([
            Step::Reply(Reply::message()),
            Step::Reply(Reply::rate_limited(RetryAfter::Ms(100))),
        ])
        .otherwise(Step::Reply(Reply::overloaded())),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let levee = levee_tests::levee::Levee::start(&format!(
        "{FAST_POLICY}\n[rails]\nmax_attempts = 3\n[trace]\nfile = {:?}\nmax_mb = 1\n\n\
         [[upstreams]]\nname = \"primary\"\nurl = \"{}\"\ngroup = 0\n\n\
         [[upstreams]]\nname = \"backup\"\nurl = \"{}\"\ngroup = 1\n",
        trace.display().to_string(),
        primary.url(),
        backup.url()
    ));
    // 1: primary 529, failover, backup 200.
    let first = post(&levee, MESSAGE).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-levee-attempts"), Some("2"));
    // 2: the primary is known overloaded now, so the plan puts the backup
    // first: 429 (100 ms), 529, 529, and the policy's fourth attempt is
    // refused by the host's ceiling of three.
    let second = post(&levee, MESSAGE).await;
    assert_eq!(second.status(), 529);
    assert_eq!(header(&second, "x-levee-attempts"), Some("3"));
    assert_eq!(header(&second, "x-should-retry"), Some("false"));

    let text = trace_lines(&trace, 2).await;
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains(r#""overruled":"attempt-ceiling""#),
        "the overrule is in the trace: {text}"
    );
    let (lines, stdout) = replayed(dir.path(), &trace, 3);
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("#0 up 0: 529 -> retry up 1 in 0 ms")
            && lines[0].contains("#1 up 1: 200 -> delivered"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("admit [1, 0]")
            && lines[1].contains("#0 up 1: 429 -> retry up 1 in 100 ms")
            && lines[1].contains("#1 up 1: 529 -> retry up 1 in ")
            && lines[1].contains("#2 up 1: 529 -> retry refused by the attempt ceiling"),
        "{stdout}"
    );
    for line in &lines {
        assert!(line.ends_with(", as recorded"), "{stdout}");
    }
    // With a higher ceiling the same trace no longer replays as recorded:
    // the rail is part of what is compared.
    let (lines, stdout) = replayed(dir.path(), &trace, 4);
    assert!(
        lines[1].ends_with(", differs from the recording"),
        "{stdout}"
    );
}

/// The `levee::access` lines of a JSON log, once there are `n` (10 s at most).
pub(super) async fn access_lines(
    levee: &levee_tests::levee::Levee,
    n: usize,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = levee
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "levee::access")
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_line_carries_the_tokens_the_body_reported() {
    let upstream = MockUpstream::start(Script::of([
        Step::Reply(Reply::message_with("hello", 17, 5)),
        Step::Sse(SseScript::message_with(&["Hel", "lo"], 21, 34)),
    ]))
    .await;
    let levee = levee_for(
        &upstream,
        &format!("{FAST_POLICY}\n[log]\nformat = \"json\"\n"),
    );
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let resp = post(&levee, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("message_stop"));

    let lines = access_lines(&levee, 2).await;
    assert_eq!(lines.len(), 2, "one line per request:\n{}", levee.log());
    let (json, sse) = (&lines[0]["fields"], &lines[1]["fields"]);
    assert_eq!(json["status"], 200, "{json}");
    assert_eq!(json["upstream"], "primary", "{json}");
    assert_eq!(json["attempts"], 1, "{json}");
    assert_eq!(json["input_tokens"], 17, "{json}");
    assert_eq!(json["output_tokens"], 5, "{json}");
    assert!(json.get("end").is_none(), "not a stream: {json}");
    assert_eq!(sse["input_tokens"], 21, "{sse}");
    assert_eq!(sse["output_tokens"], 34, "{sse}");
    assert_eq!(sse["end"], "complete", "{sse}");
    assert_ne!(json["request_id"], sse["request_id"]);
}

/// An answer levee gave up on names the upstream that failed; one levee
/// made up alone names none (`-`).
#[tokio::test(flavor = "multi_thread")]
async fn the_access_line_names_the_upstream_only_when_one_was_tried() {
    let upstream = MockUpstream::start(Script::always(Step::Reset)).await;
    let levee = levee_for(
        &upstream,
        &format!("{FAST_POLICY}\n[rails]\nmax_body_bytes = 1000\n[log]\nformat = \"json\"\n"),
    );
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 502);
    resp.text().await.unwrap();
    let resp = post(&levee, &format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000))).await;
    assert_eq!(resp.status(), 413);
    resp.text().await.unwrap();

    let lines = access_lines(&levee, 2).await;
    assert_eq!(lines.len(), 2, "one line per request:\n{}", levee.log());
    let (failed, local) = (&lines[0]["fields"], &lines[1]["fields"]);
    assert_eq!(failed["status"], 502, "{failed}");
    assert_eq!(failed["upstream"], "primary", "{failed}");
    assert_eq!(failed["attempts"], 4, "{failed}");
    assert_eq!(local["status"], 413, "{local}");
    assert_eq!(local["upstream"], "-", "{local}");
}

/// Access lines logged before the first line of a SIGHUP reload (waiting
/// for that line, at most 10 s).
async fn access_before_reload(levee: &levee_tests::levee::Levee) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = levee.log();
        if let Some(at) = log.find("SIGHUP") {
            return log[..at].matches("\"levee::access\"").count();
        }
        assert!(Instant::now() < deadline, "no reload line:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_can_be_turned_off() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let off = levee_for(
        &upstream,
        &format!("{FAST_POLICY}\n[log]\nformat = \"json\"\naccess = false\n"),
    );
    let on = levee_for(
        &upstream,
        &format!("{FAST_POLICY}\n[log]\nformat = \"json\"\n"),
    );
    for levee in [&off, &on] {
        // Two requests on one connection: once the second is answered, the
        // first one's body has ended in levee, so its line (if any) is in
        // the buffer. Any other line writes the buffer out before itself:
        // the reload's line is the positive event after which a line that
        // was coming would be in the log.
        let client = client();
        for _ in 0..2 {
            let resp = post_on(&client, levee, MESSAGE).await;
            assert_eq!(resp.status(), 200);
            resp.text().await.unwrap();
        }
        levee.signal("HUP");
    }
    assert!(access_before_reload(&on).await >= 1, "{}", on.log());
    assert_eq!(access_before_reload(&off).await, 0, "{}", off.log());
    assert_eq!(upstream.requests().len(), 4);
}

/// A request that ends in the shutdown's grace period still gets its line:
/// the process writes its pending lines out as it exits, though nothing
/// else is logged after that request.
#[tokio::test(flavor = "multi_thread")]
async fn the_last_access_line_is_written_before_levee_exits() {
    let script =
        SseScript::message("the last answer, word by word").chunk_delay(Duration::from_millis(40));
    let upstream = MockUpstream::start(Script::always(Step::Sse(script))).await;
    let mut levee = levee_for(
        &upstream,
        &format!("{FAST_POLICY}\n[log]\nformat = \"json\"\n"),
    );
    let mut resp = post(&levee, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    resp.chunk().await.unwrap().expect("first bytes");
    levee.signal("TERM");
    while resp.chunk().await.unwrap().is_some() {}
    assert_eq!(levee.wait_exit(Duration::from_secs(10)), Some(0));
    let lines = access_lines(&levee, 1).await;
    assert_eq!(lines.len(), 1, "{}", levee.log());
    assert_eq!(lines[0]["fields"]["end"], "complete");
}
