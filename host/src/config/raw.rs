//! The config file as written: every key optional, unknown keys refused at
//! every level. Numbers are read as `i64` (TOML's integer) so that a value
//! out of range is reported by the validator with its key and valid range,
//! rather than by serde as a bare type error.

use serde::Deserialize;
use std::path::PathBuf;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<String>,
    pub shutdown_grace_ms: Option<i64>,
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
    pub limits: RawLimits,
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
    pub connect_timeout_ms: Option<i64>,
    pub tls: Option<RawTls>,
    pub limits: Option<RawLimitSpec>,
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
    pub call_timeout_ms: Option<i64>,
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
    pub request_deadline_ms: Option<i64>,
    pub max_body_bytes: Option<i64>,
    pub retry_budget_ratio: Option<f64>,
    pub retry_budget_min_retries: Option<i64>,
    pub error_body_bytes: Option<i64>,
}

/// `[streaming]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStreaming {
    pub idle_timeout_ms: Option<i64>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    pub allow_remote: Option<bool>,
}

/// `[trace]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrace {
    pub file: Option<PathBuf>,
    pub max_mb: Option<i64>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub queue_size: Option<i64>,
    pub default_priority: Option<i64>,
    pub priority_header: Option<bool>,
    pub client: Option<RawLimitSpec>,
}

/// `[upstreams.limits]` and `[limits.client]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimitSpec {
    pub requests_per_minute: Option<i64>,
    pub input_tokens_per_minute: Option<i64>,
    pub output_tokens_per_minute: Option<i64>,
    pub max_concurrency: Option<i64>,
}
