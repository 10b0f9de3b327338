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
pub(super) fn rank(view: &View) -> Ranking {
    let mut seen = Vec::with_capacity(view.upstreams.len());
    let mut available = Vec::new();
    let mut overloaded = Vec::new();
    let mut limited = Vec::new();
    let mut unhealthy = Vec::new();
    let mut open = Vec::new();
    for u in &view.upstreams {
        if seen.contains(&u.id) {
            continue;
        }
        seen.push(u.id);
        match standing(u, view.now) {
            Standing::Available => available.push(u),
            Standing::Overloaded { until } => overloaded.push((until, u)),
            Standing::RateLimited { until } => limited.push((until, u)),
            Standing::Unhealthy => unhealthy.push(u),
            Standing::Open => open.push(u),
        }
    }
    let soonest = overloaded.iter().chain(&limited).map(|&(t, _)| t).min();
    let any_available = !available.is_empty();
    let mut draws = Draws(view.random);
    let mut order = Vec::with_capacity(seen.len());
    if open.len() == seen.len() {
        order.extend(arrange(open, &mut draws));
    } else {
        order.extend(arrange(available, &mut draws));
        for mut tier in [overloaded, limited] {
            tier.sort_by_key(|&(until, u)| (until, u.group));
            order.extend(tier.iter().map(|(_, u)| u.id));
        }
        order.extend(arrange(unhealthy, &mut draws));
    }
    Ranking {
        order,
        any_available,
        soonest,
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

/// Orders one tier: by group, non-slow first, then weighted random.
fn arrange(mut tier: Vec<&UpstreamView>, draws: &mut Draws) -> Vec<u32> {
    tier.sort_by_key(|u| (u.group, u.slow));
    let mut order = Vec::with_capacity(tier.len());
    for run in tier.chunk_by(|a, b| (a.group, a.slow) == (b.group, b.slow)) {
        weighted_shuffle(run, draws, &mut order);
    }
    order
}

/// Appends `run`'s ids in weighted random order without replacement: each
/// pick has probability proportional to weight among those left. Weight-0
/// upstreams follow in their given order.
fn weighted_shuffle(run: &[&UpstreamView], draws: &mut Draws, out: &mut Vec<u32>) {
    let mut left: Vec<&UpstreamView> = run.iter().copied().filter(|u| u.weight > 0).collect();
    while !left.is_empty() {
        let total: u64 = left.iter().map(|u| u64::from(u.weight)).sum();
        let mut point = draws.below(total);
        let mut pick = left.len() - 1;
        for (i, u) in left.iter().enumerate() {
            let w = u64::from(u.weight);
            if point < w {
                pick = i;
                break;
            }
            point -= w;
        }
        out.push(left.remove(pick).id);
    }
    out.extend(run.iter().filter(|u| u.weight == 0).map(|u| u.id));
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
