//! The shared decision vectors: the file is what `make vectors` writes, and
//! the native core and the wasm engine answer every vector as recorded.
//! (The Node and Python hosts are held to the same file in `hosts.rs`.)

use levee::policy::PolicySource;
use levee_policy_core::Policy;
use levee_tests::vectors::{self, REGENERATE, Suite};

fn committed() -> (String, Vec<Suite>) {
    let path = vectors::path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let suites = vectors::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (text, suites)
}

#[test]
fn the_file_is_what_the_generator_writes() {
    let (text, suites) = committed();
    let fresh = vectors::generate();
    assert_eq!(
        suites, fresh,
        "the decisions changed: run `{REGENERATE}` and review the diff"
    );
    assert!(
        text == vectors::render(&fresh),
        "the file was edited by hand: run `{REGENERATE}`"
    );
    let n: usize = suites.iter().map(|s| s.vectors.len()).sum();
    assert!(n >= 250, "only {n} vectors");
}

#[test]
fn native_core_answers_every_vector_as_recorded() {
    for suite in committed().1 {
        let mut native = Policy::new(vectors::profile(&suite.policy).expect("built-in"));
        native.configure(&suite.config).expect("valid config");
        for (i, v) in suite.vectors.iter().enumerate() {
            let at = || format!("{} {:?} vector {i}", suite.policy, suite.config);
            assert_eq!(native.on_request(&v.req, &v.view), v.on_request, "{}", at());
            assert_eq!(
                native.on_outcome(&v.req, &v.order, &v.attempt, &v.view),
                v.on_outcome,
                "{}",
                at()
            );
        }
    }
}

#[test]
fn wasm_engine_answers_every_vector_as_recorded() {
    let engine = super::patient_engine();
    for suite in committed().1 {
        let name = levee::policy::BUILTINS
            .iter()
            .find(|(n, _)| *n == suite.policy)
            .expect("built-in")
            .0;
        let policy = engine
            .load(&PolicySource::Builtin(name), &suite.config)
            .expect("loads");
        for (i, v) in suite.vectors.iter().enumerate() {
            let at = || format!("{} {:?} vector {i}", suite.policy, suite.config);
            assert_eq!(
                policy.try_on_request(&v.req, &v.view).expect("no trap"),
                v.on_request,
                "{}",
                at()
            );
            assert_eq!(
                policy
                    .try_on_outcome(&v.req, &v.order, &v.attempt, &v.view)
                    .expect("no trap"),
                v.on_outcome,
                "{}",
                at()
            );
        }
    }
}
