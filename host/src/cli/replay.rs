//! `levee policy replay`: a trace through one policy, or two side by side.
//!
//! The output is a pure function of the trace and the policies: no clock,
//! no host randomness, no addresses. The same inputs print the same bytes.
//! The trace is streamed: each request is printed as it is replayed, and a
//! bad line stops the run there (exit 2), after what came before it.

use crate::policy::{EngineOptions, LoadedPolicy, PolicyEngine, PolicySource};
use crate::trace::{Replay, Summary, read, replay};
use anyhow::Context;
use std::io::Write;
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
    /// Print only the totals.
    #[arg(long)]
    summary: bool,
    /// One JSON object per line: the policies, each request, the totals.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(&args.trace)
        .with_context(|| format!("cannot read trace {}", args.trace.display()))?;
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
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let list: Vec<_> = policies
            .iter()
            .map(|(label, p)| {
                serde_json::json!({
                    "label": label,
                    "name": p.info().name,
                    "version": p.info().version,
                    "digest": p.digest(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "policies": list }))?;
    } else {
        for (label, p) in &policies {
            let info = p.info();
            writeln!(
                out,
                "{label:<8} {}@{} ({})",
                info.name,
                info.version,
                p.digest()
            )?;
        }
    }
    // The trace is read a line at a time, and each request printed as it is
    // replayed: a trace of any size, in the memory of one line.
    let mut totals = vec![Summary::default(); policies.len()];
    let records = read(std::io::BufReader::with_capacity(1 << 16, file));
    for (i, record) in records.enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                out.flush()?;
                eprintln!("error: {}:{}: {}", args.trace.display(), e.line, e.message);
                return Ok(ExitCode::from(2));
            }
        };
        let replays: Vec<Replay> = policies
            .iter()
            .zip(&mut totals)
            .map(|((_, p), total)| {
                let r = replay(p, &record, args.max_attempts);
                total.add(&r);
                r
            })
            .collect();
        if args.summary {
            continue;
        }
        if args.json {
            let each: serde_json::Map<_, _> = policies
                .iter()
                .zip(&replays)
                .map(|((label, _), r)| (label.to_string(), replay_json(r)))
                .collect();
            let line =
                serde_json::json!({ "request": i + 1, "id": record.req.id, "replays": each });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "request {} (id {})", i + 1, record.req.id)?;
            for ((label, _), r) in policies.iter().zip(&replays) {
                writeln!(out, "  {label:<8} {}", line(r))?;
            }
        }
    }
    if args.json {
        let each: serde_json::Map<_, _> = policies
            .iter()
            .zip(&totals)
            .map(|((label, _), t)| (label.to_string(), summary_json(t)))
            .collect();
        writeln!(out, "{}", serde_json::json!({ "summary": each }))?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "summary")?;
    let labels: Vec<String> = policies.iter().map(|(l, _)| format!("{l:>12}")).collect();
    writeln!(out, "  {:<14}{}", "", labels.join(""))?;
    for (i, name) in ["requests", "attempts", "waited ms", "failed", "as recorded"]
        .into_iter()
        .enumerate()
    {
        let cells: Vec<String> = totals
            .iter()
            .map(|t| {
                let n = [t.requests, t.attempts, t.waited_ms, t.failed, t.as_recorded][i];
                format!("{n:>12}")
            })
            .collect();
        writeln!(out, "  {name:<14}{}", cells.join(""))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn replay_json(r: &Replay) -> serde_json::Value {
    serde_json::json!({
        "steps": r.steps,
        "result": r.result,
        "attempts": r.attempts,
        "waited_ms": r.waited_ms,
        "failed": r.failed,
        "as_recorded": r.as_recorded,
    })
}

fn summary_json(t: &Summary) -> serde_json::Value {
    serde_json::json!({
        "requests": t.requests,
        "attempts": t.attempts,
        "waited_ms": t.waited_ms,
        "failed": t.failed,
        "as_recorded": t.as_recorded,
    })
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
