//! Active health checks: every `interval`, connect to the upstream with its
//! own connector (DNS, TCP, and TLS for https), then, when configured, send
//! one HTTP request on that connection and compare the status. Each layer
//! that fails says so in the verdict.

use super::Tracker;
use crate::config::{Dns, HealthCheck, Upstream};
use crate::upstream::connect::Connector;
use crate::upstream::dns::Resolver;
use crate::upstream::egress::Egress;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Weak};
use tokio::time::{Instant, timeout_at};

/// Checks one upstream.
pub struct Prober {
    connector: Connector,
    check: HealthCheck,
    /// The probe's URI (base path included).
    uri: http::Uri,
    host: http::HeaderValue,
}

impl Prober {
    /// A prober for `upstream` under `check`, with its own connection
    /// permit (checks never wait for request traffic's); it goes the way
    /// traffic goes, through the upstream's egress proxies and resolver.
    pub fn new(
        upstream: &Upstream,
        check: HealthCheck,
        egress: Option<Arc<Egress>>,
        dns: &Dns,
    ) -> anyhow::Result<Prober> {
        let tls = match upstream.scheme {
            crate::config::Scheme::Https => {
                Some(crate::upstream::tls::client_config(&upstream.tls)?)
            }
            crate::config::Scheme::Http => None,
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let path = check.http.as_ref().map_or("/", |h| h.path.as_str());
        let uri = format!("{}{path}", upstream.url()).parse()?;
        Ok(Prober {
            connector: Connector::new(upstream, tls, permits, egress, Resolver::new(dns)),
            host: upstream.authority().parse()?,
            check,
            uri,
        })
    }

    /// One check: `Ok` when it passed, otherwise what failed, naming the
    /// layer.
    pub async fn probe(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.check.timeout;
        let ms = self.check.timeout.as_millis();
        let conn = match timeout_at(deadline, self.connector.clone().connect()).await {
            Err(_) => return Err(format!("connect: no connection within {ms} ms")),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(conn)) => conn,
        };
        let Some(http) = &self.check.http else {
            return Ok(());
        };
        let h2 = conn.is_h2();
        let mut req = http::Request::new(Empty::<Bytes>::new());
        *req.method_mut() = http.method.clone();
        *req.uri_mut() = if h2 {
            self.uri.clone()
        } else {
            self.uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(|e| format!("http: bad probe path: {e}"))?
        };
        req.headers_mut()
            .insert(http::header::HOST, self.host.clone());
        req.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("levee-health-check"),
        );
        // The connection is driven here, not spawned: when the check ends,
        // it is closed. Should it end first, the request still resolves,
        // with the response it delivered or an error.
        let sent = async {
            if h2 {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), conn).await?;
                let resp = send.send_request(req);
                tokio::pin!(resp);
                tokio::select! {
                    biased;
                    r = &mut resp => r,
                    _ = conn => resp.await,
                }
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(conn).await?;
                let resp = send.send_request(req);
                tokio::pin!(resp);
                tokio::select! {
                    biased;
                    r = &mut resp => r,
                    _ = conn => resp.await,
                }
            }
        };
        let status = match timeout_at(deadline, sent).await {
            Err(_) => return Err(format!("http: no response within {ms} ms")),
            Ok(Err(e)) => return Err(format!("http: {e}")),
            Ok(Ok(resp)) => resp.status().as_u16(),
        };
        if http.expect.contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "http: {} {} answered {status}, expected one of {:?}",
                http.method, http.path, http.expect
            ))
        }
    }

    /// Checks every interval, and tells `tracker`, until it is gone.
    pub async fn run(self, tracker: Weak<Tracker>) {
        let mut tick = tokio::time::interval(self.check.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = self.probe().await;
            let Some(t) = tracker.upgrade() else { return };
            t.checked(&result, self.check.rise, self.check.fall);
        }
    }
}

/// The checker tasks of one runtime; aborted when it is dropped (on a
/// reload, the new runtime starts its own).
#[derive(Default)]
pub struct Checkers(Vec<tokio::task::AbortHandle>);

/// An upstream to check: its config, its tracker, and its egress proxies.
pub type Checked = (Upstream, Arc<Tracker>, Option<Arc<Egress>>);

impl Checkers {
    /// Starts a checker for each upstream with `health` configured, on the
    /// current tokio runtime (none outside one).
    pub fn start(upstreams: &[Checked], dns: &Dns) -> anyhow::Result<Checkers> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Ok(Checkers::default());
        };
        let mut tasks = Vec::new();
        for (upstream, tracker, egress) in upstreams {
            if let Some(check) = &upstream.health {
                let prober = Prober::new(upstream, check.clone(), egress.clone(), dns)?;
                let weak = Arc::downgrade(tracker);
                tasks.push(handle.spawn(prober.run(weak)).abort_handle());
            }
        }
        Ok(Checkers(tasks))
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
