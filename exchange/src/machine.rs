//! The exchange: one client request's life as a state machine.
//!
//! The driver asks [`Exchange::start`] for the first [`Action`], does what
//! it says, and reports what happened through the method the action names;
//! each report returns the next action. The machine holds the request's
//! facts, the plan, the attempt count and the deadline; the driver holds
//! everything with I/O in it (connections, timers, the limiter, the
//! budget's slots, the last response's bytes).
//!
//! ```text
//! start ─> AskAdmission ─admission─> Queue ─woke─> AskAdmission
//!                                 ├> Reserve ─reserved─> Send
//!                                 └> Reply (rejected, nothing planned, queue past the deadline)
//! Send ─answered─> Deliver                 (a success)
//!               └> AskOutcome ─decided─> GiveUp   (policy stops, or a rail overrules)
//!                                     └> TakeSlot ─slot─> Wait ─waited─> Send
//!                                                      └> GiveUp (no budget room in time)
//! ```

use crate::rails::{Rail, Rails};
use crate::reply::LocalReply;
use levee_policy_core::{Admission, Attempt, GiveUp, NextStep, Outcome, Plan, RequestFacts, Retry};

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask the policy's `on-request` about [`Exchange::request`] with a
    /// view at the current time; report with [`Exchange::admission`].
    AskAdmission,
    /// Wait until `until` (ms since the epoch) in the admission queue, then
    /// report with [`Exchange::woke`]. `take_place`: the request has no
    /// place in the queue yet; when none is free, answer
    /// [`LocalReply::queue_full`] instead of waiting.
    Queue {
        /// When to ask again.
        until: u64,
        /// Take a place in the admission queue first.
        take_place: bool,
    },
    /// Reserve [`Exchange::plan`]'s charges on the first upstream of
    /// [`Exchange::order`] with room, by [`Exchange::deadline`]; report
    /// the upstream with [`Exchange::reserved`], or answer the limiter's
    /// refusal.
    Reserve,
    /// Send attempt `number` (0 is the first) to `upstream`, within
    /// `try_timeout_ms`; report with [`Exchange::answered`].
    Send {
        /// The upstream's id.
        upstream: u32,
        /// The attempt's number, from 0.
        number: u32,
        /// How long the attempt may take, ms: the plan's per-try timeout,
        /// cut to what is left of the deadline.
        try_timeout_ms: u64,
    },
    /// Ask the policy's `on-outcome` about this failed attempt, with
    /// [`Exchange::order`] and a view at the current time; report with
    /// [`Exchange::decided`].
    AskOutcome(Attempt),
    /// Take a slot of the retry budget, waiting in order for room until
    /// `by` at the latest, and hold it through the retry's wait and its
    /// attempt; report with [`Exchange::slot`]. A host without a budget
    /// reports at once that it has one.
    TakeSlot {
        /// The latest time a slot still leaves the retry its delay.
        by: u64,
    },
    /// Wait `delay_ms` before the retry to `upstream`; report with
    /// [`Exchange::waited`].
    Wait {
        /// How long, ms.
        delay_ms: u64,
        /// Where the retry goes.
        upstream: u32,
    },
    /// Deliver the successful answer as it came; `x-levee-attempts` is
    /// the attempt's number plus one. The exchange is over.
    Deliver(Attempt),
    /// Stop: deliver the last answer (with the verdict's headers, when
    /// there is one) or, when the last attempt got no answer, the failure
    /// as [`LocalReply::upstream_failure`]. The exchange is over.
    GiveUp(GiveUpAt),
    /// Answer with a response levee makes itself. The exchange is over.
    Reply(LocalReply),
}

/// Where and why an exchange gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GiveUpAt {
    /// Attempts made.
    pub attempts: u32,
    /// `x-should-retry` and `retry-after` for the client; `None` when the
    /// policy chose to deliver the answer as it is.
    pub verdict: Option<GiveUp>,
    /// Who stopped.
    pub why: Why,
}

/// Who ended the retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The policy answered deliver or fail.
    Policy,
    /// The policy asked for a retry that a rail refused.
    Overruled(Rail),
}

/// One client request being served.
#[derive(Clone, Debug)]
pub struct Exchange {
    req: RequestFacts,
    rails: Rails,
    /// Waiting in the admission queue holds a place there.
    queued: bool,
    plan: Option<Plan>,
    /// The plan's upstreams, those not configured left out.
    order: Vec<u32>,
    /// The plan's deadline and the request's, whichever comes first.
    deadline: u64,
    upstream: u32,
    number: u32,
    prev_delay_ms: u64,
    /// The retry granted and not yet sent.
    retry: Option<Retry>,
}

