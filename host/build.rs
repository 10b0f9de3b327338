//! Compiles the built-in policy components from `guest/` and leaves them in
//! `OUT_DIR` for `include_bytes!`.

use levee_guest_build::{Builder, Guest, Target};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    // Read when it runs, not when it was compiled: a build script cargo
    // reuses from another checkout of the same sources must not build there.
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest.parent().expect("host/ sits in the workspace");
    build_info(workspace);
    let builder = Builder::from_build_script(workspace)?;
    for (package, output) in [
        ("levee-policy-standard", "standard.wasm"),
        ("levee-policy-interactive", "interactive.wasm"),
    ] {
        builder.build(&Guest {
            package,
            features: &[],
            target: Target::Bare,
            output,
        })?;
    }
    Ok(())
}

/// `LEVEE_GIT_HASH` (`unknown` outside a git checkout) and
/// `LEVEE_WASMTIME_VERSION` (from the lock file), for `levee_build_info`.
fn build_info(workspace: &std::path::Path) {
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LEVEE_GIT_HASH={git}");
    for head in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        let path = workspace.join(head);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let lock = workspace.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let wasmtime = text
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LEVEE_WASMTIME_VERSION={wasmtime}");
}
