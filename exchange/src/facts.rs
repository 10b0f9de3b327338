//! What levee learns about a client request before sending it: the
//! endpoint from the path, the method, a bounded look at the JSON body for
//! `model`, `stream` and `max_tokens`, and the SDK's own headers. Both
//! hosts read requests here, so the policy sees the same facts from each.

use crate::json_fields;
use levee_policy_core::{Endpoint, Method, Outcome, ResponseFacts, headers};

/// The body fields the policy and the limiter care about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// `model`
    pub model: Option<String>,
    /// `stream` (false when absent)
    pub stream: bool,
    /// `max_tokens` (or, in OpenAI's format, `max_completion_tokens`),
    /// saturated to `u32`
    pub max_tokens: Option<u32>,
}

/// The longest `model` the policy is shown: the API's ids are a few dozen
/// bytes, and a policy component must not be handed megabytes.
pub const MAX_MODEL_BYTES: usize = 256;

/// Reads the fields from a JSON body; anything that is not a JSON object
/// yields defaults, and a field of the wrong type, or a `model` longer than
/// [`MAX_MODEL_BYTES`], is absent (the upstream judges the request).
pub fn body_facts(body: &[u8]) -> BodyFacts {
    let Some([model, stream, max_tokens, max_completion_tokens]) = json_fields::fields(
        body,
        ["model", "stream", "max_tokens", "max_completion_tokens"],
    ) else {
        return BodyFacts::default();
    };
    BodyFacts {
        model: model
            .filter(|raw| raw.len() <= 6 * MAX_MODEL_BYTES + 2)
            .and_then(json_string)
            .filter(|m| m.len() <= MAX_MODEL_BYTES),
        stream: stream == Some(b"true"),
        max_tokens: max_completion_tokens
            .or(max_tokens)
            .and_then(json_u64)
            .map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
    }
}

/// A raw JSON string's text, as `serde_json` reads it. One without escapes,
/// inner quotes or control characters is its bytes between the quotes,
/// taken without the decoder.
fn json_string(raw: &[u8]) -> Option<String> {
    match raw {
        [b'"', text @ .., b'"']
            if text
                .iter()
                .all(|&b| b >= 0x20 && !matches!(b, b'"' | b'\\')) =>
        {
            std::str::from_utf8(text).ok().map(str::to_owned)
        }
        _ => serde_json::from_slice(raw).ok(),
    }
}

/// A raw JSON number as a `u64`: an integer as `serde_json` reads it, or a
/// number with no fraction (`64000.0`, `6.4e4`), which the API accepts as
/// the integer it equals. Plain digits without a leading zero are parsed
/// without the decoder.
fn json_u64(raw: &[u8]) -> Option<u64> {
    match raw {
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(raw).ok()?.parse().ok()
        }
        _ => serde_json::from_slice(raw).ok().or_else(|| {
            let n: f64 = serde_json::from_slice(raw).ok()?;
            // 2^64 is the first float past u64::MAX.
            (n >= 0.0 && n.fract() == 0.0 && n < 18_446_744_073_709_551_616.0).then_some(n as u64)
        }),
    }
}

/// Input tokens, estimated from the body: see [`crate::estimate`].
pub fn estimate_input_tokens(body: &[u8]) -> u32 {
    crate::estimate::input_tokens(body)
}

/// Whether `path` (a query, if any, is ignored) holds a `.` or `..`
/// segment, written plainly or percent-encoded, between `/`, `%2f` or a
/// backslash. Forwarded under an upstream's base path, `..` would climb
/// out of it once a server resolved it; the API has no such path.
pub fn has_dot_segment(path: &str) -> bool {
    // Most paths hold neither: one pass over their bytes.
    if memchr::memchr2(b'.', b'%', path.as_bytes()).is_none() {
        return false;
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut decoded = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(c) = rest.chars().next() {
        let (out, len) = match rest.get(..3).map(str::to_ascii_lowercase).as_deref() {
            Some("%2e") => ('.', 3),
            Some("%2f" | "%5c") => ('/', 3),
            _ if c == '\\' => ('/', 1),
            _ => (c, c.len_utf8()),
        };
        decoded.push(out);
        rest = &rest[len..];
    }
    decoded
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// The API endpoint a path names; a query, if any, is ignored.
pub fn endpoint(path: &str) -> Endpoint {
    let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
    match path {
        "/v1/messages" => Endpoint::Messages,
        "/v1/messages/count_tokens" => Endpoint::CountTokens,
        p if p == "/v1/models" || p.starts_with("/v1/models/") => Endpoint::Models,
        p if p.starts_with("/v1/messages/batches") => Endpoint::Batches,
        _ => Endpoint::Other,
    }
}

/// The endpoint's label for logs and metrics (bounded: never a raw path).
pub fn endpoint_label(e: Endpoint) -> &'static str {
    match e {
        Endpoint::Messages => "messages",
        Endpoint::CountTokens => "count_tokens",
        Endpoint::Models => "models",
        Endpoint::Batches => "batches",
        Endpoint::Other => "other",
    }
}

/// The method, as the contract names it.
pub fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    }
}

