//! Replay: a trace's requests through a policy, with the host's mechanism
//! simulated on a virtual clock.
//!
//! - The upstream answers attempt `n` as it answered attempt `n` in the
//!   trace; beyond the trace, as it answered the last one.
//! - While the policy decides as the recording did, it sees the recorded
//!   views exactly, so a trace replays through the policy that recorded it
//!   to the same decisions. After the first difference the clock is
//!   virtual (admission time, plus each attempt's `elapsed-ms`, plus each
//!   wait), and randomness comes from the trace: the recorded value of that
//!   call, else one derived from the request's first.
//! - The host's rails apply: an attempt ceiling and the request deadline.

use super::Record;
use crate::policy::LoadedPolicy;
use levee_policy_core::backoff::mix64;
use levee_policy_core::{Admission, Attempt, NextStep, Outcome, View};

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

    // Admission, asking again after each queueing.
    let mut rounds = 0;
    let plan = loop {
        let view = view_for(Some(&record.view), same && rounds == 0, now);
        let admission = policy.on_request(req, &view);
        if rounds == 0 {
            same &= record.admission.as_ref().is_none_or(|a| *a == admission);
        }
        match admission {
            Admission::Admit(plan) => break plan,
            Admission::Queue(until) if until < req.deadline && rounds < MAX_QUEUE_ROUNDS => {
                r.steps
                    .push(format!("queue {} ms", until.saturating_sub(now)));
                r.waited_ms += until.saturating_sub(now);
                now = until.max(now);
                rounds += 1;
            }
            Admission::Queue(_) => {
                r.steps.push("queue past the deadline".into());
                r.result = "429 (queue past the deadline)".into();
                return finish(r, record, same);
            }
            Admission::Reject(rej) => {
                r.steps
                    .push(format!("reject {} {}", rej.status, rej.error_type));
                r.result = rej.status.to_string();
                return finish(r, record, same);
            }
        }
    };
    r.steps.push(format!("admit {:?}", plan.upstreams));
    let order = plan.upstreams.clone();
    let deadline = plan.deadline.min(req.deadline);
    let Some(&first) = order.first() else {
        r.result = "503 (no upstream planned)".into();
        return finish(r, record, same);
    };
    let Some(last) = record.attempts.len().checked_sub(1) else {
        r.result = "admitted; the trace holds no answer".into();
        r.failed = false;
        return finish(r, record, same);
    };
    let (mut upstream, mut prev_delay_ms) = (first, 0);
    for number in 0.. {
        let rec = &record.attempts[(number as usize).min(last)];
        let outcome = rec.attempt.outcome;
        same &= number as usize <= last && rec.attempt.upstream == upstream;
        r.attempts += 1;
        let label = describe(&outcome);
        if let Outcome::Response(f) = outcome {
            now = now.saturating_add(u64::from(f.elapsed_ms));
            if f.status < 400 {
                r.steps
                    .push(format!("#{number} up {upstream}: {label} -> delivered"));
                r.result = label;
                r.failed = false;
                return finish(r, record, same);
            }
        }
        let attempt = Attempt {
            number,
            upstream,
            prev_delay_ms,
            outcome,
        };
        let view = view_for(rec.view.as_ref(), same && number as usize <= last, now);
        let step = policy.on_outcome(req, &order, &attempt, &view);
        same &= rec.step.is_none_or(|s| s == step);
        match step {
            NextStep::Retry(next) => {
                let ceiling = number + 1 >= max_attempts;
                let late = now.saturating_add(next.delay_ms) >= deadline;
                if ceiling || late {
                    let rail = if ceiling {
                        "attempt ceiling"
                    } else {
                        "deadline"
                    };
                    r.steps.push(format!(
                        "#{number} up {upstream}: {label} -> retry refused by the {rail}"
                    ));
                    r.result = label;
                    return finish(r, record, same);
                }
                r.steps.push(format!(
                    "#{number} up {upstream}: {label} -> retry up {} in {} ms",
                    next.upstream, next.delay_ms
                ));
                r.waited_ms += next.delay_ms;
                now = now.saturating_add(next.delay_ms);
                upstream = next.upstream;
                prev_delay_ms = next.delay_ms;
            }
            NextStep::Deliver => {
                r.steps
                    .push(format!("#{number} up {upstream}: {label} -> deliver"));
                r.result = label;
                return finish(r, record, same);
            }
            NextStep::Fail(g) => {
                let after = g
                    .retry_after_ms
                    .map(|ms| format!(", retry-after {ms} ms"))
                    .unwrap_or_default();
                r.steps.push(format!(
                    "#{number} up {upstream}: {label} -> fail (should-retry {}{after})",
                    g.should_retry
                ));
                r.result = label;
                return finish(r, record, same);
            }
        }
    }
    unreachable!("the loop returns")
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
