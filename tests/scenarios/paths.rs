//! Paths: a `.` or `..` segment, however it is written, is refused before
//! anything is sent, so that no upstream resolves it out of a base path.

use super::{Gateway, MESSAGE, Setup, gateway_for};
use levee_tests::mock::{MockUpstream, Script};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `POST path` as written (an HTTP library would resolve the dots
/// first) under `url`'s own path; the status and the body.
async fn post_raw(url: &str, path: &str) -> (u16, serde_json::Value) {
    let rest = url.trim_start_matches("http://");
    let (addr, base) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = format!("{base}{path}");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         x-api-key: sk-ant-test-secret-0001\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{MESSAGE}",
        MESSAGE.len()
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    let status = answer[9..12].parse().expect("a status line");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// `..` and `.` segments, plain and percent-encoded, get a 400 in the
/// API's shape; a dot inside a segment is an ordinary character.
pub async fn a_dot_segment_in_the_path_is_refused_before_any_attempt<G: Gateway>() {
    let upstream = MockUpstream::start(Script::new()).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    for path in [
        "/v1/../v1/messages",
        "/v1/%2e%2e/v1/messages",
        "/v1/.%2E/v1/messages",
        "/v1/./messages",
    ] {
        let (status, body) = post_raw(&gw.url(), path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["type"], "error", "{path}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}");
    }
    assert!(upstream.requests().is_empty(), "nothing was sent");
    let (status, body) = post_raw(&gw.url(), "/v1/messages?v=1.2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.requests().len(), 1);
}