impl Exchange {
    /// A request with these facts, under these rails.
    pub fn new(req: RequestFacts, rails: Rails) -> Exchange {
        let deadline = req.deadline;
        Exchange {
            req,
            rails,
            queued: false,
            plan: None,
            order: Vec::new(),
            deadline,
            upstream: 0,
            number: 0,
            prev_delay_ms: 0,
            retry: None,
        }
    }

    /// The first thing to do.
    pub fn start(&self) -> Action {
        Action::AskAdmission
    }

    /// The request's facts, as the policy sees them.
    pub fn request(&self) -> &RequestFacts {
        &self.req
    }

    /// The admitted plan.
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// The plan's upstreams, in order, those not configured left out.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// When the request must be over: the plan's deadline or the
    /// request's, whichever comes first.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    /// The policy's answer to admission, at `now`.
    pub fn admission(&mut self, admission: Admission, now: u64) -> Action {
        match admission {
            Admission::Admit(plan) => {
                self.order = plan
                    .upstreams
                    .iter()
                    .copied()
                    .filter(|&id| (id as usize) < self.rails.upstreams)
                    .collect();
                if self.order.is_empty() {
                    return Action::Reply(LocalReply::no_upstream());
                }
                self.deadline = plan.deadline.min(self.req.deadline);
                self.plan = Some(plan);
                Action::Reserve
            }
            Admission::Queue(until) if until >= self.req.deadline => {
                Action::Reply(LocalReply::queue_deadline(until.saturating_sub(now)))
            }
            Admission::Queue(until) => {
                let take_place = !self.queued;
                self.queued = true;
                Action::Queue {
                    until: until.max(now.saturating_add(1)),
                    take_place,
                }
            }
            Admission::Reject(r) => Action::Reply(LocalReply::policy_reject(&r)),
        }
    }

    /// The queue's wait is over: ask again.
    pub fn woke(&mut self) -> Action {
        Action::AskAdmission
    }

    /// The limiter reserved the charges on `upstream`, at `now`: the first
    /// attempt goes there.
    pub fn reserved(&mut self, upstream: u32, now: u64) -> Action {
        self.upstream = upstream;
        self.send(now)
    }

    /// How the attempt of the last [`Action::Send`] went.
    pub fn answered(&mut self, outcome: Outcome) -> Action {
        let attempt = Attempt {
            number: self.number,
            upstream: self.upstream,
            prev_delay_ms: self.prev_delay_ms,
            outcome,
        };
        match outcome {
            Outcome::Response(r) if r.status < 400 => Action::Deliver(attempt),
            _ => Action::AskOutcome(attempt),
        }
    }

    /// The policy's answer to the last [`Action::AskOutcome`], at `now`.
    /// The rails may turn a retry into a give-up, and nothing else.
    pub fn decided(&mut self, step: NextStep, now: u64) -> Action {
        match step {
            NextStep::Retry(r) => match self.rails.check(&r, self.attempts(), now, self.deadline) {
                Ok(()) => {
                    self.retry = Some(r);
                    Action::TakeSlot {
                        by: Rails::slot_by(&r, self.deadline),
                    }
                }
                Err((rail, g)) => self.give_up(Some(g), Why::Overruled(rail)),
            },
            NextStep::Deliver => self.give_up(None, Why::Policy),
            NextStep::Fail(g) => self.give_up(Some(g), Why::Policy),
        }
    }

    /// Whether the retry budget granted the retry a slot.
    pub fn slot(&mut self, granted: bool) -> Action {
        let Some(retry) = self.retry else {
            return self.give_up(None, Why::Policy);
        };
        if granted {
            return Action::Wait {
                delay_ms: retry.delay_ms,
                upstream: retry.upstream,
            };
        }
        self.retry = None;
        let (rail, g) = Rails::budget_spent(&retry);
        self.give_up(Some(g), Why::Overruled(rail))
    }

    /// The retry's delay is over, at `now`: send it.
    pub fn waited(&mut self, now: u64) -> Action {
        if let Some(r) = self.retry.take() {
            self.upstream = r.upstream;
            self.prev_delay_ms = r.delay_ms;
            self.number += 1;
        }
        self.send(now)
    }

    fn send(&self, now: u64) -> Action {
        let try_timeout = self.plan.as_ref().map_or(0, |p| p.try_timeout_ms);
        Action::Send {
            upstream: self.upstream,
            number: self.number,
            try_timeout_ms: u64::from(try_timeout)
                .min(self.deadline.saturating_sub(now))
                .max(1),
        }
    }

    fn attempts(&self) -> u32 {
        self.number + 1
    }

    fn give_up(&self, verdict: Option<GiveUp>, why: Why) -> Action {
        Action::GiveUp(GiveUpAt {
            attempts: self.attempts(),
            verdict,
            why,
        })
    }
}

#[cfg(test)]
mod tests;
