//! What levee learns about each upstream's health, and how it shows in the
//! policy's view.
//!
//! Three states are kept apart (see `state.rs` for the first two):
//! - rate-limited (429 with a reset): closed until the reset;
//! - overloaded (529): marked for a cool-down, so traffic shifts now;
//! - broken (DNS, connect, TLS, proxy, timeout or reset failures, and 5xx
//!   other than 529): counted by the passive outlier detector
//!   ([`outlier`]), which opens the circuit, and seen by the optional
//!   active checks ([`active`]), which set the health.
//!
//! Each transition is logged once and counted in the metrics.

pub mod active;
pub mod outlier;
pub mod report;
pub mod slow;

use crate::clock::now_ms;
use crate::config::Outlier;
use crate::core::{Circuit, Health};
use crate::telemetry::activity::events::{EventKind, Events};
use outlier::{Breaker, Change, State};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Whether a response status says the upstream is broken: a 5xx other
/// than 529. 429 and 529 say it is alive (rate-limited or overloaded), and
/// so does any other answer. A failure before any answer (DNS, connect,
/// TLS, proxy, timeout, reset) is always broken.
pub fn is_broken(status: u16) -> bool {
    status >= 500 && status != 529
}

/// How many upstreams may be ejected at once, shared by one runtime's
/// upstreams.
#[derive(Debug)]
pub struct Ejections {
    ejected: AtomicUsize,
    allowed: usize,
}

impl Ejections {
    /// For `upstreams` upstreams and at most `percent` of them ejected (at
    /// least one when `percent` is above 0).
    pub fn new(upstreams: usize, percent: u8) -> Ejections {
        let share = upstreams * usize::from(percent) / 100;
        Ejections {
            ejected: AtomicUsize::new(0),
            allowed: if percent > 0 { share.max(1) } else { 0 },
        }
    }

