//! Scripted `text/event-stream` answers: the API's real event sequence, and
//! the ways a stream can end (complete, stalled, cut).

use super::script::{next_id, set_header};
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// How a scripted body (a stream, or a [`super::Reply`] sent in pieces)
/// ends after its last chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseEnd {
    /// A normal end of body.
    Complete,
    /// Send nothing more and keep the connection open until the mock stops.
    Stall,
    /// Abort: on HTTP/1.1 a TCP RST of the connection, on HTTP/2 an
    /// `RST_STREAM`. Every chunk before it reaches the peer first.
    Cut,
    /// Close the connection cleanly (a FIN, no TLS `close_notify`), on
    /// HTTP/2 too (no `GOAWAY`): the body just stops. Every chunk before
    /// it reaches the peer first.
    Close,
}

/// A `200 text/event-stream` response played chunk by chunk.
#[derive(Clone, Debug)]
pub struct SseScript {
    /// Status code (200).
    pub status: u16,
    /// Headers; `content-type: text/event-stream` and a `request-id` are set
    /// by the constructors.
    pub headers: Vec<(String, String)>,
    /// How long to wait, after reading the request, before sending the head.
    pub head_delay: Duration,
    /// `(delay before, bytes)`: each is its own write (HTTP/1.1 chunk or
    /// HTTP/2 DATA frame), flushed at once.
    pub chunks: Vec<(Duration, Bytes)>,
    /// What happens after the last chunk.
    pub end: SseEnd,
    /// Shut the connection down gracefully before the head: see
    /// [`super::Reply::go_away`].
    pub go_away: bool,
}

impl SseScript {
    /// A stream of these chunks, sent without delay, ending `Complete`.
    pub fn from_chunks<B: Into<Bytes>>(chunks: impl IntoIterator<Item = B>) -> Self {
        SseScript {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
                ("request-id".into(), format!("req_mock_{}", next_id())),
            ],
            head_delay: Duration::ZERO,
            chunks: chunks
                .into_iter()
                .map(|c| (Duration::ZERO, c.into()))
                .collect(),
            end: SseEnd::Complete,
            go_away: false,
        }
    }

    /// The API's event sequence answering `text`, with 12 input tokens and
    /// one output token per text delta.
    pub fn message(text: &str) -> Self {
        let deltas = split_text(text);
        let output = deltas.len() as u64;
        Self::message_with(&deltas, 12, output)
    }

    /// The API's event sequence: `message_start` (with
    /// `usage.input_tokens`), `content_block_start`, a `ping`, one
    /// `content_block_delta` per entry of `deltas`, `content_block_stop`,
    /// `message_delta` (with `usage.output_tokens`), `message_stop`. One
    /// event per chunk.
    pub fn message_with(deltas: &[&str], input_tokens: u64, output_tokens: u64) -> Self {
        let id = next_id();
        let mut events = vec![
            event(
                "message_start",
                &format!(
                    concat!(
                        r#"{{"type":"message_start","message":{{"id":"msg_mock_{}","#,
                        r#""type":"message","role":"assistant","model":"claude-mock-1","#,
                        r#""content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"#,
                        r#""input_tokens":{},"cache_creation_input_tokens":0,"#,
                        r#""cache_read_input_tokens":0,"output_tokens":1}}}}}}"#
                    ),
                    id, input_tokens
                ),
            ),
            event(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            event("ping", r#"{"type": "ping"}"#),
        ];
        for delta in deltas {
            let text = serde_json::to_string(delta).expect("a string serializes");
            events.push(event(
                "content_block_delta",
                &format!(
                    r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{text}}}}}"#
                ),
            ));
        }
        events.push(event(
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ));
        events.push(event(
            "message_delta",
            &format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{output_tokens}}}}}"#
            ),
        ));
        events.push(event("message_stop", r#"{"type":"message_stop"}"#));
        let mut script = Self::from_chunks(events);
        set_header(
            &mut script.headers,
            "request-id".into(),
            format!("req_mock_{id}"),
        );
        script
    }

    /// Keeps the first `n` chunks, then the first `partial` bytes of the
    /// next one (if any), then cuts the stream.
    pub fn cut_after(mut self, n: usize, partial: usize) -> Self {
        let next = self.chunks.get(n).cloned();
        self.chunks.truncate(n);
        if let Some((delay, bytes)) = next
            && partial > 0
        {
            self.chunks
                .push((delay, bytes.slice(..partial.min(bytes.len()))));
        }
        self.end = SseEnd::Cut;
        self
    }

    /// Keeps the first `n` chunks, then stalls.
    pub fn stall_after(mut self, n: usize) -> Self {
        self.chunks.truncate(n);
        self.end = SseEnd::Stall;
        self
    }

    /// Keeps the first `n` chunks, then sends the API's mid-stream error
    /// event (`event: error`) and ends the body normally.
    pub fn error_after(mut self, n: usize, error_type: &str, message: &str) -> Self {
        let delay = self.chunks.get(n).map_or(Duration::ZERO, |c| c.0);
        self.chunks.truncate(n);
        self.chunks.push((delay, error_event(error_type, message)));
        self.end = SseEnd::Complete;
        self
    }

    /// Waits `delay` before every chunk.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        for chunk in &mut self.chunks {
            chunk.0 = delay;
        }
        self
    }

    /// Waits `delay` before sending the head.
    pub fn head_delay(mut self, delay: Duration) -> Self {
        self.head_delay = delay;
        self
    }

    /// Sends a `GOAWAY` before the head: see [`super::Reply::go_away`].
    /// The stream itself plays on.
    pub fn go_away(mut self) -> Self {
        self.go_away = true;
        self
    }

    /// Sets a header, replacing any of the same name (case-insensitive).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        set_header(&mut self.headers, name.into(), value.into());
        self
    }

    /// Every scripted body byte, concatenated: what a client receives
    /// before the stream completes, stalls or is cut.
    pub fn bytes(&self) -> Bytes {
        let mut all = BytesMut::new();
        for (_, chunk) in &self.chunks {
            all.extend_from_slice(chunk);
        }
        all.freeze()
    }
}

/// One SSE event: `event: NAME\ndata: DATA\n\n`.
pub fn event(name: &str, data: &str) -> Bytes {
    format!("event: {name}\ndata: {data}\n\n").into()
}

/// The API's mid-stream error event:
/// `event: error` with `{"type":"error","error":{"type":..,"message":..}}`.
pub fn error_event(error_type: &str, message: &str) -> Bytes {
    event(
        "error",
        &format!(
            r#"{{"type":"error","error":{{"type":{},"message":{}}}}}"#,
            serde_json::to_string(error_type).expect("a string serializes"),
            serde_json::to_string(message).expect("a string serializes"),
        ),
    )
}

/// Splits `text` into word-sized deltas (at least one).
fn split_text(text: &str) -> Vec<&str> {
    let pieces: Vec<&str> = text.split_inclusive(' ').collect();
    if pieces.is_empty() { vec![""] } else { pieces }
}
