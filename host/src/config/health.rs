//! `[upstreams.health]` (active checks, per upstream, off unless given) and
//! `[outlier]` (passive detection, the circuit and the slow signal, on by
//! default for every upstream).

use super::check::{Checker, Key, toml_float};
use super::raw::{RawHealth, RawOutlier};
use std::time::Duration;

/// Active health checks for one upstream: a TCP (and TLS) connect, then
/// an optional HTTP probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between checks.
    pub interval: Duration,
    /// How long one check (connect and probe) may take.
    pub timeout: Duration,
    /// Passes in a row that make an unhealthy upstream healthy.
    pub rise: u32,
    /// Failures in a row that make a healthy upstream unhealthy.
    pub fall: u32,
    /// The HTTP probe; `None` checks the connection alone.
    pub http: Option<HttpProbe>,
}

/// The HTTP layer of a health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    /// The request method.
    pub method: http::Method,
    /// The path (after the upstream's base path), starting with `/`.
    pub path: String,
    /// Statuses that pass.
    pub expect: Vec<u16>,
}

/// Passive outlier detection, the circuit breaker and the slow signal.
#[derive(Clone, Debug, PartialEq)]
pub struct Outlier {
    /// Whether attempt outcomes can eject an upstream at all.
    pub enabled: bool,
    /// Failures in a row that eject an upstream.
    pub consecutive_failures: u32,
    /// Share of failed attempts in the window that ejects; 0 turns the
    /// rate rule off.
    pub failure_rate_percent: u8,
    /// The window the rate is measured over.
    pub window: Duration,
    /// Attempts the window needs before the rate counts.
    pub min_requests: u32,
    /// The first ejection's length; each repeat doubles it.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// At most this share of the upstreams is ejected at once (at least
    /// one when above 0).
    pub max_ejection_percent: u8,
    /// Requests let through at once while the circuit is half-open.
    pub half_open_probes: u32,
    /// An upstream is slow when its smoothed TTFB is at least this many
    /// times the reference (the lower median of every upstream's).
    pub slow_ttfb_factor: f64,
    /// ... and at least this many milliseconds above it.
    pub slow_ttfb_min_ms: u32,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier {
            enabled: true,
            consecutive_failures: 5,
            failure_rate_percent: 50,
            window: Duration::from_secs(30),
            min_requests: 20,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
            half_open_probes: 1,
            slow_ttfb_factor: 3.0,
            slow_ttfb_min_ms: 500,
        }
    }
}

const METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

/// `upstreams[i].health`.
pub(super) fn health(c: &mut Checker<'_>, i: usize, raw: RawHealth) -> HealthCheck {
    let at = |field: &str| format!("upstreams[{i}].health.{field}");
    let interval = c.millis(
        &at("interval_ms"),
        raw.interval_ms,
        100..=3_600_000,
        Duration::from_secs(5),
    );
    let timeout = c.millis(
        &at("timeout_ms"),
        raw.timeout_ms,
        10..=120_000,
        Duration::from_secs(2),
    );
    if timeout > interval {
        let key = Key::file(at("timeout_ms"));
        c.report(
            &key,
            format_args!(
                "{key} must not exceed interval_ms ({} ms), got {} ms",
                interval.as_millis(),
                timeout.as_millis()
            ),
        );
    }
    let rise = c.int(&at("rise"), raw.rise, 1..=100, 2);
    let fall = c.int(&at("fall"), raw.fall, 1..=100, 3);
    let method = match raw.method.as_deref() {
        None => http::Method::GET,
        Some(m) if METHODS.contains(&m) => m.parse().expect("a listed method parses"),
        Some(other) => {
            let key = Key::file(at("method"));
            c.report(
                &key,
                format_args!("{key} must be one of GET, HEAD or OPTIONS, got {other:?}"),
            );
            http::Method::GET
        }
    };
    let mut expect = Vec::new();
    for (j, &s) in raw.expect_status.iter().flatten().enumerate() {
        match u16::try_from(s) {
            Ok(s) if (100..=599).contains(&s) => expect.push(s),
            _ => {
                let key = Key::file(at(&format!("expect_status[{j}]")));
                c.report(
                    &key,
                    format_args!("{key} must be an HTTP status from 100 to 599, got {s}"),
                );
            }
        }
    }
    if raw.expect_status.as_ref().is_some_and(Vec::is_empty) {
        let key = Key::file(at("expect_status"));
        c.report(
            &key,
            format_args!("{key} must list at least one status, like [200]"),
        );
    }
    let http_only = raw.method.is_some() || raw.expect_status.is_some();
    let http = match raw.path {
        Some(path) if path.starts_with('/') && path.parse::<http::uri::PathAndQuery>().is_ok() => {
            Some(HttpProbe {
                method,
                path,
                expect: if expect.is_empty() { vec![200] } else { expect },
            })
        }
        Some(path) => {
            let key = Key::file(at("path"));
            c.report(
                &key,
                format_args!("{key} must be a URL path starting with `/`, got {path:?}"),
            );
            None
        }
        None if http_only => {
            let key = Key::file(at("path"));
            c.report(
                &key,
                format_args!(
                    "{key} is required with method or expect_status (the HTTP probe), \
                     like path = \"/v1/models\"; leave all three out to check TCP alone"
                ),
            );
            None
        }
        None => None,
    };
    HealthCheck {
        interval,
        timeout,
        rise,
        fall,
        http,
    }
}

