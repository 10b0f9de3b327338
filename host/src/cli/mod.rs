//! The command line: each subcommand is a named step of the architecture.

mod componentize;
mod doctor;
mod policy_check;
mod replay;
mod serve;

use crate::config::LogFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// levee: the gateway that turns LLM API failures into handled events.
#[derive(Debug, Parser)]
#[command(
    name = "levee",
    version,
    about,
    after_help = "Exit status: 0 ok; 1 a failure at run time; 2 a usage error, a config \
                  that does not load, or a policy refused."
)]
pub struct Cli {
    /// Log filter, for example `info` or `levee=debug`; wins over `RUST_LOG`.
    /// Without either: the config's `[log] level` for serve (default
    /// `info`), `warn` for the other commands.
    #[arg(long, global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Check each upstream layer by layer (DNS, TCP, TLS, HTTP) and say
    /// which layer is broken and how to fix it.
    Doctor(doctor::DoctorArgs),
    /// Work with policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file as `serve` would load it (found as `serve` finds
    /// it when not given): print the effective config, secrets redacted,
    /// and exit 0; or print every problem and exit 2.
    Check {
        /// The TOML file.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Load a policy exactly as the gateway would, and report on it.
    Check {
        /// A component file, or `builtin:standard` / `builtin:interactive`.
        policy: String,
        /// The policy's own config (JSON); named as `serve` names it.
        #[arg(long = "policy-config")]
        config: Option<PathBuf>,
    },
    /// List the built-in policies.
    List,
    /// Replay a trace through a policy (and `--against` another): what it
    /// would have decided, request by request, and a summary.
    Replay(replay::ReplayArgs),
    /// Wrap a core module built for wasm32-unknown-unknown (with
    /// wit-bindgen's `policy-component` world) into a policy component.
    Componentize {
        /// The core module, e.g. target/wasm32-unknown-unknown/release/my_policy.wasm.
        module: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: PathBuf,
    },
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if let Command::Serve(args) = self.command {
            return serve::run(args, self.log.as_deref());
        }
        init_logging(self.log.as_deref(), "warn", LogFormat::Human);
        match self.command {
            Command::Serve(_) => unreachable!("handled above"),
            Command::Doctor(args) => doctor::run(args),
            Command::Policy(PolicyCommand::Check { policy, config }) => {
                policy_check::run(&policy, config.as_deref())
            }
            Command::Policy(PolicyCommand::Componentize { module, output }) => {
                componentize::run(&module, &output)
            }
            Command::Policy(PolicyCommand::Replay(args)) => replay::run(args),
            Command::Config(ConfigCommand::Check { file }) => config_check(file.as_deref()),
            Command::Policy(PolicyCommand::List) => {
                for (name, bytes) in crate::policy::BUILTINS {
                    println!("builtin:{name}\t{} bytes", bytes.len());
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// `levee config check`.
fn config_check(file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use crate::config::{Config, Overrides};
    let path = Config::discover(file);
    let config = Config::load(path.as_deref(), &Overrides::default())?;
    match &path {
        Some(p) => println!("{}: ok", p.display()),
        None => println!("no config file found: the defaults are"),
    }
    println!("{config:#?}");
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr (access lines batched, see `telemetry::LogWriter`), as
/// text or JSON lines, filtered by `flag` (`--log`), else `RUST_LOG`, else
/// `fallback`: the command line over the environment over the file.
pub fn init_logging(flag: Option<&str>, fallback: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match flag {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(fallback)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::telemetry::LogWriter::new(format == LogFormat::Json));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
