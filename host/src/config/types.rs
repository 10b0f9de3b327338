//! The validated runtime types: every value is in range, every path is
//! resolved, every file that must exist was read. Nothing here can fail
//! later for a reason the config file could have caught.

pub use levee_exchange::body_limits::BodyLimits;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One upstream API endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Unique, `[a-z0-9_-]{1,32}`; shown in logs, metrics and the admin API.
    pub name: String,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host as written in the URL, without the brackets of an IPv6
    /// literal (`::1`, not `[::1]`), so it can be resolved or used for SNI
    /// as is. [`Upstream::authority`] puts the brackets back.
    pub host: String,
    /// The port; 80 or 443 when the URL names none.
    pub port: u16,
    /// A path prefix put before every request path: `""` or, for example,
    /// `"/anthropic"`. Never ends with `/`.
    pub base_path: String,
    /// Failover group; lower groups are preferred.
    pub group: u8,
    /// Share of traffic within its group (0..=1000).
    pub weight: u16,
    /// Cap on open connections to this upstream.
    pub max_connections: usize,
    /// Requests one HTTP/2 connection carries at once before levee opens
    /// another (within `max_connections`).
    pub max_streams_per_connection: usize,
    /// How long a TCP (and TLS) connect may take.
    pub connect_timeout: Duration,
    /// TLS settings; only meaningful for `https`.
    pub tls: Tls,
    /// Active health checks; `None` (the default) runs none.
    pub health: Option<super::HealthCheck>,
    /// HTTP CONNECT proxies to reach it through, in order of preference.
    pub proxies: Vec<super::ProxyEndpoint>,
    /// With no `proxies`: honour `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.
    pub proxy_from_env: bool,
    /// How often each proxy is probed (a TCP connect).
    pub proxy_check_interval: Duration,
    /// Rate and concurrency limits (`[upstreams.limits]`).
    pub limits: ScopeLimits,
}

impl Upstream {
    /// The value for a `Host` header: the host (bracketed if IPv6), with the
    /// port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The upstream's URL, normalised: `https://host[:port][/base]`.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority(), self.base_path)
    }
}

/// An upstream's URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// TLS settings for an `https` upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// Extra PEM root certificates, added to the system roots. The file
    /// was readable and held at least one certificate when the config was
    /// loaded.
    pub ca_file: Option<PathBuf>,
    /// The oldest TLS version accepted.
    pub min_version: TlsVersion,
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (the default).
    #[default]
    V1_2,
    /// TLS 1.3.
    V1_3,
}

/// Which policy component runs, with what config and limits.
#[derive(Clone, Debug)]
pub struct PolicySettings {
    /// The component: a built-in or a file (already resolved against the
    /// config file's directory).
    pub source: crate::policy::PolicySource,
    /// The document passed to the policy's `configure()`; `""` means the
    /// policy's defaults.
    pub config_json: String,
    /// Per-instance limits.
    pub limits: crate::policy::Limits,
    /// Where compiled components are cached.
    pub cache: crate::policy::CompileCache,
}

impl PolicySettings {
    /// The options to build a [`crate::policy::PolicyEngine`] with.
    pub fn engine_options(&self) -> crate::policy::EngineOptions {
        crate::policy::EngineOptions {
            cache: self.cache.clone(),
            limits: self.limits,
        }
    }
}

/// Hard limits that no policy can loosen.
#[derive(Clone, Debug, PartialEq)]
pub struct Rails {
    /// Attempts per request, the first one included.
    pub max_attempts: u32,
    /// A request is answered by this time after it arrived, whatever the
    /// policy says.
    pub request_deadline: Duration,
    /// The largest request body accepted on a path without a limit of
    /// its own, and the default of those that levee reads.
    pub max_body_bytes: usize,
    /// The largest request body per endpoint.
    pub body_limits: BodyLimits,
    /// Where a body levee only passes on (batches, files) is spooled
    /// once it is too large to hold in memory.
    pub spool_dir: PathBuf,
    /// Retries may add at most this share of the request rate (0.0..=1.0).
    pub retry_budget_ratio: f64,
    /// Retries always allowed, however low the request rate (the budget's
    /// floor).
    pub retry_budget_min_retries: u32,
    /// How much of an upstream error body is read to classify it.
    pub error_body_bytes: usize,
}

/// Streaming responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Streaming {
    /// A stream that sends no bytes for this long is stalled.
    pub idle_timeout: Duration,
    /// How long a Messages stream's head and first events are held back
    /// until content flows: an error event meanwhile is retried. Zero holds
    /// nothing back.
    pub hold: Duration,
}

