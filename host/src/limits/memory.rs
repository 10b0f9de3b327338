//! The in-process limiter: one set of buckets per upstream and per client
//! key, behind one mutex (a reservation is a handful of float operations).

use super::bucket::{Bucket, Shortfall};
use super::{ClientKey, Denied, Grant, LimitSpec, Limiter, Reported, Reserving, Taken, Usage};
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
    fn new(spec: &LimitSpec, now: u64) -> Entry {
        let bucket = |v: Option<u64>| v.map(|c| Bucket::per_minute(c, now));
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

struct State {
    upstreams: Vec<Entry>,
    clients: HashMap<ClientKey, Entry>,
}

/// Limits enforced in this process alone.
pub struct MemoryLimiter {
    client_spec: LimitSpec,
    state: Mutex<State>,
}

impl MemoryLimiter {
    /// Buckets for each upstream's `specs`, and `client` for each client key.
    pub fn new(specs: &[LimitSpec], client: LimitSpec, now: u64) -> MemoryLimiter {
        MemoryLimiter {
            client_spec: client,
            state: Mutex::new(State {
                upstreams: specs.iter().map(|s| Entry::new(s, now)).collect(),
                clients: HashMap::new(),
            }),
        }
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
        upstream: u32,
        client: Option<&ClientKey>,
        charges: &[Charge],
        now: u64,
    ) -> Result<Grant, Denied> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(up) = st.upstreams.get_mut(upstream as usize) else {
            return Err(Denied::Busy);
        };
        let mut up_wants = wants(charges, LimitScope::Upstream);
        for w in &mut up_wants {
            w.1 = up.cost(w.0, w.1);
        }
        let client = client.filter(|_| self.client_spec.is_set());
        let mut client_wants = Vec::new();
        if let Some(key) = client {
            if !st.clients.contains_key(key) && st.clients.len() >= MAX_CLIENTS {
                st.clients.retain(|_, e| !e.idle(now));
            }
            let entry = st
                .clients
                .entry(*key)
                .or_insert_with(|| Entry::new(&self.client_spec, now));
            client_wants = wants(charges, LimitScope::Client);
            for w in &mut client_wants {
                w.1 = entry.cost(w.0, w.1);
            }
        }
        let up_fit = up.check(&up_wants, now);
        let client_entry = client.and_then(|k| st.clients.get_mut(k));
        let client_fit = client_entry.map_or(Ok(()), |e| e.check(&client_wants, now));
        match (up_fit, client_fit) {
            (Ok(()), Ok(())) => {}
            (Err(a), Err(b)) => return Err(worse(a, b)),
            (Err(d), _) | (_, Err(d)) => return Err(d),
        }
        let mut taken = Vec::with_capacity(up_wants.len() + client_wants.len());
        let up = &mut st.upstreams[upstream as usize];
        for (kind, amount) in up_wants {
            if up.take(kind, amount, now) {
                taken.push(Taken {
                    client: false,
                    kind,
                    amount,
                });
            }
        }
        if let Some(e) = client.and_then(|k| st.clients.get_mut(k)) {
            for (kind, amount) in client_wants {
                if e.take(kind, amount, now) {
                    taken.push(Taken {
                        client: true,
                        kind,
                        amount,
                    });
                }
            }
        }
        Ok(Grant {
            upstream,
            client: client.copied(),
            taken,
            shared: None,
        })
    }
}

impl Limiter for MemoryLimiter {
    fn reserve<'a>(
        &'a self,
        upstream: u32,
        client: Option<&'a ClientKey>,
        charges: &'a [Charge],
        now: u64,
    ) -> Reserving<'a> {
        Box::pin(std::future::ready(
            self.try_reserve(upstream, client, charges, now),
        ))
    }

    fn cancel(&self, grant: &Grant, now: u64) {
        self.settle_with(grant, now, |_| None);
    }

    fn settle(&self, grant: &Grant, usage: Usage, now: u64) {
        self.settle_with(grant, now, |t| usage.actual(t.kind, t.amount));
    }

    fn observe(&self, upstream: u32, kind: LimitKind, report: Reported, now: u64) {
        let mut st = self.lock();
        let Some(up) = st.upstreams.get_mut(upstream as usize) else {
            return;
        };
        let slot = match kind {
            LimitKind::Requests => &mut up.requests,
            LimitKind::InputTokens => &mut up.input,
            LimitKind::OutputTokens => &mut up.output,
            LimitKind::Concurrency => return,
        };
        match (slot.as_mut(), report.limit) {
            (Some(b), _) => b.correct(report.limit, report.remaining, now),
            (None, Some(limit)) if limit > 0 => {
                let mut b = Bucket::learned(limit, now);
                b.correct(None, report.remaining, now);
                *slot = Some(b);
            }
            (None, _) => {}
        }
    }

    fn close_until(&self, upstream: u32, until: u64) {
        let mut st = self.lock();
        let Some(up) = st.upstreams.get_mut(upstream as usize) else {
            return;
        };
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

    fn budgets(&self, upstream: u32, now: u64) -> Vec<Budget> {
        let mut st = self.lock();
        let Some(up) = st.upstreams.get_mut(upstream as usize) else {
            return Vec::new();
        };
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(4);
        for kind in [
            LimitKind::Requests,
            LimitKind::InputTokens,
            LimitKind::OutputTokens,
        ] {
            if let Some(b) = up.bucket(kind) {
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
        if let Some((max, used)) = up.concurrency {
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
        for t in &grant.taken {
            let entry = if t.client {
                grant.client.as_ref().and_then(|k| st.clients.get_mut(k))
            } else {
                st.upstreams.get_mut(grant.upstream as usize)
            };
            if let Some(e) = entry {
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
