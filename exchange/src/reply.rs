//! Every response levee makes itself, from one table, and the headers
//! levee adds to the answers it passes on.
//!
//! - Every response carries `x-levee-attempts`.
//! - When levee gives up, `x-should-retry` says whether a client retry can
//!   help, so that the official SDKs do not pile their retries on levee's,
//!   and `retry-after` / `retry-after-ms` say when, if known. The two
//!   always agree: a "do not retry" never comes with a time to retry at.
//! - levee's own errors use the API's error shape, and each counts under
//!   the metric reason of its [`Reason`].

use levee_policy_core::{FailureKind, GiveUp, Rejection};
use std::borrow::Cow;

/// `x-levee-attempts`
pub const ATTEMPTS: &str = "x-levee-attempts";
/// `x-should-retry`
pub const SHOULD_RETRY: &str = "x-should-retry";
/// `retry-after`
pub const RETRY_AFTER: &str = "retry-after";
/// `retry-after-ms`
pub const RETRY_AFTER_MS: &str = "retry-after-ms";
/// `request-id`
pub const REQUEST_ID: &str = "request-id";

/// Why levee answered itself. Each reason has one row in [`Reason::row`]:
/// its status, the API's `error.type`, whether a client retry can help,
/// and its label in `levee_local_rejections_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The request body is over its endpoint's limit.
    BodyTooLarge,
    /// The request body could not be read.
    BodyUnreadable,
    /// A large request body could not be written to its spool file.
    BodyUnspooled,
    /// The path has a `.` or `..` segment.
    DotSegment,
    /// The policy queued the request past its deadline.
    QueueDeadline,
    /// The admission queue has no place left.
    QueueFull,
    /// The policy rejected the request (its own status and type).
    PolicyReject,
    /// The policy planned no configured upstream.
    NoUpstream,
    /// The rate limits have no room before the deadline.
    RateLimited,
    /// The request alone exceeds a per-minute limit.
    TooLargeForLimit,
    /// The shared limiter cannot be reached and fails closed.
    LimiterUnavailable,
    /// The edge serves only under its prefix.
    NotFound,
    /// The edge's access token is missing or wrong.
    Unauthorized,
    /// The edge's settings or its policy's config are wrong.
    Misconfigured,
    /// The last attempt got no answer: a transport failure.
    UpstreamFailed,
    /// The last attempt timed out.
    UpstreamTimeout,
}

/// A row of the table: status, `error.type`, `x-should-retry`, label.
type Row = (u16, &'static str, bool, &'static str);

impl Reason {
    /// Every reason, for tables and docs.
    pub const ALL: [Reason; 16] = [
        Reason::BodyTooLarge,
        Reason::BodyUnreadable,
        Reason::BodyUnspooled,
        Reason::DotSegment,
        Reason::QueueDeadline,
        Reason::QueueFull,
        Reason::PolicyReject,
        Reason::NoUpstream,
        Reason::RateLimited,
        Reason::TooLargeForLimit,
        Reason::LimiterUnavailable,
        Reason::NotFound,
        Reason::Unauthorized,
        Reason::Misconfigured,
        Reason::UpstreamFailed,
        Reason::UpstreamTimeout,
    ];

    /// The table from levee's errors to HTTP.
    pub const fn row(self) -> Row {
        match self {
            Reason::BodyTooLarge => (413, "request_too_large", false, "body_too_large"),
            Reason::BodyUnreadable => (400, "invalid_request_error", false, "body_unreadable"),
            Reason::BodyUnspooled => (500, "api_error", true, "body_unspooled"),
            Reason::DotSegment => (400, "invalid_request_error", false, "dot_segment"),
            Reason::QueueDeadline => (429, "rate_limit_error", true, "queue_deadline"),
            Reason::QueueFull => (429, "rate_limit_error", true, "queue_full"),
            Reason::PolicyReject => (503, "api_error", false, "policy_reject"),
            Reason::NoUpstream => (503, "api_error", false, "no_upstream"),
            Reason::RateLimited => (429, "rate_limit_error", true, "rate_limited"),
            Reason::TooLargeForLimit => (429, "rate_limit_error", false, "too_large_for_limit"),
            Reason::LimiterUnavailable => (503, "api_error", true, "limiter_unavailable"),
            Reason::NotFound => (404, "not_found_error", false, "not_found"),
            Reason::Unauthorized => (401, "authentication_error", false, "unauthorized"),
            Reason::Misconfigured => (500, "api_error", false, "misconfigured"),
            Reason::UpstreamFailed => (502, "api_error", false, "upstream_failed"),
            Reason::UpstreamTimeout => (504, "timeout_error", false, "upstream_timeout"),
        }
    }

