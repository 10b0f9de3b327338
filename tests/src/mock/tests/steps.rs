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

/// The head and body of a raw HTTP/1.1 response with a `content-length`.
fn split_head(raw: &[u8]) -> (String, &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(raw[..end].to_vec()).expect("ascii head");
    (head.to_ascii_lowercase(), &raw[end + 4..])
}

#[tokio::test(flavor = "multi_thread")]
async fn html_is_a_load_balancers_error_page() {
    let page = Reply::html(502);
    assert_eq!(page.status, 502);
    assert!(page.request_id().is_none(), "the API never saw it");
    let text = String::from_utf8(page.body.to_vec()).unwrap();
    assert!(
        text.starts_with("<html>") && text.contains("<h1>502 Bad Gateway</h1>"),
        "{text}"
    );
    assert!(serde_json::from_slice::<serde_json::Value>(&page.body).is_err());
    let mock = MockUpstream::start(Script::always(Reply::html(503))).await;
    let (received, error) = raw_exchange(mock.addr()).await;
    assert!(error.is_none());
    let (head, body) = split_head(&received);
    assert!(
        head.starts_with("http/1.1 503 service unavailable"),
        "{head}"
    );
    assert!(head.contains("content-type: text/html\r\n"), "{head}");
    assert!(head.contains(&format!("content-length: {}", body.len())));
    assert!(String::from_utf8_lossy(body).contains("503 Service Unavailable"));
}

#[test]
fn pieces_trickle_and_cut_the_body() {
    let gap = Duration::from_millis(5);
    let reply = Reply::new(200);
    assert!(reply.pieces().is_none(), "a plain reply goes in one write");
    let reply = Reply {
        body: Bytes::from_static(b"0123456789abcdefghijklmnopqrstuvwxyz"),
        ..reply
    };
    let (pieces, end) = reply.clone().trickle(10, gap).pieces().unwrap();
    let sizes: Vec<usize> = pieces.iter().map(|(_, b)| b.len()).collect();
    assert_eq!(sizes, [10, 10, 10, 6]);
    let delays: Vec<Duration> = pieces.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        delays,
        [Duration::ZERO, gap, gap, gap],
        "the first goes with the head"
    );
    assert_eq!(pieces.concat(), reply.body);
    assert_eq!(end, crate::mock::SseEnd::Complete);

    let (pieces, end) = reply
        .clone()
        .trickle(10, gap)
        .cut_after(25)
        .pieces()
        .unwrap();
    let sizes: Vec<usize> = pieces.iter().map(|(_, b)| b.len()).collect();
    assert_eq!((sizes, end), (vec![10, 10, 5], crate::mock::SseEnd::Cut));
    let (pieces, end) = reply.clone().close_after(7).pieces().unwrap();
    assert_eq!(pieces, [(Duration::ZERO, reply.body.slice(..7))]);
    assert_eq!(end, crate::mock::SseEnd::Close);
    let (pieces, _) = reply.cut_after(0).pieces().unwrap();
    assert!(pieces.is_empty(), "the head alone");
}

/// The `(delay, bytes)` pieces, concatenated.
trait Concat {
    fn concat(&self) -> Bytes;
}

impl Concat for Vec<(Duration, Bytes)> {
    fn concat(&self) -> Bytes {
        self.iter()
            .flat_map(|(_, b)| b.to_vec())
            .collect::<Vec<u8>>()
            .into()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_after_sends_the_whole_length_and_part_of_the_body_then_a_rst() {
    let reply = Reply::message();
    let whole = reply.body.clone();
    let mock = MockUpstream::start(Script::always(reply.cut_after(20))).await;
    let (received, error) = raw_exchange(mock.addr()).await;
    let (head, body) = split_head(&received);
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert!(head.contains(&format!("content-length: {}\r\n", whole.len())));
    assert_eq!(body, &whole[..20], "every byte before the cut arrived");
    let error = error.expect("a reset, not EOF");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);

    // A hyper client sees the body end in an error, after those bytes.
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("head");
    let (bytes, error) = drain(response.into_body()).await;
    assert_eq!(bytes, whole.slice(..20));
    assert!(error.is_some(), "a cut body must not end cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn close_after_stops_the_body_short_with_a_clean_fin() {
    let reply = Reply::message();
    let whole = reply.body.clone();
    let mock = MockUpstream::start(Script::always(reply.close_after(20))).await;
    let (received, error) = raw_exchange(mock.addr()).await;
    assert!(error.is_none(), "a clean EOF, got {error:?}");
    let (head, body) = split_head(&received);
    assert!(head.contains(&format!("content-length: {}\r\n", whole.len())));
    assert_eq!(body, &whole[..20]);

    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("head");
    let (bytes, error) = drain(response.into_body()).await;
    assert_eq!(bytes, whole.slice(..20));
    let error = error.expect("short of its content-length");
    let eof = std::error::Error::source(&error)
        .and_then(|e| e.downcast_ref::<io::Error>())
        .map(io::Error::kind);
    assert_eq!(eof, Some(io::ErrorKind::UnexpectedEof), "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn trickle_sends_the_body_in_timed_pieces() {
    let gap = Duration::from_millis(60);
    let reply = Reply::message();
    let whole = reply.body.clone();
    let pieces = whole.len().div_ceil(64);
    assert!(pieces >= 4, "a body of {} bytes", whole.len());
    let mock = MockUpstream::start(Script::always(reply.trickle(64, gap))).await;
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("head");
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.expect("no error").into_data().expect("data");
        frames.push((Instant::now(), data));
    }
    let at = mock.requests()[0].at;
    let received: Vec<u8> = frames.iter().flat_map(|(_, d)| d.to_vec()).collect();
    assert_eq!(received, whole, "byte for byte");
    assert_eq!(frames.len(), pieces, "one read per piece");
    assert!(frames.iter().all(|(_, d)| d.len() <= 64));
    let took = frames.last().unwrap().0 - at;
    let least = gap * (pieces as u32 - 1);
    assert!(took >= least, "{took:?} < {least:?}");
    assert!(took < least + Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn go_away_over_http1_closes_the_connection_after_the_response() {
    let mock =
        MockUpstream::start(Script::of([Reply::message().go_away()]).otherwise(Reply::new(204)))
            .await;
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("head");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["connection"], "close");
    let (_, error) = drain(response.into_body()).await;
    assert!(error.is_none(), "the answer itself is whole");
    let error = send(&mut client, post(&uri, BODY))
        .await
        .expect_err("the connection is gone");
    assert!(!error.is_user(), "{error}");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn refuse_stream_over_http1_is_a_script_error() {
    let mock = MockUpstream::start(Script::always(Step::RefuseStream)).await;
    let (received, _) = raw_exchange(mock.addr()).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(
        text.contains("mock script error: RefuseStream needs HTTP/2"),
        "{text}"
    );
}