/// `x-stainless-timeout`
pub const CLIENT_TIMEOUT: &str = "x-stainless-timeout";
/// `x-stainless-retry-count`
pub const CLIENT_RETRY_COUNT: &str = "x-stainless-retry-count";

/// The client's own timeout from `x-stainless-timeout` (seconds, possibly
/// fractional), in milliseconds, when it is a sane positive number.
pub fn client_timeout_ms(value: &str) -> Option<u64> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0 && secs <= 86_400.0).then(|| (secs * 1000.0).ceil() as u64)
}

/// `x-stainless-retry-count`, when it is a number.
pub fn client_retry_count(value: &str) -> Option<u32> {
    value.trim().parse().ok()
}

/// The facts of an upstream's answer, from its status, its headers
/// (`header` looks one up by its lower-case name), the prefix of its body
/// read so far (only error bodies are read) and the time to its head. The
/// header and body parsers are the decision core's.
pub fn response_facts<'h>(
    status: u16,
    header: impl Fn(&str) -> Option<&'h str>,
    body: &[u8],
    elapsed_ms: u32,
    now: u64,
) -> ResponseFacts {
    let (error, spend_cap) = if body.is_empty() {
        (None, false)
    } else {
        headers::parse_error_body(body)
    };
    ResponseFacts {
        status,
        should_retry: header("x-should-retry").and_then(headers::parse_should_retry),
        retry_after_ms: header("retry-after-ms").and_then(headers::parse_retry_after_ms),
        retry_after: header("retry-after").and_then(|v| headers::parse_retry_after(v, now)),
        error,
        spend_cap,
        elapsed_ms,
    }
}

/// How long the answer's own headers ask to wait before a retry:
/// `retry-after-ms` when it is positive, else `retry-after`.
pub fn header_wait(f: &ResponseFacts) -> Option<u64> {
    f.retry_after_ms.filter(|&v| v > 0).or(f.retry_after)
}

