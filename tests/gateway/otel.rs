//! OpenTelemetry traces: spans received by a real OTLP receiver (built on
//! the official `opentelemetry-proto` definitions), a client's
//! `traceparent` continued, and attempts named to the upstream.

use super::{FAST_POLICY, MESSAGE, STREAM_MESSAGE, client, levee_for, metric};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Reply, Script, SseScript, Step};
use levee_tests::otlp::OtlpReceiver;
use serde_json::Value;
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// `SpanKind`'s values in OTLP.
const SERVER: i64 = 2;
const CLIENT: i64 = 3;

fn traced(upstream: &MockUpstream, receiver: &OtlpReceiver, extra: &str) -> Levee {
    levee_for(
        upstream,
        &format!(
            "{FAST_POLICY}\n[otel]\nendpoint = \"{}\"\nservice_name = \"levee-under-test\"\n{extra}",
            receiver.endpoint()
        ),
    )
}

async fn send(levee: &Levee, body: &str, traceparent: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/v1/messages", levee.url()))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    req.send().await.expect("levee answers")
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn header(r: &levee_tests::mock::Recorded, name: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_request_is_one_trace_continuing_the_clients_with_a_span_per_attempt() {
    let upstream = MockUpstream::start(Script::of([
        Step::Reply(Reply::overloaded()),
        Step::Reply(Reply::message_with("hi", 12, 5)),
    ]))
    .await;
    let receiver = OtlpReceiver::start();
    let levee = traced(&upstream, &receiver, "");
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let resp = send(&levee, MESSAGE, Some(&traceparent)).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();

    let spans = receiver.wait_for(3, Duration::from_secs(10));
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let root = spans
        .iter()
        .find(|s| s["kind"] == SERVER)
        .expect("a server span");
    let mut attempts: Vec<&Value> = spans.iter().filter(|s| s["kind"] == CLIENT).collect();
    attempts.sort_by_key(|s| s["attributes"]["levee.attempt"].as_i64());
    assert_eq!(attempts.len(), 2);

    // One trace: the client's, under the client's span.
    for s in &spans {
        assert_eq!(s["trace_id"], TRACE_ID);
        assert_eq!(s["resource"]["service.name"], "levee-under-test");
        assert_eq!(s["scope"], "levee");
    }
    assert_eq!(root["parent_span_id"], CLIENT_SPAN);
    assert_eq!(root["name"], "POST /v1/messages");
    assert_eq!(attr(root, "http.response.status_code"), 200);
    assert_eq!(attr(root, "gen_ai.system"), "anthropic");
    assert_eq!(attr(root, "gen_ai.operation.name"), "chat");
    assert_eq!(attr(root, "gen_ai.request.model"), "claude-sonnet-4-5");
    assert_eq!(attr(root, "gen_ai.request.max_tokens"), 64);
    assert_eq!(attr(root, "gen_ai.usage.input_tokens"), 12);
    assert_eq!(attr(root, "gen_ai.usage.output_tokens"), 5);
    assert_eq!(attr(root, "levee.attempts"), 2);
    assert_eq!(attr(root, "levee.upstream"), "primary");
    assert_eq!(attr(root, "levee.admission"), "admit");

    let (first, second) = (attempts[0], attempts[1]);
    for a in [first, second] {
        assert_eq!(a["parent_span_id"], root["span_id"]);
        assert_eq!(a["name"], "chat claude-sonnet-4-5");
        assert_eq!(attr(a, "levee.upstream"), "primary");
        assert_eq!(attr(a, "server.address"), "127.0.0.1");
        assert_eq!(attr(a, "gen_ai.request.model"), "claude-sonnet-4-5");
    }
    assert_eq!(attr(first, "http.response.status_code"), 529);
    assert_eq!(attr(first, "error.type"), "529");
    assert_eq!(attr(first, "levee.policy.decision"), "retry");
    assert_eq!(attr(first, "levee.retry.reason"), "529");
    assert_eq!(attr(first, "levee.retry.upstream"), "primary");
    assert_eq!(first["status_code"], 2, "an overloaded attempt is an error");
    assert_eq!(attr(second, "http.response.status_code"), 200);
    assert!(attr(second, "levee.policy.decision").is_null());
    assert_eq!(second["status_code"], 0);

    // The attempts sit inside the request, one after the other.
    let t = |s: &Value, k: &str| s[k].as_u64().unwrap();
    assert!(t(root, "start") <= t(first, "start"));
    assert!(t(first, "start") <= t(first, "end"));
    assert!(t(first, "end") <= t(second, "start"));
    assert!(t(second, "end") <= t(root, "end"));
    let took_ms = (t(root, "end") - t(root, "start")) / 1_000_000;
    assert!(took_ms < 10_000, "the request span lasted {took_ms} ms");

    // Each attempt told the upstream its own span, in the client's trace.
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    for (r, a) in seen.iter().zip([first, second]) {
        let sent = header(r, "traceparent").expect("a traceparent upstream");
        assert_eq!(
            sent,
            format!("00-{TRACE_ID}-{}-01", a["span_id"].as_str().unwrap())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn untraced_parents_are_followed_and_a_stream_span_ends_with_the_stream() {
    let upstream = MockUpstream::start(Script::of([
        Step::Reply(Reply::message_with("hi", 3, 2)),
        Step::Sse(SseScript::message_with(&["Hel", "lo"], 9, 7)),
    ]))
    .await;
    let receiver = OtlpReceiver::start();
    let levee = traced(&upstream, &receiver, "");
    // The client's trace is not sampled: levee traces nothing, and passes
    // the header on as it came.
    let unsampled = format!("00-{TRACE_ID}-{CLIENT_SPAN}-00");
    let resp = send(&levee, MESSAGE, Some(&unsampled)).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    // No traceparent: a new trace, sampled (the ratio is 1.0).
    let resp = send(&levee, STREAM_MESSAGE, None).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("message_stop"));

    let spans = receiver.wait_for(2, Duration::from_secs(10));
    // Exports keep the order requests end in: had the first request been
    // traced, its spans would be here before the second's.
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let root = spans.iter().find(|s| s["kind"] == SERVER).unwrap();
    assert_ne!(root["trace_id"], TRACE_ID);
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(attr(root, "levee.request.stream"), true);
    assert_eq!(attr(root, "levee.stream.end"), "complete");
    assert_eq!(attr(root, "gen_ai.usage.input_tokens"), 9);
    assert_eq!(attr(root, "gen_ai.usage.output_tokens"), 7);
    let seen = upstream.requests();
    assert_eq!(header(&seen[0], "traceparent"), Some(unsampled));
    let attempt = spans.iter().find(|s| s["kind"] == CLIENT).unwrap();
    assert_eq!(
        header(&seen[1], "traceparent"),
        Some(format!(
            "00-{}-{}-01",
            root["trace_id"].as_str().unwrap(),
            attempt["span_id"].as_str().unwrap()
        ))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_refuses_for_a_while_gets_the_spans_again_with_its_headers() {
    let upstream = MockUpstream::start(Script::always(Reply::message_with("hi", 3, 2))).await;
    let receiver = OtlpReceiver::failing_first(2);
    let secret = "otlp-ingest-key-5f2e";
    let levee = traced(
        &upstream,
        &receiver,
        &format!("[otel.headers]\nx-ingest-key = \"{secret}\"\n"),
    );
    let resp = send(&levee, MESSAGE, None).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let spans = receiver.wait_for(2, Duration::from_secs(10));
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let exports = receiver.exports();
    assert_eq!(exports.len(), 3, "two refused, then accepted: {exports:?}");
    for e in &exports {
        assert_eq!(e["x-ingest-key"], secret);
        assert_eq!(e["content-type"], "application/x-protobuf");
    }
    assert_eq!(metric(&levee, "levee_otel_spans_exported_total").await, 2.0);
    assert_eq!(metric(&levee, "levee_otel_spans_dropped_total").await, 0.0);
    assert!(
        !levee.log().contains(secret),
        "the collector's key leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_queued_at_shutdown_are_exported_before_levee_exits() {
    let upstream = MockUpstream::start(Script::always(Reply::message_with("hi", 3, 2))).await;
    let receiver = OtlpReceiver::start();
    let mut levee = traced(&upstream, &receiver, "");
    let resp = send(&levee, MESSAGE, None).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    // The exporter waits up to a second for more spans to batch; SIGTERM
    // comes first, and the flush at exit sends them.
    levee.signal("TERM");
    assert_eq!(levee.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(receiver.spans().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdks_environment_variables_turn_tracing_on_without_a_config_section() {
    let upstream = MockUpstream::start(Script::always(Reply::message_with("hi", 3, 2))).await;
    let receiver = OtlpReceiver::start();
    let levee = Levee::start_env(
        &format!(
            "{FAST_POLICY}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n",
            upstream.url()
        ),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_SERVICE_NAME", "from-the-environment".into()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-ingest-key=env%20key".into(),
            ),
        ],
    );
    let resp = send(&levee, MESSAGE, None).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let spans = receiver.wait_for(2, Duration::from_secs(10));
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert_eq!(spans[0]["resource"]["service.name"], "from-the-environment");
    assert_eq!(receiver.exports()[0]["x-ingest-key"], "env key");
}
