//! The upstream's rate-limit headers, read defensively: a value that is
//! not a plain number in range, or a reset that is in the past or too far
//! ahead, is ignored (with a debug log) and never reaches a bucket.
//!
//! - `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`,
//!   reset as RFC 3339;
//! - `anthropic-ratelimit-tokens-*` (the most restrictive token limit)
//!   stands in for the input-token limit when that is absent;
//! - `x-ratelimit-{limit,remaining,reset}` stand in for the request limit
//!   when that is absent; the reset is seconds from now, or a Unix time.

use super::Reported;
use crate::core::LimitKind;
use crate::core::headers::parse_rfc3339;
use http::{HeaderMap, HeaderValue};

/// The largest limit or remaining value believed (a trillion).
pub const MAX_VALUE: u64 = 1_000_000_000_000;
/// The furthest ahead a reset is believed: per-minute buckets reset within
/// a minute, and a day is beyond any honest reading.
pub const MAX_RESET_MS: u64 = 3_600_000;

/// The rate-limit headers a response may carry, by [`Found`] index: five
/// families of `-limit`, `-remaining` and `-reset`.
const NAMES: [&str; 15] = [
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// A family's first index in [`NAMES`]; `+ LIMIT`, `+ REMAINING` and
/// `+ RESET` name its three headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `anthropic-ratelimit-requests-*`.
    Requests = 0,
    /// `anthropic-ratelimit-input-tokens-*`.
    InputTokens = 3,
    /// `anthropic-ratelimit-tokens-*`: the most restrictive token limit.
    Tokens = 6,
    /// `anthropic-ratelimit-output-tokens-*`.
    OutputTokens = 9,
    /// `x-ratelimit-*`, the generic spelling.
    Generic = 12,
}

const LIMIT: usize = 0;
const REMAINING: usize = 1;
const RESET: usize = 2;

/// A response's rate-limit headers, found in one pass over its headers.
///
/// The API sends about fifteen of them with every response. Looking each
/// up by name hashes the name and probes the map, twenty times a response
/// between the limiter and the metrics; one pass that matches each name
/// once costs a fraction of that.
pub struct Found<'a> {
    values: [Option<&'a HeaderValue>; NAMES.len()],
}

impl<'a> Found<'a> {
    /// The rate-limit headers of `h`; for a name given twice, the first,
    /// as `HeaderMap::get` would return.
    pub fn of(h: &'a HeaderMap) -> Found<'a> {
        let mut values = [None; NAMES.len()];
        for (name, value) in h {
            if let Some(i) = index(name.as_str()) {
                values[i].get_or_insert(value);
            }
        }
        Found { values }
    }

    /// What the headers report, by limit.
    pub fn read(&self, now: u64) -> Vec<(LimitKind, Reported)> {
        if !self.any() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(3);
        let requests = self.family(Family::Requests, rfc3339_reset, now);
        let generic = self.family(Family::Generic, seconds_reset, now);
        out.push((LimitKind::Requests, or(requests, generic)));
        out.push((
            LimitKind::InputTokens,
            or(
                self.family(Family::InputTokens, rfc3339_reset, now),
                self.family(Family::Tokens, rfc3339_reset, now),
            ),
        ));
        out.push((
            LimitKind::OutputTokens,
            self.family(Family::OutputTokens, rfc3339_reset, now),
        ));
        out.retain(|(_, r)| *r != Reported::default());
        for (_, r) in &mut out {
            if let (Some(l), Some(left)) = (r.limit, r.remaining)
                && left > l
            {
                tracing::debug!(
                    limit = l,
                    remaining = left,
                    "ignored a remaining above its limit"
                );
                r.remaining = None;
            }
        }
        for (kind, r) in &mut out {
            if *kind != LimitKind::Requests {
                r.remaining = r.remaining.map(|left| unrounded(left, r.limit));
            }
        }
        out
    }

    /// Whether any rate-limit header is present.
    pub fn any(&self) -> bool {
        self.values.iter().any(Option::is_some)
    }

    /// The `-remaining` value of `family`, when it is a plain number in
    /// range.
    pub fn remaining(&self, family: Family) -> Option<u64> {
        self.number(family as usize + REMAINING)
    }

    fn text(&self, i: usize) -> Option<&'a str> {
        let text = self.values[i]?.to_str().ok().map(str::trim_ascii);
        if text.is_none() {
            tracing::debug!(
                header = NAMES[i],
                "ignored a rate-limit header that is not text"
            );
        }
        text
    }

    /// A plain non-negative integer up to [`MAX_VALUE`], read from the
    /// bytes (digits need no check that the value is text).
    fn number(&self, i: usize) -> Option<u64> {
        let value = self.values[i]?;
        let parsed = parse_number(value.as_bytes());
        if parsed.is_none() {
            tracing::debug!(
                header = NAMES[i],
                ?value,
                "ignored a malformed rate-limit header"
            );
        }
        parsed
    }

