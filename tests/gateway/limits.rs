//! Rate limits end to end: levee paces requests to its configured limits
//! and to what the upstream's headers say, queues what does not fit, and
//! answers 429 itself, with an honest `retry-after`, only when a request
//! cannot be admitted in time.

use super::{FAST_POLICY, MESSAGE, client, header, metric, post};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, RateLimits, Reply, Script, SseScript, Step};
use std::time::{Duration, Instant};

/// Levee in front of `upstream` with `[upstreams.limits]` and `[limits]`.
fn levee_with_limits(upstream: &MockUpstream, limits: &str, admission: &str) -> Levee {
    Levee::start(&format!(
        "{FAST_POLICY}\n[limits]\n{admission}\n\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n[upstreams.limits]\n{limits}\n",
        upstream.url()
    ))
}

/// POSTs `MESSAGE` with the client's own timeout (`x-stainless-timeout`).
pub(super) async fn post_within(levee: &Levee, secs: f64) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", levee.url()))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("x-stainless-timeout", secs.to_string())
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await
        .expect("levee answers")
}

fn retry_after_ms(resp: &reqwest::Response) -> u64 {
    header(resp, "retry-after-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after-ms in {:?}", resp.headers()))
}

/// Polls until `series` reads `want`, for at most 10 s.
pub(super) async fn until_metric(levee: &Levee, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = metric(levee, series).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_rate_admits_the_burst_then_paces() {
    let upstream = MockUpstream::start(Script::new()).await;
    // 12 a minute: a burst of 12, then one every 5 s.
    let levee = levee_with_limits(&upstream, "requests_per_minute = 12", "");
    let started = Instant::now();
    let burst = futures_util::future::join_all((0..12).map(|_| post(&levee, MESSAGE))).await;
    assert!(burst.iter().all(|r| r.status() == 200));
    // The 13th cannot fit within its half second: levee answers alone.
    let refused = post_within(&levee, 0.5).await;
    let since_burst = started.elapsed().as_millis() as u64;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-should-retry"), Some("true"));
    let wait = retry_after_ms(&refused);
    assert!(
        wait <= 5_000 && wait + since_burst + 200 >= 5_000,
        "retry-after-ms {wait} after {since_burst} ms does not match one request per 5 s"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(upstream.requests().len(), 12, "the refused one never left");
    // The 14th may wait: it queues, then goes through when the bucket has
    // room again.
    let asked = Instant::now();
    let paced = post(&levee, MESSAGE).await;
    assert_eq!(paced.status(), 200);
    assert!(
        asked.elapsed().as_millis() as u64 + 300 >= wait,
        "admitted after {:?}, before the bucket had room ({wait} ms)",
        asked.elapsed()
    );
    assert_eq!(upstream.requests().len(), 13);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstreams_headers_pace_levee_before_any_429() {
    // No configured limit: the upstream says 12 a minute, none left.
    let upstream = MockUpstream::start(Script::always(Step::Reply(
        Reply::message()
            .header("anthropic-ratelimit-requests-limit", "12")
            .header("anthropic-ratelimit-requests-remaining", "0"),
    )))
    .await;
    let levee = super::levee_for(&upstream, "");
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    let refused = post_within(&levee, 0.5).await;
    assert_eq!(
        refused.status(),
        429,
        "levee paces, the upstream is not asked"
    );
    let wait = retry_after_ms(&refused);
    assert!(
        (3_000..=5_000).contains(&wait),
        "12 a minute refill one in 5 s, got {wait} ms"
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_sheds_and_a_client_that_leaves_frees_its_place() {
    let upstream = MockUpstream::start(Script::new()).await;
    let levee = levee_with_limits(&upstream, "requests_per_minute = 1", "queue_size = 1");
    const DEPTH: &str = "levee_admission_queue_depth";
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    // The second waits a minute for the bucket, in the one place.
    let url = levee.url();
    let waiting = tokio::spawn(async move {
        client()
            .post(format!("{url}/v1/messages"))
            .header("content-type", "application/json")
            .body(MESSAGE)
            .send()
            .await
    });
    until_metric(&levee, DEPTH, 1.0).await;
    // The third finds the queue full and is refused at once.
    let asked = Instant::now();
    let shed = post(&levee, MESSAGE).await;
    assert_eq!(shed.status(), 429);
    assert!(asked.elapsed() < Duration::from_secs(5), "shed at once");
    let wait = retry_after_ms(&shed);
    assert!(wait > 30_000 && wait <= 60_000, "retry-after-ms {wait}");
    assert_eq!(header(&shed, "x-should-retry"), Some("true"));
    assert_eq!(
        metric(
            &levee,
            "levee_local_rejections_total{reason=\"queue_full\"}"
        )
        .await,
        1.0
    );
    // The waiting client goes away: its place is free again.
    waiting.abort();
    until_metric(&levee, DEPTH, 0.0).await;
    let url = levee.url();
    let next = tokio::spawn(async move {
        client()
            .post(format!("{url}/v1/messages"))
            .header("content-type", "application/json")
            .body(MESSAGE)
            .send()
            .await
    });
    until_metric(&levee, DEPTH, 1.0).await;
    next.abort();
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_usage_is_counted() {
    let upstream = MockUpstream::start(Script::always(Step::Sse(
        levee_tests::mock::SseScript::message_with(&["Hel", "lo"], 21, 34),
    )))
    .await;
    let levee = levee_with_limits(&upstream, "output_tokens_per_minute = 100000", "");
    let resp = post(&levee, super::STREAM_MESSAGE).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let series =
        |dir: &str| format!("levee_tokens_total{{upstream=\"primary\",direction=\"{dir}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&levee, &series("output")).await != 34.0 {
        assert!(Instant::now() < deadline, "output tokens never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&levee, &series("input")).await, 21.0);
}

/// The API's bucket in these bursts: 50 requests a minute, one per 1.2 s.
const BURST_RPM: u64 = 50;
/// Milliseconds for one request to refill.
const REFILL_MS: u64 = 60_000 / BURST_RPM;

/// What a burst's client saw.
struct Burst {
    ok: usize,
    /// `(retry-after-ms, retry-after, x-should-retry, error type)` of each 429.
    refused: Vec<(u64, u64, String, String)>,
    others: Vec<u16>,
}

/// `n` concurrent requests, each with `x-stainless-timeout: timeout_secs`.
async fn burst(levee: &Levee, n: usize, timeout_secs: f64) -> Burst {
    let answers = futures_util::future::join_all((0..n).map(|_| async {
        let resp = post_within(levee, timeout_secs).await;
        let status = resp.status().as_u16();
        if status != 429 {
            let _ = resp.bytes().await;
            return (status, None);
        }
        let secs = header(&resp, "retry-after").and_then(|v| v.parse().ok());
        let verdict = (
            retry_after_ms(&resp),
            secs.expect("retry-after in seconds"),
            header(&resp, "x-should-retry").unwrap_or("").to_owned(),
        );
        let body: serde_json::Value = resp.json().await.expect("JSON error");
        let kind = body["error"]["type"].as_str().unwrap_or("").to_owned();
        (status, Some((verdict.0, verdict.1, verdict.2, kind)))
    }))
    .await;
    let mut out = Burst {
        ok: 0,
        refused: Vec::new(),
        others: Vec::new(),
    };
    for (status, refused) in answers {
        match (status, refused) {
            (200, _) => out.ok += 1,
            (429, Some(r)) => out.refused.push(r),
            (other, _) => out.others.push(other),
        }
    }
    out
}

/// 200 requests at once against an upstream allowing 50 a minute: the
/// upstream never answers 429, because levee sends the first 50 and then
/// one per refill, and refuses itself, with a `retry-after` that matches
/// the refill, the requests whose 3 s deadline the bucket cannot meet.
async fn check_burst(upstream: &MockUpstream, levee: &Levee, before: usize) {
    const N: usize = 200;
    let started = Instant::now();
    let seen = burst(levee, N, 3.0).await;
    let elapsed = started.elapsed();
    assert!(
        seen.others.is_empty(),
        "unexpected statuses {:?}",
        seen.others
    );
    assert_eq!(seen.ok + seen.refused.len(), N);
    eprintln!(
        "burst of {N}: {} sent, {} refused by levee, {} upstream 429s, in {elapsed:?}",
        seen.ok,
        seen.refused.len(),
        upstream.rate_limited()
    );
    assert_eq!(upstream.rate_limited(), 0, "the upstream never said 429");
    let sent = upstream.requests().len() - before;
    assert_eq!(sent, seen.ok, "every request sent was answered 200");
    // The full bucket, plus what refilled while the burst ran (levee's
    // bucket at most; before = the warm-up that took one).
    let ceiling = BURST_RPM as usize - before + (elapsed.as_millis() as u64 / REFILL_MS) as usize;
    assert!(
        (BURST_RPM as usize - before + 1..=ceiling).contains(&seen.ok),
        "{} admitted in {elapsed:?}: want the bucket's {} and at least one paced, at most {ceiling}",
        seen.ok,
        BURST_RPM as usize - before
    );
    // Paced: the last one reached the upstream at least one refill after
    // the first of the burst.
    let arrivals: Vec<Instant> = upstream.requests()[before..].iter().map(|r| r.at).collect();
    let spread = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    assert!(
        spread.as_millis() as u64 + 50 >= REFILL_MS,
        "sent within {spread:?}: not paced"
    );
    for (ms, secs, should_retry, kind) in &seen.refused {
        assert!(
            (1..=REFILL_MS).contains(ms),
            "retry-after-ms {ms}: the next request refills within {REFILL_MS} ms"
        );
        assert_eq!(
            *secs,
            ms.div_ceil(1000),
            "retry-after is retry-after-ms in whole seconds"
        );
        assert_eq!(should_retry, "true");
        assert_eq!(kind, "rate_limit_error");
    }
    // The policy refuses what its view shows cannot fit (`policy_reject`),
    // the admission queue what its buckets cannot fit in time.
    let reasons = [
        "policy_reject",
        "rate_limited",
        "queue_deadline",
        "queue_full",
    ];
    let mut counted = 0.0;
    for reason in reasons {
        let series = format!("levee_local_rejections_total{{reason=\"{reason}\"}}");
        counted += metric(levee, &series).await;
    }
    assert_eq!(
        counted,
        seen.refused.len() as f64,
        "each refusal is counted once"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "the refusals came at the deadline: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_200_against_50_a_minute_provokes_no_upstream_429() {
    let upstream = MockUpstream::start(Script::new()).await;
    upstream.set_limits(Some(RateLimits::requests(BURST_RPM)));
    let levee = levee_with_limits(&upstream, &format!("requests_per_minute = {BURST_RPM}"), "");
    check_burst(&upstream, &levee, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_paced_by_the_limit_levee_learned_from_one_response() {
    let upstream = MockUpstream::start(Script::new()).await;
    upstream.set_limits(Some(RateLimits::requests(BURST_RPM)));
    // No limit configured: one request teaches it.
    let levee = super::levee_for(&upstream, "");
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    check_burst(&upstream, &levee, 1).await;
}

/// Output tokens held by streamed responses: the mock allows 3000 a
/// minute and charges each stream the output it reports; levee, set to
/// the same limit, reserves each request's `max_tokens` (60) and settles
/// on the stream's `message_delta`. 72 streams report more than the
/// minute's 3000 in all, so levee must pace them: the mock never answers
/// 429, every stream arrives whole, and levee counts exactly what the mock
/// reported.
#[tokio::test(flavor = "multi_thread")]
async fn output_token_limits_hold_for_streamed_responses() {
    const N: usize = 72;
    const OTPM: u64 = 3_000;
    let outputs = [60u64, 45, 30, 50];
    let scripts: Vec<SseScript> = (0..N)
        .map(|i| {
            SseScript::message_with(&["Hel", "lo ", "there"], 12, outputs[i % outputs.len()])
                .chunk_delay(Duration::from_millis(20))
        })
        .collect();
    let reported: u64 = (0..N).map(|i| outputs[i % outputs.len()]).sum();
    assert!(reported > OTPM, "the batch needs pacing");
    let upstream = MockUpstream::start(Script::of(scripts.iter().cloned())).await;
    upstream.set_limits(Some(RateLimits::default().output_tokens(OTPM)));
    let levee = Levee::start(&format!(
        "{FAST_POLICY}output_reserve_share = 1.0\n\n[[upstreams]]\nname = \"primary\"\n\
         url = \"{}\"\n[upstreams.limits]\noutput_tokens_per_minute = {OTPM}\n",
        upstream.url()
    ));
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":60,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let started = Instant::now();
    let bodies = futures_util::future::join_all((0..N).map(|_| async {
        let resp = client()
            .post(format!("{}/v1/messages", levee.url()))
            .header("x-api-key", "sk-ant-test-secret-0001")
            .header("x-stainless-timeout", "60")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("levee answers");
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("a whole stream")
    }))
    .await;
    eprintln!(
        "{N} streams reporting {reported} output tokens (limit {OTPM}/min) in {:?}, upstream 429s: {}",
        started.elapsed(),
        upstream.rate_limited()
    );
    assert_eq!(upstream.rate_limited(), 0, "the upstream never said 429");
    assert_eq!(upstream.requests().len(), N);
    // Byte-complete: the bodies are exactly the scripts the mock played
    // (in whatever order the requests arrived).
    let mut got: Vec<_> = bodies.iter().map(|b| b.to_vec()).collect();
    let mut want: Vec<_> = scripts.iter().map(|s| s.bytes().to_vec()).collect();
    got.sort();
    want.sort();
    assert!(got == want, "a stream arrived different from its script");
    let series = "levee_tokens_total{upstream=\"primary\",direction=\"output\"}";
    until_metric(&levee, series, reported as f64).await;
}

/// The API's rule for prompt caching: cache reads do not count toward the
/// input-token limit, cache writes do. Five answers that each read 5,000
/// tokens from the cache leave a 2,000-a-minute input budget nearly whole;
/// the access line and the metrics keep every count apart, with the
/// upstream's `request-id` and organization.
#[tokio::test(flavor = "multi_thread")]
async fn cache_reads_are_not_charged_against_the_input_limit_and_each_count_is_kept() {
    let cached = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"model":"claude-sonnet-4-5","stop_reason":"end_turn","usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":5000,"output_tokens":5}}"#;
    let reply = Reply::json(200, cached).header("anthropic-organization-id", "org-0001");
    let upstream = MockUpstream::start(Script::always(Step::Reply(reply))).await;
    let levee = levee_with_limits(&upstream, "input_tokens_per_minute = 2000", "");
    for _ in 0..5 {
        // Charged 5,000 tokens each, the second would wait for a refill
        // that takes minutes: the client's 5 s makes that a prompt 429.
        let resp = post_within(&levee, 5.0).await;
        assert_eq!(resp.status(), 200, "admitted at once");
        resp.bytes().await.unwrap();
    }
    let series =
        |dir: &str| format!("levee_tokens_total{{upstream=\"primary\",direction=\"{dir}\"}}");
    until_metric(&levee, &series("cache_read"), 25_000.0).await;
    assert_eq!(metric(&levee, &series("input")).await, 50.0);
    assert_eq!(metric(&levee, &series("output")).await, 25.0);
    let status = super::status(&levee).await;
    let input = status["admission"]["upstreams"][0]["budgets"]
        .as_array()
        .expect("budgets")
        .iter()
        .find(|b| b["kind"] == "input-tokens")
        .unwrap_or_else(|| panic!("no input budget in {status}"))
        .clone();
    let left = input["remaining"].as_u64().unwrap();
    assert!(
        (1900..=2000).contains(&left),
        "only the 50 uncached tokens were charged: {input}"
    );
    let line = super::access_line(&levee, &["status=200"]).await;
    for field in [
        "input_tokens=10",
        "cache_read_input_tokens=5000",
        "cache_creation_input_tokens=0",
        "output_tokens=5",
        "organization_id=\"org-0001\"",
    ] {
        assert!(line.split(' ').any(|w| w == field), "{field} in {line}");
    }
    assert!(line.contains("upstream_request_id=\"req_mock_"), "{line}");
}

/// Older models' limits count cache reads as input: a class configured so
/// (`cache_reads_count`) is charged the 5,000 tokens read from the cache,
/// where the same answer leaves a current model's budget nearly whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_class_whose_limits_count_cache_reads_is_charged_for_them() {
    let cached = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"model":"claude-sonnet-4-5","stop_reason":"end_turn","usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":5000,"output_tokens":5}}"#;
    for (counted, range) in [(false, 1900..=2000), (true, 0..=100)] {
        let upstream = MockUpstream::start(Script::always(Reply::json(200, cached))).await;
        let classes = format!(
            "classes = [{{ name = \"sonnet\", contains = [\"sonnet\"], cache_reads_count = {counted} }}]"
        );
        let levee = levee_with_limits(&upstream, "input_tokens_per_minute = 2000", &classes);
        let resp = post_within(&levee, 5.0).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        let series = "levee_tokens_total{upstream=\"primary\",direction=\"cache_read\"}";
        until_metric(&levee, series, 5000.0).await;
        let status = super::status(&levee).await;
        let input = status["admission"]["upstreams"][0]["budgets"]
            .as_array()
            .expect("budgets")
            .iter()
            .find(|b| b["kind"] == "input-tokens" && b["model_class"] == "sonnet")
            .unwrap_or_else(|| panic!("no sonnet input budget in {status}"))
            .clone();
        let left = input["remaining"].as_i64().unwrap();
        assert!(
            range.contains(&left),
            "cache reads counted: {counted}; {input}"
        );
    }
}

/// A Messages request with one base64 `kind` source (`media_type`,
/// `data`) and a question.
fn media_request(kind: &str, media_type: &str, data: &[u8]) -> String {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(data);
    serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 256,
        "messages": [{"role": "user", "content": [
            {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}},
            {"type": "text", "text": "What is in it?"},
        ]}],
    })
    .to_string()
}

/// A 4032 × 3024 JPEG header (a phone photo's), an EXIF segment first,
/// then `size` bytes in all.
fn phone_photo(size: usize) -> Vec<u8> {
    let mut b = vec![0xff, 0xd8, 0xff, 0xe1, 0x10, 0x02];
    b.extend(std::iter::repeat_n(0x45, 0x1000));
    b.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08, 0x0b, 0xd0, 0x0f, 0xc0]);
    b.extend((b.len()..size).map(|i| (i % 251) as u8));
    b
}

/// A PDF of `pages` pages, about `size` bytes.
fn pdf_of(pages: usize, size: usize) -> Vec<u8> {
    let mut b =
        format!("%PDF-1.7\n2 0 obj << /Type /Pages /Count {pages} >> endobj\n").into_bytes();
    for i in 0..pages {
        b.extend_from_slice(
            format!("{} 0 obj << /Type /Page /Parent 2 0 R >> stream\n", i + 3).as_bytes(),
        );
        b.extend(std::iter::repeat_n(b'q', size / pages));
        b.extend_from_slice(b"\nendstream endobj\n");
    }
    b
}

/// The first value of `key` anywhere in `v`.
fn find<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => {
            m.get(key).or_else(|| m.values().find_map(|v| find(v, key)))
        }
        serde_json::Value::Array(a) => a.iter().find_map(|v| find(v, key)),
        _ => None,
    }
}

