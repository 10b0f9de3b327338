//! The access log: exactly one line per request (target `levee::access`),
//! written when the response is over — its body ended, was cut, or the
//! client went away — so it carries the tokens the body reported.
//!
//! Two events meet here: the head (status, upstream, attempts: known when
//! the exchange returns) and the body's end (tokens, how it ended: known
//! when the watched body finishes). Whichever comes last writes the line;
//! a response with no watched body is written with its head.

use super::stream::Termination;
use crate::limits::Usage;
use std::sync::Mutex;
use std::time::Instant;

/// What the head tells.
pub(super) struct Head {
    /// `levee_…`.
    pub request_id: String,
    /// The client's method.
    pub method: http::Method,
    /// The endpoint's bounded label.
    pub endpoint: &'static str,
    /// The status sent to the client.
    pub status: u16,
    /// The upstream that answered, or `-`.
    pub upstream: String,
    /// Attempts made (`x-levee-attempts`).
    pub attempts: String,
    /// From the request's arrival to the response head, in ms.
    pub head_ms: u64,
}

impl Head {
    /// A response levee made before any upstream was chosen.
    pub(super) fn local(
        request_id: String,
        method: http::Method,
        uri: &http::Uri,
        resp: &http::Response<super::reply::Body>,
    ) -> Head {
        Head {
            request_id,
            method,
            endpoint: super::facts::endpoint_label(super::facts::endpoint(uri.path())),
            status: resp.status().as_u16(),
            upstream: "-".to_owned(),
            attempts: "0".to_owned(),
            head_ms: 0,
        }
    }
}

/// What the body's end tells.
#[derive(Default)]
pub(super) struct Tail {
    usage: Usage,
    /// How a stream ended; `None` for a body that is not a stream.
    end: Option<Termination>,
    bytes: u64,
}

#[derive(Default)]
enum State {
    /// No watched body (yet): the head writes the line.
    #[default]
    NoBody,
    /// A watched body is on its way: its end writes the line.
    Body,
    /// The head, waiting for the body's end.
    Head(Head),
    /// The body ended before the head was handed over.
    Ended(Tail),
    /// Written.
    Done,
}

/// One request's access line, in the making. When the access log is off it
/// records nothing.
pub(super) struct Access {
    on: bool,
    started: Instant,
    state: Mutex<State>,
}

impl Access {
    /// A new request's; `on` is `[log] access`.
    pub(super) fn new(on: bool, started: Instant) -> Access {
        Access {
            on,
            started,
            state: Mutex::new(State::NoBody),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A watched body will report its end.
    pub(super) fn expect_body(&self) {
        if self.on {
            *self.state() = State::Body;
        }
    }

    /// The body ended: its usage, how (`stream` when it is SSE), and the
    /// bytes sent.
    pub(super) fn body_ended(&self, usage: Usage, how: Termination, stream: bool, bytes: u64) {
        if !self.on {
            return;
        }
        let tail = Tail {
            usage,
            end: stream.then_some(how),
            bytes,
        };
        let mut state = self.state();
        match std::mem::replace(&mut *state, State::Done) {
            State::Head(head) => self.write(&head, Some(&tail)),
            State::Done => {}
            _ => *state = State::Ended(tail),
        }
    }

    /// The response head is going out.
    pub(super) fn head(&self, head: Head) {
        if !self.on {
            return;
        }
        let mut state = self.state();
        match std::mem::replace(&mut *state, State::Done) {
            State::Body => *state = State::Head(head),
            State::Ended(tail) => self.write(&head, Some(&tail)),
            State::NoBody => self.write(&head, None),
            State::Head(_) | State::Done => {}
        }
    }

    fn write(&self, head: &Head, tail: Option<&Tail>) {
        let usage = tail.map(|t| t.usage).unwrap_or_default();
        tracing::info!(
            target: "levee::access",
            request_id = head.request_id,
            method = %head.method,
            endpoint = head.endpoint,
            status = head.status,
            upstream = head.upstream,
            attempts = head.attempts,
            head_ms = head.head_ms,
            total_ms = self.started.elapsed().as_millis() as u64,
            bytes = tail.map(|t| t.bytes),
            input_tokens = usage.input,
            output_tokens = usage.output,
            end = tail.and_then(|t| t.end).map(Termination::label),
            "request"
        );
    }
}

impl Drop for Access {
    /// A head that never met its body's end (the body was never polled nor
    /// dropped through the guard) is still written, once.
    fn drop(&mut self) {
        if let State::Head(head) = std::mem::replace(&mut *self.state(), State::Done) {
            self.write(&head, None);
        }
    }
}
