//! Collecting problems: each one names its key, and those from the file
//! are prefixed with the file's name, so every line of a [`ConfigError`]
//! stands on its own.

use super::ConfigError;
use super::raw::Millis;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a value came from: a dotted key in the file, or a command-line
/// flag. Displays as the key in backticks.
#[derive(Clone, Debug)]
pub(super) enum Key {
    /// A dotted key, with indices: `upstreams[1].url`.
    File(String),
    /// A flag: `--upstream`.
    Flag(&'static str),
}

impl Key {
    /// A key in the file.
    pub fn file(key: impl Into<String>) -> Key {
        Key::File(key.into())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Key::File(k) => k.as_str(),
            Key::Flag(k) => k,
        };
        write!(f, "`{name}`")
    }
}

/// The problems found so far, and what is needed to word them.
pub(super) struct Checker<'a> {
    /// The file's name as given, or `<config>`.
    origin: String,
    /// The directory relative paths in the file are resolved against.
    dir: Option<&'a Path>,
    problems: Vec<String>,
}

impl<'a> Checker<'a> {
    pub fn new(origin: Option<&'a Path>) -> Checker<'a> {
        Checker {
            origin: origin_name(origin),
            dir: origin.and_then(Path::parent),
            problems: Vec::new(),
        }
    }

    /// Records a problem with `key`; `message` names the key itself.
    pub fn report(&mut self, key: &Key, message: impl fmt::Display) {
        self.problems.push(match key {
            Key::File(_) => format!("{}: {message}", self.origin),
            Key::Flag(_) => message.to_string(),
        });
    }

    /// A path from `key`: one from the file is relative to the file's
    /// directory; one from a flag, to the working directory.
    pub fn resolve(&self, key: &Key, path: &Path) -> PathBuf {
        match (key, self.dir) {
            (Key::File(_), Some(dir)) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// An integer in `range`, or `default` when absent. Out of range is
    /// reported, and `default` stands in so checking can go on.
    pub fn int<T: TryFrom<i64>>(
        &mut self,
        key: &str,
        value: Option<i64>,
        range: RangeInclusive<i64>,
        default: T,
    ) -> T {
        let Some(v) = value else { return default };
        if !range.contains(&v) {
            let key = Key::file(key);
            self.report(
                &key,
                format_args!(
                    "{key} must be between {} and {}, got {v}",
                    range.start(),
                    range.end()
                ),
            );
            return default;
        }
        T::try_from(v).unwrap_or(default)
    }

    /// A share from 0.0 to 1.0, or `default` when absent or out of range
    /// (reported).
    pub fn ratio(&mut self, key: &str, value: Option<f64>, default: f64) -> f64 {
        match value {
            None => default,
            Some(r) if r.is_finite() && (0.0..=1.0).contains(&r) => r,
            Some(r) => {
                let key = Key::file(key);
                self.report(
                    &key,
                    format_args!(
                        "{key} must be a number from 0.0 to 1.0, got {}",
                        toml_float(r)
                    ),
                );
                default
            }
        }
    }

    /// A duration (milliseconds, or text with units), checked like
    /// [`Checker::int`] in milliseconds.
    pub fn millis(
        &mut self,
        key: &str,
        value: Option<Millis>,
        range: RangeInclusive<i64>,
        default: Duration,
    ) -> Duration {
        let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        let value = self.whole_ms(key, value);
        Duration::from_millis(self.int(key, value, range, default_ms))
    }

    /// A duration in whole milliseconds; text that is no duration is
    /// reported, and reads as absent.
    pub fn whole_ms(&mut self, key: &str, value: Option<Millis>) -> Option<i64> {
        match value? {
            Millis::Whole(ms) => Some(ms),
            Millis::Text(text) => match humantime::parse_duration(&text) {
                Ok(d) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                Err(e) => {
                    let key = Key::file(key);
                    self.report(
                        &key,
                        format_args!(
                            "{key} must be whole milliseconds or a duration such as \"30s\", \
                             \"20m\" or \"1h 30m\", got {text:?} ({e})"
                        ),
                    );
                    None
                }
            },
        }
    }

    /// `Ok` if nothing was reported.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

/// How messages name the file: as given, or `<config>` for bare text.
pub(super) fn origin_name(origin: Option<&Path>) -> String {
    origin.map_or_else(|| "<config>".to_string(), |p| p.display().to_string())
}

/// A float the way TOML writes it: `nan`, `inf`, `-inf`, `1.5`, `2.0`.
pub(super) fn toml_float(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{v:?}")
    }
}