/// A 5 MB photo and a 5 MB PDF of 6 pages, under the API's first-tier
/// Sonnet limit of 30,000 input tokens a minute: the photo is about 1,600
/// tokens by the API's rule, the PDF about 18,000 (the estimates the
/// trace records), and both are admitted. Counted as text, a quarter of
/// their bytes, each would be 1.7 M tokens, and refused as never
/// admissible.
#[tokio::test(flavor = "multi_thread")]
async fn a_5_mb_photo_and_a_5_mb_pdf_are_admitted_under_a_30_000_token_limit() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let recorded = format!("[trace]\nfile = {:?}\n", trace.display().to_string());
    let levee = Levee::start(&format!(
        "{FAST_POLICY}\n{recorded}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n[upstreams.limits]\ninput_tokens_per_minute = 30000\n",
        upstream.url()
    ));
    for body in [
        media_request("image", "image/jpeg", &phone_photo(5 << 20)),
        media_request("document", "application/pdf", &pdf_of(6, 5 << 20)),
    ] {
        assert!(body.len() > 5 << 20);
        let resp = client()
            .post(format!("{}/v1/messages", levee.url()))
            .header("x-api-key", "sk-ant-test-secret-0001")
            .header("x-stainless-timeout", "5")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("levee answers");
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }
    assert_eq!(upstream.requests().len(), 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.lines().count() >= 2 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let estimates: Vec<u64> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON trace line");
            find(&v, "est-input-tokens")
                .and_then(|e| e.as_u64())
                .expect("an estimate")
        })
        .collect();
    assert_eq!(estimates.len(), 2, "{text}");
    assert!(
        (1_500..2_000).contains(&estimates[0]),
        "the photo: {estimates:?}"
    );
    assert!(
        (18_000..18_500).contains(&estimates[1]),
        "the PDF: {estimates:?}"
    );
}

