//! Shutdown, hot swap, reload, the admin API, and config errors.

use super::{MESSAGE, STREAM_MESSAGE, client, header, levee_for, post};
use levee_tests::fixtures::Fixture;
use levee_tests::levee::{ADMIN_TOKEN, Levee};
use levee_tests::mock::{MockUpstream, Reply, Script, SseScript, Step};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_stream_in_flight_finish_and_refuses_new_connections() {
    let script = SseScript::message("a stream that takes a while to finish, word by word")
        .chunk_delay(Duration::from_millis(60));
    let expected = script.bytes();
    let upstream = MockUpstream::start(Script::always(Step::Sse(script))).await;
    let mut levee = levee_for(&upstream, "");
    let mut resp = post(&levee, STREAM_MESSAGE).await;
    let mut body = resp.chunk().await.unwrap().expect("first bytes").to_vec();
    levee.signal("TERM");
    // The listener closes; a new connection is refused.
    let addr = levee.addr.clone();
    let refused = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(&addr).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    });
    while let Some(chunk) = resp.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert!(refused.await.unwrap(), "levee kept accepting after SIGTERM");
    assert_eq!(body, expected, "the stream in flight finished whole");
    assert_eq!(levee.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Each thread of process `pid`: its name and how often it was switched
/// in (voluntary and involuntary context switches), by thread id.
fn context_switches(pid: u32) -> HashMap<String, (String, u64)> {
    let mut threads = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("levee runs") {
        let dir = task.unwrap().path();
        let (Ok(name), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // the thread ended
        };
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        let tid = dir.file_name().unwrap().to_string_lossy().into_owned();
        threads.insert(tid, (name.trim().to_owned(), switches));
    }
    threads
}

/// An idle gateway does not wake up: once a request has set the policy
/// engine's epoch ticker and the access-log flusher going, both park when
/// there is nothing left to do (they used to wake 40 and 50 times a
/// second, forever). Passes once any one second, within ten, goes by with
/// no thread switched in more than twice.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_gateway_does_not_wake_up() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = levee_for(&upstream, "");
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    let mut woke = Vec::new();
    for _ in 0..10 {
        let before = context_switches(levee.pid());
        tokio::time::sleep(Duration::from_secs(1)).await;
        woke = context_switches(levee.pid())
            .into_iter()
            .filter_map(|(tid, (name, after))| {
                let n = after - before.get(&tid).map_or(0, |(_, b)| *b);
                (n > 2).then(|| format!("{name} ({tid}): {n}"))
            })
            .collect();
        if woke.is_empty() {
            return;
        }
    }
    panic!("no second went by without these threads waking: {woke:?}");
}

