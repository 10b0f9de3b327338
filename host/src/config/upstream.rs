//! `[[upstreams]]` and `--upstream`: names, URLs and TLS.

use super::check::{Checker, Key};
use super::raw::{RawTls, RawUpstream};
use super::types::{Scheme, Tls, TlsVersion, Upstream};
use levee_exchange::classes::Classes;
use std::collections::HashMap;
use std::time::Duration;

/// The upstream used when the file lists none.
pub(super) const DEFAULT: (&str, &str) = ("anthropic", "https://api.anthropic.com");

const DEFAULT_GROUP: u8 = 0;
const DEFAULT_WEIGHT: u16 = 1;
const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// RFC 9113 asks servers to allow at least 100 concurrent streams.
const DEFAULT_MAX_STREAMS_PER_CONNECTION: usize = 100;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_PROXY_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The upstreams from the file, or the default one when it lists none.
pub(super) fn from_file(
    c: &mut Checker<'_>,
    raw: Option<Vec<RawUpstream>>,
    classes: &Classes,
) -> Vec<Upstream> {
    let Some(raw) = raw else {
        let (name, url) = DEFAULT;
        let target = parse_url(url).expect("the default upstream URL is valid");
        return vec![with_defaults(name.to_string(), target)];
    };
    if raw.is_empty() {
        c.report(
            &Key::file("upstreams"),
            format_args!(
                "`upstreams` is empty; add an [[upstreams]] entry, or leave the key out \
                 for the default ({}, {})",
                DEFAULT.0, DEFAULT.1
            ),
        );
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |field: &str| Key::file(format!("upstreams[{i}].{field}"));
        let name = match r.name {
            None => {
                let key = at("name");
                c.report(
                    &key,
                    format_args!("{key} is required, like name = \"anthropic\""),
                );
                None
            }
            Some(name) if !valid_name(&name) => {
                let key = at("name");
                c.report(
                    &key,
                    format_args!(
                        "{key} must be 1 to 32 characters from a-z, 0-9, `_` and `-`, got {name:?}"
                    ),
                );
                None
            }
            Some(name) => {
                if let Some(first) = seen.get(&name) {
                    let key = at("name");
                    c.report(
                        &key,
                        format_args!(
                            "{key} {name:?} is used by upstreams[{first}] too; names must be unique"
                        ),
                    );
                } else {
                    seen.insert(name.clone(), i);
                }
                Some(name)
            }
        };
        let url_key = at("url");
        let target = match &r.url {
            None => {
                c.report(
                    &url_key,
                    format_args!("{url_key} is required, like url = \"{}\"", DEFAULT.1),
                );
                None
            }
            Some(url) => parse_url(url)
                .map_err(|e| c.report(&url_key, e.describe(&url_key, url)))
                .ok(),
        };
        let group = c.int(
            &format!("upstreams[{i}].group"),
            r.group,
            0..=255,
            DEFAULT_GROUP,
        );
        let weight = c.int(
            &format!("upstreams[{i}].weight"),
            r.weight,
            0..=1000,
            DEFAULT_WEIGHT,
        );
        let max_connections = c.int(
            &format!("upstreams[{i}].max_connections"),
            r.max_connections,
            1..=10_000,
            DEFAULT_MAX_CONNECTIONS,
        );
        let max_streams_per_connection = c.int(
            &format!("upstreams[{i}].max_streams_per_connection"),
            r.max_streams_per_connection,
            1..=10_000,
            DEFAULT_MAX_STREAMS_PER_CONNECTION,
        );
        let connect_timeout = c.millis(
            &format!("upstreams[{i}].connect_timeout_ms"),
            r.connect_timeout_ms,
            1..=120_000,
            DEFAULT_CONNECT_TIMEOUT,
        );
        let proxies = super::egress::proxies(c, i, r.proxies);
        let proxy_check_interval = c.millis(
            &format!("upstreams[{i}].proxy_check_interval_ms"),
            r.proxy_check_interval_ms,
            50..=600_000,
            DEFAULT_PROXY_CHECK_INTERVAL,
        );
        let tls = match (r.tls, &target) {
            (None, _) => Tls::default(),
            (Some(_), Some(t)) if t.scheme == Scheme::Http => {
                let key = at("tls");
                let url = r.url.as_deref().unwrap_or_default();
                c.report(
                    &key,
                    format_args!("{key} is only valid for https upstreams, got url {url:?}"),
                );
                Tls::default()
            }
            (Some(raw), _) => tls(c, &format!("upstreams[{i}].tls"), raw),
        };
        let health = r.health.map(|raw| super::health::health(c, i, raw));
        let limits = r.limits.map_or_else(Default::default, |raw| {
            super::limits::scope(c, &format!("upstreams[{i}].limits"), raw, classes)
        });
        if let (Some(name), Some(target)) = (name, target) {
            out.push(Upstream {
                limits,
                group,
                weight,
                max_connections,
                max_streams_per_connection,
                connect_timeout,
                tls,
                health,
                proxies,
                proxy_from_env: r.proxy_from_env.unwrap_or(true),
                proxy_check_interval,
                ..with_defaults(name, target)
            });
        }
    }
    out
}

