//! The upstream connection pool: reuse, the `max_connections` cap across
//! workers, and connections that must not be reused.

use super::trace::access_lines;
use super::{FAST_POLICY, MESSAGE, STREAM_MESSAGE, client, header, metric, post_on};
use levee_tests::levee::Levee;
use levee_tests::mock::{Chain, MockUpstream, Reply, Script, SseScript, Step, TestPki};
use std::sync::Arc;
use std::time::Duration;

fn levee(upstream: &MockUpstream, top: &str, upstream_extra: &str) -> Levee {
    Levee::start(&format!(
        "{top}\n{FAST_POLICY}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n{upstream_extra}\n",
        upstream.url()
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_carries_requests_one_after_another_whatever_their_bodies() {
    let upstream = MockUpstream::start(Script::of([
        Step::from(Reply::message()),
        Step::Sse(SseScript::message("a streamed answer")),
        Step::from(Reply::error(
            400,
            "invalid_request_error",
            "max_tokens: too large",
        )),
        Step::from(Reply::message()),
    ]))
    .await;
    // One worker, so that every request finds the same pool whichever
    // connection the client sends it on.
    let levee = levee(&upstream, "workers = 1", "");
    let client = client();
    let mut statuses = Vec::new();
    for body in [MESSAGE, STREAM_MESSAGE, MESSAGE, MESSAGE] {
        let resp = post_on(&client, &levee, body).await;
        statuses.push(resp.status().as_u16());
        resp.bytes().await.expect("the whole body");
    }
    assert_eq!(statuses, [200, 200, 400, 200]);
    let connections: Vec<u64> = upstream.requests().iter().map(|r| r.connection).collect();
    assert_eq!(
        connections,
        [1, 1, 1, 1],
        "each body, read to its end, gave the connection back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_cap_requests_on_every_worker_share_the_one_connection() {
    let upstream = MockUpstream::start(Script::always(
        Reply::message().delay(Duration::from_millis(50)),
    ))
    .await;
    let levee = levee(
        &upstream,
        "workers = 2\n[log]\nformat = \"json\"",
        "max_connections = 1",
    );
    // A client each: their connections land on both workers.
    let requests = (0..6).map(|_| {
        let levee = &levee;
        async move {
            let resp = post_on(&client(), levee, MESSAGE).await;
            let attempts = header(&resp, "x-levee-attempts").map(str::to_owned);
            (resp.status().as_u16(), attempts)
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    for (status, attempts) in &answers {
        assert_eq!(*status, 200, "{answers:?}");
        assert_eq!(attempts.as_deref(), Some("1"), "{answers:?}");
    }
    assert_eq!(upstream.requests().len(), 6);
    assert_eq!(upstream.peak_connections(), 1, "never more than the cap");
    // Both workers served some of them: the cap held across workers.
    let lines = access_lines(&levee, 6).await;
    let workers: std::collections::BTreeSet<u64> = lines
        .iter()
        .map(|l| l["fields"]["worker"].as_u64().expect("a worker"))
        .collect();
    assert_eq!(lines.len(), 6, "{}", levee.log());
    assert_eq!(workers.into_iter().collect::<Vec<_>>(), [0, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_the_client_left_is_not_reused() {
    // The first event at once, the rest 30 s apart.
    let mut slow = SseScript::message("one two three four five six");
    for chunk in slow.chunks.iter_mut().skip(1) {
        chunk.0 = Duration::from_secs(30);
    }
    let upstream =
        MockUpstream::start(Script::new().then(Step::Sse(slow)).then(Reply::message())).await;
    let levee = levee(&upstream, "workers = 1", "");
    let mut stream = post_on(&client(), &levee, STREAM_MESSAGE).await;
    assert_eq!(stream.status(), 200);
    drop(stream.chunk().await);
    drop(stream);
    // The upstream connection is still mid-body: the next request needs
    // another, and must not wait on the first.
    let resp = tokio::time::timeout(Duration::from_secs(10), post_on(&client(), &levee, MESSAGE))
        .await
        .expect("answered without waiting for the abandoned stream");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_upstream_closed_is_replaced_without_a_failed_attempt() {
    let upstream = MockUpstream::start(Script::of([
        Reply::message().header("connection", "close"),
        Reply::message(),
    ]))
    .await;
    let levee = levee(&upstream, "workers = 1", "");
    let client = client();
    for _ in 0..2 {
        let resp = post_on(&client, &levee, MESSAGE).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
        resp.bytes().await.unwrap();
    }
    assert_eq!(upstream.connections(), 2);
}

/// A stream whose first event comes at once and the rest 30 s apart: it
/// holds its upstream stream open for as long as a test needs.
fn held_stream() -> Step {
    let mut slow = SseScript::message("one two three four five six");
    for chunk in slow.chunks.iter_mut().skip(1) {
        chunk.0 = Duration::from_secs(30);
    }
    Step::Sse(slow)
}

/// An HTTP/2 upstream (TLS, ALPN) whose first five answers are held
/// streams, and levee on one worker in front of it with the upstream keys
/// `extra`. The directory holds the CA file levee trusts.
async fn h2_upstream_and_levee(extra: &str) -> (MockUpstream, Levee, tempfile::TempDir) {
    let pki = TestPki::new();
    tls_upstream_and_levee(&pki, pki.server_config(Chain::Full), "workers = 1", extra).await
}

/// As [`h2_upstream_and_levee`], with the upstream's TLS config `tls` and
/// the top-level keys `top`.
async fn tls_upstream_and_levee(
    pki: &TestPki,
    tls: Arc<rustls::ServerConfig>,
    top: &str,
    extra: &str,
) -> (MockUpstream, Levee, tempfile::TempDir) {
    let script = Script::of((0..5).map(|_| held_stream())).otherwise(Reply::message());
    let upstream = MockUpstream::start_tls(script, tls).await;
    let dir = tempfile::tempdir().unwrap();
    let levee = Levee::start(&format!(
        "{top}\n{FAST_POLICY}\n[[upstreams]]\nname = \"h2\"\nurl = \"https://localhost:{}\"\n{extra}\n[upstreams.tls]\nca_file = \"{}\"\n",
        upstream.addr().port(),
        pki.write_ca(dir.path()).display()
    ));
    (upstream, levee, dir)
}

/// Opens `n` streams one after another, each answered before the next is
/// sent, and keeps them open.
async fn open_streams(levee: &Levee, n: usize) -> Vec<reqwest::Response> {
    let mut open = Vec::new();
    for _ in 0..n {
        let mut stream = post_on(&client(), levee, STREAM_MESSAGE).await;
        assert_eq!(stream.status(), 200);
        assert_eq!(header(&stream, "x-levee-attempts"), Some("1"));
        stream.chunk().await.expect("the first event");
        open.push(stream);
    }
    open
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_requests_past_the_stream_limit_open_another_connection() {
    let (upstream, levee, _dir) = h2_upstream_and_levee("max_streams_per_connection = 2").await;
    let _open = open_streams(&levee, 5).await;
    let seen = upstream.requests();
    assert!(seen.iter().all(|r| r.version == http::Version::HTTP_2));
    let connections: Vec<u64> = seen.iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1, 1, 2, 2, 3], "two streams a connection");
    // Connection 3 carries one stream: the next request rides it, and so
    // does the one after, since the first gave its stream back when its
    // body ended.
    for _ in 0..2 {
        let resp = post_on(&client(), &levee, MESSAGE).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("the whole body");
    }
    let connections: Vec<u64> = upstream.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections[5..], [3, 3]);
    assert_eq!(upstream.connections(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_connection_cap_http2_requests_share_the_full_connections() {
    let (upstream, levee, _dir) =
        h2_upstream_and_levee("max_connections = 2\nmax_streams_per_connection = 2").await;
    let _open = open_streams(&levee, 5).await;
    let connections: Vec<u64> = upstream.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections[..4], [1, 1, 2, 2]);
    assert!([1, 2].contains(&connections[4]), "{connections:?}");
    assert_eq!(upstream.peak_connections(), 2, "never more than the cap");
}

/// Sends `n` streaming requests at once while the upstream holds its TLS
/// handshakes, releases them once all `n` are attempts in flight (so all
/// of them look for a connection before any connection is up), and
/// returns each answer's status, `x-levee-attempts` and first chunk.
async fn burst_on_held_handshakes(
    upstream: &MockUpstream,
    levee: &Levee,
    n: usize,
) -> Vec<(u16, Option<String>, reqwest::Response)> {
    upstream.hold_handshakes(true);
    let requests = (0..n).map(|_| async {
        let mut resp = post_on(&client(), levee, STREAM_MESSAGE).await;
        let attempts = header(&resp, "x-levee-attempts").map(str::to_owned);
        let status = resp.status().as_u16();
        if status == 200 {
            resp.chunk().await.expect("the first event");
        }
        (status, attempts, resp)
    });
    let release = async {
        let in_flight = r#"levee_upstream_in_flight{upstream="h2"}"#;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while metric(levee, in_flight).await < n as f64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} attempts in flight"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        upstream.hold_handshakes(false);
    };
    futures_util::future::join(futures_util::future::join_all(requests), release)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_first_requests_shares_one_http2_connection() {
    let (upstream, levee, _dir) = h2_upstream_and_levee("").await;
    let answers = burst_on_held_handshakes(&upstream, &levee, 5).await;
    for (status, attempts, _) in &answers {
        assert_eq!((*status, attempts.as_deref()), (200, Some("1")));
    }
    let connections: Vec<u64> = upstream.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1; 5], "the four others joined the first dial");
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_to_an_http1_only_upstream_opens_a_connection_each() {
    let pki = TestPki::new();
    let mut tls = (*pki.server_config(Chain::Full)).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (upstream, levee, _dir) =
        tls_upstream_and_levee(&pki, Arc::new(tls), "workers = 1", "").await;
    let answers = burst_on_held_handshakes(&upstream, &levee, 3).await;
    for (status, attempts, _) in &answers {
        assert_eq!((*status, attempts.as_deref()), (200, Some("1")));
    }
    let seen = upstream.requests();
    assert!(seen.iter().all(|r| r.version == http::Version::HTTP_11));
    let mut connections: Vec<u64> = seen.iter().map(|r| r.connection).collect();
    connections.sort_unstable();
    assert_eq!(connections, [1, 2, 3], "one request a connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_joined_a_failed_dial_fail_alike() {
    let pki = TestPki::new();
    let (upstream, levee, _dir) =
        tls_upstream_and_levee(&pki, pki.unknown_ca_server_config(), "workers = 1", "").await;
    let answers = burst_on_held_handshakes(&upstream, &levee, 3).await;
    for (status, attempts, resp) in answers {
        assert_eq!(status, 502);
        assert_eq!(
            attempts.as_deref(),
            Some("1"),
            "a retry cannot fix a certificate"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("tls: certificate verify failed: unknown issuer for localhost"),
            "{message}"
        );
    }
    assert_eq!(upstream.connections(), 1, "one dial, its failure shared");
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_cap_a_request_on_another_worker_rides_the_connection_once_it_opens() {
    let pki = TestPki::new();
    let tls = pki.server_config(Chain::Full);
    let (upstream, levee, _dir) =
        tls_upstream_and_levee(&pki, tls, "workers = 2", "max_connections = 1").await;
    // Two clients, so one request on each worker: the second cannot join
    // the first's dial, and finds no permit to open its own.
    let burst = burst_on_held_handshakes(&upstream, &levee, 2);
    let answers = tokio::time::timeout(Duration::from_secs(10), burst)
        .await
        .expect("woken when the connection opened, not at its try timeout");
    for (status, attempts, _) in &answers {
        assert_eq!((*status, attempts.as_deref()), (200, Some("1")));
    }
    assert_eq!(upstream.connections(), 1);
}

/// An HTTP/2 upstream (TLS, ALPN) playing `script`, and levee on one
/// worker in front of it. The directory holds the CA file levee trusts.
async fn h2_levee_for(script: Script) -> (MockUpstream, Levee, tempfile::TempDir) {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(script, pki.server_config(Chain::Full)).await;
    let dir = tempfile::tempdir().unwrap();
    let levee = Levee::start(&format!(
        "workers = 1\n{FAST_POLICY}\n[[upstreams]]\nname = \"h2\"\nurl = \"https://localhost:{}\"\n[upstreams.tls]\nca_file = \"{}\"\n",
        upstream.addr().port(),
        pki.write_ca(dir.path()).display()
    ));
    (upstream, levee, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_http2_stream_is_retried_on_the_same_connection() {
    let (upstream, levee, _dir) =
        h2_levee_for(Script::of([Step::RefuseStream]).then(Reply::message())).await;
    let resp = post_on(&client(), &levee, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-levee-attempts"),
        Some("2"),
        "the upstream did not process it: send it again"
    );
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.version == http::Version::HTTP_2));
    assert_eq!(seen[0].body, seen[1].body, "the same request, again");
    let connections: Vec<u64> = seen.iter().map(|r| r.connection).collect();
    assert_eq!(
        connections,
        [1, 1],
        "a refused stream leaves its connection serving"
    );
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_goaway_new_requests_open_a_new_connection_and_the_stream_in_flight_plays_on() {
    // The GOAWAY reaches levee before this stream's head; the stream's
    // events then come 100 ms apart.
    let gap = Duration::from_millis(100);
    let stream = SseScript::message("one two three four five six seven")
        .chunk_delay(gap)
        .go_away();
    let expected = stream.bytes();
    let last_event_after = gap * stream.chunks.len() as u32;
    let (upstream, levee, _dir) =
        h2_levee_for(Script::of([Step::Sse(stream)]).then(Reply::message())).await;
    let mut first = post_on(&client(), &levee, STREAM_MESSAGE).await;
    assert_eq!(first.status(), 200);
    let mut received = first
        .chunk()
        .await
        .unwrap()
        .expect("the first event")
        .to_vec();

    // Connection 1 is going away: this request must not go on it, nor fail
    // an attempt finding that out.
    let resp = post_on(&client(), &levee, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    resp.bytes().await.expect("the whole body");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2, "no attempt on the going connection");
    let connections: Vec<u64> = seen.iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1, 2]);
    assert!(
        seen[1].at - seen[0].at < last_event_after,
        "the second request came while the stream was in flight"
    );

    // The stream in flight plays on to its end on connection 1.
    while let Some(chunk) = first.chunk().await.expect("no break") {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, expected, "byte for byte");
    assert_eq!(upstream.connections(), 2);
}
