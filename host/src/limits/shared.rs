//! Budgets shared by several levee processes through Redis.
//!
//! A reservation is one round trip: the script applies the settlements
//! this process queued since its last call, then reserves, atomically.
//! Settlements, header corrections and 429 closes never wait: they are
//! queued and ride along with the next reservation, or with the flusher
//! that runs every [`FLUSH_EVERY`] when the process is idle.
//!
//! What is shared: the configured limits of each upstream and client key.
//! What stays per process: limits learned from the upstream's headers when
//! none is configured (each process learns them from its own responses).
//!
//! While Redis cannot be reached, admission falls back to local limits
//! scaled down by the replica count (fail-open) or refuses (fail-closed).
//! The switch and the recovery are each logged once and counted.

use super::bucket::Ramp;
use super::memory::{MemoryLimiter, wants};
use super::redis::{Answer, Ask, Op, Seat, Want, Wire};
use super::{
    Classes, ClientKey, Denied, Grant, Lane, LimitSpec, Limiter, Reported, Reserving, ScopeLimits,
    Usage,
};
use crate::config::{OnFailure, RedisLimits};
use crate::core::{Budget, Charge, LimitKind, LimitScope};
use crate::telemetry::limits::LimitMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often queued settlements are sent when no reservation carries them,
/// and how often a lost Redis is tried again.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How long a concurrency lease lives unless renewed: a process that dies
/// holding places gives them back after this.
const LEASE_TTL_MS: u64 = 30_000;
/// Queued operations kept while Redis is away; the oldest go first.
const MAX_PENDING: usize = 100_000;

/// What a live shared grant holds in Redis, to settle it.
struct Lease {
    /// (key, configured capacity, kind, amount) per bucket.
    buckets: Vec<(String, u64, LimitKind, u64)>,
    /// Concurrency lease sets and their member ids.
    seats: Vec<(String, Vec<String>)>,
}

/// A [`Limiter`] over Redis with a local fallback.
pub struct SharedLimiter {
    wire: Wire,
    prefix: String,
    on_failure: OnFailure,
    specs: Vec<ScopeLimits>,
    names: Vec<String>,
    classes: Classes,
    client_spec: ScopeLimits,
    /// Limits learned from headers, enforced per process while Redis is up.
    learned: MemoryLimiter,
    /// The configured limits scaled to this process's share, while it is
    /// away (fail-open).
    fallback: MemoryLimiter,
    up: AtomicBool,
    pending: Mutex<Vec<Op>>,
    leases: Mutex<HashMap<u64, Lease>>,
    /// This process's part of every lease id.
    process: String,
    next_lease: AtomicU64,
    metrics: LimitMetrics,
}

impl SharedLimiter {
    /// A limiter for the upstreams `names` with limits `specs`, per model
    /// class of `classes`, sharing through `redis`, and its flusher task
    /// (which ends with it). The in-process buckets (learned limits, the
    /// fallback) come back after idle by `ramp`; the shared ones do not.
    pub fn start(
        redis: &RedisLimits,
        names: &[String],
        specs: &[ScopeLimits],
        client: ScopeLimits,
        (classes, ramp): (&Classes, Ramp),
        metrics: LimitMetrics,
        now: u64,
    ) -> anyhow::Result<Arc<SharedLimiter>> {
        let wire = Wire::new(redis.url.expose(), redis.timeout)
            .map_err(|e| anyhow::anyhow!("limits.redis.url: {e}"))?;
        let share = |s: &ScopeLimits| s.map(|s| scale(s, redis.replicas));
        let fallback: Vec<ScopeLimits> = specs.iter().map(share).collect();
        let limiter = Arc::new(SharedLimiter {
            wire,
            prefix: redis.key_prefix.clone(),
            on_failure: redis.on_failure,
            specs: specs.to_vec(),
            names: names.to_vec(),
            classes: classes.clone(),
            learned: MemoryLimiter::new(
                &vec![LimitSpec::default(); specs.len()],
                LimitSpec::default(),
                now,
            )
            .with_ramp(ramp),
            fallback: MemoryLimiter::scoped(&fallback, share(&client), now).with_ramp(ramp),
            client_spec: client,
            up: AtomicBool::new(true),
            pending: Mutex::new(Vec::new()),
            leases: Mutex::new(HashMap::new()),
            process: format!("{:016x}", fastrand::u64(..)),
            next_lease: AtomicU64::new(1),
            metrics,
        });
        limiter.metrics.backend("redis");
        tokio::spawn(flusher(Arc::downgrade(&limiter)));
        Ok(limiter)
    }

