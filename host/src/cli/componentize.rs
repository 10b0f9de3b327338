//! `levee policy componentize`: wrap a policy's core module into a
//! component, the step between `cargo build` and `levee policy check`.

use anyhow::{Context, bail};
use std::path::Path;
use std::process::ExitCode;

pub fn run(module: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {}
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => {
            bail!("{} is already a component", module.display())
        }
        _ => bail!("{} is not a WebAssembly core module", module.display()),
    }
    let component = levee_guest_build::componentize(&bytes).with_context(|| {
        format!(
            "cannot make a component of {}: it must be built for wasm32-unknown-unknown \
             with wit-bindgen's `policy-component` world (see templates/policy)",
            module.display()
        )
    })?;
    std::fs::write(output, &component)
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "wrote {} ({} bytes); check it with `levee policy check {}`",
        output.display(),
        component.len(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}
