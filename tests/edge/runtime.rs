//! The runtimes the suite runs on are the ones the README names, at the
//! versions it names.

use levee_tests::edge::{jco, spin, tool, workspace};
use std::path::Path;
use std::process::Command;

fn version(program: &Path) -> String {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} --version failed",
        program.display()
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_readme_names_each_runtime_at_the_version_tested() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split("### Supported runtimes and versions")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("the README has the section");
    // `wasmtime 49.0.3 (…)`, `spin 4.1.0-pre0 (…)`, `1.35.0`.
    let wasmtime = version(&tool("wasmtime"));
    let spin = version(&spin());
    let jco = version(&jco());
    for (runtime, named) in [
        (
            "wasmtime",
            wasmtime.split_whitespace().nth(1).unwrap().to_owned(),
        ),
        ("Spin", spin.split_whitespace().nth(1).unwrap().to_owned()),
        ("jco", jco.clone()),
    ] {
        assert!(
            section.contains(&format!("{runtime} {named}")),
            "the README's runtime section does not name `{runtime} {named}`"
        );
    }
}
