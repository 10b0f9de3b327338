//! `levee policy replay`: a trace through one policy, or two side by side.
//!
//! The output is a pure function of the trace and the policies: no clock,
//! no host randomness, no addresses. The same inputs print the same bytes.

use crate::policy::{EngineOptions, LoadedPolicy, PolicyEngine, PolicySource};
use crate::trace::{Replay, Summary, parse, replay};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags of `levee policy replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A trace: JSON lines, as recorded by `[trace]` or written by hand.
    trace: PathBuf,
    /// The policy: a component file or `builtin:NAME`.
    #[arg(long)]
    policy: String,
    /// The policy's own config (JSON); named as `serve` names it.
    #[arg(long = "policy-config")]
    config: Option<PathBuf>,
    /// A second policy, replayed side by side.
    #[arg(long)]
    against: Option<String>,
    /// The second policy's config (JSON).
    #[arg(long)]
    against_config: Option<PathBuf>,
    /// The host's attempt ceiling (as `rails.max_attempts`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=20))]
    max_attempts: u32,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.trace)
        .with_context(|| format!("cannot read trace {}", args.trace.display()))?;
    let records = match parse(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}:{}: {}", args.trace.display(), e.line, e.message);
            return Ok(ExitCode::from(2));
        }
    };
    let engine = PolicyEngine::new(EngineOptions::default())?;
    let mut policies = vec![(
        "policy",
        load(&engine, &args.policy, args.config.as_deref())?,
    )];
    if let Some(other) = &args.against {
        policies.push((
            "against",
            load(&engine, other, args.against_config.as_deref())?,
        ));
    }
    for (label, p) in &policies {
        println!(
            "{label:<8} {}@{} ({})",
            p.info().name,
            p.info().version,
            p.digest()
        );
    }
    let mut totals = vec![Summary::default(); policies.len()];
    for (i, record) in records.iter().enumerate() {
        println!("request {} (id {})", i + 1, record.req.id);
        for ((label, p), total) in policies.iter().zip(&mut totals) {
            let r = replay(p, record, args.max_attempts);
            total.add(&r);
            println!("  {label:<8} {}", line(&r));
        }
    }
    println!("summary");
    let row = |name: &str, f: &dyn Fn(&Summary) -> String| {
        let cells: Vec<String> = totals.iter().map(|t| format!("{:>12}", f(t))).collect();
        println!("  {name:<14}{}", cells.join(""));
    };
    let labels: Vec<String> = policies.iter().map(|(l, _)| format!("{l:>12}")).collect();
    println!("  {:<14}{}", "", labels.join(""));
    row("requests", &|t| t.requests.to_string());
    row("attempts", &|t| t.attempts.to_string());
    row("waited ms", &|t| t.waited_ms.to_string());
    row("failed", &|t| t.failed.to_string());
    row("as recorded", &|t| t.as_recorded.to_string());
    Ok(ExitCode::SUCCESS)
}

fn load(
    engine: &PolicyEngine,
    spec: &str,
    config: Option<&Path>,
) -> anyhow::Result<std::sync::Arc<LoadedPolicy>> {
    let config = match config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read policy config {}", path.display()))?,
        None => String::new(),
    };
    Ok(engine.load(&PolicySource::parse(spec), &config)?)
}

fn line(r: &Replay) -> String {
    let verdict = if r.failed { "FAILED" } else { "ok" };
    let recorded = match r.as_recorded {
        Some(true) => ", as recorded",
        Some(false) => ", differs from the recording",
        None => "",
    };
    format!(
        "{} | {verdict} {}, {} attempt{}, waited {} ms{recorded}",
        r.steps.join("; "),
        r.result,
        r.attempts,
        if r.attempts == 1 { "" } else { "s" },
        r.waited_ms
    )
}
