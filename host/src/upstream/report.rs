//! Each upstream's live state in the metrics, read when scraped: attempts
//! in flight, the egress proxy in use, and (from `health::report`) the
//! circuit, the health and the checks.

use super::UpstreamRuntime;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    upstream: Arc<String>,
    proxy: String,
}

/// Registers every upstream's live state in `r`.
pub fn register(r: &mut Registry, upstreams: &[UpstreamRuntime]) {
    let in_flight: Family<UpstreamLabels, Gauge> = Family::default();
    for u in upstreams {
        in_flight
            .get_or_create(&UpstreamLabels {
                upstream: u.label.clone(),
            })
            .set(i64::from(u.state.in_flight()));
    }
    r.register(
        "levee_upstream_in_flight",
        "Attempts in flight, by upstream",
        in_flight,
    );
    super::health::report::register(r, upstreams);
    let proxies: Family<ProxyLabels, Gauge> = Family::default();
    for u in upstreams {
        for (proxy, in_use) in u.egress.iter().flat_map(|e| e.in_use()) {
            proxies
                .get_or_create(&ProxyLabels {
                    upstream: u.label.clone(),
                    proxy: proxy.to_owned(),
                })
                .set(i64::from(in_use));
        }
    }
    r.register(
        "levee_egress_proxy_in_use",
        "1 for the egress proxy an upstream's new connections go through, 0 for its others (host:port)",
        proxies,
    );
}
