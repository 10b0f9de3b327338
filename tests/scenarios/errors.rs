//! Server errors by the API's retry rules (the SDK's: 408, 409, 429 and
//! every 5xx are retried, `x-should-retry` overrules the status), and the
//! HTML page a load balancer in front of the API answers with.

use super::{Gateway, MESSAGE, Setup, access_lines, gateway_for, header, post};
use levee_tests::mock::{MockUpstream, Reply, Script};

/// A 500 `api_error`, then a 200: the 200 is delivered after two attempts,
/// as it came.
pub async fn an_api_error_500_is_retried_and_the_next_answer_delivered<G: Gateway>() {
    let ok = Reply::message();
    let (expected, expected_id) = (ok.body.clone(), ok.request_id().unwrap().to_owned());
    let upstream = MockUpstream::start(
        Script::of([Reply::error(500, "api_error", "Internal server error"), ok])
            .otherwise(Reply::error(500, "api_error", "a third attempt")),
    )
    .await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    assert_eq!(
        header(&resp, "x-should-retry"),
        None,
        "a delivered success carries no verdict"
    );
    assert_eq!(header(&resp, "request-id"), Some(expected_id.as_str()));
    assert_eq!(resp.bytes().await.unwrap(), expected);
    assert_eq!(upstream.requests().len(), 2);
}

/// Always 503: the policy's four attempts, then the fourth 503 as it was,
/// with `x-should-retry: false` (levee has retried for the client).
pub async fn always_503_gives_up_after_the_policy_attempts_with_the_last_answer<G: Gateway>() {
    let replies: Vec<Reply> = (0..4)
        .map(|n| Reply::error(503, "api_error", &format!("Service unavailable ({n})")))
        .collect();
    let last = replies[3].clone();
    // A fifth attempt would get a 200, and fail the test.
    let upstream = MockUpstream::start(Script::of(replies).otherwise(Reply::message())).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("4"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(header(&resp, "request-id"), last.request_id());
    assert_eq!(
        resp.bytes().await.unwrap(),
        last.body,
        "the last 503's body"
    );
    assert_eq!(upstream.requests().len(), 4);
}

/// A 408 and a 409 are retried as the SDK retries them: the 200 after
/// them comes with three attempts.
pub async fn a_408_and_a_409_are_retried<G: Gateway>() {
    let upstream = MockUpstream::start(
        Script::of([
            Reply::error(408, "timeout_error", "Request timeout"),
            Reply::error(409, "api_error", "Conflict"),
            Reply::message(),
        ])
        .otherwise(Reply::error(500, "api_error", "a fourth attempt")),
    )
    .await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("3"));
    assert_eq!(upstream.requests().len(), 3);
}

/// `x-should-retry: false` overrules the status: a 500 that says so is
/// final, and the client is told not to retry either.
pub async fn x_should_retry_false_makes_a_500_final<G: Gateway>() {
    let reply = Reply::error(500, "api_error", "do not retry this").should_retry(false);
    let expected = reply.body.clone();
    let upstream = MockUpstream::start(Script::of([reply]).otherwise(Reply::message())).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(resp.bytes().await.unwrap(), expected);
    assert_eq!(upstream.requests().len(), 1);
}

/// A load balancer's HTML 502 is a 5xx like any other: retried, and the
/// 200 after it delivered.
pub async fn an_html_502_from_a_load_balancer_is_retried<G: Gateway>() {
    let upstream = MockUpstream::start(Script::of([Reply::html(502), Reply::message()])).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    assert_eq!(upstream.requests().len(), 2);
}

/// Always an HTML 503: after the policy's attempts the page is passed on
/// as it came (status, content type, body byte for byte), as the API's own
/// errors are, with levee's verdict headers: the SDK reads a non-JSON error
/// body as text, and levee does not dress it up as the API's.
pub async fn an_html_503_is_passed_on_as_it_came_after_the_policy_attempts<G: Gateway>() {
    let page = Reply::html(503);
    let expected = page.body.clone();
    let upstream = MockUpstream::start(Script::always(page)).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "content-type"), Some("text/html"));
    assert_eq!(header(&resp, "x-levee-attempts"), Some("4"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(resp.bytes().await.unwrap(), expected, "the page, untouched");
    assert_eq!(upstream.requests().len(), 4);
}

/// Always 529, ten requests: each give-up delivers the last 529's body
/// whole, and the gateway logs none of them as broken off. (A runtime may
/// close a body's stream as soon as its declared length is written; Spin
/// did on most give-ups, and the edge took it for the client going away.)
pub async fn every_give_up_answer_arrives_whole_and_none_is_logged_as_broken<G: Gateway>() {
    const N: usize = 10;
    let last = Reply::overloaded();
    let upstream = MockUpstream::start(Script::always(last.clone())).await;
    let setup = Setup {
        policy: serde_json::json!({"max_attempts": 2, "backoff": {"base_ms": 1, "cap_ms": 5}}),
        ..Setup::default()
    };
    let gw: G = gateway_for(&upstream, &setup);
    for n in 0..N {
        let resp = post(&gw, MESSAGE).await;
        assert_eq!(resp.status(), 529, "request {n}");
        assert_eq!(header(&resp, "x-levee-attempts"), Some("2"), "request {n}");
        assert_eq!(resp.bytes().await.unwrap(), last.body, "request {n}: whole");
    }
    assert_eq!(upstream.requests().len(), 2 * N);
    let log = access_lines(&gw, "status=529", N).await;
    assert!(!log.contains("broke off"), "{log}");
}
