//! The loop itself, on a virtual clock: queueing, the deadline, the rails
//! overruling a retry, the retry budget, failover order and the shapes of
//! giving up. [`run`] is a whole driver in a few lines, with a scripted
//! upstream and budget, and the real standard policy.

use super::*;
use crate::reply::Reason;
use levee_policy_core::{
    Charge, Circuit, Endpoint, FailureKind, Health, Method, Policy, Profile, Rejection,
    ResponseFacts, UpstreamView, View,
};

const NOW: u64 = 1_800_000_000_000;

fn req(deadline: u64) -> RequestFacts {
    RequestFacts {
        id: 7,
        method: Method::Post,
        endpoint: Endpoint::Messages,
        model: Some("claude-sonnet-4-5".into()),
        stream: false,
        max_tokens: Some(100),
        est_input_tokens: 10,
        client: None,
        priority: 0,
        client_retry_count: None,
        received_at: NOW,
        deadline,
    }
}

fn rails(max_attempts: u32, upstreams: usize) -> Rails {
    Rails {
        max_attempts,
        upstreams,
    }
}

fn plan(upstreams: Vec<u32>, try_timeout_ms: u32, deadline: u64) -> Plan {
    Plan {
        upstreams,
        try_timeout_ms,
        deadline,
        charges: vec![Charge {
            scope: levee_policy_core::LimitScope::Upstream,
            kind: levee_policy_core::LimitKind::Requests,
            amount: 1,
        }],
    }
}

fn status(status: u16) -> Outcome {
    Outcome::Response(ResponseFacts {
        status,
        should_retry: None,
        retry_after_ms: None,
        retry_after: None,
        error: None,
        spend_cap: false,
        elapsed_ms: 20,
    })
}

fn retry(upstream: u32, delay_ms: u64) -> NextStep {
    NextStep::Retry(Retry { upstream, delay_ms })
}

/// An exchange admitted on upstream 0 with a plan over `order`, and its
/// first `Send`.
fn admitted(max_attempts: u32, order: Vec<u32>, deadline: u64) -> (Exchange, Action) {
    let upstreams = order.len();
    let mut x = Exchange::new(req(deadline), rails(max_attempts, upstreams));
    assert_eq!(x.start(), Action::AskAdmission);
    let first = order[0];
    assert_eq!(
        x.admission(Admission::Admit(plan(order, 60_000, u64::MAX)), NOW),
        Action::Reserve
    );
    let send = x.reserved(first, NOW);
    (x, send)
}

#[test]
fn a_queued_request_takes_one_place_and_asks_again() {
    let mut x = Exchange::new(req(NOW + 10_000), rails(3, 1));
    assert_eq!(
        x.admission(Admission::Queue(NOW + 300), NOW),
        Action::Queue {
            until: NOW + 300,
            take_place: true
        }
    );
    assert_eq!(x.woke(), Action::AskAdmission);
    // Asked again, queued again: it already holds its place.
    assert_eq!(
        x.admission(Admission::Queue(NOW + 600), NOW + 300),
        Action::Queue {
            until: NOW + 600,
            take_place: false
        }
    );
    // A time already past still waits a millisecond, never spins.
    assert_eq!(
        x.admission(Admission::Queue(NOW), NOW + 600),
        Action::Queue {
            until: NOW + 601,
            take_place: false
        }
    );
}

#[test]
fn a_queue_past_the_deadline_is_a_429_with_the_wait() {
    let mut x = Exchange::new(req(NOW + 1_000), rails(3, 1));
    let Action::Reply(r) = x.admission(Admission::Queue(NOW + 1_000), NOW + 200) else {
        panic!("a reply")
    };
    assert_eq!((r.reason, r.status), (Reason::QueueDeadline, 429));
    assert_eq!(
        r.verdict,
        GiveUp {
            should_retry: true,
            retry_after_ms: Some(800)
        }
    );
}

#[test]
fn a_rejection_is_the_policys_reply() {
    let mut x = Exchange::new(req(u64::MAX), rails(3, 1));
    let rejection = Rejection {
        status: 429,
        error_type: "rate_limit_error".into(),
        message: "slow down".into(),
        retry_after_ms: Some(2_000),
        should_retry: true,
    };
    let Action::Reply(r) = x.admission(Admission::Reject(rejection), NOW) else {
        panic!("a reply")
    };
    assert_eq!(
        (r.reason, r.status, r.message.as_str()),
        (Reason::PolicyReject, 429, "slow down")
    );
    assert_eq!(r.verdict.retry_after_ms, Some(2_000));
}

#[test]
fn unconfigured_upstreams_leave_the_plan_and_none_left_is_a_503() {
    let mut x = Exchange::new(req(u64::MAX), rails(3, 2));
    assert_eq!(
        x.admission(
            Admission::Admit(plan(vec![5, 1, 9, 0], 1_000, u64::MAX)),
            NOW
        ),
        Action::Reserve
    );
    assert_eq!(x.order(), [1, 0]);
    let mut x = Exchange::new(req(u64::MAX), rails(3, 2));
    let Action::Reply(r) = x.admission(Admission::Admit(plan(vec![2, 3], 1_000, u64::MAX)), NOW)
    else {
        panic!("a reply")
    };
    assert_eq!((r.reason, r.status), (Reason::NoUpstream, 503));
}