async fn swap(levee: &Levee, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = client()
        .post(format!("{}/policy", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn active_policy(levee: &Levee) -> String {
    let v: serde_json::Value = client()
        .get(format!("{}/policy", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["name"].as_str().unwrap().to_owned()
}

/// Every request is answered 529 once, then 200: each needs the policy's
/// `on-outcome` and a second attempt, so the swaps land between a
/// request's attempts, while it waits out its backoff.
#[tokio::test(flavor = "multi_thread")]
async fn swapping_the_policy_under_load_fails_no_request() {
    const REQUEST: &str = "x-test-request";
    let upstream = MockUpstream::start(
        Script::always(Step::Reply(Reply::message()))
            .first_sight(REQUEST, Step::Reply(Reply::overloaded())),
    )
    .await;
    let levee = Arc::new(levee_for(&upstream, ""));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    // (sent, answered) of every request.
    let spans = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (levee, stop, done, spans) = (levee.clone(), stop.clone(), done.clone(), spans.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sent = Instant::now();
                let resp = client
                    .post(format!("{}/v1/messages", levee.url()))
                    .header(REQUEST, format!("{worker}-{n}"))
                    .body(MESSAGE)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "a request failed during a swap");
                assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
                resp.bytes().await.unwrap();
                spans.lock().unwrap().push((sent, Instant::now()));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut swaps = Vec::new();
    for i in 0..10 {
        let name = if i % 2 == 0 {
            "interactive"
        } else {
            "standard"
        };
        let asked = Instant::now();
        let (status, body) = swap(
            &levee,
            serde_json::json!({"source": format!("builtin:{name}")}),
        )
        .await;
        swaps.push((asked, Instant::now()));
        assert_eq!(status, 200, "{body}");
        assert!(
            body["swapped"]["to"].as_str().unwrap().starts_with(name),
            "{body}"
        );
        let before = done.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::Relaxed) < before + 20 {
            assert!(Instant::now() < deadline, "requests stopped finishing");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("no worker saw a failure");
    }
    let spans = spans.lock().unwrap();
    assert!(spans.len() >= 200);
    assert_eq!(
        upstream.requests().len(),
        2 * spans.len(),
        "two attempts each"
    );
    // The swaps really landed inside requests: sent before the swap was
    // asked for, answered after it was done.
    let straddled = spans
        .iter()
        .filter(|(sent, answered)| {
            swaps
                .iter()
                .any(|(asked, swapped)| sent < asked && answered > swapped)
        })
        .count();
    assert!(
        straddled >= 10,
        "only {straddled} requests were in flight across a swap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_policy_is_refused_and_the_old_one_keeps_serving() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    for (fixture, stage) in [
        (Fixture::Trap, "self-check"),
        (Fixture::WasiImport, "imports"),
        (Fixture::WrongWorld, "exports"),
    ] {
        let (status, body) = swap(&levee, serde_json::json!({"source": fixture.path()})).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["refused"]["stage"], stage, "{body}");
        assert!(
            body["active"].as_str().unwrap().starts_with("standard@"),
            "{body}"
        );
    }
    let (status, body) = swap(
        &levee,
        serde_json::json!({"source": "builtin:standard", "config": {"max_attempts": 0}}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["refused"]["stage"], "configure");
    assert!(
        body["refused"]["message"]
            .as_str()
            .unwrap()
            .contains("`max_attempts`"),
        "{body}"
    );
    assert_eq!(active_policy(&levee).await, "standard");
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_requires_its_token_except_for_liveness() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    let url = format!("{}/policy", levee.admin_url());
    assert_eq!(client().get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        client()
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client()
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let health = client()
        .get(format!("{}/healthz", levee.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A browser that logged in to `/status` (Basic) may read, but a page on
/// another site cannot make it change anything: changes need a Bearer
/// token, JSON, and no cross-site origin.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_cannot_make_a_logged_in_browser_swap_the_policy() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    let url = format!("{}/policy", levee.admin_url());
    let interactive = serde_json::json!({"source": "builtin:interactive"});
    // The Basic login reads.
    let read = client()
        .get(&url)
        .basic_auth("admin", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let forged = [
        client()
            .post(&url)
            .basic_auth("admin", Some(ADMIN_TOKEN))
            .json(&interactive),
        client()
            .post(&url)
            .bearer_auth(ADMIN_TOKEN)
            .header("sec-fetch-site", "cross-site")
            .json(&interactive),
        // What an HTML form can send without a CORS preflight.
        client()
            .post(&url)
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "text/plain")
            .body(interactive.to_string()),
        client()
            .post(format!("{}/reload", levee.admin_url()))
            .basic_auth("admin", Some(ADMIN_TOKEN)),
    ];
    let mut statuses = Vec::new();
    for request in forged {
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 403, 415, 401]);
    assert_eq!(active_policy(&levee).await, "standard", "nothing changed");
    // The tool's way still works.
    let (status, body) = swap(&levee, interactive).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(active_policy(&levee).await, "interactive");
}

/// A policy path that never ends, or is not a file, is refused at once and
/// the old policy keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_source_that_is_not_a_bounded_file_is_refused() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    for (source, why) in [
        ("/dev/zero", "not a regular file"),
        ("/tmp", "not a regular file"),
    ] {
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(10),
            swap(&levee, serde_json::json!({"source": source})),
        )
        .await
        .expect("refused at once");
        assert_eq!(status, 422, "{body}");
        let message = body["refused"]["message"].as_str().unwrap();
        assert!(message.contains(source) && message.contains(why), "{body}");
    }
    let big = levee.dir().join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let (status, body) = swap(&levee, serde_json::json!({"source": big})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["refused"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 64 MiB"),
        "{body}"
    );
    assert_eq!(active_policy(&levee).await, "standard");
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_policy_from_the_config_file() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    assert_eq!(active_policy(&levee).await, "standard");
    let path = levee.dir().join("levee.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("builtin:standard", "builtin:interactive");
    std::fs::write(&path, text).unwrap();
    levee.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while active_policy(&levee).await != "interactive" {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not swap the policy:\n{}",
            levee.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(
        (resp.status().as_u16(), header(&resp, "x-levee-attempts")),
        (200, Some("1"))
    );
    // Nothing that only a restart applies changed: nothing is named.
    assert!(
        levee.log().contains("SIGHUP: reloaded; policy"),
        "{}",
        levee.log()
    );
    assert!(
        !levee.log().contains("a restart is needed"),
        "{}",
        levee.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_names_the_changed_settings_only_a_restart_applies() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    let path = levee.dir().join("levee.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("shutdown_grace_ms = 10000", "shutdown_grace_ms = 20000")
        .replace("builtin:standard", "builtin:interactive");
    // Reloadable and restart-only changes together; [otel] is appended
    // last, after the admin table the harness wrote.
    std::fs::write(
        &path,
        format!("{text}\n[otel]\nendpoint = \"http://127.0.0.1:9\"\n"),
    )
    .unwrap();
    levee.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !levee.log().contains("SIGHUP: reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload:\n{}",
            levee.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = levee.log();
    assert!(
        log.contains("a restart is needed to change shutdown_grace_ms, otel"),
        "{log}"
    );
    // What a reload can change, it did.
    assert_eq!(active_policy(&levee).await, "interactive");
}

#[test]
fn a_config_error_stops_start_up_with_the_exact_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[rails]\nmax_attempts = 0\n").unwrap();
    let out = std::process::Command::new(levee_tests::levee_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a config error exits 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}: `rails.max_attempts` must be between 1 and 20, got 0",
            path.display()
        )
    );
}

/// A first SIGTERM drains; a second, during the grace period, exits at
/// once and says how many connections it cut.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once_and_says_what_it_cut() {
    // About 30 s of stream: well past the harness's 10 s grace.
    let script = SseScript::message(&"word ".repeat(100)).chunk_delay(Duration::from_millis(300));
    let upstream = MockUpstream::start(Script::always(Step::Sse(script))).await;
    let mut levee = levee_for(&upstream, "");
    let mut resp = post(&levee, STREAM_MESSAGE).await;
    assert!(resp.chunk().await.unwrap().is_some(), "the stream started");
    levee.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !levee.log().contains("shutting down") {
        assert!(Instant::now() < deadline, "{}", levee.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        levee.wait_exit(Duration::from_millis(500)),
        None,
        "the first signal drains: the stream goes on"
    );
    let second = Instant::now();
    levee.signal("INT");
    assert_eq!(levee.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "exited at once, not after the grace period"
    );
    let log = levee.log();
    assert!(
        log.contains("levee: stopped at once on a second signal; cut 1 open connections"),
        "{log}"
    );
    // The client sees the stream end short of message_stop.
    let mut rest = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        rest.extend_from_slice(&chunk);
    }
    assert!(!String::from_utf8_lossy(&rest).contains("message_stop"));
}
