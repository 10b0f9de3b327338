//! The policy template, built exactly as docs/policy-authoring.md says (the
//! test runs the guide's blocks marked `tested`), loaded by
//! `levee policy check`, and swapped into a running levee.

use levee_tests::levee::{ADMIN_TOKEN, Levee};
use levee_tests::mock::{MockUpstream, Reply, Script, Step};
use levee_tests::{levee_bin, workspace};
use std::path::Path;
use std::process::Command;

/// The shell block that follows `<!-- tested: NAME -->` in the guide.
fn guide_block(name: &str) -> String {
    let guide = std::fs::read_to_string(workspace().join("docs/policy-authoring.md")).unwrap();
    let marker = format!("<!-- tested: {name} -->");
    let after = &guide[guide.find(&marker).unwrap_or_else(|| panic!("no {marker}"))..];
    let body = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .unwrap_or_else(|| panic!("no sh block after {marker}"))
        .0;
    body.to_owned()
}

/// Runs a guide block with `sh -eu` in `dir`, the `levee` under test first
/// on `PATH`; returns its stdout.
fn run_block(name: &str, dir: &Path, env: &[(&str, &str)]) -> String {
    let bin_dir = levee_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-eu", "-c", &guide_block(name)])
        .current_dir(dir)
        .env("PATH", path)
        .env("LEVEE", workspace())
        // The template's dependencies compile once per target dir, not per run.
        .env("CARGO_TARGET_DIR", template_target())
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .envs(env.iter().copied())
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the guide's `{name}` block failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `template/` in the build's target directory.
fn template_target() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), Into::into)
        .join("template")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_template_builds_as_the_guide_says_checks_and_swaps_in() {
    let dir = tempfile::tempdir().unwrap();
    let built = run_block("build", dir.path(), &[]);
    assert!(built.contains("imports:    (none)"), "{built}");
    assert!(built.contains("policy:     my-policy 0.1.0"), "{built}");
    assert!(built.contains("self-check: ok"), "{built}");

    // Swap it into a running levee with the guide's own command.
    let upstream = MockUpstream::start(Script::of([Step::Reply(Reply::overloaded())])).await;
    let levee = Levee::start(&format!(
        "[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n",
        upstream.url()
    ));
    let deployed = run_block(
        "deploy",
        &dir.path().join("my-policy"),
        &[
            ("LEVEE_ADMIN", &levee.admin),
            ("LEVEE_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    assert!(deployed.contains("\"swapped\""), "{deployed}");
    let client = reqwest::Client::new();
    let status: serde_json::Value = client
        .get(format!("{}/policy", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["name"], "my-policy", "{status}");

    // It serves: a 529, then a retry the template decides, then a 200.
    let resp = client
        .post(format!("{}/v1/messages", levee.url()))
        .header("content-type", "application/json")
        .body(super::MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-levee-attempts"], "2");
}