    /// What `family` reports, its reset read by `reset`.
    fn family(&self, family: Family, reset: fn(&str, u64) -> Option<u64>, now: u64) -> Reported {
        let at = family as usize;
        Reported {
            limit: self.number(at + LIMIT),
            remaining: self.number(at + REMAINING),
            reset_at: self.text(at + RESET).and_then(|v| reset(v, now)),
        }
    }
}

/// The [`NAMES`] index of a header name, if it is one of them. One
/// `match`: the compiler sorts the names by length and compares bytes, so
/// most other headers are turned away by their length or first byte.
fn index(name: &str) -> Option<usize> {
    Some(match name {
        "anthropic-ratelimit-requests-limit" => 0,
        "anthropic-ratelimit-requests-remaining" => 1,
        "anthropic-ratelimit-requests-reset" => 2,
        "anthropic-ratelimit-input-tokens-limit" => 3,
        "anthropic-ratelimit-input-tokens-remaining" => 4,
        "anthropic-ratelimit-input-tokens-reset" => 5,
        "anthropic-ratelimit-tokens-limit" => 6,
        "anthropic-ratelimit-tokens-remaining" => 7,
        "anthropic-ratelimit-tokens-reset" => 8,
        "anthropic-ratelimit-output-tokens-limit" => 9,
        "anthropic-ratelimit-output-tokens-remaining" => 10,
        "anthropic-ratelimit-output-tokens-reset" => 11,
        "x-ratelimit-limit" => 12,
        "x-ratelimit-remaining" => 13,
        "x-ratelimit-reset" => 14,
        _ => return None,
    })
}

/// The API rounds the token counts it reports to the nearest thousand: a
/// remaining that is a multiple of 1000 may be up to 499 more (never above
/// the limit), and levee lowers its bucket only to the top of that range,
/// so that a rounded report never takes away tokens that are there. An
/// exact count (not a multiple of 1000) is taken as it is.
fn unrounded(left: u64, limit: Option<u64>) -> u64 {
    if !left.is_multiple_of(1_000) {
        return left;
    }
    (left + 499).min(limit.unwrap_or(u64::MAX))
}

/// `primary` when it says anything, else `fallback`.
fn or(primary: Reported, fallback: Reported) -> Reported {
    if primary == Reported::default() {
        fallback
    } else {
        primary
    }
}

/// A plain non-negative integer up to [`MAX_VALUE`].
/// Surrounding ASCII whitespace is ignored.
pub fn parse_number(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 13 {
        return None;
    }
    let mut n = 0u64;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    (n <= MAX_VALUE).then_some(n)
}

/// An RFC 3339 reset within [`MAX_RESET_MS`] of `now` (a past one is now).
pub fn rfc3339_reset(v: &str, now: u64) -> Option<u64> {
    let at = parse_rfc3339(v).filter(|&at| at <= now.saturating_add(MAX_RESET_MS));
    if at.is_none() {
        tracing::debug!(value = v, "ignored a malformed or far-off rate-limit reset");
    }
    at.map(|at| at.max(now))
}

