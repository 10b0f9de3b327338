//! The exporter: a task that batches finished requests' spans and posts
//! them to the collector as OTLP/HTTP protobuf, retrying what the OTLP
//! spec says is retryable (429, 502, 503, 504 and a failed connection)
//! with backoff, a few times, then dropping them, counted.

use super::encode;
use super::span::{Ending, RequestSpan};
use super::{Answer, Counts, Otel, Transport};
use bytes::Bytes;
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Spans per export, at most.
const MAX_BATCH: usize = 512;
/// How long a span may wait for others to share its export.
const LINGER: Duration = Duration::from_secs(1);
/// Tries per export, the first included.
const TRIES: u32 = 3;
/// A collector's `retry-after` is followed up to this long.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A failing collector is reported at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the request path sends the exporter.
pub(super) enum Message {
    Span(Box<RequestSpan>, Ending),
    /// Export what is queued now, then answer.
    Flush(oneshot::Sender<()>),
}

pub(super) struct Exporter {
    transport: Box<dyn Transport>,
    uri: http::Uri,
    headers: http::HeaderMap,
    timeout: Duration,
    resource: Resource,
    counts: Arc<Counts>,
    warned: Option<Instant>,
}

impl Exporter {
    pub(super) fn new(
        config: &Otel,
        counts: Arc<Counts>,
        transport: Box<dyn Transport>,
    ) -> anyhow::Result<Exporter> {
        let uri: http::Uri = config.collector.url().parse()?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &config.headers {
            let mut value = http::HeaderValue::from_str(value.expose())?;
            value.set_sensitive(true);
            headers.insert(name.clone(), value);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("levee/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(Exporter {
            transport,
            uri,
            headers,
            timeout: config.timeout,
            resource: resource(&config.service_name),
            counts,
            warned: None,
        })
    }

    pub(super) fn spawn(self, rx: mpsc::Receiver<Message>) {
        tokio::spawn(self.run(rx));
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut batch: Vec<Span> = Vec::new();
        let mut flushed: Vec<oneshot::Sender<()>> = Vec::new();
        while let Some(first) = rx.recv().await {
            let until = tokio::time::Instant::now() + LINGER;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Span(span, ending) => batch.extend(encode::spans(&span, &ending)),
                    Message::Flush(done) => {
                        flushed.push(done);
                        break;
                    }
                }
                if batch.len() >= MAX_BATCH {
                    break;
                }
                next = tokio::time::timeout_at(until, rx.recv())
                    .await
                    .ok()
                    .flatten();
            }
            while !batch.is_empty() {
                let rest = batch.split_off(batch.len().min(MAX_BATCH));
                let this = std::mem::replace(&mut batch, rest);
                self.export(this).await;
            }
            for done in flushed.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Posts `spans`, with retries; counts them exported or dropped.
    async fn export(&mut self, spans: Vec<Span>) {
        let n = spans.len() as u64;
        let body = Bytes::from(
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(self.resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "levee".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec(),
        );
        let mut backoff = Duration::from_millis(250);
        for try_ in 1..=TRIES {
            let outcome = self.post(body.clone()).await;
            let wait = match outcome {
                Posted::Accepted { rejected } => {
                    let exported = n.saturating_sub(rejected);
                    self.counts.exported.fetch_add(exported, Ordering::Relaxed);
                    if rejected > 0 {
                        self.counts.dropped.fetch_add(rejected, Ordering::Relaxed);
                        self.warn(format_args!(
                            "the collector rejected {rejected} of {n} spans"
                        ));
                    }
                    return;
                }
                Posted::Retry { why, after } => {
                    if try_ == TRIES {
                        self.warn(format_args!("{why}; dropped {n} spans after {TRIES} tries"));
                        break;
                    }
                    after.unwrap_or(backoff).min(MAX_BACKOFF)
                }
                Posted::Refused(why) => {
                    self.warn(format_args!("{why}; dropped {n} spans"));
                    break;
                }
            };
            tokio::time::sleep(wait).await;
            backoff *= 2;
        }
        self.counts.dropped.fetch_add(n, Ordering::Relaxed);
    }

    async fn post(&self, body: Bytes) -> Posted {
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        let Answer {
            status,
            retry_after: after,
            body,
        } = match self.transport.post(req, self.timeout).await {
            Ok(answer) => answer,
            Err(why) => {
                return Posted::Retry {
                    why: format!("cannot reach the collector: {why}"),
                    after: None,
                };
            }
        };
        match status {
            200..=299 => {
                let rejected = ExportTraceServiceResponse::decode(body)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
                Posted::Accepted { rejected }
            }
            429 | 502 | 503 | 504 => Posted::Retry {
                why: format!("the collector answered {status}"),
                after,
            },
            _ => Posted::Refused(format!("the collector answered {status}")),
        }
    }

    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.warned = Some(Instant::now());
            tracing::warn!(collector = %self.uri, "OTLP export: {what}");
        }
    }
}

enum Posted {
    Accepted {
        rejected: u64,
    },
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Refused(String),
}

/// `service.name` and what describes levee itself.
fn resource(service_name: &str) -> Resource {
    let kv = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    };
    Resource {
        attributes: vec![
            kv("service.name", service_name),
            kv("service.version", env!("CARGO_PKG_VERSION")),
            kv("telemetry.sdk.name", "levee"),
            kv("telemetry.sdk.language", "rust"),
            kv("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    }
}
