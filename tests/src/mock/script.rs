//! What the mock answers: a queue of [`Step`]s, one per request, and the
//! [`Reply`] builders that speak the API's error and success shapes.

use super::sse::{SseEnd, SseScript};
use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Numbers the `req_mock_N` / `msg_mock_N` ids handed out by the builders.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh, process-unique number for mock ids.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// What the mock does with one request.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answer with a complete response.
    Reply(Reply),
    /// Read the request, then drop the connection with `SO_LINGER 0` (a TCP
    /// RST) before any response byte: "reset before the head". On HTTP/2
    /// this kills the whole connection.
    Reset,
    /// Read the request, then close the connection cleanly (FIN, no TLS
    /// `close_notify`) without responding.
    Close,
    /// Read the request and never answer; the connection stays open until
    /// the mock stops.
    Hang,
    /// Answer `200 text/event-stream` and play an SSE script.
    Sse(SseScript),
    /// HTTP/2: read the request, then reset its stream with
    /// `REFUSED_STREAM`, the server's word that it did not process the
    /// request (RFC 9113 §8.7), so a client may safely send it again. The
    /// connection goes on serving. HTTP/1.1 has no such signal: there the
    /// mock answers a 500 "mock script error".
    RefuseStream,
}

impl From<Reply> for Step {
    fn from(reply: Reply) -> Self {
        Step::Reply(reply)
    }
}

impl From<SseScript> for Step {
    fn from(sse: SseScript) -> Self {
        Step::Sse(sse)
    }
}

/// A queue of steps consumed one per request, and the step used once the
/// queue is empty.
#[derive(Clone, Debug)]
pub struct Script {
    /// Steps still to play, front first.
    pub steps: VecDeque<Step>,
    /// What every request gets once `steps` is empty.
    pub fallback: Step,
    /// Per client request: the first attempt that carries a value of this
    /// header not seen before gets this step, ahead of the queue.
    pub first_sight: Option<FirstSight>,
}

/// A step for the first attempt of each client request, told apart by a
/// header the client sets: an upstream that fails each request once, as a
/// mild overload does, whatever else is in flight.
#[derive(Clone, Debug)]
pub struct FirstSight {
    /// The header that names the client's request.
    pub header: &'static str,
    /// What the first attempt gets.
    pub step: Step,
    /// The values seen so far.
    pub seen: HashSet<String>,
}

impl Default for Script {
    /// No steps; the fallback is [`Reply::message`].
    fn default() -> Self {
        Script {
            steps: VecDeque::new(),
            fallback: Step::Reply(Reply::message()),
            first_sight: None,
        }
    }
}

impl Script {
    /// An empty queue with the default fallback (a 200 Messages response).
    pub fn new() -> Self {
        Self::default()
    }

