//! A small pool of long-lived policy instances, each in its own `Store`.
//!
//! A `Store` is not `Sync`, and a component call costs about a microsecond
//! while a fresh instance costs hundreds, so instances are kept and reused.
//! Every call runs under an epoch deadline and a memory cap. A call that
//! traps, overruns its deadline or exhausts its memory discards its
//! instance; the slot is refilled on its next use.

use super::bindings::{PolicyFuncs, PolicyPre};
use super::ticker::Ticker;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, Trap};

/// Per-instance resource limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call into the policy.
    pub call_timeout: Duration,
    /// Linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Long-lived instances per loaded policy.
    pub instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_millis(50),
            memory_bytes: 16 << 20,
            instances: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
        }
    }
}

/// Why a call into the component produced no decision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its epoch deadline.
    #[error("policy call exceeded its {0:?} deadline")]
    Deadline(Duration),
    /// The guest trapped (a panic, an out-of-bounds access, or a memory
    /// growth beyond the cap).
    #[error("policy trapped: {0}")]
    Trap(String),
    /// A fresh instance could not be created or configured.
    #[error("policy instance could not be created: {0}")]
    Instantiate(String),
}

pub(crate) struct StoreState {
    limits: StoreLimits,
}

struct Slot {
    store: Store<StoreState>,
    funcs: PolicyFuncs,
}

pub(crate) struct Pool {
    pre: PolicyPre<StoreState>,
    config: String,
    limits: Limits,
    slots: Box<[Mutex<Option<Slot>>]>,
    /// The engine's epoch ticker: told of every call, which it numbers.
    ticker: Arc<Ticker>,
}

impl Pool {
    /// Creates every instance and configures it, so that a pool that
    /// exists is ready to serve.
    pub fn new(
        pre: PolicyPre<StoreState>,
        config: &str,
        limits: Limits,
        ticker: Arc<Ticker>,
    ) -> Result<Pool, PoolError> {
        let mut slots = Vec::with_capacity(limits.instances.max(1));
        for _ in 0..limits.instances.max(1) {
            let _running = ticker.enter();
            slots.push(Mutex::new(Some(new_slot(&pre, config, limits, &ticker)?)));
        }
        Ok(Pool {
            pre,
            config: config.to_owned(),
            limits,
            slots: slots.into_boxed_slice(),
            ticker,
        })
    }

    /// Runs `f` on a free instance, under the call deadline.
    pub fn call<R>(
        &self,
        f: impl FnOnce(&PolicyFuncs, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let (start, _running) = self.ticker.enter();
        let n = self.slots.len();
        let mut guard = (0..n)
            .find_map(|i| self.slots[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.slots[start % n]
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            });
        if guard.is_none() {
            match new_slot(&self.pre, &self.config, self.limits, &self.ticker) {
                Ok(slot) => *guard = Some(slot),
                Err(e) => return Err(CallError::Instantiate(e.to_string())),
            }
        }
        let slot = guard.as_mut().expect("filled above");
        slot.store
            .set_epoch_deadline(self.ticker.deadline_ticks(self.limits.call_timeout));
        match f(&slot.funcs, &mut slot.store) {
            Ok(r) => Ok(r),
            Err(e) => {
                // The instance's state is unknown after a trap: drop it.
                *guard = None;
                Err(classify(&e, self.limits.call_timeout))
            }
        }
    }
}

/// Why a pool could not be filled; `stage` says which step failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    #[error("{0}")]
    Instantiate(String),
    #[error("{0}")]
    Configure(String),
}

fn new_slot(
    pre: &PolicyPre<StoreState>,
    config: &str,
    limits: Limits,
    ticker: &Ticker,
) -> Result<Slot, PoolError> {
    let deadline = ticker.deadline_ticks(limits.call_timeout);
    let state = StoreState {
        limits: StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build(),
    };
    let mut store = Store::new(pre.engine(), state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(deadline);
    let funcs = pre
        .instantiate(&mut store)
        .map_err(|e| PoolError::Instantiate(classify(&e, limits.call_timeout).to_string()))?;
    store.set_epoch_deadline(deadline);
    match funcs.configure(&mut store, config) {
        Ok(Ok(())) => Ok(Slot { store, funcs }),
        Ok(Err(e)) => Err(PoolError::Configure(e.to_string())),
        Err(e) => Err(PoolError::Configure(
            classify(&e, limits.call_timeout).to_string(),
        )),
    }
}

fn classify(e: &wasmtime::Error, timeout: Duration) -> CallError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Deadline(timeout),
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(format!("{e}")),
    }
}
