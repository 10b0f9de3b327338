//! The config file as written: every key optional, unknown keys refused at
//! every level. Numbers are read as `i64` (TOML's integer) so that a value
//! out of range is reported by the validator with its key and valid range,
//! rather than by serde as a bare type error.

use serde::Deserialize;
use std::path::PathBuf;

/// A duration as written: whole milliseconds (`1200000`), or text with
/// units (`"250ms"`, `"30s"`, `"20m"`, `"1h 30m"`), as the validator reads
/// it; anything else is refused here, naming both forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Millis {
    /// Whole milliseconds.
    Whole(i64),
    /// Text to parse.
    Text(String),
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("whole milliseconds or a duration such as \"30s\" or \"20m\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Millis, E> {
                Ok(Millis::Whole(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis::Whole(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Millis, E> {
                Ok(Millis::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<String>,
    pub shutdown_grace_ms: Option<Millis>,
    pub header_timeout_ms: Option<Millis>,
    pub workers: Option<i64>,
    pub upstreams: Option<Vec<RawUpstream>>,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub rails: RawRails,
    #[serde(default)]
    pub streaming: RawStreaming,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub trace: RawTrace,
    #[serde(default)]
    pub outlier: RawOutlier,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub limits: RawLimits,
    pub otel: Option<RawOtel>,
}

/// One `[[upstreams]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub name: Option<String>,
    pub url: Option<String>,
    pub group: Option<i64>,
    pub weight: Option<i64>,
    pub max_connections: Option<i64>,
    pub max_streams_per_connection: Option<i64>,
    pub connect_timeout_ms: Option<Millis>,
    pub tls: Option<RawTls>,
    pub health: Option<RawHealth>,
    pub proxies: Option<Vec<String>>,
    pub proxy_from_env: Option<bool>,
    pub proxy_check_interval_ms: Option<Millis>,
    pub limits: Option<RawLimitSpec>,
}

/// `[upstreams.health]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub interval_ms: Option<Millis>,
    pub timeout_ms: Option<Millis>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub expect_status: Option<Vec<i64>>,
}

/// `[outlier]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlier {
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<i64>,
    pub failure_rate_percent: Option<i64>,
    pub window_ms: Option<Millis>,
    pub min_requests: Option<i64>,
    pub base_ejection_ms: Option<Millis>,
    pub max_ejection_ms: Option<Millis>,
    pub max_ejection_percent: Option<i64>,
    pub half_open_probes: Option<i64>,
    pub slow_ttfb_factor: Option<f64>,
    pub slow_ttfb_min_ms: Option<Millis>,
}

/// `[upstreams.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub ca_file: Option<PathBuf>,
    pub min_version: Option<String>,
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub source: Option<String>,
    pub config_file: Option<PathBuf>,
    pub call_timeout_ms: Option<Millis>,
    pub memory_mb: Option<i64>,
    pub instances: Option<i64>,
    pub cache_dir: Option<PathBuf>,
    pub cache: Option<bool>,
    /// `[policy.config]`: any keys, handed to the policy as JSON.
    pub config: Option<toml::Table>,
}

/// `[rails]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRails {
    pub max_attempts: Option<i64>,
    pub request_deadline_ms: Option<Millis>,
    pub max_body_bytes: Option<i64>,
    pub body_limits: Option<RawBodyLimits>,
    pub spool_dir: Option<PathBuf>,
    pub retry_budget_ratio: Option<f64>,
    pub retry_budget_min_retries: Option<i64>,
    pub error_body_bytes: Option<i64>,
}

/// `[rails.body_limits]`: bytes per endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBodyLimits {
    pub messages: Option<i64>,
    pub count_tokens: Option<i64>,
    pub chat_completions: Option<i64>,
    pub batches: Option<i64>,
    pub files: Option<i64>,
}

impl RawBodyLimits {
    /// The value set for the route the config names `key`.
    pub fn get(&self, key: &str) -> Option<i64> {
        match key {
            "messages" => self.messages,
            "count_tokens" => self.count_tokens,
            "chat_completions" => self.chat_completions,
            "batches" => self.batches,
            "files" => self.files,
            _ => None,
        }
    }
}

/// `[streaming]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStreaming {
    pub idle_timeout_ms: Option<Millis>,
    pub hold_ms: Option<Millis>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    pub allow_remote: Option<bool>,
    pub metrics: Option<bool>,
    pub open_metrics: Option<bool>,
}

/// `[trace]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrace {
    pub file: Option<PathBuf>,
    pub max_mb: Option<i64>,
}

/// `[otel]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtel {
    pub endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    pub timeout_ms: Option<Millis>,
    pub tls: Option<RawTls>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access: Option<bool>,
}

/// `[dns]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub resolvers: Option<Vec<String>>,
    pub min_ttl_ms: Option<Millis>,
    pub max_ttl_ms: Option<Millis>,
    pub overrides: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub queue_size: Option<i64>,
    pub default_priority: Option<i64>,
    pub priority_header: Option<bool>,
    pub client: Option<RawLimitSpec>,
    pub redis: Option<RawRedis>,
    pub classes: Option<Vec<RawClass>>,
    pub ramp_idle_ms: Option<Millis>,
    pub ramp_start: Option<f64>,
    pub ramp_ms: Option<Millis>,
}

/// One of `[[limits.classes]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClass {
    pub name: Option<String>,
    pub contains: Option<Vec<String>>,
    pub cache_reads_count: Option<bool>,
}

/// `[limits.redis]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub url: Option<String>,
    pub on_failure: Option<String>,
    pub replicas: Option<i64>,
    pub timeout_ms: Option<Millis>,
    pub key_prefix: Option<String>,
}

/// `[upstreams.limits]` and `[limits.client]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimitSpec {
    pub requests_per_minute: Option<i64>,
    pub input_tokens_per_minute: Option<i64>,
    pub output_tokens_per_minute: Option<i64>,
    pub max_concurrency: Option<i64>,
    pub classes: Option<std::collections::BTreeMap<String, RawRates>>,
}

/// `[upstreams.limits.classes.NAME]` and `[limits.client.classes.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRates {
    pub requests_per_minute: Option<i64>,
    pub input_tokens_per_minute: Option<i64>,
    pub output_tokens_per_minute: Option<i64>,
}
