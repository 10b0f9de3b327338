//! The first events of a `200` Messages stream.
//!
//! Until content flows, the client has been sent nothing, and an
//! `event: error` from the upstream (the API's `overloaded_error`, say) is
//! as good as an error status: the request can still be retried or failed
//! over. So the hosts hold the head and these first events back, for at
//! most the hold window, and an error among them becomes the attempt's
//! outcome, with the status the API gives that error type.
//!
//! Only `message_start`, `content_block_start`, `ping` and comments are
//! held. Any other event releases what is held, as does the window's end
//! or [`MAX_HELD`] bytes: from then on the stream passes as it comes.

use bytes::{Bytes, BytesMut};
use levee_policy_core::{ErrorKind, headers};

/// The most bytes held before content. The events before content take
/// about a kilobyte; a stream that sends more without content is released.
pub const MAX_HELD: usize = 64 << 10;

/// What the events so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Early {
    /// Only events that precede content: hold on.
    Holding,
    /// Content, or any event that is not held: deliver what is held.
    Content,
    /// An `error` event before content: the status the API answers that
    /// error with, and the error's JSON (the event's data).
    Error {
        /// `overloaded_error` 529, `rate_limit_error` 429, `api_error` 500…
        status: u16,
        /// The error in the API's shape, as an error response's body.
        body: Bytes,
    },
}

/// The bytes of a stream's start, classified event by event as they
/// arrive. Each byte is examined a bounded number of times, however the
/// stream is chunked.
#[derive(Debug, Default)]
pub struct Held {
    /// Levee's id for the request, for an error of levee's making.
    request_id: String,
    bytes: BytesMut,
    /// Where the first event not yet classified starts.
    classified: usize,
    /// Where the search for its end resumes.
    searched: usize,
}

impl Held {
    /// The start of the stream answering the request levee calls
    /// `request_id`.
    pub fn new(request_id: &str) -> Held {
        Held {
            request_id: request_id.to_owned(),
            ..Held::default()
        }
    }

    /// Takes the next bytes; says what the events complete so far mean.
    pub fn push(&mut self, data: &[u8]) -> Early {
        self.bytes.extend_from_slice(data);
        while let Some(end) = first_boundary(&self.bytes, self.searched.max(self.classified)) {
            let event = &self.bytes[self.classified..end];
            self.classified = end;
            self.searched = end;
            match classify(event, &self.request_id) {
                Early::Holding => continue,
                other => return other,
            }
        }
        // A boundary may straddle this push and the next.
        self.searched = self.bytes.len().saturating_sub(2).max(self.classified);
        if self.bytes.len() > MAX_HELD {
            return Early::Content;
        }
        Early::Holding
    }

    /// Everything held, to go to the client ahead of the rest.
    pub fn into_bytes(self) -> Bytes {
        self.bytes.freeze()
    }
}

/// The end of the first complete event at or after `from`: just past its
/// blank line (`\n\n`, `\r\r` or `\r\n\r\n`).
fn first_boundary(data: &[u8], from: usize) -> Option<usize> {
    let n = data.len();
    (from.max(1)..n).find_map(|i| match (data[i - 1], data[i]) {
        (b'\n', b'\n') | (b'\r', b'\r') => Some(i + 1),
        (b'\n', b'\r') if data.get(i + 1) == Some(&b'\n') => Some(i + 2),
        _ => None,
    })
}

/// What one complete event means before content.
fn classify(event: &[u8], request_id: &str) -> Early {
    let mut name: Option<&[u8]> = None;
    let mut data: Option<&[u8]> = None;
    for line in event.split(|&b| b == b'\n' || b == b'\r') {
        if let Some(v) = field(line, b"event") {
            name = Some(v);
        } else if let Some(v) = field(line, b"data") {
            data = data.or(Some(v));
        }
    }
    let name = match (name, data) {
        (Some(name), _) => name,
        // No event name: the data's own `type` says what it is.
        (None, Some(data)) => match crate::json_fields::fields(data, ["type"]) {
            Some([Some(t)]) => t
                .strip_prefix(b"\"")
                .and_then(|t| t.strip_suffix(b"\""))
                .unwrap_or(t),
            _ => return Early::Content,
        },
        // Comments and blank events hold nothing back.
        (None, None) => return Early::Holding,
    };
    match name {
        b"message_start" | b"content_block_start" | b"ping" => Early::Holding,
        b"error" => error(data.unwrap_or_default(), request_id),
        _ => Early::Content,
    }
}

/// A field's value, when `line` is that field (`name: value` or
/// `name:value`).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

