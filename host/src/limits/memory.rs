//! The in-process limiter: one set of buckets per (upstream, model class)
//! and per (client key, model class), and concurrency per upstream and per
//! client, behind one mutex (a reservation is a handful of float
//! operations).

use super::bucket::{Bucket, Ramp, Shortfall};
use super::{
    Class, ClientKey, Denied, Grant, Lane, LimitSpec, Limiter, Reported, Reserving, ScopeLimits,
    Taken, Usage,
};
use crate::core::{Budget, Charge, LimitKind, LimitScope};
use std::collections::HashMap;
use std::sync::Mutex;

/// Client entries kept before idle ones are dropped.
const MAX_CLIENTS: usize = 10_000;

/// The buckets of one scope.
#[derive(Debug, Default)]
struct Entry {
    requests: Option<Bucket>,
    input: Option<Bucket>,
    output: Option<Bucket>,
    /// (limit, in use)
    concurrency: Option<(u32, u32)>,
}

impl Entry {
    fn new(spec: &LimitSpec, ramp: Ramp, now: u64) -> Entry {
        let bucket = |v: Option<u64>| v.map(|c| Bucket::per_minute(c, now).ramping(ramp));
        Entry {
            requests: bucket(spec.requests_per_minute),
            input: bucket(spec.input_tokens_per_minute),
            output: bucket(spec.output_tokens_per_minute),
            concurrency: spec.max_concurrency.map(|m| (m, 0)),
        }
    }

    fn bucket(&mut self, kind: LimitKind) -> Option<&mut Bucket> {
        match kind {
            LimitKind::Requests => self.requests.as_mut(),
            LimitKind::InputTokens => self.input.as_mut(),
            LimitKind::OutputTokens => self.output.as_mut(),
            LimitKind::Concurrency => None,
        }
    }

    /// What `amount` of `kind` would really take: token charges are
    /// estimates (input from the body, output from `max_tokens`), so one
    /// above the capacity is capped to it and the upstream decides: an
    /// estimate never makes a request "never admissible".
    fn cost(&mut self, kind: LimitKind, amount: u64) -> u64 {
        let bucket = match kind {
            LimitKind::InputTokens => self.input.as_ref(),
            LimitKind::OutputTokens => self.output.as_ref(),
            _ => None,
        };
        bucket.map_or(amount, |b| amount.min(b.capacity()))
    }

    /// Whether every `(kind, amount)` fits at `now`.
    fn check(&mut self, wants: &[(LimitKind, u64)], now: u64) -> Result<(), Denied> {
        let mut until = None::<u64>;
        for &(kind, amount) in wants {
            if kind == LimitKind::Concurrency {
                if let Some((max, used)) = self.concurrency
                    && u64::from(used) + amount > u64::from(max)
                {
                    return Err(if amount > u64::from(max) {
                        Denied::Never(kind)
                    } else {
                        Denied::Busy
                    });
                }
                continue;
            }
            let Some(b) = self.bucket(kind) else { continue };
            match b.check(amount, now) {
                Ok(()) => {}
                Err(Shortfall::Never) => return Err(Denied::Never(kind)),
                Err(Shortfall::Until(t)) => until = Some(until.map_or(t, |u| u.max(t))),
            }
        }
        until.map_or(Ok(()), |t| Err(Denied::Until(t)))
    }

    fn take(&mut self, kind: LimitKind, amount: u64, now: u64) -> bool {
        if kind == LimitKind::Concurrency {
            if let Some((_, used)) = self.concurrency.as_mut() {
                *used += amount as u32;
                return true;
            }
            return false;
        }
        match self.bucket(kind) {
            // A request counts when sent; tokens are estimates until the
            // response tells.
            Some(b) if kind == LimitKind::Requests => {
                b.take(amount, now);
                true
            }
            Some(b) => {
                b.hold(amount, now);
                true
            }
            None => false,
        }
    }

