//! A continuously refilling token bucket, the model the API enforces: a
//! limit of `capacity` per minute refills at `capacity / 60 s`, and a full
//! bucket allows a burst of `capacity`.
//!
//! Time is milliseconds since the Unix epoch, passed in by the caller, so
//! the bucket is a pure function of its inputs and tests need no clock.

/// One minute, the window every per-minute limit refills over.
pub const MINUTE_MS: u64 = 60_000;

pub use crate::config::Ramp;

/// Tokens available now and the rule that refills them.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// The configured capacity, when there is one.
    configured: Option<u64>,
    /// The capacity in effect: the configured one, lowered to what the
    /// upstream reports as its limit.
    capacity: u64,
    /// Tokens available at `updated`; negative when a reconciliation
    /// charged more than was left (a debt refilled first).
    level: f64,
    /// Tokens reserved on an estimate and not yet settled. The level
    /// refills only up to `capacity - held`, so that an estimate given
    /// back late cannot add to a bucket that refilled meanwhile.
    held: f64,
    /// Refill per millisecond.
    rate: f64,
    updated: u64,
    /// No token is granted before this time (a 429's `retry-after`).
    closed_until: u64,
    ramp: Ramp,
    /// When the bucket is (or was) full again after its last use; `None`
    /// before the first. Idle is full and unused for the ramp's idle time.
    full_from: Option<u64>,
    /// When use resumed after idle, while the ramp lasts.
    resumed_at: Option<u64>,
}

/// Why a cost does not fit now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// It fits at this time, at the earliest.
    Until(u64),
    /// It exceeds the capacity: it never fits.
    Never,
}

impl Bucket {
    /// A full bucket of `capacity` per minute (at least 1).
    pub fn per_minute(capacity: u64, now: u64) -> Bucket {
        let capacity = capacity.max(1);
        Bucket {
            configured: Some(capacity),
            capacity,
            level: capacity as f64,
            held: 0.0,
            rate: capacity as f64 / MINUTE_MS as f64,
            updated: now,
            closed_until: 0,
            ramp: Ramp::OFF,
            full_from: None,
            resumed_at: None,
        }
    }

    /// The same bucket, coming back after idle by `ramp`.
    pub fn ramping(mut self, ramp: Ramp) -> Bucket {
        self.ramp = ramp;
        self
    }

    /// A bucket learned from an upstream's headers alone.
    pub fn learned(limit: u64, now: u64) -> Bucket {
        Bucket {
            configured: None,
            ..Bucket::per_minute(limit, now)
        }
    }

    /// The capacity in effect.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whole tokens available at `now` (0 while closed or in debt).
    pub fn available(&mut self, now: u64) -> u64 {
        self.refill(now);
        if now < self.closed_until {
            0
        } else {
            self.level.max(0.0).floor() as u64
        }
    }

    /// When the bucket is full again, or `None` when it is full now.
    pub fn full_at(&mut self, now: u64) -> Option<u64> {
        self.refill(now);
        let missing = self.ceiling() - self.level;
        let open = self.closed_until.max(now);
        (missing > 0.0 || open > now).then(|| open.max(now + self.millis_for(missing)))
    }

    /// Whether `amount` fits at `now`; the earliest time it would if not.
    /// A check is an intent to send: after idle, the ramp starts with it.
    pub fn check(&mut self, amount: u64, now: u64) -> Result<(), Shortfall> {
        if amount > self.capacity {
            return Err(Shortfall::Never);
        }
        self.refill(now);
        if self.idle(now) {
            // A request after idle: the ramp starts now.
            self.used(now);
        }
        let missing = amount as f64 - self.level;
        let at = if missing > 1e-9 {
            now + self.millis_for(missing)
        } else {
            now
        };
        let at = at.max(self.closed_until).max(self.ramped_to(amount));
        if at > now {
            Err(Shortfall::Until(at))
        } else {
            Ok(())
        }
    }

    /// When the ramp's cap lets `amount` (and what is held) in: at once
    /// without a ramp under way.
    fn ramped_to(&self, amount: u64) -> u64 {
        let Ramp { start, over_ms, .. } = self.ramp;
        let Some(at) = self.resumed_at.filter(|_| over_ms > 0 && start < 1.0) else {
            return 0;
        };
        let needed = (amount as f64 + self.held) / self.capacity as f64;
        if needed <= start {
            return 0;
        }
        let share = ((needed - start) / (1.0 - start)).min(1.0);
        // As in `millis_for`: a float's last bits do not cost a millisecond.
        at + (share * over_ms as f64 - 1e-6).ceil().max(0.0) as u64
    }

