//! Header and error-body syntax turned into typed numbers.
//!
//! The host calls these to fill in [`ResponseFacts`](crate::ResponseFacts)
//! and its limiter's budgets; the policy itself never sees a raw header.
//! Every parser is total: garbage gives `None`, never a panic, and absurd
//! waits (more than a day) are refused so a hostile upstream cannot park
//! levee's state far in the future.

use crate::types::ErrorKind;

mod date;

pub use date::{parse_http_date, parse_rfc3339};

/// The longest wait any header may ask for: one day, in milliseconds.
pub const MAX_WAIT_MS: u64 = 86_400_000;

/// `x-should-retry`: exactly `true` or exactly `false` (case-sensitive, no
/// surrounding whitespace, as the SDKs compare it); anything else is `None`.
pub fn parse_should_retry(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `retry-after-ms`: a non-negative number of milliseconds, integer or
/// decimal (the Python SDK reads it with `float()`), rounded up.
///
/// Surrounding whitespace is ignored. Signs, exponents, `inf`, `nan`, empty
/// values and values above one day are refused.
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    let ms = parse_decimal(value.trim(), 1)?;
    (ms <= MAX_WAIT_MS).then_some(ms)
}

/// `retry-after`: delta-seconds (an integer, or a decimal as the SDKs
/// accept) or an HTTP-date, as milliseconds from `now_ms`.
///
/// A date in the past gives `Some(0)`. Surrounding whitespace is ignored;
/// waits above one day and anything unparsable give `None`.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    let ms = if value.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        parse_decimal(value, 1000)?
    } else {
        parse_http_date(value)?.saturating_sub(now_ms)
    };
    (ms <= MAX_WAIT_MS).then_some(ms)
}

