//! A policy's settings: defaults per profile, and strict JSON parsing whose
//! errors name the key, the bad value, and what would be valid.

use serde_json::{Map, Value};

use crate::backoff::Jitter;
use crate::types::ConfigError;

/// The two decision styles levee ships.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Patient: honours every header, waits out `retry-after` when no other
    /// upstream can take the request, many attempts, long deadline. For
    /// batch and agent workloads.
    Standard,
    /// Impatient: tight deadline, few attempts, fails over at once instead
    /// of waiting, and hands a long wait back to the client as
    /// `retry-after` rather than sleeping through it.
    Interactive,
}

/// Tunables, as plain data.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Attempts per request, first one included (>= 1).
    pub max_attempts: u32,
    /// Backoff shape.
    pub jitter: Jitter,
    /// Backoff base in ms (> 0).
    pub base_ms: u64,
    /// Backoff cap in ms (>= base_ms).
    pub cap_ms: u64,
    /// Per-try timeout until the response head, ms (> 0).
    pub try_timeout_ms: u32,
    /// The policy's own deadline for a request, ms after it was received.
    pub deadline_ms: u64,
    /// The longest header-directed wait the policy will sleep through on the
    /// same upstream; longer waits fail over or give up now.
    pub max_wait_ms: u64,
    /// Share of `max_tokens` reserved as output tokens at admission (0..=1).
    pub output_reserve_share: f64,
    /// Whether to charge the client's own budgets as well as the upstream's.
    pub charge_client: bool,
}

/// The top-level keys, in documentation order.
const KEYS: [&str; 7] = [
    "max_attempts",
    "backoff",
    "try_timeout_ms",
    "deadline_ms",
    "max_wait_ms",
    "output_reserve_share",
    "charge_client",
];

/// The keys of the `backoff` object.
const BACKOFF_KEYS: [&str; 3] = ["jitter", "base_ms", "cap_ms"];

/// The largest `backoff.cap_ms`: ten minutes.
const MAX_CAP_MS: u64 = 600_000;
/// The largest `try_timeout_ms`: one hour.
const MAX_TRY_TIMEOUT_MS: u64 = 3_600_000;
/// The largest `deadline_ms`: one day.
const MAX_DEADLINE_MS: u64 = 86_400_000;

impl Settings {
    /// The profile's defaults.
    ///
    /// Standard follows the official SDKs' backoff (0.5 s × 2^n, capped at
    /// 8 s) and their 10-minute timeout, with 5 attempts and a 15-minute
    /// deadline, and sleeps through waits of up to 5 minutes. Interactive
    /// makes 2 attempts within 90 s, a minute per try, and waits at most 2 s.
    pub fn defaults(profile: Profile) -> Settings {
        match profile {
            Profile::Standard => Settings {
                max_attempts: 5,
                jitter: Jitter::Full,
                base_ms: 500,
                cap_ms: 8_000,
                try_timeout_ms: 600_000,
                deadline_ms: 900_000,
                max_wait_ms: 300_000,
                output_reserve_share: 1.0,
                charge_client: true,
            },
            Profile::Interactive => Settings {
                max_attempts: 2,
                jitter: Jitter::Full,
                base_ms: 200,
                cap_ms: 2_000,
                try_timeout_ms: 60_000,
                deadline_ms: 90_000,
                max_wait_ms: 2_000,
                output_reserve_share: 0.5,
                charge_client: true,
            },
        }
    }

