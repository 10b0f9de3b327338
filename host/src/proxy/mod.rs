//! The gateway: accepts client requests, asks the policy, forwards them to
//! upstreams, and delivers the answer under levee's downstream contract.
//!
//! A request's path (see `forward.rs`): read the body (bounded) and its
//! facts, ask the policy for admission, make attempts while the policy says
//! retry and the host's rails allow, then deliver: streamed, watched, and
//! never ended silently.

mod admin;
mod budget;
mod client;
mod connect;
mod facts;
mod forward;
mod record;
mod reply;
mod server;
mod state;
mod stream;
mod tls;

pub use admin::serve_admin;
pub use budget::RetryBudget;
pub use connect::{ConnectError, layer_name};
pub use server::{Gateway, bind, serve};
pub use stream::Termination;

use crate::config::{Config, Rails, Streaming, Upstream};
use anyhow::Context;
use client::UpstreamClient;
use state::UpstreamState;

/// One upstream at runtime: its config, its pooled client, its state.
pub struct UpstreamRuntime {
    /// As configured.
    pub config: Upstream,
    client: UpstreamClient,
    state: UpstreamState,
}

/// Everything a request needs that SIGHUP can replace.
pub struct Runtime {
    /// Upstreams; a plan's ids index this list.
    pub upstreams: Vec<UpstreamRuntime>,
    /// Hard limits.
    pub rails: Rails,
    /// Streaming settings.
    pub streaming: Streaming,
}

impl Runtime {
    /// Builds clients for every upstream in `config`.
    pub fn new(config: &Config) -> anyhow::Result<Runtime> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                Ok(UpstreamRuntime {
                    client: UpstreamClient::new(u)
                        .with_context(|| format!("upstream `{}`", u.name))?,
                    config: u.clone(),
                    state: UpstreamState::default(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Runtime {
            upstreams,
            rails: config.rails.clone(),
            streaming: config.streaming.clone(),
        })
    }

    fn view(&self, now: u64, retry_budget: bool) -> crate::core::View {
        crate::core::View {
            now,
            random: fastrand::u64(..),
            upstreams: self
                .upstreams
                .iter()
                .enumerate()
                .map(|(i, u)| u.state.view(i as u32, u.config.group, u.config.weight, now))
                .collect(),
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
