use super::upstream::{Target, UrlError, parse_url};
use super::*;
use crate::policy::PolicySource;
use std::fs;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, None, &Overrides::default())
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn defaults_with_no_file() {
    let c = Config::load(None, &Overrides::default()).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8787".parse().unwrap());
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.header_timeout, Duration::from_secs(60));
    assert_eq!(c.upstreams.len(), 1);
    let u = &c.upstreams[0];
    assert_eq!(
        (u.name.as_str(), u.scheme, u.host.as_str(), u.port),
        ("anthropic", Scheme::Https, "api.anthropic.com", 443)
    );
    assert_eq!((u.base_path.as_str(), u.group, u.weight), ("", 0, 1));
    assert_eq!(u.max_connections, 64);
    assert_eq!(u.max_streams_per_connection, 100);
    assert_eq!(u.connect_timeout, Duration::from_secs(10));
    // levee.example.toml: no ca_file, min_version = "1.2".
    assert_eq!(
        u.tls,
        Tls {
            ca_file: None,
            min_version: TlsVersion::V1_2,
        }
    );
    assert_eq!(u.url(), "https://api.anthropic.com");
    assert!(matches!(c.policy.source, PolicySource::Builtin("standard")));
    assert_eq!(c.policy.config_json, "");
    // levee.example.toml: call_timeout_ms = 50, memory_mb = 16, instances
    // "the number of CPUs, clamped to 2..=8", cache_dir
    // "$XDG_CACHE_HOME/levee/policies, or ~/.cache/levee/policies".
    assert_eq!(c.policy.limits.call_timeout, Duration::from_millis(50));
    assert_eq!(c.policy.limits.memory_bytes, 16 << 20);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.policy.limits.instances, cpus.clamp(2, 8));
    let cache_home = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")),
    };
    assert_eq!(
        c.policy.cache.dir(),
        cache_home.map(|dir| dir.join("levee/policies")).as_deref()
    );
    assert_eq!(
        c.rails,
        Rails {
            max_attempts: 10,
            request_deadline: Duration::from_secs(1200),
            max_body_bytes: 32 << 20,
            body_limits: BodyLimits::default(),
            spool_dir: std::env::temp_dir(),
            retry_budget_ratio: 0.2,
            retry_budget_min_retries: 3,
            error_body_bytes: 65536,
        }
    );
    assert_eq!(c.streaming.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.admin.listen, Some("127.0.0.1:8788".parse().unwrap()));
    assert_eq!(c.admin.token, None);
    assert_eq!(c.log.format, LogFormat::Human);
    assert_eq!(c.log.level, "info");
    assert!(
        c.admin.metrics && c.log.access,
        "metrics and the access log are on"
    );
    assert_eq!(c.path, None);
}

#[test]
fn an_empty_file_is_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.upstreams[0].name, "anthropic");
}

#[test]
fn metrics_and_the_access_log_turn_off() {
    let c = parse("[admin]\nmetrics = false\n[log]\naccess = false\n").unwrap();
    assert!(!c.admin.metrics);
    assert!(!c.log.access);
    assert!(error("[log]\naccess = \"no\"\n").contains("access"));
}

#[test]
fn overrides_replace_the_upstreams() {
    let overrides = Overrides {
        listen: Some("0.0.0.0:9000".to_string()),
        upstreams: vec![
            "http://127.0.0.1:9001".to_string(),
            "https://gw.example.com/anthropic/".to_string(),
        ],
        ..Overrides::default()
    };
    let text = r#"
        listen = "127.0.0.1:1"
        [[upstreams]]
        name = "file"
        url = "https://file.example.com"
        weight = 7
    "#;
    let c = Config::from_toml(text, None, &overrides).unwrap();
    assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
    let got: Vec<_> = c
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), u.url(), u.weight))
        .collect();
    assert_eq!(
        got,
        [
            ("upstream-1", "http://127.0.0.1:9001".to_string(), 1),
            (
                "upstream-2",
                "https://gw.example.com/anthropic".to_string(),
                1
            ),
        ]
    );
}