    fn give_back(&mut self, t: &Taken, actual: Option<u64>, now: u64) {
        if t.kind == LimitKind::Concurrency {
            if let Some((_, used)) = self.concurrency.as_mut() {
                *used = used.saturating_sub(t.amount as u32);
            }
        } else if let Some(b) = self.bucket(t.kind) {
            match (t.kind, actual) {
                (LimitKind::Requests, Some(_)) => {}
                (LimitKind::Requests, None) => b.refund(t.amount, now),
                (_, actual) => b.settle(t.amount, actual.unwrap_or(0), now),
            }
        }
    }

    fn idle(&mut self, now: u64) -> bool {
        self.concurrency.is_none_or(|(_, used)| used == 0)
            && [&mut self.requests, &mut self.input, &mut self.output]
                .into_iter()
                .flatten()
                .all(|b| b.full_at(now).is_none())
    }
}

/// One scope's buckets: an upstream's, or a client's. Rates are kept per
/// model class, each lane made when first used; concurrency is the
/// scope's as a whole.
#[derive(Debug, Default)]
struct Scope {
    /// Concurrency only.
    wide: Entry,
    /// Rates, by class.
    lanes: Vec<Option<Entry>>,
}

impl Scope {
    fn new(limits: &ScopeLimits, now: u64) -> Scope {
        let wide = LimitSpec {
            max_concurrency: limits.concurrency(),
            ..LimitSpec::default()
        };
        Scope {
            wide: Entry::new(&wide, Ramp::OFF, now),
            lanes: Vec::new(),
        }
    }

    /// `class`'s rates, made from `limits` (ramping by `ramp`) when first
    /// used.
    fn lane(&mut self, limits: &ScopeLimits, class: Class, ramp: Ramp, now: u64) -> &mut Entry {
        let i = usize::from(class);
        if self.lanes.len() <= i {
            self.lanes.resize_with(i + 1, || None);
        }
        self.lanes[i].get_or_insert_with(|| Entry::new(&limits.rates(class), ramp, now))
    }

    /// The entry that keeps `kind` for `class`, if made.
    fn entry(&mut self, class: Class, kind: LimitKind) -> Option<&mut Entry> {
        if kind == LimitKind::Concurrency {
            return Some(&mut self.wide);
        }
        self.lanes.get_mut(usize::from(class))?.as_mut()
    }

    /// Whether every `(kind, amount)` fits at `now`, with token charges
    /// capped to their bucket's capacity ([`Entry::cost`]) in place.
    fn check(
        &mut self,
        (limits, ramp): (&ScopeLimits, Ramp),
        class: Class,
        wants: &mut [(LimitKind, u64)],
        now: u64,
    ) -> Result<(), Denied> {
        let lane = self.lane(limits, class, ramp, now);
        for w in wants.iter_mut() {
            w.1 = lane.cost(w.0, w.1);
        }
        // A lane keeps no concurrency and the wide entry no rates: each
        // checks what it keeps and passes over the rest.
        let fit = self.lane(limits, class, ramp, now).check(wants, now);
        match (fit, self.wide.check(wants, now)) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(worse(a, b)),
            (Err(d), _) | (_, Err(d)) => Err(d),
        }
    }

    fn idle(&mut self, now: u64) -> bool {
        self.wide.idle(now) && self.lanes.iter_mut().flatten().all(|e| e.idle(now))
    }
}

struct State {
    upstreams: Vec<Scope>,
    clients: HashMap<ClientKey, Scope>,
}

/// Limits enforced in this process alone.
pub struct MemoryLimiter {
    ramp: Ramp,
    specs: Vec<ScopeLimits>,
    client_spec: ScopeLimits,
    state: Mutex<State>,
}

impl MemoryLimiter {
    /// Buckets for each upstream's `specs`, alike for every class, and
    /// `client` for each client key.
    pub fn new(specs: &[LimitSpec], client: LimitSpec, now: u64) -> MemoryLimiter {
        let specs: Vec<_> = specs.iter().map(|s| ScopeLimits::uniform(*s)).collect();
        MemoryLimiter::scoped(&specs, ScopeLimits::uniform(client), now)
    }

    /// Buckets for each upstream's `specs`, and `client` for each client
    /// key, with their classes' own rates.
    pub fn scoped(specs: &[ScopeLimits], client: ScopeLimits, now: u64) -> MemoryLimiter {
        MemoryLimiter {
            state: Mutex::new(State {
                upstreams: specs.iter().map(|s| Scope::new(s, now)).collect(),
                clients: HashMap::new(),
            }),
            specs: specs.to_vec(),
            client_spec: client,
            ramp: Ramp::OFF,
        }
    }