/// `count_tokens` has its own limits at the API: a burst of 20 against a
/// 5-a-minute messages budget is served at once and leaves that budget
/// whole, and the next message is admitted at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_count_tokens_burst_draws_on_its_own_budget_and_leaves_the_messages_budgets_untouched() {
    let counted = Reply::json(200, r#"{"input_tokens":9}"#);
    let upstream = MockUpstream::start(Script::always(Step::Reply(counted))).await;
    let levee = levee_with_limits(
        &upstream,
        "requests_per_minute = 5\ninput_tokens_per_minute = 100\n\
         [upstreams.limits.classes.count_tokens]\nrequests_per_minute = 20",
        "",
    );
    let count = |secs: &'static str| {
        client()
            .post(format!("{}/v1/messages/count_tokens", levee.url()))
            .header("x-api-key", "sk-ant-test-secret-0001")
            .header("x-stainless-timeout", secs)
            .header("content-type", "application/json")
            .body(MESSAGE)
            .send()
    };
    for _ in 0..20 {
        let resp = count("2").await.expect("levee answers");
        let status = resp.status();
        assert_eq!(status, 200, "not queued: {:?}", resp.text().await);
    }
    let spent = count("0.5").await.expect("levee answers");
    assert_eq!(
        spent.status(),
        429,
        "count_tokens' own 20 a minute are spent"
    );
    let status = super::status(&levee).await;
    let budgets = status["admission"]["upstreams"][0]["budgets"].clone();
    let left = |class: &str, kind: &str| {
        budgets
            .as_array()
            .expect("budgets")
            .iter()
            .find(|b| b["model_class"] == class && b["kind"] == kind)
            .map(|b| b["remaining"].clone())
    };
    assert_eq!(left("sonnet", "requests"), Some(5.into()), "{budgets}");
    assert_eq!(
        left("sonnet", "input-tokens"),
        Some(100.into()),
        "{budgets}"
    );
    assert_eq!(
        left("count_tokens", "requests"),
        Some(0.into()),
        "{budgets}"
    );
    assert_eq!(
        left("count_tokens", "input-tokens"),
        Some(100.into()),
        "no tokens charged: {budgets}"
    );
    let resp = post_within(&levee, 2.0).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.requests().len(), 21);
}

