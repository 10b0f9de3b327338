//! `levee policy check`: load a component exactly as the gateway would,
//! then show who it is, what it links against, and how it decides.

use crate::core::{
    Attempt, Circuit, Endpoint, Health, Method, NextStep, Outcome, RequestFacts, ResponseFacts,
    UpstreamView, View,
};
use crate::policy::{EngineOptions, LoadedPolicy, PolicyEngine, PolicySource};
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(spec: &str, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read policy config {}", path.display()))?,
        None => String::new(),
    };
    let engine = PolicyEngine::new(EngineOptions::default())?;
    let source = PolicySource::parse(spec);
    let interface = match engine.inspect(&source) {
        Ok(i) => i,
        Err(e) => return refuse(e),
    };
    println!("source:     {}", source.name());
    println!("imports:    {}", list(&interface.imports));
    println!("exports:    {}", list(&interface.exports));
    let policy = match engine.load(&source, &config) {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let info = policy.info();
    println!(
        "policy:     {} {} ({})",
        info.name,
        info.version,
        policy.digest()
    );
    println!("summary:    {}", info.summary);
    println!(
        "configure:  ok{}",
        if config.trim().is_empty() {
            " (defaults)"
        } else {
            ""
        }
    );
    println!("self-check: ok");
    show_decisions(&policy);
    Ok(ExitCode::SUCCESS)
}

fn refuse(e: crate::policy::LoadError) -> anyhow::Result<ExitCode> {
    eprintln!("error: {e}");
    Ok(ExitCode::from(2))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// A few decisions on typical failures, so an operator sees how the policy
/// behaves before it meets traffic.
fn show_decisions(policy: &LoadedPolicy) {
    const NOW: u64 = 1_800_000_000_000;
    let req = RequestFacts {
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
        received_at: NOW,
        deadline: NOW + 600_000,
    };
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
    let view = View {
        now: NOW,
        random: u64::MAX / 2,
        upstreams: vec![upstream(0)],
        retry_budget: true,
    };
    let response = |status, retry_after_ms| ResponseFacts {
        status,
        should_retry: None,
        retry_after_ms,
        retry_after: None,
        error: None,
        spend_cap: false,
        elapsed_ms: 100,
    };
    let cases: [(&str, Outcome); 5] = [
        ("200 ok", Outcome::Response(response(200, None))),
        (
            "400 invalid request",
            Outcome::Response(response(400, None)),
        ),
        (
            "429 retry-after-ms 2000",
            Outcome::Response(response(429, Some(2_000))),
        ),
        ("529 overloaded", Outcome::Response(response(529, None))),
        (
            "connect refused",
            Outcome::Failure(crate::core::FailureKind::Connect),
        ),
    ];
    println!("decisions (one upstream, first attempt):");
    for (label, outcome) in cases {
        let attempt = Attempt {
            number: 0,
            upstream: 0,
            prev_delay_ms: 0,
            outcome,
        };
        let started = Instant::now();
        let step = policy.try_on_outcome(&req, &[0], &attempt, &view);
        let took = started.elapsed();
        let shown = match step {
            Ok(NextStep::Deliver) => "deliver".to_owned(),
            Ok(NextStep::Retry(r)) => {
                format!("retry upstream {} after {} ms", r.upstream, r.delay_ms)
            }
            Ok(NextStep::Fail(g)) => format!(
                "fail (x-should-retry: {}{})",
                g.should_retry,
                g.retry_after_ms
                    .map(|ms| format!(", retry-after-ms: {ms}"))
                    .unwrap_or_default()
            ),
            Err(e) => format!("error: {e}"),
        };
        println!("  {label:<26} -> {shown}  [{} us]", took.as_micros());
    }
}