    /// The key of a `rate` bucket (`what`, a kind, in `lane`'s class) or
    /// of a concurrency lease set (the whole scope's): all in one hash slot.
    fn key(&self, client: Option<&ClientKey>, lane: Lane, rate: bool, what: &str) -> String {
        let scope = match client {
            Some(c) => format!("c:{c}"),
            None => {
                let name = self
                    .names
                    .get(lane.upstream as usize)
                    .map_or("?", String::as_str);
                format!("u:{name}")
            }
        };
        match rate {
            true => {
                let class = self.classes.name(lane.class);
                format!("{{{}}}:{scope}:{class}:{what}", self.prefix)
            }
            false => format!("{{{}}}:{scope}:{what}", self.prefix),
        }
    }

    /// The configured limits of `lane`'s upstream.
    fn spec(&self, lane: Lane) -> ScopeLimits {
        self.specs
            .get(lane.upstream as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// The shared part of a reservation, and what to remember of it.
    fn ask(
        &self,
        id: &str,
        lane: Lane,
        client: Option<&ClientKey>,
        charges: &[Charge],
    ) -> (Ask, Lease) {
        let mut ask = Ask {
            id: id.to_owned(),
            ttl: LEASE_TTL_MS,
            b: Vec::new(),
            z: Vec::new(),
        };
        let up_spec = self.spec(lane);
        let client = client.filter(|_| self.client_spec.is_set());
        let scopes = [
            (LimitScope::Upstream, None, &up_spec),
            (LimitScope::Client, client, &self.client_spec),
        ];
        for (scope, key, spec) in scopes {
            if scope == LimitScope::Client && key.is_none() {
                continue;
            }
            let rates = spec.rates(lane.class);
            for (kind, n) in wants(charges, scope) {
                if kind == LimitKind::Concurrency {
                    if let Some(max) = spec.concurrency() {
                        ask.z.push(Seat {
                            k: self.key(key, lane, false, "concurrency"),
                            max: u64::from(max),
                            n,
                        });
                    }
                } else if let Some(cap) = capacity(&rates, kind) {
                    ask.b.push(Want {
                        k: self.key(key, lane, true, kind_name(kind)),
                        cap,
                        n,
                        hold: kind != LimitKind::Requests,
                        cap_to_capacity: matches!(
                            kind,
                            LimitKind::InputTokens | LimitKind::OutputTokens
                        ),
                        kind: kind_name(kind),
                    });
                }
            }
        }
        let lease = Lease {
            buckets: Vec::new(),
            seats: ask
                .z
                .iter()
                .map(|s| {
                    (
                        s.k.clone(),
                        (1..=s.n).map(|j| format!("{id}:{j}")).collect(),
                    )
                })
                .collect(),
        };
        (ask, lease)
    }

    fn queue(&self, ops: impl IntoIterator<Item = Op>) {
        let mut pending = lock(&self.pending);
        pending.extend(ops);
        if pending.len() > MAX_PENDING {
            let excess = pending.len() - MAX_PENDING;
            pending.drain(..excess);
        }
    }

    fn take_pending(&self) -> Vec<Op> {
        std::mem::take(&mut *lock(&self.pending))
    }

    /// Puts `ops` back in front, after a call that failed.
    fn requeue(&self, mut ops: Vec<Op>) {
        let mut pending = lock(&self.pending);
        ops.append(&mut pending);
        *pending = ops;
    }

    /// One call to Redis; a failure switches to the fallback (once).
    async fn call(&self, ask: Option<&Ask>) -> Option<Answer> {
        let ops = self.take_pending();
        match self.wire.call(&ops, ask).await {
            Ok(answer) => {
                self.came_back();
                Some(answer)
            }
            Err(e) => {
                self.requeue(ops);
                self.went_away(&e);
                None
            }
        }
    }

    fn went_away(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            let mode = match self.on_failure {
                OnFailure::Open => "fallback",
                OnFailure::Closed => "refusing",
            };
            tracing::warn!(
                target: "levee::limits",
                error = why,
                mode,
                "the shared limiter (Redis) cannot be reached; {}",
                match self.on_failure {
                    OnFailure::Open => "admitting under this process's share of the limits",
                    OnFailure::Closed => "refusing admission until it is back",
                }
            );
            self.metrics.switched(mode, why);
        }
    }

    fn came_back(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(target: "levee::limits", "the shared limiter (Redis) is back; shared limits apply again");
            self.metrics.switched("redis", "Redis answers again");
        }
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Reserves in Redis on top of the learned limits' `local` grant.
    async fn reserve_shared(
        &self,
        lane: Lane,
        client: Option<&ClientKey>,
        charges: &[Charge],
        mut local: Grant,
    ) -> Option<Result<Grant, Denied>> {
        let n = self.next_lease.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}:{n}", self.process);
        let (ask, mut lease) = self.ask(&id, lane, client, charges);
        let answer = if ask.b.is_empty() && ask.z.is_empty() {
            Answer::Granted(Vec::new())
        } else {
            match self.call(Some(&ask)).await {
                Some(a) => a,
                None => {
                    self.learned.cancel(&local, crate::clock::now_ms());
                    return None;
                }
            }
        };
        let now = crate::clock::now_ms();
        let denied = match answer {
            Answer::Granted(taken) => {
                lease.buckets = ask
                    .b
                    .into_iter()
                    .zip(taken)
                    .map(|(w, t)| (w.k, w.cap, kind_of(w.kind), t))
                    .collect();
                lock(&self.leases).insert(n, lease);
                local.shared = Some(n);
                return Some(Ok(local));
            }
            Answer::Wait(ms) => Denied::Until(now + ms),
            Answer::Busy | Answer::Done => Denied::Busy,
            Answer::Never(kind) => Denied::Never(kind_of(&kind)),
        };
        self.learned.cancel(&local, now);
        Some(Err(denied))
    }

