use super::*;
use crate::config::Dns;
use tokio::net::TcpListener;

/// A one-shot fake proxy: reads the CONNECT head, answers `reply`, and
/// (on a 200) echoes what comes through the tunnel. Returns the head seen.
async fn fake_proxy(reply: &'static str) -> (ProxyEndpoint, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        s.write_all(reply.as_bytes()).await.unwrap();
        if reply.starts_with("HTTP/1.1 200") {
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        }
        String::from_utf8(head).unwrap()
    });
    let endpoint = parse_proxy(&format!("http://alice:s3cret@127.0.0.1:{port}")).unwrap();
    (endpoint, task)
}

/// A loopback port with nothing listening.
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn egress(proxies: Vec<ProxyEndpoint>) -> Egress {
    Egress::new(Arc::new("up".into()), proxies, &Activity::default())
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn connect_sends_the_target_and_basic_auth_then_tunnels() {
    let (endpoint, seen) = fake_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
    let e = egress(vec![endpoint]);
    let dns = Resolver::new(&Dns::default());
    let mut s = e.tunnel("api.example.com", 443, &dns, T).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");
    let head = seen.await.unwrap();
    assert!(
        head.starts_with("CONNECT api.example.com:443 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nHost: api.example.com:443\r\n"), "{head}");
    // base64("alice:s3cret")
    assert!(
        head.contains("\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn a_refusal_names_the_proxy_and_status_but_not_the_credentials() {
    let (endpoint, _seen) = fake_proxy("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
    let label = endpoint.label();
    let e = egress(vec![endpoint]);
    let dns = Resolver::new(&Dns::default());
    let err = e.tunnel("h", 443, &dns, T).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Proxy);
    assert_eq!(
        err.message,
        format!("proxy {label}: refused CONNECT to h:443: 407 Proxy Authentication Required")
    );
    assert!(!err.to_string().contains("s3cret") && !err.to_string().contains("alice"));
    assert!(
        e.proxies[0].healthy.load(Ordering::Relaxed),
        "an answering proxy is not marked down"
    );
}

#[tokio::test]
async fn a_dead_proxy_falls_through_to_the_next_within_the_call() {
    let dead = parse_proxy(&format!("127.0.0.1:{}", dead_port().await)).unwrap();
    let (backup, _seen) = fake_proxy("HTTP/1.0 200 OK\r\n\r\n").await;
    let e = egress(vec![dead, backup]);
    let before = e.generation();
    let dns = Resolver::new(&Dns::default());
    e.tunnel("h", 443, &dns, T)
        .await
        .expect("through the backup");
    assert!(!e.proxies[0].healthy.load(Ordering::Relaxed));
    assert_eq!(e.order(), vec![1, 0], "the backup is tried first now");
    assert_eq!(e.generation(), before + 1, "one switch");
    let in_use: Vec<bool> = e.in_use().map(|(_, u)| u).collect();
    assert_eq!(in_use, vec![false, true]);
    e.set_health(0, true);
    assert_eq!(
        e.order(),
        vec![0, 1],
        "back to the primary once it recovers"
    );
    assert_eq!(e.generation(), before + 2);
}

#[tokio::test]
async fn every_proxy_failing_is_a_proxy_error_listing_each() {
    let a = parse_proxy(&format!("127.0.0.1:{}", dead_port().await)).unwrap();
    let b = parse_proxy(&format!("127.0.0.1:{}", dead_port().await)).unwrap();
    let (la, lb) = (a.label(), b.label());
    let e = egress(vec![a, b]);
    let dns = Resolver::new(&Dns::default());
    let err = e.tunnel("h", 443, &dns, T).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Proxy);
    assert!(
        err.message
            .starts_with(&format!("proxy {la}: cannot connect")),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains(&format!("; proxy {lb}: cannot connect")),
        "{}",
        err.message
    );
    assert_eq!(e.active.load(Ordering::Relaxed), NONE);
}

#[test]
fn the_environment_names_a_proxy_per_scheme_unless_no_proxy_exempts() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let vars: &[(&str, &str)] = &[
        ("HTTPS_PROXY", "http://u:pw@10.0.0.1:3128"),
        ("http_proxy", "10.0.0.2:8080"),
        ("NO_PROXY", "internal.corp,127.0.0.1"),
    ];
    let https = from_env(env(vars), true, "api.anthropic.com", 443)
        .unwrap()
        .unwrap();
    assert_eq!(https.label(), "10.0.0.1:3128");
    assert_eq!(https.auth.unwrap().expose(), "u:pw");
    let http = from_env(env(vars), false, "api.anthropic.com", 80)
        .unwrap()
        .unwrap();
    assert_eq!(http.label(), "10.0.0.2:8080");
    assert!(
        from_env(env(vars), true, "x.internal.corp", 443)
            .unwrap()
            .is_none()
    );
    assert!(
        from_env(env(vars), true, "127.0.0.1", 443)
            .unwrap()
            .is_none()
    );
    assert!(from_env(env(&[]), true, "h", 443).unwrap().is_none());
    let lower_wins: &[(&str, &str)] = &[("HTTPS_PROXY", "a:1"), ("https_proxy", "b:2")];
    assert_eq!(
        from_env(env(lower_wins), true, "h", 443)
            .unwrap()
            .unwrap()
            .label(),
        "b:2"
    );
    let bad: &[(&str, &str)] = &[("HTTPS_PROXY", "socks5://u:pw@h:1")];
    let err = from_env(env(bad), true, "h", 443).unwrap_err().to_string();
    assert_eq!(
        err,
        "HTTPS_PROXY=\"socks5://[redacted]@h:1\" is not a usable proxy (only http:// proxies \
         (HTTP CONNECT) are supported); fix it, or set proxy_from_env = false"
    );
}

#[tokio::test]
async fn each_proxys_tunnels_failures_and_switches_show_in_its_status() {
    let dead = parse_proxy(&format!("127.0.0.1:{}", dead_port().await)).unwrap();
    let (backup, _seen) = fake_proxy("HTTP/1.1 403 Forbidden\r\n\r\n").await;
    let activity = Activity::default();
    let e = Egress::new(Arc::new("up".into()), vec![dead, backup], &activity);
    let dns = Resolver::new(&Dns::default());
    e.tunnel("h", 443, &dns, T).await.unwrap_err();
    let now = Instant::now();
    let status: Vec<_> = e.status().collect();
    let (a, b) = (&status[0], &status[1]);
    assert!(!a.healthy && !a.in_use && b.healthy && b.in_use);
    let tally = |p: &ProxyStatus<'_>| p.track.windows.tally(now, 1);
    assert_eq!(tally(a).count(Kind::Failed(FailureKind::Connect)), 1);
    assert_eq!(tally(a).attempts(), 1);
    assert_eq!(tally(b).count(Kind::Failed(FailureKind::Proxy)), 1);
    assert_eq!(tally(b).attempts(), 1);
    let refused = b.track.last_error().expect("the refusal is kept");
    assert_eq!(refused.layer, "proxy");
    assert_eq!(refused.message, "refused CONNECT to h:443: 403 Forbidden");
    assert_eq!(a.track.last_error().unwrap().layer, "connect");
    assert!(
        Arc::ptr_eq(&activity.proxy("up", a.label), &e.proxies[0].track),
        "the track outlives a reload"
    );
    let events = activity.events.recent();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventKind::ProxySwitch);
    assert_eq!(events[0].upstream.as_deref(), Some("up"));
    assert_eq!(events[0].detail, format!("{} → {}", a.label, b.label));
}