    /// The metric label.
    pub const fn label(self) -> &'static str {
        self.row().3
    }

    /// Whether levee refused the request before any attempt (counted in
    /// `levee_local_rejections_total`), rather than reporting an upstream's
    /// failure.
    pub const fn is_rejection(self) -> bool {
        !matches!(self, Reason::UpstreamFailed | Reason::UpstreamTimeout)
    }
}

/// A response levee makes itself, in the API's error shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    /// Why; the metric reason.
    pub reason: Reason,
    /// HTTP status.
    pub status: u16,
    /// The API's `error.type`.
    pub error_type: Cow<'static, str>,
    /// The message.
    pub message: String,
    /// `x-should-retry`, and `retry-after` when known.
    pub verdict: GiveUp,
}

impl LocalReply {
    /// A reply as the table has it for `reason`, with `message`, and a
    /// wait when the reason allows a retry.
    pub fn new(reason: Reason, message: impl Into<String>, retry_after_ms: Option<u64>) -> Self {
        let (status, error_type, should_retry, _) = reason.row();
        LocalReply {
            reason,
            status,
            error_type: Cow::Borrowed(error_type),
            message: message.into(),
            verdict: GiveUp {
                should_retry,
                retry_after_ms: retry_after_ms.filter(|_| should_retry),
            },
        }
    }

    /// The body is over `limit` bytes.
    pub fn body_too_large(limit: usize) -> Self {
        let message = format!("request body is larger than the {limit} bytes levee accepts");
        Self::new(Reason::BodyTooLarge, message, None)
    }

    /// The body could not be spooled to disk: levee's own trouble (a full
    /// or failing disk), so a later retry can succeed.
    pub fn body_unspooled(detail: &str) -> Self {
        let message = format!("levee could not spool the request body to disk: {detail}");
        Self::new(Reason::BodyUnspooled, message, None)
    }

    /// The path has a `.` or `..` segment ([`crate::facts::has_dot_segment`]).
    pub fn dot_segment() -> Self {
        let message = "the path may not hold a `.` or `..` segment, plain or percent-encoded";
        Self::new(Reason::DotSegment, message, None)
    }

    /// The body could not be read.
    pub fn body_unreadable(detail: &str) -> Self {
        let message = format!("could not read the request body: {detail}");
        Self::new(Reason::BodyUnreadable, message, None)
    }

    /// Queued past the deadline: every upstream is busy `wait_ms` longer.
    pub fn queue_deadline(wait_ms: u64) -> Self {
        let message = "every upstream is busy beyond this request's deadline";
        Self::new(Reason::QueueDeadline, message, Some(wait_ms))
    }

    /// The admission queue is full; room is expected in `wait_ms`.
    pub fn queue_full(wait_ms: u64) -> Self {
        let message = "levee's admission queue is full; the rate limits have no room now";
        Self::new(Reason::QueueFull, message, Some(wait_ms))
    }

    /// The policy's rejection, with its own status, type and verdict. A
    /// status that is not an error status becomes the table's.
    pub fn policy_reject(r: &Rejection) -> Self {
        let mut reply = Self::new(Reason::PolicyReject, r.message.clone(), None);
        if (400..=599).contains(&r.status) {
            reply.status = r.status;
        }
        if !r.error_type.is_empty() {
            reply.error_type = Cow::Owned(r.error_type.clone());
        }
        reply.verdict = verdict(GiveUp {
            should_retry: r.should_retry,
            retry_after_ms: r.retry_after_ms,
        });
        reply
    }

    /// The policy planned no configured upstream.
    pub fn no_upstream() -> Self {
        let message = "the policy planned no configured upstream";
        Self::new(Reason::NoUpstream, message, None)
    }

    /// The rate limits have no room before the deadline.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        let message = format!(
            "the rate limits have no room for this request before its deadline; room in {retry_after_ms} ms"
        );
        Self::new(Reason::RateLimited, message, Some(retry_after_ms))
    }

    /// The request's `what` (e.g. "input tokens") exceed a per-minute limit
    /// on their own.
    pub fn too_large_for_limit(what: &str) -> Self {
        let message = format!(
            "this request's {what} exceed the per-minute limit on its own; it can never be admitted"
        );
        Self::new(Reason::TooLargeForLimit, message, None)
    }

    /// The shared limiter cannot be reached; try again in `retry_after_ms`.
    pub fn limiter_unavailable(retry_after_ms: u64) -> Self {
        let message = "levee's shared rate limiter (Redis) cannot be reached, and `limits.redis.on_failure` is \"closed\"";
        Self::new(Reason::LimiterUnavailable, message, Some(retry_after_ms))
    }

    /// The last attempt, to `upstream`, got no answer: `kind` at its layer,
    /// with `detail`. `verdict` is the give-up's, when it has one.
    pub fn upstream_failure(
        kind: FailureKind,
        detail: &str,
        upstream: &str,
        attempts: u32,
        verdict: Option<GiveUp>,
    ) -> Self {
        let reason = match kind {
            FailureKind::Timeout => Reason::UpstreamTimeout,
            _ => Reason::UpstreamFailed,
        };
        let message = format!(
            "{}: {detail} (upstream `{upstream}`, after {attempts} attempt{})",
            layer_name(kind),
            if attempts == 1 { "" } else { "s" }
        );
        let mut reply = Self::new(reason, message, None);
        if let Some(g) = verdict {
            reply.verdict = self::verdict(g);
        }
        reply
    }

    /// The body: the API's error shape.
    pub fn body(&self, request_id: &str) -> String {
        error_json(&self.error_type, &self.message, request_id)
    }

    /// The head's headers: content type, request id, attempts, verdict.
    pub fn head(&self, headers: &mut impl Headers, request_id: &str, attempts: u32) {
        headers.set("content-type", Cow::Borrowed("application/json"));
        headers.set(REQUEST_ID, Cow::Owned(request_id.to_owned()));
        headers.set_number(ATTEMPTS, u64::from(attempts));
        set_verdict(headers, self.verdict, true);
    }
}