    /// Parses a configuration document over the profile's defaults.
    ///
    /// An empty or all-whitespace document means the defaults. Otherwise it
    /// must be a JSON object; every key is optional, unknown keys are
    /// refused, and the first invalid value is reported with its dotted key,
    /// the value as given and the valid range. A bound that depends on
    /// another key (`backoff.cap_ms >= backoff.base_ms`,
    /// `max_wait_ms <= deadline_ms`) is checked against that key's given or
    /// default value and reported at the key the document sets.
    pub fn from_json(profile: Profile, json: &str) -> Result<Settings, ConfigError> {
        let mut s = Settings::defaults(profile);
        if json.trim().is_empty() {
            return Ok(s);
        }
        let doc: Value = serde_json::from_str(json)
            .map_err(|e| error("", format!("must be a JSON object: {e}")))?;
        let Value::Object(top) = doc else {
            return Err(error("", format!("must be a JSON object, got {doc}")));
        };
        reject_unknown(&top, "", &KEYS)?;

        if let Some(v) = top.get("max_attempts") {
            s.max_attempts = integer(v, 1, 10)
                .ok_or_else(|| bad("max_attempts", "an integer from 1 to 10", v))?
                as u32;
        }
        if let Some(v) = top.get("backoff") {
            backoff(&mut s, v)?;
        }
        if let Some(v) = top.get("try_timeout_ms") {
            let what = "an integer of milliseconds from 1 to 3600000";
            s.try_timeout_ms = integer(v, 1, MAX_TRY_TIMEOUT_MS)
                .ok_or_else(|| bad("try_timeout_ms", what, v))?
                as u32;
        }
        if let Some(v) = top.get("deadline_ms") {
            let what = "an integer of milliseconds from 1 to 86400000";
            s.deadline_ms =
                integer(v, 1, MAX_DEADLINE_MS).ok_or_else(|| bad("deadline_ms", what, v))?;
        }
        match top.get("max_wait_ms") {
            Some(v) => {
                let what = format!(
                    "an integer of milliseconds from 0 to deadline_ms ({})",
                    s.deadline_ms
                );
                s.max_wait_ms =
                    integer(v, 0, s.deadline_ms).ok_or_else(|| bad("max_wait_ms", &what, v))?;
            }
            None if s.max_wait_ms > s.deadline_ms => {
                return Err(error(
                    "deadline_ms",
                    format!(
                        "must be at least max_wait_ms ({}, the default), got {}",
                        s.max_wait_ms, s.deadline_ms
                    ),
                ));
            }
            None => {}
        }
        if let Some(v) = top.get("output_reserve_share") {
            s.output_reserve_share = v
                .as_f64()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| bad("output_reserve_share", "a number from 0.0 to 1.0", v))?;
        }
        if let Some(v) = top.get("charge_client") {
            s.charge_client = v
                .as_bool()
                .ok_or_else(|| bad("charge_client", "true or false", v))?;
        }
        Ok(s)
    }
}

/// Applies the `backoff` object to `s`.
fn backoff(s: &mut Settings, v: &Value) -> Result<(), ConfigError> {
    let Value::Object(obj) = v else {
        return Err(bad(
            "backoff",
            "an object with the keys jitter, base_ms, cap_ms",
            v,
        ));
    };
    reject_unknown(obj, "backoff.", &BACKOFF_KEYS)?;
    if let Some(v) = obj.get("jitter") {
        s.jitter = match v.as_str() {
            Some("full") => Jitter::Full,
            Some("equal") => Jitter::Equal,
            Some("decorrelated") => Jitter::Decorrelated,
            _ => {
                return Err(bad(
                    "backoff.jitter",
                    r#"one of "full", "equal", "decorrelated""#,
                    v,
                ));
            }
        };
    }
    if let Some(v) = obj.get("base_ms") {
        s.base_ms = integer(v, 1, u64::MAX)
            .ok_or_else(|| bad("backoff.base_ms", "an integer of milliseconds >= 1", v))?;
    }
    match obj.get("cap_ms") {
        Some(v) => {
            let what = format!(
                "an integer of milliseconds from backoff.base_ms ({}) to {MAX_CAP_MS}",
                s.base_ms
            );
            s.cap_ms =
                integer(v, s.base_ms, MAX_CAP_MS).ok_or_else(|| bad("backoff.cap_ms", &what, v))?;
        }
        None if s.base_ms > s.cap_ms => {
            return Err(error(
                "backoff.base_ms",
                format!(
                    "must be at most backoff.cap_ms ({}, the default), got {}",
                    s.cap_ms, s.base_ms
                ),
            ));
        }
        None => {}
    }
    Ok(())
}

