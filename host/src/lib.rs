//! levee: a gateway for LLM APIs whose retry, rate-limit and failover
//! policy is a WebAssembly component.
//!
//! The policy decides; the host acts. [`policy`] loads and runs policy
//! components; [`cli`] is the command line.

#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod policy;
pub mod proxy;

pub use levee_policy_core as core;
