//! The tracker (breaker, active verdicts, ejection share) and the active
//! prober against real loopback listeners.

use super::active::Prober;
use super::*;
use crate::config::{Config, HealthCheck, HttpProbe, Overrides, Upstream};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn outlier() -> Outlier {
    Outlier {
        consecutive_failures: 2,
        base_ejection: Duration::from_secs(1),
        ..Outlier::default()
    }
}

fn tracker(ejections: &Arc<Ejections>) -> Tracker {
    Tracker::new(
        Arc::new("a".into()),
        outlier(),
        ejections.clone(),
        Arc::default(),
    )
}

#[test]
fn every_transition_is_an_event_and_moves_its_since() {
    let events = Arc::new(Events::default());
    let t = Tracker::new(
        Arc::new("a".into()),
        outlier(),
        Arc::new(Ejections::new(1, 50)),
        events.clone(),
    );
    let made = t.circuit_since.swap(0, Ordering::Relaxed);
    t.health_since.store(0, Ordering::Relaxed);
    t.checked(&Err("connect: refused".into()), 1, 1);
    t.record(0, true);
    assert!(events.recent().len() == 1, "one failure ejects nothing");
    t.record(1, true);
    t.view(1_001);
    t.begin(1_002);
    t.record(1_003, false);
    let seen: Vec<_> = events
        .recent()
        .iter()
        .rev()
        .map(|e| (e.kind, e.upstream.clone().unwrap(), e.detail.clone()))
        .collect();
    let a = || "a".to_owned();
    assert_eq!(
        seen,
        [
            (EventKind::Unhealthy, a(), "connect: refused".into()),
            (
                EventKind::Ejected,
                a(),
                "by the consecutive rule, for 1000 ms".into()
            ),
            (EventKind::HalfOpen, a(), "probing".into()),
            (EventKind::Reinstated, a(), "circuit closed".into()),
        ]
    );
    assert!(t.circuit_since.load(Ordering::Relaxed) >= made);
    assert!(t.health_since.load(Ordering::Relaxed) >= made);
}

#[test]
fn broken_means_5xx_other_than_529() {
    assert!(is_broken(500) && is_broken(503) && is_broken(504));
    assert!(!is_broken(529) && !is_broken(429) && !is_broken(200) && !is_broken(404));
}

#[test]
fn the_ejection_share_is_at_least_one_and_bounds_open_circuits() {
    assert_eq!(Ejections::new(2, 10).allowed, 1);
    assert_eq!(Ejections::new(10, 30).allowed, 3);
    assert_eq!(Ejections::new(3, 0).allowed, 0);
    let shared = Arc::new(Ejections::new(3, 50));
    let (a, b) = (tracker(&shared), tracker(&shared));
    a.record(0, true);
    a.record(1, true);
    assert_eq!(a.view(2).1, Circuit::Open);
    b.record(0, true);
    b.record(1, true);
    assert_eq!(b.view(2).1, Circuit::Closed, "one of three may be ejected");
    // `a` recovers: its share is free again, and `b` can be ejected.
    a.begin(1_001);
    a.record(1_002, false);
    assert_eq!(a.view(1_003).1, Circuit::Closed);
    b.record(1_004, true);
    b.record(1_005, true);
    assert_eq!(b.view(1_006).1, Circuit::Open);
    assert_eq!(b.ejected_total.load(Ordering::Relaxed), 1);
    assert_eq!(a.ejected_total.load(Ordering::Relaxed), 1);
}

#[test]
fn half_open_lets_a_limited_number_of_probes_through() {
    let t = tracker(&Arc::new(Ejections::new(2, 50)));
    t.record(0, true);
    t.record(1, true);
    assert_eq!(t.view(500), (Health::Unknown, Circuit::Open));
    assert_eq!(t.view(1_001).1, Circuit::HalfOpen);
    let probe = t.begin(1_002);
    assert_eq!(
        t.view(1_003).1,
        Circuit::Open,
        "the one probe slot is taken"
    );
    drop(probe);
    assert_eq!(t.view(1_004).1, Circuit::HalfOpen);
    let probe = t.begin(1_005);
    t.record(1_006, true);
    drop(probe);
    assert_eq!(t.view(1_007).1, Circuit::Open, "a failed probe re-opens");
    assert_eq!(t.view(3_007).1, Circuit::HalfOpen, "for twice as long");
}

