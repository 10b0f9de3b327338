//! The policy engine, end to end: real components, real wasmtime.

mod check_cli;
mod differential;
mod hostile;
mod swap;

use levee::policy::{CompileCache, EngineOptions, Limits, PolicyEngine};
use std::time::Duration;

/// An engine with no disk cache and a short call deadline, so the looping
/// fixtures fail fast.
pub fn engine() -> PolicyEngine {
    PolicyEngine::new(EngineOptions {
        cache: CompileCache::disabled(),
        limits: Limits {
            call_timeout: Duration::from_millis(20),
            memory_bytes: 16 << 20,
            instances: 2,
        },
    })
    .expect("engine starts")
}
