//! The gateway: accepts client requests, asks the policy, forwards them to
//! upstreams, and delivers the answer under levee's downstream contract.
//!
//! A request's path (see `forward.rs`): read the body (bounded) and its
//! facts, ask the policy for admission, make attempts while the policy says
//! retry and the host's rails allow, then deliver: streamed, watched, and
//! never ended silently.

mod access;
mod admin;
mod admission;
mod budget;
mod client;
mod connect;
mod dial;
mod dns;
mod egress;
mod facts;
mod forward;
mod health;
mod log;
mod metrics;
mod no_proxy;
mod pool;
mod record;
mod reply;
mod server;
pub(crate) mod sharded;
mod state;
mod status;
mod stream;
mod tls;
mod workers;

pub use admin::serve_admin;
pub use budget::RetryBudget;
pub use client::{AttemptError, UpstreamBody, UpstreamClient};
pub use connect::{ConnectError, layer_name};
/// The CONNECT handshake and the environment's proxy, for `levee doctor`.
pub(crate) use egress::{
    Failure as ProxyFailure, from_env as proxy_from_env, handshake as proxy_handshake,
};
pub use log::Stderr as LogWriter;
pub use metrics::Metrics;
pub use server::{Gateway, bind, serve};
pub use stream::Termination;
pub use tls::{client_config_with, explain as explain_tls, roots as tls_roots};
pub use workers::Workers;

use crate::config::{Config, Dns, Outlier, Rails, Scheme, Streaming, Upstream};
use anyhow::Context;
use state::UpstreamState;
use std::sync::Arc;

/// One upstream at runtime: its config, a pooled client per worker (all
/// under one connection cap), its state.
pub struct UpstreamRuntime {
    /// As configured.
    pub config: Upstream,
    clients: Box<[UpstreamClient]>,
    /// Its egress proxies, if it goes through any.
    egress: Option<Arc<egress::Egress>>,
    state: UpstreamState,
    /// The circuit and the active checks' verdict.
    health: Arc<health::Tracker>,
    /// The name, as a metrics label.
    label: Arc<String>,
    scheme: http::uri::Scheme,
    /// Host (bracketed if IPv6) and port, always explicit.
    authority: http::uri::Authority,
}

impl UpstreamRuntime {
    fn new(
        config: &Upstream,
        workers: usize,
        dns: &Dns,
        outlier: &Outlier,
        ejections: &Arc<health::Ejections>,
    ) -> anyhow::Result<UpstreamRuntime> {
        let label = Arc::new(config.name.clone());
        let host = if config.host.contains(':') {
            format!("[{}]", config.host)
        } else {
            config.host.clone()
        };
        let egress = egress::Egress::for_upstream(config)?;
        Ok(UpstreamRuntime {
            clients: UpstreamClient::per_worker(config, workers, egress.as_ref(), dns)?,
            egress,
            state: UpstreamState::default(),
            health: Arc::new(health::Tracker::new(
                label.clone(),
                outlier.clone(),
                ejections.clone(),
            )),
            label,
            scheme: match config.scheme {
                Scheme::Http => http::uri::Scheme::HTTP,
                Scheme::Https => http::uri::Scheme::HTTPS,
            },
            authority: format!("{host}:{}", config.port)
                .parse()
                .context("the upstream's host and port do not form a URI authority")?,
            config: config.clone(),
        })
    }

    /// The upstream URI for a client's path and query: the base path goes
    /// first.
    fn uri(&self, path_and_query: Option<&http::uri::PathAndQuery>) -> http::Uri {
        let path = path_and_query.map_or("/", |p| p.as_str());
        let path_and_query = if self.config.base_path.is_empty() {
            path_and_query.cloned()
        } else {
            format!("{}{path}", self.config.base_path).parse().ok()
        };
        http::Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            parts.path_and_query =
                path_and_query.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
            parts
        })
        .expect("scheme, authority and path are each valid")
    }

    /// The calling worker's client: its connections live on this thread.
    fn client(&self) -> &UpstreamClient {
        &self.clients[workers::current() % self.clients.len()]
    }
}

/// Everything a request needs that SIGHUP can replace.
pub struct Runtime {
    /// Upstreams; a plan's ids index this list.
    pub upstreams: Vec<UpstreamRuntime>,
    /// Hard limits.
    pub rails: Rails,
    /// Streaming settings.
    pub streaming: Streaming,
    /// Outlier detection and the slow signal.
    outlier: Outlier,
    /// Active health checks; stopped when the runtime is dropped.
    _checkers: health::active::Checkers,
    /// Rate limits and the admission queue. A reload starts them afresh.
    pub admitter: Arc<crate::limits::admit::Admitter>,
    /// Admission settings.
    pub limits: crate::config::Limits,
    /// `[log] access`: write the access line.
    pub access_log: bool,
}