    /// The same limiter, its rate buckets coming back after idle by
    /// `ramp` (see [`Ramp`]).
    pub fn with_ramp(mut self, ramp: Ramp) -> MemoryLimiter {
        self.ramp = ramp;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sums the charges of one scope by kind.
pub(super) fn wants(charges: &[Charge], scope: LimitScope) -> Vec<(LimitKind, u64)> {
    let mut out: Vec<(LimitKind, u64)> = Vec::with_capacity(4);
    for c in charges.iter().filter(|c| c.scope == scope && c.amount > 0) {
        match out.iter_mut().find(|(k, _)| *k == c.kind) {
            Some((_, a)) => *a += u64::from(c.amount),
            None => out.push((c.kind, u64::from(c.amount))),
        }
    }
    out
}

impl MemoryLimiter {
    /// [`Limiter::reserve`], at once.
    pub fn try_reserve(
        &self,
        lane: Lane,
        client: Option<&ClientKey>,
        charges: &[Charge],
        now: u64,
    ) -> Result<Grant, Denied> {
        let mut st = self.lock();
        let st = &mut *st;
        let (Some(up), Some(up_spec)) = (
            st.upstreams.get_mut(lane.upstream as usize),
            self.specs.get(lane.upstream as usize),
        ) else {
            return Err(Denied::Busy);
        };
        let class = lane.class;
        let mut up_wants = wants(charges, LimitScope::Upstream);
        let up_fit = up.check((up_spec, self.ramp), class, &mut up_wants, now);
        let client = client.filter(|_| self.client_spec.is_set());
        let mut client_wants = Vec::new();
        let mut client_fit = Ok(());
        if let Some(key) = client {
            if !st.clients.contains_key(key) && st.clients.len() >= MAX_CLIENTS {
                st.clients.retain(|_, e| !e.idle(now));
            }
            let scope = st
                .clients
                .entry(*key)
                .or_insert_with(|| Scope::new(&self.client_spec, now));
            client_wants = wants(charges, LimitScope::Client);
            let spec = (&self.client_spec, self.ramp);
            client_fit = scope.check(spec, class, &mut client_wants, now);
        }
        match (up_fit, client_fit) {
            (Ok(()), Ok(())) => {}
            (Err(a), Err(b)) => return Err(worse(a, b)),
            (Err(d), _) | (_, Err(d)) => return Err(d),
        }
        let mut taken = Vec::with_capacity(up_wants.len() + client_wants.len());
        let scopes = [
            (
                false,
                st.upstreams.get_mut(lane.upstream as usize),
                up_wants,
            ),
            (
                true,
                client.and_then(|k| st.clients.get_mut(k)),
                client_wants,
            ),
        ];
        for (is_client, scope, wants) in scopes {
            let Some(scope) = scope else { continue };
            for (kind, amount) in wants {
                if scope
                    .entry(class, kind)
                    .is_some_and(|e| e.take(kind, amount, now))
                {
                    taken.push(Taken {
                        client: is_client,
                        kind,
                        amount,
                    });
                }
            }
        }
        Ok(Grant {
            lane,
            client: client.copied(),
            taken,
            shared: None,
        })
    }
}

impl Limiter for MemoryLimiter {
    fn reserve<'a>(
        &'a self,
        lane: Lane,
        client: Option<&'a ClientKey>,
        charges: &'a [Charge],
        now: u64,
    ) -> Reserving<'a> {
        Box::pin(std::future::ready(
            self.try_reserve(lane, client, charges, now),
        ))
    }

    fn cancel(&self, grant: &Grant, now: u64) {
        self.settle_with(grant, now, |_| None);
    }

    fn settle(&self, grant: &Grant, usage: Usage, now: u64) {
        self.settle_with(grant, now, |t| usage.actual(t.kind, t.amount));
    }

