//! `GET /status` on the admin listener: the JSON a program reads, and the
//! page a person opens in a browser (a real headless Chromium).

use super::{MESSAGE, client, metric, post};
use levee_tests::levee::{ADMIN_TOKEN, Levee};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Two upstreams; the primary answers one 429 (closing it for a minute),
/// the backup serves.
async fn two_upstreams() -> (MockUpstream, MockUpstream, Levee) {
    let primary = MockUpstream::start(Script::always(Step::Reply(Reply::rate_limited(
        RetryAfter::Secs(60),
    ))))
    .await;
    let backup = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = super::primary_and_backup(&primary, &backup);
    (primary, backup, levee)
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_upstreams_budget_and_policy_as_json() {
    let (_primary, _backup, levee) = two_upstreams().await;
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 200, "served by the backup after the 429");

    let url = format!("{}/status", levee.admin_url());
    assert_eq!(client().get(&url).send().await.unwrap().status(), 401);
    let status: serde_json::Value = client()
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .expect("JSON");
    let ups = status["upstreams"].as_array().expect("upstreams");
    let names: Vec<_> = ups.iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["primary", "backup"]);
    assert_eq!(ups[1]["group"], 1);
    assert_eq!(ups[0]["in_flight"], 0);
    let now = status["now_ms"].as_u64().unwrap();
    let closed_until = ups[0]["rate_limited_until_ms"]
        .as_u64()
        .expect("the 429 closed the primary");
    assert!(
        (now + 50_000..=now + 60_000).contains(&closed_until),
        "closed for about the minute the 429 asked: {}",
        closed_until - now
    );
    assert!(ups[1]["rate_limited_until_ms"].is_null());
    assert_eq!(status["retry_budget"]["active"], 0);
    assert_eq!(status["policy"]["name"], "standard");
    assert_eq!(status["policy"]["config"]["max_attempts"], 4);
    assert_eq!(status["rails"]["max_body_bytes"], 32 << 20);
    assert_eq!(status["rails"]["body_limits"]["messages"], 32 << 20);
    assert_eq!(status["rails"]["body_limits"]["batches"], 256 << 20);
    assert_eq!(status["rails"]["body_limits"]["files"], 500 << 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_admission_queue_and_the_limiters_budgets() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = Levee::start(&format!(
        "{}\n[limits]\nqueue_size = 7\n\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n\
         [upstreams.limits]\nrequests_per_minute = 6\n",
        super::FAST_POLICY,
        upstream.url()
    ));
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);

    let status = super::status(&levee).await;
    let admission = &status["admission"];
    assert_eq!(
        admission["queue"],
        serde_json::json!({"depth": 0, "capacity": 7}),
        "{status}"
    );
    let ups = admission["upstreams"].as_array().expect("upstreams");
    assert_eq!(ups.len(), 1, "{admission}");
    assert_eq!(ups[0]["name"], "primary");
    let budgets = ups[0]["budgets"].as_array().expect("budgets");
    // The configured limit, once per model class: the API limits each
    // apart.
    let classes: Vec<&str> = budgets
        .iter()
        .map(|b| b["model_class"].as_str().expect("a class"))
        .collect();
    assert_eq!(
        classes,
        [
            "opus",
            "sonnet",
            "haiku",
            "count_tokens",
            "batches",
            "other"
        ],
        "{admission}"
    );
    for b in budgets {
        assert_eq!((&b["kind"], &b["limit"]), (&"requests".into(), &6.into()));
        // Six a minute refill one every 10 s: within the test, the one
        // Sonnet request leaves five of Sonnet's, and every other class
        // has all six.
        let left = if b["model_class"] == "sonnet" { 5 } else { 6 };
        assert_eq!(b["remaining"], left, "{admission}");
    }
    assert_eq!(
        status["upstreams"][0]["budgets"], ups[0]["budgets"],
        "the policy's view shows the same budgets"
    );
}

