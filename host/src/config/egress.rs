//! Egress settings: an upstream's CONNECT proxies and the `[dns]` section.
//! Proxy credentials are held as a [`Secret`] and never quoted back.

use super::check::{Checker, Key};
use super::raw::RawDns;
use super::types::Secret;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The port of a proxy URL that names none (curl's default).
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// An HTTP CONNECT proxy. `Debug` shows `host:port` only, never the
/// credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyEndpoint {
    /// Host name or IP (without IPv6 brackets).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `user:password` for basic auth, percent-decoded.
    pub auth: Option<Secret>,
}

impl ProxyEndpoint {
    /// `host:port` (IPv6 bracketed): how logs, errors and metrics name it.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.auth.is_some() { " (auth)" } else { "" };
        write!(f, "ProxyEndpoint({}{auth})", self.label())
    }
}

/// Parses `[http://][user:pass@]host[:port][/]`. The error says why, without
/// quoting the URL (it may hold a password); see [`redact_proxy`].
pub fn parse_proxy(given: &str) -> Result<ProxyEndpoint, &'static str> {
    let rest = match given.split_once("://") {
        None => given,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err("only http:// proxies (HTTP CONNECT) are supported"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err("a proxy URL has no path, query or fragment");
    }
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 host needs its closing `]`")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.contains([' ', '@']) {
        return Err("a proxy URL needs a host");
    }
    let port = match port {
        None => DEFAULT_PROXY_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err("the port must be from 1 to 65535"),
        },
    };
    let auth = match userinfo {
        None => None,
        Some(u) => Some(Secret::new(
            percent_decode(u).ok_or("bad %-escape in the credentials")?,
        )),
    };
    Ok(ProxyEndpoint {
        host: host.to_string(),
        port,
        auth,
    })
}

/// `given` with any `user:pass@` replaced by `[redacted]@`. Without an
/// `@`, what follows the scheme is shown only if it reads as `host[:port]`:
/// a mistyped `user:secret` (the `@host` forgotten) is redacted whole.
pub fn redact_proxy(given: &str) -> String {
    let start = given.find("://").map_or(0, |i| i + 3);
    let rest = &given[start..];
    if let Some(at) = rest.rfind('@') {
        return format!("{}[redacted]{}", &given[..start], &rest[at..]);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(_, after)| {
            after.is_empty() || after.strip_prefix(':').is_some_and(is_port)
        }),
        None => authority
            .split_once(':')
            .is_none_or(|(_, port)| is_port(port)),
    };
    if host_port {
        given.to_string()
    } else {
        format!("{}[redacted]{}", &given[..start], &rest[authority.len()..])
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `upstreams[i].proxies`, each parsed; a bad one is reported (redacted).
pub(super) fn proxies(
    c: &mut Checker<'_>,
    i: usize,
    raw: Option<Vec<String>>,
) -> Vec<ProxyEndpoint> {
    let mut out = Vec::new();
    for (j, given) in raw.unwrap_or_default().iter().enumerate() {
        match parse_proxy(given) {
            Ok(p) => out.push(p),
            Err(why) => {
                let key = Key::file(format!("upstreams[{i}].proxies[{j}]"));
                c.report(
                    &key,
                    format_args!(
                        "{key} must be a proxy URL like \"http://user:pass@127.0.0.1:3128\" ({why}), got {:?}",
                        redact_proxy(given)
                    ),
                );
            }
        }
    }
    out
}

/// Name resolution: `[dns]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dns {
    /// Name servers to ask instead of the system's resolver; empty for
    /// the system's.
    pub resolvers: Vec<SocketAddr>,
    /// Shortest time an answer from `resolvers` is kept.
    pub min_ttl: Duration,
    /// Longest time an answer from `resolvers` is kept.
    pub max_ttl: Duration,
    /// Fixed addresses per host name (lower case), asked of no resolver.
    pub overrides: BTreeMap<String, Vec<IpAddr>>,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            resolvers: Vec::new(),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            overrides: BTreeMap::new(),
        }
    }
}

