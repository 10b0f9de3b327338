//! The downstream contract when levee answers itself, and what it passes on.

use super::{MESSAGE, client, header, levee_for, post};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Script, Step};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_upstream_is_named_with_its_layer() {
    // Bind and drop: nothing listens on this port any more.
    let port = levee_tests::egress::free_port();
    let levee = Levee::start(&format!(
        "{}\n[[upstreams]]\nname = \"primary\"\nurl = \"http://127.0.0.1:{port}\"\n",
        super::FAST_POLICY
    ));
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("4"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("connect: cannot connect to 127.0.0.1:{port}")),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    assert!(
        message.ends_with("(upstream `primary`, after 4 attempts)"),
        "{message}"
    );
    assert!(body["request_id"].as_str().unwrap().starts_with("levee_"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_gets_413_in_the_api_shape_without_reaching_the_upstream() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "[rails]\nmax_body_bytes = 1024\n");
    let big = format!(
        r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2048)
    );
    let resp = post(&levee, &big).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("0"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "request_too_large");
    assert_eq!(
        body["error"]["message"],
        "request body is larger than the 1024 bytes levee accepts"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_headers_pass_untouched_and_hop_by_hop_ones_do_not() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    let resp = client()
        .post(format!("{}/v1/messages?beta=true", levee.url()))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("authorization", "Bearer sk-ant-test-secret-0002")
        .header("anthropic-version", "2023-06-01")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "private to this hop")
        .header("te", "trailers")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        header(&resp, "request-id").is_some_and(|id| id.starts_with("req_mock_")),
        "request-id passes back"
    );
    let seen = &upstream.requests()[0];
    assert_eq!(seen.path, "/v1/messages?beta=true");
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-test-secret-0001"));
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-ant-test-secret-0002")
    );
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("x-hop"), None);
    assert_eq!(seen.header("te"), None);
    // The access line is written when the body ends, and batched (20 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = levee.log();
        if log.contains("levee::access") || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        log.contains("levee::access"),
        "the access log line is there: {log}"
    );
    assert!(
        !log.contains("sk-ant-test-secret"),
        "a key leaked into the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_clients_own_timeout_shortens_the_deadline() {
    let upstream = MockUpstream::start(Script::always(Step::Hang)).await;
    let levee = levee_for(&upstream, "");
    let started = Instant::now();
    let resp = client()
        .post(format!("{}/v1/messages", levee.url()))
        .header("x-stainless-timeout", "0.6")
        .body(MESSAGE)
        // Without the header, levee's own try timeout is a minute or more.
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("levee answers within the client's timeout");
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "timeout_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("timeout: no response head within")
    );
    assert!(
        took >= Duration::from_millis(600),
        "gave up after {took:?}, before the client's timeout"
    );
    assert!(
        took < Duration::from_millis(1_500),
        "gave up after {took:?}, long after the client's 0.6 s"
    );
    assert_eq!(upstream.requests().len(), 1, "no time was left to retry");
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_clients_are_served() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_for(&upstream, "");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(format!("{}/v1/messages", levee.url()))
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
}

/// Reads from `tcp` until the peer closes it; how long that took from
/// `since`, at most `limit`.
async fn closed_after(
    tcp: &mut tokio::net::TcpStream,
    since: Instant,
    limit: Duration,
) -> Duration {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("levee closed the connection")
}

/// A client that trickles its headers, and one that keeps an idle
/// connection after its answer, are both disconnected once
/// `header_timeout_ms` has passed; a client that behaves is served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_idle_connections_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = Levee::start(&format!(
        "header_timeout_ms = 300\n{}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n",
        super::FAST_POLICY,
        upstream.url()
    ));
    let addr = levee.url().trim_start_matches("http://").to_owned();
    // Headers that never end: a byte every 100 ms.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(b"x").await.is_err() {
                break;
            }
        }
        slow
    });
    // An idle connection after a whole answer.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{MESSAGE}",
        MESSAGE.len()
    );
    idle.write_all(request.as_bytes()).await.unwrap();
    // The head, then its content-length of body.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let whole = |a: &[u8]| {
        let text = String::from_utf8_lossy(a);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })?
            .parse()
            .ok()?;
        (body.len() >= length).then_some(())
    };
    while whole(&answer).is_none() {
        let n = idle.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before the answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let answered = Instant::now();
    // Meanwhile a well-behaved client is served.
    assert_eq!(super::post(&levee, MESSAGE).await.status(), 200);
    let idle_for = closed_after(&mut idle, answered, Duration::from_secs(5)).await;
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(2)).contains(&idle_for),
        "the idle connection was closed after {idle_for:?}"
    );
    let mut slow = trickle.await.unwrap();
    let slow_for = closed_after(&mut slow, started, Duration::from_secs(5)).await;
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(3)).contains(&slow_for),
        "the slow headers were cut after {slow_for:?}"
    );
    assert_eq!(
        upstream.requests().len(),
        2,
        "only the whole requests went on"
    );
}
