//! TLS: chain verification against the test PKI, ALPN, and the steps over
//! HTTP/2.

use super::*;
use crate::mock::{Chain, MockUpstream, Reply, Script, SseScript, Step, TestPki};
use rustls::{CertificateError, Error as TlsError};

/// The rustls error inside a failed handshake.
fn tls_error(error: &io::Error) -> &TlsError {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<TlsError>())
        .unwrap_or_else(|| panic!("not a TLS error: {error:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn full_chain_verifies_and_negotiates_h2() {
    let pki = TestPki::new();
    let mock = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::Full)).await;
    assert!(mock.url().starts_with("https://127.0.0.1:"));
    let stream = tls(mock.addr(), pki.client_config(&["h2", "http/1.1"]))
        .await
        .expect("verified handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut client = h2(stream).await;
    let uri = format!("https://localhost:{}/v1/messages", mock.addr().port());
    let response = client
        .send_request(post(&uri, BODY))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let (body, error) = drain(response.into_body()).await;
    assert!(error.is_none());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["type"],
        "message"
    );
    let requests = mock.wait_requests(1).await;
    assert_eq!(requests[0].version, http::Version::HTTP_2);
    assert_eq!(requests[0].body, BODY.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_over_tls_when_alpn_says_so() {
    let pki = TestPki::new();
    let mock = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::Full)).await;
    let stream = tls(mock.addr(), pki.client_config(&["http/1.1"]))
        .await
        .expect("verified handshake");
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let response = client
        .send_request(post("/v1/messages", BODY))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        mock.wait_requests(1).await[0].version,
        http::Version::HTTP_11
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leaf_only_chain_fails_with_unknown_issuer() {
    let pki = TestPki::new();
    let mock = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::LeafOnly)).await;
    let error = tls(mock.addr(), pki.client_config(&[]))
        .await
        .expect_err("no chain");
    assert!(
        matches!(
            tls_error(&error),
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
    assert!(mock.requests().is_empty());
    assert_eq!(mock.connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_leaf_fails_with_expired() {
    let pki = TestPki::new();
    let mock = MockUpstream::start_tls(Script::new(), pki.expired_server_config()).await;
    let error = tls(mock.addr(), pki.client_config(&[]))
        .await
        .expect_err("expired");
    assert!(
        matches!(
            tls_error(&error),
            TlsError::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ca_fails_with_unknown_issuer() {
    let pki = TestPki::new();
    let mock = MockUpstream::start_tls(Script::new(), pki.unknown_ca_server_config()).await;
    let error = tls(mock.addr(), pki.client_config(&[]))
        .await
        .expect_err("unknown CA");
    assert!(
        matches!(
            tls_error(&error),
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
}

#[test]
fn write_ca_writes_the_root_pem() {
    use rustls_pki_types::pem::PemObject;
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = pki.write_ca(dir.path());
    let pem = std::fs::read_to_string(&path).expect("read");
    assert_eq!(pem, pki.ca_pem());
    let der = rustls_pki_types::CertificateDer::from_pem_file(&path).expect("a PEM cert");
    assert_eq!(der, pki.ca_der());
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_stream_is_byte_identical_and_cut_resets_the_stream() {
    let pki = TestPki::new();
    let whole = SseScript::message("Over HTTP/2 we go");
    let cut = whole.clone().cut_after(5, 9);
    let script = Script::of([whole.clone(), cut.clone()]).otherwise(Reply::message());
    let mock = MockUpstream::start_tls(script, pki.server_config(Chain::Full)).await;
    let stream = tls(mock.addr(), pki.client_config(&["h2"]))
        .await
        .expect("tls");
    let mut client = h2(stream).await;
    let uri = format!("https://localhost:{}/v1/messages", mock.addr().port());

    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (bytes, error) = drain(response.into_body()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(bytes, whole.bytes());

    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    let (bytes, error) = drain(response.into_body()).await;
    assert_eq!(bytes, cut.bytes(), "every byte before the cut arrived");
    assert!(error.is_some(), "the stream must be reset, not ended");

    // Only the stream was reset: the connection still serves.
    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    assert_eq!(response.status(), 200);
    let connections: Vec<u64> = mock.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_reset_kills_the_connection() {
    let pki = TestPki::new();
    let mock =
        MockUpstream::start_tls(Script::of([Step::Reset]), pki.server_config(Chain::Full)).await;
    let stream = tls(mock.addr(), pki.client_config(&["h2"]))
        .await
        .expect("tls");
    let mut client = h2(stream).await;
    let uri = format!("https://localhost:{}/v1/messages", mock.addr().port());
    let error = client
        .send_request(post(&uri, BODY))
        .await
        .expect_err("no response");
    assert!(!error.is_user(), "{error}");
    assert_eq!(mock.wait_requests(1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_stall_keeps_the_stream_open_until_stop() {
    let pki = TestPki::new();
    let script = SseScript::message("a b c").stall_after(2);
    let mock = MockUpstream::start_tls(
        Script::always(script.clone()),
        pki.server_config(Chain::Full),
    )
    .await;
    let stream = tls(mock.addr(), pki.client_config(&["h2"]))
        .await
        .expect("tls");
    let mut client = h2(stream).await;
    let uri = format!("https://localhost:{}/v1/messages", mock.addr().port());
    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    let mut body = response.into_body();
    let mut received = BytesMut::new();
    while received.len() < script.bytes().len() {
        let frame = body.frame().await.expect("a frame").expect("data");
        received.extend_from_slice(&frame.into_data().expect("data"));
    }
    assert_eq!(received.freeze(), script.bytes());
    let quiet = tokio::time::timeout(QUIET, body.frame()).await;
    assert!(quiet.is_err(), "nothing after the stall: {quiet:?}");
    mock.stop().await;
    let after = body.frame().await;
    assert!(
        matches!(after, Some(Err(_))),
        "an incomplete body: {after:?}"
    );
}

/// The HTTP/2 reason a stream or connection was reset with, if any.
fn h2_reason(error: &hyper::Error) -> Option<h2::Reason> {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason();
        }
        source = e.source();
    }
    None
}

/// An HTTP/2 client of `mock`, and the URI to POST to.
async fn h2_client(
    mock: &MockUpstream,
    pki: &TestPki,
) -> (http2::SendRequest<Full<Bytes>>, String) {
    let stream = tls(mock.addr(), pki.client_config(&["h2"]))
        .await
        .expect("tls");
    let uri = format!("https://localhost:{}/v1/messages", mock.addr().port());
    (h2(stream).await, uri)
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_refuse_stream_resets_only_the_stream_with_refused_stream() {
    let pki = TestPki::new();
    let mock = MockUpstream::start_tls(
        Script::of([Step::RefuseStream]),
        pki.server_config(Chain::Full),
    )
    .await;
    let (mut client, uri) = h2_client(&mock, &pki).await;
    let error = client
        .send_request(post(&uri, BODY))
        .await
        .expect_err("refused");
    assert_eq!(
        h2_reason(&error),
        Some(h2::Reason::REFUSED_STREAM),
        "{error:?}"
    );
    // Only the stream: the connection serves the next request.
    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    assert_eq!(response.status(), 200);
    let requests = mock.wait_requests(2).await;
    assert_eq!(requests[0].body, BODY.as_bytes(), "read before refused");
    let connections: Vec<u64> = requests.iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_go_away_reaches_the_peer_before_the_head_and_the_stream_plays_on() {
    let pki = TestPki::new();
    let script = SseScript::message("one two three four")
        .chunk_delay(Duration::from_millis(20))
        .go_away();
    let mock =
        MockUpstream::start_tls(Script::of([script.clone()]), pki.server_config(Chain::Full)).await;
    let (mut client, uri) = h2_client(&mock, &pki).await;
    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    assert_eq!(response.status(), 200);
    // The peer read the GOAWAY before this head: no new stream may start.
    let refused = client
        .send_request(post(&uri, BODY))
        .await
        .expect_err("no new stream after GOAWAY");
    assert!(!refused.is_user(), "{refused:?}");
    let (bytes, error) = drain(response.into_body()).await;
    assert!(error.is_none(), "the stream in flight plays on: {error:?}");
    assert_eq!(bytes, script.bytes());
    assert_eq!(
        mock.requests().len(),
        1,
        "the second never reached the mock"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_cut_after_resets_the_stream_after_the_bytes() {
    let pki = TestPki::new();
    let reply = Reply::message();
    let whole = reply.body.clone();
    let mock = MockUpstream::start_tls(
        Script::of([reply.cut_after(30)]),
        pki.server_config(Chain::Full),
    )
    .await;
    let (mut client, uri) = h2_client(&mock, &pki).await;
    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    assert_eq!(
        response.headers()["content-length"],
        whole.len().to_string().as_str()
    );
    let (bytes, error) = drain(response.into_body()).await;
    assert_eq!(bytes, whole.slice(..30));
    assert!(error.is_some(), "the stream must be reset, not ended");
    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    assert_eq!(response.status(), 200, "only the stream was reset");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_close_after_drops_the_connection_after_the_bytes() {
    let pki = TestPki::new();
    let reply = Reply::message();
    let whole = reply.body.clone();
    let mock = MockUpstream::start_tls(
        Script::of([reply.close_after(30)]),
        pki.server_config(Chain::Full),
    )
    .await;
    let (mut client, uri) = h2_client(&mock, &pki).await;
    let response = client.send_request(post(&uri, BODY)).await.expect("head");
    let (bytes, error) = drain(response.into_body()).await;
    assert_eq!(bytes, whole.slice(..30));
    assert!(error.is_some(), "short of its content-length");
    let error = client
        .send_request(post(&uri, BODY))
        .await
        .expect_err("the connection is gone");
    assert!(!error.is_user(), "{error:?}");
}