/// The page as Chromium renders it, logged in the way a person would: the
/// token as the Basic password, which the browser sends after the 401
/// challenge. Screenshots at a desktop and a phone width are kept in
/// `target/tmp/status-page/`.
#[tokio::test(flavor = "multi_thread")]
async fn a_browser_renders_the_status_page() {
    let (_primary, _backup, levee) = two_upstreams().await;
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);

    let url = format!("http://admin:{ADMIN_TOKEN}@{}/status", levee.admin);
    let dom = chromium_run(&url, &["--dump-dom"]);
    assert!(
        dom.contains("<title>levee status</title>"),
        "the page rendered: {dom}"
    );
    let row = |name: &str| {
        let start = dom
            .find(&format!("<td>{name}</td>"))
            .unwrap_or_else(|| panic!("a row for {name} in {dom}"));
        dom[start..start + dom[start..].find("</tr>").unwrap()].to_owned()
    };
    let primary = row("primary");
    assert!(
        primary.contains(" ms</td>"),
        "the primary shows how long it stays rate-limited: {primary}"
    );
    assert!(row("backup").contains("<td>-</td>"));
    assert!(dom.contains("id=\"policy\">standard"));
    assert!(
        dom.contains("id=\"queue\">0 of 1024 queued"),
        "the admission queue: {dom}"
    );
    assert!(!dom.contains(ADMIN_TOKEN), "the page never shows the token");
    assert!(!dom.contains("<script"), "the page has no script");
    for (i, name) in ["primary", "backup"].iter().enumerate() {
        let chart = format!(
            "<svg class=\"chart\" id=\"chart-{i}\" role=\"img\" aria-label=\"{name}: 1 attempt and "
        );
        assert!(dom.contains(&chart), "{name}'s chart: {dom}");
    }
    assert!(
        dom.contains("<td>rate-limited</td><td>primary</td>"),
        "the 429's closure is an event: {dom}"
    );

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&shots).unwrap();
    for (width, height) in [(1280, 1600), (420, 2400)] {
        let file = shots.join(format!("status-{width}.png"));
        let _ = std::fs::remove_file(&file);
        chromium_run(
            &url,
            &[
                &format!("--window-size={width},{height}"),
                &format!("--screenshot={}", file.display()),
                "--hide-scrollbars",
            ],
        );
        let png = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(&png[1..4], b"PNG", "{}", file.display());
        let png_width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert_eq!(png_width, width, "the screenshot is as wide as the window");
        println!("screenshot: {}", file.display());
    }
}

/// Runs headless Chromium on `url` with `args`; its standard output.
fn chromium_run(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs (make setup installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Debian's Chromium, as `make setup` installs it.
fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("chromium")
}

/// An upstream's (or egress proxy's) window of `name` (`1m`, `5m`, `15m`).
pub fn window<'a>(upstream: &'a Value, name: &str) -> &'a Value {
    upstream["activity"]["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .find(|w| w["window"] == name)
        .unwrap_or_else(|| panic!("no {name} window in {upstream}"))
}