/// A Haiku request, otherwise [`MESSAGE`].
const HAIKU: &str =
    r#"{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;

/// The API's limits per model class, learned from its headers: Sonnet's
/// 12 a minute and Haiku's 600 stay apart. Sonnet's spent bucket makes its
/// next request wait in Sonnet's line; Haiku requests meanwhile go straight
/// through, and no request ever meets an upstream 429.
#[tokio::test(flavor = "multi_thread")]
async fn two_model_classes_learn_their_own_limits_and_never_queue_behind_each_other() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    upstream.set_class_limits(&[
        ("sonnet", RateLimits::requests(12)),
        ("haiku", RateLimits::requests(600)),
    ]);
    let levee = Levee::start(&format!(
        "{FAST_POLICY}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n",
        upstream.url()
    ));
    const DEPTH: &str = "levee_admission_queue_depth";
    for _ in 0..12 {
        assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    }
    // Haiku's generous headers must not reopen Sonnet's bucket.
    assert_eq!(post(&levee, HAIKU).await.status(), 200);
    let url = levee.url();
    let sonnet = tokio::spawn(async move {
        let asked = Instant::now();
        let resp = client()
            .post(format!("{url}/v1/messages"))
            .header("content-type", "application/json")
            .body(MESSAGE)
            .send()
            .await
            .expect("levee answers");
        (resp.status(), asked.elapsed())
    });
    until_metric(&levee, DEPTH, 1.0).await;
    for _ in 0..5 {
        let haiku = post(&levee, HAIKU).await;
        assert_eq!(haiku.status(), 200);
        assert_eq!(header(&haiku, "x-levee-attempts"), Some("1"));
    }
    assert!(
        !sonnet.is_finished(),
        "the Haiku requests went by while Sonnet waited for its refill"
    );
    assert_eq!(metric(&levee, DEPTH).await, 1.0, "Sonnet alone waits");
    let (status, waited) = sonnet.await.unwrap();
    assert_eq!(status, 200, "admitted at Sonnet's refill");
    assert!(
        waited >= Duration::from_secs(2) && waited <= Duration::from_secs(8),
        "12 a minute refill one in 5 s; waited {waited:?}"
    );
    assert_eq!(upstream.rate_limited(), 0, "no upstream 429");
    let remaining = |class: &str| {
        format!(
            "rate_limit_remaining{{upstream=\"primary\",model_class=\"{class}\",dimension=\"requests\"}}"
        )
    };
    assert!(metric(&levee, &remaining("haiku")).await >= 590.0);
    assert!(metric(&levee, &remaining("sonnet")).await <= 1.0);
    let status = super::status(&levee).await;
    let budgets = status["upstreams"][0]["budgets"]
        .as_array()
        .unwrap()
        .clone();
    let limit = |class: &str| {
        budgets
            .iter()
            .find(|b| b["model_class"] == class && b["kind"] == "requests")
            .map(|b| b["limit"].clone())
    };
    assert_eq!(limit("sonnet"), Some(12.into()), "{budgets:?}");
    assert_eq!(limit("haiku"), Some(600.into()), "{budgets:?}");
    assert_eq!(
        limit("opus"),
        None,
        "a class never used has learned nothing"
    );
}

