//! The upstream client: one upstream at runtime, the pooled connections
//! levee keeps to it, how they are opened (DNS, TCP, TLS, egress proxies),
//! and what levee knows about its health.

mod client;
mod connect;
mod dial;
mod dns;
pub(crate) mod egress;
pub(crate) mod eyeballs;
pub(crate) mod health;
mod no_proxy;
mod outgoing;
mod pool;
pub(crate) mod report;
mod state;
pub(crate) mod tls;

pub use client::{AttemptError, UpstreamBody, UpstreamClient};
pub use connect::{ConnectError, layer_name};
pub use outgoing::{Outgoing, Spool};

use crate::config::{Dns, Outlier, Scheme, Upstream};
use crate::telemetry::activity::{Activity, Track};
use crate::worker;
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
    pub(crate) egress: Option<Arc<egress::Egress>>,
    pub(crate) state: UpstreamState,
    /// The circuit and the active checks' verdict.
    pub(crate) health: Arc<health::Tracker>,
    /// Its recent attempts and last error, for `/status`.
    pub(crate) track: Arc<Track>,
    /// The name, as a metrics label.
    pub(crate) label: Arc<String>,
    pub(crate) scheme: http::uri::Scheme,
    /// Host (bracketed if IPv6) and port, always explicit.
    pub(crate) authority: http::uri::Authority,
}

impl UpstreamRuntime {
    pub(crate) fn new(
        config: &Upstream,
        workers: usize,
        dns: &Dns,
        outlier: &Outlier,
        ejections: &Arc<health::Ejections>,
        activity: &Activity,
    ) -> anyhow::Result<UpstreamRuntime> {
        let label = Arc::new(config.name.clone());
        let host = if config.host.contains(':') {
            format!("[{}]", config.host)
        } else {
            config.host.clone()
        };
        let egress = egress::Egress::for_upstream(config, activity)?;
        Ok(UpstreamRuntime {
            clients: UpstreamClient::per_worker(config, workers, egress.as_ref(), dns)?,
            egress,
            state: UpstreamState::default(),
            health: Arc::new(health::Tracker::new(
                label.clone(),
                outlier.clone(),
                ejections.clone(),
                activity.events.clone(),
            )),
            track: activity.upstream(&config.name),
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
    pub(crate) fn uri(&self, path_and_query: Option<&http::uri::PathAndQuery>) -> http::Uri {
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
    pub(crate) fn client(&self) -> &UpstreamClient {
        &self.clients[worker::current() % self.clients.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

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
            &Activity::default(),
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
    fn ipv6_upstreams_get_brackets_in_the_uri() {
        let v6 = upstream("http://[::1]:8080");
        let uri = v6.uri(Some(&"/v1/models".parse().unwrap()));
        assert_eq!(uri, "http://[::1]:8080/v1/models");
        assert_eq!(uri.host(), Some("[::1]"));
    }
}
