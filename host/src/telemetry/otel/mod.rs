//! OpenTelemetry traces over OTLP/HTTP (protobuf), when `[otel]` is set.
//!
//! A traced request is one server span with a client span per attempt,
//! carrying the GenAI semantic conventions (`gen_ai.*`), the upstream, the
//! retry's reason and the policy's decision. An incoming W3C `traceparent`
//! is continued (and its sampled flag followed), and each attempt sends the
//! upstream a `traceparent` naming its own span.
//!
//! The request path records plain values (`span.rs`) and hands the whole
//! request over when its access line is written, through a bounded queue
//! that never waits: when the exporter falls behind, spans are dropped and
//! counted. The exporter (`export.rs`) batches, encodes with the
//! `opentelemetry-proto` messages and posts through a [`Transport`]: the
//! gateway gives it levee's own upstream client.
//! The OpenTelemetry SDK is not used: it builds spans live, each with its
//! own allocations and context, and exports on a thread of its own with a
//! client of its own; levee already keeps each request's facts, so its
//! spans are built once, after the fact, off the request path.

mod context;
mod encode;
mod export;
mod span;

pub(crate) use span::{Ending, RequestSpan};

use crate::config::Otel;
use context::TraceParent;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How an export reaches the collector.
pub trait Transport: Send + Sync + 'static {
    /// Sends `req` and reads the answer (its body bounded), within
    /// `timeout`; an error says why nothing came back.
    fn post(
        &self,
        req: http::Request<http_body_util::Full<bytes::Bytes>>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Answer, String>> + Send + '_>>;
}

/// The collector's answer.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `retry-after`, in whole seconds.
    pub retry_after: Option<Duration>,
    /// The body, as much as was read.
    pub body: bytes::Bytes,
}

/// Requests waiting for the exporter; beyond this they are dropped.
const QUEUE: usize = 4096;

/// The request path's side: decides what is traced, and queues it.
pub struct Tracer {
    sample_ratio: f64,
    queue: mpsc::Sender<export::Message>,
    /// Counted for `/metrics`.
    pub(crate) counts: Arc<Counts>,
}

/// What became of spans.
#[derive(Debug, Default)]
pub struct Counts {
    /// Accepted by the collector.
    pub exported: AtomicU64,
    /// Dropped: the queue was full, or the collector refused or could not
    /// be reached after the retries.
    pub dropped: AtomicU64,
}

impl Tracer {
    /// Starts the exporter on the current tokio runtime, posting through
    /// `transport`.
    pub fn start(config: &Otel, transport: Box<dyn Transport>) -> anyhow::Result<Arc<Tracer>> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        export::Exporter::new(config, counts.clone(), transport)?.spawn(rx);
        tracing::info!(
            endpoint = %config.collector.url(),
            sample_ratio = config.sample_ratio,
            "exporting traces over OTLP"
        );
        Ok(Arc::new(Tracer {
            sample_ratio: config.sample_ratio,
            queue,
            counts,
        }))
    }

    /// A span for a request that arrived at `arrived`, if it is traced: as
    /// its `traceparent` says, or else by the sample ratio.
    pub(crate) fn begin(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        arrived: Instant,
    ) -> Option<Box<RequestSpan>> {
        let parent = parts
            .headers
            .get("traceparent")
            .and_then(|v| TraceParent::parse(v.as_bytes()));
        let sampled = match parent {
            Some(p) => p.sampled,
            None => self.sample_ratio >= 1.0 || fastrand::f64() < self.sample_ratio,
        };
        sampled.then(|| {
            Box::new(RequestSpan::new(
                self.clone(),
                parent,
                &parts.method,
                parts.uri.path(),
                arrived,
            ))
        })
    }

    fn submit(&self, span: Box<RequestSpan>, ending: Ending) {
        let spans = 1 + span.attempts.len() as u64;
        if self
            .queue
            .try_send(export::Message::Span(span, ending))
            .is_err()
        {
            self.counts.dropped.fetch_add(spans, Ordering::Relaxed);
        }
    }

    /// `levee_otel_spans_{exported,dropped}_total`.
    pub(crate) fn register(&self, r: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::counter::ConstCounter;
        let counts = &self.counts;
        r.register(
            "levee_otel_spans_exported",
            "Spans the OTLP collector accepted",
            ConstCounter::new(counts.exported.load(Ordering::Relaxed)),
        );
        r.register(
            "levee_otel_spans_dropped",
            "Spans dropped: the export queue was full, or the collector refused them or \
             could not be reached after the retries",
            ConstCounter::new(counts.dropped.load(Ordering::Relaxed)),
        );
    }

    /// Exports what is queued, waiting at most `within`.
    pub async fn flush(&self, within: Duration) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.queue.send(export::Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(within, flushed).await;
        }
    }
}
