//! Builds the hostile and malformed policy fixtures into `OUT_DIR`, and
//! generates the `Fixture` enum that the tests must match exhaustively: a
//! fixture without an expectation does not compile.

use levee_guest_build::{Builder, Guest, Target};
use std::fmt::Write;
use std::path::Path;

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
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace");
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
    Ok(())
}
