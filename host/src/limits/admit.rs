//! Admission: reserve a plan's charges on the first upstream of its order
//! that has room in the request's class; when none has, wait in the
//! class's line of the queue for as long as the deadline allows; otherwise
//! refuse with an honest `retry-after`. Classes have lines of their own, so
//! a request waiting for one class's room never holds back another's.

use super::queue::{Place, Queue};
use super::{Class, ClientKey, Denied, Grant, Lane, Limiter, Usage};
use crate::core::{Charge, LimitKind};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a concurrency-bound wait sleeps before looking again, and the
/// `retry-after` given when only a concurrency limit stood in the way.
pub const BUSY_RECHECK_MS: u64 = 1_000;

/// The limiter with its queue.
pub struct Admitter {
    /// The limits.
    pub limiter: Arc<dyn Limiter>,
    queue: Queue,
    /// Woken when a reservation gives capacity back.
    released: Notify,
    clock: fn() -> u64,
}

/// What a request asks for.
pub struct Ask<'a> {
    /// Upstreams in the plan's order of preference.
    pub order: &'a [u32],
    /// The request's model class: its lane on each upstream, and its line
    /// in the queue.
    pub class: Class,
    /// The client, for client-scoped charges.
    pub client: Option<&'a ClientKey>,
    /// The plan's charges.
    pub charges: &'a [Charge],
    /// Higher goes first in the queue.
    pub priority: u8,
    /// Give up at this time (ms since the epoch).
    pub deadline: u64,
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full.
    QueueFull {
        /// When to try again, from the buckets.
        retry_after_ms: u64,
    },
    /// It would not fit before its deadline.
    Deadline {
        /// When to try again, from the buckets.
        retry_after_ms: u64,
    },
    /// A charge of this kind exceeds the limit: it never fits.
    TooLarge(LimitKind),
    /// The shared limiter is away and configured to refuse meanwhile.
    Unavailable,
}

/// Charges reserved for one request, on one upstream. Dropped unsent, it
/// gives everything back; dropped after sending, it releases the
/// concurrency and keeps the token estimates. [`Reservation::finish`]
/// settles with the actual usage.
pub struct Reservation {
    admitter: Arc<Admitter>,
    grant: Option<Grant>,
    sent: bool,
}

impl Admitter {
    /// An admitter over `limiter` with a queue of `queue_size` (its length
    /// kept in `depth`), on the system clock.
    pub fn new(limiter: Arc<dyn Limiter>, queue_size: usize, depth: Gauge) -> Admitter {
        Admitter::with_clock(limiter, queue_size, depth, crate::clock::now_ms)
    }

    /// The same, on `clock` (ms since the epoch).
    pub fn with_clock(
        limiter: Arc<dyn Limiter>,
        queue_size: usize,
        depth: Gauge,
        clock: fn() -> u64,
    ) -> Admitter {
        Admitter {
            limiter,
            queue: Queue::new(queue_size, depth),
            released: Notify::new(),
            clock,
        }
    }

