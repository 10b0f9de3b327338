//! The downstream contract: what the client sees when levee answers itself
//! or passes an upstream response on.
//!
//! - Every response carries `x-levee-attempts`.
//! - When levee gives up, `x-should-retry` says whether a client retry can
//!   help, so the official SDKs do not pile their retries on levee's, and
//!   `retry-after` / `retry-after-ms` say when, if known.
//! - Levee's own errors use the API's error shape.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Errors a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response levee sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// `x-levee-attempts`
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-levee-attempts");
/// `x-should-retry`
pub const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
/// `retry-after-ms`
pub const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
/// `request-id`
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// A body of bytes known up front.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The API's error shape as JSON.
pub fn error_json(error_type: &str, message: &str, request_id: &str) -> Bytes {
    serde_json::json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
        "request_id": request_id,
    })
    .to_string()
    .into()
}

/// A response levee makes itself, in the API's error shape.
pub struct LocalError<'a> {
    /// HTTP status.
    pub status: StatusCode,
    /// The API's `error.type`.
    pub error_type: &'a str,
    /// The message.
    pub message: &'a str,
    /// `x-should-retry`.
    pub should_retry: bool,
    /// `retry-after` and `retry-after-ms`, when known.
    pub retry_after_ms: Option<u64>,
}

impl LocalError<'_> {
    /// The response, with the request id and the attempt count.
    pub fn into_response(self, request_id: &str, attempts: u32) -> Response<Body> {
        let mut resp = Response::new(full(error_json(self.error_type, self.message, request_id)));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(REQUEST_ID, v);
        }
        set_attempts(h, attempts);
        set_verdict(h, self.should_retry, self.retry_after_ms, true);
        resp
    }
}

/// Sets `x-levee-attempts`.
pub fn set_attempts(headers: &mut HeaderMap, attempts: u32) {
    headers.insert(ATTEMPTS, HeaderValue::from(attempts));
}

/// Sets `x-should-retry`, and `retry-after` / `retry-after-ms` when a delay
/// is known. With `overwrite` false, an upstream's own `retry-after` stays
/// as it was.
pub fn set_verdict(
    headers: &mut HeaderMap,
    should_retry: bool,
    retry_after_ms: Option<u64>,
    overwrite: bool,
) {
    headers.insert(
        SHOULD_RETRY,
        HeaderValue::from_static(if should_retry { "true" } else { "false" }),
    );
    let Some(ms) = retry_after_ms else { return };
    let has_own =
        headers.contains_key(http::header::RETRY_AFTER) || headers.contains_key(RETRY_AFTER_MS);
    if overwrite || !has_own {
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(ms.div_ceil(1000)),
        );
        headers.insert(RETRY_AFTER_MS, HeaderValue::from(ms));
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): the fixed set, and every
/// header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the names is cheaper than a
    // hashed removal of each of the nine.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if headers.contains_key(http::header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The fixed hop-by-hop set, as constants: removing by `&str` would parse
/// each name again on every request.
const HOP_BY_HOP: [HeaderName; 9] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-api-key", "sk-ant-secret".parse().unwrap());
        h.insert("authorization", "Bearer sk".parse().unwrap());
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-api-key", "authorization", "anthropic-version"]);
    }

    #[test]
    fn verdict_keeps_an_upstream_retry_after_unless_told() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "15".parse().unwrap());
        set_verdict(&mut h, true, Some(2_500), false);
        assert_eq!(h["retry-after"], "15");
        assert!(!h.contains_key("retry-after-ms"));
        assert_eq!(h["x-should-retry"], "true");
        set_verdict(&mut h, false, Some(2_500), true);
        assert_eq!(
            (
                h["retry-after"].to_str().unwrap(),
                h["retry-after-ms"].to_str().unwrap()
            ),
            ("3", "2500")
        );
        assert_eq!(h["x-should-retry"], "false");
    }

    #[test]
    fn error_json_is_the_api_shape() {
        let v: serde_json::Value =
            serde_json::from_slice(&error_json("api_error", "say \"hi\"", "levee_1")).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(v["error"]["message"], "say \"hi\"");
        assert_eq!(v["request_id"], "levee_1");
    }
}
