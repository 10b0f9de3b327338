//! Replay: a trace's requests through a policy, driving the same exchange
//! core (`levee_exchange::Exchange`) the gateway drives, on a virtual
//! clock, so the rails and the retry budget apply as they did live.
//!
//! - The upstream answers attempt `n` as it answered attempt `n` in the
//!   trace; beyond the trace, as it answered the last one.
//! - While the policy decides as the recording did, it sees the recorded
//!   views exactly, so a trace replays through the policy that recorded it
//!   to the same decisions. After the first difference the clock is
//!   virtual (admission time, plus each attempt's `elapsed-ms`, plus each
//!   wait), and randomness comes from the trace: the recorded value of that
//!   call, else one derived from the request's first.
//! - The first attempt goes where the recording's went, when the plan
//!   lists it (the limiter chose it live); else to the plan's first.
//! - The retry budget refuses a retry where the recording says it did.

use super::Record;
use crate::policy::LoadedPolicy;
use levee_exchange::{Action, Exchange, GiveUpAt, Rail, Rails, Reason, Why};
use levee_policy_core::backoff::mix64;
use levee_policy_core::{Admission, Outcome, View};

/// How many times a queued request is asked again before replay gives up.
const MAX_QUEUE_ROUNDS: u32 = 32;

/// What replay made of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    /// Admission and one entry per attempt, for display.
    pub steps: Vec<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Time spent waiting: queueing and retry delays, ms.
    pub waited_ms: u64,
    /// The client got no success.
    pub failed: bool,
    /// The final answer, for display (`200`, `429`, `reset`).
    pub result: String,
    /// Every decision equalled the recorded one (`None` when the trace
    /// records no decisions).
    pub as_recorded: Option<bool>,
}

/// Totals over a trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests replayed.
    pub requests: u64,
    /// Attempts made.
    pub attempts: u64,
    /// Time spent waiting, ms.
    pub waited_ms: u64,
    /// Requests that got no success.
    pub failed: u64,
    /// Requests whose decisions all equalled the recording.
    pub as_recorded: u64,
}

impl Summary {
    /// Adds one request.
    pub fn add(&mut self, r: &Replay) {
        self.requests += 1;
        self.attempts += u64::from(r.attempts);
        self.waited_ms += r.waited_ms;
        self.failed += u64::from(r.failed);
        self.as_recorded += u64::from(r.as_recorded == Some(true));
    }
}

