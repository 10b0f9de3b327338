//! The downstream contract on hyper's types. What levee answers itself,
//! and the verdict headers of a give-up, come from the exchange core's one
//! table (`levee_exchange::reply`); this module makes them responses, and
//! keeps the request path's hop-by-hop stripping fast.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use levee_exchange::LocalReply;

/// Errors a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response levee sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// `x-levee-attempts`
pub const ATTEMPTS: HeaderName = HeaderName::from_static(levee_exchange::reply::ATTEMPTS);

/// A body of bytes known up front.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `bytes`, then an error: a body that broke off after them. Its length is
/// not known, so hyper frames it by the head's `content-length` (or chunks
/// it) and aborts the response at the error: the client sees an incomplete
/// body, never a short one that looks whole.
pub fn broken_off(bytes: Bytes, why: String) -> Body {
    BrokenOff {
        bytes: (!bytes.is_empty()).then_some(bytes),
        why: Some(why),
    }
    .boxed()
}

/// The body of [`broken_off`].
struct BrokenOff {
    bytes: Option<Bytes>,
    why: Option<String>,
}

impl http_body::Body for BrokenOff {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let next = match self.bytes.take() {
            Some(bytes) => Some(Ok(http_body::Frame::data(bytes))),
            None => self.why.take().map(|why| Err(why.into())),
        };
        std::task::Poll::Ready(next)
    }
}

/// A response levee makes itself, as the exchange core's table has it,
/// with the request id and the attempt count.
pub fn local(reply: &LocalReply, request_id: &str, attempts: u32) -> Response<Body> {
    let mut resp = Response::new(full(reply.body(request_id)));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    reply.head(resp.headers_mut(), request_id, attempts);
    resp
}

/// Sets `x-levee-attempts`.
pub fn set_attempts(headers: &mut HeaderMap, attempts: u32) {
    headers.insert(ATTEMPTS, attempts.into());
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): the fixed set
/// (`levee_exchange::reply::HOP_BY_HOP`), and every header the
/// `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the names, each matched by
    // length and bytes, is cheaper than a hashed removal of each of the nine.
    if !headers.keys().any(is_hop_by_hop) {
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
    for name in levee_exchange::reply::HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether `name` is one of the fixed hop-by-hop headers.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

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
    fn the_hop_by_hop_match_is_the_cores_list() {
        for name in levee_exchange::reply::HOP_BY_HOP {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["x-api-key", "content-type", "tee", "connections", "host"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[tokio::test]
    async fn a_broken_off_body_sends_its_bytes_then_fails_and_claims_no_length() {
        use http_body_util::BodyExt;
        let why = "upstream failed mid-stream: cut".to_owned();
        let mut body = broken_off(Bytes::from_static(b"{\"type\":"), why);
        assert_eq!(
            http_body::Body::size_hint(&body).exact(),
            None,
            "hyper frames it by the head, not by the bytes"
        );
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), &b"{\"type\":"[..]);
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "upstream failed mid-stream: cut");
    }

    #[test]
    fn a_local_reply_is_the_apis_error_shape_with_levees_headers() {
        let resp = local(&LocalReply::queue_full(1_500), "levee_1", 0);
        assert_eq!(resp.status(), 429);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["request-id"], "levee_1");
        assert_eq!(h["x-levee-attempts"], "0");
        assert_eq!(h["x-should-retry"], "true");
        assert_eq!(h["retry-after"], "2");
        assert_eq!(h["retry-after-ms"], "1500");
    }
}
