//! The OTLP collector as the tracer's transport: reached on levee's own
//! upstream client (its DNS, TLS and pool), not through egress proxies.

use crate::config::Upstream;
use crate::telemetry::otel::{Answer, Transport};
use crate::upstream::UpstreamClient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The most of a collector's answer that is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub(super) struct Collector(UpstreamClient);

impl Collector {
    pub(super) fn new(collector: &Upstream) -> anyhow::Result<Collector> {
        let dns = crate::config::Dns::default();
        let client = UpstreamClient::per_worker(collector, 1, None, &dns)?
            .into_vec()
            .pop()
            .expect("one client per worker");
        Ok(Collector(client))
    }
}

impl Transport for Collector {
    fn post(
        &self,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Answer, String>> + Send + '_>> {
        Box::pin(async move {
            let resp = self
                .0
                .send(req.map(Into::into), timeout)
                .await
                .map_err(|e| e.message)?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                .map(Duration::from_secs);
            let read = Limited::new(resp.into_body(), MAX_ANSWER_BYTES).collect();
            let body = match tokio::time::timeout(timeout, read).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                _ => Bytes::new(),
            };
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        })
    }
}