#[test]
fn an_overridden_value_is_not_checked() {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".to_string()),
        upstreams: vec!["http://localhost:9".to_string()],
        ..Overrides::default()
    };
    let text = "listen = \"nope\"\n[[upstreams]]\nname = \"BAD\"\nurl = \"ftp://x\"\n";
    assert!(Config::from_toml(text, None, &overrides).is_ok());
}

#[test]
fn relative_paths_start_at_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/ca.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fs::write(root.join("etc/policy.json"), r#"{"max_attempts": 3}"#).unwrap();
    fs::write(root.join("etc/policy.wasm"), b"\0asm").unwrap();
    fs::write(root.join("etc/token"), "s3cret\n").unwrap();
    let file = root.join("etc/levee.toml");
    fs::write(
        &file,
        r#"
        [[upstreams]]
        name = "a"
        url = "https://a.example.com"
        tls = { ca_file = "ca.pem", min_version = "1.3" }
        [policy]
        source = "policy.wasm"
        config_file = "policy.json"
        cache_dir = "cache"
        [rails]
        spool_dir = "spool"
        [admin]
        token_file = "token"
        "#,
    )
    .unwrap();
    let c = Config::load(Some(&file), &Overrides::default()).unwrap();
    let etc = root.join("etc");
    assert_eq!(c.upstreams[0].tls.ca_file, Some(etc.join("ca.pem")));
    assert_eq!(c.upstreams[0].tls.min_version, TlsVersion::V1_3);
    assert!(matches!(&c.policy.source, PolicySource::File(p) if *p == etc.join("policy.wasm")));
    assert_eq!(c.policy.config_json, r#"{"max_attempts": 3}"#);
    assert_eq!(c.policy.cache.dir(), Some(etc.join("cache").as_path()));
    assert_eq!(c.rails.spool_dir, etc.join("spool"));
    assert_eq!(c.admin.token.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(c.path.as_deref(), Some(file.as_path()));
}

#[test]
fn an_inline_policy_config_becomes_a_json_object() {
    let c = parse("[policy.config]\nmax_attempts = 4\n").unwrap();
    assert_eq!(c.policy.config_json, r#"{"max_attempts":4}"#);

    let c = parse(
        "[policy.config]\nbackoff = { jitter = \"full\", cap_ms = 8000 }\n\
         output_reserve_share = 0.5\ntags = [1, true]\nat = 1979-05-27T07:32:00Z\n",
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&c.policy.config_json).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "backoff": {"jitter": "full", "cap_ms": 8000},
            "output_reserve_share": 0.5,
            "tags": [1, true],
            "at": "1979-05-27T07:32:00Z",
        })
    );
}

#[test]
fn a_float_json_cannot_hold_is_named_by_its_key() {
    assert_eq!(
        error("[policy.config]\nbackoff = { weights = [1.0, nan] }\n"),
        "<config>: `policy.config.backoff.weights[1]` must be a finite number to pass to \
         the policy as JSON, got nan"
    );
}

#[test]
fn a_secret_never_shows() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s}"), "[redacted]");
    assert_eq!(format!("{s:?}"), "[redacted]");
    assert_eq!(s.expose(), "hunter2");
    assert!(s.matches(b"hunter2"));
    assert!(!s.matches(b"hunter3"));
    assert!(!s.matches(b"hunter"));
    let admin = Admin {
        listen: None,
        token: Some(s),
        metrics: true,
        open_metrics: true,
    };
    assert!(!format!("{admin:?}").contains("hunter2"));
}

#[test]
fn an_admin_token_comes_from_the_environment() {
    // Cargo sets CARGO_PKG_NAME for the tests it runs.
    let c = parse("[admin]\ntoken_env = \"CARGO_PKG_NAME\"\n").unwrap();
    assert!(format!("{c:?}").contains("token: Some([redacted])"));
    assert_eq!(c.admin.token.unwrap().expose(), "levee");
}

