//! The edge's settings, read from Spin variables (feature `spin`) or from
//! the environment (`LEVEE_<NAME>`), validated with errors that name the
//! setting, the bad value and what would be valid.
//!
//! Secrets (`api_key`, `access_token`) are never echoed in an error.

use levee_exchange::body_limits::{self, BodyLimits, Route};
use levee_exchange::classes::Classes;
use levee_exchange::rails::defaults;
use std::fmt;

/// One upstream, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Its name in errors and logs.
    pub name: String,
    /// `true` for `https`.
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// A path prefix without a trailing slash (may be empty).
    pub base_path: String,
    /// Failover group: lower groups are preferred (default 0).
    pub group: u8,
    /// Share of traffic within the group (default 1).
    pub weight: u16,
}

impl Upstream {
    /// `scheme://host[:port]`, as runtimes name what they allow.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// Per-upstream limits enforced through shared state, per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub requests: Option<u32>,
    /// Input tokens per minute.
    pub input_tokens: Option<u32>,
    /// The share of each limit, in percent, that the first window after an
    /// unused one grants: the API answers a sudden burst after idle with
    /// 429s (its acceleration limits). 100 turns the ramp off.
    pub ramp_percent: u32,
}

/// The first window after idle grants half of each limit, as the bundled
/// host's buckets start at half after idle.
pub const RAMP_PERCENT: u32 = 50;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests: None,
            input_tokens: None,
            ramp_percent: RAMP_PERCENT,
        }
    }
}

/// A secret value: printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything the edge needs to serve a request.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The upstreams, in configured order; the policy names them by index.
    pub upstreams: Vec<Upstream>,
    /// The policy's own configuration (JSON; empty for its defaults).
    pub policy_config: String,
    /// Rail: attempts per request, whatever the policy says.
    pub max_attempts: u32,
    /// Rail: the whole request's deadline.
    pub deadline_ms: u64,
    /// A stream with no bytes for this long is cut with an error frame.
    pub idle_timeout_ms: u64,
    /// How long a Messages stream's start is held back until content
    /// flows (`levee_exchange::early`); 0 holds nothing back.
    pub hold_ms: u64,
    /// Each endpoint's largest request body; above it, 413.
    pub body_limits: BodyLimits,
    /// How much of an error body is read before the policy decides.
    pub error_body_bytes: usize,
    /// Per-upstream limits (need a key-value store to be shared).
    pub limits: Limits,
    /// The model classes the limits' windows and 429 closures are kept
    /// per.
    pub classes: Classes,
    /// Sent upstream as `x-api-key` in place of the client's credentials.
    pub api_key: Option<Secret>,
    /// When set, clients must send `authorization: Bearer <token>`.
    pub access_token: Option<Secret>,
    /// The key-value store's label (Spin).
    pub kv_store: String,
    /// A route prefix to remove before forwarding (e.g. `/deps` when the
    /// component serves `/deps/...`); empty for none.
    pub strip_prefix: String,
}

/// A setting that is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting as the operator spells it (`LEVEE_UPSTREAMS`, or the
    /// Spin variable `upstreams`).
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// Where settings come from.
pub trait Source {
    /// The raw value of `name` (a lower-case setting name), if set and
    /// non-empty.
    fn get(&self, name: &str) -> Result<Option<String>, ConfigError>;
    /// How the operator spells `name` in this source.
    fn spell(&self, name: &str) -> String;
}

/// The environment: `upstreams` is `LEVEE_UPSTREAMS`.
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(std::env::var(self.spell(name))
            .ok()
            .filter(|v| !v.trim().is_empty()))
    }
    fn spell(&self, name: &str) -> String {
        format!("LEVEE_{}", name.to_ascii_uppercase())
    }
}

