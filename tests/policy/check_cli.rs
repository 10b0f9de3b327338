//! `levee policy check`, run as a user would run it.

use levee_tests::fixtures::Fixture;
use levee_tests::levee_bin;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(args: &[&str]) -> Run {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(levee_bin())
        .args(["policy", "check"])
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("levee runs");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[test]
fn builtin_policies_pass_and_show_who_they_are() {
    for name in ["standard", "interactive"] {
        let run = check(&[&format!("builtin:{name}")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.contains(&format!("policy:     {name} 0.1.0")),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("imports:    (none)"), "{}", run.stdout);
        assert!(
            run.stdout
                .contains("exports:    levee:policy/types@0.1.0, levee:policy/policy@0.1.0"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("self-check: ok"), "{}", run.stdout);
        assert!(
            run.stdout.contains("200 ok                     -> deliver"),
            "{}",
            run.stdout
        );
    }
    let run = check(&["builtin:standard"]);
    assert!(
        run.stdout
            .contains("429 retry-after-ms 2000    -> retry upstream 0 after 2000 ms"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_hostile_fixture_fails_the_check_with_its_step() {
    for fixture in Fixture::ALL {
        let run = check(&[fixture.path()]);
        let expected_step = match fixture {
            Fixture::Trap | Fixture::Loop | Fixture::Grow => Some("self-check"),
            Fixture::LoopConfigure => Some("configure"),
            Fixture::ExtraImport | Fixture::WasiImport => Some("imports"),
            Fixture::WrongWorld => Some("exports"),
            Fixture::Triggered | Fixture::Mirror => None,
        };
        match expected_step {
            Some(step) => {
                assert_eq!(run.code, 2, "{}: {}", fixture.name(), run.stderr);
                assert!(
                    run.stderr.contains(&format!("refused at step `{step}`")),
                    "{}: {}",
                    fixture.name(),
                    run.stderr
                );
            }
            None => assert_eq!(run.code, 0, "{}: {}", fixture.name(), run.stderr),
        }
    }
}

#[test]
fn wasi_import_names_the_fix() {
    let run = check(&[Fixture::WasiImport.path()]);
    assert!(
        run.stderr.contains("the component imports wasi:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("build for wasm32-unknown-unknown"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_inputs_get_precise_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").unwrap();
    let run = check(&[text.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("refused at step `format`: not a WebAssembly file"),
        "{}",
        run.stderr
    );

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let run = check(&[core.to_str().unwrap()]);
    assert!(
        run.stderr
            .contains("core WebAssembly module, not a component"),
        "{}",
        run.stderr
    );

    let config = dir.path().join("policy.json");
    std::fs::write(&config, r#"{"backoff": {"jitter": "fancy"}}"#).unwrap();
    let run = check(&[
        "builtin:standard",
        "--policy-config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("refused at step `configure`: `backoff.jitter`"),
        "{}",
        run.stderr
    );

    let run = check(&[
        "builtin:standard",
        "--policy-config",
        "/nonexistent/policy.json",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("cannot read policy config /nonexistent/policy.json"),
        "{}",
        run.stderr
    );
}