/// `[outlier]`.
pub(super) fn outlier(c: &mut Checker<'_>, raw: RawOutlier) -> Outlier {
    let d = Outlier::default();
    let base_ejection = c.millis(
        "outlier.base_ejection_ms",
        raw.base_ejection_ms,
        100..=3_600_000,
        d.base_ejection,
    );
    let max_ejection = c.millis(
        "outlier.max_ejection_ms",
        raw.max_ejection_ms,
        100..=86_400_000,
        d.max_ejection,
    );
    if max_ejection < base_ejection {
        let key = Key::file("outlier.max_ejection_ms");
        c.report(
            &key,
            format_args!(
                "{key} must be at least base_ejection_ms ({} ms), got {} ms",
                base_ejection.as_millis(),
                max_ejection.as_millis()
            ),
        );
    }
    let slow_ttfb_factor = match raw.slow_ttfb_factor {
        None => d.slow_ttfb_factor,
        Some(f) if (1.0..=100.0).contains(&f) => f,
        Some(f) => {
            let key = Key::file("outlier.slow_ttfb_factor");
            c.report(
                &key,
                format_args!(
                    "{key} must be a number from 1.0 to 100.0, got {}",
                    toml_float(f)
                ),
            );
            d.slow_ttfb_factor
        }
    };
    let slow_ttfb_min_ms = c.whole_ms("outlier.slow_ttfb_min_ms", raw.slow_ttfb_min_ms);
    Outlier {
        enabled: raw.enabled.unwrap_or(d.enabled),
        consecutive_failures: c.int(
            "outlier.consecutive_failures",
            raw.consecutive_failures,
            1..=1000,
            d.consecutive_failures,
        ),
        failure_rate_percent: c.int(
            "outlier.failure_rate_percent",
            raw.failure_rate_percent,
            0..=100,
            d.failure_rate_percent,
        ),
        window: c.millis(
            "outlier.window_ms",
            raw.window_ms,
            1_000..=3_600_000,
            d.window,
        ),
        min_requests: c.int(
            "outlier.min_requests",
            raw.min_requests,
            1..=100_000,
            d.min_requests,
        ),
        base_ejection,
        max_ejection,
        max_ejection_percent: c.int(
            "outlier.max_ejection_percent",
            raw.max_ejection_percent,
            0..=100,
            d.max_ejection_percent,
        ),
        half_open_probes: c.int(
            "outlier.half_open_probes",
            raw.half_open_probes,
            1..=100,
            d.half_open_probes,
        ),
        slow_ttfb_factor,
        slow_ttfb_min_ms: c.int(
            "outlier.slow_ttfb_min_ms",
            slow_ttfb_min_ms,
            0..=600_000,
            d.slow_ttfb_min_ms,
        ),
    }
}