impl Settings {
    /// Reads and validates every setting from `src`.
    pub fn load(src: &dyn Source) -> Result<Settings, ConfigError> {
        let err = |name: &str, message: String| ConfigError {
            key: src.spell(name),
            message,
        };
        let num = |name: &str, min: u64, max: u64, default: u64| -> Result<u64, ConfigError> {
            match src.get(name)? {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(err(
                        name,
                        format!("must be a whole number from {min} to {max}, got {v:?}"),
                    )),
                },
            }
        };
        let upstreams = match src.get("upstreams")? {
            Some(v) => parse_upstreams(&v).map_err(|m| err("upstreams", m))?,
            None => {
                return Err(err(
                    "upstreams",
                    "is not set; give one or more `name=url`, comma-separated, e.g. \
                     `primary=https://api.anthropic.com`"
                        .into(),
                ));
            }
        };
        let policy_config = src.get("policy_config")?.unwrap_or_default();
        let limits = match src.get("limits")? {
            Some(v) => parse_limits(&v).map_err(|m| err("limits", m))?,
            None => Limits::default(),
        };
        let api_key = src.get("api_key")?.map(Secret);
        let access_token = src.get("access_token")?.map(Secret);
        if api_key.is_some() && access_token.is_none() {
            return Err(err(
                "api_key",
                format!(
                    "is set but `{}` is not: the edge would lend its key to anyone; set both",
                    src.spell("access_token")
                ),
            ));
        }
        Ok(Settings {
            upstreams,
            policy_config,
            max_attempts: num(
                "max_attempts",
                1,
                defaults::MAX_ATTEMPTS_LIMIT,
                defaults::MAX_ATTEMPTS,
            )? as u32,
            deadline_ms: num(
                "deadline_ms",
                1,
                defaults::REQUEST_DEADLINE_LIMIT_MS,
                defaults::REQUEST_DEADLINE_MS,
            )?,
            idle_timeout_ms: num(
                "idle_timeout_ms",
                1,
                defaults::IDLE_TIMEOUT_LIMIT_MS,
                defaults::IDLE_TIMEOUT_MS,
            )?,
            hold_ms: num("hold_ms", 0, defaults::HOLD_LIMIT_MS, defaults::HOLD_MS)?,
            body_limits: {
                let standard = num(
                    "max_body_bytes",
                    1,
                    defaults::MAX_BODY_BYTES_LIMIT,
                    defaults::MAX_BODY_BYTES,
                )? as usize;
                let limits = BodyLimits::with_standard(standard);
                match src.get("body_limits")? {
                    Some(v) => parse_body_limits(&v, limits).map_err(|m| err("body_limits", m))?,
                    None => limits,
                }
            },
            error_body_bytes: {
                let (least, most) = defaults::ERROR_BODY_BYTES_RANGE;
                num("error_body_bytes", least, most, defaults::ERROR_BODY_BYTES)? as usize
            },
            limits,
            classes: match src.get("classes")? {
                Some(v) => parse_classes(&v).map_err(|m| err("classes", m))?,
                None => Classes::default(),
            },
            api_key,
            access_token,
            kv_store: src.get("kv_store")?.unwrap_or_else(|| "default".into()),
            strip_prefix: match src.get("strip_prefix")? {
                None => String::new(),
                Some(p) if p.starts_with('/') && !p.ends_with('/') => p,
                Some(p) => {
                    return Err(err(
                        "strip_prefix",
                        format!(
                            "must start with `/` and not end with one, e.g. `/deps`, got {p:?}"
                        ),
                    ));
                }
            },
        })
    }
}

/// `name=url[;group=N][;weight=N]`, comma-separated.
pub fn parse_upstreams(text: &str) -> Result<Vec<Upstream>, String> {
    let mut out: Vec<Upstream> = Vec::new();
    for (i, item) in text.split(',').map(str::trim).enumerate() {
        let Some((name, url)) = item.split_once('=') else {
            return Err(format!(
                "entry {} ({item:?}) must be `name=url`, e.g. `primary=https://api.anthropic.com`",
                i + 1
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "entry {}: the name {name:?} must be letters, digits, `-` or `_`",
                i + 1
            ));
        }
        if out.iter().any(|u| u.name == name) {
            return Err(format!("entry {}: the name {name:?} is used twice", i + 1));
        }
        let mut parts = url.split(';').map(str::trim);
        let url = parts.next().unwrap_or_default();
        let mut up = parse_url(name, url).map_err(|m| format!("entry {} ({name}): {m}", i + 1))?;
        for option in parts {
            let bad = || {
                format!(
                    "entry {} ({name}): {option:?} must be `group=N` (0 to 255) or `weight=N` (0 to 1000)",
                    i + 1
                )
            };
            match option.split_once('=') {
                Some(("group", n)) => up.group = n.trim().parse().map_err(|_| bad())?,
                Some(("weight", n)) => {
                    up.weight = n
                        .trim()
                        .parse()
                        .ok()
                        .filter(|&w| w <= 1000)
                        .ok_or_else(bad)?
                }
                _ => return Err(bad()),
            }
        }
        out.push(up);
    }
    Ok(out)
}