/// `--upstream URL`, repeated: replaces the file's list. Named
/// `upstream-1`, `upstream-2`, … in the order given.
pub(super) fn from_flags(c: &mut Checker<'_>, urls: &[String]) -> Vec<Upstream> {
    let key = Key::Flag("--upstream");
    let mut out = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        match parse_url(url) {
            Ok(target) => out.push(with_defaults(format!("upstream-{}", i + 1), target)),
            Err(e) => c.report(&key, e.describe(&key, url)),
        }
    }
    out
}

/// `[…tls]` under `at` (`upstreams[0].tls`, `otel.tls`).
pub(super) fn tls(c: &mut Checker<'_>, at: &str, raw: RawTls) -> Tls {
    let min_version = match raw.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            let key = Key::file(format!("{at}.min_version"));
            c.report(
                &key,
                format_args!("{key} must be \"1.2\" or \"1.3\", got {other:?}"),
            );
            TlsVersion::V1_2
        }
    };
    let ca_file = raw.ca_file.and_then(|given| {
        let key = Key::file(format!("{at}.ca_file"));
        let path = c.resolve(&key, &given);
        match std::fs::read(&path) {
            Err(e) => {
                c.report(&key, format_args!("{key}: cannot read {}: {e}", path.display()));
                None
            }
            Ok(pem) if !contains(&pem, b"-----BEGIN CERTIFICATE-----") => {
                c.report(
                    &key,
                    format_args!(
                        "{key} {} holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line)",
                        path.display()
                    ),
                );
                None
            }
            Ok(_) => Some(path),
        }
    });
    Tls {
        ca_file,
        min_version,
    }
}

pub(super) fn with_defaults(name: String, t: Target) -> Upstream {
    Upstream {
        name,
        scheme: t.scheme,
        host: t.host,
        port: t.port,
        base_path: t.base_path,
        group: DEFAULT_GROUP,
        weight: DEFAULT_WEIGHT,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        tls: Tls::default(),
        health: None,
        proxies: Vec::new(),
        proxy_from_env: true,
        proxy_check_interval: DEFAULT_PROXY_CHECK_INTERVAL,
        limits: Default::default(),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where an upstream URL points.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Target {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub base_path: String,
}

/// Why an upstream URL was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum UrlError {
    /// Not `http`/`https`, no host, or not a URL at all.
    NotHttp,
    /// It has `?…` or `#…`.
    QueryOrFragment,
    /// It has `user:password@`; carries the URL with that part redacted.
    Credentials(String),
    /// The port is not 1..=65535.
    Port,
}

impl UrlError {
    /// The message for `key`, quoting `given` (never its credentials).
    pub fn describe(&self, key: &Key, given: &str) -> String {
        match self {
            UrlError::NotHttp => {
                format!("{key} must be an http:// or https:// URL with a host, got {given:?}")
            }
            UrlError::QueryOrFragment => format!(
                "{key} must not have a query or fragment, only an optional base path \
                 (like https://gw.example.com/anthropic), got {given:?}"
            ),
            UrlError::Credentials(redacted) => format!(
                "{key} must not contain a user name or password, got {redacted:?}; \
                 credentials belong in request headers"
            ),
            UrlError::Port => {
                format!("{key} must have a port from 1 to 65535, got {given:?}")
            }
        }
    }
}

/// Parses `http[s]://host[:port][/base/path]`.
pub(super) fn parse_url(given: &str) -> Result<Target, UrlError> {
    let uri: http::Uri = given.parse().map_err(|_| UrlError::NotHttp)?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(UrlError::NotHttp),
    };
    let authority = uri.authority().ok_or(UrlError::NotHttp)?.as_str();
    if let Some(at) = authority.rfind('@') {
        let userinfo = &authority[..at];
        let redacted = given.replacen(&format!("{userinfo}@"), "[redacted]@", 1);
        return Err(UrlError::Credentials(redacted));
    }
    let bracketed = uri.host().unwrap_or_default();
    let host = bracketed.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(UrlError::NotHttp);
    }
    let port = match authority[bracketed.len()..].strip_prefix(':') {
        None => scheme.default_port(),
        Some(digits) => match digits.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(UrlError::Port),
        },
    };
    if uri.query().is_some() || given.contains('#') {
        return Err(UrlError::QueryOrFragment);
    }
    Ok(Target {
        scheme,
        host: host.to_string(),
        port,
        base_path: uri.path().trim_end_matches('/').to_string(),
    })
}
