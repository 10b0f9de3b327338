//! The client side: one pooled hyper client per upstream, HTTP/2 by ALPN
//! where the upstream offers it, and errors classified by layer.

use super::connect::{ConnectError, Connector};
use super::dns::Resolver;
use super::egress::Egress;
use crate::config::{Dns, Upstream};
use crate::core::FailureKind;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

type Pooled = Client<Connector, Full<Bytes>>;

/// A pooled client for one upstream. Through egress proxies, its pool is
/// replaced when the proxy in use switches: requests in flight finish on
/// their connections, new ones connect through the proxy now preferred.
pub struct UpstreamClient {
    /// The egress generation the pool was built for, and the pool.
    current: ArcSwap<(u64, Pooled)>,
    connector: Connector,
    max_idle: usize,
    egress: Option<Arc<Egress>>,
}

/// Why an attempt produced no response head.
#[derive(Clone, Debug)]
pub struct AttemptError {
    /// The failing layer.
    pub kind: FailureKind,
    /// What happened, in words, without secrets.
    pub message: String,
}

impl UpstreamClient {
    /// `workers` clients for `upstream`, one per worker thread, sharing
    /// its TLS config and its cap on open connections.
    pub fn per_worker(
        upstream: &Upstream,
        workers: usize,
        egress: Option<&Arc<Egress>>,
        dns: &Dns,
    ) -> anyhow::Result<Box<[Self]>> {
        let tls = match upstream.scheme {
            crate::config::Scheme::Https => Some(super::tls::client_config(&upstream.tls)?),
            crate::config::Scheme::Http => None,
        };
        let permits = Arc::new(Semaphore::new(upstream.max_connections));
        Ok((0..workers.max(1))
            .map(|_| {
                let connector = Connector::new(
                    upstream,
                    tls.clone(),
                    permits.clone(),
                    egress.cloned(),
                    Resolver::new(dns),
                );
                let max_idle = upstream.max_connections;
                let generation = egress.map_or(0, |e| e.generation());
                UpstreamClient {
                    current: ArcSwap::from_pointee((generation, pool(&connector, max_idle))),
                    connector,
                    max_idle,
                    egress: egress.cloned(),
                }
            })
            .collect())
    }

    /// The pool for the current egress generation.
    fn client(&self) -> Pooled {
        let current = self.current.load();
        match &self.egress {
            Some(e) if e.generation() != current.0 => {
                let fresh = Arc::new((e.generation(), pool(&self.connector, self.max_idle)));
                self.current.store(fresh.clone());
                fresh.1.clone()
            }
            _ => current.1.clone(),
        }
    }

    /// Sends `req` and waits for the response head, at most `timeout`.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<Incoming>, AttemptError> {
        match tokio::time::timeout(timeout, self.client().request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(AttemptError {
                kind: FailureKind::Timeout,
                message: format!("no response head within {} ms", timeout.as_millis()),
            }),
        }
    }
}

fn pool(connector: &Connector, max_idle: usize) -> Pooled {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(max_idle)
        .http2_adaptive_window(true)
        .timer(TokioTimer::new())
        .build(connector.clone())
}

fn classify(e: &hyper_util::client::legacy::Error) -> AttemptError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(c) = err.downcast_ref::<ConnectError>() {
            return AttemptError {
                kind: c.kind,
                message: c.message.clone(),
            };
        }
        source = err.source();
    }
    AttemptError {
        kind: FailureKind::Reset,
        message: format!("connection failed before the response head: {}", chain(e)),
    }
}

/// An error and its sources, joined with ": ".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
