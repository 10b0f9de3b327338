//! `levee policy replay`: side by side on a 429-heavy trace, byte-for-byte
//! deterministic, clear about malformed traces, and streamed: totals only,
//! JSON, and a trace larger than the memory allowed.
//! (A trace recorded by a real run is replayed in the gateway suite.)

use levee_tests::{levee_bin, workspace};
use std::path::Path;
use std::process::{Command, Output};

fn replay(trace: &Path, args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    Command::new(levee_bin())
        .args(["policy", "replay"])
        .arg(trace)
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("levee runs")
}

/// The summary row `name`: one number per policy.
fn row(stdout: &str, name: &str) -> Vec<u64> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no `{name}` row in:\n{stdout}"));
    line[line.find(name).unwrap() + name.len()..]
        .split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect()
}

#[test]
fn on_a_429_heavy_trace_the_patient_policy_waits_and_the_impatient_one_fails() {
    let trace = workspace().join("tests/traces/429-heavy.jsonl");
    let args = [
        "--policy",
        "builtin:standard",
        "--against",
        "builtin:interactive",
    ];
    let out = replay(&trace, &args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let requests = row(&stdout, "requests");
    let [failed_std, failed_int] = row(&stdout, "failed")[..] else {
        panic!("{stdout}")
    };
    let [waited_std, waited_int] = row(&stdout, "waited ms")[..] else {
        panic!("{stdout}")
    };
    let [attempts_std, attempts_int] = row(&stdout, "attempts")[..] else {
        panic!("{stdout}")
    };
    assert_eq!(requests, [8, 8]);
    // Standard sleeps through every retry-after (3-8 s, within its 5 min)
    // and delivers; interactive will not wait past 2 s and hands the wait
    // back to the client at once.
    assert_eq!((failed_std, failed_int), (0, 8), "{stdout}");
    assert!(waited_std >= 8 * 3_000 && waited_int == 0, "{stdout}");
    assert!(attempts_std > attempts_int, "{stdout}");

    let again = replay(&trace, &args);
    assert_eq!(
        stdout.as_bytes(),
        &again.stdout[..],
        "replay is not deterministic"
    );
}

#[test]
fn malformed_traces_are_refused_with_the_line_and_the_field() {
    let good = std::fs::read_to_string(workspace().join("tests/traces/429-heavy.jsonl")).unwrap();
    let line = good.lines().find(|l| l.starts_with('{')).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!("{line}\n\n{{\"req\": \n"),
            "trace.jsonl:3: not JSON",
        ),
        (
            format!(
                "# note\n{}\n",
                line.replace("\"deadline\":", "\"dead-line\":")
            ),
            "trace.jsonl:2: `req.dead-line`: unknown field",
        ),
        (
            format!("{line}\n{}\n", line.replace("\"healthy\"", "\"fine\"")),
            "trace.jsonl:2: `view.upstreams[0].health`: expected one of: unknown, healthy, unhealthy; got \"fine\"",
        ),
        (
            line.replace("\"status\":429", "\"status\":70000"),
            "trace.jsonl:1: `attempts[0].attempt.outcome.val.status`: expected an integer from 0 to 65535, got 70000",
        ),
        (
            format!(
                "{}\n",
                line.split(",\"attempts\"").next().unwrap().to_owned() + "}"
            ),
            "trace.jsonl:1: `attempts`: is missing",
        ),
    ];
    for (text, want) in cases {
        let path = dir.path().join("trace.jsonl");
        std::fs::write(&path, &text).unwrap();
        let out = replay(&path, &["--policy", "builtin:standard"]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(want), "want {want:?} in:\n{stderr}");
        // The trace is streamed: what came before the bad line was
        // replayed and printed, and the run stops there, with no totals.
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(!stdout.contains("summary"), "{stdout}");
    }
}

#[test]
fn summary_prints_only_the_totals_and_json_prints_a_line_per_request() {
    let trace = workspace().join("tests/traces/429-heavy.jsonl");
    let args = [
        "--policy",
        "builtin:standard",
        "--against",
        "builtin:interactive",
    ];
    let full = String::from_utf8(replay(&trace, &args).stdout).unwrap();
    assert_eq!(full.matches("request ").count(), 8, "{full}");

    let out = replay(&trace, &[&args[..], &["--summary"]].concat());
    assert!(out.status.success());
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(!summary.contains("request "), "{summary}");
    let totals = &full[full.find("summary").unwrap()..];
    assert!(
        summary.ends_with(totals),
        "{summary}\nis not the totals of\n{full}"
    );

    let out = replay(&trace, &[&args[..], &["--json"]].concat());
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), 1 + 8 + 1);
    assert_eq!(lines[0]["policies"][1]["name"], "interactive");
    for (i, l) in lines[1..9].iter().enumerate() {
        assert_eq!(l["request"], i as u64 + 1);
        assert!(l["replays"]["against"]["steps"].is_array(), "{l}");
    }
    let json_totals = &lines[9]["summary"];
    assert_eq!(
        [
            json_totals["policy"]["failed"].as_u64(),
            json_totals["against"]["failed"].as_u64()
        ],
        [Some(row(&full, "failed")[0]), Some(row(&full, "failed")[1])]
    );
    assert_eq!(
        json_totals["policy"]["waited_ms"],
        row(&full, "waited ms")[0]
    );
}

#[test]
fn a_trace_larger_than_the_memory_allowed_replays_line_by_line() {
    let good = std::fs::read_to_string(workspace().join("tests/traces/429-heavy.jsonl")).unwrap();
    let records: String = good
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect();
    let per_copy = records.lines().count();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let small = dir.path().join("small.jsonl");
    std::fs::write(&small, &records).unwrap();
    // A first run compiles the policy into the cache, outside the limit.
    let warm = Command::new(levee_bin())
        .args(["policy", "replay"])
        .arg(&small)
        .args(["--policy", "builtin:standard", "--summary"])
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    assert!(warm.status.success());

    // 96 MiB of trace, under a 48 MiB limit on the heap (RLIMIT_DATA):
    // read whole, it could not fit.
    const LIMIT: usize = 48 << 20;
    let big = dir.path().join("big.jsonl");
    let copies = (2 * LIMIT).div_ceil(records.len());
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        for _ in 0..copies {
            f.write_all(records.as_bytes()).unwrap();
        }
    }
    assert!(std::fs::metadata(&big).unwrap().len() as usize >= 2 * LIMIT);
    let out = Command::new("prlimit")
        .arg(format!("--data={LIMIT}"))
        .arg(levee_bin())
        .args(["policy", "replay"])
        .arg(&big)
        .args(["--policy", "builtin:standard", "--summary"])
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .expect("prlimit (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(row(&stdout, "requests"), [(copies * per_copy) as u64]);
}
