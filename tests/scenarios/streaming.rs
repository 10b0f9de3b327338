//! Streams pass through byte for byte, and a broken one never ends silently.

use super::{Gateway, STREAM_MESSAGE, Setup, gateway_for, header, post, post_to};
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
    // The stream's own request id (the mock's), so support can find it.
    let id = json["request_id"].as_str().unwrap_or_default();
    assert!(id.starts_with("req_mock_"), "request_id {id:?}");
}

/// A connection cut mid-event ends with an error frame, never a clean close.
pub async fn a_cut_stream_ends_with_an_error_frame_not_a_clean_close<G: Gateway>() {
    // Paced, so that every runtime has read the first delta (content, past
    // the hold) before the cut: a cut before content would be retried.
    let script = SseScript::message("one two three four five six")
        .chunk_delay(std::time::Duration::from_millis(20))
        .cut_after(4, 10);
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
    // message_start, content_block_start, ping and the first delta: content
    // reached the client, so the close cannot be retried.
    let first: Vec<bytes::Bytes> = full.chunks[..4].iter().map(|(_, b)| b.clone()).collect();
    let whole: Vec<u8> = first.iter().flat_map(|b| b.to_vec()).collect();
    let upstream =
        MockUpstream::start(Script::of([Step::Sse(SseScript::from_chunks(first))])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let body = post(&gw, STREAM_MESSAGE).await.bytes().await.unwrap();
    assert_ends_with_error_frame(&body, &whole, "closed the stream before message_stop");
}

/// The upstream's own error event, after content, ends the stream as it
/// came: too late to retry, and levee adds nothing.
pub async fn an_upstream_error_event_after_content_passes_through_as_the_end<G: Gateway>() {
    // message_start, content_block_start, ping, one delta, then the error.
    let script =
        SseScript::message("one two three four").error_after(4, "overloaded_error", "Overloaded");
    let expected = script.bytes();
    let upstream = MockUpstream::start(Script::of([Step::Sse(script)])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post(&gw, STREAM_MESSAGE).await;
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        body, expected,
        "the upstream's own error event ends the stream; levee adds nothing"
    );
    assert_eq!(upstream.requests().len(), 1, "content had flowed: no retry");
}

/// An `overloaded_error` event: after message_start, content_block_start
/// and a ping, before any content.
fn overloaded_before_content() -> SseScript {
    SseScript::message("never sent").error_after(3, "overloaded_error", "Overloaded")
}

/// An error event before content is the attempt's outcome: retried like
/// the 529 it stands for, and the client sees only the clean stream.
pub async fn an_error_event_before_content_is_retried_and_the_client_sees_one_clean_stream<
    G: Gateway,
>() {
    let clean = SseScript::message("The second try answers.");
    let expected = clean.bytes();
    let script = Script::of([Step::Sse(overloaded_before_content()), Step::Sse(clean)]);
    let upstream = MockUpstream::start(script).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post(&gw, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    assert_eq!(header(&resp, "content-type"), Some("text/event-stream"));
    assert_eq!(resp.bytes().await.unwrap(), expected, "one clean stream");
    assert_eq!(upstream.requests().len(), 2);
}

/// When every try's stream fails before content, levee gives up as for the
/// status the error stands for: a 529 in the API's JSON shape, which the
/// SDKs know, after the policy's attempts.
pub async fn an_error_event_before_content_on_every_try_gives_up_with_its_status<G: Gateway>() {
    let upstream = MockUpstream::start(Script::always(overloaded_before_content())).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post(&gw, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("4"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    let body: serde_json::Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(upstream.requests().len(), 4);
}

/// `hold_ms = 0` holds nothing back: the error event reaches the client
/// as it came, after one attempt (what the hold changes, shown apart).
pub async fn with_no_hold_an_error_event_before_content_passes_through<G: Gateway>() {
    let script = overloaded_before_content();
    let expected = script.bytes();
    let upstream = MockUpstream::start(Script::always(script)).await;
    let no_hold = Setup {
        hold_ms: Some(0),
        ..setup()
    };
    let gw: G = gateway_for(&upstream, &no_hold);
    let resp = post(&gw, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    assert_eq!(resp.bytes().await.unwrap(), expected);
    assert_eq!(upstream.requests().len(), 1);
}

/// A stream that closes before any content has sent the client nothing:
/// it is retried, as a reset before the head is.
pub async fn a_stream_closed_before_content_is_retried<G: Gateway>() {
    let full = SseScript::message("unused");
    let start: Vec<bytes::Bytes> = full.chunks[..3].iter().map(|(_, b)| b.clone()).collect();
    let clean = SseScript::message("The retry answers.");
    let expected = clean.bytes();
    let script = Script::of([Step::Sse(SseScript::from_chunks(start)), Step::Sse(clean)]);
    let upstream = MockUpstream::start(script).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post(&gw, STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    assert_eq!(resp.bytes().await.unwrap(), expected);
}

/// A streamed chat completion, as `/v1/chat/completions` sends one.
const CHAT_STREAM: &str = r#"{"model":"claude-sonnet-4-5","max_completion_tokens":64,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;

/// OpenAI-format chunks: a role, two pieces of content, the finish, the
/// usage chunk.
fn chat_chunks() -> Vec<String> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"claude-sonnet-4-5\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    vec![
        chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chunk(r#"{"content":"Hello"}"#, "null"),
        chunk(r#"{"content":" there"}"#, "null"),
        chunk("{}", r#""stop""#),
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"claude-sonnet-4-5\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n".to_owned(),
    ]
}

/// An OpenAI-format stream is complete at `data: [DONE]`: it passes byte
/// for byte, and levee appends nothing.
pub async fn an_openai_stream_passes_byte_for_byte_ending_with_done<G: Gateway>() {
    let mut chunks = chat_chunks();
    chunks.push("data: [DONE]\n\n".to_owned());
    let script = SseScript::from_chunks(chunks);
    let expected = script.bytes();
    let upstream = MockUpstream::start(Script::of([Step::Sse(script)])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post_to(&gw, "/v1/chat/completions", CHAT_STREAM).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body, expected, "{}", String::from_utf8_lossy(&body));
    assert!(body.ends_with(b"data: [DONE]\n\n"));
}

/// An OpenAI-format stream cut before `[DONE]` ends with an error in its
/// own format: a data chunk holding an `error` object, which the OpenAI
/// SDKs raise.
pub async fn a_cut_openai_stream_ends_with_an_error_chunk_in_its_format<G: Gateway>() {
    let chunks = chat_chunks();
    let whole: Vec<u8> = chunks[..2].concat().into_bytes();
    // The body ends cleanly, but before `[DONE]`.
    let script = SseScript::from_chunks(chunks[..2].to_vec());
    let upstream = MockUpstream::start(Script::of([Step::Sse(script)])).await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post_to(&gw, "/v1/chat/completions", CHAT_STREAM).await;
    let body = resp.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(body.starts_with(&whole), "{text}");
    let data = text[whole.len()..]
        .strip_prefix("data: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("no error chunk after the content:\n{text}"));
    let json: serde_json::Value = serde_json::from_str(data).expect("the chunk is JSON");
    assert_eq!(json["error"]["type"], "api_error");
    let id = json["request_id"].as_str().unwrap_or_default();
    assert!(id.starts_with("req_mock_"), "request_id {id:?}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("before data: [DONE]"), "{message}");
    assert!(
        !text.contains("event: error"),
        "not the Messages format:\n{text}"
    );
}
