//! SSE as levee forwards it: each event passes the moment its terminating
//! blank line arrives, a partial event is held back, and the stream is
//! complete only after its last event: `message_stop` (or the upstream's
//! own `error` event) for the Messages API, `data: [DONE]` for OpenAI's
//! chat completions. A failure therefore never leaves half an event on the
//! wire, and the terminal error frame that follows is always parseable, in
//! the stream's own format.

use bytes::{Bytes, BytesMut};
use levee_policy_core::headers;

/// Which API's stream format a response is in: how it ends, and what its
/// error frames look like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// The Messages API: `message_stop` or `event: error` ends it.
    #[default]
    Messages,
    /// OpenAI's chat completions (`/v1/chat/completions`): `data: [DONE]`
    /// ends it, and an error is a data chunk holding an `error` object.
    OpenAi,
}

impl Dialect {
    /// The dialect of the responses to a request for `path` (a query, if
    /// any, is ignored).
    pub fn of_path(path: &str) -> Dialect {
        let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
        match path {
            "/v1/chat/completions" => Dialect::OpenAi,
            _ => Dialect::Messages,
        }
    }

    /// The event that ends a whole stream, for messages.
    pub fn last_event(self) -> &'static str {
        match self {
            Dialect::Messages => "message_stop",
            Dialect::OpenAi => "data: [DONE]",
        }
    }

    /// The terminal frame for a broken stream, in the API's error shape,
    /// naming `request_id` (the upstream's, else levee's).
    pub fn error_frame(self, why: &str, request_id: &str) -> String {
        let message = format!("levee: {why}; the response is incomplete");
        match self {
            Dialect::Messages => {
                let json = crate::reply::error_json("api_error", &message, request_id);
                format!("event: error\ndata: {json}\n\n")
            }
            Dialect::OpenAi => {
                let error = serde_json::json!({"error": {
                    "message": message, "type": "api_error", "param": null, "code": null,
                }, "request_id": request_id});
                format!("data: {error}\n\n")
            }
        }
    }
}

/// How a stream's last event ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Its normal end: `message_stop`, `data: [DONE]`.
    Done,
    /// The upstream's `error` event, with the status the API gives its
    /// error type.
    Error(u16),
}

/// Tracks event boundaries over a byte stream.
#[derive(Debug, Default)]
pub struct Cursor {
    pending: BytesMut,
    dialect: Dialect,
    end: Option<End>,
}

impl Cursor {
    /// A cursor over a stream in `dialect`.
    pub fn new(dialect: Dialect) -> Cursor {
        Cursor {
            dialect,
            ..Cursor::default()
        }
    }

    /// The stream's dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Takes new bytes; returns the complete events ready to forward. In
    /// the common case, whole events in one chunk, the chunk itself goes
    /// on without a copy.
    pub fn push(&mut self, data: Bytes) -> Bytes {
        let ready = if self.pending.is_empty() {
            match last_boundary(&data) {
                Some(end) if end == data.len() => data,
                Some(end) => {
                    self.pending.extend_from_slice(&data[end..]);
                    data.slice(..end)
                }
                None => {
                    self.pending.extend_from_slice(&data);
                    Bytes::new()
                }
            }
        } else {
            self.pending.extend_from_slice(&data);
            match last_boundary(&self.pending) {
                Some(end) => self.pending.split_to(end).freeze(),
                None => Bytes::new(),
            }
        };
        if !ready.is_empty() && self.end.is_none() {
            self.end = last_event(&ready, self.dialect);
        }
        ready
    }

    /// Whether the stream's last event has passed.
    pub fn complete(&self) -> bool {
        self.end.is_some()
    }

    /// How the stream's last event ended it, once it passed.
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// What is held back (a partial event).
    pub fn take_rest(&mut self) -> Bytes {
        self.pending.split().freeze()
    }
}

/// The end of the last complete event: just past the last blank line.
fn last_boundary(data: &[u8]) -> Option<usize> {
    let n = data.len();
    (1..n).rev().find_map(|i| match (data[i - 1], data[i]) {
        (b'\n', b'\n') | (b'\r', b'\r') => Some(i + 1),
        (b'\n', b'\r') if data.get(i + 1) == Some(&b'\n') => Some(i + 2),
        _ => None,
    })
}

/// The stream's last event, when these complete events include it:
/// `message_stop`, or an upstream `error` event (which the API sends as the
/// last event); `data: [DONE]` for OpenAI's format.
fn last_event(events: &[u8], dialect: Dialect) -> Option<End> {
    let mut lines = events
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    match dialect {
        Dialect::Messages => {
            let line = lines.find(|line| {
                matches!(
                    *line,
                    b"event: message_stop"
                        | b"event:message_stop"
                        | b"event: error"
                        | b"event:error"
                )
            })?;
            if !line.ends_with(b"error") {
                return Some(End::Done);
            }
            // The error's data follows its name within the event.
            let data = lines
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix(b"data:"))
                .unwrap_or_default();
            let (kind, _) = headers::parse_error_body(data.trim_ascii_start());
            Some(End::Error(kind.map_or(500, crate::early::status_of)))
        }
        Dialect::OpenAi => lines
            .any(|line| matches!(line, b"data: [DONE]" | b"data:[DONE]"))
            .then_some(End::Done),
    }
}

