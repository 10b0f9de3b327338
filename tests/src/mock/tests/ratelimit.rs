//! The mock's own rate limit: the buckets on a given clock, the usage each
//! step is charged, and the headers and 429s over HTTP.

use super::*;
use crate::mock::{
    Buckets, Cost, MockUpstream, RateLimits, Reply, Script, SseScript, Step, rfc3339,
};
use http_body_util::BodyExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
}

#[test]
fn each_step_is_charged_the_usage_it_reports() {
    let reply = Step::Reply(Reply::message_with("hi", 12, 8));
    assert_eq!(
        Cost::of(&reply),
        Cost {
            input: 12,
            output: 8
        }
    );
    let cached = Reply::json(
        200,
        r#"{"usage":{"input_tokens":3,"cache_creation_input_tokens":40,"cache_read_input_tokens":500,"output_tokens":7}}"#,
    );
    assert_eq!(
        Cost::of(&Step::Reply(cached)),
        Cost {
            input: 43,
            output: 7
        },
        "cache reads are free, cache writes count"
    );
    let sse = Step::Sse(SseScript::message_with(&["Hel", "lo"], 21, 34));
    assert_eq!(
        Cost::of(&sse),
        Cost {
            input: 21,
            output: 34
        }
    );
    let cut = Step::Sse(SseScript::message_with(&["Hel", "lo"], 21, 34).cut_after(3, 0));
    assert_eq!(
        Cost::of(&cut),
        Cost {
            input: 21,
            output: 1
        },
        "a stream cut before message_delta reports message_start's count"
    );
    assert_eq!(Cost::of(&Step::Reply(Reply::overloaded())), Cost::default());
    assert_eq!(Cost::of(&Step::Reset), Cost::default());
}

#[test]
fn requests_refill_continuously_after_a_burst() {
    let t0 = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut b = Buckets::new(RateLimits::requests(60), t0);
    for left in (0..60).rev() {
        let a = b.admit(Cost::default(), t0, wall);
        assert!(a.admitted);
        assert_eq!(
            header(&a.headers, "anthropic-ratelimit-requests-remaining"),
            left.to_string()
        );
    }
    let refused = b.admit(Cost::default(), t0, wall);
    assert!(!refused.admitted);
    assert_eq!(refused.retry_after, Duration::from_secs(1));
    assert_eq!(refused.retry_after_secs(), 1);
    assert_eq!(
        header(&refused.headers, "anthropic-ratelimit-requests-limit"),
        "60"
    );
    assert_eq!(
        header(&refused.headers, "anthropic-ratelimit-requests-remaining"),
        "0"
    );
    assert_eq!(
        header(&refused.headers, "anthropic-ratelimit-requests-reset"),
        rfc3339(wall + Duration::from_secs(60)),
        "empty: full again in a minute"
    );
    assert!(
        !b.admit(Cost::default(), t0 + Duration::from_millis(999), wall)
            .admitted
    );
    assert!(
        b.admit(Cost::default(), t0 + Duration::from_secs(1), wall)
            .admitted
    );
    // Half a minute later, 30 have come back (and no more).
    let later = t0 + Duration::from_secs(31);
    for _ in 0..30 {
        assert!(b.admit(Cost::default(), later, wall).admitted);
    }
    assert!(!b.admit(Cost::default(), later, wall).admitted);
}

#[test]
fn tokens_are_charged_whole_and_a_cost_above_capacity_never_fits() {
    let t0 = Instant::now();
    let wall = SystemTime::now();
    let mut b = Buckets::new(RateLimits::default().output_tokens(120), t0);
    let cost = Cost {
        input: 1_000,
        output: 50,
    };
    assert!(b.admit(cost, t0, wall).admitted, "input is not limited");
    assert!(b.admit(cost, t0, wall).admitted);
    let refused = b.admit(cost, t0, wall);
    assert!(!refused.admitted, "20 left, 50 wanted");
    // 30 more at 2 per second.
    assert_eq!(refused.retry_after, Duration::from_secs(15));
    assert_eq!(
        header(
            &refused.headers,
            "anthropic-ratelimit-output-tokens-remaining"
        ),
        "20"
    );
    assert!(
        !refused
            .headers
            .iter()
            .any(|(k, _)| k.contains("-requests-")),
        "no request limit, no request headers"
    );
    let huge = b.admit(
        Cost {
            input: 0,
            output: 121,
        },
        t0 + Duration::from_secs(600),
        wall,
    );
    assert!(!huge.admitted);
    assert_eq!(huge.retry_after, Duration::from_secs(60));
}

