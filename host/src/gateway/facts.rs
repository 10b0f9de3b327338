//! What levee learns about a client request before sending it, on hyper's
//! types: the exchange core reads the body and the path
//! (`levee_exchange::facts`, re-exported here); this adds the SDK's
//! headers from a `HeaderMap`, the method's metric label, and the
//! budgets an upstream reports.

use crate::limits::headers::{Family, Found};
use http::{HeaderMap, HeaderName};
pub use levee_exchange::facts::{body_facts, endpoint, endpoint_label, estimate_input_tokens};

/// `x-stainless-timeout`, parsed once: a lookup by `&str` parses the name
/// on every request.
const CLIENT_TIMEOUT: HeaderName = HeaderName::from_static(levee_exchange::facts::CLIENT_TIMEOUT);
/// `x-stainless-retry-count`.
const CLIENT_RETRY_COUNT: HeaderName =
    HeaderName::from_static(levee_exchange::facts::CLIENT_RETRY_COUNT);

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

/// The client's own timeout from `x-stainless-timeout`, in milliseconds.
pub fn client_timeout_ms(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CLIENT_TIMEOUT)?.to_str().ok()?;
    levee_exchange::facts::client_timeout_ms(value)
}

/// `x-stainless-retry-count`, when it is a number.
pub fn client_retry_count(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get(CLIENT_RETRY_COUNT)?.to_str().ok()?;
    levee_exchange::facts::client_retry_count(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_headers_are_read_from_the_request() {
        let mut h = HeaderMap::new();
        assert_eq!(
            (client_timeout_ms(&h), client_retry_count(&h)),
            (None, None)
        );
        h.insert("x-stainless-timeout", "1.5".parse().unwrap());
        h.insert("x-stainless-retry-count", "2".parse().unwrap());
        assert_eq!(client_timeout_ms(&h), Some(1_500));
        assert_eq!(client_retry_count(&h), Some(2));
    }
}
