//! Builds the hostile and malformed policy fixtures into `OUT_DIR`, and
//! generates the `Fixture` enum that the tests must match exhaustively: a
//! fixture without an expectation does not compile.

use levee_guest_build::{Builder, Guest, Target};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// (name, package, features, target)
const FIXTURES: &[(&str, &str, &[&str], Target)] = &[
    ("trap", "levee-fixtures", &["trap"], Target::Bare),
    ("loop", "levee-fixtures", &["loop"], Target::Bare),
    ("grow", "levee-fixtures", &["grow"], Target::Bare),
    (
        "loop-configure",
        "levee-fixtures",
        &["loop-configure"],
        Target::Bare,
    ),
    ("triggered", "levee-fixtures", &["triggered"], Target::Bare),
    (
        "extra-import",
        "levee-fixtures",
        &["extra-import"],
        Target::Bare,
    ),
    (
        "wrong-world",
        "levee-fixtures",
        &["wrong-world"],
        Target::Bare,
    ),
    ("mirror", "levee-fixtures", &["mirror"], Target::Bare),
    // The standard policy built the wrong way: std for wasm32-wasip2
    // imports WASI as soon as it allocates.
    ("wasi-import", "levee-policy-standard", &[], Target::Wasip2),
];

fn main() -> anyhow::Result<()> {
    // Read when it runs, not when it was compiled: a build script cargo
    // reuses from another checkout of the same sources must not build there.
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest.parent().expect("tests/ sits in the workspace");
    let builder = Builder::from_build_script(workspace)?;
    let mut variants = String::new();
    let mut names = String::new();
    let mut paths = String::new();
    for (name, package, features, target) in FIXTURES {
        let output = format!("fixture-{name}.wasm");
        let path = builder.build(&Guest {
            package,
            features,
            target: *target,
            output: &output,
        })?;
        let variant: String = name
            .split('-')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect();
        writeln!(variants, "    /// The `{name}` fixture.\n    {variant},")?;
        writeln!(names, "            Fixture::{variant} => {name:?},")?;
        writeln!(
            paths,
            "            Fixture::{variant} => {:?},",
            path.display().to_string()
        )?;
    }
    let all: Vec<String> = FIXTURES
        .iter()
        .map(|(n, ..)| {
            let v: String = n
                .split('-')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            format!("Fixture::{v}")
        })
        .collect();
    let code = format!(
        "/// A policy fixture built by `build.rs`.\n\
         #[derive(Clone, Copy, Debug, PartialEq, Eq)]\n\
         pub enum Fixture {{\n{variants}}}\n\n\
         impl Fixture {{\n\
         \x20   /// Every fixture.\n\
         \x20   pub const ALL: [Fixture; {n}] = [{all}];\n\n\
         \x20   /// Its name.\n\
         \x20   pub fn name(self) -> &'static str {{\n        match self {{\n{names}        }}\n    }}\n\n\
         \x20   /// The component file.\n\
         \x20   pub fn path(self) -> &'static str {{\n        match self {{\n{paths}        }}\n    }}\n\
         }}\n",
        n = FIXTURES.len(),
        all = all.join(", "),
    );
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("fixtures.rs"), code)?;
    edge(&builder, &out)
}

/// The edge (without Spin's imports) and both policies, and the edge
/// composed with each: the swap at the edge is a re-compose of the same
/// edge component. Also the edge's Spin build, alone and composed with
/// `standard`, for the Spin test host.
fn edge(builder: &Builder, out: &Path) -> anyhow::Result<()> {
    fn guest<'a>(package: &'a str, target: Target, output: &'a str) -> Guest<'a> {
        Guest {
            package,
            features: &[],
            target,
            output,
        }
    }
    let spin = builder.build(&Guest {
        features: &["spin"],
        ..guest("levee-edge", Target::Wasip2, "edge-spin.wasm")
    })?;
    let spin_bytes = std::fs::read(&spin)?;
    let edge = builder.build(&guest("levee-edge", Target::Wasip2, "edge-wasi.wasm"))?;
    let edge_bytes = std::fs::read(&edge)?;
    let mut code = String::new();
    writeln!(code, "/// The edge before composition: imports the policy.")?;
    writeln!(
        code,
        "pub const EDGE: &str = {:?};",
        edge.display().to_string()
    )?;
    for (name, package) in [
        ("standard", "levee-policy-standard"),
        ("interactive", "levee-policy-interactive"),
    ] {
        let output = format!("policy-{name}.wasm");
        let policy = builder.build(&guest(package, Target::Bare, &output))?;
        let composed = levee_guest_build::compose::plug(&edge_bytes, &std::fs::read(&policy)?)?;
        let path = out.join(format!("levee-edge-{name}.wasm"));
        std::fs::write(&path, composed)?;
        let upper = name.to_uppercase();
        writeln!(code, "/// The `{name}` policy component.")?;
        writeln!(
            code,
            "pub const POLICY_{upper}: &str = {:?};",
            policy.display().to_string()
        )?;
        writeln!(code, "/// The edge composed with `{name}`.")?;
        writeln!(
            code,
            "pub const EDGE_{upper}: &str = {:?};",
            path.display().to_string()
        )?;
        if name == "standard" {
            let composed = levee_guest_build::compose::plug(&spin_bytes, &std::fs::read(&policy)?)?;
            let path = out.join("levee-edge-spin-standard.wasm");
            std::fs::write(&path, composed)?;
            writeln!(code, "/// The edge's Spin build composed with `standard`.")?;
            writeln!(
                code,
                "pub const EDGE_SPIN_STANDARD: &str = {:?};",
                path.display().to_string()
            )?;
        }
    }
    writeln!(
        code,
        "/// The edge's Spin build before composition: imports Spin's variables and key-value."
    )?;
    writeln!(
        code,
        "pub const EDGE_SPIN: &str = {:?};",
        spin.display().to_string()
    )?;
    std::fs::write(out.join("edge.rs"), code)?;
    Ok(())
}