/// The outcome of an answer known by its status alone: a success, which
/// is delivered without reading its body or asking the policy.
pub fn success(status: u16, elapsed_ms: u32) -> Outcome {
    Outcome::Response(response_facts(status, |_| None, b"", elapsed_ms, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_facts_read_the_retry_headers_and_the_error_body() {
        let h = |name: &str| match name {
            "x-should-retry" => Some("true"),
            "retry-after" => Some("7"),
            _ => None,
        };
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let f = response_facts(529, h, body, 40, 1_000);
        assert_eq!(f.status, 529);
        assert_eq!(f.should_retry, Some(true));
        assert_eq!(f.retry_after, Some(7_000));
        assert_eq!(f.retry_after_ms, None);
        assert_eq!(f.error, Some(levee_policy_core::ErrorKind::Overloaded));
        assert_eq!(f.elapsed_ms, 40);
        assert_eq!(
            success(200, 3),
            Outcome::Response(ResponseFacts {
                status: 200,
                should_retry: None,
                retry_after_ms: None,
                retry_after: None,
                error: None,
                spend_cap: false,
                elapsed_ms: 3,
            })
        );
    }

    #[test]
    fn body_facts_read_the_three_fields_and_nothing_else() {
        let facts = body_facts(
            br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(
            facts,
            BodyFacts {
                model: Some("claude-sonnet-4-5".into()),
                stream: true,
                max_tokens: Some(1024)
            }
        );
        assert_eq!(body_facts(b"not json"), BodyFacts::default());
        assert_eq!(body_facts(b"[1,2]"), BodyFacts::default());
        assert_eq!(
            body_facts(br#"{"max_tokens": 99999999999}"#).max_tokens,
            Some(u32::MAX)
        );
        assert_eq!(body_facts(br#"{"stream": "yes"}"#), BodyFacts::default());
        // Written as the API still reads it: an escaped key, a whole float.
        for doc in [
            &br#"{"max_\u0074okens": 64000}"#[..],
            br#"{"max_tokens": 64000.0}"#,
            br#"{"max_tokens": 6.4e4}"#,
        ] {
            assert_eq!(body_facts(doc).max_tokens, Some(64_000), "{doc:?}");
        }
        assert_eq!(body_facts(br#"{"max_tokens": 64000.5}"#).max_tokens, None);
        // OpenAI's chat completions: the newer name wins over the older.
        let chat = br#"{"model":"m","max_tokens":10,"max_completion_tokens":2000}"#;
        assert_eq!(body_facts(chat).max_tokens, Some(2000));
        // A model the policy could choke on is not shown to it.
        let long = |n: usize| format!(r#"{{"model":"{}","max_tokens":8}}"#, "m".repeat(n));
        assert_eq!(
            body_facts(long(256).as_bytes()).model.map(|m| m.len()),
            Some(256)
        );
        let facts = body_facts(long(257).as_bytes());
        assert_eq!((facts.model, facts.max_tokens), (None, Some(8)));
        let huge = body_facts(long(17 << 20).as_bytes());
        assert_eq!(huge.model, None);
        assert_eq!(
            body_facts(br#"{"model": 7, "stream": true, "max_tokens": -1}"#),
            BodyFacts {
                model: None,
                stream: true,
                max_tokens: None
            }
        );
    }

    proptest::proptest! {
        /// The fast paths read what `serde_json` reads, and refuse what it
        /// refuses.
        #[test]
        fn strings_and_numbers_read_as_serde_json_reads_them(
            raw in "\"([ -~]|\\\\[\"nu]|[\u{0}-\u{1f}]|é|\\\\u00e9){0,8}\"?|-?[0-9]{0,22}(\\.[0-9])?|[0-9a-z\"]{0,4}",
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..8),
        ) {
            for raw in [raw.as_bytes(), &bytes] {
                proptest::prop_assert_eq!(json_string(raw), serde_json::from_slice::<String>(raw).ok());
                // serde_json's integer, or its number when that is whole.
                let whole = serde_json::from_slice::<u64>(raw).ok().or_else(|| {
                    serde_json::from_slice::<serde_json::Number>(raw)
                        .ok()
                        .and_then(|n| n.as_f64())
                        .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 18_446_744_073_709_551_616.0)
                        .map(|f| f as u64)
                });
                proptest::prop_assert_eq!(json_u64(raw), whole);
            }
        }
    }

    #[test]
    fn dot_segments_are_found_however_they_are_written() {
        for bad in [
            "/../admin",
            "/v1/..",
            "/v1/./messages",
            "/v1/%2e%2e/x",
            "/v1/%2E%2e/x",
            "/v1/.%2e/x",
            "/v1/..%2fx",
            "/v1/..%5Cx",
            "/v1\\..\\x",
            "/v1/%2e",
        ] {
            assert!(has_dot_segment(bad), "{bad}");
        }
        for good in [
            "/v1/messages",
            "/v1/models/claude-3.5",
            "/v1/...",
            "/v1/.well-known",
            "/v1/x..y",
            "/v1/messages?q=/../",
            "/v1/%2e%2e%2e",
            "/v1/caf%C3%A9",
        ] {
            assert!(!has_dot_segment(good), "{good}");
        }
    }

    #[test]
    fn endpoints_are_classified_without_raw_paths() {
        assert_eq!(endpoint("/v1/messages"), Endpoint::Messages);
        assert_eq!(endpoint("/v1/messages/"), Endpoint::Messages);
        assert_eq!(endpoint("/v1/messages?beta=true"), Endpoint::Messages);
        assert_eq!(endpoint("/v1/messages/count_tokens"), Endpoint::CountTokens);
        assert_eq!(endpoint("/v1/models/claude-x"), Endpoint::Models);
        assert_eq!(
            endpoint("/v1/messages/batches/abc/results"),
            Endpoint::Batches
        );
        assert_eq!(endpoint("/v1/complete"), Endpoint::Other);
    }

    #[test]
    fn client_timeout_is_read_in_seconds() {
        assert_eq!(client_timeout_ms("600"), Some(600_000));
        assert_eq!(client_timeout_ms(" 1.5 "), Some(1_500));
        for bad in ["-1", "0", "nan", "inf", "abc", "1e10"] {
            assert_eq!(client_timeout_ms(bad), None, "{bad}");
        }
        assert_eq!(client_retry_count("2"), Some(2));
        assert_eq!(client_retry_count("x"), None);
    }

    #[test]
    fn token_estimate_is_a_quarter_of_the_bytes() {
        assert_eq!(estimate_input_tokens(b""), 0);
        assert_eq!(estimate_input_tokens(b"abcde"), 2);
    }
}
