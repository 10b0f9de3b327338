//! Other language hosts run the built-in policy components and answer every
//! shared decision vector exactly as the native core does:
//! - Node.js, through `jco transpile` (`hosts/node`);
//! - Python, through the PyPI `wasmtime` bindings (`hosts/python`).
//!
//! `make setup` installs both (`npm ci` in `hosts/node`, the pinned
//! `wasmtime` into `.venv`).

use levee_tests::{vectors, workspace};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Writes each built-in policy that the vectors name into `dir`.
fn components(dir: &Path) -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string(vectors::path()).expect("vectors file");
    let names: BTreeSet<String> = vectors::parse(&text)
        .expect("vectors parse")
        .into_iter()
        .map(|s| s.policy)
        .collect();
    names
        .into_iter()
        .map(|name| {
            let (_, bytes) = levee::policy::BUILTINS
                .iter()
                .find(|(n, _)| *n == name)
                .expect("the vectors name built-in policies");
            let path = dir.join(format!("{name}.wasm"));
            std::fs::write(&path, bytes).expect("write component");
            (name, path)
        })
        .collect()
}

fn tool(relative: &str) -> PathBuf {
    let path = workspace().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `make setup` first",
        path.display()
    );
    path
}

/// Runs `cmd`; on failure the panic shows its output.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every answer agreed, and there were as many as the file has vectors.
fn assert_all_agree(out: &Output) {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default().to_owned();
    let suites = vectors::parse(&std::fs::read_to_string(vectors::path()).unwrap()).unwrap();
    let answers: usize = suites.iter().map(|s| 2 * s.vectors.len()).sum();
    assert!(
        last.ends_with(&format!(": {answers} answers agree, 0 differ")),
        "{text}"
    );
}

#[test]
fn node_host_agrees_with_the_native_core() {
    let dir = tempfile::tempdir().unwrap();
    let jco = tool("hosts/node/node_modules/@bytecodealliance/jco/dist/jco.js");
    let mut args = Vec::new();
    for (name, wasm) in components(dir.path()) {
        let out = dir.path().join(format!("js-{name}"));
        run(Command::new("node")
            .arg(&jco)
            .arg("transpile")
            .arg(&wasm)
            .arg("-o")
            .arg(&out)
            .args(["--name", "policy", "--quiet"]));
        args.push(format!("{name}={}", out.join("policy.js").display()));
    }
    let out = run(Command::new("node")
        .arg(workspace().join("hosts/node/vectors.mjs"))
        .arg(vectors::path())
        .args(&args));
    assert_all_agree(&out);
}

#[test]
fn python_host_agrees_with_the_native_core() {
    let dir = tempfile::tempdir().unwrap();
    let python = tool(".venv/bin/python");
    let args: Vec<String> = components(dir.path())
        .into_iter()
        .map(|(name, wasm)| format!("{name}={}", wasm.display()))
        .collect();
    let out = run(Command::new(python)
        .arg(workspace().join("hosts/python/vectors.py"))
        .arg(vectors::path())
        .args(&args));
    assert_all_agree(&out);
}
