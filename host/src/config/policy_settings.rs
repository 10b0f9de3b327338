//! `[policy]`, `--policy` and `--policy-config`: which component, its own
//! config as JSON, its limits and its compile cache.

use super::Overrides;
use super::check::{Checker, Key, toml_float};
use super::raw::RawPolicy;
use super::types::PolicySettings;
use crate::policy::{BUILTINS, CompileCache, Limits, PolicySource};
use serde_json::{Map, Number, Value};
use std::path::Path;

/// The policy used when none is named.
pub(super) const DEFAULT_SOURCE: &str = "builtin:standard";

pub(super) fn build(c: &mut Checker<'_>, raw: RawPolicy, overrides: &Overrides) -> PolicySettings {
    let source = match (&overrides.policy, &raw.source) {
        (Some(spec), _) => source(c, &Key::Flag("--policy"), spec),
        (None, Some(spec)) => source(c, &Key::file("policy.source"), spec),
        (None, None) => PolicySource::parse(DEFAULT_SOURCE),
    };
    let config_json = match (&overrides.policy_config, raw.config_file, raw.config) {
        (Some(path), _, _) => json_file(c, &Key::Flag("--policy-config"), path),
        (None, Some(_), Some(_)) => {
            c.report(
                &Key::file("policy.config_file"),
                "`policy.config_file` and `[policy.config]` cannot both be set; keep one",
            );
            String::new()
        }
        (None, Some(path), None) => json_file(c, &Key::file("policy.config_file"), &path),
        (None, None, Some(table)) => {
            let json = table_to_json(c, "policy.config", toml::Value::Table(table));
            serde_json::to_string(&json).unwrap_or_default()
        }
        (None, None, None) => String::new(),
    };
    let d = Limits::default();
    let limits = Limits {
        call_timeout: c.millis(
            "policy.call_timeout_ms",
            raw.call_timeout_ms,
            1..=1000,
            d.call_timeout,
        ),
        memory_bytes: c.int::<usize>(
            "policy.memory_mb",
            raw.memory_mb,
            1..=1024,
            d.memory_bytes >> 20,
        ) << 20,
        instances: c.int("policy.instances", raw.instances, 1..=64, d.instances),
    };
    let cache = match (raw.cache, raw.cache_dir) {
        (Some(false), Some(_)) => {
            c.report(
                &Key::file("policy.cache_dir"),
                "`policy.cache_dir` and `policy.cache = false` cannot both be set; remove one",
            );
            CompileCache::disabled()
        }
        (Some(false), None) => CompileCache::disabled(),
        (_, Some(dir)) if dir.as_os_str().is_empty() => {
            c.report(
                &Key::file("policy.cache_dir"),
                "`policy.cache_dir` must be a directory path, got \"\"",
            );
            CompileCache::default_location()
        }
        (_, Some(dir)) => CompileCache::at(c.resolve(&Key::file("policy.cache_dir"), &dir)),
        (_, None) => CompileCache::default_location(),
    };
    PolicySettings {
        source,
        config_json,
        limits,
        cache,
    }
}

/// `builtin:NAME`, or a component file that can be opened.
fn source(c: &mut Checker<'_>, key: &Key, spec: &str) -> PolicySource {
    let fallback = || PolicySource::parse(DEFAULT_SOURCE);
    if let Some(name) = spec.strip_prefix("builtin:") {
        if BUILTINS.iter().any(|(n, _)| *n == name) {
            return PolicySource::parse(spec);
        }
        let known: Vec<String> = BUILTINS
            .iter()
            .map(|(n, _)| format!("builtin:{n}"))
            .collect();
        c.report(
            key,
            format_args!(
                "{key} names no built-in policy, got {spec:?}; the built-ins are {}",
                known.join(", ")
            ),
        );
        return fallback();
    }
    if spec.is_empty() {
        c.report(
            key,
            format_args!(
                "{key} must be \"builtin:NAME\" or the path of a .wasm component, got \"\""
            ),
        );
        return fallback();
    }
    let path = c.resolve(key, Path::new(spec));
    match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Err(e) => c.report(
            key,
            format_args!("{key}: cannot read {}: {e}", path.display()),
        ),
        Ok(m) if m.is_dir() => c.report(
            key,
            format_args!(
                "{key} {} is a directory, not a .wasm component",
                path.display()
            ),
        ),
        Ok(_) => return PolicySource::File(path),
    }
    fallback()
}

/// A JSON document, checked to parse and passed on as written. An empty
/// file means the policy's defaults.
fn json_file(c: &mut Checker<'_>, key: &Key, given: &Path) -> String {
    let path = c.resolve(key, given);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            c.report(
                key,
                format_args!("{key}: cannot read {}: {e}", path.display()),
            );
            return String::new();
        }
    };
    if text.trim().is_empty() {
        return String::new();
    }
    if let Err(e) = serde_json::from_str::<Value>(&text) {
        c.report(
            key,
            format_args!("{key} {} is not valid JSON: {e}", path.display()),
        );
        return String::new();
    }
    text
}

/// TOML to JSON. Datetimes become RFC 3339 strings; a NaN or infinite
/// float, which JSON cannot hold, is reported at its dotted key.
pub(super) fn table_to_json(c: &mut Checker<'_>, key: &str, value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::Number(i.into()),
        toml::Value::Float(f) => Number::from_f64(f).map_or_else(
            || {
                let k = Key::file(key);
                c.report(
                    &k,
                    format_args!(
                        "{k} must be a finite number to pass to the policy as JSON, got {}",
                        toml_float(f)
                    ),
                );
                Value::Null
            },
            Value::Number,
        ),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| table_to_json(c, &format!("{key}[{i}]"), v))
                .collect(),
        ),
        toml::Value::Table(t) => Value::Object(
            t.into_iter()
                .map(|(k, v)| {
                    let json = table_to_json(c, &format!("{key}.{k}"), v);
                    (k, json)
                })
                .collect::<Map<String, Value>>(),
        ),
    }
}
