//! The `levee` command.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: a proxy allocates and frees a few dozen small blocks per
/// request (header maps, buffers, futures), and glibc's malloc spent about
/// 8% of levee's CPU on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = levee::cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
