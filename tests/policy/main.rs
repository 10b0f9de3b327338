//! The policy engine, end to end: real components, real wasmtime.

mod check_cli;
mod differential;
mod hostile;
mod hosts;
mod mirror;
mod replay;
mod swap;
mod template;
mod vectors;

use levee::policy::{CompileCache, EngineOptions, Limits, PolicyEngine};
use std::time::Duration;

/// An engine with no disk cache and a short call deadline (200 ms: looping
/// fixtures fail fast, honest calls finish even on a busy machine).
pub fn engine() -> PolicyEngine {
    engine_with_deadline(Duration::from_millis(200))
}

/// An engine whose call deadline no honest call can overrun, even on a
/// starved machine: for tests that must see no fallback at all.
pub fn patient_engine() -> PolicyEngine {
    engine_with_deadline(Duration::from_secs(5))
}

fn engine_with_deadline(call_timeout: Duration) -> PolicyEngine {
    PolicyEngine::new(EngineOptions {
        cache: CompileCache::disabled(),
        limits: Limits {
            call_timeout,
            memory_bytes: 16 << 20,
            instances: 2,
        },
    })
    .expect("engine starts")
}

/// A minimal Messages request body.
pub const MESSAGE: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;