/// Parses `DIGITS [ "." DIGITS ]` (at least one digit in all) and returns
/// `value * scale`, rounded up, or `None` on bad syntax or overflow.
/// `scale` is 1 or 1000.
fn parse_decimal(text: &str, scale: u64) -> Option<u64> {
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (text, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let mut whole: u64 = 0;
    for b in int.bytes() {
        whole = whole.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    let mut value = whole.checked_mul(scale)?;
    // The fraction's first digits that `scale` keeps, then any rest rounds up.
    let kept = match scale {
        1000 => 3,
        _ => 0,
    };
    let mut part: u64 = 0;
    for i in 0..kept {
        let digit = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        part = part * 10 + digit;
    }
    value = value.checked_add(part)?;
    if frac.bytes().skip(kept).any(|b| b != b'0') {
        value = value.checked_add(1)?;
    }
    Some(value)
}

/// Reads an error body in the API's shape,
/// `{"type":"error","error":{"type":"<kind>","message":"..."},...}`.
///
/// Returns the `error.type` (an unknown string maps to
/// [`ErrorKind::Other`]; `None` when the body is not JSON or not this
/// shape) and whether `error.details.error_code` is
/// `enforced_spend_limit_reached` (a spend cap: no retry can succeed).
pub fn parse_error_body(body: &[u8]) -> (Option<ErrorKind>, bool) {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice(body) else {
        return (None, false);
    };
    if top.get("type").and_then(|t| t.as_str()) != Some("error") {
        return (None, false);
    }
    let Some(error) = top.get("error").and_then(|e| e.as_object()) else {
        return (None, false);
    };
    let kind = error.get("type").and_then(|t| t.as_str()).map(error_kind);
    let spend_cap = error
        .get("details")
        .and_then(|d| d.get("error_code"))
        .and_then(|c| c.as_str())
        == Some("enforced_spend_limit_reached");
    (kind, spend_cap)
}

/// Maps the API's `error.type` string to an [`ErrorKind`].
fn error_kind(name: &str) -> ErrorKind {
    match name {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "billing_error" => ErrorKind::Billing,
        "permission_error" => ErrorKind::Permission,
        "not_found_error" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_error" => ErrorKind::RateLimit,
        "api_error" => ErrorKind::ApiError,
        "timeout_error" => ErrorKind::TimeoutError,
        "overloaded_error" => ErrorKind::Overloaded,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT

    #[test]
    fn should_retry_is_exact_and_case_sensitive() {
        assert_eq!(parse_should_retry("true"), Some(true));
        assert_eq!(parse_should_retry("false"), Some(false));
        for bad in ["True", "TRUE", " true", "true ", "1", "yes", "", "False"] {
            assert_eq!(parse_should_retry(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_ms_accepts_integers_and_decimals_rounded_up() {
        assert_eq!(parse_retry_after_ms("0"), Some(0));
        assert_eq!(parse_retry_after_ms("1500"), Some(1500));
        assert_eq!(parse_retry_after_ms(" 1500 "), Some(1500));
        assert_eq!(parse_retry_after_ms("1500.2"), Some(1501));
        assert_eq!(parse_retry_after_ms("1500.000"), Some(1500));
        assert_eq!(parse_retry_after_ms("1500."), Some(1500));
        assert_eq!(parse_retry_after_ms(".5"), Some(1));
        assert_eq!(parse_retry_after_ms("86400000"), Some(86_400_000));
    }

    #[test]
    fn retry_after_ms_refuses_garbage_and_absurd_values() {
        for bad in [
            "",
            " ",
            ".",
            "-1",
            "-0",
            "+5",
            "1e3",
            "inf",
            "NaN",
            "nan",
            "abc",
            "1,5",
            "1.2.3",
            "86400001",
            "86400000.1",
            "99999999999999999999999",
            "0x10",
        ] {
            assert_eq!(parse_retry_after_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_reads_delta_seconds() {
        assert_eq!(parse_retry_after("15", NOW), Some(15_000));
        assert_eq!(parse_retry_after("0", NOW), Some(0));
        assert_eq!(parse_retry_after(" 2 ", NOW), Some(2000));
        assert_eq!(parse_retry_after("1.5", NOW), Some(1500));
        assert_eq!(parse_retry_after("0.0001", NOW), Some(1));
        assert_eq!(parse_retry_after("86400", NOW), Some(86_400_000));
        assert_eq!(parse_retry_after("86401", NOW), None);
        assert_eq!(parse_retry_after("-1", NOW), None);
        assert_eq!(parse_retry_after("1e2", NOW), None);
        assert_eq!(parse_retry_after("18446744073709551615", NOW), None);
    }

    #[test]
    fn retry_after_reads_http_dates() {
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", NOW),
            Some(30_000)
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:07 GMT", NOW),
            Some(30_000)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:50:07 1994", NOW),
            Some(30_000)
        );
        // In the past: retry now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", NOW),
            Some(0)
        );
        // More than a day ahead.
        assert_eq!(
            parse_retry_after("Tue, 08 Nov 1994 08:49:37 GMT", NOW),
            None
        );
        assert_eq!(parse_retry_after("soon", NOW), None);
    }

    #[test]
    fn error_body_maps_every_documented_type() {
        let cases = [
            ("invalid_request_error", ErrorKind::InvalidRequest),
            ("authentication_error", ErrorKind::Authentication),
            ("billing_error", ErrorKind::Billing),
            ("permission_error", ErrorKind::Permission),
            ("not_found_error", ErrorKind::NotFound),
            ("request_too_large", ErrorKind::RequestTooLarge),
            ("rate_limit_error", ErrorKind::RateLimit),
            ("api_error", ErrorKind::ApiError),
            ("timeout_error", ErrorKind::TimeoutError),
            ("overloaded_error", ErrorKind::Overloaded),
            ("some_future_error", ErrorKind::Other),
        ];
        for (name, kind) in cases {
            let body = format!(
                r#"{{"type":"error","error":{{"type":"{name}","message":"m"}},"request_id":"req_1"}}"#
            );
            assert_eq!(parse_error_body(body.as_bytes()), (Some(kind), false));
        }
    }

    #[test]
    fn error_body_detects_spend_cap() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"cap",
            "details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert_eq!(parse_error_body(body), (Some(ErrorKind::RateLimit), true));
        let other = br#"{"type":"error","error":{"type":"rate_limit_error","message":"m",
            "details":{"error_code":"something_else"}}}"#;
        assert_eq!(parse_error_body(other), (Some(ErrorKind::RateLimit), false));
    }

    #[test]
    fn error_body_refuses_other_shapes() {
        for body in [
            &b""[..],
            b"<html>413 Request Entity Too Large</html>",
            b"[]",
            b"\"error\"",
            br#"{"type":"message","error":{"type":"api_error"}}"#,
            br#"{"error":{"type":"api_error"}}"#,
            br#"{"type":"error","error":"api_error"}"#,
            br#"{"type":"error","error":{"type":"api_error""#,
        ] {
            assert_eq!(parse_error_body(body), (None, false));
        }
        // The shape holds but the type is missing: no kind.
        assert_eq!(
            parse_error_body(br#"{"type":"error","error":{"message":"m"}}"#),
            (None, false)
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_strings(s in any::<String>(), now in any::<u64>()) {
            let _ = parse_should_retry(&s);
            let _ = parse_retry_after_ms(&s);
            let _ = parse_retry_after(&s, now);
            let _ = parse_http_date(&s);
            let _ = parse_rfc3339(&s);
            let _ = parse_error_body(s.as_bytes());
        }

        #[test]
        fn parsers_never_panic_on_header_like_strings(
            s in "[0-9 .:+TZtz,a-zA-Z-]{0,40}",
            now in any::<u64>(),
        ) {
            if let Some(ms) = parse_retry_after(&s, now) {
                prop_assert!(ms <= MAX_WAIT_MS);
            }
            if let Some(ms) = parse_retry_after_ms(&s) {
                prop_assert!(ms <= MAX_WAIT_MS);
            }
            let _ = parse_http_date(&s);
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn error_body_never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_error_body(&b);
        }

        #[test]
        fn integer_retry_after_ms_round_trips(ms in 0u64..=MAX_WAIT_MS) {
            prop_assert_eq!(parse_retry_after_ms(&ms.to_string()), Some(ms));
        }

        #[test]
        fn integer_retry_after_seconds_round_trips(s in 0u64..=86_400) {
            prop_assert_eq!(parse_retry_after(&s.to_string(), 0), Some(s * 1000));
        }
    }
}
