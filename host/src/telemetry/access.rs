//! The access log: exactly one line per request (target `levee::access`),
//! written when the response is over — its body ended, was cut, or the
//! client went away — so it carries the tokens the body reported.
//!
//! Two events meet here: the head (status, upstream, attempts: known when
//! the exchange returns) and the body's end (tokens, how it ended: known
//! when the watched body finishes). Whichever comes last writes the line;
//! a response with no watched body is written with its head. A traced
//! request's spans are handed to the exporter at the same moment.

use super::otel::{Ending, RequestSpan};
use levee_exchange::body::{Termination, Usage};
use levee_exchange::facts::{endpoint, endpoint_label};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the head tells.
pub(crate) struct Head {
    /// `levee_…`.
    pub request_id: String,
    /// The client's method.
    pub method: http::Method,
    /// The endpoint's bounded label.
    pub endpoint: &'static str,
    /// The model class the request's limits were kept under, once its
    /// body was read.
    pub model_class: Option<Arc<str>>,
    /// The status sent to the client.
    pub status: u16,
    /// The upstream that answered, if one did (`-` in the line).
    pub upstream: Option<Arc<String>>,
    /// Attempts made (`x-levee-attempts`).
    pub attempts: u32,
    /// The answering upstream's `request-id` and
    /// `anthropic-organization-id`, when it sent them.
    pub upstream_ids: UpstreamIds,
    /// From the request's arrival to the response head, in ms.
    pub head_ms: u64,
    /// The request's spans, when it is traced.
    pub span: Option<Box<RequestSpan>>,
}

/// What the upstream that answered calls the request, and whose it was:
/// printable ASCII, at most 128 bytes each. Copied, not kept as the
/// response's `HeaderValue`s: those share the connection's whole read
/// buffer, which would then live as long as the stream (7 KB a stream).
#[derive(Default)]
pub(crate) struct UpstreamIds {
    /// Its `request-id`.
    pub request_id: Option<Box<str>>,
    /// Its `anthropic-organization-id`.
    pub organization_id: Option<Box<str>>,
}

impl UpstreamIds {
    /// The ids in `headers`, unless the id is levee's own (`levee_id`: a
    /// response levee made).
    pub(crate) fn of(headers: &http::HeaderMap, levee_id: &str) -> UpstreamIds {
        // Names known at compile time: a `&str` name is parsed on each get.
        const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("request-id");
        const ORGANIZATION_ID: http::HeaderName =
            http::HeaderName::from_static("anthropic-organization-id");
        let shown = |v: &http::HeaderValue| {
            let s = v.to_str().ok()?;
            Some(s.get(..128).unwrap_or(s).into())
        };
        UpstreamIds {
            request_id: headers
                .get(REQUEST_ID)
                .filter(|v| v.as_bytes() != levee_id.as_bytes())
                .and_then(shown),
            organization_id: headers.get(ORGANIZATION_ID).and_then(shown),
        }
    }
}