#[test]
fn urls() {
    let ok = |url: &str| parse_url(url).unwrap();
    assert_eq!(
        ok("http://[::1]:8080/v/"),
        Target {
            scheme: Scheme::Http,
            host: "::1".to_string(),
            port: 8080,
            base_path: "/v".to_string(),
        }
    );
    assert_eq!(ok("HTTPS://Example.com:443//").base_path, "");
    assert_eq!(ok("https://example.com:8443").port, 8443);
    for bad in [
        "ftp://x",
        "localhost:9",
        "http://",
        "https:///x",
        "http://a b",
        "",
    ] {
        assert_eq!(parse_url(bad), Err(UrlError::NotHttp), "{bad}");
    }
    for bad in ["http://h/?a=1", "http://h/a#f", "http://h?"] {
        assert_eq!(parse_url(bad), Err(UrlError::QueryOrFragment), "{bad}");
    }
    for bad in ["http://h:0", "http://h:65536", "http://h:"] {
        assert_eq!(parse_url(bad), Err(UrlError::Port), "{bad}");
    }
    assert_eq!(
        parse_url("https://me:pw@h/x"),
        Err(UrlError::Credentials("https://[redacted]@h/x".to_string()))
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    assert_eq!(
        error("[rails]\nmax_attempts = 0\n[log]\nformat = \"text\"\n"),
        "<config>: `rails.max_attempts` must be between 1 and 20, got 0\n\
         <config>: `log.format` must be \"human\" or \"json\", got \"text\""
    );
}

#[test]
fn a_flag_is_named_without_the_file() {
    let overrides = Overrides {
        listen: Some("8787x".to_string()),
        upstreams: vec!["localhost:9".to_string()],
        ..Overrides::default()
    };
    let e = Config::from_toml("", Some(Path::new("levee.toml")), &overrides).unwrap_err();
    assert_eq!(
        e.problems(),
        [
            "`--listen` must be an address like 127.0.0.1:8787, :8787, 8787 or localhost:8787, \
             got \"8787x\": no port",
            "`--upstream` must be an http:// or https:// URL with a host, got \"localhost:9\"",
        ]
    );
}

#[test]
fn a_missing_file_is_named() {
    let e = Config::load(Some(Path::new("/nope/levee.toml")), &Overrides::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/nope/levee.toml: cannot read the config file: No such file or directory (os error 2)"
    );
}

#[test]
fn durations_read_as_milliseconds_or_with_units() {
    let c = parse(
        "shutdown_grace_ms = \"45s\"\nheader_timeout_ms = 1500\n\
         [streaming]\nidle_timeout_ms = \"2m\"\n\
         [rails]\nrequest_deadline_ms = \"1h 30m\"\n\
         [outlier]\nslow_ttfb_min_ms = \"250ms\"\n",
    )
    .unwrap();
    assert_eq!(c.shutdown_grace, Duration::from_secs(45));
    assert_eq!(c.header_timeout, Duration::from_millis(1500));
    assert_eq!(c.streaming.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.rails.request_deadline, Duration::from_secs(5400));
    assert_eq!(c.outlier.slow_ttfb_min_ms, 250);
}

#[test]
fn a_duration_that_is_not_one_or_out_of_range_is_named() {
    assert_eq!(
        error("shutdown_grace_ms = \"soon\""),
        "<config>: `shutdown_grace_ms` must be whole milliseconds or a duration such as \"30s\", \
         \"20m\" or \"1h 30m\", got \"soon\" (expected number at 0)"
    );
    // The range is checked in milliseconds, whichever form was written.
    assert_eq!(
        error("shutdown_grace_ms = \"11m\""),
        "<config>: `shutdown_grace_ms` must be between 0 and 600000, got 660000"
    );
    let float = error("shutdown_grace_ms = 1.5");
    assert!(
        float.contains("whole milliseconds or a duration such as \"30s\" or \"20m\""),
        "{float}"
    );
}

#[test]
fn listen_addresses_take_the_forms_peers_accept() {
    let all = |port| SocketAddr::from(([0, 0, 0, 0], port));
    for (given, want) in [
        ("127.0.0.1:9000", SocketAddr::from(([127, 0, 0, 1], 9000))),
        ("[::1]:9000", "[::1]:9000".parse().unwrap()),
        (":9000", all(9000)),
        ("9000", all(9000)),
        ("localhost:9000", SocketAddr::from(([127, 0, 0, 1], 9000))),
    ] {
        assert_eq!(validate::listen_address(given), Ok(want), "{given}");
        let flag = Overrides {
            listen: Some(given.into()),
            ..Overrides::default()
        };
        let c = Config::from_toml("", None, &flag).unwrap();
        assert_eq!(c.listen, want, "--listen {given}");
    }
    for bad in ["", ":", "70000", ":http", "host name:80", "localhost"] {
        assert!(validate::listen_address(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        error("listen = \"9000x\""),
        "<config>: `listen` must be an address like 127.0.0.1:8787, :8787, 8787 or \
         localhost:8787, got \"9000x\": no port"
    );
}

#[test]
fn otel_is_off_unless_an_endpoint_is_given() {
    assert!(parse("").unwrap().otel.is_none());
    let c = parse(
        "[otel]\nendpoint = \"https://otlp.example.com:4318/ingest/\"\nsample_ratio = 0.25\n\
         timeout_ms = \"3s\"\n[otel.headers]\nx-ingest-key = \"k-123\"\n",
    )
    .unwrap();
    let otel = c.otel.unwrap();
    let up = &otel.collector;
    assert_eq!(
        (up.scheme, up.host.as_str(), up.port),
        (Scheme::Https, "otlp.example.com", 4318)
    );
    assert_eq!(up.base_path, "/ingest/v1/traces");
    assert_eq!(
        (otel.sample_ratio, otel.timeout),
        (0.25, Duration::from_secs(3))
    );
    assert_eq!(otel.service_name, "levee");
    assert_eq!(otel.headers[0].0, "x-ingest-key");
    assert!(
        !format!("{otel:?}").contains("k-123"),
        "a header's value is a secret"
    );
    let full = parse("[otel]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n").unwrap();
    assert_eq!(full.otel.unwrap().collector.base_path, "/v1/traces");
}

#[test]
fn a_bad_otel_section_names_each_key() {
    let e = error("[otel]\nsample_ratio = 0.5\n");
    assert!(e.contains("`otel.endpoint` is required"), "{e}");
    let e = error(
        "[otel]\nendpoint = \"grpc://x:4317\"\nsample_ratio = 1.5\n[otel.headers]\n\"bad name\" = \"v\"\n",
    );
    assert!(
        e.contains("`otel.endpoint` must be an http:// or https:// URL"),
        "{e}"
    );
    assert!(
        e.contains("`otel.sample_ratio` must be a number from 0.0 to 1.0, got 1.5"),
        "{e}"
    );
    assert!(e.contains("`otel.headers.bad name`"), "{e}");
}

#[test]
fn a_reload_names_what_only_a_restart_changes() {
    let started = parse("[[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:9001\"\n").unwrap();
    // Upstreams, rails and the access log are reloaded: nothing to name.
    let reloadable = parse(
        "[[upstreams]]\nname = \"b\"\nurl = \"http://127.0.0.1:9002\"\n\
         [rails]\nmax_attempts = 2\n[log]\naccess = false\n",
    )
    .unwrap();
    assert!(reloadable.needs_restart(&started).is_empty());
    let restart = parse(
        "listen = \"127.0.0.1:9999\"\nworkers = 3\n[log]\nlevel = \"debug\"\n\
         [rails]\nretry_budget_ratio = 0.5\n[policy]\nmemory_mb = 32\n\
         [otel]\nendpoint = \"http://127.0.0.1:4318\"\n",
    )
    .unwrap();
    assert_eq!(
        restart.needs_restart(&started),
        [
            "listen",
            "workers",
            "log.level and log.format",
            "otel",
            "rails.retry_budget_*",
            "policy limits and cache"
        ]
    );
}

#[test]
fn model_classes_and_their_own_limits_are_read() {
    let c = parse(
        r#"
        [limits]
        classes = [
            { name = "fast", contains = ["haiku", "mini"], cache_reads_count = true },
            { name = "big", contains = ["opus", "sonnet"] },
        ]
        [limits.client.classes.fast]
        requests_per_minute = 7

        [[upstreams]]
        name = "a"
        url = "https://api.anthropic.com"
        [upstreams.limits]
        requests_per_minute = 50
        input_tokens_per_minute = 30000
        max_concurrency = 4
        [upstreams.limits.classes.big]
        input_tokens_per_minute = 8000
        "#,
    )
    .unwrap();
    let classes = &c.limits.classes;
    let names: Vec<&str> = classes.names().map(|n| &**n).collect();
    assert_eq!(names, ["fast", "big", "count_tokens", "batches", "other"]);
    let big = classes.of(Some("claude-sonnet-4-5"));
    let rates = c.upstreams[0].limits.rates(big);
    assert_eq!(rates.requests_per_minute, Some(50), "the base's");
    assert_eq!(rates.input_tokens_per_minute, Some(8000), "its own");
    assert_eq!(rates.max_concurrency, None, "the upstream's, not a class's");
    assert_eq!(c.upstreams[0].limits.concurrency(), Some(4));
    let other = c.upstreams[0].limits.rates(classes.other());
    assert_eq!(other.input_tokens_per_minute, Some(30000));
    let fast = classes.of(Some("claude-haiku-4-5"));
    assert_eq!(c.limits.client.rates(fast).requests_per_minute, Some(7));
    assert!(classes.cache_reads_count(fast) && !classes.cache_reads_count(big));
    assert!(c.limits.client.rates(big).requests_per_minute.is_none());
}

#[test]
fn a_limit_for_an_unknown_class_is_named() {
    let e = error(
        r#"
        [[upstreams]]
        name = "a"
        url = "https://api.anthropic.com"
        [upstreams.limits.classes.sonet]
        requests_per_minute = 5
        "#,
    );
    assert!(
        e.contains("upstreams[0].limits.classes.sonet`: no model class \"sonet\"")
            && e.contains("\"sonnet\""),
        "{e}"
    );
    let e = error("[limits]\nclasses = [{ name = \"x\" }]\n");
    assert!(
        e.contains("limits.classes[0]` needs a name and contains"),
        "{e}"
    );
    let e = error("[limits]\nclasses = [{ name = \"Other\", contains = [\"a\"] }]\n");
    assert!(e.contains("limits.classes`: class names are"), "{e}");
}

#[test]
fn body_limits_default_to_the_apis_and_max_body_bytes_moves_the_read_ones() {
    use levee_exchange::body_limits::Route;
    let c = parse(
        "[rails]\nmax_body_bytes = 1000\n[rails.body_limits]\ncount_tokens = 500\nbatches = 2000\n",
    )
    .unwrap();
    let limits = c.rails.body_limits;
    assert_eq!(limits.of(Route::Messages), 1000);
    assert_eq!(limits.of(Route::ChatCompletions), 1000);
    assert_eq!(limits.of(Route::Other), 1000);
    assert_eq!(limits.of(Route::CountTokens), 500);
    assert_eq!(limits.of(Route::Batches), 2000);
    assert_eq!(limits.of(Route::Files), 500 << 20);
    let e = error("[rails.body_limits]\nbatches = 0\nfiles = 2000000000\n");
    assert!(
        e.contains("`rails.body_limits.batches`") && e.contains("`rails.body_limits.files`"),
        "{e}"
    );
    let e = error("[rails.body_limits]\nbatch = 5\n");
    assert!(
        e.contains("unknown field `batch`") && e.contains("`batches`"),
        "{e}"
    );
}