#[test]
fn active_verdicts_follow_rise_and_fall() {
    let t = tracker(&Arc::new(Ejections::new(1, 50)));
    let fail = Err("connect: refused".to_string());
    assert_eq!(t.health(), Health::Unknown);
    t.checked(&Ok(()), 2, 3);
    assert_eq!(t.health(), Health::Healthy, "the first verdict decides");
    t.checked(&fail, 2, 3);
    t.checked(&fail, 2, 3);
    assert_eq!(t.health(), Health::Healthy);
    t.checked(&fail, 2, 3);
    assert_eq!(t.health(), Health::Unhealthy);
    t.checked(&Ok(()), 2, 3);
    assert_eq!(t.health(), Health::Unhealthy);
    t.checked(&Ok(()), 2, 3);
    assert_eq!(t.view(0).0, Health::Healthy);
    assert_eq!(t.checks_passed.load(Ordering::Relaxed), 3);
    assert_eq!(t.checks_failed.load(Ordering::Relaxed), 3);
}

#[test]
fn a_recovery_seen_by_the_checks_ends_an_ejection_early() {
    let t = tracker(&Arc::new(Ejections::new(1, 50)));
    t.checked(&Err("down".into()), 1, 1);
    t.record(0, true);
    t.record(1, true);
    assert_eq!(t.view(2), (Health::Unhealthy, Circuit::Open));
    t.checked(&Ok(()), 1, 1);
    assert_eq!(t.view(3), (Health::Healthy, Circuit::HalfOpen));
}

fn upstream(addr: std::net::SocketAddr, http: Option<HttpProbe>) -> (Upstream, HealthCheck) {
    let overrides = Overrides {
        upstreams: vec![format!("http://{addr}")],
        ..Overrides::default()
    };
    let config = Config::load(None, &overrides).expect("a valid upstream");
    let check = HealthCheck {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(300),
        rise: 1,
        fall: 1,
        http,
    };
    (config.upstreams[0].clone(), check)
}

fn http_probe() -> Option<HttpProbe> {
    Some(HttpProbe {
        method: http::Method::GET,
        path: "/health".into(),
        expect: vec![200],
    })
}

/// A port that accepts connections and then never says a word; keeps
/// them open.
async fn silent() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    addr
}

/// A port that answers every request with `status`, and records the
/// request line.
async fn answering(status: u16) -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0; 1024];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let _ = tx.send(head.lines().next().unwrap_or("").to_string()).await;
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn tcp_passes_but_a_silent_http_layer_fails() {
    let addr = silent().await;
    let (u, tcp_only) = upstream(addr, None);
    let prober = Prober::new(&u, tcp_only, None, &system_dns()).unwrap();
    assert_eq!(prober.probe().await, Ok(()), "TCP alone passes");
    let (u, with_http) = upstream(addr, http_probe());
    let prober = Prober::new(&u, with_http, None, &system_dns()).unwrap();
    let verdict = prober.probe().await;
    assert_eq!(
        verdict,
        Err("http: no response within 300 ms".to_string()),
        "the HTTP layer fails"
    );
    let t = tracker(&Arc::new(Ejections::new(1, 50)));
    t.checked(&verdict, 1, 1);
    assert_eq!(t.health(), Health::Unhealthy);
}

#[tokio::test]
async fn a_refused_port_fails_the_tcp_layer() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (u, check) = upstream(addr, http_probe());
    let verdict = Prober::new(&u, check, None, &system_dns())
        .unwrap()
        .probe()
        .await;
    let why = verdict.unwrap_err();
    assert!(why.starts_with("connect: "), "{why}");
}

#[tokio::test]
async fn the_http_probe_checks_method_path_and_status() {
    let (addr, mut seen) = answering(200).await;
    let (u, check) = upstream(addr, http_probe());
    assert_eq!(
        Prober::new(&u, check, None, &system_dns())
            .unwrap()
            .probe()
            .await,
        Ok(())
    );
    assert_eq!(seen.recv().await.unwrap(), "GET /health HTTP/1.1");
    let (addr, _seen) = answering(503).await;
    let (u, check) = upstream(addr, http_probe());
    let verdict = Prober::new(&u, check, None, &system_dns())
        .unwrap()
        .probe()
        .await;
    assert_eq!(
        verdict,
        Err("http: GET /health answered 503, expected one of [200]".to_string())
    );
}

#[tokio::test]
async fn the_checker_stops_when_its_tracker_is_gone() {
    let (addr, mut seen) = answering(200).await;
    let (u, check) = upstream(addr, http_probe());
    let t = Arc::new(tracker(&Arc::new(Ejections::new(1, 50))));
    let task = tokio::spawn(
        Prober::new(&u, check, None, &system_dns())
            .unwrap()
            .run(Arc::downgrade(&t)),
    );
    seen.recv().await.unwrap();
    // Poll until the verdict lands (the check runs right away).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while t.health() != Health::Healthy {
        assert!(tokio::time::Instant::now() < deadline, "no verdict");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(t);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the checker ends")
        .unwrap();
}

/// The default `[dns]`: the system resolver.
fn system_dns() -> crate::config::Dns {
    Config::load(None, &Overrides::default()).unwrap().dns
}
