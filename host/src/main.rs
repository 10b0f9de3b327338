//! The `levee` command.

use clap::Parser;
use std::process::ExitCode;

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