#[test]
fn the_try_timeout_is_cut_to_what_is_left_of_the_earlier_deadline() {
    // The plan's deadline comes first here, the request's in the next.
    let mut x = Exchange::new(req(NOW + 50_000), rails(3, 1));
    x.admission(Admission::Admit(plan(vec![0], 60_000, NOW + 5_000)), NOW);
    assert_eq!(x.deadline(), NOW + 5_000);
    assert_eq!(
        x.reserved(0, NOW + 1_000),
        Action::Send {
            upstream: 0,
            number: 0,
            try_timeout_ms: 4_000
        }
    );
    let (_, send) = admitted(3, vec![0], NOW + 2_000);
    assert_eq!(
        send,
        Action::Send {
            upstream: 0,
            number: 0,
            try_timeout_ms: 2_000
        }
    );
    // Past the deadline, an attempt still gets a millisecond, not zero
    // (which a transport would read as "no timeout").
    let mut x = Exchange::new(req(NOW + 10), rails(3, 1));
    x.admission(Admission::Admit(plan(vec![0], 60_000, u64::MAX)), NOW);
    assert_eq!(
        x.reserved(0, NOW + 20),
        Action::Send {
            upstream: 0,
            number: 0,
            try_timeout_ms: 1
        }
    );
}

#[test]
fn a_success_is_delivered_without_asking_the_policy() {
    let (mut x, _) = admitted(3, vec![0], u64::MAX);
    assert_eq!(
        x.answered(status(200)),
        Action::Deliver(Attempt {
            number: 0,
            upstream: 0,
            prev_delay_ms: 0,
            outcome: status(200)
        })
    );
}

#[test]
fn a_granted_retry_waits_its_delay_then_goes_to_its_upstream() {
    let (mut x, _) = admitted(3, vec![0, 1], NOW + 10_000);
    let Action::AskOutcome(a) = x.answered(status(529)) else {
        panic!("ask")
    };
    assert_eq!((a.number, a.upstream, a.prev_delay_ms), (0, 0, 0));
    assert_eq!(
        x.decided(retry(1, 400), NOW + 100),
        Action::TakeSlot { by: NOW + 9_599 }
    );
    assert_eq!(
        x.slot(true),
        Action::Wait {
            delay_ms: 400,
            upstream: 1
        }
    );
    assert_eq!(
        x.waited(NOW + 500),
        Action::Send {
            upstream: 1,
            number: 1,
            try_timeout_ms: 9_500
        }
    );
    let Action::AskOutcome(a) = x.answered(Outcome::Failure(FailureKind::Connect)) else {
        panic!("ask")
    };
    assert_eq!((a.number, a.upstream, a.prev_delay_ms), (1, 1, 400));
}

#[test]
fn the_rails_overrule_a_retry_and_nothing_else() {
    // The attempt ceiling: 2 attempts made of 2.
    let (mut x, _) = admitted(2, vec![0], u64::MAX);
    x.answered(status(529));
    x.decided(retry(0, 0), NOW);
    x.slot(true);
    x.waited(NOW);
    x.answered(status(529));
    let spent = GiveUp {
        should_retry: false,
        retry_after_ms: None,
    };
    assert_eq!(
        x.decided(retry(0, 0), NOW),
        Action::GiveUp(GiveUpAt {
            attempts: 2,
            verdict: Some(spent),
            why: Why::Overruled(Rail::Ceiling)
        })
    );
    // The deadline: the delay would end past it.
    let (mut x, _) = admitted(5, vec![0], NOW + 1_000);
    x.answered(status(500));
    assert_eq!(
        x.decided(retry(0, 1_000), NOW),
        Action::GiveUp(GiveUpAt {
            attempts: 1,
            verdict: Some(GiveUp {
                should_retry: true,
                retry_after_ms: Some(1_000)
            }),
            why: Why::Overruled(Rail::Deadline)
        })
    );
    // An upstream that does not exist.
    let (mut x, _) = admitted(5, vec![0], u64::MAX);
    x.answered(status(500));
    assert!(matches!(
        x.decided(retry(3, 0), NOW),
        Action::GiveUp(GiveUpAt {
            why: Why::Overruled(Rail::UnknownUpstream),
            ..
        })
    ));
    // The policy's own deliver and fail pass as they are.
    let (mut x, _) = admitted(1, vec![0], u64::MAX);
    x.answered(status(400));
    assert_eq!(
        x.decided(NextStep::Deliver, NOW),
        Action::GiveUp(GiveUpAt {
            attempts: 1,
            verdict: None,
            why: Why::Policy
        })
    );
    let (mut x, _) = admitted(1, vec![0], u64::MAX);
    x.answered(status(429));
    let g = GiveUp {
        should_retry: true,
        retry_after_ms: Some(3_000),
    };
    assert_eq!(
        x.decided(NextStep::Fail(g), NOW),
        Action::GiveUp(GiveUpAt {
            attempts: 1,
            verdict: Some(g),
            why: Why::Policy
        })
    );
}