#[test]
fn rfc3339_is_utc_in_whole_seconds() {
    let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(784_111_777), "1994-11-06T08:49:37Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_999)), at(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limited_mock_sends_the_headers_and_answers_429_in_the_apis_shape() {
    let mock = MockUpstream::start(Script::of([
        Step::Reply(Reply::message_with("a", 10, 5)),
        Step::Reply(Reply::message_with("b", 10, 5)),
        Step::Reply(Reply::overloaded()),
    ]))
    .await;
    mock.set_limits(Some(RateLimits::requests(2).input_tokens(1_000)));
    let uri = format!("{}/v1/messages", mock.url());
    let mut client = h1(mock.addr()).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let response = send(&mut client, post(&uri, BODY)).await.expect("response");
        statuses.push(response.status().as_u16());
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        last = Some((headers, body));
    }
    assert_eq!(statuses, [200, 200, 429]);
    let (headers, body) = last.expect("three answers");
    let h = |name: &str| headers[name].to_str().expect("ascii").to_owned();
    let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    // One request refills in 30 s.
    assert_eq!(h("retry-after"), "30");
    assert_eq!(h("anthropic-ratelimit-requests-limit"), "2");
    assert_eq!(h("anthropic-ratelimit-requests-remaining"), "0");
    assert_eq!(h("anthropic-ratelimit-input-tokens-limit"), "1000");
    assert_eq!(h("anthropic-ratelimit-input-tokens-remaining"), "980");
    assert_eq!(mock.rate_limited(), 1);
    assert_eq!(
        mock.requests().len(),
        3,
        "a refused request is recorded too"
    );
    // The refused request did not take its step: without the limit the
    // next one gets it, and no headers.
    mock.set_limits(None);
    let response = send(&mut client, post(&uri, BODY)).await.expect("response");
    assert_eq!(response.status(), 529);
    assert!(
        response
            .headers()
            .get("anthropic-ratelimit-requests-limit")
            .is_none()
    );
    assert_eq!(mock.rate_limited(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_charged_its_output_and_carries_the_headers() {
    let mock = MockUpstream::start(Script::always(Step::Sse(SseScript::message_with(
        &["Hel", "lo"],
        5,
        30,
    ))))
    .await;
    mock.set_limits(Some(RateLimits::default().output_tokens(50)));
    let uri = format!("{}/v1/messages", mock.url());
    let mut client = h1(mock.addr()).await;
    let first = send(&mut client, post(&uri, BODY)).await.expect("response");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    assert_eq!(
        first.headers()["anthropic-ratelimit-output-tokens-remaining"],
        "20"
    );
    drain(first.into_body()).await;
    let second = send(&mut client, post(&uri, BODY)).await.expect("response");
    assert_eq!(second.status(), 429);
    // 10 more at 50 a minute: 12 s.
    assert_eq!(second.headers()["retry-after"], "12");
    assert_eq!(mock.rate_limited(), 1);
}

#[test]
fn the_combined_tokens_headers_follow_the_tightest_token_bucket() {
    let t0 = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let limits = RateLimits::requests(10)
        .input_tokens(1_000)
        .output_tokens(100);
    let mut b = Buckets::new(limits, t0);
    let first = b.admit(
        Cost {
            input: 100,
            output: 10,
        },
        t0,
        wall,
    );
    // Input 900 of 1000 left, output 90 of 100: output is tighter.
    assert_eq!(
        header(&first.headers, "anthropic-ratelimit-tokens-limit"),
        "100"
    );
    assert_eq!(
        header(&first.headers, "anthropic-ratelimit-tokens-remaining"),
        "90"
    );
    assert_eq!(
        header(&first.headers, "anthropic-ratelimit-tokens-reset"),
        header(&first.headers, "anthropic-ratelimit-output-tokens-reset"),
    );
    // The per-kind headers are still there, beside the combined ones.
    assert_eq!(
        header(&first.headers, "anthropic-ratelimit-input-tokens-remaining"),
        "900"
    );
    // Spend input down to 50 (output 85): now input is the tighter one.
    let second = b.admit(
        Cost {
            input: 850,
            output: 5,
        },
        t0,
        wall,
    );
    assert!(second.admitted);
    assert_eq!(
        header(&second.headers, "anthropic-ratelimit-tokens-limit"),
        "1000"
    );
    assert_eq!(
        header(&second.headers, "anthropic-ratelimit-tokens-remaining"),
        "50"
    );
    assert_eq!(
        header(&second.headers, "anthropic-ratelimit-tokens-reset"),
        header(&second.headers, "anthropic-ratelimit-input-tokens-reset"),
    );
    let names = |a: &crate::mock::Admission| {
        a.headers
            .iter()
            .filter(|(k, _)| k.starts_with("anthropic-ratelimit-tokens-"))
            .count()
    };
    assert_eq!(names(&second), 3, "one each of limit, remaining, reset");

    // Without a token limit there is nothing to combine.
    let requests_only = Buckets::new(RateLimits::requests(10), t0).admit(Cost::default(), t0, wall);
    assert_eq!(names(&requests_only), 0);
}