/// Replays one request through `policy`, with at most `max_attempts`.
pub fn replay(policy: &LoadedPolicy, record: &Record, max_attempts: u32) -> Replay {
    let req = &record.req;
    let mut same = true;
    let mut r = Replay {
        steps: Vec::new(),
        attempts: 0,
        waited_ms: 0,
        failed: true,
        result: String::new(),
        as_recorded: None,
    };
    let mut now = record.view.now;
    let mut calls = 0u64;
    let mut view_for = |recorded: Option<&View>, same: bool, now: u64| -> View {
        calls += 1;
        match recorded {
            Some(v) if same => v.clone(),
            _ => View {
                now,
                random: recorded.map_or_else(
                    || mix64(record.view.random ^ calls.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    |v| v.random,
                ),
                ..record.view.clone()
            },
        }
    };
    // A hand-written trace may show no upstreams: then any id is taken as
    // configured.
    let upstreams = match record.view.upstreams.len() {
        0 => usize::MAX,
        n => n,
    };
    let mut x = Exchange::new(
        req.clone(),
        Rails {
            max_attempts,
            upstreams,
        },
    );
    let last = record.attempts.len().checked_sub(1);
    let recorded = |number: u32| last.map(|last| &record.attempts[(number as usize).min(last)]);
    let mut rounds = 0;
    // The attempt in progress: its number, upstream and outcome's label.
    let mut current = (0, 0, String::new());
    let mut next = x.start();
    loop {
        next = match next {
            Action::AskAdmission => {
                let view = view_for(Some(&record.view), same && rounds == 0, now);
                let admission = policy.on_request(req, &view);
                if rounds == 0 {
                    same &= record.admission.as_ref().is_none_or(|a| *a == admission);
                }
                if let Admission::Admit(plan) = &admission {
                    r.steps.push(format!("admit {:?}", plan.upstreams));
                }
                x.admission(admission, now)
            }
            Action::Queue { until, .. } if rounds < MAX_QUEUE_ROUNDS => {
                r.steps
                    .push(format!("queue {} ms", until.saturating_sub(now)));
                r.waited_ms += until.saturating_sub(now);
                now = until.max(now);
                rounds += 1;
                x.woke()
            }
            Action::Queue { .. } => {
                r.steps.push("queued too often".into());
                r.result = "429 (queued too often)".into();
                return finish(r, record, same);
            }
            Action::Reply(reply) => {
                let (step, result) = match reply.reason {
                    Reason::QueueDeadline => (
                        "queue past the deadline".to_owned(),
                        "429 (queue past the deadline)".to_owned(),
                    ),
                    Reason::NoUpstream => (
                        "no upstream planned".to_owned(),
                        "503 (no upstream planned)".to_owned(),
                    ),
                    _ => (
                        format!("reject {} {}", reply.status, reply.error_type),
                        reply.status.to_string(),
                    ),
                };
                r.steps.push(step);
                r.result = result;
                return finish(r, record, same);
            }
            Action::Reserve => {
                let Some(first) = recorded(0) else {
                    r.result = "admitted; the trace holds no answer".into();
                    r.failed = false;
                    return finish(r, record, same);
                };
                let planned = first.attempt.upstream;
                let upstream = match x.order().contains(&planned) {
                    true => planned,
                    false => x.order()[0],
                };
                x.reserved(upstream, now)
            }
            Action::Send {
                upstream, number, ..
            } => {
                let rec = recorded(number).expect("reserved only with an answer");
                same &=
                    last.is_some_and(|l| number as usize <= l) && rec.attempt.upstream == upstream;
                r.attempts += 1;
                let outcome = rec.attempt.outcome;
                if let Outcome::Response(f) = outcome {
                    now = now.saturating_add(u64::from(f.elapsed_ms));
                }
                current = (number, upstream, describe(&outcome));
                x.answered(outcome)
            }
            Action::Deliver(_) => {
                let (number, upstream, label) = std::mem::take(&mut current);
                r.steps
                    .push(format!("#{number} up {upstream}: {label} -> delivered"));
                r.result = label;
                r.failed = false;
                return finish(r, record, same);
            }
            Action::AskOutcome(attempt) => {
                let rec = recorded(attempt.number).expect("asked only after an answer");
                let live = same && last.is_some_and(|l| attempt.number as usize <= l);
                let view = view_for(rec.view.as_ref(), live, now);
                let step = policy.on_outcome(req, x.order(), &attempt, &view);
                same &= rec.step.is_none_or(|s| s == step);
                x.decided(step, now)
            }
            Action::TakeSlot { .. } => {
                let (number, ..) = current;
                let refused =
                    same && recorded(number).is_some_and(|rec| rec.overruled == Some(Rail::Budget));
                x.slot(!refused)
            }
            Action::Wait {
                delay_ms,
                upstream: to,
            } => {
                let (number, upstream, label) = &current;
                r.steps.push(format!(
                    "#{number} up {upstream}: {label} -> retry up {to} in {delay_ms} ms"
                ));
                r.waited_ms += delay_ms;
                now = now.saturating_add(delay_ms);
                x.waited(now)
            }
            Action::GiveUp(at) => {
                let (number, upstream, label) = std::mem::take(&mut current);
                let rec = recorded(number);
                same &= rec.is_none_or(|rec| rec.step.is_none() || rec.overruled == overruled(&at));
                r.steps.push(format!(
                    "#{number} up {upstream}: {label} -> {}",
                    gave_up(&at)
                ));
                r.result = label;
                return finish(r, record, same);
            }
        };
    }
}

/// The rail that overruled the policy, if one did.
fn overruled(at: &GiveUpAt) -> Option<Rail> {
    match at.why {
        Why::Overruled(rail) => Some(rail),
        Why::Policy => None,
    }
}

/// How a give-up reads in the replay's steps.
fn gave_up(at: &GiveUpAt) -> String {
    if let Some(rail) = overruled(at) {
        return format!("retry refused by the {}", rail.label());
    }
    match at.verdict {
        None => "deliver".into(),
        Some(g) => {
            let after = g
                .retry_after_ms
                .map(|ms| format!(", retry-after {ms} ms"))
                .unwrap_or_default();
            format!("fail (should-retry {}{after})", g.should_retry)
        }
    }
}

fn finish(mut r: Replay, record: &Record, same: bool) -> Replay {
    let recorded = record.admission.is_some() || record.attempts.iter().any(|a| a.step.is_some());
    // A replay that made a different number of attempts differs too.
    let same = same && r.attempts as usize == record.attempts.len();
    r.as_recorded = recorded.then_some(same);
    r
}

/// `429`, `200`, or a failure's layer (`connect`).
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Response(f) => f.status.to_string(),
        Outcome::Failure(k) => format!("{k:?}").to_lowercase(),
    }
}