#[test]
fn no_budget_room_in_time_gives_up_but_leaves_the_client_free_to_retry() {
    let (mut x, _) = admitted(3, vec![0], NOW + 10_000);
    x.answered(status(529));
    assert!(matches!(
        x.decided(retry(0, 700), NOW),
        Action::TakeSlot { .. }
    ));
    assert_eq!(
        x.slot(false),
        Action::GiveUp(GiveUpAt {
            attempts: 1,
            verdict: Some(GiveUp {
                should_retry: true,
                retry_after_ms: Some(700)
            }),
            why: Why::Overruled(Rail::Budget)
        })
    );
}

/// A driver over a virtual clock: the standard policy decides, `answers`
/// are what each upstream answers to each attempt in turn (then its last,
/// forever), and `slots` say whether the budget grants each retry.
fn run(
    upstreams: usize,
    answers: &[&[Outcome]],
    slots: &[bool],
    deadline: u64,
) -> (Action, Vec<(u32, u64)>) {
    let policy = Policy::new(Profile::Standard);
    let mut x = Exchange::new(req(deadline), rails(4, upstreams));
    let mut now = NOW;
    let view = |now| View {
        now,
        random: 0x1234_5678_9abc_def0,
        upstreams: (0..upstreams as u32)
            .map(|id| UpstreamView {
                id,
                group: 0,
                weight: 1,
                health: Health::Healthy,
                circuit: Circuit::Closed,
                in_flight: 0,
                rate_limited_until: None,
                overloaded_until: None,
                budgets: vec![],
                ttfb_ms: None,
                slow: false,
            })
            .collect(),
        retry_budget: true,
    };
    let mut sent = Vec::new();
    let mut asked = vec![0usize; upstreams];
    let mut slots = slots.iter();
    let mut next = x.start();
    for _ in 0..100 {
        next = match next {
            Action::AskAdmission => {
                let a = policy.on_request(x.request(), &view(now));
                x.admission(a, now)
            }
            Action::Queue { until, .. } => {
                now = until;
                x.woke()
            }
            Action::Reserve => x.reserved(x.order()[0], now),
            Action::Send { upstream, .. } => {
                sent.push((upstream, now));
                let script = answers[upstream as usize];
                let i = asked[upstream as usize].min(script.len() - 1);
                asked[upstream as usize] += 1;
                now += 20;
                x.answered(script[i])
            }
            Action::AskOutcome(a) => {
                let step = policy.on_outcome(x.request(), x.order(), &a, &view(now));
                x.decided(step, now)
            }
            Action::TakeSlot { .. } => x.slot(*slots.next().unwrap_or(&true)),
            Action::Wait { delay_ms, .. } => {
                now += delay_ms;
                x.waited(now)
            }
            done => return (done, sent),
        };
    }
    panic!("the exchange never ended")
}

#[test]
fn an_overloaded_upstream_fails_over_in_the_plans_order() {
    let (end, sent) = run(2, &[&[status(529)], &[status(200)]], &[], NOW + 60_000);
    assert!(matches!(
        end,
        Action::Deliver(Attempt {
            number: 1,
            upstream: 1,
            ..
        })
    ));
    // Straight to the alternative, with no delay.
    assert_eq!(sent, [(0, NOW), (1, NOW + 20)]);
}

#[test]
fn one_529_then_success_is_saved_by_one_retry() {
    let (end, sent) = run(1, &[&[status(529), status(200)]], &[true], NOW + 60_000);
    assert!(
        matches!(end, Action::Deliver(Attempt { number: 1, upstream: 0, prev_delay_ms, .. }) if prev_delay_ms > 0)
    );
    assert_eq!(sent.len(), 2);
    assert!(sent[1].1 > sent[0].1 + 20, "the retry backed off");
}

#[test]
fn the_ceiling_ends_a_storm_with_the_last_answer() {
    let (end, sent) = run(1, &[&[status(529)]], &[], u64::MAX);
    assert_eq!(sent.len(), 4);
    let Action::GiveUp(g) = end else {
        panic!("gave up")
    };
    assert_eq!(g.attempts, 4);
    assert_eq!(g.verdict.map(|v| v.should_retry), Some(false));
}

#[test]
fn a_budget_that_never_has_room_stops_after_one_attempt_without_blaming_the_client() {
    let (end, sent) = run(1, &[&[status(529), status(200)]], &[false], NOW + 60_000);
    assert_eq!(sent.len(), 1);
    let Action::GiveUp(g) = end else {
        panic!("gave up")
    };
    assert_eq!(g.why, Why::Overruled(Rail::Budget));
    assert_eq!(g.verdict.map(|v| v.should_retry), Some(true));
}
