//! Embedding levee's policy engine in another Rust program.
//!
//! Four steps: load a component, configure it, ask it for decisions, swap
//! it for another while serving. The engine takes and returns
//! `levee-policy-core` types only (re-exported as `levee::core`).
//!
//! ```sh
//! cargo run -p levee-example-embed                  # the built-in policies
//! cargo run -p levee-example-embed -- my-policy.wasm # swaps to your own
//! ```

use levee::core::{
    Admission, Attempt, Circuit, Endpoint, Health, Method, NextStep, Outcome, RequestFacts,
    ResponseFacts, UpstreamView, View,
};
use levee::policy::{EngineOptions, PolicyEngine, PolicyHandle, PolicySource};

fn main() -> anyhow::Result<()> {
    let swap_to = std::env::args().nth(1);
    for line in run(swap_to.as_deref())?.lines {
        println!("{line}");
    }
    Ok(())
}

/// What the example saw, for its test.
#[cfg_attr(not(test), allow(dead_code))]
struct Report {
    admission: Admission,
    after_429: NextStep,
    after_503: NextStep,
    refused: String,
    swapped_to: String,
    after_swap: NextStep,
    lines: Vec<String>,
}

fn run(swap_to: Option<&str>) -> anyhow::Result<Report> {
    let mut lines = Vec::new();

    // 1. Load: one engine per process; each load compiles (or reads the
    //    compile cache), checks that the component imports nothing, and
    //    self-checks a few decisions before it may serve.
    let engine = PolicyEngine::new(EngineOptions::default())?;

    // 2. Configure: the policy's own JSON, validated by the policy.
    let config = r#"{"max_attempts": 2, "backoff": {"base_ms": 100, "cap_ms": 1000}}"#;
    let policy = engine.load(&PolicySource::parse("builtin:standard"), config)?;
    lines.push(format!(
        "loaded {} {}",
        policy.info().name,
        policy.info().version
    ));

    // A handle holds the active policy and swaps it atomically.
    let handle = PolicyHandle::new(policy);

    // 3. Decide: what the host knows goes in, a decision comes out.
    let now = 1_800_000_000_000;
    let req = request(now);
    let both = view(now, &[0, 1]);
    let policy = handle.current(); // pin one policy for the whole request
    let admission = policy.on_request(&req, &both);
    lines.push(format!("on-request -> {admission:?}"));

    let after_429 = policy.on_outcome(&req, &[0, 1], &failed(0, 429, Some(5_000)), &both);
    lines.push(format!("429 on upstream 0 -> {after_429:?}"));
    let after_503 = policy.on_outcome(&req, &[0, 1], &failed(1, 503, None), &both);
    lines.push(format!("503 on the second attempt -> {after_503:?}"));

    // 4. Swap: a policy that fails to load, configure or self-check is
    //    refused with the step that refused it, and the old one stays.
    let refused = handle
        .swap(
            &engine,
            &PolicySource::parse("builtin:interactive"),
            r#"{"max_attempts": 0}"#,
        )
        .expect_err("max_attempts 0 is out of range")
        .to_string();
    lines.push(format!("refused: {refused}"));
    let target = swap_to.unwrap_or("builtin:interactive");
    let record = handle.swap(&engine, &PolicySource::parse(target), "")?;
    lines.push(format!(
        "swapped: {} -> {} in {:?}",
        record.from, record.to, record.elapsed
    ));

    let policy = handle.current();
    let single = view(now, &[0]);
    let after_swap = policy.on_outcome(&req, &[0], &failed(0, 429, Some(5_000)), &single);
    lines.push(format!(
        "{} on a 429 with one upstream -> {after_swap:?}",
        policy.info().name
    ));

    Ok(Report {
        admission,
        after_429,
        after_503,
        refused,
        swapped_to: policy.info().name.clone(),
        after_swap,
        lines,
    })
}

/// A streaming Messages request received just now, due within 10 minutes.
fn request(now: u64) -> RequestFacts {
    RequestFacts {
        id: 1,
        method: Method::Post,
        endpoint: Endpoint::Messages,
        model: Some("claude-sonnet-4-5".into()),
        stream: true,
        max_tokens: Some(1024),
        est_input_tokens: 2_000,
        client: None,
        priority: 0,
        client_retry_count: None,
        received_at: now,
        deadline: now + 600_000,
    }
}

/// Healthy upstreams with these ids.
fn view(now: u64, ids: &[u32]) -> View {
    let upstream = |id| UpstreamView {
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
    };
    View {
        now,
        random: 0x5eed,
        upstreams: ids.iter().map(|&id| upstream(id)).collect(),
        retry_budget: true,
    }
}

/// Attempt `number` answered with `status` (and a `retry-after-ms`).
fn failed(number: u32, status: u16, retry_after_ms: Option<u64>) -> Attempt {
    Attempt {
        number,
        upstream: 0,
        prev_delay_ms: 0,
        outcome: Outcome::Response(ResponseFacts {
            status,
            should_retry: None,
            retry_after_ms,
            retry_after: None,
            error: None,
            spend_cap: false,
            elapsed_ms: 120,
        }),
    }
}

#[cfg(test)]
mod tests {
    use levee::core::{Admission, GiveUp, NextStep, Retry};

    /// The example runs, and each step did what its comment says.
    #[test]
    fn the_example_runs_and_decides() {
        let r = super::run(None).expect("the example runs");
        let Admission::Admit(plan) = &r.admission else {
            panic!("expected an admission, got {:?}", r.admission)
        };
        assert_eq!(plan.upstreams, vec![0, 1]);
        // Standard moves a 429 to the other upstream at once.
        assert_eq!(
            r.after_429,
            NextStep::Retry(Retry {
                upstream: 1,
                delay_ms: 0
            })
        );
        // The config's max_attempts of 2 is spent by the second attempt.
        assert!(
            matches!(r.after_503, NextStep::Fail(_)),
            "{:?}",
            r.after_503
        );
        assert!(
            r.refused.contains("`configure`") && r.refused.contains("max_attempts"),
            "{}",
            r.refused
        );
        assert_eq!(r.swapped_to, "interactive");
        // Interactive will not sleep 5 s: it hands the wait to the client.
        assert_eq!(
            r.after_swap,
            NextStep::Fail(GiveUp {
                should_retry: true,
                retry_after_ms: Some(5_000)
            })
        );
        assert_eq!(r.lines.len(), 7);
    }
}