    /// Queues what settling `lease` takes: `actual` per bucket kind.
    fn settle_lease(&self, lease: Lease, actual: impl Fn(LimitKind, u64) -> Option<u64>) {
        let mut ops = Vec::with_capacity(lease.buckets.len() + lease.seats.len());
        for (k, cap, kind, amount) in lease.buckets {
            match (kind, actual(kind, amount)) {
                (LimitKind::Requests, Some(_)) => {}
                (LimitKind::Requests, None) => ops.push(Op::Refund { k, cap, n: amount }),
                (_, used) => ops.push(Op::Settle {
                    k,
                    cap,
                    held: amount,
                    actual: used.unwrap_or(0),
                }),
            }
        }
        for (k, ids) in lease.seats {
            ops.push(Op::Release { k, ids });
        }
        self.queue(ops);
    }

    /// Queues the settlement of `grant`'s shared part.
    fn finish(&self, grant: &Grant, actual: impl Fn(LimitKind, u64) -> Option<u64>) {
        let lease = grant.shared.and_then(|n| lock(&self.leases).remove(&n));
        if let Some(lease) = lease {
            self.settle_lease(lease, actual);
        }
    }

    /// Renewals for every live concurrency lease.
    fn renewals(&self) -> Vec<Op> {
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for lease in lock(&self.leases).values() {
            for (k, ids) in &lease.seats {
                by_key
                    .entry(k.clone())
                    .or_default()
                    .extend(ids.iter().cloned());
            }
        }
        by_key
            .into_iter()
            .map(|(k, ids)| Op::Renew {
                k,
                ids,
                ttl: LEASE_TTL_MS,
            })
            .collect()
    }
}

