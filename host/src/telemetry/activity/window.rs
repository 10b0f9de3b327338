//! The last 15 minutes of one upstream's (or one egress proxy's) attempts,
//! for `/status`: counts by outcome and time to first byte, in 10-second
//! slots of a fixed ring.
//!
//! Every thread records into a ring of its own ([`PerThread`]), under a
//! lock only threads beyond the shard count ever share; a read sums the
//! rings. A slot is reused when its time comes round again, so memory is
//! bounded (about 22 KiB per thread that records, per upstream) whatever
//! the traffic. Time is the monotonic clock: the wall clock jumping does
//! not scramble the windows.

use crate::core::FailureKind;
use crate::telemetry::per_thread::PerThread;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// A slot's span.
pub const SLOT_MS: u64 = 10_000;
/// Slots in the ring: 15 minutes.
pub const SLOTS: usize = 90;

/// What an attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An answer below 400.
    Ok,
    /// A 4xx other than 429: the request's fault, not the upstream's.
    Client,
    /// 429.
    RateLimited,
    /// 529.
    Overloaded,
    /// A 5xx other than 529.
    Server,
    /// No answer: this layer failed.
    Failed(FailureKind),
}

/// Counters per slot: the answers, then each failing layer.
pub const KINDS: usize = 11;

/// Each counter's name, in index order (JSON keys and table headings).
pub const LABELS: [&str; KINDS] = [
    "ok", "4xx", "429", "529", "5xx", "dns", "connect", "tls", "proxy", "timeout", "reset",
];

impl Kind {
    /// The kind of an answer with `status`.
    pub fn of_status(status: u16) -> Kind {
        match status {
            429 => Kind::RateLimited,
            529 => Kind::Overloaded,
            500..=599 => Kind::Server,
            400..=499 => Kind::Client,
            _ => Kind::Ok,
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Ok => 0,
            Kind::Client => 1,
            Kind::RateLimited => 2,
            Kind::Overloaded => 3,
            Kind::Server => 4,
            Kind::Failed(FailureKind::Dns) => 5,
            Kind::Failed(FailureKind::Connect) => 6,
            Kind::Failed(FailureKind::Tls) => 7,
            Kind::Failed(FailureKind::Proxy) => 8,
            Kind::Failed(FailureKind::Timeout) => 9,
            Kind::Failed(FailureKind::Reset) => 10,
        }
    }

    /// Whether it says the upstream is in trouble: anything but a success
    /// or the client's own 4xx.
    pub fn is_error(self) -> bool {
        !matches!(self, Kind::Ok | Kind::Client)
    }
}

/// Time-to-first-byte buckets.
pub const BUCKETS: usize = 48;

/// Bucket upper bounds in microseconds, √2 apart from 125 µs: the last
/// finite one is about 17 minutes; slower lands in the last bucket.
pub const BOUNDS_US: [u64; BUCKETS] = {
    let mut b = [0u64; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        let base = 125u64 << (i / 2);
        // 181/128 is √2 to four digits.
        b[i] = if i % 2 == 0 { base } else { base * 181 / 128 };
        i += 1;
    }
    b[BUCKETS - 1] = u64::MAX;
    b
};

fn bucket(ttfb: Duration) -> usize {
    let us = u64::try_from(ttfb.as_micros()).unwrap_or(u64::MAX);
    BOUNDS_US.partition_point(|&b| b < us)
}

/// One slot's counts.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Which span of [`SLOT_MS`] since [`BASE`] it holds.
    epoch: u64,
    counts: [u32; KINDS],
    ttfb: [u32; BUCKETS],
}

const EMPTY: Slot = Slot {
    epoch: 0,
    counts: [0; KINDS],
    ttfb: [0; BUCKETS],
};

/// The monotonic origin of every ring's epochs.
static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

fn epoch(at: Instant) -> u64 {
    // Whole seconds: no 128-bit division on the request path.
    at.saturating_duration_since(*BASE).as_secs() / (SLOT_MS / 1_000)
}

/// Counts summed over a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// By [`LABELS`].
    pub counts: [u64; KINDS],
    /// Answers per time-to-first-byte bucket ([`BOUNDS_US`]).
    pub ttfb: [u64; BUCKETS],
}

