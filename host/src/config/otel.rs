//! `[otel]`: OpenTelemetry traces over OTLP/HTTP (protobuf). Off unless
//! `endpoint` is set.

use super::Secret;
use super::check::{Checker, Key};
use super::raw::RawOtel;
use super::types::Upstream;
use super::upstream::{parse_url, tls, with_defaults};
use std::time::Duration;

/// OTLP's default export timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// OTLP/HTTP's path for traces, put after the endpoint's base path.
pub const TRACES_PATH: &str = "/v1/traces";

/// Where and how spans are exported.
#[derive(Clone, Debug, PartialEq)]
pub struct Otel {
    /// The collector, as an upstream levee connects to (its name is
    /// `otlp`; its `base_path` ends with `/v1/traces`).
    pub collector: Upstream,
    /// `service.name` on every span's resource.
    pub service_name: String,
    /// The share of requests without an incoming `traceparent` that are
    /// traced (0.0..=1.0). A request with one follows its sampled flag.
    pub sample_ratio: f64,
    /// Sent with every export (an API key, a dataset); values are secrets.
    pub headers: Vec<(http::HeaderName, Secret)>,
    /// How long one export may take.
    pub timeout: Duration,
}

pub(super) fn otel(c: &mut Checker<'_>, raw: Option<RawOtel>) -> Option<Otel> {
    let raw = raw?;
    let key = Key::file("otel.endpoint");
    let Some(given) = raw.endpoint else {
        c.report(
            &key,
            format_args!(
                "{key} is required in [otel], like endpoint = \"http://127.0.0.1:4318\" \
                 (spans go to its {TRACES_PATH}); remove [otel] to trace nothing"
            ),
        );
        return None;
    };
    let target = parse_url(&given)
        .map_err(|e| c.report(&key, e.describe(&key, &given)))
        .ok();
    let mut collector = target.map(|t| with_defaults("otlp".into(), t));
    if let Some(up) = &mut collector {
        if !up.base_path.ends_with(TRACES_PATH) {
            up.base_path.push_str(TRACES_PATH);
        }
        up.connect_timeout = Duration::from_secs(5);
        up.max_connections = 4;
        up.proxy_from_env = false;
        if let Some(raw_tls) = raw.tls {
            up.tls = tls(c, "otel.tls", raw_tls);
        }
    }
    let sample_ratio = c.ratio("otel.sample_ratio", raw.sample_ratio, 1.0);
    let mut headers = Vec::new();
    for (name, value) in raw.headers.unwrap_or_default() {
        let key = Key::file(format!("otel.headers.{name}"));
        let parsed_name = http::HeaderName::from_bytes(name.as_bytes());
        let valid_value = http::HeaderValue::from_str(&value).is_ok();
        match (parsed_name, valid_value) {
            (Ok(n), true) => headers.push((n, Secret::new(value))),
            (Err(_), _) => c.report(&key, format_args!("{key}: {name:?} is not a header name")),
            (_, false) => c.report(
                &key,
                format_args!("{key}: the value is not a valid header value (control characters?)"),
            ),
        }
    }
    let service_name = raw.service_name.unwrap_or_else(|| "levee".into());
    if service_name.is_empty() || service_name.len() > 256 {
        let key = Key::file("otel.service_name");
        c.report(&key, format_args!("{key} must be 1 to 256 characters"));
    }
    let timeout = c.millis(
        "otel.timeout_ms",
        raw.timeout_ms,
        100..=120_000,
        DEFAULT_TIMEOUT,
    );
    Some(Otel {
        collector: collector?,
        service_name,
        sample_ratio,
        headers,
        timeout,
    })
}