/// Checks `[dns]`.
pub(super) fn dns(c: &mut Checker<'_>, raw: RawDns) -> Dns {
    let d = Dns::default();
    let mut resolvers = Vec::new();
    for (i, given) in raw.resolvers.unwrap_or_default().iter().enumerate() {
        let parsed = given.parse::<SocketAddr>().ok().or_else(|| {
            given
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match parsed {
            Some(a) => resolvers.push(a),
            None => {
                let key = Key::file(format!("dns.resolvers[{i}]"));
                c.report(
                    &key,
                    format_args!("{key} must be an IP address with an optional port, like \"1.1.1.1:53\", got {given:?}"),
                );
            }
        }
    }
    let min_ttl = c.millis("dns.min_ttl_ms", raw.min_ttl_ms, 0..=86_400_000, d.min_ttl);
    let max_ttl = c.millis("dns.max_ttl_ms", raw.max_ttl_ms, 1..=86_400_000, d.max_ttl);
    if min_ttl > max_ttl {
        let key = Key::file("dns.min_ttl_ms");
        c.report(
            &key,
            format_args!(
                "{key} ({}) must not be above `dns.max_ttl_ms` ({})",
                min_ttl.as_millis(),
                max_ttl.as_millis()
            ),
        );
    }
    let mut overrides = BTreeMap::new();
    for (host, addrs) in raw.overrides.unwrap_or_default() {
        let key = Key::file(format!("dns.overrides.\"{host}\""));
        let parsed: Option<Vec<IpAddr>> = addrs.iter().map(|a| a.parse().ok()).collect();
        match parsed {
            Some(ips) if !ips.is_empty() => {
                overrides.insert(host.to_ascii_lowercase(), ips);
            }
            _ => c.report(
                &key,
                format_args!("{key} must be a non-empty list of IP addresses, like [\"1.2.3.4\"], got {addrs:?}"),
            ),
        }
    }
    Dns {
        resolvers,
        min_ttl,
        max_ttl,
        overrides,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_and_without_credentials() {
        let p = parse_proxy("http://us%40er:p%3Ass@127.0.0.1:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 3128));
        assert_eq!(p.auth.as_ref().unwrap().expose(), "us@er:p:ss");
        assert_eq!(format!("{p:?}"), "ProxyEndpoint(127.0.0.1:3128 (auth))");
        let p = parse_proxy("proxy.corp:8080/").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.auth),
            ("proxy.corp", 8080, None)
        );
        let p = parse_proxy("http://[::1]").unwrap();
        assert_eq!(p.label(), "[::1]:1080");
        assert!(parse_proxy("https://p:1").is_err());
        assert!(parse_proxy("socks5://p:1").is_err());
        assert!(parse_proxy("http://p:0").is_err());
        assert!(parse_proxy("http://p:1/path").is_err());
        assert!(parse_proxy("http://:1").is_err());
    }

    #[test]
    fn redaction_hides_the_userinfo_and_anything_that_is_not_a_host() {
        assert_eq!(redact_proxy("http://u:secret@h:1"), "http://[redacted]@h:1");
        assert_eq!(redact_proxy("u:secret@h:1"), "[redacted]@h:1");
        assert_eq!(redact_proxy("http://h:1"), "http://h:1");
        assert_eq!(redact_proxy("h"), "h");
        assert_eq!(redact_proxy("http://[::1]:3128/"), "http://[::1]:3128/");
        // No `@`: what is not a host and port may be credentials.
        assert_eq!(redact_proxy("http://u:secret"), "http://[redacted]");
        assert_eq!(redact_proxy("u:secret/x"), "[redacted]/x");
        assert_eq!(redact_proxy("http://u:12ab"), "http://[redacted]");
        assert_eq!(redact_proxy("[::1]:pw"), "[redacted]");
    }
}
