//! The listener: HTTP/1.1 and HTTP/2 from clients, graceful shutdown on
//! SIGTERM, and reload on SIGHUP.

use super::workers::{self, Workers};
use super::{RetryBudget, Runtime, forward};
use crate::config::{Config, Overrides};
use crate::policy::{
    EngineOptions, LoadError, PolicyEngine, PolicyHandle, PolicySource, SwapRecord, describe,
};
use crate::telemetry::activity::events::EventKind;
use anyhow::Context;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The gateway's shared state.
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    /// The active policy.
    pub policy: PolicyHandle,
    /// The engine that loads policies.
    pub engine: PolicyEngine,
    /// The global retry budget.
    pub budget: RetryBudget,
    /// Prometheus metrics.
    pub metrics: crate::telemetry::Metrics,
    next_id: AtomicU64,
    /// Where finished requests are recorded, when `[trace]` is on.
    pub(super) trace: Option<crate::trace::TraceWriter>,
    /// Where traced requests' spans go, when `[otel]` is set. A restart
    /// applies a change, as for the listen addresses.
    pub otel: Option<Arc<crate::telemetry::otel::Tracer>>,
    config_path: Option<PathBuf>,
    overrides: Overrides,
    /// The config levee started with: what a reload cannot change is
    /// compared with it.
    started: Config,
}

impl Gateway {
    /// Builds the gateway: the policy engine, the configured policy (a bad
    /// one stops start-up with the reason), and the upstream clients.
    pub fn new(config: &Config, overrides: Overrides) -> anyhow::Result<Arc<Gateway>> {
        let engine = PolicyEngine::new(EngineOptions {
            cache: config.policy.cache.clone(),
            limits: config.policy.limits,
        })?;
        let policy = engine.load(&config.policy.source, &config.policy.config_json)?;
        tracing::info!(policy = %describe(&policy), "policy loaded");
        let metrics = crate::telemetry::Metrics::default();
        metrics.set_enabled(config.admin.metrics);
        Ok(Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(Runtime::new(config, &metrics)?),
            policy: PolicyHandle::new(policy),
            engine,
            budget: RetryBudget::new(
                config.rails.retry_budget_ratio,
                config.rails.retry_budget_min_retries,
            ),
            metrics,
            next_id: AtomicU64::new(fastrand::u64(..) & 0xffff_ffff_0000_0000),
            trace: super::record::open(config)?,
            otel: match &config.otel {
                Some(otel) => {
                    let collector = Box::new(super::collector::Collector::new(&otel.collector)?);
                    Some(crate::telemetry::otel::Tracer::start(otel, collector)?)
                }
                None => None,
            },
            config_path: config.path.clone(),
            overrides,
            started: config.clone(),
        }))
    }

    /// The runtime for one request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    pub(super) fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `/metrics`: everything, in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.engine, &self.policy, |r| {
            crate::upstream::report::register(r, &self.runtime().upstreams);
            if let Some(otel) = &self.otel {
                otel.register(r);
            }
        })
    }

    /// Re-reads the config file and applies it: a new policy (swapped only
    /// if it loads, configures and self-checks) and new upstreams and
    /// rails. On any error nothing changes. What only a restart changes
    /// (listen addresses, workers, admin, logging, tracing, the retry budget,
    /// the engine's limits: [`Config::needs_restart`]) is named in the
    /// answer and logged.
    pub fn reload(&self) -> anyhow::Result<String> {
        let events = &self.metrics.activity.events;
        let reloaded = self.apply_config();
        match &reloaded {
            Ok(done) => events.record(EventKind::Reload, None, done.clone()),
            Err(e) => events.record(EventKind::ReloadFailed, None, format!("{e:#}")),
        }
        reloaded
    }

    fn apply_config(&self) -> anyhow::Result<String> {
        let config = Config::load(self.config_path.as_deref(), &self.overrides)?;
        let runtime = Runtime::new(&config, &self.metrics)?;
        let swap = self.swap_policy(&config.policy.source, &config.policy.config_json)?;
        self.runtime.store(Arc::new(runtime));
        let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
        self.metrics.activity.retain(&names);
        self.metrics.set_enabled(config.admin.metrics);
        let mut done = format!("reloaded; policy {}", swap.to);
        let kept = config.needs_restart(&self.started);
        if !kept.is_empty() {
            let kept = kept.join(", ");
            tracing::warn!(settings = %kept, "SIGHUP: changed settings that only a restart applies; they keep their values until then");
            done.push_str(&format!("; a restart is needed to change {kept}"));
        }
        Ok(done)
    }

    /// Swaps in the policy from `source` with `config` (see
    /// [`PolicyHandle::swap`]), and tells the event.
    pub fn swap_policy(
        &self,
        source: &PolicySource,
        config: &str,
    ) -> Result<SwapRecord, LoadError> {
        let swapped = self.policy.swap(&self.engine, source, config);
        let events = &self.metrics.activity.events;
        match &swapped {
            Ok(r) => events.record(
                EventKind::PolicySwap,
                None,
                format!("{} → {}", r.from, r.to),
            ),
            Err(e) => events.record(EventKind::PolicyRefused, None, e.to_string()),
        }
        swapped
    }
}

/// How serving ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within its grace period.
    Drained,
    /// A second signal came first: these connections were still open.
    Cut(usize),
}

/// Accepts clients on `listener` and hands each to a worker, until the
/// first of `signals`. Then stops accepting and lets the workers finish
/// their connections, each within its grace period, unless a second
/// signal comes first.
pub async fn serve(
    listener: TcpListener,
    workers: Workers,
    mut signals: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
) -> anyhow::Result<Stopped> {
    let mut failing = false;
    let first = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    failing = false;
                    workers.dispatch(stream);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep
                    // serving, and say so once until accepts work again.
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "accept failed; retrying every 50 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            signal = signals.recv() => break signal.unwrap_or("shutdown"),
        }
    };
    drop(listener);
    let open = workers.open();
    tracing::info!(
        signal = first,
        open = open.now(),
        "shutting down: no new connections; finishing in-flight requests \
         (a second signal exits at once)"
    );
    let finishing = tokio::task::spawn_blocking(move || workers.finish());
    tokio::select! {
        done = finishing => {
            done?;
            Ok(Stopped::Drained)
        }
        Some(second) = signals.recv() => {
            let cut = open.now();
            tracing::warn!(signal = second, cut, "second signal: exiting now, cutting {cut} open connections");
            Ok(Stopped::Cut(cut))
        }
    }
}

/// One worker's loop: serves each connection it is handed (`load` counts
/// them) until the acceptor hangs up, then lets them finish for up to
/// `grace`. An HTTP/1 client gets `header_timeout` for each request's
/// headers, from the connection's start or its last response's end.
pub(super) async fn serve_connections(
    gw: Arc<Gateway>,
    mut handed: mpsc::UnboundedReceiver<std::net::TcpStream>,
    load: Arc<AtomicUsize>,
    grace: Duration,
    header_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    while let Some(stream) = handed.recv().await {
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                load.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot serve a handed connection");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let service = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(forward::handle(gw, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let load = load.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            load.fetch_sub(1, Ordering::Relaxed);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!(worker = workers::current(), "all connections finished"),
        () = tokio::time::sleep(grace) => tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "grace period over; closing remaining connections"
        ),
    }
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