    /// Takes `amount` for good (after [`Bucket::check`] said it fits).
    pub fn take(&mut self, amount: u64, now: u64) {
        self.refill(now);
        self.used(now);
        self.level -= amount as f64;
        self.note_full(now);
    }

    /// A use at `now`: the ramp starts when it comes after idle.
    fn used(&mut self, now: u64) {
        if self.idle(now) {
            self.resumed_at = Some(now);
        }
        self.full_from = Some(now);
    }

    /// Notes when the level, as it is now, is full again.
    fn note_full(&mut self, now: u64) {
        if self.full_from.is_some() {
            let missing = self.capacity as f64 - self.held - self.level;
            self.full_from = Some(now + self.millis_for(missing));
        }
    }

    /// Whether the bucket, used once, has sat full and unused for the
    /// ramp's idle time (a request waiting for a refill is not idle).
    fn idle(&self, now: u64) -> bool {
        self.ramp.idle_ms > 0
            && self
                .full_from
                .is_some_and(|at| now >= at.saturating_add(self.ramp.idle_ms))
    }

    /// Gives back `amount` taken for good but never used.
    pub fn refund(&mut self, amount: u64, now: u64) {
        self.refill(now);
        self.level = (self.level + amount as f64).min(self.ceiling());
        self.note_full(now);
    }

    /// Takes `amount` on an estimate, to be settled by [`Bucket::settle`].
    pub fn hold(&mut self, amount: u64, now: u64) {
        self.refill(now);
        self.used(now);
        self.level -= amount as f64;
        self.held += amount as f64;
    }

    /// Settles an estimate of `held` that really cost `actual`: refunds an
    /// over-estimate, charges an under-estimate (possibly into debt, which
    /// delays the next grant).
    pub fn settle(&mut self, held: u64, actual: u64, now: u64) {
        self.refill(now);
        self.held = (self.held - held as f64).max(0.0);
        self.level = (self.level + held as f64 - actual as f64).min(self.ceiling());
        self.note_full(now);
    }

    /// Corrects the bucket from what the upstream reports: its `limit`
    /// lowers the capacity (never raises it above the configured one), and
    /// its `remaining` lowers the level. The upstream's word only ever
    /// makes levee slower, so a stale header cannot open the gates.
    pub fn correct(&mut self, limit: Option<u64>, remaining: Option<u64>, now: u64) {
        self.refill(now);
        if let Some(limit) = limit.filter(|&l| l > 0) {
            let capacity = self.configured.map_or(limit, |c| c.min(limit));
            if capacity != self.capacity {
                self.capacity = capacity;
                self.rate = capacity as f64 / MINUTE_MS as f64;
                self.level = self.level.min(self.ceiling());
            }
        }
        if let Some(remaining) = remaining {
            self.level = self.level.min(remaining as f64);
        }
    }

    /// Grants nothing before `until`.
    pub fn close_until(&mut self, until: u64) {
        self.closed_until = self.closed_until.max(until);
    }

    fn refill(&mut self, now: u64) {
        if now > self.updated {
            let gained = (now - self.updated) as f64 * self.rate;
            self.level += gained;
            self.updated = now;
        }
        self.level = self.level.min(self.ceiling_at(now));
    }

    /// The highest the level may refill to.
    fn ceiling(&self) -> f64 {
        self.ceiling_at(self.updated)
    }

    /// The highest the level may be at `now`: the capacity less what is
    /// held, and while the bucket ramps back after idle, its ramp's share.
    fn ceiling_at(&self, now: u64) -> f64 {
        let capacity = self.capacity as f64;
        let Ramp { start, over_ms, .. } = self.ramp;
        let share = match self.resumed_at {
            _ if self.idle(now) => start,
            Some(at) if over_ms > 0 && now.saturating_sub(at) < over_ms => {
                start + (1.0 - start) * (now - at) as f64 / over_ms as f64
            }
            _ => 1.0,
        };
        (capacity * share - self.held).max(0.0)
    }

