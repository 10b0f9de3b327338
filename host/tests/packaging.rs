//! The packaging: the systemd unit passes `systemd-analyze verify`, and
//! the Containerfile builds where a container builder runs. Where a tool
//! is missing, the test says so in its output; it never passes silently.

use std::path::{Path, PathBuf};
use std::process::Command;

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn found(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_systemd_unit_is_verified_and_reloads_with_sighup() {
    let unit = std::fs::read_to_string(packaging().join("levee.service")).unwrap();
    assert!(
        unit.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"),
        "{unit}"
    );
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/levee serve\n"),
        "{unit}"
    );
    assert!(
        unit.contains("\nRestartPreventExitStatus=2\n"),
        "a config error is final"
    );
    if !found("systemd-analyze", &["--version"]) {
        println!("systemd-analyze is not installed: the unit's keys were checked, not verified");
        return;
    }
    // The unit as installed, but naming this build's binary, which verify
    // checks exists.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("levee.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/levee", env!("CARGO_BIN_EXE_levee")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on a key it ignores; any line about the unit fails.
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("levee.service"), "{said}");
}

#[test]
fn the_containerfile_builds_where_a_builder_runs() {
    let file = packaging().join("Containerfile");
    let text = std::fs::read_to_string(&file).unwrap();
    for needed in [
        " AS build\n",
        "ca-certificates",
        "\nUSER 10001:10001\n",
        "\nENV XDG_CACHE_HOME=/var/cache\n",
        "\nVOLUME [\"/var/cache/levee\"]\n",
    ] {
        assert!(text.contains(needed), "the Containerfile lacks {needed:?}");
    }
    let builder = ["podman", "docker"]
        .into_iter()
        .find(|b| found(b, &["info"]));
    let Some(builder) = builder else {
        println!(
            "no container builder runs here (podman or docker with a daemon): \
             the Containerfile was checked, not built"
        );
        return;
    };
    let status = Command::new(builder)
        .args(["build", "-q", "-f"])
        .arg(&file)
        .args(["-t", "levee-test"])
        .arg(packaging().join(".."))
        .status()
        .unwrap();
    assert!(status.success(), "{builder} build failed");
}

#[test]
fn make_run_needs_only_rust_and_the_wasm_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("make")
        .args(["-n", "--no-print-directory", "run"])
        .current_dir(&root)
        .env_remove("MAKEFLAGS")
        .env_remove("CARGO")
        .output()
        .expect("make runs");
    assert!(out.status.success());
    let recipe = String::from_utf8(out.stdout).unwrap();
    let commands: Vec<&str> = recipe.lines().filter(|l| !l.starts_with("echo ")).collect();
    // What a fresh machine with only rustup needs: the targets, the build,
    // the run. No sudo, no packages, no virtualenv, no test services.
    assert_eq!(
        commands,
        [
            "rustup target add wasm32-unknown-unknown wasm32-wasip2",
            "cargo build --profile dist --locked -p levee --bin levee",
            "cargo run --profile dist --locked -p levee -- serve",
        ],
        "{recipe}"
    );
    for tool in [
        "sudo",
        "apt",
        "pip",
        "npm",
        "redis",
        "tinyproxy",
        "dnsmasq",
        "spin",
    ] {
        assert!(!recipe.contains(tool), "`make run` calls {tool}: {recipe}");
    }
}
