//! The edge end to end: the edge component composed with a policy, on real
//! runtimes (`wasmtime serve`, Spin 4.1 in both of `spin.toml`'s wirings,
//! and `jco serve`), in front of the scriptable mock upstream. The shared
//! scenarios run on each.

mod bodies;
mod hygiene;
mod manifest;
mod runtime;
mod settings;
mod spin;
mod swap;

#[path = "../scenarios/mod.rs"]
mod scenarios;

use levee_tests::edge::{EdgeServer, Runtime, components};
use std::path::Path;

/// The composed edge on a runtime, configured as the shared scenarios ask.
pub struct Edge(pub EdgeServer);

impl Edge {
    /// Serves the standard edge on `runtime` in front of `upstreams` with
    /// `setup`.
    pub fn on(runtime: Runtime, upstreams: &[(&str, String)], setup: &scenarios::Setup) -> Edge {
        Edge::with(runtime, components::EDGE_STANDARD, upstreams, setup)
    }

    /// `component` under `wasmtime serve`, in front of `upstreams` with
    /// `setup`.
    pub fn serve(component: &str, upstreams: &[(&str, String)], setup: &scenarios::Setup) -> Edge {
        Edge::with(Runtime::Wasmtime, component, upstreams, setup)
    }

    fn with(
        runtime: Runtime,
        component: &str,
        upstreams: &[(&str, String)],
        setup: &scenarios::Setup,
    ) -> Edge {
        let list: Vec<String> = upstreams
            .iter()
            .enumerate()
            .map(|(group, (name, url))| format!("{name}={url};group={group}"))
            .collect();
        let mut settings = vec![
            ("upstreams", list.join(",")),
            ("policy_config", setup.policy.to_string()),
        ];
        if let Some(n) = setup.max_attempts {
            settings.push(("max_attempts", n.to_string()));
        }
        if let Some(ms) = setup.idle_timeout_ms {
            settings.push(("idle_timeout_ms", ms.to_string()));
        }
        if let Some(ms) = setup.hold_ms {
            settings.push(("hold_ms", ms.to_string()));
        }
        Edge(serve(runtime, component, upstreams, &settings))
    }
}

/// `component` on `runtime` with `settings` (`name`, value): `LEVEE_NAME`
/// environment variables, or Spin variables. On Spin, each upstream's
/// origin is granted through an `allowed_host_*` variable, as an operator
/// would (unless the settings grant hosts themselves); Spin serves the
/// components `spin.toml` names, not `component`.
pub fn serve(
    runtime: Runtime,
    component: &str,
    upstreams: &[(&str, String)],
    settings: &[(&str, String)],
) -> EdgeServer {
    let env: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (format!("LEVEE_{}", k.to_ascii_uppercase()), v.clone()))
        .collect();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    match runtime {
        Runtime::Wasmtime => EdgeServer::wasmtime(Path::new(component), &env),
        Runtime::Jco => EdgeServer::jco(Path::new(component), &env),
        Runtime::Spin | Runtime::SpinDeps => {
            let mut variables = settings.to_vec();
            if !settings.iter().any(|(k, _)| k.starts_with("allowed_host_")) {
                assert!(upstreams.len() <= 3, "spin.toml has three free host slots");
                const FREE: [&str; 3] = ["allowed_host_b", "allowed_host_c", "allowed_host_d"];
                for ((_, url), slot) in upstreams.iter().zip(FREE) {
                    variables.push((slot, url.trim_end_matches('/').to_owned()));
                }
            }
            EdgeServer::spin(runtime, &variables, None)
        }
    }
}

impl scenarios::Gateway for Edge {
    fn start(upstreams: &[(&str, String)], setup: &scenarios::Setup) -> Self {
        Edge::on(Runtime::Wasmtime, upstreams, setup)
    }

    fn url(&self) -> String {
        self.0.url.clone()
    }

    fn log(&self) -> String {
        self.0.log()
    }

    fn remembers_between_requests(&self) -> bool {
        false
    }
}

all_scenarios!(Edge);

/// The same scenarios on each other runtime.
macro_rules! on_runtime {
    ($module:ident, $runtime:expr) => {
        mod $module {
            use super::scenarios;
            use levee_tests::edge::Runtime;

            pub struct Edge(super::Edge);

            impl scenarios::Gateway for Edge {
                fn start(upstreams: &[(&str, String)], setup: &scenarios::Setup) -> Self {
                    Edge(super::Edge::on($runtime, upstreams, setup))
                }

                fn url(&self) -> String {
                    self.0.0.url.clone()
                }

                fn log(&self) -> String {
                    self.0.0.log()
                }

                fn keeps_bytes_received_before_a_reset(&self) -> bool {
                    $runtime != Runtime::Jco
                }

                fn remembers_between_requests(&self) -> bool {
                    $runtime != Runtime::Jco
                }
            }

            crate::all_scenarios!(Edge);
        }
    };
}

on_runtime!(on_spin, Runtime::Spin);
on_runtime!(on_spin_deps, Runtime::SpinDeps);
on_runtime!(on_jco, Runtime::Jco);