impl Tally {
    /// Attempts of every kind.
    pub fn attempts(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Attempts of `kind`.
    pub fn count(&self, kind: Kind) -> u64 {
        self.counts[kind.index()]
    }

    /// Attempts that were errors ([`Kind::is_error`]).
    pub fn errors(&self) -> u64 {
        self.attempts() - self.counts[0] - self.counts[1]
    }

    /// The `q` quantile of time to first byte, as the upper bound of its
    /// bucket in microseconds (`None` without answers; `u64::MAX` past
    /// the last finite bound).
    pub fn ttfb_quantile(&self, q: f64) -> Option<u64> {
        let n: u64 = self.ttfb.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        self.ttfb.iter().zip(BOUNDS_US).find_map(|(&c, bound)| {
            seen += c;
            (seen >= rank).then_some(bound)
        })
    }
}

/// One ring of [`SLOTS`] per thread, made on its first record.
#[derive(Debug)]
pub struct Windows {
    rings: PerThread<Mutex<Option<Box<[Slot; SLOTS]>>>>,
    /// Records before this came from nobody: windows reaching back past
    /// it cover less time.
    since: Instant,
}

impl Default for Windows {
    fn default() -> Self {
        LazyLock::force(&BASE);
        Windows {
            rings: PerThread::default(),
            since: Instant::now(),
        }
    }
}

impl Windows {
    /// Counts an attempt that ended at `at`, with its time to first byte
    /// when it was answered.
    pub fn record(&self, at: Instant, kind: Kind, ttfb: Option<Duration>) {
        let epoch = epoch(at);
        let mut ring = self.rings.mine().lock().unwrap_or_else(|p| p.into_inner());
        let ring = ring.get_or_insert_with(|| Box::new([EMPTY; SLOTS]));
        let slot = &mut ring[(epoch % SLOTS as u64) as usize];
        if slot.epoch < epoch {
            *slot = Slot { epoch, ..EMPTY };
        }
        let count = &mut slot.counts[kind.index()];
        *count = count.saturating_add(1);
        if let Some(ttfb) = ttfb {
            let n = &mut slot.ttfb[bucket(ttfb)];
            *n = n.saturating_add(1);
        }
    }

    /// Whether anything was ever recorded here (a ring is made on a
    /// thread's first record).
    pub fn ever(&self) -> bool {
        self.rings
            .all()
            .any(|r| r.lock().unwrap_or_else(|p| p.into_inner()).is_some())
    }

    /// Each slot within the last `slots` slots up to `now` (the current
    /// one included), with its age in slots (0 for the current one).
    fn each(&self, now: Instant, slots: usize, mut add: impl FnMut(usize, &Slot)) {
        let now = epoch(now);
        let slots = slots.min(SLOTS) as u64;
        for ring in self.rings.all() {
            let ring = ring.lock().unwrap_or_else(|p| p.into_inner());
            let Some(ring) = ring.as_ref() else { continue };
            for s in ring.iter() {
                let age = now.wrapping_sub(s.epoch);
                if age < slots {
                    add(age as usize, s);
                }
            }
        }
    }

    /// The counts of the last `slots` slots up to `now`.
    pub fn tally(&self, now: Instant, slots: usize) -> Tally {
        let mut t = Tally {
            counts: [0; KINDS],
            ttfb: [0; BUCKETS],
        };
        self.each(now, slots, |_, s| {
            for (sum, n) in t.counts.iter_mut().zip(s.counts) {
                *sum += u64::from(n);
            }
            for (sum, n) in t.ttfb.iter_mut().zip(s.ttfb) {
                *sum += u64::from(n);
            }
        });
        t
    }

    /// Attempts and errors per slot over the whole ring, oldest first.
    pub fn series(&self, now: Instant) -> Vec<(u64, u64)> {
        let mut series = vec![(0, 0); SLOTS];
        self.each(now, SLOTS, |age, s| {
            let attempts: u64 = s.counts.iter().map(|&n| u64::from(n)).sum();
            let ok = u64::from(s.counts[0]) + u64::from(s.counts[1]);
            let i = SLOTS - 1 - age;
            series[i].0 += attempts;
            series[i].1 += attempts - ok;
        });
        series
    }

