//! Replies, the script queue, recording, and the connection-level steps
//! (reset, close, hang) over HTTP/1.1.

use super::*;
use crate::mock::{MockUpstream, Reply, RetryAfter, Script, Step, http_date};
use http_body_util::BodyExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn default_fallback_is_a_messages_response() {
    let mock = MockUpstream::start(Script::new()).await;
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("response");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    let request_id = headers["request-id"].to_str().expect("ascii");
    assert!(request_id.starts_with("req_mock_"), "{request_id}");
    let message = json(&body);
    assert_eq!(message["type"], "message");
    assert_eq!(message["usage"]["input_tokens"], 12);
    assert_eq!(message["usage"]["output_tokens"], 8);
}

#[test]
fn error_replies_have_the_api_shape() {
    let reply = Reply::error(400, "invalid_request_error", "bad \"input\"");
    assert_eq!(reply.status, 400);
    let body = json(&reply.body);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["message"], "bad \"input\"");
    assert_eq!(body["request_id"], reply.request_id().expect("request-id"));

    let overloaded = Reply::overloaded();
    assert_eq!(overloaded.status, 529);
    assert_eq!(json(&overloaded.body)["error"]["type"], "overloaded_error");

    let cap = Reply::spend_cap();
    assert_eq!(cap.status, 429);
    let cap_body = json(&cap.body);
    assert_eq!(
        cap_body["error"]["details"]["error_code"],
        "enforced_spend_limit_reached"
    );
    assert!(
        cap.headers
            .iter()
            .all(|(k, _)| !k.starts_with("retry-after"))
    );

    let no = Reply::overloaded().should_retry(true).should_retry(false);
    let values: Vec<_> = no
        .headers
        .iter()
        .filter(|(k, _)| k == "x-should-retry")
        .collect();
    assert_eq!(values, [&("x-should-retry".to_owned(), "false".to_owned())]);
}

