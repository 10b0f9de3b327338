//! levee: a gateway for LLM APIs whose retry, rate-limit and failover
//! policy is a WebAssembly component.
//!
//! The policy decides; the host acts. [`policy`] loads and runs policy
//! components, and is the embedding API: it takes and returns
//! [`core`] (`levee-policy-core`) types only. Depend on this crate with
//! `default-features = false` to get it without the gateway; see
//! `examples/embed` and `docs/embedding.md`.
//!
//! With the default feature `gateway`: [`cli`] is the command line,
//! [`config`] its configuration, [`gateway`] the request path,
//! [`upstream`] the client to the upstreams, [`limits`] the rate limits,
//! [`telemetry`] the metrics and logs, [`admin`] the admin listener,
//! [`clock`] the wall clock and [`worker`] the worker a thread serves.

#![deny(unsafe_code)]

#[cfg(feature = "gateway")]
pub mod admin;
#[cfg(feature = "gateway")]
pub mod cli;
#[cfg(feature = "gateway")]
pub mod clock;
#[cfg(feature = "gateway")]
pub mod config;
#[cfg(feature = "gateway")]
pub mod doctor;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "gateway")]
pub mod limits;
pub mod policy;
#[cfg(feature = "gateway")]
pub mod telemetry;
#[cfg(feature = "gateway")]
pub mod trace;
#[cfg(feature = "gateway")]
pub mod upstream;
#[cfg(feature = "gateway")]
pub mod worker;

pub use levee_policy_core as core;
