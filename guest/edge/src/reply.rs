//! The downstream contract on `wasi:http`: the headers as the edge keeps
//! them, the response writer, and levee's own replies sent from the
//! exchange core's table (`levee_exchange::reply`).

use crate::io::write_all;
use levee_exchange::LocalReply;
use levee_exchange::reply::{HOP_BY_HOP, Headers as _};
use spin_sdk::http::{Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::OutputStream;

/// Headers as the edge handles them: lower-case names, raw values.
pub type Headers = Vec<(String, Vec<u8>)>;

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

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), those the `connection`
/// header names, and the framing headers the runtime sets itself (`host`,
/// `content-length`).
pub fn strip_hop_by_hop(h: &mut Headers) {
    let named: Vec<String> = h
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    h.retain(|(k, _)| {
        let k = k.to_ascii_lowercase();
        !HOP_BY_HOP.contains(&k.as_str())
            && !matches!(k.as_str(), "host" | "content-length")
            && !named.contains(&k)
    });
}

/// A response whose head is sent and whose body is being written.
pub struct Writer {
    // Dropped before `body`: a stream goes before its parent resource.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
    /// The body's `content-length`, when the head declared one.
    length: Option<u64>,
    /// Bytes written so far.
    sent: u64,
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
        let length = get(headers, "content-length").and_then(|v| v.parse().ok());
        let resp = OutgoingResponse::new(fields);
        let _ = resp.set_status_code(status);
        let body = resp.body().expect("a new response's body is taken once");
        out.set(resp);
        let stream = body.write().expect("a new body is written once");
        Writer {
            stream: Some(stream),
            body: Some(body),
            length,
            sent: 0,
        }
    }

    /// Writes and flushes `data`.
    ///
    /// A runtime may close the stream as soon as the last byte of a
    /// declared `content-length` is written (Spin and `wasmtime serve`
    /// often do, before the flush is confirmed): that body is whole, and
    /// is not an error.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let Some(s) = &self.stream else {
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        let result = write_all(s, data).await;
        let written = match &result {
            Ok(()) => data.len(),
            Err(e) => e.written,
        };
        self.sent += written as u64;
        match result {
            Err(_) if self.length == Some(self.sent) => Ok(()),
            Err(e) => Err(e.message),
            Ok(()) => Ok(()),
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

/// Sends a reply levee makes itself, with the request id and the attempt
/// count; returns its status, for the access line.
pub async fn send(
    reply: &LocalReply,
    out: ResponseOutparam,
    request_id: &str,
    attempts: u32,
) -> u16 {
    let body = reply.body(request_id);
    let mut h = Headers::new();
    reply.head(&mut h, request_id, attempts);
    h.set_number("content-length", body.len() as u64);
    let mut w = Writer::start(out, reply.status, &h);
    match w.write(body.as_bytes()).await {
        Ok(()) => w.finish(),
        Err(_) => w.abort(),
    }
    reply.status
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
}
