//! Name resolution under levee's control: static overrides first (like
//! curl's `--resolve`), then the configured name servers, whose answers are
//! cached for their TTL clamped to `[dns] min_ttl_ms..=max_ttl_ms`, or else
//! the system's resolver (which does its own caching). Every address an
//! answer holds is returned, for the connector to fail over between.

use super::connect::ConnectError;
use crate::config::Dns;
use crate::core::FailureKind;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// Resolves host names for one worker's connectors.
#[derive(Clone)]
pub struct Resolver {
    overrides: Arc<BTreeMap<String, Vec<IpAddr>>>,
    config: Arc<Dns>,
    /// Built on first use, on the worker's runtime.
    servers: Arc<OnceLock<Result<TokioResolver, String>>>,
}

impl Resolver {
    /// A resolver for `dns`; share one per worker thread.
    pub fn new(dns: &Dns) -> Resolver {
        Resolver {
            overrides: Arc::new(dns.overrides.clone()),
            config: Arc::new(dns.clone()),
            servers: Arc::new(OnceLock::new()),
        }
    }

    /// Every address of `host`, with `port`. IP literals pass through.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
        let fail = |message: String| ConnectError {
            kind: FailureKind::Dns,
            message,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.overrides.get(&key) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        let addrs: Vec<SocketAddr> = if self.config.resolvers.is_empty() {
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| fail(format!("cannot resolve {host}: {e}")))?
                .collect()
        } else {
            let resolver = self
                .servers
                .get_or_init(|| build(&self.config))
                .as_ref()
                .map_err(|e| fail(format!("cannot set up the resolvers: {e}")))?;
            // A trailing dot: the name is absolute, no search domains.
            let lookup = resolver
                .lookup_ip(format!("{key}."))
                .await
                .map_err(|e| fail(describe(host, &e)))?;
            lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect()
        };
        if addrs.is_empty() {
            return Err(fail(format!("{host} resolved to no addresses")));
        }
        Ok(addrs)
    }
}

fn describe(host: &str, e: &hickory_resolver::net::NetError) -> String {
    if e.is_nx_domain() {
        format!("{host} does not exist (NXDOMAIN)")
    } else if e.is_no_records_found() {
        format!("{host} has no A or AAAA records")
    } else {
        format!("cannot resolve {host}: {e}")
    }
}

fn build(dns: &Dns) -> Result<TokioResolver, String> {
    let servers = dns
        .resolvers
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    let config = ResolverConfig::from_parts(None, Vec::new(), servers);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    let opts = builder.options_mut();
    opts.positive_min_ttl = Some(dns.min_ttl);
    opts.positive_max_ttl = Some(dns.max_ttl);
    opts.negative_min_ttl = Some(dns.min_ttl);
    opts.negative_max_ttl = Some(dns.max_ttl);
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    builder.build().map_err(|e| e.to_string())
}
