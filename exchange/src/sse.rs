//! SSE as levee forwards it: each event passes the moment its terminating
//! blank line arrives, a partial event is held back, and the stream is
//! complete only after `message_stop` (or the upstream's own `error`
//! event). A failure therefore never leaves half an event on the wire, and
//! the terminal error frame that follows is always parseable.

use bytes::{Bytes, BytesMut};

/// Tracks event boundaries over a byte stream.
#[derive(Debug, Default)]
pub struct Cursor {
    pending: BytesMut,
    complete: bool,
}

impl Cursor {
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
        if !ready.is_empty() && !self.complete {
            self.complete = finishes_stream(&ready);
        }
        ready
    }

    /// Whether `message_stop` or an upstream `error` event has passed.
    pub fn complete(&self) -> bool {
        self.complete
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

/// Whether these complete events include the stream's last: `message_stop`,
/// or an upstream `error` event (which the API sends as the last event).
fn finishes_stream(events: &[u8]) -> bool {
    events.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        matches!(
            line,
            b"event: message_stop" | b"event:message_stop" | b"event: error" | b"event:error"
        )
    })
}

/// Whether a `content-type` value is an event stream.
pub fn is_event_stream(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..17)
        .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
}

/// The terminal frame for a broken stream, in the API's error shape.
pub fn error_frame(why: &str) -> String {
    let message = format!("levee: {why}; the response is incomplete");
    let json = crate::reply::error_json("api_error", &message, "");
    format!("event: error\ndata: {json}\n\n")
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
    fn an_upstream_error_event_finishes_the_stream() {
        assert!(finishes_stream(b"event: error\ndata: {}\n\n"));
        assert!(!finishes_stream(b"event: errors\ndata: {}\n\n"));
        assert!(finishes_stream(b"event:message_stop\r\ndata: {}\r\n\r\n"));
        assert!(!finishes_stream(b"data: event: message_stop\n\n"));
    }

    #[test]
    fn event_streams_are_known_by_their_content_type() {
        assert!(is_event_stream("text/event-stream; charset=utf-8"));
        assert!(is_event_stream(" Text/Event-Stream"));
        assert!(!is_event_stream("application/json"));
        assert!(!is_event_stream("text/event"));
    }

    #[test]
    fn the_error_frame_is_the_apis_shape() {
        let frame = error_frame("upstream stalled");
        let data = frame
            .strip_prefix("event: error\ndata: ")
            .and_then(|f| f.strip_suffix("\n\n"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(
            v["error"]["message"],
            "levee: upstream stalled; the response is incomplete"
        );
    }
}
