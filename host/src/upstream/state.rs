//! What levee knows about each upstream at runtime, and the read-only view
//! of it that the policy decides on.

use crate::core::{Circuit, Health, UpstreamView};
use levee_exchange::classes::{Class, MAX_CLASSES};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How long a 529 keeps an upstream marked overloaded when it gave no
/// `retry-after`.
pub const OVERLOAD_COOLDOWN_MS: u64 = 2_000;

/// Mutable facts about one upstream, shared by every request.
#[derive(Debug, Default)]
pub struct UpstreamState {
    in_flight: AtomicU32,
    /// By model class: the API closes each class apart.
    rate_limited_until: [AtomicU64; MAX_CLASSES],
    overloaded_until: AtomicU64,
    /// Smoothed time to first byte, ms; 0 until measured.
    ttfb_ms: AtomicU32,
    /// When the last TTFB sample came, ms since the epoch.
    ttfb_at: AtomicU64,
}

/// Counts a request in flight to an upstream until dropped.
pub struct InFlight<'a>(&'a UpstreamState);

impl UpstreamState {
    /// Attempts in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks an attempt in flight.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// A 429 closes the upstream to `class` until `now + wait`; true when
    /// it was open until now (a new closure rather than a longer one).
    pub fn rate_limited(&self, class: Class, now: u64, wait_ms: u64) -> bool {
        let until = now.saturating_add(wait_ms);
        let before = self.closure(class).fetch_max(until, Ordering::Relaxed);
        before <= now && until > now
    }

    /// A 529 marks the upstream overloaded for `wait_ms` (or a cool-down);
    /// the cool-down's length when it was not marked until now.
    pub fn overloaded(&self, now: u64, wait_ms: Option<u64>) -> Option<u64> {
        let for_ms = wait_ms.unwrap_or(OVERLOAD_COOLDOWN_MS);
        let until = now.saturating_add(for_ms);
        let before = self.overloaded_until.fetch_max(until, Ordering::Relaxed);
        (before <= now && until > now).then_some(for_ms)
    }

    /// Folds a time-to-first-byte sample, taken at `now`, into the moving
    /// average (1/8 weight).
    pub fn observe_ttfb(&self, ms: u32, now: u64) {
        let ms = ms.max(1);
        self.ttfb_at.fetch_max(now, Ordering::Relaxed);
        let _ = self
            .ttfb_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 { ms } else { old - old / 8 + ms / 8 })
            });
    }

    /// The smoothed TTFB if a sample came within `fresh_ms` of `now`.
    pub fn fresh_ttfb(&self, now: u64, fresh_ms: u64) -> Option<u32> {
        let at = self.ttfb_at.load(Ordering::Relaxed);
        let ttfb = self.ttfb_ms.load(Ordering::Relaxed);
        (ttfb > 0 && now.saturating_sub(at) <= fresh_ms).then_some(ttfb)
    }

    fn closure(&self, class: Class) -> &AtomicU64 {
        let i = usize::from(class).min(MAX_CLASSES - 1);
        &self.rate_limited_until[i]
    }

    /// The policy's view of this upstream at `now`, for a request of
    /// `class`; health, circuit and slowness are filled in by the runtime
    /// (see `health`).
    pub fn view(&self, id: u32, group: u8, weight: u16, class: Class, now: u64) -> UpstreamView {
        let future = |v: u64| (v > now).then_some(v);
        let ttfb = self.ttfb_ms.load(Ordering::Relaxed);
        UpstreamView {
            id,
            group,
            weight,
            health: Health::Unknown,
            circuit: Circuit::Closed,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            rate_limited_until: future(self.closure(class).load(Ordering::Relaxed)),
            overloaded_until: future(self.overloaded_until.load(Ordering::Relaxed)),
            budgets: Vec::new(),
            ttfb_ms: (ttfb > 0).then_some(ttfb),
            slow: false,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_show_in_the_view_until_they_lapse() {
        let s = UpstreamState::default();
        assert!(s.rate_limited(1, 1_000, 500), "a new closure");
        assert!(!s.rate_limited(1, 1_100, 900), "a longer one");
        assert!(!s.rate_limited(1, 1_100, 0), "none at all");
        assert_eq!(s.overloaded(1_000, None), Some(OVERLOAD_COOLDOWN_MS));
        assert_eq!(s.overloaded(1_200, Some(5)), None);
        let v = s.view(3, 1, 2, 1, 1_200);
        assert_eq!((v.id, v.group, v.weight), (3, 1, 2));
        assert_eq!(v.rate_limited_until, Some(2_000));
        assert_eq!(v.overloaded_until, Some(1_000 + OVERLOAD_COOLDOWN_MS));
        let other = s.view(3, 1, 2, 2, 1_200);
        assert_eq!(other.rate_limited_until, None, "another class is open");
        assert_eq!(
            other.overloaded_until, v.overloaded_until,
            "overload is all"
        );
        let later = s.view(3, 1, 2, 1, 10_000);
        assert_eq!(
            (later.rate_limited_until, later.overloaded_until),
            (None, None)
        );
        assert!(s.rate_limited(1, 10_000, 1), "closed again once it lapsed");
    }

    #[test]
    fn ttfb_counts_as_fresh_only_for_a_while() {
        let s = UpstreamState::default();
        assert_eq!(s.fresh_ttfb(0, 1_000), None);
        s.observe_ttfb(400, 5_000);
        assert_eq!(s.fresh_ttfb(5_500, 1_000), Some(400));
        assert_eq!(s.fresh_ttfb(6_001, 1_000), None);
        assert_eq!(s.view(0, 0, 1, 0, 6_001).ttfb_ms, Some(400));
    }

    #[test]
    fn in_flight_counts_until_dropped() {
        let s = UpstreamState::default();
        let a = s.start();
        let _b = s.start();
        assert_eq!(s.view(0, 0, 1, 0, 0).in_flight, 2);
        drop(a);
        assert_eq!(s.view(0, 0, 1, 0, 0).in_flight, 1);
    }
}