    /// Waiters in the queue now.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// A place in the queue for a request that must wait before it may
    /// even ask (the policy said "queue"); `None` when the queue is full.
    /// Pass it to [`Admitter::admit`] to keep its turn.
    pub fn line_up(&self, class: Class, priority: u8) -> Option<Place<'_>> {
        self.queue.join(class, priority)
    }

    /// Tries each upstream of the order once.
    async fn try_once(&self, ask: &Ask<'_>, now: u64) -> Result<Grant, Denied> {
        let mut best: Option<Denied> = None;
        for &upstream in ask.order {
            match self
                .limiter
                .reserve(Lane::new(upstream, ask.class), ask.client, ask.charges, now)
                .await
            {
                Ok(grant) => return Ok(grant),
                Err(d) => {
                    best = Some(match (best, d) {
                        (None, d) => d,
                        (Some(Denied::Unavailable), _) | (_, Denied::Unavailable) => {
                            Denied::Unavailable
                        }
                        (Some(Denied::Until(a)), Denied::Until(b)) => Denied::Until(a.min(b)),
                        (Some(Denied::Until(a)), _) | (_, Denied::Until(a)) => Denied::Until(a),
                        (Some(Denied::Busy), _) | (_, Denied::Busy) => Denied::Busy,
                        (Some(n @ Denied::Never(_)), Denied::Never(_)) => n,
                    });
                }
            }
        }
        Err(best.unwrap_or(Denied::Busy))
    }

    /// Admits `ask`, waiting in the queue when it must (keeping `place`
    /// when it has one already). The future may be dropped at any point
    /// (the client went away): its place is left, and nothing stays
    /// reserved.
    pub async fn admit<'q>(
        self: &'q Arc<Self>,
        ask: Ask<'_>,
        mut place: Option<Place<'q>>,
    ) -> Result<(u32, Reservation), Refused> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let now = (self.clock)();
            if place.is_none() && !self.queue.line_is_empty(ask.class) {
                // Others of its class wait already: get in line behind them.
                match self.queue.join(ask.class, ask.priority) {
                    Some(p) => place = Some(p),
                    None => {
                        return Err(Refused::QueueFull {
                            retry_after_ms: self.estimate(&ask).await,
                        });
                    }
                }
            }
            if let Some(p) = place.as_ref().filter(|p| !p.is_head()) {
                let left = Duration::from_millis(ask.deadline.saturating_sub(now));
                if tokio::time::timeout(left, p.turn()).await.is_err() {
                    return Err(Refused::Deadline {
                        retry_after_ms: self.estimate(&ask).await,
                    });
                }
                continue;
            }
            let wake_at = match self.try_once(&ask, now).await {
                Ok(grant) => {
                    let upstream = grant.lane.upstream;
                    let reservation = Reservation {
                        admitter: self.clone(),
                        grant: Some(grant),
                        sent: false,
                    };
                    return Ok((upstream, reservation));
                }
                Err(Denied::Never(kind)) => return Err(Refused::TooLarge(kind)),
                Err(Denied::Unavailable) => return Err(Refused::Unavailable),
                Err(Denied::Until(t)) if t >= ask.deadline => {
                    return Err(Refused::Deadline {
                        retry_after_ms: t.saturating_sub(now).max(1),
                    });
                }
                Err(Denied::Until(t)) => t,
                Err(Denied::Busy) if now >= ask.deadline => {
                    return Err(Refused::Deadline {
                        retry_after_ms: BUSY_RECHECK_MS,
                    });
                }
                Err(Denied::Busy) => (now + BUSY_RECHECK_MS).min(ask.deadline),
            };
            if place.is_none() {
                match self.queue.join(ask.class, ask.priority) {
                    Some(p) => place = Some(p),
                    None => {
                        return Err(Refused::QueueFull {
                            retry_after_ms: wake_at.saturating_sub(now).max(1),
                        });
                    }
                }
            }
            let sleep = Duration::from_millis(wake_at.saturating_sub(now).max(1));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = released => {}
            }
        }
    }

    /// How long until `ask` could fit, were it alone.
    async fn estimate(&self, ask: &Ask<'_>) -> u64 {
        let now = (self.clock)();
        // Reserve and give back at once: a probe of the buckets.
        match self.try_once(ask, now).await {
            Ok(grant) => {
                self.limiter.cancel(&grant, now);
                1
            }
            Err(Denied::Until(t)) => t.saturating_sub(now).max(1),
            Err(_) => BUSY_RECHECK_MS,
        }
    }
}

impl Reservation {
    /// The request was sent: from now on its charges count.
    pub fn sent(&mut self) {
        self.sent = true;
    }

    /// The response ended: settle with what it used.
    pub fn finish(mut self, usage: Usage) {
        if let Some(grant) = self.grant.take() {
            let a = &self.admitter;
            a.limiter.settle(&grant, usage, (a.clock)());
            a.released.notify_waiters();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            let a = &self.admitter;
            let now = (a.clock)();
            if self.sent {
                a.limiter.settle(&grant, Usage::default(), now);
            } else {
                a.limiter.cancel(&grant, now);
            }
            a.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests;