    /// These steps in order, then the default fallback.
    pub fn of<S: Into<Step>>(steps: impl IntoIterator<Item = S>) -> Self {
        Script {
            steps: steps.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Every request gets `step`.
    pub fn always(step: impl Into<Step>) -> Self {
        Script {
            fallback: step.into(),
            ..Self::default()
        }
    }

    /// The first attempt of each client request (a value of `header` not
    /// seen before) gets `step`; later ones go on with the script. A
    /// request without the header follows the script.
    pub fn first_sight(mut self, header: &'static str, step: impl Into<Step>) -> Self {
        self.first_sight = Some(FirstSight {
            header,
            step: step.into(),
            seen: HashSet::new(),
        });
        self
    }

    /// Appends one step to the queue.
    pub fn then(mut self, step: impl Into<Step>) -> Self {
        self.steps.push_back(step.into());
        self
    }

    /// Replaces the fallback.
    pub fn otherwise(mut self, step: impl Into<Step>) -> Self {
        self.fallback = step.into();
        self
    }

    /// The step the next request will take, without taking it.
    pub(crate) fn peek_step(&self) -> &Step {
        self.steps.front().unwrap_or(&self.fallback)
    }

    /// The step for a request with `headers`: its first sight's step, if
    /// this is one, else the next.
    pub(crate) fn step_for(&mut self, headers: &http::HeaderMap) -> Step {
        if let Some(first) = &mut self.first_sight
            && let Some(value) = headers.get(first.header).and_then(|v| v.to_str().ok())
            && first.seen.insert(value.to_owned())
        {
            return first.step.clone();
        }
        self.next_step()
    }

    /// The step for the next request: the queue's front, else the fallback.
    pub(crate) fn next_step(&mut self) -> Step {
        self.steps
            .pop_front()
            .unwrap_or_else(|| self.fallback.clone())
    }
}

/// The delay a rate-limited reply asks for, and the header that carries it.
#[derive(Clone, Copy, Debug)]
pub enum RetryAfter {
    /// `retry-after-ms: N`.
    Ms(u64),
    /// `retry-after: N` (seconds).
    Secs(u64),
    /// `retry-after: <IMF-fixdate>`.
    Date(SystemTime),
}

impl RetryAfter {
    /// The header name and value.
    pub fn header(self) -> (&'static str, String) {
        match self {
            RetryAfter::Ms(ms) => ("retry-after-ms", ms.to_string()),
            RetryAfter::Secs(s) => ("retry-after", s.to_string()),
            RetryAfter::Date(t) => ("retry-after", http_date(t)),
        }
    }
}

/// A complete response.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers in order. `content-length` (of the whole body, even when
    /// the body is cut short) is added when absent.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
    /// How long to wait, after reading the request, before sending the head.
    pub head_delay: Duration,
    /// Send the body in pieces of this many bytes, waiting this long before
    /// each piece after the first (which goes with the head). `None`: in
    /// one write.
    pub trickle: Option<(usize, Duration)>,
    /// Stop after this many body bytes and end as this says
    /// ([`SseEnd::Cut`] or [`SseEnd::Close`]). `None`: the whole body.
    pub cut: Option<(usize, SseEnd)>,
    /// Shut the connection down gracefully before the head.
    pub go_away: bool,
}

impl Reply {
    /// `status` with no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            head_delay: Duration::ZERO,
            trickle: None,
            cut: None,
            go_away: false,
        }
    }

    /// `status` with a JSON body, `content-type: application/json` and a
    /// fresh `request-id: req_mock_N`.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self::json_with_id(status, body.into(), format!("req_mock_{}", next_id()))
    }

    fn json_with_id(status: u16, body: Bytes, request_id: String) -> Self {
        Reply {
            body,
            ..Reply::new(status)
        }
        .header("content-type", "application/json")
        .header("request-id", request_id)
    }

    /// A 200 Messages API response with a short text answer and `usage`
    /// (12 input tokens, 8 output tokens).
    pub fn message() -> Self {
        Self::message_with("Hello from the mock upstream.", 12, 8)
    }

    /// A 200 Messages API response answering `text`, reporting this usage.
    pub fn message_with(text: &str, input_tokens: u64, output_tokens: u64) -> Self {
        let id = next_id();
        let text = serde_json::to_string(text).expect("a string serializes");
        let body = format!(
            concat!(
                r#"{{"id":"msg_mock_{id}","type":"message","role":"assistant","#,
                r#""model":"claude-mock-1","content":[{{"type":"text","text":{text}}}],"#,
                r#""stop_reason":"end_turn","stop_sequence":null,"usage":{{"#,
                r#""input_tokens":{input},"cache_creation_input_tokens":0,"#,
                r#""cache_read_input_tokens":0,"output_tokens":{output}}}}}"#
            ),
            id = id,
            text = text,
            input = input_tokens,
            output = output_tokens,
        );
        Self::json_with_id(200, body.into(), format!("req_mock_{id}"))
    }

    /// The API's error shape:
    /// `{"type":"error","error":{"type":..,"message":..},"request_id":"req_.."}`,
    /// with the same id in the `request-id` header.
    pub fn error(status: u16, error_type: &str, message: &str) -> Self {
        Self::error_with(status, error_type, message, None)
    }

    fn error_with(status: u16, error_type: &str, message: &str, details: Option<&str>) -> Self {
        let request_id = format!("req_mock_{}", next_id());
        let details = details.map_or(String::new(), |d| format!(r#","details":{d}"#));
        let body = format!(
            r#"{{"type":"error","error":{{"type":{},"message":{}{details}}},"request_id":"{request_id}"}}"#,
            serde_json::to_string(error_type).expect("a string serializes"),
            serde_json::to_string(message).expect("a string serializes"),
        );
        Self::json_with_id(status, body.into(), request_id)
    }

    /// What a load balancer or CDN in front of the API sends when it, or
    /// the API behind it, fails: `status` with `content-type: text/html`,
    /// an HTML error page naming the status, and no `request-id` (the API
    /// never saw the request). E.g. `Reply::html(502)`, "502 Bad Gateway".
    pub fn html(status: u16) -> Self {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let body = format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
             <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
             </body>\r\n</html>\r\n"
        );
        Reply {
            body: body.into(),
            ..Reply::new(status)
        }
        .header("content-type", "text/html")
    }

    /// `529 overloaded_error`.
    pub fn overloaded() -> Self {
        Self::error(529, "overloaded_error", "Overloaded")
    }

    /// `429 rate_limit_error` with the given retry header.
    pub fn rate_limited(retry_after: RetryAfter) -> Self {
        let (name, value) = retry_after.header();
        Self::error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization.",
        )
        .header(name, value)
    }

    /// `429` for a reached spend cap: `error.details.error_code =
    /// "enforced_spend_limit_reached"` and no retry header.
    pub fn spend_cap() -> Self {
        Self::error_with(
            429,
            "rate_limit_error",
            "You have reached your specified API usage limits.",
            Some(r#"{"error_code":"enforced_spend_limit_reached"}"#),
        )
    }

    /// Sets a header, replacing any of the same name (case-insensitive).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        set_header(&mut self.headers, name.into(), value.into());
        self
    }

    /// Waits `delay` before sending the head.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.head_delay = delay;
        self
    }

    /// Sends the body `size` bytes at a time, waiting `gap` before each
    /// piece after the first: a slow link, or a slow server. Each piece is
    /// its own write, flushed at once.
    pub fn trickle(mut self, size: usize, gap: Duration) -> Self {
        self.trickle = Some((size.max(1), gap));
        self
    }

    /// Sends the head (its `content-length` for the whole body) and the
    /// first `n` body bytes, then aborts: on HTTP/1.1 a TCP RST, on
    /// HTTP/2 an `RST_STREAM`. Every byte before the cut reaches the peer.
    pub fn cut_after(mut self, n: usize) -> Self {
        self.cut = Some((n, SseEnd::Cut));
        self
    }

    /// As [`Reply::cut_after`], but the connection then closes cleanly (a
    /// FIN): the body just stops short of its `content-length`.
    pub fn close_after(mut self, n: usize) -> Self {
        self.cut = Some((n, SseEnd::Close));
        self
    }

    /// Shuts the connection down gracefully, as a server going away does,
    /// then answers. On HTTP/2: a `GOAWAY`, and the head only once the peer
    /// has read it (it acked the shutdown `PING`), so that the peer knows
    /// before the answer that no new stream may go on this connection;
    /// streams in flight, this one too, play on, and the connection closes
    /// when they are done. On HTTP/1.1: the connection closes once this
    /// response is sent.
    pub fn go_away(mut self) -> Self {
        self.go_away = true;
        self
    }

    /// The body's writes as scripted: `(delay before, bytes)` for each
    /// piece of [`Reply::trickle`], cut at [`Reply::cut`], and how it ends.
    /// `None` for a body sent whole in one write.
    pub(crate) fn pieces(&self) -> Option<(Vec<(Duration, Bytes)>, SseEnd)> {
        if self.trickle.is_none() && self.cut.is_none() {
            return None;
        }
        let (sent, end) = match self.cut {
            Some((n, end)) => (self.body.slice(..n.min(self.body.len())), end),
            None => (self.body.clone(), SseEnd::Complete),
        };
        let (size, gap) = self.trickle.unwrap_or((sent.len().max(1), Duration::ZERO));
        let pieces = (0..sent.len())
            .step_by(size)
            .map(|at| {
                let delay = if at == 0 { Duration::ZERO } else { gap };
                (delay, sent.slice(at..(at + size).min(sent.len())))
            })
            .collect();
        Some((pieces, end))
    }

    /// Sets `x-should-retry: true` or `false`.
    pub fn should_retry(self, retry: bool) -> Self {
        self.header("x-should-retry", if retry { "true" } else { "false" })
    }

    /// The `request-id` header's value, if any.
    pub fn request_id(&self) -> Option<&str> {
        header_value(&self.headers, "request-id")
    }
}