/// `x-ratelimit-reset`: seconds from now (possibly fractional), or a Unix
/// time in seconds when it is that large; within [`MAX_RESET_MS`].
pub fn seconds_reset(v: &str, now: u64) -> Option<u64> {
    let secs: f64 = v
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
    let at = if secs >= 1_000_000_000.0 {
        (secs * 1000.0) as u64
    } else {
        now.saturating_add((secs * 1000.0).ceil() as u64)
    };
    let ok = at <= now.saturating_add(MAX_RESET_MS);
    if !ok {
        tracing::debug!(value = v, "ignored a far-off rate-limit reset");
    }
    ok.then_some(at.max(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    // 2026-01-01T00:00:00Z
    const NOW: u64 = 1_767_225_600_000;

    #[test]
    fn the_anthropic_family_is_read_by_limit() {
        let h = headers(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:01Z"),
            ("anthropic-ratelimit-output-tokens-limit", "8000"),
            ("anthropic-ratelimit-output-tokens-remaining", "7000"),
            ("x-ratelimit-limit", "999"),
        ]);
        let r = Found::of(&h).read(NOW);
        assert_eq!(
            r,
            vec![
                (
                    LimitKind::Requests,
                    Reported {
                        limit: Some(50),
                        remaining: Some(49),
                        reset_at: Some(NOW + 1_000)
                    }
                ),
                (
                    LimitKind::OutputTokens,
                    Reported {
                        limit: Some(8000),
                        // Rounded to the thousand: up to 499 more.
                        remaining: Some(7499),
                        reset_at: None
                    }
                ),
            ]
        );
    }

    #[test]
    fn rounded_token_counts_are_read_as_the_top_of_their_range() {
        let h = headers(&[
            ("anthropic-ratelimit-requests-remaining", "1000"),
            ("anthropic-ratelimit-input-tokens-limit", "30000"),
            ("anthropic-ratelimit-input-tokens-remaining", "30000"),
            ("anthropic-ratelimit-output-tokens-remaining", "7123"),
        ]);
        let left: Vec<_> = Found::of(&h)
            .read(NOW)
            .into_iter()
            .map(|(k, r)| (k, r.remaining))
            .collect();
        assert_eq!(
            left,
            vec![
                (LimitKind::Requests, Some(1000)),
                (LimitKind::InputTokens, Some(30000)),
                (LimitKind::OutputTokens, Some(7123)),
            ],
            "requests are exact, a rounded token count never above its \
             limit, an unrounded one as it is"
        );
        let h = headers(&[("anthropic-ratelimit-input-tokens-remaining", "12000")]);
        assert_eq!(Found::of(&h).read(NOW)[0].1.remaining, Some(12_499));
    }

    /// The one pass finds each rate-limit header that a lookup by name
    /// finds (the first of a repeated one), and nothing else.
    #[test]
    fn one_pass_finds_what_lookups_by_name_find() {
        let mut h = HeaderMap::new();
        for (i, name) in NAMES.iter().enumerate() {
            h.append(*name, HeaderValue::from(i));
            h.append(*name, HeaderValue::from_static("second"));
        }
        for near_miss in [
            "anthropic-ratelimit-requests-limits",
            "anthropic-ratelimit-foo-limit",
            "anthropic-ratelimit-limit",
            "anthropic-ratelimit-",
            "x-ratelimit-requests-limit",
            "x-ratelimit-",
            "ratelimit-limit",
            "content-type",
        ] {
            h.append(near_miss, HeaderValue::from_static("0"));
        }
        let found = Found::of(&h);
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(found.values[i], h.get(*name), "{name}");
        }
        let named: Vec<&str> = h
            .keys()
            .map(|k| k.as_str())
            .filter(|k| index(k).is_some())
            .collect();
        assert_eq!(named.len(), NAMES.len());
        assert!(!Found::of(&headers(&[("content-type", "x"), ("x-ratelimit-foo", "1")])).any());
    }

    #[test]
    fn the_generic_family_stands_in_for_requests() {
        let h = headers(&[
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "15"),
        ]);
        let r = Found::of(&h).read(NOW);
        assert_eq!(r[0].1.reset_at, Some(NOW + 15_000));
        let unix = headers(&[("x-ratelimit-reset", "1767225660")]);
        assert_eq!(Found::of(&unix).read(NOW)[0].1.reset_at, Some(NOW + 60_000));
    }

    #[test]
    fn numbers_are_plain_digits_up_to_the_maximum() {
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b" 42\t"), Some(42));
        assert_eq!(parse_number(b"007"), Some(7));
        assert_eq!(parse_number(b"1000000000000"), Some(MAX_VALUE));
        for bad in [
            &b"1000000000001"[..],
            b"00000000000001",
            b"4 2",
            b"",
            b"\xff",
        ] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hostile_values_are_ignored() {
        for bad in [
            "-1",
            "1e3",
            "",
            " ",
            "0x10",
            "99999999999999999999",
            "1000000000001",
            "12abc",
            "+5",
        ] {
            let h = headers(&[
                ("anthropic-ratelimit-requests-limit", bad),
                ("anthropic-ratelimit-requests-remaining", bad),
            ]);
            assert!(Found::of(&h).read(NOW).is_empty(), "{bad:?}");
        }
        for bad in ["2126-01-01T00:00:00Z", "yesterday", "2026-13-01T00:00:00Z"] {
            let h = headers(&[("anthropic-ratelimit-requests-reset", bad)]);
            assert!(Found::of(&h).read(NOW).is_empty(), "{bad:?}");
        }
        for bad in ["-5", "NaN", "inf", "99999999", "4102444800"] {
            let h = headers(&[("x-ratelimit-reset", bad)]);
            assert!(Found::of(&h).read(NOW).is_empty(), "{bad:?}");
        }
        let over = headers(&[
            ("anthropic-ratelimit-requests-limit", "10"),
            ("anthropic-ratelimit-requests-remaining", "11"),
        ]);
        assert_eq!(Found::of(&over).read(NOW)[0].1.remaining, None);
        let mut binary = HeaderMap::new();
        binary.insert(
            "x-ratelimit-limit",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert!(Found::of(&binary).read(NOW).is_empty());
    }

    proptest! {
        #[test]
        fn no_header_value_panics_or_passes_out_of_range(
            limit in "\\PC{0,24}",
            reset in "\\PC{0,40}",
            now in 0u64..4_102_444_800_000,
        ) {
            let mut h = HeaderMap::new();
            for name in ["anthropic-ratelimit-requests-limit", "x-ratelimit-remaining", "anthropic-ratelimit-output-tokens-remaining"] {
                if let Ok(v) = http::HeaderValue::from_str(&limit) {
                    h.insert(name, v);
                }
            }
            for name in ["anthropic-ratelimit-requests-reset", "x-ratelimit-reset"] {
                if let Ok(v) = http::HeaderValue::from_str(&reset) {
                    h.insert(name, v);
                }
            }
            for (_, r) in Found::of(&h).read(now) {
                prop_assert!(r.limit.is_none_or(|l| l <= MAX_VALUE));
                prop_assert!(r.remaining.is_none_or(|l| l <= MAX_VALUE));
                prop_assert!(r.reset_at.is_none_or(|t| t >= now && t <= now + MAX_RESET_MS));
            }
        }
    }
}