#[test]
fn retry_after_headers() {
    let find = |reply: &Reply, name: &str| {
        reply
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let ms = Reply::rate_limited(RetryAfter::Ms(1500));
    assert_eq!(ms.status, 429);
    assert_eq!(json(&ms.body)["error"]["type"], "rate_limit_error");
    assert_eq!(find(&ms, "retry-after-ms").as_deref(), Some("1500"));
    let secs = Reply::rate_limited(RetryAfter::Secs(15));
    assert_eq!(find(&secs, "retry-after").as_deref(), Some("15"));
    let when = UNIX_EPOCH + Duration::from_secs(784_111_777);
    let date = Reply::rate_limited(RetryAfter::Date(when));
    assert_eq!(
        find(&date, "retry-after").as_deref(),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
}

#[test]
fn http_dates_are_imf_fixdate() {
    let at = |secs| http_date(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(at(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
    assert_eq!(http_date(UNIX_EPOCH - Duration::from_secs(5)), at(0));
    assert!(http_date(SystemTime::now()).ends_with(" GMT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn steps_play_in_order_then_the_fallback() {
    let script = Script::of([Reply::overloaded(), Reply::error(500, "api_error", "boom")])
        .otherwise(Reply::new(204));
    let mock = MockUpstream::start(script).await;
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = send(&mut client, post(&uri, BODY)).await.expect("response");
        statuses.push(response.status().as_u16());
        response.into_body().collect().await.expect("body");
    }
    mock.push(Reply::rate_limited(RetryAfter::Secs(3)));
    mock.push(Reply::new(201));
    for _ in 0..3 {
        let response = send(&mut client, post(&uri, BODY)).await.expect("response");
        statuses.push(response.status().as_u16());
        response.into_body().collect().await.expect("body");
    }
    mock.set_script(Script::always(Reply::new(418)));
    let response = send(&mut client, post(&uri, BODY)).await.expect("response");
    statuses.push(response.status().as_u16());
    assert_eq!(statuses, [529, 500, 204, 429, 201, 204, 418]);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_recorded_in_order() {
    let mock = MockUpstream::start(Script::new()).await;
    let mut first = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages?beta=true", mock.url());
    for n in 0..2 {
        let mut request = post(&uri, &format!(r#"{{"n":{n}}}"#));
        request
            .headers_mut()
            .insert("x-stainless-retry-count", n.into());
        let response = send(&mut first, request).await.expect("response");
        response.into_body().collect().await.expect("body");
    }
    let mut second = h1(mock.addr()).await;
    let response = send(&mut second, post(&uri, r#"{"n":2}"#))
        .await
        .expect("response");
    response.into_body().collect().await.expect("body");

    let requests = mock.wait_requests(3).await;
    assert_eq!(requests.len(), 3);
    for (n, r) in requests.iter().enumerate() {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/messages?beta=true");
        assert_eq!(r.version, http::Version::HTTP_11);
        assert_eq!(r.json()["n"], n);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
    assert_eq!(requests[1].header("x-stainless-retry-count"), Some("1"));
    assert!(requests[0].at < requests[1].at && requests[1].at < requests[2].at);
    assert_eq!(requests[0].connection, requests[1].connection);
    assert_ne!(requests[1].connection, requests[2].connection);
    assert_eq!(mock.connections(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn head_delay_holds_the_head_back() {
    let delay = Duration::from_millis(150);
    let mock = MockUpstream::start(Script::always(Reply::message().delay(delay))).await;
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("response");
    let headed = Instant::now();
    let at = mock.requests()[0].at;
    assert!(headed - at >= delay, "head after {:?}", headed - at);
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_sends_a_rst_before_any_byte() {
    let mock = MockUpstream::start(Script::always(Step::Reset)).await;
    let (received, error) = raw_exchange(mock.addr()).await;
    assert!(received.is_empty(), "got {received:?}");
    let error = error.expect("a connection error, not EOF");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);

    // A hyper client sees an error instead of a response head.
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let error = send(&mut client, post(&uri, BODY))
        .await
        .expect_err("no response");
    assert!(!error.is_user(), "{error}");
    let requests = mock.wait_requests(2).await;
    assert_eq!(
        requests[0].body,
        BODY.as_bytes(),
        "the request was read first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn close_ends_the_connection_cleanly_without_a_response() {
    let mock = MockUpstream::start(Script::always(Step::Close)).await;
    let (received, error) = raw_exchange(mock.addr()).await;
    assert!(received.is_empty(), "got {received:?}");
    assert!(error.is_none(), "a clean EOF, got {error:?}");

    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let error = send(&mut client, post(&uri, BODY))
        .await
        .expect_err("no response");
    assert!(error.is_incomplete_message(), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hang_answers_nothing_until_the_mock_stops() {
    let mock = MockUpstream::start(Script::always(Step::Hang)).await;
    let mut tcp = raw_send(mock.addr()).await;
    mock.wait_requests(1).await;
    let mut byte = [0u8; 1];
    let quiet = tokio::time::timeout(QUIET, tcp.read(&mut byte)).await;
    assert!(quiet.is_err(), "no answer while hanging: {quiet:?}");
    mock.stop().await;
    let (received, _) = raw_read_to_end(&mut tcp).await;
    assert!(received.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_refuses_new_connections() {
    let mock = MockUpstream::start(Script::new()).await;
    let addr = mock.addr();
    let (received, _) = raw_exchange(addr).await;
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
    mock.stop().await;
    let error = TcpStream::connect(addr).await.expect_err("refused");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_stops_the_mock_too() {
    let mock = MockUpstream::start(Script::always(Step::Hang)).await;
    let mut tcp = raw_send(mock.addr()).await;
    mock.wait_requests(1).await;
    drop(mock);
    let (received, _) = raw_read_to_end(&mut tcp).await;
    assert!(received.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_scripted_headers_become_a_500() {
    let bad = Reply::new(200).header("bad header", "x");
    let mock = MockUpstream::start(Script::always(bad)).await;
    let (received, _) = raw_exchange(mock.addr()).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(text.contains("mock script error"), "{text}");
}
