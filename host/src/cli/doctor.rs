//! `levee doctor [URL…]`: checks each upstream layer by layer (see
//! `crate::doctor`) and exits non-zero when a layer fails.

use crate::config::{Config, Overrides, Scheme};
use crate::doctor::{self, Options, Progress, Target, Verdict};
use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Flags of `levee doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Upstream base URLs to check (default: the configured upstreams).
    urls: Vec<String>,
    /// A TOML config file (see levee.example.toml); found as `serve` finds
    /// it when not given.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A resolver to compare with the system's, e.g. 1.1.1.1:53; repeatable.
    #[arg(long = "resolver")]
    resolvers: Vec<SocketAddr>,
    /// Extra PEM roots for the URLs given on the command line (configured
    /// upstreams use their own `ca_file`).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The environment variable holding the API key for the HTTP check; the
    /// key is sent, never printed.
    #[arg(long, default_value = "ANTHROPIC_API_KEY")]
    key_env: String,
    /// Timeout for each network step, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Machine output: one JSON document with every target's layers.
    #[arg(long)]
    json: bool,
}

/// Runs the checks and prints a report per upstream.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        upstreams: args.urls.clone(),
        ..Overrides::default()
    };
    let path = Config::discover(args.config.as_deref());
    let config = Config::load(path.as_deref(), &overrides)?;
    let targets: Vec<Target> = config
        .upstreams
        .iter()
        .map(|u| {
            let mut tls = u.tls.clone();
            if !args.urls.is_empty() && args.ca_file.is_some() {
                tls.ca_file = args.ca_file.clone();
            }
            Target {
                https: u.scheme == Scheme::Https,
                host: u.host.clone(),
                port: u.port,
                base_path: u.base_path.clone(),
                tls,
                proxies: u.proxies.clone(),
                proxy_from_env: u.proxy_from_env,
            }
        })
        .collect();
    let options = Options {
        resolvers: args.resolvers,
        api_key: std::env::var(&args.key_env).ok().filter(|k| !k.is_empty()),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut failed = false;
    let mut reports = Vec::new();
    // Each layer is printed the moment it completes; on a terminal, the
    // one in progress shows a spinner and its time so far.
    let terminal = !args.json && std::io::stdout().is_terminal();
    for target in &targets {
        if !args.json {
            println!("{}", target.url());
        }
        let running: Cell<Option<(&'static str, Instant)>> = Cell::new(None);
        let mut tell = |p: Progress<'_>| match p {
            Progress::Checking(name) => running.set(Some((name, Instant::now()))),
            Progress::Done(layer) => {
                running.set(None);
                if terminal {
                    print!("\r\x1b[K");
                }
                if !args.json {
                    print!("{}", doctor::render_layer(layer));
                    let _ = std::io::stdout().flush();
                }
            }
        };
        let spinner = async {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            for frame in FRAMES.iter().cycle() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some((name, since)) = running.get() {
                    let secs = since.elapsed().as_secs_f64();
                    print!("\r\x1b[K  {name:<5} {frame} {secs:.1} s");
                    let _ = std::io::stdout().flush();
                }
            }
        };
        let layers = rt.block_on(async {
            tokio::select! {
                layers = doctor::check(target, &options, &mut tell) => layers,
                () = spinner, if terminal => unreachable!("the spinner never ends"),
            }
        });
        failed |= layers.iter().any(|l| l.verdict == Verdict::Fail);
        if args.json {
            reports.push(doctor::to_json(target, &layers));
        } else {
            println!();
        }
    }
    if args.json {
        let doc = serde_json::json!({ "ok": !failed, "targets": reports });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
