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

/// The OpenTelemetry environment variables levee reads, as the SDKs do.
const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const ENV_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
const ENV_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const ENV_DISABLED: &str = "OTEL_SDK_DISABLED";

/// `[otel]`, with what the file leaves out taken from the OpenTelemetry
/// environment variables.
pub(super) fn otel(c: &mut Checker<'_>, raw: Option<RawOtel>) -> Option<Otel> {
    otel_with(c, raw, &|name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })
}

/// [`otel`] with `env` for the environment. The file's keys win. Without
/// `[otel]`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` put after it) turns tracing
/// on, unless `OTEL_SDK_DISABLED=true`.
fn otel_with(
    c: &mut Checker<'_>,
    raw: Option<RawOtel>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Otel> {
    let present = raw.is_some();
    let raw = match raw {
        Some(raw) => raw,
        None if env(ENV_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) => return None,
        None => RawOtel::default(),
    };
    // Where the endpoint came from, and whether `/v1/traces` goes after it.
    let (key, given, append) = match (raw.endpoint, env(ENV_TRACES_ENDPOINT), env(ENV_ENDPOINT)) {
        (Some(given), _, _) => (Key::file("otel.endpoint"), given, true),
        (None, Some(given), _) => (Key::Flag(ENV_TRACES_ENDPOINT), given, false),
        (None, None, Some(given)) => (Key::Flag(ENV_ENDPOINT), given, true),
        // Neither [otel] nor an endpoint in the environment: nothing is
        // traced.
        (None, None, None) if !present => return None,
        (None, None, None) => {
            let key = Key::file("otel.endpoint");
            c.report(
                &key,
                format_args!(
                    "{key} is required in [otel], like endpoint = \"http://127.0.0.1:4318\" \
                     (spans go to its {TRACES_PATH}), unless {ENV_ENDPOINT} is set; remove \
                     [otel] to trace nothing"
                ),
            );
            return None;
        }
    };
    let target = parse_url(&given)
        .map_err(|e| c.report(&key, e.describe(&key, &given)))
        .ok();
    let mut collector = target.map(|t| with_defaults("otlp".into(), t));
    if let Some(up) = &mut collector {
        if append && !up.base_path.ends_with(TRACES_PATH) {
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
    let from_env = env(ENV_TRACES_HEADERS)
        .map(|v| (ENV_TRACES_HEADERS, v))
        .or_else(|| env(ENV_HEADERS).map(|v| (ENV_HEADERS, v)));
    let mut given: Vec<(Key, String, String)> = Vec::new();
    if let Some((var, list)) = from_env {
        for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
            match pair.split_once('=') {
                Some((name, value)) => {
                    let value = percent_decode(value.trim());
                    given.push((Key::Flag(var), name.trim().to_ascii_lowercase(), value));
                }
                None => c.report(
                    &Key::Flag(var),
                    format_args!("`{var}` must be name=value pairs separated by commas"),
                ),
            }
        }
    }
    for (name, value) in raw.headers.unwrap_or_default() {
        // The file's value wins over the environment's.
        given.retain(|(_, n, _)| !n.eq_ignore_ascii_case(&name));
        given.push((Key::file(format!("otel.headers.{name}")), name, value));
    }
    for (key, name, value) in given {
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
    let service_name = raw
        .service_name
        .or_else(|| env(ENV_SERVICE_NAME))
        .unwrap_or_else(|| "levee".into());
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

/// `%XX` escapes decoded, as the OTLP headers variable writes values; a
/// malformed escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(toml: &str, vars: &[(&str, &str)]) -> Result<Option<Otel>, String> {
        let raw: super::super::raw::RawConfig = toml::from_str(toml).unwrap();
        let mut c = Checker::new(None);
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let otel = otel_with(&mut c, raw.otel, &env);
        c.finish().map(|()| otel).map_err(|e| e.to_string())
    }

    #[test]
    fn the_environment_turns_tracing_on_as_the_sdks_read_it() {
        assert!(with_env("", &[]).unwrap().is_none());
        let otel = with_env(
            "",
            &[
                (ENV_ENDPOINT, "http://collector:4318"),
                (ENV_SERVICE_NAME, "gw-eu"),
                (ENV_HEADERS, "x-ingest-key=k%201, Authorization=Bearer%20t"),
            ],
        )
        .unwrap()
        .expect("on");
        assert_eq!(otel.collector.url(), "http://collector:4318/v1/traces");
        assert_eq!(otel.service_name, "gw-eu");
        let headers: Vec<_> = otel
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.expose()))
            .collect();
        assert_eq!(
            headers,
            [("x-ingest-key", "k 1"), ("authorization", "Bearer t")]
        );
        // The traces endpoint is used as it is, and wins over the base.
        let vars = [
            (ENV_ENDPOINT, "http://base:4318"),
            (ENV_TRACES_ENDPOINT, "http://collector:4318/custom/path"),
        ];
        let otel = with_env("", &vars).unwrap().unwrap();
        assert_eq!(otel.collector.url(), "http://collector:4318/custom/path");
        // OTEL_SDK_DISABLED turns off what the environment turned on.
        let disabled = [(ENV_ENDPOINT, "http://c:4318"), (ENV_DISABLED, "TRUE")];
        assert!(with_env("", &disabled).unwrap().is_none());
    }

    #[test]
    fn the_files_keys_win_over_the_environment() {
        let vars = [
            (ENV_ENDPOINT, "http://from-env:4318"),
            (ENV_SERVICE_NAME, "from-env"),
            (ENV_HEADERS, "x-key=env,x-other=env"),
            (ENV_DISABLED, "true"),
        ];
        let file = "[otel]\nendpoint = \"http://from-file:4318\"\nservice_name = \"file\"\n\
                    [otel.headers]\nx-key = \"file\"\n";
        let otel = with_env(file, &vars).unwrap().unwrap();
        assert_eq!(otel.collector.host, "from-file");
        assert_eq!(otel.service_name, "file");
        let headers: Vec<_> = otel
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.expose()))
            .collect();
        assert_eq!(headers, [("x-other", "env"), ("x-key", "file")]);
        // An empty [otel] takes its endpoint from the environment.
        let otel = with_env("[otel]\nsample_ratio = 0.5\n", &vars)
            .unwrap()
            .unwrap();
        assert_eq!(otel.collector.host, "from-env");
    }

    #[test]
    fn a_bad_variable_is_named() {
        let e = with_env("", &[(ENV_ENDPOINT, "collector:4318")]).unwrap_err();
        assert!(
            e.contains("`OTEL_EXPORTER_OTLP_ENDPOINT` must be an http:// or https:// URL"),
            "{e}"
        );
        let e = with_env(
            "",
            &[(ENV_ENDPOINT, "http://c:1"), (ENV_HEADERS, "novalue")],
        )
        .unwrap_err();
        assert!(
            e.contains("`OTEL_EXPORTER_OTLP_HEADERS` must be name=value pairs"),
            "{e}"
        );
        assert_eq!(percent_decode("a%2Cb%zz%4"), "a,b%zz%4");
    }
}
