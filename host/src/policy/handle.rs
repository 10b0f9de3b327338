//! Hot swap: the active policy behind an atomic pointer.
//!
//! A request pins the policy it started with ([`PolicyHandle::current`]) and
//! makes every call on it, so a swap can never answer one request with a mix
//! of two policies. The new policy is loaded, configured and self-checked
//! before the swap; the swap itself is one pointer store. In-flight requests
//! finish on the old policy, which is dropped with the last of them.

use super::engine::{LoadError, PolicyEngine, PolicySource};
use super::loaded::LoadedPolicy;
use arc_swap::ArcSwap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How many swap attempts [`PolicyHandle::history`] remembers.
const HISTORY: usize = 32;

/// A one-line identity of a loaded policy: `name@version (digest) from source`.
pub fn describe(p: &LoadedPolicy) -> String {
    format!(
        "{}@{} ({}) from {}",
        p.info().name,
        p.info().version,
        p.digest(),
        p.source()
    )
}

/// One swap attempt, kept for the admin status.
#[derive(Clone, Debug)]
pub struct SwapRecord {
    /// When it was requested.
    pub at: SystemTime,
    /// The policy serving before.
    pub from: String,
    /// The policy asked for.
    pub to: String,
    /// `Ok` if it is now serving, else why it was refused.
    pub result: Result<(), String>,
    /// From request to serving (or refusal).
    pub elapsed: Duration,
}

/// The active policy, swappable while serving.
pub struct PolicyHandle {
    current: ArcSwap<LoadedPolicy>,
    history: Mutex<VecDeque<SwapRecord>>,
    swapped: AtomicU64,
    refused: AtomicU64,
}

impl PolicyHandle {
    /// A handle serving `initial`.
    pub fn new(initial: Arc<LoadedPolicy>) -> PolicyHandle {
        PolicyHandle {
            current: ArcSwap::new(initial),
            history: Mutex::new(VecDeque::new()),
            swapped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Swaps since the handle was made: (done, refused).
    pub fn swap_counts(&self) -> (u64, u64) {
        (
            self.swapped.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// The policy to use for one whole request.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// Loads `source` off the serving path and swaps it in. On any failure
    /// the current policy stays, and the error says which step failed.
    pub fn swap(
        &self,
        engine: &PolicyEngine,
        source: &PolicySource,
        config: &str,
    ) -> Result<SwapRecord, LoadError> {
        let started = Instant::now();
        let from = describe(&self.current());
        let loaded = engine.load(source, config);
        let record = |to: String, result| SwapRecord {
            at: SystemTime::now(),
            from: from.clone(),
            to,
            result,
            elapsed: started.elapsed(),
        };
        let record = match &loaded {
            Ok(new) => {
                self.current.store(new.clone());
                self.swapped.fetch_add(1, Ordering::Relaxed);
                let r = record(describe(new), Ok(()));
                tracing::info!(from = %r.from, to = %r.to, elapsed = ?r.elapsed, "policy swapped");
                r
            }
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let r = record(source.name(), Err(e.to_string()));
                tracing::warn!(from = %r.from, error = %e, "policy swap refused; the current policy stays");
                r
            }
        };
        self.remember(record.clone());
        loaded.map(|_| record)
    }

    /// Recent swap attempts, oldest first.
    pub fn history(&self) -> Vec<SwapRecord> {
        self.lock().iter().cloned().collect()
    }

    fn remember(&self, record: SwapRecord) {
        let mut history = self.lock();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SwapRecord>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}
