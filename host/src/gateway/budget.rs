//! The global retry budget, in the spirit of Envoy's: retries in flight may
//! be at most a share of the requests in flight, with a floor, so that a
//! brownout is not multiplied by retries.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts requests and retries in flight.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_retries: u64,
    active: AtomicU64,
    retrying: AtomicU64,
    exhausted: AtomicU64,
}

/// Held while a request is in flight.
pub struct Active<'a>(&'a RetryBudget);

/// Held while a retry (its wait and its attempt) is in flight.
pub struct RetryToken<'a>(&'a RetryBudget);

impl RetryBudget {
    /// Retries in flight may reach `max(min_retries, ratio * active)`.
    pub fn new(ratio: f64, min_retries: u32) -> RetryBudget {
        RetryBudget {
            ratio,
            min_retries: u64::from(min_retries),
            active: AtomicU64::new(0),
            retrying: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        }
    }

    /// Marks a request in flight until the guard drops.
    pub fn enter(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self)
    }

    /// Whether a retry would be granted now.
    pub fn has_room(&self) -> bool {
        self.retrying.load(Ordering::Relaxed) < self.cap()
    }

    /// Takes a retry slot, or `None` when the budget is spent.
    pub fn try_retry(&self) -> Option<RetryToken<'_>> {
        let cap = self.cap();
        let granted = self
            .retrying
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok();
        if granted {
            Some(RetryToken(self))
        } else {
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Retries refused because the budget was spent.
    pub fn exhausted(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Requests and retries in flight, the cap, and refusals so far.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "active": self.active.load(Ordering::Relaxed),
            "retrying": self.retrying.load(Ordering::Relaxed),
            "cap": self.cap(),
            "exhausted": self.exhausted(),
            "ratio": self.ratio,
            "min_retries": self.min_retries,
        })
    }

    fn cap(&self) -> u64 {
        let share = (self.active.load(Ordering::Relaxed) as f64 * self.ratio) as u64;
        share.max(self.min_retries)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for RetryToken<'_> {
    fn drop(&mut self) {
        self.0.retrying.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_applies_when_few_requests_are_active() {
        let b = RetryBudget::new(0.2, 3);
        let _a = b.enter();
        let t: Vec<_> = (0..3)
            .map(|_| b.try_retry().expect("within the floor"))
            .collect();
        assert!(b.try_retry().is_none());
        assert_eq!(b.exhausted(), 1);
        drop(t);
        assert!(b.try_retry().is_some());
    }

    #[test]
    fn share_of_active_requests_caps_retries() {
        let b = RetryBudget::new(0.2, 3);
        let active: Vec<_> = (0..100).map(|_| b.enter()).collect();
        let tokens: Vec<_> = std::iter::from_fn(|| b.try_retry()).take(1000).collect();
        assert_eq!(tokens.len(), 20);
        drop(active);
        assert!(
            !b.has_room(),
            "with nobody active the floor of 3 is long exceeded"
        );
    }
}
