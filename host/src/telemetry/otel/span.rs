//! What the request path records of a traced request: plain values and
//! `Instant`s, kept in one allocation per request. Everything OTLP needs
//! (attribute keys, protobuf messages, wall-clock times) is made from them
//! on the exporter's task (`encode.rs`), off the request path.

use super::Tracer;
use super::context::{TraceParent, new_id};
use crate::core::{Endpoint, FailureKind, NextStep};
use levee_exchange::body::{Termination, Usage};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// One traced request: the server span, and a child per attempt.
pub(crate) struct RequestSpan {
    pub(super) tracer: Arc<Tracer>,
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    /// The client's span, from its `traceparent`.
    pub(super) parent: Option<[u8; 8]>,
    /// When the request arrived, on both clocks: `Instant`s are placed on
    /// the wall clock by their distance from `arrived`.
    pub(super) wall: SystemTime,
    pub(super) arrived: Instant,
    pub(super) method: http::Method,
    pub(super) path: String,
    pub(super) endpoint: Option<Endpoint>,
    pub(super) model: Option<String>,
    /// The model's class, which its limits are kept under.
    pub(super) model_class: Option<Arc<str>>,
    pub(super) max_tokens: Option<u32>,
    pub(super) stream: bool,
    /// The policy's answer to admission: `admit`, `queue` or `reject`.
    pub(super) admission: Option<&'static str>,
    pub(super) attempts: Vec<AttemptSpan>,
}

/// One attempt: a client span.
pub(crate) struct AttemptSpan {
    pub(super) span_id: [u8; 8],
    pub(super) upstream: Arc<String>,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) started: Instant,
    /// `None` for the attempt whose body is delivered: it ends with the
    /// request.
    pub(super) ended: Option<Instant>,
    /// The response status, or the layer that failed.
    pub(super) status: Option<u16>,
    pub(super) failure: Option<FailureKind>,
    /// What the policy decided after it.
    pub(super) decision: Option<NextStep>,
    /// Where a retry goes.
    pub(super) next_upstream: Option<Arc<String>>,
    /// A rail that overruled the policy's retry.
    pub(super) overruled: Option<&'static str>,
}

/// How the request ended, known when its access line is written.
pub(crate) struct Ending {
    pub status: u16,
    pub upstream: Option<Arc<String>>,
    pub usage: Usage,
    /// How a streamed body ended.
    pub end: Option<Termination>,
    pub at: Instant,
}

impl RequestSpan {
    /// A new span for a request that arrived at `arrived`, continuing
    /// `parent`'s trace if there is one.
    pub(super) fn new(
        tracer: Arc<Tracer>,
        parent: Option<TraceParent>,
        method: &http::Method,
        path: &str,
        arrived: Instant,
    ) -> RequestSpan {
        let wall = SystemTime::now()
            .checked_sub(arrived.elapsed())
            .unwrap_or_else(SystemTime::now);
        RequestSpan {
            tracer,
            trace_id: parent.map_or_else(new_id, |p| p.trace_id),
            span_id: new_id(),
            parent: parent.map(|p| p.span_id),
            wall,
            arrived,
            method: method.clone(),
            path: path.to_owned(),
            endpoint: None,
            model: None,
            model_class: None,
            max_tokens: None,
            stream: false,
            admission: None,
            attempts: Vec::new(),
        }
    }

    /// What the body told: the endpoint, model, token cap, and streaming.
    pub(crate) fn request(
        &mut self,
        endpoint: Endpoint,
        model: Option<&str>,
        max_tokens: Option<u32>,
        stream: bool,
    ) {
        self.endpoint = Some(endpoint);
        self.model = model.map(str::to_owned);
        self.max_tokens = max_tokens;
        self.stream = stream;
    }

    /// The request's model class.
    pub(crate) fn model_class(&mut self, class: &Arc<str>) {
        self.model_class = Some(class.clone());
    }

    /// The policy's answer to admission.
    pub(crate) fn admission(&mut self, label: &'static str) {
        self.admission.get_or_insert(label);
    }

    /// An attempt is sent to `upstream` now; returns the `traceparent` the
    /// upstream gets, naming the attempt's span.
    pub(crate) fn attempt(
        &mut self,
        upstream: &Arc<String>,
        host: &str,
        port: u16,
    ) -> http::HeaderValue {
        let span_id = new_id();
        self.attempts.push(AttemptSpan {
            span_id,
            upstream: upstream.clone(),
            host: host.to_owned(),
            port,
            started: Instant::now(),
            ended: None,
            status: None,
            failure: None,
            decision: None,
            next_upstream: None,
            overruled: None,
        });
        TraceParent {
            trace_id: self.trace_id,
            span_id,
            sampled: true,
        }
        .to_header()
    }

    /// The last attempt answered with `status` (delivered when it is a
    /// success: its span then ends with the request).
    pub(crate) fn answered(&mut self, status: u16, delivered: bool) {
        if let Some(a) = self.attempts.last_mut() {
            a.status = Some(status);
            a.ended = (!delivered).then(Instant::now);
        }
    }

    /// The last attempt failed in `kind`'s layer.
    pub(crate) fn failed(&mut self, kind: FailureKind) {
        if let Some(a) = self.attempts.last_mut() {
            a.failure = Some(kind);
            a.ended = Some(Instant::now());
        }
    }

    /// What the policy decided after the last attempt; `next` names a
    /// retry's upstream.
    pub(crate) fn decided(&mut self, step: NextStep, next: Option<&Arc<String>>) {
        if let Some(a) = self.attempts.last_mut() {
            a.decision = Some(step);
            a.next_upstream = next.cloned();
        }
    }

    /// A rail overruled the policy's retry after the last attempt.
    pub(crate) fn overruled(&mut self, rail: &'static str) {
        if let Some(a) = self.attempts.last_mut() {
            a.overruled = Some(rail);
        }
    }

    /// The request is over: the span goes to the exporter.
    pub(crate) fn end(self: Box<Self>, ending: Ending) {
        let tracer = self.tracer.clone();
        tracer.submit(self, ending);
    }
}