    /// Milliseconds to refill `tokens`, rounded up (a float's last bits of
    /// error do not cost a millisecond).
    fn millis_for(&self, tokens: f64) -> u64 {
        if tokens <= 1e-9 {
            0
        } else {
            (tokens / self.rate - 1e-6).ceil().max(0.0) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_a_burst_then_refills_continuously() {
        let mut b = Bucket::per_minute(60, 0);
        for _ in 0..60 {
            assert_eq!(b.check(1, 0), Ok(()));
            b.take(1, 0);
        }
        assert_eq!(b.check(1, 0), Err(Shortfall::Until(1_000)));
        assert_eq!(b.check(1, 999), Err(Shortfall::Until(1_000)));
        assert_eq!(b.check(1, 1_000), Ok(()));
        assert_eq!(b.available(30_000), 30);
        assert_eq!(b.available(600_000), 60, "never above capacity");
    }

    #[test]
    fn a_cost_above_capacity_never_fits() {
        let mut b = Bucket::per_minute(1_000, 0);
        assert_eq!(b.check(1_001, 0), Err(Shortfall::Never));
        assert_eq!(b.check(1_000, 0), Ok(()));
    }

    #[test]
    fn reconciliation_refunds_and_charges_into_debt() {
        let mut b = Bucket::per_minute(600, 0);
        b.hold(500, 0);
        b.settle(500, 100, 0);
        assert_eq!(b.available(0), 500);
        b.hold(500, 0);
        b.settle(500, 1_100, 0);
        assert_eq!(b.available(0), 0, "in debt");
        // A debt of 600 is refilled at 10 per second first.
        assert_eq!(b.check(1, 0), Err(Shortfall::Until(60_100)));
    }

    #[test]
    fn a_held_estimate_given_back_late_does_not_overfill() {
        let mut b = Bucket::per_minute(600, 0);
        b.hold(600, 0);
        assert_eq!(b.available(120_000), 0, "the hold caps the refill");
        b.settle(600, 0, 120_000);
        assert_eq!(b.available(120_000), 600);
        b.take(600, 120_000);
        b.refund(600, 120_000);
        assert_eq!(b.available(120_000), 600, "never above capacity");
    }

    #[test]
    fn headers_only_lower_the_capacity_and_the_level() {
        let mut b = Bucket::per_minute(100, 0);
        b.correct(Some(50), Some(10), 0);
        assert_eq!((b.capacity(), b.available(0)), (50, 10));
        b.correct(Some(500), Some(400), 0);
        assert_eq!((b.capacity(), b.available(0)), (100, 10), "no raise");
        let mut learned = Bucket::learned(50, 0);
        learned.correct(Some(80), None, 0);
        assert_eq!(
            learned.capacity(),
            80,
            "a learned limit follows the upstream"
        );
    }

    #[test]
    fn after_idle_a_bucket_ramps_back_instead_of_a_full_burst() {
        let ramp = Ramp {
            idle_ms: 60_000,
            start: 0.25,
            over_ms: 60_000,
        };
        let mut b = Bucket::per_minute(100, 0).ramping(ramp);
        assert_eq!(b.available(0), 100, "never used: the first burst is whole");
        b.take(100, 0);
        assert_eq!(b.available(59_000), 98, "refilled, not idle yet");
        b.take(1, 59_000);
        // Full again at 60.6 s, idle a minute later: it grants a quarter.
        assert_eq!(b.available(120_000), 100, "full, not idle yet");
        let resume = 121_000;
        assert_eq!(b.available(resume), 25, "a quarter after idle");
        // 26 fit once the cap has grown by one (75 a minute: 800 ms).
        assert_eq!(b.check(26, resume), Err(Shortfall::Until(resume + 800)));
        assert_eq!(b.check(26, resume + 801), Ok(()));
        let mut big = b.clone();
        assert_eq!(
            big.check(100, resume),
            Err(Shortfall::Until(resume + 60_000)),
            "a whole bucket's cost fits when the ramp is over"
        );
        b.take(25, resume + 801);
        // The level, 1 after the take, refills by 100 a minute; the cap,
        // 26, grows by 75: they meet as the ramp ends.
        assert_eq!(b.available(resume + 30_000), 49);
        assert_eq!(b.available(resume + 45_000), 74);
        assert_eq!(b.available(resume + 100_000), 100, "whole again");
        assert_eq!(b.available(resume + 600_000), 25, "idle again");
        let mut off = Bucket::per_minute(100, 0);
        off.take(1, 0);
        assert_eq!(off.available(600_000), 100, "no ramp: a full burst");
    }

    #[test]
    fn closing_delays_every_grant() {
        let mut b = Bucket::per_minute(100, 0);
        b.close_until(5_000);
        assert_eq!(b.check(1, 0), Err(Shortfall::Until(5_000)));
        assert_eq!(b.available(1_000), 0);
        assert_eq!(b.full_at(0), Some(5_000));
        assert_eq!(b.check(1, 5_000), Ok(()));
    }
}