impl Head {
    /// A response levee made before any upstream was chosen.
    pub(crate) fn local(
        request_id: String,
        method: http::Method,
        uri: &http::Uri,
        status: u16,
        span: Option<Box<RequestSpan>>,
    ) -> Head {
        Head {
            request_id,
            method,
            endpoint: endpoint_label(endpoint(uri.path())),
            model_class: None,
            status,
            upstream: None,
            attempts: 0,
            upstream_ids: UpstreamIds::default(),
            head_ms: 0,
            span,
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

/// One request's access line, in the making. When the access log is off
/// and the request is not traced, it records nothing.
pub(crate) struct Access {
    /// `[log] access`.
    log: bool,
    /// The line is written or the request traced: the head and tail meet.
    on: bool,
    started: Instant,
    state: Mutex<State>,
}

impl Access {
    /// A new request's; `log` is `[log] access`, `traced` whether its
    /// head will carry a span.
    pub(crate) fn new(log: bool, traced: bool, started: Instant) -> Access {
        Access {
            log,
            on: log || traced,
            started,
            state: Mutex::new(State::NoBody),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A watched body will report its end.
    pub(crate) fn expect_body(&self) {
        if self.on {
            *self.state() = State::Body;
        }
    }

    /// The body ended: its usage, how (`stream` when it is SSE), and the
    /// bytes sent.
    pub(crate) fn body_ended(&self, usage: Usage, how: Termination, stream: bool, bytes: u64) {
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
            State::Head(head) => self.write(head, Some(&tail)),
            State::Done => {}
            _ => *state = State::Ended(tail),
        }
    }

    /// The response head is going out.
    pub(crate) fn head(&self, head: Head) {
        if !self.on {
            return;
        }
        let mut state = self.state();
        match std::mem::replace(&mut *state, State::Done) {
            State::Body => *state = State::Head(head),
            State::Ended(tail) => self.write(head, Some(&tail)),
            State::NoBody => self.write(head, None),
            State::Head(_) | State::Done => {}
        }
    }

    fn write(&self, mut head: Head, tail: Option<&Tail>) {
        if let Some(span) = head.span.take() {
            span.end(Ending {
                status: head.status,
                upstream: head.upstream.clone(),
                usage: tail.map(|t| t.usage).unwrap_or_default(),
                end: tail.and_then(|t| t.end),
                at: Instant::now(),
            });
        }
        if !self.log || !tracing::enabled!(target: "levee::access", tracing::Level::INFO) {
            return;
        }
        let head = &head;
        let line = Line {
            head,
            usage: tail.map(|t| t.usage).unwrap_or_default(),
            total_ms: self.started.elapsed().as_millis() as u64,
            bytes: tail.map(|t| t.bytes),
            end: tail.and_then(|t| t.end).map(Termination::label),
        };
        if super::log::access_line(|buf, json| line.format(buf, json)) {
            return;
        }
        tracing::info!(
            target: "levee::access",
            request_id = head.request_id,
            method = %head.method,
            endpoint = head.endpoint,
            status = head.status,
            upstream = head.upstream.as_deref().map_or("-", String::as_str),
            upstream_request_id = head.upstream_ids.request_id.as_deref(),
            organization_id = head.upstream_ids.organization_id.as_deref(),
            attempts = head.attempts,
            worker = crate::worker::current(),
            head_ms = head.head_ms,
            total_ms = line.total_ms,
            bytes = line.bytes,
            input_tokens = line.usage.input,
            cache_creation_input_tokens = line.usage.cache_write,
            cache_read_input_tokens = line.usage.cache_read,
            output_tokens = line.usage.output,
            end = line.end,
            "request"
        );
    }
}

/// One access line's values.
struct Line<'a> {
    head: &'a Head,
    usage: Usage,
    total_ms: u64,
    bytes: Option<u64>,
    end: Option<&'static str>,
}

impl Line<'_> {
    /// Appends the line as `tracing-subscriber` would print the same event:
    /// its JSON object, or its human line (without colours). Written by
    /// hand, not with `write!`: this runs once per request. Only the
    /// upstream's name (from the config) can need escaping; the id, method
    /// (an HTTP token) and labels are written as they are.
    fn format(&self, buf: &mut Vec<u8>, json: bool) {
        let h = self.head;
        // What comes before a field's value: `,"name":` in JSON, ` name=`
        // in text, then `"` for a string, as one slice.
        macro_rules! lead {
            ($name:literal) => {
                lead!($name, "")
            };
            ($name:literal, $quote:literal) => {
                if json {
                    concat!(",\"", $name, "\":", $quote).as_bytes()
                } else {
                    concat!(" ", $name, "=", $quote).as_bytes()
                }
            };
        }
        if json {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(buf, std::time::SystemTime::now());
            buf.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\"");
        } else {
            timestamp(buf, std::time::SystemTime::now());
            buf.extend_from_slice(b"  INFO levee::access: request");
        }
        for (lead, value) in [
            (lead!("request_id", "\""), h.request_id.as_str()),
            (lead!("method", "\""), h.method.as_str()),
            (lead!("endpoint", "\""), h.endpoint),
        ] {
            buf.extend_from_slice(lead);
            buf.extend_from_slice(value.as_bytes());
            buf.push(b'"');
        }
        if let Some(class) = &h.model_class {
            buf.extend_from_slice(lead!("model_class"));
            json_str(buf, class);
        }
        buf.extend_from_slice(lead!("upstream"));
        json_str(buf, h.upstream.as_deref().map_or("-", String::as_str));
        for (lead, id) in [
            (lead!("upstream_request_id"), &h.upstream_ids.request_id),
            (lead!("organization_id"), &h.upstream_ids.organization_id),
        ] {
            if let Some(id) = id {
                buf.extend_from_slice(lead);
                json_str(buf, id);
            }
        }
        if let Some(end) = self.end {
            buf.extend_from_slice(lead!("end", "\""));
            buf.extend_from_slice(end.as_bytes());
            buf.push(b'"');
        }
        for (lead, value) in [
            (lead!("status"), Some(u64::from(h.status))),
            (lead!("attempts"), Some(u64::from(h.attempts))),
            (lead!("worker"), Some(crate::worker::current() as u64)),
            (lead!("head_ms"), Some(h.head_ms)),
            (lead!("total_ms"), Some(self.total_ms)),
            (lead!("bytes"), self.bytes),
            (lead!("input_tokens"), self.usage.input),
            (lead!("cache_creation_input_tokens"), self.usage.cache_write),
            (lead!("cache_read_input_tokens"), self.usage.cache_read),
            (lead!("output_tokens"), self.usage.output),
        ] {
            if let Some(v) = value {
                buf.extend_from_slice(lead);
                decimal(buf, v);
            }
        }
        if json {
            buf.extend_from_slice(b"},\"target\":\"levee::access\"}\n");
        } else {
            buf.push(b'\n');
        }
    }
}

/// `n` in decimal.
fn decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// `s` as a JSON string.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = std::io::Write::write_fmt(buf, format_args!("\\u{:04x}", c as u32));
            }
            c => {
                let mut utf8 = [0; 4];
                buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber` prints it.
/// The part up to the second is computed once a second per thread.
fn timestamp(buf: &mut Vec<u8>, t: std::time::SystemTime) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            *cached = secs;
            *text = civil(secs);
        }
        buf.extend_from_slice(text.as_bytes());
    });
    let micros = d.subsec_micros();
    let start = buf.len();
    decimal(buf, u64::from(micros) + 1_000_000);
    buf[start] = b'.';
    buf.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS` for `secs` since the epoch (UTC).
fn civil(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_what_tracing_would_print() {
        crate::worker::set_current(3);
        let head = Head {
            request_id: "levee_01".into(),
            method: http::Method::POST,
            endpoint: "messages",
            model_class: Some(Arc::from("sonnet")),
            status: 200,
            upstream: Some(Arc::new("a \"b\"".into())),
            attempts: 1,
            upstream_ids: UpstreamIds {
                request_id: Some("req_011".into()),
                organization_id: None,
            },
            head_ms: 3,
            span: None,
        };
        let line = Line {
            head: &head,
            usage: Usage {
                input: Some(17),
                cache_read: Some(4),
                ..Usage::default()
            },
            total_ms: 9,
            bytes: Some(120),
            end: Some("complete"),
        };
        let mut buf = Vec::new();
        line.format(&mut buf, true);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["target"], "levee::access");
        assert_eq!(v["level"], "INFO");
        let f = &v["fields"];
        assert_eq!(f["message"], "request");
        assert_eq!(f["upstream"], "a \"b\"");
        assert_eq!(f["model_class"], "sonnet");
        assert_eq!(f["upstream_request_id"], "req_011");
        assert!(f.get("organization_id").is_none());
        assert_eq!(f["input_tokens"], 17);
        assert_eq!(f["cache_read_input_tokens"], 4);
        assert!(f.get("output_tokens").is_none());
        assert!(f.get("cache_creation_input_tokens").is_none());
        assert_eq!(f["end"], "complete");
        assert_eq!(f["status"], 200);
        assert_eq!(f["attempts"], 1);
        assert_eq!(f["worker"], 3);
        let mut buf = Vec::new();
        line.format(&mut buf, false);
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.ends_with(" INFO levee::access: request request_id=\"levee_01\" method=\"POST\" endpoint=\"messages\" model_class=\"sonnet\" upstream=\"a \\\"b\\\"\" upstream_request_id=\"req_011\" end=\"complete\" status=200 attempts=1 worker=3 head_ms=3 total_ms=9 bytes=120 input_tokens=17 cache_read_input_tokens=4\n"),
            "{text}"
        );
        let unix = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_795_939_742_281_007);
        let mut buf = Vec::new();
        timestamp(&mut buf, unix);
        assert_eq!(buf, b"2026-11-29T08:09:02.281007Z");
        let mut buf = Vec::new();
        decimal(&mut buf, 0);
        decimal(&mut buf, 18_446_744_073_709_551_615);
        assert_eq!(buf, b"018446744073709551615");
    }
}