/// An error event's outcome: its data when that is the API's error shape,
/// else an `api_error` of levee's saying what came.
fn error(data: &[u8], request_id: &str) -> Early {
    let (kind, _) = headers::parse_error_body(data);
    match kind {
        Some(kind) => Early::Error {
            status: status_of(kind),
            body: Bytes::copy_from_slice(data),
        },
        None => Early::Error {
            status: 500,
            body: crate::reply::error_json(
                "api_error",
                "levee: the upstream sent an error event that is not in the API's shape",
                request_id,
            )
            .into(),
        },
    }
}

/// The status the API answers an error type with.
pub fn status_of(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidRequest => 400,
        ErrorKind::Authentication => 401,
        ErrorKind::Billing => 402,
        ErrorKind::Permission => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::RequestTooLarge => 413,
        ErrorKind::RateLimit => 429,
        ErrorKind::TimeoutError => 504,
        ErrorKind::Overloaded => 529,
        ErrorKind::ApiError | ErrorKind::Other => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &[u8] =
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n";
    const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";
    const BLOCK: &[u8] =
        b"event: content_block_start\ndata: {\"type\":\"content_block_start\"}\n\n";
    const DELTA: &[u8] =
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n";
    const OVERLOADED: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

    fn all(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Pushes `bytes` `chunk` bytes at a time; the first verdict that is
    /// not `Holding`, or `Holding`.
    fn fed(bytes: &[u8], chunk: usize) -> Early {
        let mut held = Held::new("levee_1");
        for piece in bytes.chunks(chunk) {
            match held.push(piece) {
                Early::Holding => {}
                other => return other,
            }
        }
        Early::Holding
    }

    #[test]
    fn the_events_before_content_are_held_however_they_are_chunked() {
        let start = all(&[START, PING, BLOCK, b": a comment\n\n"]);
        for chunk in [1, 2, 3, 7, start.len()] {
            assert_eq!(fed(&start, chunk), Early::Holding, "chunk {chunk}");
        }
        let mut held = Held::default();
        assert_eq!(held.push(&start), Early::Holding);
        assert_eq!(held.into_bytes(), start, "everything held is kept");
    }

    #[test]
    fn content_or_any_other_event_releases_the_hold() {
        for chunk in [1, 5, 1000] {
            assert_eq!(fed(&all(&[START, PING, DELTA]), chunk), Early::Content);
            let other = all(&[START, b"event: something_new\ndata: {}\n\n"]);
            assert_eq!(fed(&other, chunk), Early::Content);
            assert_eq!(
                fed(
                    &all(&[START, b"event: message_stop\r\ndata: {}\r\n\r\n"]),
                    chunk
                ),
                Early::Content
            );
        }
    }

    #[test]
    fn an_error_before_content_is_the_status_the_api_gives_it() {
        for chunk in [1, 4, 1000] {
            let Early::Error { status, body } = fed(&all(&[START, PING, OVERLOADED]), chunk) else {
                panic!("an error event is the outcome");
            };
            assert_eq!(status, 529);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["type"], "overloaded_error");
        }
        let of = |t: &str| {
            let event = format!(
                "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{t}\",\"message\":\"m\"}}}}\r\n\r\n"
            );
            match fed(event.as_bytes(), 1000) {
                Early::Error { status, .. } => status,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(of("rate_limit_error"), 429);
        assert_eq!(of("api_error"), 500);
        assert_eq!(of("timeout_error"), 504);
        assert_eq!(of("something_else"), 500);
    }

    #[test]
    fn an_event_known_by_its_data_type_alone_is_classified_too() {
        assert_eq!(fed(b"data: {\"type\":\"ping\"}\n\n", 3), Early::Holding);
        assert_eq!(
            fed(b"data: {\"type\":\"content_block_delta\"}\n\n", 3),
            Early::Content
        );
        let Early::Error { status, .. } = fed(
            b"data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n",
            3,
        ) else {
            panic!("an error by its data is an error");
        };
        assert_eq!(status, 529);
    }

    #[test]
    fn an_error_event_not_in_the_apis_shape_is_levees_api_error() {
        let Early::Error { status, body } = fed(b"event: error\ndata: oops\n\n", 1000) else {
            panic!("an error event is an error");
        };
        assert_eq!(status, 500);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(v["request_id"], "levee_1", "levee's own error names its id");
    }

    #[test]
    fn a_start_that_never_ends_is_released_at_the_cap() {
        let mut held = Held::default();
        let endless = vec![b'x'; 4096];
        let mut pushes = 0;
        while held.push(&endless) == Early::Holding {
            pushes += 1;
            assert!(pushes <= MAX_HELD / 4096, "held past the cap");
        }
        assert_eq!(pushes, MAX_HELD / 4096);
    }
}