    /// How much time the last `slots` slots up to `now` really cover: from
    /// the oldest slot's start, or from when these windows were made.
    pub fn covered(&self, now: Instant, slots: usize) -> Duration {
        let slots = slots.min(SLOTS) as u64;
        let start_ms = (epoch(now) + 1).saturating_sub(slots) * SLOT_MS;
        let start = *BASE + Duration::from_millis(start_ms);
        now.saturating_duration_since(start.max(self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// An instant `slots` slots and `ms` past the base.
    fn at(slots: u64, ms: u64) -> Instant {
        *BASE + Duration::from_millis(slots * SLOT_MS + ms)
    }

    #[test]
    fn windows_count_what_falls_inside_them() {
        let w = Windows::default();
        assert!(!w.ever());
        let start = epoch(Instant::now()) + 1;
        w.record(at(start, 0), Kind::Ok, Some(3 * MS));
        assert!(w.ever());
        w.record(at(start + 3, 5), Kind::RateLimited, Some(MS));
        w.record(
            at(start + 5, 9_999),
            Kind::Failed(FailureKind::Connect),
            None,
        );
        let now = at(start + 5, 9_999);
        let one = w.tally(now, 6);
        assert_eq!(one.attempts(), 3);
        let two = w.tally(now, 2);
        assert_eq!(two.attempts(), 1, "only the last two slots");
        assert_eq!(two.count(Kind::Failed(FailureKind::Connect)), 1);
        assert_eq!(one.count(Kind::RateLimited), 1);
        assert_eq!(one.errors(), 2);
        let series = w.series(now);
        assert_eq!(series.len(), SLOTS);
        assert_eq!(series[SLOTS - 1], (1, 1));
        assert_eq!(series[SLOTS - 3], (1, 1));
        assert_eq!(series[SLOTS - 6], (1, 0));
        assert_eq!(series.iter().map(|s| s.0).sum::<u64>(), 3);
    }

    #[test]
    fn a_slot_is_cleared_when_its_time_comes_round_again() {
        let w = Windows::default();
        let start = epoch(Instant::now()) + 1;
        w.record(at(start, 0), Kind::Server, None);
        // The same ring slot, one lap later.
        let lap = at(start + SLOTS as u64, 0);
        w.record(lap, Kind::Ok, None);
        let t = w.tally(lap, SLOTS);
        assert_eq!((t.attempts(), t.errors()), (1, 0), "{t:?}");
        // A late record for an older lap adds to the newer slot rather
        // than clearing it.
        w.record(at(start, 1), Kind::Ok, None);
        assert_eq!(w.tally(lap, SLOTS).attempts(), 2);
    }

    #[test]
    fn every_thread_records_into_its_own_ring_and_reads_sum_them() {
        let w = Windows::default();
        let now = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        w.record(now, Kind::Ok, Some(MS));
                    }
                });
            }
        });
        let t = w.tally(now, 1);
        assert_eq!(t.attempts(), 12_000);
        assert_eq!(t.ttfb.iter().sum::<u64>(), 12_000);
    }

    #[test]
    fn quantiles_are_the_upper_bounds_of_their_buckets() {
        let w = Windows::default();
        let now = Instant::now();
        for _ in 0..98 {
            w.record(now, Kind::Ok, Some(2 * MS));
        }
        w.record(now, Kind::Ok, Some(900 * MS));
        w.record(now, Kind::Server, Some(Duration::from_secs(3_600)));
        let t = w.tally(now, 1);
        let p50 = t.ttfb_quantile(0.5).unwrap();
        assert!((2_000..2_900).contains(&p50), "{p50}");
        let p99 = t.ttfb_quantile(0.99).unwrap();
        assert!((900_000..1_300_000).contains(&p99), "{p99}");
        assert_eq!(t.ttfb_quantile(1.0), Some(u64::MAX));
        assert_eq!(w.tally(now, 1).count(Kind::Server), 1);
        assert_eq!(Windows::default().tally(now, 1).ttfb_quantile(0.5), None);
    }

    #[test]
    fn bounds_rise_by_about_the_square_root_of_two() {
        assert_eq!(&BOUNDS_US[..4], &[125, 176, 250, 353]);
        for pair in BOUNDS_US.windows(2) {
            assert!(pair[1] > pair[0]);
        }
        assert!(BOUNDS_US[BUCKETS - 2] > 1_000_000_000);
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(Duration::from_micros(126)), 1);
        assert_eq!(bucket(Duration::from_secs(3_600)), BUCKETS - 1);
    }

    #[test]
    fn young_windows_cover_only_the_time_they_have_lived() {
        let w = Windows::default();
        let soon = w.since + Duration::from_secs(3);
        assert_eq!(w.covered(soon, SLOTS), Duration::from_secs(3));
        let later = w.since + Duration::from_secs(3_600);
        let one_min = w.covered(later, 6);
        assert!(
            one_min > Duration::from_secs(50) && one_min <= Duration::from_secs(60),
            "{one_min:?}"
        );
    }
}
