//! SSE scripts over HTTP/1.1: the event sequence, one chunk per write, and
//! the three ends (complete, stall, cut).

use super::*;
use crate::mock::{MockUpstream, Script, SseEnd, SseScript};
use std::time::Instant;

/// The `event:` names of an SSE byte stream, in order.
fn event_names(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("event: ").map(str::to_owned))
        .collect()
}

/// The `data:` payloads of an SSE byte stream, parsed.
fn event_data(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("JSON data"))
        .collect()
}

#[test]
fn message_script_is_the_api_event_sequence() {
    let script = SseScript::message("Hello brave new world");
    let bytes = script.bytes();
    assert_eq!(
        event_names(&bytes),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(script.chunks.len(), 10, "one event per chunk");
    for (_, chunk) in &script.chunks {
        assert!(chunk.starts_with(b"event: ") && chunk.ends_with(b"\n\n"));
    }
    let data = event_data(&bytes);
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 12);
    let text: String = data[3..7]
        .iter()
        .map(|d| d["delta"]["text"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(text, "Hello brave new world");
    assert_eq!(data[8]["usage"]["output_tokens"], 4);
    assert_eq!(script.end, SseEnd::Complete);
}

#[test]
fn helpers_shape_the_script() {
    let full = SseScript::message("a b c");
    let cut = full.clone().cut_after(2, 7);
    assert_eq!(cut.chunks.len(), 3);
    assert_eq!(cut.chunks[2].1, full.chunks[2].1.slice(..7));
    assert_eq!(cut.end, SseEnd::Cut);
    assert!(full.bytes().starts_with(&cut.bytes()));

    let stalled = full.clone().stall_after(4);
    assert_eq!((stalled.chunks.len(), stalled.end), (4, SseEnd::Stall));

    let failed = full
        .clone()
        .error_after(3, "overloaded_error", "Overloaded");
    assert_eq!(failed.chunks.len(), 4);
    let last = &failed.chunks[3].1;
    assert_eq!(event_names(last), ["error"]);
    assert_eq!(event_data(last)[0]["error"]["type"], "overloaded_error");

    let paced = full.chunk_delay(Duration::from_millis(5));
    assert!(paced.chunks.iter().all(|c| c.0 == Duration::from_millis(5)));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_chunk_is_its_own_http_chunk() {
    let script = SseScript::message("one two three");
    let mock = MockUpstream::start(Script::always(script.clone())).await;
    let (raw, error) = raw_exchange(mock.addr()).await;
    assert!(error.is_none(), "{error:?}");
    let response = Chunked::parse(&raw);
    assert!(response.head.starts_with("HTTP/1.1 200 OK"));
    let head = response.head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"));
    assert!(head.contains("transfer-encoding: chunked"));
    assert!(head.contains("request-id: req_mock_"));
    let expected: Vec<Bytes> = script.chunks.iter().map(|c| c.1.clone()).collect();
    assert_eq!(response.chunks, expected);
    assert!(response.terminated);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complete_stream_is_byte_identical() {
    let script = SseScript::message("Streaming through the mock");
    let mock = MockUpstream::start(Script::always(script.clone())).await;
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("response");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (bytes, error) = drain(response.into_body()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(bytes, script.bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_delay_paces_the_stream() {
    let delay = Duration::from_millis(20);
    let script = SseScript::message("a b").chunk_delay(delay);
    let n = script.chunks.len() as u32;
    let mock = MockUpstream::start(Script::always(script.clone())).await;
    let started = Instant::now();
    let (raw, _) = raw_exchange(mock.addr()).await;
    assert!(started.elapsed() >= delay * n, "{:?}", started.elapsed());
    assert_eq!(Chunked::parse(&raw).body(), script.bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_resets_after_the_scripted_bytes() {
    let script = SseScript::message("Hello brave new world").cut_after(4, 11);
    let mock = MockUpstream::start(Script::always(script.clone())).await;
    let (raw, error) = raw_exchange(mock.addr()).await;
    let error = error.expect("a reset, not EOF");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    let response = Chunked::parse(&raw);
    assert!(!response.terminated);
    assert_eq!(
        response.body(),
        script.bytes(),
        "every byte before the cut arrived"
    );
    assert_eq!(response.chunks.last().map(Bytes::len), Some(11));

    // A hyper client reads those bytes, then a body error.
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("head");
    let (bytes, error) = drain(response.into_body()).await;
    assert_eq!(bytes, script.bytes());
    assert!(error.is_some(), "the body must fail, not end cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_with_no_chunks_still_sends_the_head() {
    let script = SseScript::message("x").cut_after(0, 0);
    let mock = MockUpstream::start(Script::always(script)).await;
    let (raw, error) = raw_exchange(mock.addr()).await;
    assert_eq!(
        error.map(|e| e.kind()),
        Some(io::ErrorKind::ConnectionReset)
    );
    let response = Chunked::parse(&raw);
    assert!(response.head.starts_with("HTTP/1.1 200 OK"));
    assert!(response.chunks.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stall_sends_nothing_more_until_the_mock_stops() {
    let script = SseScript::message("Hello brave new world").stall_after(3);
    let mock = MockUpstream::start(Script::always(script.clone())).await;
    let mut client = h1(mock.addr()).await;
    let uri = format!("{}/v1/messages", mock.url());
    let response = send(&mut client, post(&uri, BODY)).await.expect("head");
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
