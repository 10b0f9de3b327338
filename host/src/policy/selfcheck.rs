//! Decisions a new policy must get right before it may serve: not the
//! policy's taste, only the host's invariants.

use super::loaded::LoadedPolicy;
use levee_policy_core::{
    Admission, Attempt, Circuit, Endpoint, Health, Method, NextStep, Outcome, RequestFacts,
    ResponseFacts, UpstreamView, View,
};

const NOW: u64 = 1_800_000_000_000;
const IDS: [u32; 2] = [7, 9];

/// Runs the checks; the error names the check and what was wrong.
pub fn run(policy: &LoadedPolicy) -> Result<(), String> {
    let req = request();
    let view = view();
    match policy
        .try_on_request(&req, &view)
        .map_err(|e| format!("on-request: {e}"))?
    {
        Admission::Admit(plan) => {
            let mut seen = Vec::new();
            for id in &plan.upstreams {
                if !IDS.contains(id) || seen.contains(id) {
                    return Err(format!(
                        "on-request planned upstreams {:?}; only each of {IDS:?} at most once is valid",
                        plan.upstreams
                    ));
                }
                seen.push(*id);
            }
            if plan.upstreams.is_empty() || plan.try_timeout_ms == 0 {
                return Err(format!(
                    "on-request admitted with an unusable plan: {plan:?}"
                ));
            }
        }
        Admission::Queue(until) if until <= NOW => {
            return Err(format!(
                "on-request queued until {until}, which is not in the future"
            ));
        }
        Admission::Reject(r) if !(400..=599).contains(&r.status) => {
            return Err(format!(
                "on-request rejected with status {}; 400-599 is valid",
                r.status
            ));
        }
        _ => {}
    }
    for (status, want_deliver) in [(200, true), (529, false)] {
        let step = policy
            .try_on_outcome(&req, &IDS, &attempt(status), &view)
            .map_err(|e| format!("on-outcome: {e}"))?;
        match step {
            NextStep::Deliver | NextStep::Fail(_) if !want_deliver => {}
            NextStep::Deliver if want_deliver => {}
            NextStep::Retry(r) if !want_deliver && IDS.contains(&r.upstream) => {}
            other => {
                return Err(format!("on-outcome answered a {status} with {other:?}"));
            }
        }
    }
    Ok(())
}

fn request() -> RequestFacts {
    RequestFacts {
        id: 1,
        method: Method::Post,
        endpoint: Endpoint::Messages,
        model: Some("claude-sonnet-4-5".into()),
        stream: false,
        max_tokens: Some(1024),
        est_input_tokens: 100,
        client: None,
        priority: 0,
        client_retry_count: None,
        received_at: NOW,
        deadline: NOW + 60_000,
    }
}

fn view() -> View {
    View {
        now: NOW,
        random: 0x9e37_79b9_7f4a_7c15,
        retry_budget: true,
        upstreams: IDS
            .iter()
            .map(|&id| UpstreamView {
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
    }
}

fn attempt(status: u16) -> Attempt {
    Attempt {
        number: 0,
        upstream: IDS[0],
        prev_delay_ms: 0,
        outcome: Outcome::Response(ResponseFacts {
            status,
            should_retry: None,
            retry_after_ms: None,
            retry_after: None,
            error: None,
            spend_cap: false,
            elapsed_ms: 10,
        }),
    }
}
