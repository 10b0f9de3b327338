//! The wasm components and the native core must decide identically.

use levee::core::sample::Sampler;
use levee::core::{Policy, Profile};
use levee::policy::PolicySource;

const CASES: usize = 5_000;

fn compare(name: &'static str, profile: Profile, config: &str, seed: u64) {
    let engine = super::patient_engine();
    let wasm = engine
        .load(&PolicySource::Builtin(name), config)
        .expect("built-in loads");
    let mut native = Policy::new(profile);
    native
        .configure(config)
        .expect("same config is valid natively");
    assert_eq!(wasm.info(), &native.info(), "{name}: info");

    let mut sampler = Sampler::new(seed);
    for i in 0..CASES {
        let case = sampler.case();
        let ctx = || format!("{name}, case {i} (seed {seed}): {case:?}");
        assert_eq!(
            wasm.try_on_request(&case.req, &case.view).expect("no trap"),
            native.on_request(&case.req, &case.view),
            "on-request differs: {}",
            ctx()
        );
        assert_eq!(
            wasm.try_on_outcome(&case.req, &case.order, &case.attempt, &case.view)
                .expect("no trap"),
            native.on_outcome(&case.req, &case.order, &case.attempt, &case.view),
            "on-outcome differs: {}",
            ctx()
        );
    }
    assert_eq!(
        engine
            .stats()
            .fallbacks
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn standard_matches_native_core() {
    compare("standard", Profile::Standard, "", 1);
}

#[test]
fn interactive_matches_native_core() {
    compare("interactive", Profile::Interactive, "", 2);
}

#[test]
fn configured_policies_match_native_core() {
    let config = r#"{"max_attempts": 7, "backoff": {"jitter": "decorrelated", "base_ms": 100, "cap_ms": 20000}, "max_wait_ms": 10000}"#;
    compare("standard", Profile::Standard, config, 3);
    let config = r#"{"backoff": {"jitter": "equal", "base_ms": 50, "cap_ms": 400}, "output_reserve_share": 0.25}"#;
    compare("interactive", Profile::Interactive, config, 4);
}
