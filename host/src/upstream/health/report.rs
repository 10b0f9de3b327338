//! Health in the metrics, read when scraped.
//!
//! - `levee_upstream_circuit{upstream,state}`: 1 for the circuit's state
//!   (`closed`, `open`, `half_open`), 0 for the others;
//! - `levee_upstream_health{upstream,state}`: likewise for the active
//!   checks' verdict (`unknown`, `healthy`, `unhealthy`);
//! - `levee_upstream_ejections_total{upstream}`: times the circuit opened;
//! - `levee_health_checks_total{upstream,result}`: active checks, by
//!   `pass` or `fail`.

use crate::core::{Circuit, Health};
use crate::upstream::UpstreamRuntime;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    upstream: Arc<String>,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    upstream: Arc<String>,
    result: &'static str,
}

const CIRCUITS: [(Circuit, &str); 3] = [
    (Circuit::Closed, "closed"),
    (Circuit::Open, "open"),
    (Circuit::HalfOpen, "half_open"),
];
const HEALTHS: [(Health, &str); 3] = [
    (Health::Unknown, "unknown"),
    (Health::Healthy, "healthy"),
    (Health::Unhealthy, "unhealthy"),
];

/// Registers every upstream's health metrics in `r`.
pub fn register(r: &mut Registry, upstreams: &[UpstreamRuntime]) {
    let circuit: Family<StateLabels, Gauge> = Family::default();
    let health: Family<StateLabels, Gauge> = Family::default();
    let ejections: Family<UpstreamLabels, Counter> = Family::default();
    let checks: Family<CheckLabels, Counter> = Family::default();
    for u in upstreams {
        let t = &u.health;
        let upstream = u.label.clone();
        let now = t.circuit();
        for (c, state) in CIRCUITS {
            let labels = StateLabels {
                upstream: upstream.clone(),
                state,
            };
            circuit.get_or_create(&labels).set(i64::from(c == now));
        }
        let now = t.health();
        for (h, state) in HEALTHS {
            let labels = StateLabels {
                upstream: upstream.clone(),
                state,
            };
            health.get_or_create(&labels).set(i64::from(h == now));
        }
        ejections
            .get_or_create(&UpstreamLabels {
                upstream: upstream.clone(),
            })
            .inc_by(t.ejected_total.load(Relaxed));
        for (result, n) in [("pass", &t.checks_passed), ("fail", &t.checks_failed)] {
            checks
                .get_or_create(&CheckLabels {
                    upstream: upstream.clone(),
                    result,
                })
                .inc_by(n.load(Relaxed));
        }
    }
    r.register(
        "levee_upstream_circuit",
        "Circuit state by upstream: 1 for the current state",
        circuit,
    );
    r.register(
        "levee_upstream_health",
        "Active health check verdict by upstream: 1 for the current state",
        health,
    );
    r.register(
        "levee_upstream_ejections",
        "Times an upstream's circuit opened",
        ejections,
    );
    r.register(
        "levee_health_checks",
        "Active health checks, by upstream and result",
        checks,
    );
}
