//! The downstream contract, as the bundled host keeps it: every response
//! carries `x-levee-attempts`; when levee gives up, `x-should-retry` (and a
//! truthful `retry-after` when known); levee's own errors use the API's
//! error shape; a broken body is never ended cleanly.

use crate::io::write_all;
use spin_sdk::http::{Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::OutputStream;

/// Headers as the edge handles them: lower-case names, raw values.
pub type Headers = Vec<(String, Vec<u8>)>;

/// The API's error shape as JSON.
pub fn error_json(error_type: &str, message: &str, request_id: &str) -> String {
    serde_json::json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
        "request_id": request_id,
    })
    .to_string()
}

/// Sets `name` to `value`, replacing any value it had.
pub fn set(headers: &mut Headers, name: &str, value: impl Into<Vec<u8>>) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value.into()));
}

/// The first value of `name` as text.
pub fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Sets `x-should-retry`, and `retry-after` / `retry-after-ms` when a delay
/// is known. With `overwrite` false an upstream's own retry header stays.
pub fn set_verdict(
    h: &mut Headers,
    should_retry: bool,
    retry_after_ms: Option<u64>,
    overwrite: bool,
) {
    set(
        h,
        "x-should-retry",
        if should_retry { "true" } else { "false" },
    );
    let Some(ms) = retry_after_ms else { return };
    let has_own = get(h, "retry-after").is_some() || get(h, "retry-after-ms").is_some();
    if overwrite || !has_own {
        set(h, "retry-after", ms.div_ceil(1000).to_string());
        set(h, "retry-after-ms", ms.to_string());
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), those the `connection`
/// header names, and the framing headers the runtime sets itself.
pub fn strip_hop_by_hop(h: &mut Headers) {
    let named: Vec<String> = h
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    const FIXED: [&str; 11] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    ];
    h.retain(|(k, _)| {
        let k = k.to_ascii_lowercase();
        !FIXED.contains(&k.as_str()) && !named.contains(&k)
    });
}

/// A response whose head is sent and whose body is being written.
pub struct Writer {
    // Dropped before `body`: a stream goes before its parent resource.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
}

impl Writer {
    /// Sends the head (`status`, `headers`) and opens the body.
    pub fn start(out: ResponseOutparam, status: u16, headers: &Headers) -> Writer {
        let fields = Fields::new();
        for (name, value) in headers {
            // The runtime refuses forbidden or malformed headers; the
            // response goes on without them.
            let _ = fields.append(name, value);
        }
        let resp = OutgoingResponse::new(fields);
        let _ = resp.set_status_code(status);
        let body = resp.body().expect("a new response's body is taken once");
        out.set(resp);
        let stream = body.write().expect("a new body is written once");
        Writer {
            stream: Some(stream),
            body: Some(body),
        }
    }

    /// Writes and flushes `data`.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        match &self.stream {
            Some(s) if !data.is_empty() => write_all(s, data).await,
            _ => Ok(()),
        }
    }

    /// Ends the body cleanly.
    pub fn finish(mut self) {
        drop(self.stream.take());
        if let Some(body) = self.body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    }

    /// Ends the body as broken: the client sees an incomplete response,
    /// never a short one that looks whole.
    pub fn abort(mut self) {
        drop(self.stream.take());
        drop(self.body.take());
    }
}

/// A response levee makes itself, in the API's error shape.
pub struct Local {
    /// HTTP status.
    pub status: u16,
    /// The API's `error.type`.
    pub error_type: String,
    /// The message.
    pub message: String,
    /// `x-should-retry`.
    pub should_retry: bool,
    /// `retry-after` and `retry-after-ms`, when known.
    pub retry_after_ms: Option<u64>,
}

impl Local {
    /// Sends it, with the request id and the attempt count.
    pub async fn send(self, out: ResponseOutparam, request_id: &str, attempts: u32) -> u16 {
        let body = error_json(&self.error_type, &self.message, request_id);
        let mut h: Headers = vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("request-id".into(), request_id.as_bytes().to_vec()),
            ("x-levee-attempts".into(), attempts.to_string().into_bytes()),
        ];
        set_verdict(&mut h, self.should_retry, self.retry_after_ms, true);
        set(&mut h, "content-length", body.len().to_string());
        let mut w = Writer::start(out, self.status, &h);
        match w.write(body.as_bytes()).await {
            Ok(()) => w.finish(),
            Err(_) => w.abort(),
        }
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut x = h(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("host", "edge"),
            ("x-api-key", "k"),
            ("anthropic-version", "2023-06-01"),
        ]);
        strip_hop_by_hop(&mut x);
        let left: Vec<&str> = x.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(left, ["x-api-key", "anthropic-version"]);
    }

    #[test]
    fn verdict_keeps_an_upstream_retry_after_unless_told() {
        let mut x = h(&[("retry-after", "15")]);
        set_verdict(&mut x, true, Some(2_500), false);
        assert_eq!(get(&x, "retry-after"), Some("15"));
        assert_eq!(get(&x, "retry-after-ms"), None);
        set_verdict(&mut x, false, Some(2_500), true);
        assert_eq!(get(&x, "retry-after"), Some("3"));
        assert_eq!(get(&x, "retry-after-ms"), Some("2500"));
        assert_eq!(get(&x, "x-should-retry"), Some("false"));
    }
}