    fn claim(&self) -> bool {
        self.ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.allowed).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        let _ = self
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// Active check results: unknown until the first verdict, which sets the
/// health; then `fall` failures in a row make it unhealthy and `rise`
/// passes in a row make it healthy.
#[derive(Debug, Default)]
struct Active {
    health: Option<Health>,
    passes: u32,
    fails: u32,
}

impl Active {
    fn verdict(&mut self, passed: bool, rise: u32, fall: u32) -> Option<Health> {
        if passed {
            (self.passes, self.fails) = (self.passes.saturating_add(1), 0);
        } else {
            (self.passes, self.fails) = (0, self.fails.saturating_add(1));
        }
        let next = match (self.health, passed) {
            (None, true) => Health::Healthy,
            (None, false) => Health::Unhealthy,
            (Some(Health::Unhealthy), true) if self.passes >= rise => Health::Healthy,
            (Some(Health::Healthy), false) if self.fails >= fall => Health::Unhealthy,
            (Some(h), _) => h,
        };
        (self.health != Some(next)).then(|| {
            self.health = Some(next);
            next
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    breaker: Breaker,
    active: Active,
}

/// One upstream's health: the breaker, the active checks' verdict, and
/// counters for the metrics.
#[derive(Debug)]
pub struct Tracker {
    name: Arc<String>,
    cfg: Outlier,
    ejections: Arc<Ejections>,
    inner: Mutex<Inner>,
    probes: AtomicU32,
    /// Where each transition is told, for `/status`.
    events: Arc<Events>,
    /// When the circuit last changed state (or the tracker was made), ms
    /// since the Unix epoch.
    pub circuit_since: AtomicU64,
    /// When the active checks' verdict last changed (or the tracker was
    /// made).
    pub health_since: AtomicU64,
    /// Times ejected.
    pub ejected_total: AtomicU64,
    /// Active checks passed.
    pub checks_passed: AtomicU64,
    /// Active checks failed.
    pub checks_failed: AtomicU64,
}

/// A half-open probe in flight; frees its slot when dropped.
pub struct Probe<'a>(Option<&'a Tracker>);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            t.probes.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Tracker {
    /// A tracker for the upstream `name`, sharing `ejections` with the
    /// runtime's other upstreams, telling its transitions to `events`.
    pub fn new(
        name: Arc<String>,
        cfg: Outlier,
        ejections: Arc<Ejections>,
        events: Arc<Events>,
    ) -> Tracker {
        let now = now_ms();
        Tracker {
            name,
            cfg,
            ejections,
            inner: Mutex::default(),
            probes: AtomicU32::new(0),
            events,
            circuit_since: AtomicU64::new(now),
            health_since: AtomicU64::new(now),
            ejected_total: AtomicU64::new(0),
            checks_passed: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The health and circuit at `now`, as the policy sees them. A
    /// half-open circuit whose probe slots are all taken shows as open.
    pub fn view(&self, now: u64) -> (Health, Circuit) {
        let mut inner = self.lock();
        let (state, change) = inner.breaker.state(now);
        let health = inner.active.health.unwrap_or(Health::Unknown);
        drop(inner);
        self.log(change);
        let circuit = match state {
            State::Closed => Circuit::Closed,
            State::Open { .. } => Circuit::Open,
            State::HalfOpen if self.probes.load(Ordering::Acquire) < self.cfg.half_open_probes => {
                Circuit::HalfOpen
            }
            State::HalfOpen => Circuit::Open,
        };
        (health, circuit)
    }

    /// The circuit as last computed, without moving the clock (metrics).
    pub fn circuit(&self) -> Circuit {
        match self.lock().breaker.state(0).0 {
            State::Closed => Circuit::Closed,
            State::Open { .. } => Circuit::Open,
            State::HalfOpen => Circuit::HalfOpen,
        }
    }

    /// The active checks' verdict so far.
    pub fn health(&self) -> Health {
        self.lock().active.health.unwrap_or(Health::Unknown)
    }

    /// Marks an attempt starting at `now`: while half-open it takes a
    /// probe slot until the guard drops. (Two requests may both see the
    /// last free slot; the view's answer is advisory, so both go.)
    pub fn begin(&self, now: u64) -> Probe<'_> {
        let (state, change) = self.lock().breaker.state(now);
        self.log(change);
        if state == State::HalfOpen {
            self.probes.fetch_add(1, Ordering::AcqRel);
            Probe(Some(self))
        } else {
            Probe(None)
        }
    }

    /// Counts an attempt's outcome at `now`: `failed` when it says the
    /// upstream is broken.
    pub fn record(&self, now: u64, failed: bool) {
        let mut inner = self.lock();
        let (_, half_opened) = inner.breaker.state(now);
        let change = inner
            .breaker
            .record(&self.cfg, now, failed, || self.ejections.claim());
        drop(inner);
        self.log(half_opened);
        self.log(change);
    }

    /// An active check's result (passed, or why not), under the check's
    /// `rise` and `fall` thresholds.
    pub fn checked(&self, result: &Result<(), String>, rise: u32, fall: u32) {
        let counter = if result.is_ok() {
            &self.checks_passed
        } else {
            &self.checks_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        let Some(now) = inner.active.verdict(result.is_ok(), rise, fall) else {
            return;
        };
        let early = (now == Health::Healthy)
            .then(|| inner.breaker.recovered())
            .flatten();
        drop(inner);
        self.health_since.store(now_ms(), Ordering::Relaxed);
        match (now, result) {
            (Health::Unhealthy, Err(why)) => {
                tracing::warn!(upstream = %self.name, reason = %why, "health check: unhealthy");
                self.tell(EventKind::Unhealthy, why.clone());
            }
            _ => {
                tracing::info!(upstream = %self.name, "health check: healthy");
                self.tell(EventKind::Healthy, "the health check passes".into());
            }
        }
        self.log(early);
    }

    fn log(&self, change: Option<Change>) {
        let name = &self.name;
        let Some(change) = change else { return };
        if !matches!(change, Change::Spared) {
            self.circuit_since.store(now_ms(), Ordering::Relaxed);
        }
        match change {
            Change::Opened { for_ms, why } => {
                self.ejected_total.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %name, rule = why, for_ms, "circuit open: upstream ejected");
                self.tell(
                    EventKind::Ejected,
                    format!("by the {why} rule, for {for_ms} ms"),
                );
            }
            Change::HalfOpened => {
                tracing::info!(upstream = %name, "circuit half-open: probing");
                self.tell(EventKind::HalfOpen, "probing".into());
            }
            Change::Closed => {
                self.ejections.release();
                tracing::info!(upstream = %name, "circuit closed: upstream reinstated");
                self.tell(EventKind::Reinstated, "circuit closed".into());
            }
            Change::Spared => {
                tracing::warn!(
                    upstream = %name,
                    "circuit stays closed: too many upstreams are ejected already"
                );
                self.tell(
                    EventKind::Spared,
                    "would be ejected, but too many upstreams are out already".into(),
                );
            }
        }
    }

    fn tell(&self, kind: EventKind, detail: String) {
        self.events.record(kind, Some(&self.name), detail);
    }
}

#[cfg(test)]
mod tests;
