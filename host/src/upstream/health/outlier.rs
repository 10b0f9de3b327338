//! Passive outlier detection and the circuit breaker of one upstream, on
//! an injected clock (milliseconds).
//!
//! Closed: attempt outcomes are counted. `consecutive_failures` failures
//! in a row, or a failure rate of at least `failure_rate_percent` over the
//! window (once it holds `min_requests` outcomes), eject the upstream: the
//! circuit opens for `base_ejection × 2^(n-1)` (n = ejections in a row,
//! capped at `max_ejection`), if the share of upstreams ejected at once
//! allows. Then half-open: up to `half_open_probes` attempts at a time go
//! through; a success closes the circuit, a failure opens it again for
//! longer. A closed spell of `max_ejection` without an ejection forgets
//! the earlier ones.

use crate::config::Outlier;

/// Where the circuit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Traffic flows; outcomes are counted.
    Closed,
    /// Ejected until the given time.
    Open {
        /// When probing may start.
        until: u64,
    },
    /// Probe attempts may go through.
    HalfOpen,
}

/// A transition, for the log and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Ejected for `for_ms`; `why` says which rule tripped.
    Opened {
        /// The ejection's length.
        for_ms: u64,
        /// Which rule tripped: `consecutive`, `rate` or `probe`.
        why: &'static str,
    },
    /// The ejection is over; probing starts.
    HalfOpened,
    /// A probe succeeded.
    Closed,
    /// A rule tripped but too many upstreams are ejected already.
    Spared,
}

/// Buckets in the rate window.
const BUCKETS: usize = 10;

/// One upstream's breaker.
#[derive(Debug)]
pub struct Breaker {
    state: State,
    consecutive: u32,
    /// Per bucket: its start, successes, failures.
    window: [(u64, u32, u32); BUCKETS],
    /// Ejections in a row (reset after a long enough closed spell).
    ejections: u32,
    closed_at: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Closed,
            consecutive: 0,
            window: [(u64::MAX, 0, 0); BUCKETS],
            ejections: 0,
            closed_at: 0,
        }
    }
}

