//! A loaded policy: a pool of configured instances, and the native fallback
//! that answers whenever the component cannot.

use super::bindings::PolicyFuncs;
use super::pool::{CallError, Pool, StoreState};
use levee_policy_core::{
    Admission, Attempt, NextStep, Policy, PolicyInfo, Profile, RequestFacts, View,
};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one engine, across every policy it has loaded.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls into components.
    pub calls: AtomicU64,
    /// Calls that trapped (panics, memory exhaustion, instantiation faults).
    pub traps: AtomicU64,
    /// Calls that overran their deadline.
    pub deadlines: AtomicU64,
    /// Decisions answered by the native fallback.
    pub fallbacks: AtomicU64,
}

/// A policy ready to serve. Cheap to share: calls take `&self`.
pub struct LoadedPolicy {
    source: String,
    digest: String,
    info: PolicyInfo,
    config: String,
    pool: Pool,
    fallback: Policy,
    stats: std::sync::Arc<Stats>,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("source", &self.source)
            .field("digest", &self.digest)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl LoadedPolicy {
    pub(crate) fn new(
        source: String,
        bytes: &[u8],
        info: PolicyInfo,
        config: &str,
        pool: Pool,
        stats: std::sync::Arc<Stats>,
    ) -> LoadedPolicy {
        let digest = Sha256::digest(bytes)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        LoadedPolicy {
            fallback: fallback_for(&info, config),
            source,
            digest,
            info,
            config: config.to_owned(),
            pool,
            stats,
        }
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first 16 hex digits of the component's SHA-256.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// What the component says it is.
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// The config it was configured with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Admission, by the component; by the native fallback if it fails.
    pub fn on_request(&self, req: &RequestFacts, view: &View) -> Admission {
        self.try_on_request(req, view).unwrap_or_else(|e| {
            self.fall_back(e, "on-request", || self.fallback.on_request(req, view))
        })
    }

    /// The next step after an attempt; by the native fallback if the
    /// component fails.
    pub fn on_outcome(
        &self,
        req: &RequestFacts,
        order: &[u32],
        attempt: &Attempt,
        view: &View,
    ) -> NextStep {
        self.try_on_outcome(req, order, attempt, view)
            .unwrap_or_else(|e| {
                self.fall_back(e, "on-outcome", || {
                    self.fallback.on_outcome(req, order, attempt, view)
                })
            })
    }

    /// Admission, by the component only.
    pub fn try_on_request(&self, req: &RequestFacts, view: &View) -> Result<Admission, CallError> {
        self.call(|p, s| p.on_request(s, req, view))
    }

    /// The next step, by the component only.
    pub fn try_on_outcome(
        &self,
        req: &RequestFacts,
        order: &[u32],
        attempt: &Attempt,
        view: &View,
    ) -> Result<NextStep, CallError> {
        self.call(|p, s| p.on_outcome(s, req, order, attempt, view))
    }

    /// One call into the component, counted; failures are counted by kind.
    fn call<R>(
        &self,
        f: impl FnOnce(&PolicyFuncs, &mut wasmtime::Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.pool.call(f);
        if let Err(e) = &result {
            let counter = match e {
                CallError::Deadline(_) => &self.stats.deadlines,
                CallError::Trap(_) | CallError::Instantiate(_) => &self.stats.traps,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn fall_back<T>(&self, error: CallError, call: &str, decide: impl FnOnce() -> T) -> T {
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(policy = %self.info.name, call, %error, "policy failed; using the built-in fallback decision");
        decide()
    }
}

/// The native core, with the profile the component names and its config
/// when the core accepts it (defaults otherwise).
fn fallback_for(info: &PolicyInfo, config: &str) -> Policy {
    let profile = match info.name.as_str() {
        "interactive" => Profile::Interactive,
        _ => Profile::Standard,
    };
    let mut policy = Policy::new(profile);
    let _ = policy.configure(config);
    policy
}