    fn observe(&self, lane: Lane, kind: LimitKind, report: Reported, now: u64) {
        let mut st = self.lock();
        let (Some(up), Some(spec)) = (
            st.upstreams.get_mut(lane.upstream as usize),
            self.specs.get(lane.upstream as usize),
        ) else {
            return;
        };
        let up = up.lane(spec, lane.class, self.ramp, now);
        let slot = match kind {
            LimitKind::Requests => &mut up.requests,
            LimitKind::InputTokens => &mut up.input,
            LimitKind::OutputTokens => &mut up.output,
            LimitKind::Concurrency => return,
        };
        match (slot.as_mut(), report.limit) {
            (Some(b), _) => b.correct(report.limit, report.remaining, now),
            (None, Some(limit)) if limit > 0 => {
                let mut b = Bucket::learned(limit, now).ramping(self.ramp);
                b.correct(None, report.remaining, now);
                *slot = Some(b);
            }
            (None, _) => {}
        }
    }

    fn close_until(&self, lane: Lane, until: u64) {
        let mut st = self.lock();
        let (Some(up), Some(spec)) = (
            st.upstreams.get_mut(lane.upstream as usize),
            self.specs.get(lane.upstream as usize),
        ) else {
            return;
        };
        let up = up.lane(spec, lane.class, self.ramp, 0);
        match up.requests.as_mut() {
            Some(b) => b.close_until(until),
            // An upstream without a request limit still closes: a generous
            // bucket that only the close constrains.
            None => {
                let mut b = Bucket::learned(u64::from(u32::MAX), 0);
                b.close_until(until);
                up.requests = Some(b);
            }
        }
    }

    fn budgets(&self, lane: Lane, now: u64) -> Vec<Budget> {
        let mut st = self.lock();
        let Some(up) = st.upstreams.get_mut(lane.upstream as usize) else {
            return Vec::new();
        };
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(4);
        let kinds = [
            LimitKind::Requests,
            LimitKind::InputTokens,
            LimitKind::OutputTokens,
        ];
        for kind in kinds {
            // A lane not used yet has its configured buckets, full.
            let b = match up.entry(lane.class, kind) {
                Some(e) => e.bucket(kind).cloned(),
                None => {
                    let spec = self.specs[lane.upstream as usize].rates(lane.class);
                    Entry::new(&spec, self.ramp, now).bucket(kind).cloned()
                }
            };
            if let Some(mut b) = b {
                let remaining = b.available(now);
                // Spent: when the next unit fits (the policy reads that as
                // "free again"); otherwise when the bucket is full.
                let reset_at = match (remaining, b.check(1, now)) {
                    (0, Err(Shortfall::Until(t))) => Some(t),
                    _ => b.full_at(now),
                };
                out.push(Budget {
                    kind,
                    remaining: clamp(remaining),
                    limit: clamp(b.capacity()),
                    reset_at,
                });
            }
        }
        if let Some((max, used)) = up.wide.concurrency {
            out.push(Budget {
                kind: LimitKind::Concurrency,
                remaining: max.saturating_sub(used),
                limit: max,
                reset_at: None,
            });
        }
        out
    }
}

impl MemoryLimiter {
    fn settle_with(&self, grant: &Grant, now: u64, actual: impl Fn(&Taken) -> Option<u64>) {
        let mut st = self.lock();
        let st = &mut *st;
        let class = grant.lane.class;
        for t in &grant.taken {
            let scope = if t.client {
                grant.client.as_ref().and_then(|k| st.clients.get_mut(k))
            } else {
                st.upstreams.get_mut(grant.lane.upstream as usize)
            };
            if let Some(e) = scope.and_then(|s| s.entry(class, t.kind)) {
                e.give_back(t, actual(t), now);
            }
        }
    }
}

/// Of two refusals, the one that binds longer.
fn worse(a: Denied, b: Denied) -> Denied {
    match (a, b) {
        (Denied::Never(k), _) | (_, Denied::Never(k)) => Denied::Never(k),
        (Denied::Unavailable, _) | (_, Denied::Unavailable) => Denied::Unavailable,
        (Denied::Until(x), Denied::Until(y)) => Denied::Until(x.max(y)),
        (Denied::Busy, _) | (_, Denied::Busy) => Denied::Busy,
    }
}

#[cfg(test)]
mod tests;