fn parse_url(name: &str, url: &str) -> Result<Upstream, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    if rest.contains(['?', '#', '@']) {
        return Err(format!(
            "{url:?} must not carry a query, a fragment or credentials"
        ));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // A bracketed IPv6 host may hold colons; the port follows the `]`.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match authority[host_end..].rfind(':') {
        Some(i) => (
            &authority[..host_end + i],
            Some(&authority[host_end + i + 1..]),
        ),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!(
            "{url:?}: the port {port:?} is not a number from 0 to 65535"
        ));
    }
    Ok(Upstream {
        name: name.to_owned(),
        https,
        authority: authority.to_owned(),
        base_path: path.trim_end_matches('/').to_owned(),
        group: 0,
        weight: 1,
    })
}

/// `requests=N,input_tokens=N` (per minute, per upstream).
pub fn parse_limits(text: &str) -> Result<Limits, String> {
    let mut limits = Limits::default();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} must be `kind=N`"))?;
        let n: u32 = v
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{}: {v:?} must be a positive whole number", k.trim()))?;
        match k.trim() {
            "requests" => limits.requests = Some(n),
            "input_tokens" => limits.input_tokens = Some(n),
            "ramp" if n <= 100 => limits.ramp_percent = n,
            "ramp" => return Err(format!("ramp: {n} must be a percent, 1 to 100")),
            other => {
                return Err(format!(
                    "unknown limit {other:?}; known: requests, input_tokens (per minute), ramp (percent)"
                ));
            }
        }
    }
    Ok(limits)
}

/// `name=substring|substring`, comma-separated, tried in order (the
/// built-in `count_tokens`, `batches` and `other` follow).
pub fn parse_classes(text: &str) -> Result<Classes, String> {
    let mut given: Vec<(&str, Vec<&str>)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, contains) = item.split_once('=').ok_or_else(|| {
            format!("{item:?} must be `name=substring|substring`, e.g. `fast=haiku|mini`")
        })?;
        given.push((name.trim(), contains.split('|').map(str::trim).collect()));
    }
    let given: Vec<(&str, &[&str])> = given.iter().map(|(n, s)| (*n, &s[..])).collect();
    Classes::new(&given)
}

