//! Policy swap at the edge: the same edge component, composed first with
//! `standard` and then with `interactive`, in front of the same scripted
//! upstream, makes the decisions each policy's native core predicts.

use super::Edge;
use super::scenarios::{MESSAGE, Setup, header, post};
use levee_exchange::{Action, Exchange, Rails};
use levee_policy_core::{
    Admission, Circuit, Endpoint, Health, Method, Outcome, Policy, Profile, RequestFacts,
    ResponseFacts, UpstreamView, View,
};
use levee_tests::edge::components;
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};

/// What the client sees.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    attempts: u32,
    should_retry: Option<String>,
    /// The waits between attempts, as the policy chose them.
    delays_ms: Vec<u64>,
}

/// One scripted answer: a status and its `retry-after-ms`.
type Answer = (u16, Option<u64>);

/// Runs the native core of `profile` over the script, driving the exchange
/// core as the edge does: one upstream, the 429's wait marked in the view,
/// time moving by the delays the policy asks for.
fn predict(profile: Profile, config: &serde_json::Value, script: &[Answer]) -> Seen {
    let mut policy = Policy::new(profile);
    policy
        .configure(&config.to_string())
        .expect("the config is valid");
    let mut now = 1_000_000u64;
    let req = RequestFacts {
        id: 1,
        method: Method::Post,
        endpoint: Endpoint::Messages,
        model: Some("claude-sonnet-4-5".into()),
        stream: false,
        max_tokens: Some(64),
        est_input_tokens: MESSAGE.len().div_ceil(4) as u32,
        client: None,
        priority: 0,
        client_retry_count: None,
        received_at: now,
        deadline: now + 20 * 60_000,
    };
    let mut limited_until = None;
    let view = |now: u64, limited: Option<u64>| View {
        now,
        random: 7,
        upstreams: vec![UpstreamView {
            id: 0,
            group: 0,
            weight: 1,
            health: Health::Unknown,
            circuit: Circuit::Closed,
            in_flight: 0,
            rate_limited_until: limited.filter(|&t| t > now),
            overloaded_until: None,
            budgets: vec![],
            ttfb_ms: None,
            slow: false,
        }],
        retry_budget: true,
    };
    // The same exchange core the edge drives, with the edge's rails
    // (ten attempts at most, one upstream) and no budget to wait for.
    let rails = Rails {
        max_attempts: 10,
        upstreams: 1,
    };
    let mut x = Exchange::new(req, rails);
    let mut delays = vec![];
    let mut status = 0;
    let mut next = x.start();
    loop {
        next = match next {
            Action::AskAdmission => {
                let admission = policy.on_request(x.request(), &view(now, limited_until));
                assert!(matches!(admission, Admission::Admit(_)), "admitted");
                x.admission(admission, now)
            }
            Action::Reserve => x.reserved(0, now),
            Action::Send { number, .. } => {
                let wait;
                (status, wait) = script[(number as usize).min(script.len() - 1)];
                if status == 429 {
                    limited_until = Some(now + wait.unwrap_or(0));
                }
                x.answered(Outcome::Response(ResponseFacts {
                    status,
                    should_retry: None,
                    retry_after_ms: wait,
                    retry_after: None,
                    error: None,
                    spend_cap: false,
                    elapsed_ms: 1,
                }))
            }
            Action::AskOutcome(attempt) => {
                let view = view(now, limited_until);
                let step = policy.on_outcome(x.request(), x.order(), &attempt, &view);
                x.decided(step, now)
            }
            Action::TakeSlot { .. } => x.slot(true),
            Action::Wait { delay_ms, .. } => {
                delays.push(delay_ms);
                now += delay_ms;
                x.waited(now)
            }
            Action::Deliver(attempt) => {
                return Seen {
                    status,
                    attempts: attempt.number + 1,
                    should_retry: None,
                    delays_ms: delays,
                };
            }
            Action::GiveUp(at) => {
                return Seen {
                    status,
                    attempts: at.attempts,
                    should_retry: at.verdict.map(|g| g.should_retry.to_string()),
                    delays_ms: delays,
                };
            }
            other => panic!("the edge's script never leads to {other:?}"),
        };
    }
}

/// Runs the composed edge over the same script.
async fn observe(component: &str, config: &serde_json::Value, script: &[Answer]) -> Seen {
    let steps = script.iter().map(|&(status, wait)| match (status, wait) {
        (429, Some(ms)) => Step::Reply(Reply::rate_limited(RetryAfter::Ms(ms))),
        (200, _) => Step::Reply(Reply::message()),
        (s, _) => Step::Reply(Reply::error(s, "api_error", "scripted")),
    });
    let upstream = MockUpstream::start(Script::of(steps)).await;
    let setup = Setup {
        policy: config.clone(),
        ..Setup::default()
    };
    let edge = Edge::serve(component, &[("primary", upstream.url())], &setup);
    let resp = post(&edge, MESSAGE).await;
    let seen = upstream.requests();
    let delays_ms = seen
        .windows(2)
        .map(|p| (p[1].at - p[0].at).as_millis() as u64)
        .collect();
    Seen {
        status: resp.status().as_u16(),
        attempts: header(&resp, "x-levee-attempts")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        should_retry: header(&resp, "x-should-retry").map(str::to_owned),
        delays_ms,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_composed_policy_decides_as_its_native_core_predicts() {
    // A 429 asking for 2.5 s, then success. `standard` sleeps through
    // waits up to 5 min; `interactive` hands anything past 2 s back.
    let script: &[Answer] = &[(429, Some(2_500)), (200, None)];
    let config = serde_json::json!({"max_attempts": 2});
    let mut outcomes = Vec::new();
    for (component, profile) in [
        (components::EDGE_STANDARD, Profile::Standard),
        (components::EDGE_INTERACTIVE, Profile::Interactive),
    ] {
        let want = predict(profile, &config, script);
        let got = observe(component, &config, script).await;
        assert_eq!(
            (got.status, got.attempts, &got.should_retry),
            (want.status, want.attempts, &want.should_retry),
            "{profile:?}: the edge decided otherwise than the core"
        );
        assert_eq!(got.delays_ms.len(), want.delays_ms.len());
        // Measured between the mock's arrivals: the wait, plus one
        // request's trip through the edge (an instance per request).
        for (g, w) in got.delays_ms.iter().zip(&want.delays_ms) {
            assert!(
                (*w..*w + 500).contains(g),
                "{profile:?}: waited {g} ms, the policy asked {w} ms"
            );
        }
        outcomes.push(got);
    }
    assert_ne!(
        (outcomes[0].status, outcomes[0].attempts),
        (outcomes[1].status, outcomes[1].attempts),
        "the script must tell the two policies apart"
    );
}
