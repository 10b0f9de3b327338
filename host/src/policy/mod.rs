//! The policy engine: loads policy components, calls them safely, falls
//! back to the native core when they fail, and swaps them while serving.
//!
//! This module is levee's embedding API: it takes and returns
//! `levee-policy-core` types only, never gateway types.

mod bindings;
mod builtin;
mod cache;
mod engine;
mod handle;
mod loaded;
mod pool;
mod selfcheck;
mod ticker;

pub use builtin::ALL as BUILTINS;
pub use cache::{CacheOutcome, CompileCache};
pub use engine::{EngineOptions, Interface, LoadError, PolicyEngine, PolicySource, Stage};
pub use handle::{PolicyHandle, SwapRecord, describe};
pub use loaded::{LoadedPolicy, Stats};
pub use pool::{CallError, Limits};