/// Refuses the first key of `obj` (in sorted order) that is not in `known`.
fn reject_unknown(
    obj: &Map<String, Value>,
    prefix: &str,
    known: &[&str],
) -> Result<(), ConfigError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(error(
            &format!("{prefix}{k}"),
            format!("is not a known key; expected one of: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A JSON integer within `min..=max`, or `None`.
fn integer(v: &Value, min: u64, max: u64) -> Option<u64> {
    v.as_u64().filter(|n| (min..=max).contains(n))
}

/// "must be `what`, got `v`" at `key`.
fn bad(key: &str, what: &str, v: &Value) -> ConfigError {
    error(key, format!("must be {what}, got {v}"))
}

/// A [`ConfigError`] at `key`.
fn error(key: &str, message: String) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> (String, String) {
        let e = Settings::from_json(Profile::Standard, json).unwrap_err();
        (e.key, e.message)
    }

    fn pair(key: &str, message: &str) -> (String, String) {
        (key.to_owned(), message.to_owned())
    }

    #[test]
    fn empty_document_means_defaults() {
        for profile in [Profile::Standard, Profile::Interactive] {
            for doc in ["", "   ", "\n\t", "{}"] {
                assert_eq!(
                    Settings::from_json(profile, doc),
                    Ok(Settings::defaults(profile))
                );
            }
        }
    }

    #[test]
    fn defaults_are_as_documented() {
        let s = Settings::defaults(Profile::Standard);
        assert_eq!(
            (s.max_attempts, s.jitter, s.base_ms, s.cap_ms),
            (5, Jitter::Full, 500, 8000)
        );
        assert_eq!(
            (s.try_timeout_ms, s.deadline_ms, s.max_wait_ms),
            (600_000, 900_000, 300_000)
        );
        assert_eq!((s.output_reserve_share, s.charge_client), (1.0, true));
        let i = Settings::defaults(Profile::Interactive);
        assert_eq!(
            (i.max_attempts, i.jitter, i.base_ms, i.cap_ms),
            (2, Jitter::Full, 200, 2000)
        );
        assert_eq!(
            (i.try_timeout_ms, i.deadline_ms, i.max_wait_ms),
            (60_000, 90_000, 2_000)
        );
        assert_eq!((i.output_reserve_share, i.charge_client), (0.5, true));
    }

    #[test]
    fn every_key_can_be_set() {
        let json = r#"{
            "max_attempts": 10,
            "backoff": {"jitter": "decorrelated", "base_ms": 100, "cap_ms": 600000},
            "try_timeout_ms": 3600000,
            "deadline_ms": 86400000,
            "max_wait_ms": 86400000,
            "output_reserve_share": 0,
            "charge_client": false
        }"#;
        let s = Settings::from_json(Profile::Interactive, json).unwrap();
        assert_eq!(
            s,
            Settings {
                max_attempts: 10,
                jitter: Jitter::Decorrelated,
                base_ms: 100,
                cap_ms: 600_000,
                try_timeout_ms: 3_600_000,
                deadline_ms: 86_400_000,
                max_wait_ms: 86_400_000,
                output_reserve_share: 0.0,
                charge_client: false,
            }
        );
    }

    #[test]
    fn missing_keys_keep_the_profile_default() {
        let s =
            Settings::from_json(Profile::Interactive, r#"{"backoff":{"jitter":"equal"}}"#).unwrap();
        assert_eq!(s.jitter, Jitter::Equal);
        assert_eq!((s.base_ms, s.cap_ms, s.max_attempts), (200, 2000, 2));
    }

    #[test]
    fn negative_base_names_key_and_value() {
        assert_eq!(
            err(r#"{"backoff":{"base_ms":-3}}"#),
            pair(
                "backoff.base_ms",
                "must be an integer of milliseconds >= 1, got -3"
            )
        );
    }

    #[test]
    fn wrong_types_quote_the_value_as_given() {
        assert_eq!(
            err(r#"{"max_attempts":"abc"}"#),
            pair(
                "max_attempts",
                r#"must be an integer from 1 to 10, got "abc""#
            )
        );
        assert_eq!(
            err(r#"{"max_attempts":2.5}"#),
            pair("max_attempts", "must be an integer from 1 to 10, got 2.5")
        );
        assert_eq!(
            err(r#"{"charge_client":"yes"}"#),
            pair("charge_client", r#"must be true or false, got "yes""#)
        );
        assert_eq!(
            err(r#"{"backoff":[1]}"#),
            pair(
                "backoff",
                "must be an object with the keys jitter, base_ms, cap_ms, got [1]"
            )
        );
        assert_eq!(
            err(r#"{"backoff":{"jitter":"Full"}}"#),
            pair(
                "backoff.jitter",
                r#"must be one of "full", "equal", "decorrelated", got "Full""#
            )
        );
    }

    #[test]
    fn out_of_range_values_name_the_range() {
        assert_eq!(
            err(r#"{"max_attempts":0}"#),
            pair("max_attempts", "must be an integer from 1 to 10, got 0")
        );
        assert_eq!(
            err(r#"{"max_attempts":11}"#),
            pair("max_attempts", "must be an integer from 1 to 10, got 11")
        );
        assert_eq!(
            err(r#"{"try_timeout_ms":0}"#),
            pair(
                "try_timeout_ms",
                "must be an integer of milliseconds from 1 to 3600000, got 0"
            )
        );
        assert_eq!(
            err(r#"{"deadline_ms":86400001}"#),
            pair(
                "deadline_ms",
                "must be an integer of milliseconds from 1 to 86400000, got 86400001"
            )
        );
        assert_eq!(
            err(r#"{"output_reserve_share":1.5}"#),
            pair(
                "output_reserve_share",
                "must be a number from 0.0 to 1.0, got 1.5"
            )
        );
        assert_eq!(
            err(r#"{"backoff":{"cap_ms":600001}}"#),
            pair(
                "backoff.cap_ms",
                "must be an integer of milliseconds from backoff.base_ms (500) to 600000, got 600001"
            )
        );
    }

    #[test]
    fn cross_key_bounds_are_reported_at_the_given_key() {
        assert_eq!(
            err(r#"{"backoff":{"base_ms":1000,"cap_ms":999}}"#),
            pair(
                "backoff.cap_ms",
                "must be an integer of milliseconds from backoff.base_ms (1000) to 600000, got 999"
            )
        );
        assert_eq!(
            err(r#"{"backoff":{"base_ms":9000}}"#),
            pair(
                "backoff.base_ms",
                "must be at most backoff.cap_ms (8000, the default), got 9000"
            )
        );
        assert_eq!(
            err(r#"{"deadline_ms":1000,"max_wait_ms":1001}"#),
            pair(
                "max_wait_ms",
                "must be an integer of milliseconds from 0 to deadline_ms (1000), got 1001"
            )
        );
        assert_eq!(
            err(r#"{"deadline_ms":1000}"#),
            pair(
                "deadline_ms",
                "must be at least max_wait_ms (300000, the default), got 1000"
            )
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        assert_eq!(
            err(r#"{"max_attempt":3}"#),
            pair(
                "max_attempt",
                "is not a known key; expected one of: max_attempts, backoff, try_timeout_ms, \
                 deadline_ms, max_wait_ms, output_reserve_share, charge_client"
            )
        );
        assert_eq!(
            err(r#"{"backoff":{"base":3}}"#),
            pair(
                "backoff.base",
                "is not a known key; expected one of: jitter, base_ms, cap_ms"
            )
        );
    }

    #[test]
    fn non_objects_and_invalid_json_are_refused_as_a_whole() {
        assert_eq!(err("[1, 2]"), pair("", "must be a JSON object, got [1,2]"));
        assert_eq!(
            err(r#"{"max_attempts": 3,}"#),
            pair(
                "",
                "must be a JSON object: trailing comma at line 1 column 20"
            )
        );
        assert_eq!(
            err("max_attempts = 3"),
            pair(
                "",
                "must be a JSON object: expected value at line 1 column 1"
            )
        );
    }

    #[test]
    fn display_puts_the_key_first() {
        let e = Settings::from_json(Profile::Standard, r#"{"max_attempts":0}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`max_attempts` must be an integer from 1 to 10, got 0"
        );
    }
}