/// `endpoint=N` (bytes), comma-separated, over `limits`.
pub fn parse_body_limits(text: &str, mut limits: BodyLimits) -> Result<BodyLimits, String> {
    let known = || {
        let names: Vec<&str> = Route::KEYED.iter().map(|(_, name)| *name).collect();
        names.join(", ")
    };
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            format!("{item:?} must be `endpoint=bytes`, e.g. `batches=268435456`")
        })?;
        let (k, v) = (k.trim(), v.trim());
        let Some(&(route, _)) = Route::KEYED.iter().find(|(_, name)| *name == k) else {
            return Err(format!("unknown endpoint {k:?}; known: {}", known()));
        };
        *limits.of_mut(route) = v
            .parse()
            .ok()
            .filter(|n| (1..=body_limits::MOST).contains(n))
            .ok_or_else(|| format!("{k}: {v:?} must be 1 to {} bytes", body_limits::MOST))?;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, &'static str>);
    impl Source for Map {
        fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
            Ok(self.0.get(name).map(|v| v.to_string()))
        }
        fn spell(&self, name: &str) -> String {
            name.to_owned()
        }
    }

    fn load(pairs: &[(&'static str, &'static str)]) -> Result<Settings, ConfigError> {
        Settings::load(&Map(pairs.iter().copied().collect()))
    }

    #[test]
    fn upstreams_parse_with_names_ports_and_base_paths() {
        let ups = parse_upstreams(
            "primary=https://api.anthropic.com, backup=http://127.0.0.1:8080/base/",
        )
        .unwrap();
        assert_eq!(ups[0].authority, "api.anthropic.com");
        assert!(ups[0].https);
        assert_eq!(
            (
                ups[1].authority.as_str(),
                ups[1].base_path.as_str(),
                ups[1].https
            ),
            ("127.0.0.1:8080", "/base", false)
        );
        let ups = parse_upstreams("a=http://a;group=1;weight=5").unwrap();
        assert_eq!((ups[0].group, ups[0].weight), (1, 5));
    }

    #[test]
    fn bad_upstreams_are_named_with_the_entry() {
        for (bad, want) in [
            ("https://x", "entry 1 (\"https://x\") must be `name=url`"),
            (
                "a=ftp://x",
                "entry 1 (a): \"ftp://x\" must start with http:// or https://",
            ),
            (
                "a=http://x,a=http://y",
                "entry 2: the name \"a\" is used twice",
            ),
            ("a=http://:80", "entry 1 (a): \"http://:80\" has no host"),
            (
                "a=http://h:99999",
                "entry 1 (a): \"http://h:99999\": the port \"99999\"",
            ),
            (
                "a=http://u:p@h",
                "must not carry a query, a fragment or credentials",
            ),
            (
                "a=http://h;group=x",
                "entry 1 (a): \"group=x\" must be `group=N` (0 to 255)",
            ),
            ("a=http://h;weight=1001", "or `weight=N` (0 to 1000)"),
        ] {
            let e = parse_upstreams(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_upstreams_and_bad_numbers_name_the_setting() {
        let e = load(&[]).unwrap_err();
        assert_eq!(e.key, "upstreams");
        let e = load(&[("upstreams", "a=http://h"), ("max_attempts", "0")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`max_attempts`: must be a whole number from 1 to 20, got \"0\""
        );
    }

    #[test]
    fn a_key_without_an_access_token_is_refused_and_never_echoed() {
        let e = load(&[
            ("upstreams", "a=http://h"),
            ("api_key", "sk-ant-secret-xyz"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "api_key");
        assert!(!e.message.contains("sk-ant-secret-xyz"));
        let s = load(&[
            ("upstreams", "a=http://h"),
            ("api_key", "sk-ant-secret-xyz"),
            ("access_token", "tok"),
        ])
        .unwrap();
        assert!(!format!("{s:?}").contains("sk-ant-secret-xyz"));
    }

    #[test]
    fn limits_parse_and_refuse_unknown_kinds() {
        assert_eq!(
            parse_limits("requests=60, input_tokens=40000").unwrap(),
            Limits {
                requests: Some(60),
                input_tokens: Some(40_000),
                ramp_percent: RAMP_PERCENT,
            }
        );
        assert_eq!(parse_limits("ramp=100").unwrap().ramp_percent, 100);
        assert!(parse_limits("ramp=101").unwrap_err().contains("percent"));
        assert!(
            parse_limits("tokens=5")
                .unwrap_err()
                .contains("unknown limit \"tokens\"")
        );
        assert!(parse_limits("requests=0").unwrap_err().contains("positive"));
    }

    #[test]
    fn body_limits_parse_over_the_apis_and_name_what_is_wrong() {
        let base = BodyLimits::with_standard(1000);
        let limits = parse_body_limits("batches=5000, count_tokens = 10", base).unwrap();
        assert_eq!(limits.of(Route::Batches), 5000);
        assert_eq!(limits.of(Route::CountTokens), 10);
        assert_eq!(limits.of(Route::Messages), 1000);
        assert_eq!(limits.of(Route::Files), 500 << 20);
        let e = parse_body_limits("batch=5", base).unwrap_err();
        assert!(
            e.contains("unknown endpoint \"batch\"") && e.contains("batches"),
            "{e}"
        );
        let e = parse_body_limits("files=0", base).unwrap_err();
        assert!(e.contains("files: \"0\" must be 1 to"), "{e}");
    }

    #[test]
    fn classes_parse_in_order_and_a_bad_one_says_why() {
        let classes = parse_classes("fast=haiku|mini, big=opus").unwrap();
        let names: Vec<&str> = classes.names().map(|n| &**n).collect();
        assert_eq!(names, ["fast", "big", "count_tokens", "batches", "other"]);
        assert_eq!(
            classes.name(classes.of(Some("gpt-4o-mini"))).as_ref(),
            "fast"
        );
        assert_eq!(
            classes.name(classes.of(Some("claude-sonnet-4-5"))).as_ref(),
            "other"
        );
        assert!(
            parse_classes("fast")
                .unwrap_err()
                .contains("must be `name=substring")
        );
        assert!(parse_classes("other=x").unwrap_err().contains("built-in"));
        assert!(parse_classes("a=x|").unwrap_err().contains("non-empty"));
    }
}