impl Limiter for SharedLimiter {
    fn reserve<'a>(
        &'a self,
        lane: Lane,
        client: Option<&'a ClientKey>,
        charges: &'a [Charge],
        now: u64,
    ) -> Reserving<'a> {
        Box::pin(async move {
            if self.is_up() {
                let local = self.learned.try_reserve(lane, client, charges, now)?;
                if let Some(result) = self.reserve_shared(lane, client, charges, local).await {
                    return result;
                }
            }
            match self.on_failure {
                OnFailure::Open => self.fallback.try_reserve(lane, client, charges, now),
                OnFailure::Closed => Err(Denied::Unavailable),
            }
        })
    }

    fn cancel(&self, grant: &Grant, now: u64) {
        if grant.shared.is_none() {
            return self.fallback.cancel(grant, now);
        }
        self.learned.cancel(grant, now);
        self.finish(grant, |_, _| None);
    }

    fn settle(&self, grant: &Grant, usage: Usage, now: u64) {
        if grant.shared.is_none() {
            return self.fallback.settle(grant, usage, now);
        }
        self.learned.settle(grant, usage, now);
        self.finish(grant, |kind, amount| usage.actual(kind, amount));
    }

    fn observe(&self, lane: Lane, kind: LimitKind, report: Reported, now: u64) {
        self.fallback.observe(lane, kind, report, now);
        match capacity(&self.spec(lane).rates(lane.class), kind) {
            // A configured limit is shared: so is what corrects it.
            Some(cap) if report.limit.is_some() || report.remaining.is_some() => {
                self.queue([Op::Correct {
                    k: self.key(None, lane, true, kind_name(kind)),
                    cap,
                    limit: report.limit,
                    remaining: report.remaining,
                }]);
            }
            Some(_) => {}
            None => self.learned.observe(lane, kind, report, now),
        }
    }

    fn close_until(&self, lane: Lane, until: u64) {
        self.learned.close_until(lane, until);
        self.fallback.close_until(lane, until);
        if let Some(cap) = self.spec(lane).rates(lane.class).requests_per_minute {
            let wait = until.saturating_sub(crate::clock::now_ms());
            self.queue([Op::Close {
                k: self.key(None, lane, true, kind_name(LimitKind::Requests)),
                cap,
                wait,
            }]);
        }
    }

    fn budgets(&self, lane: Lane, now: u64) -> Vec<Budget> {
        if self.is_up() {
            self.learned.budgets(lane, now)
        } else {
            self.fallback.budgets(lane, now)
        }
    }
}

/// Sends what is queued while nothing else does, renews live leases, and
/// tries a lost Redis again; ends when the limiter is dropped.
async fn flusher(limiter: Weak<SharedLimiter>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let renew_every = (LEASE_TTL_MS / 3 / FLUSH_EVERY.as_millis() as u64).max(1);
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        let Some(l) = limiter.upgrade() else { return };
        ticks += 1;
        if ticks.is_multiple_of(renew_every) {
            l.queue(l.renewals());
        }
        let idle = lock(&l.pending).is_empty();
        if !idle || !l.is_up() {
            l.call(None).await;
        }
    }
}

/// `spec` divided among `replicas` processes (at least 1 of each).
fn scale(spec: &LimitSpec, replicas: u32) -> LimitSpec {
    let r = u64::from(replicas.max(1));
    let share = |v: Option<u64>| v.map(|n| (n / r).max(1));
    LimitSpec {
        requests_per_minute: share(spec.requests_per_minute),
        input_tokens_per_minute: share(spec.input_tokens_per_minute),
        output_tokens_per_minute: share(spec.output_tokens_per_minute),
        max_concurrency: spec.max_concurrency.map(|n| (n / replicas.max(1)).max(1)),
    }
}

fn capacity(spec: &LimitSpec, kind: LimitKind) -> Option<u64> {
    match kind {
        LimitKind::Requests => spec.requests_per_minute,
        LimitKind::InputTokens => spec.input_tokens_per_minute,
        LimitKind::OutputTokens => spec.output_tokens_per_minute,
        LimitKind::Concurrency => None,
    }
}

fn kind_name(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Requests => "requests",
        LimitKind::InputTokens => "input_tokens",
        LimitKind::OutputTokens => "output_tokens",
        LimitKind::Concurrency => "concurrency",
    }
}

fn kind_of(name: &str) -> LimitKind {
    match name {
        "requests" => LimitKind::Requests,
        "input_tokens" => LimitKind::InputTokens,
        "output_tokens" => LimitKind::OutputTokens,
        _ => LimitKind::Concurrency,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_is_this_processs_share() {
        let spec = LimitSpec {
            requests_per_minute: Some(100),
            input_tokens_per_minute: Some(10),
            output_tokens_per_minute: None,
            max_concurrency: Some(2),
        };
        let s = scale(&spec, 3);
        assert_eq!(s.requests_per_minute, Some(33));
        assert_eq!(s.input_tokens_per_minute, Some(3));
        assert_eq!(s.output_tokens_per_minute, None);
        assert_eq!(s.max_concurrency, Some(1), "never below one");
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in [
            LimitKind::Requests,
            LimitKind::InputTokens,
            LimitKind::OutputTokens,
            LimitKind::Concurrency,
        ] {
            assert_eq!(kind_of(kind_name(kind)), kind);
        }
    }
}
