//! The gateway's configuration: a TOML file, command-line overrides, and
//! the validated [`Config`] built from them.
//!
//! Loading happens in two steps, as two types:
//!
//! 1. `raw`: the file as written, every key optional and unknown keys
//!    refused at every level (`deny_unknown_fields`). TOML syntax and type
//!    errors come from here, with the file's name, line and column.
//! 2. `validate`: each value checked and turned into a runtime type
//!    ([`Config`], [`Upstream`], [`Rails`], …): ranges enforced, durations
//!    made [`Duration`]s, paths resolved against the config file's
//!    directory, and files that must exist (CA roots, the policy's JSON
//!    config, the admin token) read now rather than at first use. Every
//!    problem is reported, not only the first, each naming its dotted key,
//!    the value as given, and what would be valid.
//!
//! `levee.example.toml` at the repository root documents every key; a test
//! loads it so it cannot drift from this module.

mod check;
mod egress;
mod health;
mod limits;
mod otel;
mod policy_settings;
mod raw;
mod types;
mod upstream;
mod validate;

#[cfg(test)]
mod tests;

pub use egress::{DEFAULT_PROXY_PORT, Dns, ProxyEndpoint, parse_proxy, redact_proxy};
pub use health::{HealthCheck, HttpProbe, Outlier};
pub use limits::{Limits, OnFailure, PRIORITY_HEADER, RedisLimits};
pub use otel::Otel;
pub use types::{
    Admin, BodyLimits, LimitSpec, Log, LogFormat, PolicySettings, Rails, Ramp, Scheme, ScopeLimits,
    Secret, Streaming, Tls, TlsVersion, Trace, Upstream,
};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after a shutdown
    /// signal.
    pub shutdown_grace: Duration,
    /// How long an HTTP/1 client has to send a request's headers, counted
    /// from the connection's start or the end of its last response: it
    /// closes slow headers and idle keep-alive connections alike.
    pub header_timeout: Duration,
    /// Worker threads serving clients; 0 for one per CPU core (see
    /// [`Config::worker_count`]).
    pub workers: usize,
    /// The upstreams, in the order given; never empty.
    pub upstreams: Vec<Upstream>,
    /// The policy component and its limits.
    pub policy: PolicySettings,
    /// Hard limits no policy can loosen.
    pub rails: Rails,
    /// Streaming responses.
    pub streaming: Streaming,
    /// The admin listener.
    pub admin: Admin,
    /// Logging.
    pub log: Log,
    /// Trace recording.
    pub trace: Trace,
    /// Passive outlier detection, the circuit and the slow signal.
    pub outlier: Outlier,
    /// Name resolution.
    pub dns: Dns,
    /// Admission: the queue, priorities and per-client limits.
    pub limits: Limits,
    /// OpenTelemetry traces; `None` (the default) exports none.
    pub otel: Option<Otel>,
    /// The file it was loaded from, if any.
    pub path: Option<PathBuf>,
}

/// Command-line values that take precedence over the file. Each replaces
/// the file's value (which is then not checked); paths in flags are
/// relative to the working directory.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen ADDR`: replaces `listen`.
    pub listen: Option<String>,
    /// `--upstream URL`, repeatable: replaces the whole `[[upstreams]]`
    /// list with upstreams named `upstream-1`, `upstream-2`, … and default
    /// settings.
    pub upstreams: Vec<String>,
    /// `--policy SPEC`: replaces `policy.source`.
    pub policy: Option<String>,
    /// `--policy-config FILE`: replaces `policy.config_file` and
    /// `[policy.config]`.
    pub policy_config: Option<PathBuf>,
}

impl Config {
    /// How many worker threads serve clients: `workers`, or one per CPU
    /// core when it is 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Loads the file at `path` (or, with `None`, starts from the defaults)
    /// and applies `overrides`.
    /// The config file to use, in the order the peers look: the flag,
    /// `$LEVEE_CONFIG`, `./levee.toml`, `$XDG_CONFIG_HOME/levee/levee.toml`
    /// (`~/.config/...` without it), `/etc/levee/levee.toml`. `None`: run
    /// on the defaults. A file named by the flag or the variable is used
    /// even if missing, so that its absence is reported.
    pub fn discover(flag: Option<&Path>) -> Option<PathBuf> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(given) = flag
            .map(Path::to_path_buf)
            .or_else(|| var("LEVEE_CONFIG").map(PathBuf::from))
        {
            return Some(given);
        }
        let config_home = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
        [
            Some(PathBuf::from("levee.toml")),
            config_home.map(|d| d.join("levee/levee.toml")),
            Some(PathBuf::from("/etc/levee/levee.toml")),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
    }

    /// Loads `path` (see [`Config::discover`]), or the defaults.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Config::from_toml("", None, overrides);
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!(
                "{}: cannot read the config file: {e}",
                path.display()
            )],
        })?;
        Config::from_toml(&text, Some(path), overrides)
    }

    /// Parses and validates `text`. `origin` is the file it came from: its
    /// name prefixes messages (`<config>` without one) and its directory is
    /// where relative paths start (the working directory without one).
    pub fn from_toml(
        text: &str,
        origin: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![format!(
                "{}: {}{}",
                check::origin_name(origin),
                e.to_string().trim_end(),
                hint(text, &e)
            )],
        })?;
        validate::build(raw, origin, overrides)
    }
}

/// A hint for a TOML mistake whose message alone does not say what to do.
fn hint(text: &str, e: &toml::de::Error) -> &'static str {
    let at = e.span().and_then(|s| text.get(s)).unwrap_or_default();
    if at.starts_with("[upstreams]") && e.message().starts_with("invalid type: map") {
        "\nhint: each upstream is an [[upstreams]] table, with double brackets"
    } else {
        ""
    }
}

/// Why a configuration was refused: one or more problems, each a
/// self-contained line (a TOML syntax error spans several, with a caret
/// under the offending text). `Display` prints them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    /// Each problem's message, in file order.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// What differs from `started` among the settings a reload cannot
    /// change (they are read once, at start): each by its key, for the
    /// operator to know that a restart is needed.
    pub fn needs_restart(&self, started: &Config) -> Vec<&'static str> {
        let (a, b) = (started, self);
        let (pa, pb) = (&a.policy, &b.policy);
        [
            ("listen", a.listen != b.listen),
            ("workers", a.workers != b.workers),
            ("shutdown_grace_ms", a.shutdown_grace != b.shutdown_grace),
            ("header_timeout_ms", a.header_timeout != b.header_timeout),
            ("admin.listen", a.admin.listen != b.admin.listen),
            ("admin token", a.admin.token != b.admin.token),
            (
                "admin.open_metrics",
                a.admin.open_metrics != b.admin.open_metrics,
            ),
            (
                "log.level and log.format",
                a.log.level != b.log.level || a.log.format != b.log.format,
            ),
            ("trace", a.trace != b.trace),
            ("otel", a.otel != b.otel),
            (
                "rails.retry_budget_*",
                a.rails.retry_budget_ratio != b.rails.retry_budget_ratio
                    || a.rails.retry_budget_min_retries != b.rails.retry_budget_min_retries,
            ),
            (
                "policy limits and cache",
                pa.limits != pb.limits || pa.cache != pb.cache,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}