impl Breaker {
    /// The state at `now`: an ejection that is over turns half-open.
    pub fn state(&mut self, now: u64) -> (State, Option<Change>) {
        match self.state {
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                (self.state, Some(Change::HalfOpened))
            }
            s => (s, None),
        }
    }

    /// Ends an ejection early (an active check saw the upstream recover):
    /// probing starts now.
    pub fn recovered(&mut self) -> Option<Change> {
        matches!(self.state, State::Open { .. }).then(|| {
            self.state = State::HalfOpen;
            Change::HalfOpened
        })
    }

    /// Counts one attempt's outcome at `now`. `may_eject` is asked before
    /// a Closed circuit opens (it claims a share of the ejection budget);
    /// `release` is called when a circuit closes.
    pub fn record(
        &mut self,
        cfg: &Outlier,
        now: u64,
        failed: bool,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Change> {
        let (state, half_opened) = self.state(now);
        match state {
            // A straggler sent before the ejection: no news.
            State::Open { .. } => half_opened,
            State::HalfOpen if failed => Some(self.open(cfg, now, "probe")),
            State::HalfOpen => {
                self.state = State::Closed;
                self.closed_at = now;
                self.consecutive = 0;
                self.window = [(u64::MAX, 0, 0); BUCKETS];
                Some(Change::Closed)
            }
            State::Closed => {
                self.count(cfg, now, failed);
                let why = self.tripped(cfg, now)?;
                if !cfg.enabled {
                    return None;
                }
                if !may_eject() {
                    self.consecutive = 0;
                    return Some(Change::Spared);
                }
                if now.saturating_sub(self.closed_at) >= cfg.max_ejection.as_millis() as u64 {
                    self.ejections = 0;
                }
                Some(self.open(cfg, now, why))
            }
        }
    }

    fn open(&mut self, cfg: &Outlier, now: u64, why: &'static str) -> Change {
        self.ejections = self.ejections.saturating_add(1);
        let base = cfg.base_ejection.as_millis() as u64;
        let grown = base.saturating_mul(1u64 << (self.ejections - 1).min(20));
        let for_ms = grown.min(cfg.max_ejection.as_millis() as u64);
        self.state = State::Open {
            until: now.saturating_add(for_ms),
        };
        self.consecutive = 0;
        Change::Opened { for_ms, why }
    }

    fn count(&mut self, cfg: &Outlier, now: u64, failed: bool) {
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        let width = (cfg.window.as_millis() as u64 / BUCKETS as u64).max(1);
        let start = now - now % width;
        let bucket = &mut self.window[(now / width) as usize % BUCKETS];
        if bucket.0 != start {
            *bucket = (start, 0, 0);
        }
        if failed {
            bucket.2 += 1;
        } else {
            bucket.1 += 1;
        }
    }

    /// Which rule, if any, says eject.
    fn tripped(&self, cfg: &Outlier, now: u64) -> Option<&'static str> {
        if self.consecutive >= cfg.consecutive_failures {
            return Some("consecutive");
        }
        if cfg.failure_rate_percent == 0 {
            return None;
        }
        let window = cfg.window.as_millis() as u64;
        let (ok, failed) = self
            .window
            .iter()
            .filter(|b| b.0 != u64::MAX && b.0.saturating_add(window) > now)
            .fold((0u64, 0u64), |(o, f), b| {
                (o + u64::from(b.1), f + u64::from(b.2))
            });
        let total = ok + failed;
        (total >= u64::from(cfg.min_requests)
            && failed * 100 >= u64::from(cfg.failure_rate_percent) * total)
            .then_some("rate")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> Outlier {
        Outlier {
            consecutive_failures: 3,
            failure_rate_percent: 50,
            window: Duration::from_secs(10),
            min_requests: 10,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(5),
            ..Outlier::default()
        }
    }

    fn fail(b: &mut Breaker, now: u64) -> Option<Change> {
        b.record(&cfg(), now, true, || true)
    }

    #[test]
    fn consecutive_failures_open_then_half_open_then_close() {
        let mut b = Breaker::default();
        assert_eq!(fail(&mut b, 0), None);
        assert_eq!(fail(&mut b, 1), None);
        let opened = fail(&mut b, 2);
        assert_eq!(
            opened,
            Some(Change::Opened {
                for_ms: 1_000,
                why: "consecutive"
            })
        );
        assert_eq!(b.state(500), (State::Open { until: 1_002 }, None));
        // Stragglers while open change nothing.
        assert_eq!(fail(&mut b, 600), None);
        assert_eq!(b.state(1_002), (State::HalfOpen, Some(Change::HalfOpened)));
        assert_eq!(b.state(1_003), (State::HalfOpen, None));
        assert_eq!(
            b.record(&cfg(), 1_100, false, || unreachable!()),
            Some(Change::Closed)
        );
        assert_eq!(b.state(1_200).0, State::Closed);
    }

    #[test]
    fn a_success_resets_the_run_of_failures() {
        let mut b = Breaker::default();
        fail(&mut b, 0);
        fail(&mut b, 1);
        assert_eq!(b.record(&cfg(), 2, false, || true), None);
        assert_eq!(fail(&mut b, 3), None);
        assert_eq!(b.state(4).0, State::Closed);
    }

    #[test]
    fn repeated_ejections_grow_to_the_cap() {
        let mut b = Breaker::default();
        for _ in 0..3 {
            fail(&mut b, 0);
        }
        let mut now = 1_000;
        let mut lengths = Vec::new();
        for _ in 0..4 {
            assert_eq!(b.state(now).0, State::HalfOpen);
            match fail(&mut b, now) {
                Some(Change::Opened { for_ms, why }) => {
                    assert_eq!(why, "probe");
                    lengths.push(for_ms);
                    now += for_ms;
                }
                other => panic!("a failed probe re-opens, got {other:?}"),
            }
        }
        assert_eq!(lengths, [2_000, 4_000, 5_000, 5_000]);
    }

    #[test]
    fn a_long_closed_spell_forgets_earlier_ejections() {
        let mut b = Breaker::default();
        for t in 0..3 {
            fail(&mut b, t);
        }
        b.state(2_000);
        b.record(&cfg(), 2_000, false, || true);
        for t in 8_000..8_003 {
            let change = fail(&mut b, t);
            if t == 8_002 {
                assert_eq!(
                    change,
                    Some(Change::Opened {
                        for_ms: 1_000,
                        why: "consecutive"
                    })
                );
            }
        }
    }

    #[test]
    fn failure_rate_over_the_window_ejects_once_enough_requests() {
        let mut b = Breaker::default();
        let c = Outlier {
            consecutive_failures: 100,
            ..cfg()
        };
        // Alternate: a 50% rate, never two failures in a row.
        for i in 0..9u64 {
            assert_eq!(b.record(&c, i * 100, i % 2 == 0, || true), None, "{i}");
        }
        assert_eq!(
            b.record(&c, 900, true, || true),
            Some(Change::Opened {
                for_ms: 1_000,
                why: "rate"
            })
        );
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let mut b = Breaker::default();
        let c = Outlier {
            consecutive_failures: 100,
            ..cfg()
        };
        for i in 0..9 {
            b.record(&c, i, true, || true);
        }
        // Twenty seconds on, the nine failures have left the window.
        for i in 0..9 {
            assert_eq!(b.record(&c, 20_000 + i, i % 2 == 0, || true), None);
        }
        assert_eq!(b.state(20_010).0, State::Closed);
    }

    #[test]
    fn the_ejection_budget_can_spare_an_upstream() {
        let mut b = Breaker::default();
        b.record(&cfg(), 0, true, || false);
        b.record(&cfg(), 1, true, || false);
        assert_eq!(b.record(&cfg(), 2, true, || false), Some(Change::Spared));
        assert_eq!(b.state(3).0, State::Closed);
    }

    #[test]
    fn disabled_detection_never_ejects() {
        let mut b = Breaker::default();
        let c = Outlier {
            enabled: false,
            ..cfg()
        };
        for t in 0..50 {
            assert_eq!(b.record(&c, t, true, || true), None);
        }
    }

    #[test]
    fn recovery_seen_by_an_active_check_starts_probing_early() {
        let mut b = Breaker::default();
        for t in 0..3 {
            fail(&mut b, t);
        }
        assert_eq!(b.recovered(), Some(Change::HalfOpened));
        assert_eq!(b.state(10).0, State::HalfOpen);
        assert_eq!(b.recovered(), None);
    }
}
