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
use http::{HeaderMap, HeaderName};

/// The largest limit or remaining value believed (a trillion).
pub const MAX_VALUE: u64 = 1_000_000_000_000;
/// The furthest ahead a reset is believed: per-minute buckets reset within
/// a minute, and a day is beyond any honest reading.
pub const MAX_RESET_MS: u64 = 3_600_000;

/// The `-limit`, `-remaining` and `-reset` headers of one family, named
/// once (a lookup by a prebuilt name skips parsing it per response).
type Family = [HeaderName; 3];

const fn family(limit: &'static str, remaining: &'static str, reset: &'static str) -> Family {
    [
        HeaderName::from_static(limit),
        HeaderName::from_static(remaining),
        HeaderName::from_static(reset),
    ]
}

const REQUESTS: Family = family(
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
);
const INPUT: Family = family(
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
);
const TOKENS: Family = family(
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
);
const OUTPUT: Family = family(
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
);
const GENERIC: Family = family(
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
);

/// What the headers report, by limit.
pub fn read(h: &HeaderMap, now: u64) -> Vec<(LimitKind, Reported)> {
    let any = h.keys().any(|k| {
        let k = k.as_str();
        k.starts_with("anthropic-ratelimit-") || k.starts_with("x-ratelimit-")
    });
    if !any {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(3);
    let family = |[limit, remaining, reset]: &Family| Reported {
        limit: number(h, limit),
        remaining: number(h, remaining),
        reset_at: text(h, reset).and_then(|v| rfc3339_reset(v, now)),
    };
    let requests = family(&REQUESTS);
    let [limit, remaining, reset] = &GENERIC;
    let generic = Reported {
        limit: number(h, limit),
        remaining: number(h, remaining),
        reset_at: text(h, reset).and_then(|v| seconds_reset(v, now)),
    };
    out.push((LimitKind::Requests, or(requests, generic)));
    out.push((LimitKind::InputTokens, or(family(&INPUT), family(&TOKENS))));
    out.push((LimitKind::OutputTokens, family(&OUTPUT)));
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
    out
}

/// `primary` when it says anything, else `fallback`.
fn or(primary: Reported, fallback: Reported) -> Reported {
    if primary == Reported::default() {
        fallback
    } else {
        primary
    }
}

fn text<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let value = h.get(name)?;
    let text = value.to_str().ok().map(str::trim);
    if text.is_none() {
        tracing::debug!(
            header = name.as_str(),
            "ignored a rate-limit header that is not text"
        );
    }
    text
}

/// A plain non-negative integer up to [`MAX_VALUE`].
fn number(h: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let v = text(h, name)?;
    let parsed = parse_number(v);
    if parsed.is_none() {
        tracing::debug!(
            header = name.as_str(),
            value = v,
            "ignored a malformed rate-limit header"
        );
    }
    parsed
}

/// A plain non-negative integer up to [`MAX_VALUE`].
pub fn parse_number(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 13 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|&n| n <= MAX_VALUE)
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
        let r = read(&h, NOW);
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
                        remaining: Some(7000),
                        reset_at: None
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_generic_family_stands_in_for_requests() {
        let h = headers(&[
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "15"),
        ]);
        let r = read(&h, NOW);
        assert_eq!(r[0].1.reset_at, Some(NOW + 15_000));
        let unix = headers(&[("x-ratelimit-reset", "1767225660")]);
        assert_eq!(read(&unix, NOW)[0].1.reset_at, Some(NOW + 60_000));
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
            assert!(read(&h, NOW).is_empty(), "{bad:?}");
        }
        for bad in ["2126-01-01T00:00:00Z", "yesterday", "2026-13-01T00:00:00Z"] {
            let h = headers(&[("anthropic-ratelimit-requests-reset", bad)]);
            assert!(read(&h, NOW).is_empty(), "{bad:?}");
        }
        for bad in ["-5", "NaN", "inf", "99999999", "4102444800"] {
            let h = headers(&[("x-ratelimit-reset", bad)]);
            assert!(read(&h, NOW).is_empty(), "{bad:?}");
        }
        let over = headers(&[
            ("anthropic-ratelimit-requests-limit", "10"),
            ("anthropic-ratelimit-requests-remaining", "11"),
        ]);
        assert_eq!(read(&over, NOW)[0].1.remaining, None);
        let mut binary = HeaderMap::new();
        binary.insert(
            "x-ratelimit-limit",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert!(read(&binary, NOW).is_empty());
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
            for (_, r) in read(&h, now) {
                prop_assert!(r.limit.is_none_or(|l| l <= MAX_VALUE));
                prop_assert!(r.remaining.is_none_or(|l| l <= MAX_VALUE));
                prop_assert!(r.reset_at.is_none_or(|t| t >= now && t <= now + MAX_RESET_MS));
            }
        }
    }
}
