//! Which upstreams can take a request now, and in what order to try them.

use crate::backoff::mix64;
use crate::types::{Circuit, Health, LimitKind, TimestampMs, UpstreamView, View};

/// Where an upstream stands at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// Can take a request now.
    Available,
    /// Answered 529 recently; free again at `until`.
    Overloaded {
        /// When it is free again.
        until: TimestampMs,
    },
    /// Closed by a `retry-after` or an exhausted request budget (and maybe
    /// overloaded as well); free again at `until`.
    RateLimited {
        /// When every restriction has lapsed.
        until: TimestampMs,
    },
    /// Failing its health checks; no known recovery time.
    Unhealthy,
    /// Ejected by the circuit breaker.
    Open,
}

/// Classifies `u` at `now`. A request budget with nothing remaining and a
/// reset in the future counts as rate-limited until the reset.
pub(super) fn standing(u: &UpstreamView, now: TimestampMs) -> Standing {
    if u.circuit == Circuit::Open {
        return Standing::Open;
    }
    if u.health == Health::Unhealthy {
        return Standing::Unhealthy;
    }
    let future = |t: Option<TimestampMs>| t.filter(|&t| t > now);
    let exhausted = u
        .budgets
        .iter()
        .filter(|b| b.kind == LimitKind::Requests && b.remaining == 0)
        .filter_map(|b| future(b.reset_at))
        .max();
    let limited = future(u.rate_limited_until).max(exhausted);
    let overloaded = future(u.overloaded_until);
    match (limited, overloaded) {
        (Some(l), o) => Standing::RateLimited {
            until: l.max(o.unwrap_or(0)),
        },
        (None, Some(until)) => Standing::Overloaded { until },
        (None, None) => Standing::Available,
    }
}

/// The upstream with this id (the first, should the view repeat an id).
pub(super) fn find(view: &View, id: u32) -> Option<&UpstreamView> {
    view.upstreams.iter().find(|u| u.id == id)
}

/// The upstreams a request could go to, best first.
#[derive(Debug)]
pub(super) struct Ranking {
    /// Distinct upstream ids: available ones, then overloaded, then
    /// rate-limited (soonest free first), then unhealthy. Open circuits
    /// only when every upstream is open ("panic mode").
    pub order: Vec<u32>,
    /// Whether any upstream is available now.
    pub any_available: bool,
    /// The soonest time a rate-limited or overloaded upstream is free.
    pub soonest: Option<TimestampMs>,
}

/// Ranks the view's upstreams at `view.now`.
///
/// Each tier is ordered by group (lowest first), non-slow before slow, then
/// in a weighted random order drawn from `view.random` (weight 0 last).
/// Rate-limited and overloaded upstreams instead sort by when they are
/// free, then by group.
///
/// One pass classifies the upstreams into a scratch array (on the stack for
/// up to [`INLINE`] upstreams), one stable sort puts them in tier order, and
/// the weighted shuffles run in place; the only allocation is the order.
pub(super) fn rank(view: &View) -> Ranking {
    let n = view.upstreams.len();
    let mut inline = [Entry::default(); INLINE];
    let mut heap = Vec::new();
    let scratch: &mut [Entry] = if n <= INLINE {
        &mut inline[..n]
    } else {
        heap.resize(n, Entry::default());
        &mut heap
    };
    let mut len = 0;
    let (mut open, mut any_available, mut soonest) = (0, false, None::<TimestampMs>);
    for u in &view.upstreams {
        if scratch[..len].iter().any(|e| e.id == u.id) {
            continue;
        }
        let (tier, until) = match standing(u, view.now) {
            Standing::Available => (Tier::Available, 0),
            Standing::Overloaded { until } => (Tier::Overloaded, until),
            Standing::RateLimited { until } => (Tier::RateLimited, until),
            Standing::Unhealthy => (Tier::Unhealthy, 0),
            Standing::Open => (Tier::Open, 0),
        };
        match tier {
            Tier::Available => any_available = true,
            Tier::Overloaded | Tier::RateLimited => {
                soonest = Some(soonest.map_or(until, |s| s.min(until)));
            }
            Tier::Open => open += 1,
            Tier::Unhealthy => {}
        }
        scratch[len] = Entry::new(u, tier, until);
        len += 1;
    }
    // Open circuits take part only when every upstream is open.
    let panic_mode = open == len;
    let entries = &mut scratch[..len];
    entries.sort_by_key(|e| e.key(panic_mode));
    let kept = if panic_mode { len } else { len - open };
    let entries = &mut entries[..kept];
    let mut draws = Draws(view.random);
    let mut start = 0;
    while let Some(&first) = entries.get(start) {
        let end = start
            + entries[start..]
                .iter()
                .take_while(|e| e.same_run(&first))
                .count();
        if first.shuffled() {
            weighted_shuffle(&mut entries[start..end], &mut draws);
        }
        start = end;
    }
    Ranking {
        order: entries.iter().map(|e| e.id).collect(),
        any_available,
        soonest,
    }
}

