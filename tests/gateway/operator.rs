//! What operators of nginx, Envoy and Caddy expect: probes and scrapes
//! without a token on a loopback admin listener, readiness, the build in
//! the metrics, and the command line over the environment over the file.

use super::{MESSAGE, client, levee_for, post};
use levee_tests::levee::{ADMIN_TOKEN, Levee};
use levee_tests::mock::{MockUpstream, Script};
use std::time::Duration;

async fn get(url: String) -> (u16, String) {
    let resp = client().get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loopback_admin_is_scraped_without_a_token_and_nothing_else_is() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    let (status, metrics) = get(format!("{}/metrics", levee.admin_url())).await;
    assert_eq!(status, 200, "{metrics}");
    let build = metrics
        .lines()
        .find(|l| l.starts_with("levee_build_info{"))
        .unwrap_or_else(|| panic!("no levee_build_info:\n{metrics}"));
    for label in [
        format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        "git_hash=\"".into(),
        "wasmtime=\"".into(),
    ] {
        assert!(build.contains(&label), "{build}");
    }
    assert!(build.ends_with("} 1"), "{build}");
    assert!(
        !build.contains("\"unknown\""),
        "a git checkout and a lock file: {build}"
    );
    // Everything else still needs the token.
    assert_eq!(get(format!("{}/status", levee.admin_url())).await.0, 401);
    assert_eq!(get(format!("{}/policy", levee.admin_url())).await.0, 401);

    let closed = levee_for(&upstream, "[admin]\nopen_metrics = false\n");
    assert_eq!(get(format!("{}/metrics", closed.admin_url())).await.0, 401);
    let with_token = client()
        .get(format!("{}/metrics", closed.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_says_ready_until_no_upstream_is_usable_and_why() {
    let port = levee_tests::egress::free_port();
    // Nothing listens there: the first connect is refused, and one failure
    // ejects the only upstream for a minute.
    let levee = Levee::start(&format!(
        "[outlier]\nconsecutive_failures = 1\nbase_ejection_ms = 60000\n\n\
         [[upstreams]]\nname = \"primary\"\nurl = \"http://127.0.0.1:{port}\"\n"
    ));
    let ready = format!("{}/readyz", levee.admin_url());
    let (status, body) = get(ready.clone()).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["usable_upstreams"], serde_json::json!(["primary"]));
    assert!(
        body["policy"].as_str().unwrap().starts_with("standard@"),
        "{body}"
    );

    assert_eq!(post(&levee, MESSAGE).await.status(), 502);
    let (status, body) = get(ready).await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(
        body["reason"], "no upstream is usable: primary (circuit open)",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_flag_wins_over_rust_log() {
    let upstream = MockUpstream::start(Script::new()).await;
    // The harness sets RUST_LOG=info, under which every request has an
    // access line; `--log warn` must silence them.
    for (args, access) in [(&[][..], true), (&["--log", "warn"][..], false)] {
        let levee = Levee::start_with(
            &format!(
                "[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n",
                upstream.url()
            ),
            args,
        );
        assert_eq!(post(&levee, MESSAGE).await.status(), 200);
        if access {
            // The path ran and logs: its line comes once the body ends.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !levee.log().contains("levee::access") {
                assert!(std::time::Instant::now() < deadline, "{}", levee.log());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            // Shut down cleanly, so that anything batched is written.
            let mut levee = levee;
            levee.signal("TERM");
            assert_eq!(levee.wait_exit(Duration::from_secs(20)), Some(0));
            assert!(!levee.log().contains("levee::access"), "{}", levee.log());
        }
    }
}

/// `levee ARGS` in `dir` with only `env` for the config's whereabouts.
fn levee_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &std::path::Path)],
) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(levee_tests::levee_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("LEVEE_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", dir.join("home"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("levee runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_config_is_found_where_the_peers_look_in_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let (cwd, xdg, var) = (
        dir.path().join("cwd"),
        dir.path().join("xdg"),
        dir.path().join("var.toml"),
    );
    std::fs::create_dir_all(cwd.join("home/.config/levee")).unwrap();
    std::fs::create_dir_all(xdg.join("levee")).unwrap();
    // Each file tells itself apart by its worker count.
    let flag = dir.path().join("flag.toml");
    for (path, workers) in [
        (flag.clone(), 1),
        (var.clone(), 2),
        (cwd.join("levee.toml"), 3),
        (xdg.join("levee/levee.toml"), 4),
        (cwd.join("home/.config/levee/levee.toml"), 5),
    ] {
        std::fs::write(&path, format!("workers = {workers}\n")).unwrap();
    }
    let check = |args: &[&str], env: &[(&str, &std::path::Path)]| {
        let (code, out, err) = levee_in(&cwd, args, env);
        assert_eq!(code, 0, "{out}{err}");
        let first = out.lines().next().unwrap().to_owned();
        let workers = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("workers: "))
            .unwrap()
            .trim_end_matches(',')
            .to_owned();
        (first, workers)
    };
    let flag_arg = flag.to_str().unwrap();
    let all = [
        ("LEVEE_CONFIG", var.as_path()),
        ("XDG_CONFIG_HOME", xdg.as_path()),
    ];
    assert_eq!(
        check(&["config", "check", flag_arg], &all).1,
        "1",
        "the flag first"
    );
    assert_eq!(
        check(&["config", "check"], &all).1,
        "2",
        "then $LEVEE_CONFIG"
    );
    let (first, workers) = check(&["config", "check"], &all[1..]);
    assert_eq!(
        (first.as_str(), workers.as_str()),
        ("levee.toml: ok", "3"),
        "then ./levee.toml"
    );
    std::fs::remove_file(cwd.join("levee.toml")).unwrap();
    assert_eq!(
        check(&["config", "check"], &all[1..]).1,
        "4",
        "then $XDG_CONFIG_HOME"
    );
    assert_eq!(check(&["config", "check"], &[]).1, "5", "then ~/.config");
    std::fs::remove_file(cwd.join("home/.config/levee/levee.toml")).unwrap();
    if !std::path::Path::new("/etc/levee/levee.toml").exists() {
        let (first, workers) = check(&["config", "check"], &[]);
        assert_eq!(first, "no config file found: the defaults are");
        assert_eq!(workers, "0");
    }
}

#[test]
fn config_check_prints_the_config_with_secrets_redacted_or_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "request_deadline_ms = 1\n[admin]\ntoken_env = \"LEVEE_CHECK_TOKEN\"\n[rails]\nrequest_deadline_ms = \"20m\"\n",
    )
    .unwrap();
    // An unknown top-level key: the first line names it.
    let (code, _, err) = levee_in(
        dir.path(),
        &["config", "check", good.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("request_deadline_ms"), "{err}");

    std::fs::write(
        &good,
        "[admin]\ntoken_env = \"LEVEE_CHECK_TOKEN\"\n[rails]\nrequest_deadline_ms = \"20m\"\n",
    )
    .unwrap();
    let secret = dir.path().join("secret-value-42");
    let (code, out, err) = levee_in(
        dir.path(),
        &["config", "check", good.to_str().unwrap()],
        &[("LEVEE_CHECK_TOKEN", secret.as_path())],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("{}: ok\n", good.display())),
        "{out}"
    );
    assert!(out.contains("request_deadline: 1200s"), "{out}");
    assert!(out.contains("[redacted]"), "{out}");
    assert!(!out.contains("secret-value-42"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"nowhere\"\n[rails]\nmax_attempts = 0\n").unwrap();
    let (code, out, err) = levee_in(dir.path(), &["config", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("`listen` must be an address"), "{err}");
    assert!(
        err.contains("`rails.max_attempts` must be between 1 and 20, got 0"),
        "{err}"
    );
    // A usage error is 2 as well; a failure at run time is 1.
    assert_eq!(levee_in(dir.path(), &["config", "frobnicate"], &[]).0, 2);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = levee_in(dir.path(), &["serve", "--listen", &addr], &[]);
    assert_eq!(code, 1, "a port in use is a failure at run time: {err}");
    assert!(err.contains("Address already in use"), "{err}");
}
