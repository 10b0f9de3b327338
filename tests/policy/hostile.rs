//! Every hostile fixture is refused or survived, and the engine falls back
//! to the native core. `expectation` must name every fixture: a new one
//! without a test does not compile.

use levee::core::sample::Sampler;
use levee::core::{Policy, Profile};
use levee::policy::{CallError, PolicySource, Stage};
use levee_tests::fixtures::Fixture;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What the engine must do with a fixture.
enum Expect {
    /// Refused at this step, with a message containing this text.
    Refused(Stage, &'static str),
    /// Loads (it hides its hostility from the load-time checks); see
    /// `a_policy_that_fails_at_call_time_costs_a_fallback_not_a_request`.
    Loads,
}

fn expectation(f: Fixture) -> Expect {
    match f {
        Fixture::Trap => Expect::Refused(Stage::SelfCheck, "policy trapped"),
        Fixture::Loop => Expect::Refused(Stage::SelfCheck, "exceeded its"),
        Fixture::Grow => Expect::Refused(Stage::SelfCheck, "policy trapped"),
        Fixture::LoopConfigure => Expect::Refused(Stage::Configure, "exceeded its"),
        Fixture::Triggered => Expect::Loads,
        Fixture::ExtraImport => Expect::Refused(Stage::Imports, "levee:fixtures/net"),
        Fixture::WrongWorld => {
            Expect::Refused(Stage::Exports, "does not export levee:policy/policy@0.1.0")
        }
        Fixture::WasiImport => Expect::Refused(Stage::Imports, "wasm32-unknown-unknown"),
        // Well-behaved; see `mirror.rs`.
        Fixture::Mirror => Expect::Loads,
    }
}

#[test]
fn every_fixture_is_refused_at_the_right_step() {
    let engine = super::engine();
    for fixture in Fixture::ALL {
        let source = PolicySource::File(fixture.path().into());
        let result = engine.load(&source, "");
        match expectation(fixture) {
            Expect::Refused(stage, text) => {
                let err = match result {
                    Ok(_) => panic!(
                        "fixture {} loaded; expected refusal at {stage}",
                        fixture.name()
                    ),
                    Err(e) => e,
                };
                assert_eq!(err.stage, stage, "fixture {}: {err}", fixture.name());
                assert!(
                    err.message.contains(text),
                    "fixture {}: {err}",
                    fixture.name()
                );
            }
            Expect::Loads => assert!(result.is_ok(), "fixture {}", fixture.name()),
        }
    }
}

#[test]
fn not_wasm_and_core_modules_are_refused_with_their_names() {
    let engine = super::engine();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("policy.wasm");
    std::fs::write(&text, "this is not wasm").unwrap();
    let err = engine.load(&PolicySource::File(text), "").unwrap_err();
    assert_eq!(err.stage, Stage::Format);
    assert!(err.message.contains("not a WebAssembly file"), "{err}");

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = engine.load(&PolicySource::File(core), "").unwrap_err();
    assert_eq!(err.stage, Stage::Format);
    assert!(
        err.message
            .contains("core WebAssembly module, not a component"),
        "{err}"
    );

    let missing = dir.path().join("missing.wasm");
    let err = engine.load(&PolicySource::File(missing), "").unwrap_err();
    assert_eq!(err.stage, Stage::Read);
}

#[test]
fn bad_config_is_refused_with_the_key() {
    let engine = super::engine();
    let err = engine
        .load(
            &PolicySource::Builtin("standard"),
            r#"{"backoff": {"base_ms": -3}}"#,
        )
        .unwrap_err();
    assert_eq!(err.stage, Stage::Configure);
    assert!(err.message.contains("`backoff.base_ms`"), "{err}");
    assert!(err.message.contains("-3"), "{err}");
}

/// A policy that turns hostile after it loaded costs one fallback decision,
/// never a request: the engine answers from the native core, counts the
/// failure, discards the instance, and the next call is served by a fresh
/// one.
#[test]
fn a_policy_that_fails_at_call_time_costs_a_fallback_not_a_request() {
    let engine = super::engine();
    let policy = engine
        .load(&PolicySource::File(Fixture::Triggered.path().into()), "")
        .expect("the triggered fixture passes the load-time checks");
    let native = Policy::new(Profile::Standard);
    let mut sampler = Sampler::new(11);
    let stats = engine.stats();
    // Round after round on the same two instances: each trigger discards
    // an instance, and a benign call right after must be served again.
    for round in 0..3 {
        for trigger in ["trap", "loop", "grow"] {
            let mut case = sampler.case();
            case.req.model = Some(trigger.into());
            assert!(
                policy.try_on_request(&case.req, &case.view).is_err(),
                "{trigger} must fail"
            );
            assert_eq!(
                policy.on_request(&case.req, &case.view),
                native.on_request(&case.req, &case.view),
                "round {round}: {trigger} gets the native decision"
            );
            assert_eq!(
                policy.on_outcome(&case.req, &case.order, &case.attempt, &case.view),
                native.on_outcome(&case.req, &case.order, &case.attempt, &case.view),
            );

            case.req.model = Some("benign".into());
            assert!(
                policy.try_on_request(&case.req, &case.view).is_ok(),
                "round {round}: a fresh instance serves after {trigger}"
            );
        }
    }
    // Per round and trigger: three failed calls, two of them answered by
    // the fallback. "loop" overruns its deadline; "trap" and "grow" trap.
    assert_eq!(stats.traps.load(Ordering::Relaxed), 3 * 2 * 3);
    assert_eq!(stats.deadlines.load(Ordering::Relaxed), 3 * 3);
    assert_eq!(stats.fallbacks.load(Ordering::Relaxed), 3 * 3 * 2);
}

/// A looping call is stopped at its deadline, however long that deadline:
/// the engine's epoch ticker keeps its pace (10 ms for this deadline)
/// while any call is in flight. (It used to slow to one tick per 25 ms
/// after 100 ticks without a new call, so a loop under a 1 s deadline ran
/// for about 23 s.) The bound below leaves 5 s of slack for a loaded
/// machine.
#[test]
fn a_long_deadline_stops_a_loop_on_time() {
    let engine = super::engine_with_deadline(Duration::from_secs(1));
    let policy = engine
        .load(&PolicySource::File(Fixture::Triggered.path().into()), "")
        .expect("the triggered fixture passes the load-time checks");
    let mut case = Sampler::new(5).case();
    case.req.model = Some("loop".into());
    let started = Instant::now();
    let result = policy.try_on_request(&case.req, &case.view);
    let took = started.elapsed();
    assert!(
        matches!(result, Err(CallError::Deadline(d)) if d == Duration::from_secs(1)),
        "{result:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "a 1 s deadline took {took:?}"
    );
}