/// Upstreams ranked without a heap allocation for scratch space.
const INLINE: usize = 16;

/// Where an upstream falls in the order, best first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    #[default]
    Available,
    Overloaded,
    RateLimited,
    Unhealthy,
    Open,
}

/// One distinct upstream being ranked.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    tier: Tier,
    /// When an overloaded or rate-limited upstream is free; 0 otherwise.
    until: TimestampMs,
    group: u8,
    slow: bool,
    weight: u16,
    id: u32,
}

impl Entry {
    fn new(u: &UpstreamView, tier: Tier, until: TimestampMs) -> Entry {
        Entry {
            tier,
            until,
            group: u.group,
            slow: u.slow,
            weight: u.weight,
            id: u.id,
        }
    }

    /// Whether its tier is put in weighted random order (rather than by
    /// when it is free).
    fn shuffled(&self) -> bool {
        matches!(self.tier, Tier::Available | Tier::Unhealthy | Tier::Open)
    }

    /// The sort key: the tier (open circuits last, and in panic mode as if
    /// available), then by when it is free and group, or by group, non-slow
    /// first and weight 0 last. The sort is stable, so ties keep the view's
    /// order.
    fn key(&self, panic_mode: bool) -> (Tier, TimestampMs, u8, bool, bool) {
        let tier = match self.tier {
            Tier::Open if panic_mode => Tier::Available,
            t => t,
        };
        if self.shuffled() {
            (tier, 0, self.group, self.slow, self.weight == 0)
        } else {
            (tier, self.until, self.group, false, false)
        }
    }

    /// Whether `self` is in the same run as `first`: same tier and, for
    /// shuffled tiers, the same group and slowness.
    fn same_run(&self, first: &Entry) -> bool {
        self.tier == first.tier
            && (!first.shuffled() || (self.group, self.slow) == (first.group, first.slow))
    }
}

/// The next upstream after `failed` in `order` (wrapping around, never
/// `failed` itself) that is available in `view`.
pub(super) fn alternative(order: &[u32], failed: u32, view: &View) -> Option<u32> {
    let start = order
        .iter()
        .position(|&id| id == failed)
        .map_or(0, |i| i + 1);
    (0..order.len())
        .map(|k| order[(start + k) % order.len()])
        .find(|&id| {
            id != failed
                && find(view, id).is_some_and(|u| standing(u, view.now) == Standing::Available)
        })
}

/// Puts `run` (one group and slowness of one tier, weight-0 upstreams
/// already last) in weighted random order without replacement: each pick
/// has probability proportional to weight among those left, and those left
/// keep their order. Weight-0 upstreams stay last in their given order.
fn weighted_shuffle(run: &mut [Entry], draws: &mut Draws) {
    let positive = run.iter().take_while(|e| e.weight > 0).count();
    let mut total: u64 = run[..positive].iter().map(|e| u64::from(e.weight)).sum();
    for i in 0..positive {
        let left = &mut run[i..positive];
        let mut point = draws.below(total);
        let mut pick = left.len() - 1;
        for (j, e) in left.iter().enumerate() {
            let w = u64::from(e.weight);
            if point < w {
                pick = j;
                break;
            }
            point -= w;
        }
        total -= u64::from(left[pick].weight);
        left[..=pick].rotate_right(1);
    }
}

/// A deterministic stream of draws derived from one random value
/// (splitmix64).
struct Draws(u64);

impl Draws {
    /// A draw from `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        let x = mix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        ((u128::from(x) * u128::from(n)) >> 64) as u64
    }
}
