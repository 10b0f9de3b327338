//! Egress through real `tinyproxy` processes: traffic goes through the
//! primary, moves to the backup when the primary is killed (no failed
//! request), and back when it returns. Proven from tinyproxy's own logs.

use super::{FAST_POLICY, MESSAGE, client, post};
use levee_tests::egress::{Tinyproxy, free_port};
use levee_tests::levee::{ADMIN_TOKEN, Levee};
use levee_tests::mock::{Chain, MockUpstream, Script, TestPki};
use std::time::{Duration, Instant};

const USER: &str = "levee-user";
const PASSWORD: &str = "pw-Zq81-never-logged";

fn levee_via(upstream: &MockUpstream, proxies: &[String]) -> Levee {
    let list: Vec<String> = proxies.iter().map(|p| format!("\"{p}\"")).collect();
    Levee::start(&format!(
        "{FAST_POLICY}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n\
         proxies = [{}]\nproxy_check_interval_ms = 100\nconnect_timeout_ms = 2000\n",
        upstream.url(),
        list.join(", ")
    ))
}

async fn ok(levee: &Levee) {
    let resp = post(levee, MESSAGE).await;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}\n{}", levee.log());
}

/// Sends requests (each must succeed) until `done`, at most 20 s.
async fn until(levee: &Levee, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}\n{}", levee.log());
        ok(levee).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(levee: &Levee) -> String {
    client()
        .get(format!("{}/metrics", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin answers")
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_primary_proxy_carries_traffic_the_backup_takes_over_and_gives_it_back() {
    let upstream = MockUpstream::start(Script::new()).await;
    let port = upstream.addr().port();
    let mut primary = Tinyproxy::start(port, Some((USER, PASSWORD)));
    let backup = Tinyproxy::start(port, None);
    let levee = levee_via(&upstream, &[primary.url(), backup.url()]);

    for _ in 0..5 {
        ok(&levee).await;
    }
    assert!(primary.connects() >= 1, "the primary carried the tunnel");
    assert_eq!(
        backup.connects(),
        0,
        "the backup idles while the primary is up"
    );
    let text = metrics(&levee).await;
    let in_use = |p: &Tinyproxy| {
        format!(
            "levee_egress_proxy_in_use{{upstream=\"primary\",proxy=\"127.0.0.1:{}\"}} 1",
            p.port
        )
    };
    assert!(text.contains(&in_use(&primary)), "{text}");

    primary.kill();
    for _ in 0..20 {
        ok(&levee).await;
    }
    assert!(backup.connects() >= 1, "the backup carried traffic");
    let text = metrics(&levee).await;
    assert!(text.contains(&in_use(&backup)), "{text}");

    let before = primary.connects();
    primary.restart();
    until(&levee, "traffic returned to the primary", || {
        primary.connects() > before
    })
    .await;
    let backup_after = backup.connects();
    for _ in 0..10 {
        ok(&levee).await;
    }
    assert_eq!(backup.connects(), backup_after, "the backup is idle again");

    let log = levee.log();
    assert!(log.contains("egress proxy switched"), "{log}");
    assert!(!log.contains(PASSWORD) && !log.contains(USER), "{log}");
    let text = metrics(&levee).await;
    assert!(!text.contains(PASSWORD) && !text.contains(USER), "{text}");

    // /status: each proxy's tunnels as tinyproxy logged them, which one is
    // in use, and the two switches in order.
    let status = super::status(&levee).await;
    let proxies = status["upstreams"][0]["proxies"]
        .as_array()
        .expect("proxies");
    let label = |p: &Tinyproxy| format!("127.0.0.1:{}", p.port);
    assert_eq!(proxies.len(), 2, "{proxies:?}");
    assert_eq!(proxies[0]["proxy"], label(&primary));
    assert_eq!(
        (&proxies[0]["in_use"], &proxies[0]["healthy"]),
        (&true.into(), &true.into())
    );
    assert_eq!(proxies[1]["in_use"], false);
    for (p, proxy) in [(&primary, &proxies[0]), (&backup, &proxies[1])] {
        let tunnels = &super::status::window(proxy, "15m")["counts"]["ok"];
        assert_eq!(*tunnels, p.connects(), "{proxy}");
    }
    let switches = super::status::event_details(&status, "proxy-switch");
    let (p, b) = (label(&primary), label(&backup));
    assert_eq!(
        switches[..2],
        [format!("{p} → {b}"), format!("{b} → {p}")],
        "{switches:?}"
    );
    assert!(!status.to_string().contains(PASSWORD), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_only_proxy_gone_is_a_proxy_error_naming_it_without_credentials() {
    let upstream = MockUpstream::start(Script::new()).await;
    let mut proxy = Tinyproxy::start(upstream.addr().port(), Some((USER, PASSWORD)));
    let levee = levee_via(&upstream, &[proxy.url()]);
    ok(&levee).await;
    assert!(proxy.connects() >= 1);
    proxy.kill();
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    let expected = format!("proxy: proxy 127.0.0.1:{}: ", proxy.port);
    assert!(message.starts_with(&expected), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");
    assert!(!levee.log().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_refused_by_the_proxy_and_said_so() {
    let upstream = MockUpstream::start(Script::new()).await;
    let proxy = Tinyproxy::start(upstream.addr().port(), Some((USER, PASSWORD)));
    let wrong = format!("http://{USER}:not-it@127.0.0.1:{}", proxy.port);
    let levee = levee_via(&upstream, &[wrong]);
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    // tinyproxy answers a bad Proxy-Authorization with 401, not 407.
    let expected = format!(
        "proxy: proxy 127.0.0.1:{}: refused CONNECT to {}: 401 Unauthorized",
        proxy.port,
        upstream.addr()
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(!message.contains("not-it"), "{message}");
    assert_eq!(upstream.requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_proxy_from_the_environment_is_honoured_and_no_proxy_exempts() {
    let upstream = MockUpstream::start(Script::new()).await;
    let proxy = Tinyproxy::start(upstream.addr().port(), None);
    let config = format!(
        "{FAST_POLICY}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n",
        upstream.url()
    );
    let env_proxy = [("HTTP_PROXY", proxy.url()), ("NO_PROXY", String::new())];
    let levee = Levee::start_env(&config, &env_proxy);
    ok(&levee).await;
    assert_eq!(proxy.connects(), 1, "through the environment's proxy");

    let exempt = [
        ("HTTP_PROXY", proxy.url()),
        ("NO_PROXY", "example.com,127.0.0.1".to_owned()),
    ];
    let levee = Levee::start_env(&config, &exempt);
    ok(&levee).await;
    assert_eq!(proxy.connects(), 1, "NO_PROXY sent it direct");

    let off = format!("{config}proxy_from_env = false\n");
    let levee = Levee::start_env(&off, &env_proxy);
    ok(&levee).await;
    assert_eq!(proxy.connects(), 1, "proxy_from_env = false ignores it");

    let dead = [("HTTP_PROXY", format!("http://127.0.0.1:{}", free_port()))];
    let levee = Levee::start_env(&config, &dead);
    assert_eq!(
        post(&levee, MESSAGE).await.status(),
        502,
        "a dead env proxy is used, not bypassed"
    );
}

/// `HTTPS_PROXY` carries an https upstream (its TLS inside the CONNECT
/// tunnel), and `HTTP_PROXY` does not: each scheme has its own variable.
#[tokio::test(flavor = "multi_thread")]
async fn https_proxy_from_the_environment_carries_https_upstreams_only() {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::Full)).await;
    let proxy = Tinyproxy::start(upstream.addr().port(), None);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{FAST_POLICY}\n[[upstreams]]\nname = \"secure\"\nurl = \"https://localhost:{}\"\n\
         [upstreams.tls]\nca_file = \"{}\"\n",
        upstream.addr().port(),
        pki.write_ca(dir.path()).display()
    );
    let levee = Levee::start_env(
        &config,
        &[("HTTPS_PROXY", proxy.url()), ("NO_PROXY", String::new())],
    );
    ok(&levee).await;
    assert_eq!(proxy.connects(), 1, "through HTTPS_PROXY");
    assert_eq!(upstream.requests().len(), 1);

    let levee = Levee::start_env(
        &config,
        &[("HTTP_PROXY", proxy.url()), ("NO_PROXY", String::new())],
    );
    ok(&levee).await;
    assert_eq!(proxy.connects(), 1, "HTTP_PROXY is not for https upstreams");
    assert_eq!(upstream.requests().len(), 2);
}
