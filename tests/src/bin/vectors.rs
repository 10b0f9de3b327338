//! Writes the shared decision vectors: `make vectors`, or
//! `cargo run --release -p levee-tests --bin vectors [-- FILE]`
//! (default `tests/vectors/decisions.json`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(levee_tests::vectors::path, Into::into);
    let suites = levee_tests::vectors::generate();
    let text = levee_tests::vectors::render(&suites);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&path, text) {
        Ok(()) => {
            let n: usize = suites.iter().map(|s| s.vectors.len()).sum();
            println!(
                "wrote {n} vectors in {} suites to {}",
                suites.len(),
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