/// Whether a `content-type` value is an event stream.
pub fn is_event_stream(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..17)
        .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(c: &mut Cursor, data: &'static [u8]) -> Bytes {
        c.push(Bytes::from_static(data))
    }

    #[test]
    fn whole_events_pass_at_once_and_partial_ones_wait() {
        let mut c = Cursor::default();
        assert_eq!(
            push(&mut c, b"event: ping\ndata: {}\n\n"),
            &b"event: ping\ndata: {}\n\n"[..]
        );
        assert_eq!(
            push(&mut c, b"event: a\ndata: 1\n\nevent: b\nda"),
            &b"event: a\ndata: 1\n\n"[..]
        );
        assert_eq!(push(&mut c, b"ta: 2\n"), &b""[..]);
        assert_eq!(push(&mut c, b"\n"), &b"event: b\ndata: 2\n\n"[..]);
        assert!(!c.complete());
        push(
            &mut c,
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        assert!(c.complete());
    }

    #[test]
    fn crlf_boundaries_count() {
        let mut c = Cursor::default();
        assert_eq!(
            push(&mut c, b"data: 1\r\n\r\ndata: 2"),
            &b"data: 1\r\n\r\n"[..]
        );
        assert_eq!(c.take_rest(), &b"data: 2"[..]);
        assert_eq!(push(&mut c, b"data: 3\r\rdata: 4"), &b"data: 3\r\r"[..]);
    }

    #[test]
    fn an_upstream_error_event_finishes_the_stream_with_its_status() {
        let m = Dialect::Messages;
        assert_eq!(
            last_event(b"event: error\ndata: {}\n\n", m),
            Some(End::Error(500))
        );
        let overloaded = b"event: error\r\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\r\n\r\n";
        assert_eq!(last_event(overloaded, m), Some(End::Error(529)));
        assert_eq!(last_event(b"event: errors\ndata: {}\n\n", m), None);
        assert_eq!(
            last_event(b"event:message_stop\r\ndata: {}\r\n\r\n", m),
            Some(End::Done)
        );
        assert_eq!(last_event(b"data: event: message_stop\n\n", m), None);
    }

    #[test]
    fn an_openai_stream_ends_with_done_and_nothing_else() {
        let o = Dialect::OpenAi;
        assert_eq!(last_event(b"data: [DONE]\n\n", o), Some(End::Done));
        assert_eq!(last_event(b"data:[DONE]\r\n\r\n", o), Some(End::Done));
        assert_eq!(last_event(b"event: message_stop\ndata: {}\n\n", o), None);
        assert_eq!(last_event(b"data: [DONE]\n\n", Dialect::Messages), None);
        let mut c = Cursor::new(o);
        c.push(Bytes::from_static(b"data: {\"choices\":[]}\n\n"));
        assert!(!c.complete());
        c.push(Bytes::from_static(b"data: [DONE]\n\n"));
        assert_eq!(c.end(), Some(End::Done));
    }

    #[test]
    fn the_dialect_follows_the_path() {
        assert_eq!(Dialect::of_path("/v1/chat/completions"), Dialect::OpenAi);
        assert_eq!(
            Dialect::of_path("/v1/chat/completions/?x=1"),
            Dialect::OpenAi
        );
        assert_eq!(Dialect::of_path("/v1/messages"), Dialect::Messages);
        assert_eq!(Dialect::of_path("/v1/chat/completionsx"), Dialect::Messages);
    }

    #[test]
    fn event_streams_are_known_by_their_content_type() {
        assert!(is_event_stream("text/event-stream; charset=utf-8"));
        assert!(is_event_stream(" Text/Event-Stream"));
        assert!(!is_event_stream("application/json"));
        assert!(!is_event_stream("text/event"));
    }

    /// Messages: an `error` event in the API's shape; OpenAI's format: a
    /// data chunk holding an `error` object. Each names the request id.
    #[test]
    fn the_error_frame_is_the_apis_shape_in_each_dialect() {
        for (dialect, lead) in [
            (Dialect::Messages, "event: error\ndata: "),
            (Dialect::OpenAi, "data: "),
        ] {
            let frame = dialect.error_frame("upstream stalled", "levee_1");
            let data = frame
                .strip_prefix(lead)
                .and_then(|f| f.strip_suffix("\n\n"))
                .unwrap_or_else(|| panic!("{dialect:?}: {frame}"));
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(v["error"]["type"], "api_error");
            assert_eq!(
                v["error"]["message"],
                "levee: upstream stalled; the response is incomplete"
            );
            assert_eq!(v["request_id"], "levee_1");
        }
    }
}
