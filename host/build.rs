//! Compiles the built-in policy components from `guest/` and leaves them in
//! `OUT_DIR` for `include_bytes!`.

use levee_guest_build::{Builder, Guest, Target};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace");
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
