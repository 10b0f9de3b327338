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