/// After idle, a bucket comes back by its ramp, not as a full burst (the
/// API answers sudden ramps with 429s): with a quarter at once, 10 of a
/// burst of 40 go (40 a minute); with the ramp off, all 40.
#[tokio::test(flavor = "multi_thread")]
async fn after_idle_a_bucket_ramps_back_instead_of_a_full_burst() {
    async fn burst_after_idle(ramp_idle_ms: u64) -> usize {
        let upstream = MockUpstream::start(Script::new()).await;
        let levee = levee_with_limits(
            &upstream,
            "requests_per_minute = 40",
            &format!("ramp_idle_ms = {ramp_idle_ms}\nramp_start = 0.25\nramp_ms = 60000"),
        );
        assert_eq!(post(&levee, MESSAGE).await.status(), 200);
        // Full again 1.5 s later, then idle for 0.3 s more.
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        let burst = (0..40).map(|_| post_within(&levee, 0.5));
        let answers = futures_util::future::join_all(burst).await;
        let admitted = answers.iter().filter(|r| r.status() == 200).count();
        assert!(
            answers
                .iter()
                .all(|r| [200, 429].contains(&r.status().as_u16()))
        );
        assert_eq!(upstream.requests().len(), 1 + admitted);
        admitted
    }
    let ramped = burst_after_idle(300).await;
    assert!(
        (10..=11).contains(&ramped),
        "a quarter of 40 (and what the ramp adds within 0.5 s): {ramped}"
    );
    assert_eq!(burst_after_idle(0).await, 40, "no ramp: the whole bucket");
}