/// A verdict whose `retry-after` agrees with its `x-should-retry`.
pub fn verdict(g: GiveUp) -> GiveUp {
    GiveUp {
        should_retry: g.should_retry,
        retry_after_ms: g.retry_after_ms.filter(|_| g.should_retry),
    }
}

/// A host's response headers, as far as levee sets them. Names are
/// lower-case.
pub trait Headers {
    /// Whether `name` is present.
    fn has(&self, name: &str) -> bool;
    /// Sets `name` to `value`, replacing what it had.
    fn set(&mut self, name: &'static str, value: Cow<'static, str>);
    /// Removes `name`.
    fn remove(&mut self, name: &str);
    /// Sets `name` to a number.
    fn set_number(&mut self, name: &'static str, value: u64) {
        self.set(name, Cow::Owned(value.to_string()));
    }
}

/// Sets `x-should-retry`, and `retry-after` / `retry-after-ms` when a delay
/// is known. With `overwrite` false, an upstream's own `retry-after` stays
/// as it was when a retry can help; when it cannot, the upstream's are
/// removed, so that the headers never say both "do not retry" and when to.
pub fn set_verdict(h: &mut impl Headers, g: GiveUp, overwrite: bool) {
    let g = verdict(g);
    h.set(
        SHOULD_RETRY,
        Cow::Borrowed(if g.should_retry { "true" } else { "false" }),
    );
    if !g.should_retry {
        h.remove(RETRY_AFTER);
        h.remove(RETRY_AFTER_MS);
        return;
    }
    let Some(ms) = g.retry_after_ms else { return };
    if overwrite || !(h.has(RETRY_AFTER) || h.has(RETRY_AFTER_MS)) {
        h.set_number(RETRY_AFTER, ms.div_ceil(1000));
        h.set_number(RETRY_AFTER_MS, ms);
    }
}

/// The API's error shape as JSON.
pub fn error_json(error_type: &str, message: &str, request_id: &str) -> String {
    serde_json::json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
        "request_id": request_id,
    })
    .to_string()
}

/// A transport failure's layer, in messages and metric labels.
pub fn layer_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Dns => "dns",
        FailureKind::Connect => "connect",
        FailureKind::Tls => "tls",
        FailureKind::Proxy => "proxy",
        FailureKind::Timeout => "timeout",
        FailureKind::Reset => "reset",
    }
}

/// The hop-by-hop headers (RFC 9110 §7.6.1) that are never passed on, as
/// well as any the `connection` header names.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers as a list of lower-case names and raw values, as the edge keeps
/// them.
impl Headers for Vec<(String, Vec<u8>)> {
    fn has(&self, name: &str) -> bool {
        self.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    fn set(&mut self, name: &'static str, value: Cow<'static, str>) {
        Headers::remove(self, name);
        self.push((name.to_owned(), value.into_owned().into_bytes()));
    }

    fn remove(&mut self, name: &str) {
        self.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

#[cfg(feature = "http")]
impl Headers for http::HeaderMap {
    fn has(&self, name: &str) -> bool {
        self.contains_key(name)
    }

    fn set(&mut self, name: &'static str, value: Cow<'static, str>) {
        let value = match value {
            Cow::Borrowed(s) => http::HeaderValue::from_static(s),
            Cow::Owned(s) => match http::HeaderValue::try_from(s) {
                Ok(v) => v,
                Err(_) => return,
            },
        };
        self.insert(http::HeaderName::from_static(name), value);
    }

    fn remove(&mut self, name: &str) {
        http::HeaderMap::remove(self, name);
    }

    fn set_number(&mut self, name: &'static str, value: u64) {
        self.insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from(value),
        );
    }
}

#[cfg(test)]
mod tests;
