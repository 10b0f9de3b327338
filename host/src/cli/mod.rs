//! The command line: each subcommand is a named step of the architecture.

mod policy_check;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// levee: the gateway that turns LLM API failures into handled events.
#[derive(Debug, Parser)]
#[command(name = "levee", version, about)]
pub struct Cli {
    /// Log filter, for example `info` or `levee=debug` (default: `RUST_LOG`, else `warn`).
    #[arg(long, global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Load a policy exactly as the gateway would, and report on it.
    Check {
        /// A component file, or `builtin:standard` / `builtin:interactive`.
        policy: String,
        /// The policy's own config (JSON).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the built-in policies.
    List,
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Policy(PolicyCommand::Check { policy, config }) => {
                policy_check::run(&policy, config.as_deref())
            }
            Command::Policy(PolicyCommand::List) => {
                for (name, bytes) in crate::policy::BUILTINS {
                    println!("builtin:{name}\t{} bytes", bytes.len());
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// Logs go to stderr; `filter` overrides `RUST_LOG`.
pub fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter.map(EnvFilter::new).unwrap_or_else(|| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