/// Sets `name: value` in `headers`, replacing same-named entries.
pub(crate) fn set_header(headers: &mut Vec<(String, String)>, name: String, value: String) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
    headers.push((name, value));
}

/// The first value of `name` (case-insensitive) in `headers`.
pub(crate) fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `t` as an IMF-fixdate HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`).
/// Times before 1970 are clamped to the epoch.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = Civil::of(t);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(c.days % 7) as usize],
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.secs / 3600,
        c.secs / 60 % 60,
        c.secs % 60
    )
}

/// `t` as an RFC 3339 UTC time in whole seconds (`1994-11-06T08:49:37Z`),
/// the API's `anthropic-ratelimit-*-reset` format. Times before 1970 are
/// clamped to the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let c = Civil::of(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year,
        c.month,
        c.day,
        c.secs / 3600,
        c.secs / 60 % 60,
        c.secs % 60
    )
}

/// A UTC calendar date and the seconds into it.
struct Civil {
    /// Days since 1970-01-01.
    days: u64,
    year: i64,
    month: i64,
    day: i64,
    secs: u64,
}

impl Civil {
    fn of(t: SystemTime) -> Civil {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Howard Hinnant's civil_from_days, for days since 1970-01-01.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            days,
            year,
            month,
            day,
            secs: rem,
        }
    }
}
