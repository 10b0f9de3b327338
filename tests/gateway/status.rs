//! `GET /status` on the admin listener: the JSON a program reads, and the
//! page a person opens in a browser (a real headless Chromium).

use super::{MESSAGE, client, post};
use levee_tests::levee::{ADMIN_TOKEN, Levee};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};
use std::process::Command;

/// Two upstreams; the primary answers one 429 (closing it for a minute),
/// the backup serves.
async fn two_upstreams() -> (MockUpstream, MockUpstream, Levee) {
    let primary = MockUpstream::start(Script::always(Step::Reply(Reply::rate_limited(
        RetryAfter::Secs(60),
    ))))
    .await;
    let backup = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = Levee::start(&format!(
        "{}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n\n[[upstreams]]\nname = \"backup\"\nurl = \"{}\"\ngroup = 1\n",
        super::FAST_POLICY,
        primary.url(),
        backup.url()
    ));
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
    assert_eq!(budgets.len(), 1, "only the configured limit: {admission}");
    // Six a minute refill one every 10 s: within the test, one request
    // leaves five.
    assert_eq!(budgets[0]["kind"], "requests");
    assert_eq!(budgets[0]["limit"], 6);
    assert_eq!(budgets[0]["remaining"], 5, "{admission}");
    assert_eq!(
        status["upstreams"][0]["budgets"], ups[0]["budgets"],
        "the policy's view shows the same budgets"
    );
}

/// The page as Chromium renders it, logged in the way a person would: the
/// token as the Basic password, which the browser sends after the 401
/// challenge.
#[tokio::test(flavor = "multi_thread")]
async fn a_browser_renders_the_status_page() {
    let (_primary, _backup, levee) = two_upstreams().await;
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://admin:{ADMIN_TOKEN}@{}/status", levee.admin);
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
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs (make setup installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<title>levee status</title>"),
        "the page rendered; chromium said: {}",
        String::from_utf8_lossy(&out.stderr)
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
}

/// Debian's Chromium, as `make setup` installs it.
fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("chromium")
}
