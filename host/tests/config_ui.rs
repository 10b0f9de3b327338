//! Config error messages, pinned: each `tests/config/invalid/NAME.toml`
//! must fail to load with exactly the text in `NAME.err`, and each
//! `tests/config/valid/*.toml` (and the annotated `levee.example.toml`)
//! must load.
//!
//! A case may give command-line overrides on a first line like
//! `# flags: --upstream localhost:9 --listen 8787`.
//!
//! After changing a message on purpose, run with `LEVEE_BLESS=1` to rewrite
//! the `.err` files, and review the diff.

use levee::config::{Config, Overrides};
use std::fs;
use std::path::{Path, PathBuf};

/// Paths are relative to the package root (cargo's working directory for
/// tests), so messages that quote them are the same on every machine.
const INVALID: &str = "tests/config/invalid";
const VALID: &str = "tests/config/valid";
const EXAMPLE: &str = "../levee.example.toml";

fn cases(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    found.sort();
    found
}

fn load(path: &Path) -> Result<Config, levee::config::ConfigError> {
    let text = fs::read_to_string(path).unwrap();
    Config::load(Some(path), &flags(&text))
}

/// The overrides named on a `# flags:` first line, if any.
fn flags(text: &str) -> Overrides {
    let mut overrides = Overrides::default();
    let Some(line) = text.lines().next().and_then(|l| l.strip_prefix("# flags:")) else {
        return overrides;
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.chunks(2) {
        let [flag, value] = pair else {
            panic!("`# flags:` wants flag/value pairs, got {line:?}")
        };
        let value = value.to_string();
        match *flag {
            "--listen" => overrides.listen = Some(value),
            "--upstream" => overrides.upstreams.push(value),
            "--policy" => overrides.policy = Some(value),
            "--policy-config" => overrides.policy_config = Some(value.into()),
            other => panic!("unknown flag {other} in {line:?}"),
        }
    }
    overrides
}

#[test]
fn invalid_configs_fail_with_their_exact_message() {
    let bless = std::env::var_os("LEVEE_BLESS").is_some();
    let tomls = cases(INVALID, "toml");
    assert!(tomls.len() >= 15, "only {} invalid cases", tomls.len());
    let mut failures = Vec::new();
    for case in &tomls {
        let err_file = case.with_extension("err");
        let actual = match load(case) {
            Ok(_) => {
                failures.push(format!("{}: loaded, but must fail", case.display()));
                continue;
            }
            Err(e) => format!("{e}\n"),
        };
        if bless {
            fs::write(&err_file, &actual).unwrap();
            continue;
        }
        match fs::read_to_string(&err_file) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: the message changed\n--- expected ({})\n{expected}+++ actual\n{actual}",
                case.display(),
                err_file.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {} to compare with (run with LEVEE_BLESS=1 to write it)\n\
                 +++ actual\n{actual}",
                case.display(),
                err_file.display()
            )),
        }
    }
    for orphan in cases(INVALID, "err") {
        if !orphan.with_extension("toml").exists() {
            failures.push(format!("{}: no .toml beside it", orphan.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} config cases failed (LEVEE_BLESS=1 rewrites the .err files):\n\n{}",
        failures.len(),
        tomls.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_configs_load() {
    let tomls = cases(VALID, "toml");
    assert!(tomls.len() >= 3, "only {} valid cases", tomls.len());
    let failures: Vec<String> = tomls
        .iter()
        .filter_map(|case| load(case).err().map(|e| e.to_string()))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The example documents the defaults: loading it gives exactly what no
/// file at all gives.
#[test]
fn the_annotated_example_loads_and_shows_the_defaults() {
    let example = load(Path::new(EXAMPLE)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(example.path.as_deref(), Some(Path::new(EXAMPLE)));
    let defaults = Config::load(None, &Overrides::default()).unwrap();
    assert_eq!(
        format!(
            "{:#?}",
            Config {
                path: None,
                ..example
            }
        ),
        format!("{defaults:#?}"),
        "{EXAMPLE} no longer shows the defaults"
    );
}

#[test]
fn the_full_example_sets_every_key() {
    let c = load(Path::new("tests/config/valid/full.toml")).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9787");
    let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["primary", "proxy", "local"]);
    let proxy = &c.upstreams[1];
    assert_eq!(proxy.base_path, "/anthropic");
    assert_eq!(proxy.authority(), "gw.example.com:8443");
    assert_eq!(
        proxy.tls.ca_file.as_deref(),
        Some(Path::new("tests/config/valid/ca.pem"))
    );
    assert_eq!(c.upstreams[2].authority(), "[::1]:9001");
    let otel = c.otel.as_ref().expect("[otel] is set");
    assert_eq!(
        otel.collector.url(),
        "https://collector.example.com:4318/otlp/v1/traces"
    );
    assert_eq!(
        (
            otel.service_name.as_str(),
            otel.sample_ratio,
            otel.timeout.as_secs()
        ),
        ("levee-eu", 0.1, 2)
    );
    assert_eq!(otel.headers[0].1.expose(), "ingest-secret");
    assert_eq!(
        otel.collector.tls.ca_file.as_deref(),
        Some(Path::new("tests/config/valid/ca.pem"))
    );
    let health = c.upstreams[0].health.as_ref().expect("checks on");
    assert_eq!(
        (
            health.interval.as_secs(),
            health.timeout.as_secs(),
            health.rise,
            health.fall
        ),
        (3600, 120, 100, 100)
    );
    let probe = health.http.as_ref().expect("an HTTP probe");
    assert_eq!(
        (
            probe.method.as_str(),
            probe.path.as_str(),
            &probe.expect[..]
        ),
        ("HEAD", "/v1/models?limit=1", &[200, 401][..])
    );
    assert_eq!(c.upstreams[1].health, None);
    let o = &c.outlier;
    assert!(!o.enabled);
    assert_eq!(
        (
            o.consecutive_failures,
            o.failure_rate_percent,
            o.min_requests
        ),
        (1000, 0, 100_000)
    );
    assert_eq!(
        (
            o.window.as_secs(),
            o.base_ejection.as_millis(),
            o.max_ejection.as_secs()
        ),
        (3600, 100, 86_400)
    );
    assert_eq!((o.max_ejection_percent, o.half_open_probes), (100, 100));
    assert_eq!((o.slow_ttfb_factor, o.slow_ttfb_min_ms), (100.0, 600_000));
    assert_eq!(
        c.policy.config_json,
        r#"{"backoff":{"jitter":"full"},"max_attempts":4}"#
    );
    assert_eq!(c.policy.cache.dir(), None);
    assert_eq!(
        c.admin.token.as_ref().map(|t| t.expose()),
        Some("test-token")
    );
    assert_eq!(c.log.level, "warn,levee=debug");
    let limits = c.upstreams[0].limits.base;
    assert_eq!(
        (
            limits.requests_per_minute,
            limits.input_tokens_per_minute,
            limits.output_tokens_per_minute,
            limits.max_concurrency
        ),
        (Some(50), Some(30_000), Some(8_000), Some(32))
    );
    assert!(!c.upstreams[1].limits.is_set());
    assert_eq!(
        (
            c.limits.queue_size,
            c.limits.default_priority,
            c.limits.priority_header
        ),
        (0, 255, true)
    );
    assert_eq!(c.limits.client.base.requests_per_minute, Some(10));
}
