//! A finished request as OTLP spans: the server span and a client span per
//! attempt, with the HTTP and GenAI semantic conventions' attributes and
//! levee's own (`levee.*`).

use super::span::{AttemptSpan, Ending, RequestSpan};
use crate::core::{Endpoint, NextStep};
use crate::telemetry::metrics::attempt_outcome;
use levee_exchange::body::Termination;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span::SpanKind, status::StatusCode};
use std::time::{Instant, SystemTime};

/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` and `…_IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The request's spans: its own first, then one per attempt.
pub(super) fn spans(r: &RequestSpan, e: &Ending) -> Vec<Span> {
    let ns = |at: Instant| unix_nanos(r.wall, r.arrived, at);
    let route = r.endpoint.and_then(route);
    let operation = r.endpoint.and_then(operation);
    let mut attrs = Attrs::default();
    attrs.str("http.request.method", r.method.as_str());
    attrs.str("url.path", &r.path);
    if let Some(route) = route {
        attrs.str("http.route", route);
    }
    attrs.int("http.response.status_code", e.status.into());
    gen_ai(&mut attrs, r, operation);
    if let Some(input) = e.usage.input {
        attrs.int("gen_ai.usage.input_tokens", input);
    }
    if let Some(n) = e.usage.cache_write {
        attrs.int("gen_ai.usage.cache_creation.input_tokens", n);
    }
    if let Some(n) = e.usage.cache_read {
        attrs.int("gen_ai.usage.cache_read.input_tokens", n);
    }
    if let Some(output) = e.usage.output {
        attrs.int("gen_ai.usage.output_tokens", output);
    }
    attrs.int("levee.attempts", r.attempts.len() as u64);
    if let Some(up) = &e.upstream {
        attrs.str("levee.upstream", up);
    }
    if let Some(admission) = r.admission {
        attrs.str("levee.admission", admission);
    }
    if let Some(end) = e.end {
        attrs.str("levee.stream.end", end.label());
    }
    let status = match (e.status, e.end) {
        (500.., _) => error(format!("answered {}", e.status)),
        (_, Some(end)) if end != Termination::Complete => {
            error(format!("the stream ended: {}", end.label()))
        }
        _ => None,
    };
    let name = match route {
        Some(route) => format!("{} {route}", r.method),
        None => r.method.to_string(),
    };
    let mut out = Vec::with_capacity(1 + r.attempts.len());
    out.push(Span {
        trace_id: r.trace_id.to_vec(),
        span_id: r.span_id.to_vec(),
        parent_span_id: r.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: HAS_IS_REMOTE | if r.parent.is_some() { IS_REMOTE } else { 0 },
        name,
        kind: SpanKind::Server as i32,
        start_time_unix_nano: ns(r.arrived),
        end_time_unix_nano: ns(e.at),
        attributes: attrs.0,
        status,
        ..Default::default()
    });
    for (i, a) in r.attempts.iter().enumerate() {
        out.push(attempt(
            r,
            a,
            i,
            operation,
            ns(a.started),
            ns(a.ended.unwrap_or(e.at)),
        ));
    }
    out
}

fn attempt(
    r: &RequestSpan,
    a: &AttemptSpan,
    i: usize,
    operation: Option<&str>,
    start: u64,
    end: u64,
) -> Span {
    let mut attrs = Attrs::default();
    attrs.str("server.address", &a.host);
    attrs.int("server.port", a.port.into());
    attrs.str("levee.upstream", &a.upstream);
    attrs.int("levee.attempt", i as u64 + 1);
    gen_ai(&mut attrs, r, operation);
    let outcome = match (a.status, a.failure) {
        (Some(status), _) => {
            attrs.int("http.response.status_code", status.into());
            Some(attempt_outcome(Ok(status)))
        }
        (None, Some(kind)) => Some(attempt_outcome(Err(kind))),
        (None, None) => None,
    };
    let failed = a.failure.is_some() || a.status.is_some_and(|s| s == 429 || s >= 500);
    if failed && let Some(outcome) = outcome {
        attrs.str("error.type", outcome);
    }
    match a.decision {
        Some(NextStep::Retry(retry)) => {
            attrs.str("levee.policy.decision", "retry");
            if let Some(outcome) = outcome {
                attrs.str("levee.retry.reason", outcome);
            }
            attrs.int("levee.retry.delay_ms", retry.delay_ms);
            if let Some(next) = &a.next_upstream {
                attrs.str("levee.retry.upstream", next);
            }
        }
        Some(NextStep::Fail(_)) => attrs.str("levee.policy.decision", "fail"),
        Some(NextStep::Deliver) => attrs.str("levee.policy.decision", "deliver"),
        None => {}
    }
    if let Some(rail) = a.overruled {
        attrs.str("levee.rail.overruled", rail);
    }
    let name = match (operation, &r.model) {
        (Some(op), Some(model)) => format!("{op} {model}"),
        (Some(op), None) => op.to_owned(),
        (None, _) => r.method.to_string(),
    };
    Span {
        trace_id: r.trace_id.to_vec(),
        span_id: a.span_id.to_vec(),
        parent_span_id: r.span_id.to_vec(),
        flags: HAS_IS_REMOTE,
        name,
        kind: SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start),
        attributes: attrs.0,
        status: if failed {
            error(format!("attempt failed: {}", outcome.unwrap_or("unknown")))
        } else {
            None
        },
        ..Default::default()
    }
}

/// The GenAI conventions' request attributes.
fn gen_ai(attrs: &mut Attrs, r: &RequestSpan, operation: Option<&str>) {
    // `gen_ai.system` is the name the conventions used before
    // `gen_ai.provider.name`; backends read one or the other.
    attrs.str("gen_ai.system", "anthropic");
    attrs.str("gen_ai.provider.name", "anthropic");
    if let Some(op) = operation {
        attrs.str("gen_ai.operation.name", op);
    }
    if let Some(class) = &r.model_class {
        attrs.str("levee.model_class", class);
    }
    if let Some(model) = &r.model {
        attrs.str("gen_ai.request.model", model);
    }
    if let Some(max) = r.max_tokens {
        attrs.int("gen_ai.request.max_tokens", max.into());
    }
    if r.endpoint == Some(Endpoint::Messages) {
        attrs.bool("levee.request.stream", r.stream);
    }
}

fn route(e: Endpoint) -> Option<&'static str> {
    match e {
        Endpoint::Messages => Some("/v1/messages"),
        Endpoint::CountTokens => Some("/v1/messages/count_tokens"),
        Endpoint::Models => Some("/v1/models"),
        Endpoint::Batches => Some("/v1/messages/batches"),
        Endpoint::Other => None,
    }
}

/// The GenAI operation an endpoint performs.
fn operation(e: Endpoint) -> Option<&'static str> {
    match e {
        Endpoint::Messages => Some("chat"),
        _ => None,
    }
}

fn error(message: String) -> Option<Status> {
    Some(Status {
        message,
        code: StatusCode::Error as i32,
    })
}

/// `at` on the wall clock, in nanoseconds since the Unix epoch.
fn unix_nanos(wall: SystemTime, arrived: Instant, at: Instant) -> u64 {
    let t = wall + at.saturating_duration_since(arrived);
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Default)]
struct Attrs(Vec<KeyValue>);

impl Attrs {
    fn put(&mut self, key: &str, value: Value) {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        });
    }

    fn str(&mut self, key: &str, value: &str) {
        self.put(key, Value::StringValue(value.to_owned()));
    }

    fn int(&mut self, key: &str, value: u64) {
        self.put(
            key,
            Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.put(key, Value::BoolValue(value));
    }
}
