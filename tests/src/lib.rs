//! Helpers shared by levee's end-to-end suites.

use std::path::PathBuf;

pub mod bodies;
pub mod edge;
pub mod egress;
pub mod flags;
pub mod levee;
pub mod mock;
pub mod otlp;
pub mod redis;
pub mod vectors;

/// The workspace root (this crate sits in `tests/`).
pub fn workspace() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The hostile and malformed policy components built by `build.rs`.
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

/// The `levee` binary under test: `$LEVEE_BIN`, or the one cargo built next
/// to this test executable (`make test` builds it first).
pub fn levee_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("LEVEE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("levee"))
        .expect("test executables live in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --release -p levee` (make test does)",
        bin.display()
    );
    bin
}
