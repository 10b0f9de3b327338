//! Failover across upstreams, end to end: a primary killed mid-run, one
//! that only answers 529, one that answers 429, and a primary that comes
//! back and is reinstated once its health checks rise.
//!
//! The killable primary is a real process (the `mock-upstream` binary) on
//! a fixed loopback port, stopped by its PID; the backup is the in-process
//! scriptable mock.

use crate::{FAST_POLICY, MESSAGE, header, metric, post};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a polled condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// The `mock-upstream` binary serving on `addr`; killed when dropped.
struct Process(Child);

impl Process {
    fn start(addr: &str) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
            .args(["--listen", addr, "--threads", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mock-upstream starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("mock-upstream prints its address");
        assert!(line.starts_with("listening on"), "mock-upstream: {line:?}");
        Process(child)
    }

    fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback address (bound, then released).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Levee with a primary (group 0) and a backup (group 1), `extra` TOML
/// after the fast policy, and `primary_extra` inside the primary's table.
fn levee(primary: &str, backup: &str, extra: &str, primary_extra: &str) -> Levee {
    Levee::start(&format!(
        "{FAST_POLICY}\n{extra}\n\n[[upstreams]]\nname = \"primary\"\nurl = \"{primary}\"\n\
         group = 0\n{primary_extra}\n\n[[upstreams]]\nname = \"backup\"\nurl = \"{backup}\"\ngroup = 1\n"
    ))
}

/// Sends a request; returns the attempts it took (after asserting a 200).
async fn attempts(levee: &Levee) -> u32 {
    let resp = post(levee, MESSAGE).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    header(&resp, "x-levee-attempts")
        .expect("x-levee-attempts")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_primary_costs_each_request_at_most_one_extra_attempt() {
    let addr = free_addr();
    let primary = Process::start(&addr);
    let backup = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = levee(
        &format!("http://{addr}"),
        &backup.url(),
        "[outlier]\nconsecutive_failures = 3\nbase_ejection_ms = 60000\n",
        "",
    );
    for _ in 0..5 {
        assert_eq!(attempts(&levee).await, 1);
    }
    assert!(backup.requests().is_empty(), "the primary served them");
    primary.kill();
    let mut extra = 0;
    for i in 0..20 {
        let n = attempts(&levee).await;
        assert!(n <= 2, "request {i} took {n} attempts");
        extra += n - 1;
    }
    // Once ejected, the primary costs nothing: the three failures that
    // open the circuit are the only extra attempts.
    assert_eq!(extra, 3, "extra attempts over 20 requests");
    assert_eq!(backup.requests().len(), 20);
    let open = r#"levee_upstream_circuit{upstream="primary",state="open"}"#;
    assert_eq!(metric(&levee, open).await, 1.0);
    let ejections = r#"levee_upstream_ejections_total{upstream="primary"}"#;
    assert_eq!(metric(&levee, ejections).await, 1.0);
    assert!(levee.log().contains("circuit open: upstream ejected"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_answering_only_529_sheds_its_traffic_to_the_backup() {
    let primary = MockUpstream::start(Script::always(Step::Reply(
        Reply::overloaded().header("retry-after", "30"),
    )))
    .await;
    let backup = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = levee(&primary.url(), &backup.url(), "", "");
    assert_eq!(attempts(&levee).await, 2, "the 529, then the backup");
    for _ in 0..10 {
        assert_eq!(attempts(&levee).await, 1, "straight to the backup");
    }
    assert_eq!(primary.requests().len(), 1);
    assert_eq!(backup.requests().len(), 11);
    // Overloaded is not broken: the circuit stays closed.
    let closed = r#"levee_upstream_circuit{upstream="primary",state="closed"}"#;
    assert_eq!(metric(&levee, closed).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_primary_shifts_traffic_while_a_backup_has_room() {
    let primary = MockUpstream::start(Script::always(Step::Reply(Reply::rate_limited(
        RetryAfter::Secs(30),
    ))))
    .await;
    let backup = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = levee(&primary.url(), &backup.url(), "", "");
    assert_eq!(attempts(&levee).await, 2, "the 429, then the backup");
    for _ in 0..10 {
        assert_eq!(attempts(&levee).await, 1, "straight to the backup");
    }
    assert_eq!(primary.requests().len(), 1);
    let closed = r#"levee_upstream_circuit{upstream="primary",state="closed"}"#;
    assert_eq!(metric(&levee, closed).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_only_upstream_is_waited_for_as_retry_after_says() {
    let only = MockUpstream::start(
        Script::of([Step::Reply(Reply::rate_limited(RetryAfter::Secs(1)))])
            .otherwise(Step::Reply(Reply::message())),
    )
    .await;
    let levee = Levee::start(&format!(
        "{FAST_POLICY}\n[[upstreams]]\nname = \"only\"\nurl = \"{}\"\n",
        only.url()
    ));
    assert_eq!(attempts(&levee).await, 2);
    let seen = only.requests();
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(900),
        "retried after {gap:?}, before the 1 s retry-after"
    );
    assert!(
        gap < Duration::from_millis(1_600),
        "retried after {gap:?}, well after the 1 s retry-after"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovered_primary_is_reinstated_after_the_rise_threshold() {
    let addr = free_addr();
    let primary = Process::start(&addr);
    let backup = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    // Should a request eject the primary, the ejection outlasts the test:
    // only the health checks can end it.
    let levee = levee(
        &format!("http://{addr}"),
        &backup.url(),
        "[outlier]\nbase_ejection_ms = 600000\nmax_ejection_ms = 600000\n",
        "[upstreams.health]\ninterval_ms = 100\ntimeout_ms = 100\nrise = 3\nfall = 1\n",
    );
    let healthy = r#"levee_upstream_health{upstream="primary",state="healthy"}"#;
    let unhealthy = r#"levee_upstream_health{upstream="primary",state="unhealthy"}"#;
    let passed = r#"levee_health_checks_total{upstream="primary",result="pass"}"#;
    poll(
        || async { metric(&levee, healthy).await == 1.0 },
        "healthy at first",
    )
    .await;
    assert_eq!(attempts(&levee).await, 1);
    primary.kill();
    poll(
        || async { metric(&levee, unhealthy).await == 1.0 },
        "unhealthy",
    )
    .await;
    let passes_while_down = metric(&levee, passed).await;
    assert!(attempts(&levee).await <= 2);
    let before = backup.requests().len();
    let _primary = Process::start(&addr);
    // Until reinstated, requests go to the backup; then to the primary.
    let mut served_by_backup = 0;
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "the primary was never reinstated"
        );
        assert_eq!(attempts(&levee).await, 1);
        let now = backup.requests().len();
        if now == before + served_by_backup {
            break;
        }
        served_by_backup = now - before;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let passes = metric(&levee, passed).await - passes_while_down;
    assert!(passes >= 3.0, "reinstated after {passes} passing checks");
    assert_eq!(metric(&levee, healthy).await, 1.0);
    let closed = r#"levee_upstream_circuit{upstream="primary",state="closed"}"#;
    assert_eq!(metric(&levee, closed).await, 1.0);
    let log = levee.log();
    assert_eq!(log.matches("health check: unhealthy").count(), 1, "{log}");
    assert_eq!(log.matches("health check: healthy").count(), 2, "{log}");
}

/// Polls `cond` until it holds, failing after [`PATIENCE`].
async fn poll<F, Fut>(cond: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < deadline, "never {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client's own short deadline (`x-stainless-timeout`) cuts its attempts
/// short, but that says nothing about the upstream: three such timeouts
/// eject nothing, where three per-try timeouts (the control, which proves
/// the path counts) eject it.
#[tokio::test(flavor = "multi_thread")]
async fn a_clients_short_deadline_is_not_a_health_failure() {
    let slow = MockUpstream::start(Script::always(Step::Reply(
        Reply::message().delay(Duration::from_secs(3)),
    )))
    .await;
    let levee = Levee::start(&format!(
        "[policy]\nsource = \"builtin:standard\"\n[policy.config]\nmax_attempts = 1\n\
         try_timeout_ms = 600\n\n[outlier]\nconsecutive_failures = 3\n\n\
         [[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n",
        slow.url()
    ));
    let send = |client_timeout: Option<&'static str>| {
        let levee = &levee;
        async move {
            let mut req = crate::client()
                .post(format!("{}/v1/messages", levee.url()))
                .header("x-api-key", "sk-ant-test-secret-0001")
                .header("anthropic-version", "2023-06-01")
                .header("content-type", "application/json")
                .timeout(Duration::from_secs(10))
                .body(MESSAGE);
            if let Some(secs) = client_timeout {
                req = req.header("x-stainless-timeout", secs);
            }
            let started = Instant::now();
            let status = req.send().await.expect("levee answers").status();
            (status, started.elapsed())
        }
    };
    let circuit = || async { crate::status(&levee).await["upstreams"][0]["circuit"].clone() };

    for _ in 0..3 {
        let (status, took) = send(Some("0.2")).await;
        assert_ne!(status, 200);
        assert!(
            took < Duration::from_millis(550),
            "cut at the client's 200 ms, before the 600 ms per-try timeout: {took:?}"
        );
    }
    assert_eq!(slow.requests().len(), 3, "each went upstream once");
    assert_eq!(circuit().await, "closed", "{}", levee.log());
    let status = crate::status(&levee).await;
    let w = &status["upstreams"][0]["activity"]["windows"][0];
    assert_eq!(w["counts"]["timeout"], 3, "the timeouts are shown: {w}");
    assert_eq!(
        status["upstreams"][0]["activity"]["last_error"]["message"],
        "the client's own deadline came first"
    );

    for _ in 0..3 {
        let (status, took) = send(None).await;
        assert_ne!(status, 200);
        assert!(took >= Duration::from_millis(600), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    assert_eq!(
        circuit().await,
        "open",
        "three per-try timeouts eject it: {}",
        levee.log()
    );
}
