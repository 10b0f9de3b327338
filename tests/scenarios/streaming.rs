//! Streams pass through byte for byte, and a broken one never ends silently.

use super::{Gateway, STREAM_MESSAGE, Setup, gateway_for, header, post};
use levee_tests::mock::{MockUpstream, Script, SseScript, Step};

/// The default policy with a 400 ms idle timeout.
fn setup() -> Setup {
    Setup {
        idle_timeout_ms: Some(400),
        ..Setup::default()
    }
}

/// A healthy stream arrives byte for byte.
pub async fn a_healthy_stream_passes_byte_for_byte<G: Gateway>() {
    let script = SseScript::message("The quick brown fox jumps over the lazy dog, twice over.");
    let expected = script.bytes();
    let upstream = MockUpstream::start(Script::of([Step::Sse(script)])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post(&gw, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), Some("text/event-stream"));
    assert_eq!(resp.bytes().await.unwrap(), expected);
}

/// The body must end with exactly one terminal error frame in the API's
/// shape, after the events that arrived whole.
fn assert_ends_with_error_frame(body: &[u8], before: &[u8], reason: &str) {
    let text = String::from_utf8_lossy(body);
    assert!(
        body.starts_with(before),
        "the whole events before the break pass through:\n{text}"
    );
    let tail = &text[before.len()..];
    let data = tail
        .strip_prefix("event: error\ndata: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("no terminal error frame after the events:\n{tail}"));
    let json: serde_json::Value = serde_json::from_str(data).expect("the frame's data is JSON");
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "api_error");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains(reason), "{message}");
}

/// A connection cut mid-event ends with an error frame, never a clean close.
pub async fn a_cut_stream_ends_with_an_error_frame_not_a_clean_close<G: Gateway>() {
    let script = SseScript::message("one two three four five six").cut_after(4, 10);
    let events = |n: usize| -> Vec<u8> {
        script.chunks[..n]
            .iter()
            .flat_map(|(_, b)| b.to_vec())
            .collect()
    };
    let whole = events(4);
    let upstream = MockUpstream::start(Script::of([Step::Sse(script.clone())])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post(&gw, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    let body = resp
        .bytes()
        .await
        .expect("the client gets a well-formed end");
    // Where the runtime loses what it had not handed over at the reset,
    // fewer events pass, but only whole ones, and the end is the same.
    let passed = if gw.keeps_bytes_received_before_a_reset() {
        whole
    } else {
        (0..=4)
            .rev()
            .map(events)
            .find(|e| body.starts_with(e) && body[e.len()..].starts_with(b"event: error\n"))
            .unwrap_or(whole)
    };
    assert_ends_with_error_frame(&body, &passed, "upstream failed mid-stream");
    assert_eq!(
        upstream.requests().len(),
        1,
        "nothing is retried once bytes reached the client"
    );
}

/// A stall past the idle timeout ends with an error frame.
pub async fn a_stalled_stream_ends_with_an_error_frame<G: Gateway>() {
    let script = SseScript::message("one two three four").stall_after(3);
    let whole: Vec<u8> = script.chunks[..3]
        .iter()
        .flat_map(|(_, b)| b.to_vec())
        .collect();
    let upstream = MockUpstream::start(Script::of([Step::Sse(script)])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post(&gw, STREAM_MESSAGE).await;
    let body = resp.bytes().await.unwrap();
    assert_ends_with_error_frame(&body, &whole, "upstream stalled: no bytes for 400 ms");
}

/// A clean close before `message_stop` is a cut.
pub async fn a_stream_closed_before_message_stop_is_a_cut<G: Gateway>() {
    let full = SseScript::message("one two three");
    let first: Vec<bytes::Bytes> = full.chunks[..3].iter().map(|(_, b)| b.clone()).collect();
    let whole: Vec<u8> = first.iter().flat_map(|b| b.to_vec()).collect();
    let upstream =
        MockUpstream::start(Script::of([Step::Sse(SseScript::from_chunks(first))])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let body = post(&gw, STREAM_MESSAGE).await.bytes().await.unwrap();
    assert_ends_with_error_frame(&body, &whole, "closed the stream before message_stop");
}

/// The upstream's own error event ends the stream; levee adds nothing.
pub async fn an_upstream_error_event_passes_through_as_the_end<G: Gateway>() {
    let script =
        SseScript::message("one two three four").error_after(3, "overloaded_error", "Overloaded");
    let expected = script.bytes();
    let upstream = MockUpstream::start(Script::of([Step::Sse(script)])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let body = post(&gw, STREAM_MESSAGE).await.bytes().await.unwrap();
    assert_eq!(
        body, expected,
        "the upstream's own error event ends the stream; levee adds nothing"
    );
}
