//! The `levee` command.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: a proxy allocates and frees a few dozen small blocks per
/// request (header maps, buffers, futures), and glibc's malloc spent about
/// 8% of levee's CPU on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes: 0 ok; 1 a failure at run time; 2 a usage error (clap's
/// own) or a config that does not load.
fn main() -> ExitCode {
    let cli = levee::cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(e) if e.is::<levee::config::ConfigError>() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
