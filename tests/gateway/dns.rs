//! DNS under levee's control, against a real `dnsmasq` on a loopback port:
//! configured resolvers, every address with failover, TTL re-resolution,
//! static overrides, and NXDOMAIN as a DNS error.

use super::{FAST_POLICY, MESSAGE, post};
use levee_tests::egress::{BlackHole, Dnsmasq};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Reply, Script};
use std::time::{Duration, Instant};

const NAME: &str = "api.levee.test";

/// A levee for `http://host:port` with `[dns]` settings `dns`, logging
/// each address a connect skips (`connect failed, ADDR: …`).
fn levee_dns(host: &str, port: u16, dns: &str) -> Levee {
    Levee::start_env(
        &format!(
            "{FAST_POLICY}\n[rails]\nmax_attempts = 1\n\n[[upstreams]]\nname = \"primary\"\n\
             url = \"http://{host}:{port}\"\n\n[dns]\n{dns}\n"
        ),
        &[("RUST_LOG", "info,levee::upstream::connect=debug".into())],
    )
}

async fn status_and_message(levee: &Levee) -> (u16, String) {
    let resp = post(levee, MESSAGE).await;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    (status, message.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_resolver_is_used_and_a_dead_address_is_skipped() {
    let upstream = MockUpstream::start(Script::new()).await;
    // 127.0.0.2 has nothing on the port: whichever order the answer has,
    // the live address serves.
    let dns = Dnsmasq::start(&[(NAME, "127.0.0.2"), (NAME, "127.0.0.1")], 60);
    let port = upstream.addr().port();
    let levee = levee_dns(NAME, port, &format!("resolvers = [\"{}\"]", dns.addr()));
    // Each answer closes its connection: every request dials again.
    upstream.set_script(Script::always(
        Reply::message().header("connection", "close"),
    ));
    for _ in 0..3 {
        let (status, message) = status_and_message(&levee).await;
        assert_eq!(status, 200, "{message}\n{}", levee.log());
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen.iter().map(|r| r.connection).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // The dead address was in the answer, and was tried and skipped.
    let skipped = format!("connect failed, 127.0.0.2:{port}: ");
    assert!(levee.log().contains(&skipped), "{}", levee.log());
    assert_eq!(
        seen[0].header("host"),
        Some(format!("{NAME}:{}", upstream.addr().port()).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overrides_are_tried_in_order_with_failover() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_dns(
        NAME,
        upstream.addr().port(),
        &format!("overrides = {{ \"{NAME}\" = [\"127.0.0.2\", \"127.0.0.1\"] }}"),
    );
    let (status, message) = status_and_message(&levee).await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(upstream.requests().len(), 1);
    let first = format!("connect failed, 127.0.0.2:{}: ", upstream.addr().port());
    assert!(levee.log().contains(&first), "{}", levee.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_override_bypasses_a_polluted_answer() {
    let upstream = MockUpstream::start(Script::new()).await;
    let port = upstream.addr().port();
    let dns = Dnsmasq::start(&[(NAME, "127.0.0.2")], 60);
    let resolvers = format!("resolvers = [\"{}\"]", dns.addr());
    let polluted = levee_dns(NAME, port, &resolvers);
    let (status, message) = status_and_message(&polluted).await;
    assert_eq!(status, 502);
    assert!(
        message.starts_with(&format!(
            "connect: cannot connect to {NAME}:{port} (127.0.0.2:{port}"
        )),
        "{message}"
    );
    let fixed = levee_dns(
        NAME,
        port,
        &format!("{resolvers}\noverrides = {{ \"{NAME}\" = [\"127.0.0.1\"] }}"),
    );
    let (status, message) = status_and_message(&fixed).await;
    assert_eq!(status, 200, "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_is_a_dns_error_in_the_api_shape() {
    let dns = Dnsmasq::start(&[(NAME, "127.0.0.1")], 60);
    let levee = levee_dns(
        "nowhere.levee.test",
        9,
        &format!("resolvers = [\"{}\"]", dns.addr()),
    );
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(
        body["error"]["message"],
        "dns: nowhere.levee.test does not exist (NXDOMAIN) (upstream `primary`, after 1 attempt)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_record_is_picked_up_after_its_ttl() {
    // Each response closes its connection, so each request resolves anew.
    let upstream = MockUpstream::start(Script::always(
        Reply::message().header("connection", "close"),
    ))
    .await;
    let port = upstream.addr().port();
    let mut dns = Dnsmasq::start(&[(NAME, "127.0.0.1")], 1);
    let levee = levee_dns(
        NAME,
        port,
        &format!(
            "resolvers = [\"{}\"]\nmin_ttl_ms = 0\nmax_ttl_ms = 60000",
            dns.addr()
        ),
    );
    let (status, message) = status_and_message(&levee).await;
    assert_eq!(status, 200, "{message}");
    dns.restart(&[(NAME, "127.0.0.2")], 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, message) = status_and_message(&levee).await;
        if status == 502 {
            assert!(message.contains(&format!("127.0.0.2:{port}")), "{message}");
            break;
        }
        assert_eq!(status, 200, "{message}");
        assert!(Instant::now() < deadline, "the new record was never used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_black_holed_first_address_costs_the_attempt_delay_not_the_connect_timeout() {
    let upstream = MockUpstream::start(Script::always(
        Reply::message().header("connection", "close"),
    ))
    .await;
    let port = upstream.addr().port();
    // The first address drops every SYN; the second serves. In turn, each
    // dial would wait out the 10 s connect timeout on the first.
    let hole = BlackHole::on(std::net::SocketAddr::from(([127, 0, 0, 2], port)));
    let levee = levee_dns(
        NAME,
        port,
        &format!("overrides = {{ \"{NAME}\" = [\"127.0.0.2\", \"127.0.0.1\"] }}"),
    );
    for _ in 0..3 {
        let started = Instant::now();
        let (status, message) = status_and_message(&levee).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{message}");
        // The black hole is tried first and given the attempt delay
        // (250 ms) before the next address starts.
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(3),
            "a request took {took:?} with {} black-holed",
            hole.addr
        );
    }
    assert_eq!(upstream.requests().len(), 3);
}
