//! What levee learns about a client request before sending it: the endpoint
//! from the path, and a bounded look at the JSON body for `model`, `stream`
//! and `max_tokens`.

use crate::core::{Endpoint, Method};
use crate::limits::headers::{Family, Found};
use http::{HeaderMap, HeaderName};
use levee_exchange::json_fields;

/// The body fields the policy and the limiter care about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// `model`
    pub model: Option<String>,
    /// `stream` (false when absent)
    pub stream: bool,
    /// `max_tokens`, saturated to `u32`
    pub max_tokens: Option<u32>,
}

/// Reads the fields from a JSON body; anything that is not a JSON object
/// yields defaults, and a field of the wrong type is absent (the upstream
/// judges the request).
pub fn body_facts(body: &[u8]) -> BodyFacts {
    let Some([model, stream, max_tokens]) =
        json_fields::fields(body, ["model", "stream", "max_tokens"])
    else {
        return BodyFacts::default();
    };
    BodyFacts {
        model: model.and_then(json_string),
        stream: stream == Some(b"true"),
        max_tokens: max_tokens
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

/// A raw JSON number as a `u64`, as `serde_json` reads it. Plain digits
/// without a leading zero are parsed without the decoder.
fn json_u64(raw: &[u8]) -> Option<u64> {
    match raw {
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(raw).ok()?.parse().ok()
        }
        _ => serde_json::from_slice(raw).ok(),
    }
}

/// Input tokens, estimated as one token per four bytes of body.
///
/// The body's JSON syntax and field names inflate the count, and non-English
/// text deflates it: for typical English prompts the estimate is within
/// about 30% of the API's count. Reconciliation with the response's `usage`
/// corrects the limiter either way.
pub fn estimate_input_tokens(body: &[u8]) -> u32 {
    u32::try_from(body.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// The API endpoint a path names.
pub fn endpoint(path: &str) -> Endpoint {
    let path = path.trim_end_matches('/');
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

/// The method as a metrics label; methods outside the standard set are
/// `OTHER`, so the label set stays bounded.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The budgets an upstream reported as remaining: each
/// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining`,
/// and the generic `x-ratelimit-remaining`. A value that is not a plain
/// non-negative integer is ignored (and logged at debug).
pub fn remaining_budgets<'a>(
    found: &'a Found<'_>,
) -> impl Iterator<Item = (&'static str, u64)> + 'a {
    [
        (Family::Requests, "requests"),
        (Family::Tokens, "tokens"),
        (Family::InputTokens, "input_tokens"),
        (Family::OutputTokens, "output_tokens"),
        (Family::Generic, "generic"),
    ]
    .into_iter()
    .filter_map(move |(family, dimension)| Some((dimension, found.remaining(family)?)))
}

/// The method, as the contract names it.
pub fn method(m: &http::Method) -> Method {
    match *m {
        http::Method::GET => Method::Get,
        http::Method::HEAD => Method::Head,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::PATCH => Method::Patch,
        http::Method::DELETE => Method::Delete,
        http::Method::OPTIONS => Method::Options,
        _ => Method::Other,
    }
}

/// The client's own timeout from `x-stainless-timeout` (seconds, possibly
/// fractional), in milliseconds, when it is a sane positive number.
pub fn client_timeout_ms(headers: &HeaderMap) -> Option<u64> {
    const NAME: HeaderName = HeaderName::from_static("x-stainless-timeout");
    let value = headers.get(NAME)?.to_str().ok()?.trim();
    let secs: f64 = value.parse().ok()?;
    (secs.is_finite() && secs > 0.0 && secs <= 86_400.0).then(|| (secs * 1000.0).ceil() as u64)
}

/// `x-stainless-retry-count`, when it is a number.
pub fn client_retry_count(headers: &HeaderMap) -> Option<u32> {
    const NAME: HeaderName = HeaderName::from_static("x-stainless-retry-count");
    headers.get(NAME)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
                proptest::prop_assert_eq!(json_u64(raw), serde_json::from_slice::<u64>(raw).ok());
            }
        }
    }

    #[test]
    fn endpoints_are_classified_without_raw_paths() {
        assert_eq!(endpoint("/v1/messages"), Endpoint::Messages);
        assert_eq!(endpoint("/v1/messages/"), Endpoint::Messages);
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
        let mut h = HeaderMap::new();
        h.insert("x-stainless-timeout", "600".parse().unwrap());
        assert_eq!(client_timeout_ms(&h), Some(600_000));
        h.insert("x-stainless-timeout", "1.5".parse().unwrap());
        assert_eq!(client_timeout_ms(&h), Some(1_500));
        for bad in ["-1", "0", "nan", "inf", "abc", "1e10"] {
            h.insert("x-stainless-timeout", bad.parse().unwrap());
            assert_eq!(client_timeout_ms(&h), None, "{bad}");
        }
    }

    #[test]
    fn token_estimate_is_a_quarter_of_the_bytes() {
        assert_eq!(estimate_input_tokens(b""), 0);
        assert_eq!(estimate_input_tokens(b"abcde"), 2);
    }
}