/// Trace recording (`[trace]`): off unless `file` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The file each finished request is appended to, as one JSON line.
    pub file: Option<PathBuf>,
    /// Recording stops when the file would pass this size.
    pub max_bytes: u64,
}

/// The admin listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// Where it listens; `None` when `listen = "off"`. A non-loopback
    /// address is only here if `allow_remote` was set, and then with a
    /// token.
    pub listen: Option<SocketAddr>,
    /// The bearer token required on every admin request, if any.
    pub token: Option<Secret>,
    /// Record metrics on the request path (`/metrics` serves them).
    pub metrics: bool,
    /// Serve `/metrics` without the token (as `/healthz` and `/readyz`
    /// are), so that a Prometheus on the same host scrapes out of the box;
    /// by default on for a loopback listener, off for a remote one.
    pub open_metrics: bool,
}

/// A value that must never reach a log: `Debug` and `Display` print
/// `[redacted]`. Read it with [`Secret::expose`], only where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals the secret, in time that does not depend
    /// on where they first differ (it does depend on the lengths).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        secret.len() == candidate.len()
            && secret
                .iter()
                .zip(candidate)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// Human-readable lines or JSON objects.
    pub format: LogFormat,
    /// A `tracing` `EnvFilter` directive, checked to parse.
    pub level: String,
    /// One access line per request (target `levee::access`).
    pub access: bool,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Limits for one scope; `None` means unlimited (until an upstream's
/// headers teach one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitSpec {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Input tokens per minute (`input_tokens + cache_creation_input_tokens`).
    pub input_tokens_per_minute: Option<u64>,
    /// Output tokens per minute.
    pub output_tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    pub max_concurrency: Option<u32>,
}

impl LimitSpec {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        *self != LimitSpec::default()
    }
}

/// One scope's limits (an upstream, or each client key): `base` for every
/// model class, and the rates of the classes configured apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeLimits {
    /// Every class's rates, unless set apart; the scope's concurrency.
    pub base: LimitSpec,
    /// Per class, its own rates: each set field replaces the base's.
    pub classes: Vec<(levee_exchange::classes::Class, LimitSpec)>,
}

impl ScopeLimits {
    /// `base` for every class alike.
    pub fn uniform(base: LimitSpec) -> ScopeLimits {
        ScopeLimits {
            base,
            classes: Vec::new(),
        }
    }

    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.base.is_set() || self.classes.iter().any(|(_, s)| s.is_set())
    }

    /// The rates of `class`'s lane: the class's own where set, the base's
    /// otherwise. No concurrency: that is the whole scope's.
    pub fn rates(&self, class: levee_exchange::classes::Class) -> LimitSpec {
        let own = self
            .classes
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, s)| *s)
            .unwrap_or_default();
        LimitSpec {
            requests_per_minute: own.requests_per_minute.or(self.base.requests_per_minute),
            input_tokens_per_minute: own
                .input_tokens_per_minute
                .or(self.base.input_tokens_per_minute),
            output_tokens_per_minute: own
                .output_tokens_per_minute
                .or(self.base.output_tokens_per_minute),
            max_concurrency: None,
        }
    }

    /// The scope's concurrency, across its classes.
    pub fn concurrency(&self) -> Option<u32> {
        self.base.max_concurrency
    }

    /// Every spec mapped by `f`.
    pub fn map(&self, f: impl Fn(&LimitSpec) -> LimitSpec) -> ScopeLimits {
        ScopeLimits {
            base: f(&self.base),
            classes: self.classes.iter().map(|(c, s)| (*c, f(s))).collect(),
        }
    }
}

/// How a bucket comes back after idle: the API answers a sudden ramp of
/// traffic with 429s (its acceleration limits), so a bucket left unused
/// for `idle_ms` grants at most `start` of its capacity at first, the
/// rest coming linearly over `over_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    /// Unused this long (ms), a bucket ramps when used again; 0 never.
    pub idle_ms: u64,
    /// The share of the capacity granted at once when it resumes (0 to 1).
    pub start: f64,
    /// How long (ms) until the whole capacity is there again.
    pub over_ms: u64,
}

/// `start` is a finite share (the config checks it), so equality is total.
impl Eq for Ramp {}

impl Ramp {
    /// No ramp: a full bucket is a full burst.
    pub const OFF: Ramp = Ramp {
        idle_ms: 0,
        start: 1.0,
        over_ms: 0,
    };
}
