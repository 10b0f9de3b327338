//! levee's decision core: the retry, admission and failover rules of the
//! Anthropic API as pure functions.
//!
//! No I/O, no clock, no randomness of its own: the host passes `now` and a
//! random value in every [`View`]. The same crate is compiled three ways:
//! natively into the host (its fallback and the reference for differential
//! tests), and into each policy component for `wasm32-unknown-unknown`.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
mod decide;
pub mod headers;
#[cfg(feature = "sample")]
pub mod sample;
pub mod types;
pub mod wire;

pub use config::{Profile, Settings};
pub use decide::Policy;
pub use types::*;
