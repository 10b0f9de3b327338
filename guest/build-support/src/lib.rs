//! Builds levee's guest crates into WebAssembly components, from a build
//! script.
//!
//! Policy components must import nothing, so they are compiled for
//! `wasm32-unknown-unknown` (a `wasm32-wasip2` std build imports WASI as
//! soon as it allocates) and then wrapped as a component with
//! `wit-component`, reading the component type that `wit-bindgen` embedded
//! in the core module.
//!
//! The nested `cargo` runs in its own target directory, so it never waits on
//! the lock of the build that called it.

pub mod compose;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm target a guest is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `wasm32-unknown-unknown`, then componentized: imports nothing.
    Bare,
    /// `wasm32-wasip2`: rustc links a component that imports WASI.
    Wasip2,
}

impl Target {
    fn triple(self) -> &'static str {
        match self {
            Target::Bare => "wasm32-unknown-unknown",
            Target::Wasip2 => "wasm32-wasip2",
        }
    }
}

/// One guest to build.
#[derive(Clone, Debug)]
pub struct Guest<'a> {
    /// The cargo package name, for example `levee-policy-standard`.
    pub package: &'a str,
    /// Cargo features to enable.
    pub features: &'a [&'a str],
    /// The target to compile for.
    pub target: Target,
    /// The file name of the component to write into the output directory.
    pub output: &'a str,
}

/// Builds guests of one workspace into components.
pub struct Builder {
    workspace: PathBuf,
    target_dir: PathBuf,
    out_dir: PathBuf,
}

impl Builder {
    /// A builder for the workspace at `workspace` that compiles into
    /// `target_dir/guest` and writes components into `out_dir`.
    pub fn new(workspace: &Path, target_dir: &Path, out_dir: &Path) -> Builder {
        Builder {
            workspace: workspace.to_path_buf(),
            target_dir: target_dir.join("guest"),
            out_dir: out_dir.to_path_buf(),
        }
    }

    /// A builder for the workspace at `workspace`, writing components into
    /// the calling build script's `OUT_DIR`. It tells cargo to rerun the
    /// build script when the guests, the exchange core or the WIT change.
    pub fn from_build_script(workspace: &Path) -> Result<Builder> {
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR is not set")?);
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"))
            .join("guest");
        // Everything a guest is built from: its crates, the exchange core
        // the edge drives, the contract and the lock file.
        for watched in ["guest", "exchange", "wit", "Cargo.lock"] {
            println!(
                "cargo:rerun-if-changed={}",
                workspace.join(watched).display()
            );
        }
        Ok(Builder {
            workspace: workspace.to_path_buf(),
            target_dir,
            out_dir,
        })
    }

    /// Builds `guest` and returns the path of the component it wrote.
    pub fn build(&self, guest: &Guest<'_>) -> Result<PathBuf> {
        let module = self.compile(guest)?;
        let bytes =
            std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
        let component = match guest.target {
            Target::Bare => componentize(&bytes)
                .with_context(|| format!("making a component of {}", module.display()))?,
            Target::Wasip2 => bytes,
        };
        let output = self.out_dir.join(guest.output);
        std::fs::write(&output, component)
            .with_context(|| format!("writing {}", output.display()))?;
        Ok(output)
    }

    fn compile(&self, guest: &Guest<'_>) -> Result<PathBuf> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.workspace)
            .args([
                "build",
                "--profile",
                "guest",
                "--locked",
                "--package",
                guest.package,
            ])
            .args(["--target", guest.target.triple()])
            .arg("--target-dir")
            .arg(&self.target_dir);
        if !guest.features.is_empty() {
            cmd.arg("--features").arg(guest.features.join(","));
        }
        // The outer build's flags and wrappers are for the host target.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_BUILD_TARGET",
            "CARGO_MAKEFLAGS",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd
            .status()
            .with_context(|| format!("running cargo for {}", guest.package))?;
        if !status.success() {
            bail!(
                "building {} for {} failed; see cargo's output above (a missing target is \
                 installed with `rustup target add {}`)",
                guest.package,
                guest.target.triple(),
                guest.target.triple()
            );
        }
        let file = format!("{}.wasm", guest.package.replace('-', "_"));
        Ok(self
            .target_dir
            .join(guest.target.triple())
            .join("guest")
            .join(file))
    }
}

/// Wraps a core module that carries `wit-bindgen`'s component type into a
/// component. The module must import nothing outside its world.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .encode()
}
