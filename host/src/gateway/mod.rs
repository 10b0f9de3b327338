//! The gateway: accepts client requests, asks the policy, forwards them to
//! upstreams, and delivers the answer under levee's downstream contract.
//!
//! A request's path (see `forward.rs`): read the body (bounded) and its
//! facts, ask the policy for admission, make attempts while the policy says
//! retry and the host's rails allow, then deliver: streamed, watched, and
//! never ended silently.

mod admission;
mod budget;
mod collector;
pub mod encoding;
pub(crate) mod facts;
mod forward;
mod intake;
mod record;
pub(crate) mod reply;
mod server;
pub(crate) mod stream;
pub(crate) mod workers;

pub use budget::RetryBudget;
pub use server::{Gateway, Stopped, bind, serve};
pub use stream::Termination;
pub use workers::Workers;

use crate::config::{Config, Outlier, Rails, Streaming};
use crate::limits::Class;
use crate::telemetry::Metrics;
use crate::upstream::{UpstreamRuntime, health};
use anyhow::Context;
use std::sync::Arc;

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
                    &metrics.activity,
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

    /// The world as the policy sees it at `now`. `retry-budget` is always
    /// true: a retry is never refused for the budget when the policy
    /// decides it; it waits for a slot (see `budget.rs`), and only the
    /// host gives up, counted, when none comes in time.
    /// A request of model class `class` sees its class's 429 closures and
    /// budgets.
    pub(crate) fn view(&self, now: u64, class: Class) -> crate::core::View {
        let mut upstreams: Vec<_> = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let c = &u.config;
                let mut v = u.state.view(i as u32, c.group, c.weight, class, now);
                (v.health, v.circuit) = u.health.view(now);
                let lane = crate::limits::Lane::new(i as u32, class);
                v.budgets = self.admitter.limiter.budgets(lane, now);
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
            retry_budget: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_ms;
    use crate::config::Overrides;
    use crate::core::{Circuit, Health};

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
        let view = rt.view(now, 0);
        let (a, b) = (&view.upstreams[0], &view.upstreams[1]);
        assert_eq!((a.circuit, b.circuit), (Circuit::Open, Circuit::Closed));
        assert_eq!((a.health, b.health), (Health::Unknown, Health::Unknown));
        assert_eq!((a.slow, b.slow), (true, false));
    }
}
