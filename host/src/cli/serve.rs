//! `levee serve`: config, engine and policy, upstreams, listeners, signals.

use crate::admin::{Access, serve_admin};
use crate::config::{Config, Overrides};
use crate::gateway::{Gateway, Stopped, Workers, bind, serve};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// Flags of `levee serve`; each overrides the config file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8787).
    #[arg(long)]
    listen: Option<String>,
    /// An upstream base URL; repeat for several. Replaces the config's list.
    #[arg(long = "upstream")]
    upstreams: Vec<String>,
    /// A TOML config file (see levee.example.toml). Without it:
    /// `$LEVEE_CONFIG`, `./levee.toml`, `$XDG_CONFIG_HOME/levee/levee.toml`,
    /// `/etc/levee/levee.toml`, the first that exists; else the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The policy: `builtin:standard`, `builtin:interactive`, or a .wasm file.
    #[arg(long)]
    policy: Option<String>,
    /// The policy's own config (JSON).
    #[arg(long)]
    policy_config: Option<PathBuf>,
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs, log_override: Option<&str>) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        listen: args.listen,
        upstreams: args.upstreams,
        policy: args.policy,
        policy_config: args.policy_config,
    };
    let path = Config::discover(args.config.as_deref());
    let config = Config::load(path.as_deref(), &overrides)?;
    super::init_logging(log_override, &config.log.level, config.log.format);
    match &path {
        Some(p) => tracing::info!(file = %p.display(), "config loaded"),
        None => tracing::info!("no config file found; running on the defaults"),
    }
    // The acceptor, the admin API and signals run here, on the main thread;
    // clients are served by the workers (see `gateway::Workers`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async move {
        let gw = Gateway::new(&config, overrides)?;
        let listener = bind(config.listen).await?;
        let workers = Workers::start(
            &gw,
            config.worker_count(),
            config.shutdown_grace,
            config.header_timeout,
        )?;
        println!("levee listening on {}", listener.local_addr()?);
        if let Some(addr) = config.admin.listen {
            let admin = bind(addr).await?;
            println!("levee admin on {}", admin.local_addr()?);
            let access = Access {
                token: config.admin.token.clone(),
                open_metrics: config.admin.open_metrics,
            };
            tokio::spawn(serve_admin(gw.clone(), admin, access));
        }
        let mut hangup = signal(SignalKind::hangup())?;
        let reloader = gw.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let gw = reloader.clone();
                // Off this thread: compiling a new policy must not stall accepting.
                match tokio::task::spawn_blocking(move || gw.reload()).await {
                    Ok(Ok(done)) => tracing::info!("SIGHUP: {done}"),
                    Ok(Err(e)) => tracing::warn!("SIGHUP: reload refused, nothing changed: {e:#}"),
                    Err(e) => tracing::error!("SIGHUP: reload failed: {e}"),
                }
            }
        });
        // SIGTERM or Ctrl-C: the first drains, a second exits at once.
        let mut terminate = signal(SignalKind::terminate())?;
        let (tx, signals) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = terminate.recv() => "SIGTERM",
                    _ = tokio::signal::ctrl_c() => "SIGINT",
                };
                if tx.send(name).is_err() {
                    return;
                }
            }
        });
        let otel = gw.otel.clone();
        let stopped = serve(listener, workers, signals).await;
        // Drained: what was traced goes out before levee exits.
        if let (Some(otel), Ok(Stopped::Drained)) = (&otel, &stopped) {
            otel.flush(Duration::from_secs(5)).await;
        }
        stopped
    });
    crate::telemetry::flush_access_lines();
    match served? {
        Stopped::Drained => tracing::info!("stopped"),
        Stopped::Cut(n) => {
            eprintln!("levee: stopped at once on a second signal; cut {n} open connections");
            // The workers are still serving what was cut: leave them.
            std::process::exit(0);
        }
    }
    Ok(ExitCode::SUCCESS)
}
