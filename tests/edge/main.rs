//! The edge end to end: the edge component composed with a policy, served
//! by the real `wasmtime serve` (an independent runtime), in front of the
//! scriptable mock upstream.

mod hygiene;
mod manifest;
mod settings;
mod spin;
mod swap;

#[path = "../scenarios/mod.rs"]
mod scenarios;

use levee_tests::edge::{WasmtimeServe, components};
use std::path::Path;

/// The composed edge under `wasmtime serve`, configured through the
/// environment as the shared scenarios ask.
pub struct Edge(pub WasmtimeServe);

impl Edge {
    /// Serves `component` in front of `upstreams` with `setup`.
    pub fn serve(component: &str, upstreams: &[(&str, String)], setup: &scenarios::Setup) -> Edge {
        let list: Vec<String> = upstreams
            .iter()
            .enumerate()
            .map(|(group, (name, url))| format!("{name}={url};group={group}"))
            .collect();
        let mut env = vec![
            ("LEVEE_UPSTREAMS", list.join(",")),
            ("LEVEE_POLICY_CONFIG", setup.policy.to_string()),
        ];
        if let Some(n) = setup.max_attempts {
            env.push(("LEVEE_MAX_ATTEMPTS", n.to_string()));
        }
        if let Some(ms) = setup.idle_timeout_ms {
            env.push(("LEVEE_IDLE_TIMEOUT_MS", ms.to_string()));
        }
        Edge(WasmtimeServe::start(Path::new(component), &env))
    }
}

impl scenarios::Gateway for Edge {
    fn start(upstreams: &[(&str, String)], setup: &scenarios::Setup) -> Self {
        Edge::serve(components::EDGE_STANDARD, upstreams, setup)
    }

    fn url(&self) -> String {
        self.0.url.clone()
    }
}

all_scenarios!(Edge);
