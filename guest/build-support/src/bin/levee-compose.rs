//! `levee-compose`: builds the edge and the policies, and plugs a policy
//! into the edge to make one deployable component.
//!
//! ```text
//! levee-compose build [--out DIR] [--policy POLICY.wasm]
//! levee-compose plug --edge EDGE.wasm --policy POLICY.wasm --out OUT.wasm
//! ```
//!
//! `build` writes into `DIR` (default `target/edge`):
//! - `edge-wasi.wasm`, `edge-spin.wasm`: the edge before composition (the
//!   second reads Spin variables and key-value);
//! - `policy-standard.wasm`, `policy-interactive.wasm`;
//! - `levee-edge.wasm`, `levee-edge-spin.wasm`: each edge composed with
//!   `--policy`, or with `standard` by default.
//!
//! `plug` only composes: swapping a policy never rebuilds the edge.

use anyhow::{Context, Result, bail};
use levee_guest_build::{Builder, Guest, Target, compose};
use std::path::{Path, PathBuf};

const USAGE: &str = "usage:
  levee-compose build [--out DIR] [--policy POLICY.wasm]
  levee-compose plug --edge EDGE.wasm --policy POLICY.wasm --out OUT.wasm";

fn main() {
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        eprintln!("levee-compose: {e:#}");
        std::process::exit(1);
    }
}

/// `--name value` pairs after the subcommand.
fn flags(args: &[String], known: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !known.contains(&flag.as_str()) {
            bail!("unknown argument `{flag}`\n{USAGE}");
        }
        let value = it
            .next()
            .with_context(|| format!("`{flag}` needs a value\n{USAGE}"))?;
        out.push((flag.clone(), PathBuf::from(value)));
    }
    Ok(out)
}

fn get(flags: &[(String, PathBuf)], name: &str) -> Option<PathBuf> {
    flags
        .iter()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.clone())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} component {}", path.display()))
}

fn plug_to(edge: &Path, policy: &Path, out: &Path) -> Result<()> {
    let bytes = compose::plug(&read(edge, "edge")?, &read(policy, "policy")?)
        .with_context(|| format!("composing {} with {}", edge.display(), policy.display()))?;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("{} ({} bytes)", out.display(), bytes.len());
    Ok(())
}

fn run(args: Vec<String>) -> Result<()> {
    let (cmd, rest) = args.split_first().with_context(|| USAGE.to_owned())?;
    match cmd.as_str() {
        "plug" => {
            let f = flags(rest, &["--edge", "--policy", "--out"])?;
            let need = |n: &str| get(&f, n).with_context(|| format!("`{n}` is required\n{USAGE}"));
            plug_to(&need("--edge")?, &need("--policy")?, &need("--out")?)
        }
        "build" => {
            let f = flags(rest, &["--out", "--policy"])?;
            // `cargo run` says where the package is now; the path built in
            // is where it was compiled, which a shared target directory
            // may have done from another checkout.
            let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
            let workspace = manifest_dir
                .ancestors()
                .nth(2)
                .context("guest/build-support sits in the workspace")?
                .to_path_buf();
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target"));
            let out = get(&f, "--out").unwrap_or_else(|| target.join("edge"));
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let b = Builder::new(&workspace, &target, &out);
            let guest = |package, features, target, output| Guest {
                package,
                features,
                target,
                output,
            };
            let standard = b.build(&guest(
                "levee-policy-standard",
                &[],
                Target::Bare,
                "policy-standard.wasm",
            ))?;
            b.build(&guest(
                "levee-policy-interactive",
                &[],
                Target::Bare,
                "policy-interactive.wasm",
            ))?;
            let wasi = b.build(&guest("levee-edge", &[], Target::Wasip2, "edge-wasi.wasm"))?;
            let spin = b.build(&guest(
                "levee-edge",
                &["spin"],
                Target::Wasip2,
                "edge-spin.wasm",
            ))?;
            let policy = get(&f, "--policy").unwrap_or(standard);
            plug_to(&wasi, &policy, &out.join("levee-edge.wasm"))?;
            plug_to(&spin, &policy, &out.join("levee-edge-spin.wasm"))
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}