/// The details of the events of `kind` in a `/status` snapshot, oldest
/// first.
pub fn event_details(status: &Value, kind: &str) -> Vec<String> {
    status["events"]
        .as_array()
        .expect("events")
        .iter()
        .rev()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Traffic over three upstreams, in failover order: `dead` refuses every
/// connection (and is ejected after two), `flaky` answers 503, 529 and a
/// 429 before it serves, `steady` always serves. Each window's counts are
/// the mocks' own; the dead upstream's are the connect failures the
/// metrics counted. Then a policy swap and a reload; the events show it
/// all, newest first.
#[tokio::test(flavor = "multi_thread")]
async fn the_windows_count_what_each_upstream_saw_and_the_events_come_in_order() {
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let flaky = MockUpstream::start(
        Script::of([
            Step::Reply(Reply::error(503, "api_error", "upstream trouble")),
            Step::Reply(Reply::overloaded()),
            Step::Reply(Reply::rate_limited(RetryAfter::Secs(1))),
        ])
        .otherwise(Step::Reply(Reply::message())),
    )
    .await;
    let steady = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = Levee::start(&format!(
        "{}\n[outlier]\nconsecutive_failures = 2\nbase_ejection_ms = 60000\n\n\
         [[upstreams]]\nname = \"dead\"\nurl = \"http://127.0.0.1:{}\"\ngroup = 0\n\n\
         [[upstreams]]\nname = \"flaky\"\nurl = \"{}\"\ngroup = 1\n\n\
         [[upstreams]]\nname = \"steady\"\nurl = \"{}\"\ngroup = 2\n",
        super::FAST_POLICY,
        closed_port(),
        flaky.url(),
        steady.url()
    ));
    // Until the flaky upstream has played its three failures and served.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while flaky.requests().len() < 5 {
        assert!(
            Instant::now() < deadline,
            "flaky saw {}",
            flaky.requests().len()
        );
        assert_eq!(post(&levee, MESSAGE).await.status(), 200);
        sent += 1;
    }
    let status = super::status(&levee).await;
    let ups = status["upstreams"].as_array().expect("upstreams");
    let (dead, flaky_s, steady_s) = (&ups[0], &ups[1], &ups[2]);

    let refused = metric(
        &levee,
        "levee_attempts_total{upstream=\"dead\",outcome=\"connect\"}",
    )
    .await as u64;
    assert_eq!(refused, 2, "two refusals eject it");
    let f = flaky.requests().len() as u64;
    let s = steady.requests().len() as u64;
    for name in ["1m", "5m", "15m"] {
        let w = window(dead, name);
        assert_eq!(w["attempts"], refused, "{name}: {w}");
        assert_eq!(w["counts"]["connect"], refused, "{name}: {w}");
        assert_eq!(w["errors"], refused);
        assert_eq!(w["success_share"], 0.0);
        assert!(w["ttfb_p50_ms"].is_null(), "no answer, no TTFB: {w}");
        let w = window(flaky_s, name);
        assert_eq!(w["attempts"], f, "{name}: {w}");
        let counts = &w["counts"];
        assert_eq!(
            [
                &counts["5xx"],
                &counts["529"],
                &counts["429"],
                &counts["ok"]
            ],
            [1, 1, 1, f - 3],
            "{name}: {w}"
        );
        assert_eq!(w["errors"], 3);
        let w = window(steady_s, name);
        assert_eq!(w["attempts"], s, "{name}: {w}");
        assert_eq!(w["counts"]["ok"], s);
        assert_eq!(w["errors"], 0);
    }
    assert_eq!(f - 3 + s, sent, "every request was served once");
    let w = window(flaky_s, "1m");
    let covered = w["covered_s"].as_f64().unwrap();
    assert!((0.0..=60.0).contains(&covered), "{w}");
    let rate = w["rate_per_s"].as_f64().unwrap();
    assert!(
        (rate - f as f64 / covered).abs() < 0.01 * rate.max(1.0),
        "the rate is attempts over the time covered: {w}"
    );
    let p99 = w["ttfb_p99_ms"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 5_000.0, "{w}");

    let series = &flaky_s["activity"]["series"];
    let sum = |key: &str| -> u64 {
        series[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert_eq!(series["attempts"].as_array().unwrap().len(), 90);
    assert_eq!((sum("attempts"), sum("errors")), (f, 3), "{series}");

    let last = &flaky_s["activity"]["last_error"];
    assert_eq!(last["layer"], "http");
    assert_eq!(
        last["message"],
        "HTTP 429 rate_limit_error: This request would exceed the rate limit for your organization. (retry after 1000 ms)",
        "the last failure was the 429: {last}"
    );
    let last = &dead["activity"]["last_error"];
    assert_eq!(last["layer"], "connect", "{last}");
    assert!(last["at_ms"].as_u64().unwrap() >= started_ms);
    assert!(steady_s["activity"]["last_error"].is_null());
    assert_eq!(dead["circuit"], "open");
    assert!(dead["circuit_since_ms"].as_u64().unwrap() >= started_ms);

    // A refused swap, a swap, then a reload: each an event, after the
    // traffic's.
    let refused = client()
        .post(format!("{}/policy", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"source": "builtin:no-such-policy"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let swapped = client()
        .post(format!("{}/policy", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"source": "builtin:standard", "config": {"max_attempts": 3}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(swapped.status(), 200);
    let reloaded = client()
        .post(format!("{}/reload", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);

    let status = super::status(&levee).await;
    let events = status["events"].as_array().expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|p| p[0] > p[1]),
        "newest first: {seqs:?}"
    );
    let at: Vec<u64> = events
        .iter()
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect();
    assert!(at.windows(2).all(|p| p[0] >= p[1]), "{at:?}");
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["upstream"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        kinds[..4],
        [
            ("reload", "-"),
            ("policy-swap", "-"),
            ("policy-swap", "-"),
            ("policy-refused", "-")
        ],
        "{events:#?}"
    );
    assert!(
        events[3]["detail"]
            .as_str()
            .unwrap()
            .contains("builtin:no-such-policy"),
        "{events:#?}"
    );
    let position = |kind: (&str, &str)| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind:?} in {events:#?}"))
    };
    assert!(
        position(("rate-limited", "flaky")) < position(("overloaded", "flaky")),
        "the 529 came before the 429: {kinds:?}"
    );
    assert!(position(("ejected", "dead")) > 3);
    assert_eq!(
        kinds.iter().filter(|k| k.0 == "ejected").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        events[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("reloaded; policy standard"),
        "{events:#?}"
    );
    // The reload kept every upstream, and so their windows.
    let again = &status["upstreams"][1];
    assert_eq!(window(again, "15m")["attempts"], f);
}

/// With no traffic, the JSON says so with nulls rather than zeros where a
/// ratio or a quantile would be, and the page says "no traffic yet".
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_upstream_reads_as_no_traffic_yet() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = Levee::start(&format!(
        "[[upstreams]]\nname = \"quiet\"\nurl = \"{}\"\n",
        upstream.url()
    ));
    let status = super::status(&levee).await;
    let w = window(&status["upstreams"][0], "15m");
    assert_eq!(w["attempts"], 0, "{w}");
    assert!(
        w["success_share"].is_null() && w["ttfb_p50_ms"].is_null(),
        "{w}"
    );
    assert!(
        status["policy"]["config"].is_null(),
        "no config: {}",
        status["policy"]
    );
    let page = client()
        .get(format!("{}/status", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<p class=\"idle\">no traffic yet</p>"),
        "{page}"
    );
    assert!(page.contains("<pre>(none)</pre>"), "{page}");
    assert!(page.contains("nothing has happened yet"), "{page}");
    assert_eq!(upstream.requests().len(), 0);
}
