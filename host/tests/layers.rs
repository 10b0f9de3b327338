//! The import graph of `host/src`'s top-level modules: every arrow runs one
//! way. Lower layers (limits, telemetry, upstream, clock, worker) never
//! reach up into the request path or the admin listener, and no two
//! top-level modules depend on each other, directly or around a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its code names as `crate::X`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if matches!(name.as_str(), "lib" | "main") {
            continue;
        }
        let mut uses = BTreeSet::new();
        for file in rust_files(&path) {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let rest = &code[i + "crate::".len()..];
                    let target: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !target.is_empty() && target != name && target != "core" {
                        uses.insert(target);
                    }
                }
            }
        }
        modules.entry(name).or_default().extend(uses);
    }
    modules
}

fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        files.extend(rust_files(&entry.unwrap().path()));
    }
    files
}

#[test]
fn the_graph_was_read() {
    let g = graph();
    assert!(g["gateway"].contains("upstream"), "{g:?}");
    assert!(g["limits"].contains("telemetry"), "{g:?}");
}

#[test]
fn lower_layers_never_reach_up_into_the_request_path() {
    let g = graph();
    for lower in [
        "limits",
        "telemetry",
        "upstream",
        "clock",
        "worker",
        "config",
    ] {
        for upper in ["gateway", "admin", "cli", "trace", "doctor"] {
            assert!(
                !g[lower].contains(upper),
                "`{lower}` names `crate::{upper}`: {:?}",
                g[lower]
            );
        }
    }
}

#[test]
fn no_two_top_level_modules_depend_on_each_other() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit<'a>(
        g: &'a BTreeMap<String, BTreeSet<String>>,
        at: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(i) = path.iter().position(|m| *m == at) {
            panic!("a cycle: {}", [&path[i..], &[at]].concat().join(" -> "));
        }
        if done.contains(at) {
            return;
        }
        path.push(at);
        for next in g.get(at).into_iter().flatten() {
            visit(g, next, path, done);
        }
        path.pop();
        done.insert(at);
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(&g, m, &mut Vec::new(), &mut done);
    }
}