impl Runtime {
    /// Builds clients for every upstream in `config`, one per worker, and
    /// the limiter (its queue length kept in `metrics`), and starts the
    /// active health checks (inside a tokio runtime).
    pub fn new(config: &Config, metrics: &Metrics) -> anyhow::Result<Runtime> {
        let ejections = Arc::new(health::Ejections::new(
            config.upstreams.len(),
            config.outlier.max_ejection_percent,
        ));
        let upstreams: Vec<UpstreamRuntime> = config
            .upstreams
            .iter()
            .map(|u| {
                UpstreamRuntime::new(
                    u,
                    config.worker_count(),
                    &config.dns,
                    &config.outlier,
                    &ejections,
                )
                .with_context(|| format!("upstream `{}`", u.name))
            })
            .collect::<anyhow::Result<_>>()?;
        let checked: Vec<_> = upstreams
            .iter()
            .map(|u| (u.config.clone(), u.health.clone(), u.egress.clone()))
            .collect();
        Ok(Runtime {
            upstreams,
            rails: config.rails.clone(),
            streaming: config.streaming.clone(),
            outlier: config.outlier.clone(),
            _checkers: health::active::Checkers::start(&checked, &config.dns)?,
            admitter: admission::admitter(config, metrics)?,
            limits: config.limits.clone(),
            access_log: config.log.access,
        })
    }

    fn view(&self, now: u64, retry_budget: bool) -> crate::core::View {
        let mut upstreams: Vec<_> = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let mut v = u.state.view(i as u32, u.config.group, u.config.weight, now);
                (v.health, v.circuit) = u.health.view(now);
                v.budgets = self.admitter.limiter.budgets(i as u32, now);
                v
            })
            .collect();
        let fresh: Vec<_> = self
            .upstreams
            .iter()
            .map(|u| u.state.fresh_ttfb(now, health::slow::FRESH_MS))
            .collect();
        for (v, slow) in upstreams
            .iter_mut()
            .zip(health::slow::mark(&fresh, &self.outlier))
        {
            v.slow = slow;
        }
        crate::core::View {
            now,
            random: fastrand::u64(..),
            upstreams,
            retry_budget,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::core::{Circuit, Health};

    fn upstream(url: &str) -> UpstreamRuntime {
        let overrides = Overrides {
            upstreams: vec![url.to_owned()],
            ..Overrides::default()
        };
        let config = Config::load(None, &overrides).expect("a valid upstream URL");
        let ejections = Arc::new(health::Ejections::new(1, 50));
        UpstreamRuntime::new(
            &config.upstreams[0],
            1,
            &config.dns,
            &config.outlier,
            &ejections,
        )
        .expect("an upstream runtime")
    }

    #[test]
    fn upstream_uris_keep_the_path_and_query_after_the_base_path() {
        let pq = |s: &str| s.parse::<http::uri::PathAndQuery>().unwrap();
        let plain = upstream("http://127.0.0.1:9000");
        assert_eq!(
            plain.uri(Some(&pq("/v1/messages?beta=true"))),
            "http://127.0.0.1:9000/v1/messages?beta=true"
        );
        assert_eq!(plain.uri(None), "http://127.0.0.1:9000/");
        let based = upstream("https://gw.example.com/anthropic");
        assert_eq!(
            based.uri(Some(&pq("/v1/messages?x=1"))),
            "https://gw.example.com:443/anthropic/v1/messages?x=1"
        );
    }

    #[test]
    fn the_view_shows_each_upstreams_circuit_and_slowness() {
        let text = r#"
            [outlier]
            consecutive_failures = 2
            [[upstreams]]
            name = "a"
            url = "http://127.0.0.1:9001"
            [[upstreams]]
            name = "b"
            url = "http://127.0.0.1:9002"
        "#;
        let config = Config::from_toml(text, None, &Overrides::default()).unwrap();
        let rt = Runtime::new(&config, &Metrics::default()).unwrap();
        let now = now_ms();
        rt.upstreams[0].health.record(now, true);
        rt.upstreams[0].health.record(now, true);
        rt.upstreams[0].state.observe_ttfb(4_000, now);
        rt.upstreams[1].state.observe_ttfb(300, now);
        let view = rt.view(now, true);
        let (a, b) = (&view.upstreams[0], &view.upstreams[1]);
        assert_eq!((a.circuit, b.circuit), (Circuit::Open, Circuit::Closed));
        assert_eq!((a.health, b.health), (Health::Unknown, Health::Unknown));
        assert_eq!((a.slow, b.slow), (true, false));
    }

    #[test]
    fn ipv6_upstreams_get_brackets_in_the_uri() {
        let v6 = upstream("http://[::1]:8080");
        let uri = v6.uri(Some(&"/v1/models".parse().unwrap()));
        assert_eq!(uri, "http://[::1]:8080/v1/models");
        assert_eq!(uri.host(), Some("[::1]"));
    }
}
