//! Retries follow the API's rules, with the waits the headers ask for.

use super::{Gateway, MESSAGE, Setup, gateway_for, header, post};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};
use std::time::Duration;

/// Three 429s asking 150 ms each, then a 200: four attempts, each at least
/// 150 ms after the last.
pub async fn rate_limited_three_times_then_ok_waits_what_each_429_asks<G: Gateway>() {
    let upstream = MockUpstream::start(
        Script::of((0..3).map(|_| Step::Reply(Reply::rate_limited(RetryAfter::Ms(150)))))
            .then(Step::Reply(Reply::message())),
    )
    .await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("4"));
    let seen = upstream.requests();
    assert_eq!(seen.len(), 4);
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(150),
            "retried after {gap:?}, before retry-after-ms"
        );
    }
}

/// Always 529: the policy's four attempts, then the last 529 as it was,
/// with `x-should-retry: false`.
pub async fn always_overloaded_gives_up_after_the_policy_attempts_and_says_do_not_retry<
    G: Gateway,
>() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("4"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert!(header(&resp, "request-id").is_some_and(|id| id.starts_with("req_mock_")));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["type"], "overloaded_error",
        "the upstream's body, as it was"
    );
    assert_eq!(upstream.requests().len(), 4);
}

/// A spend cap is final: one attempt.
pub async fn a_spend_cap_is_final<G: Gateway>() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::spend_cap()))).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(upstream.requests().len(), 1);
}

/// A 400 passes through byte for byte after one attempt.
pub async fn client_errors_are_delivered_as_they_are<G: Gateway>() {
    let reply = Reply::error(400, "invalid_request_error", "max_tokens: field required");
    let expected = reply.body.clone();
    let upstream = MockUpstream::start(Script::always(Step::Reply(reply))).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    assert_eq!(resp.bytes().await.unwrap(), expected);
}

/// `x-should-retry: true` overrides the status.
pub async fn x_should_retry_true_retries_even_a_400<G: Gateway>() {
    let upstream = MockUpstream::start(
        Script::of([Step::Reply(
            Reply::error(400, "invalid_request_error", "flaky").should_retry(true),
        )])
        .then(Step::Reply(Reply::message())),
    )
    .await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
}

/// A reset before the head is retried, replaying the body exactly.
pub async fn a_reset_before_the_head_is_retried_with_the_same_body<G: Gateway>() {
    let upstream =
        MockUpstream::start(Script::of([Step::Reset]).then(Step::Reply(Reply::message()))).await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].body, seen[1].body,
        "the body is replayed byte for byte"
    );
    assert_eq!(seen[1].body, MESSAGE.as_bytes());
}

/// An hour's `retry-after`: no useless sleep; the header goes to the client.
pub async fn a_retry_after_beyond_what_the_policy_waits_gives_up_at_once_and_passes_it_on<
    G: Gateway,
>() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::rate_limited(
        RetryAfter::Secs(3600),
    ))))
    .await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        header(&resp, "x-levee-attempts"),
        Some("1"),
        "no useless sleep"
    );
    assert_eq!(
        header(&resp, "x-should-retry"),
        Some("true"),
        "a later retry can succeed"
    );
    assert_eq!(
        header(&resp, "retry-after"),
        Some("3600"),
        "the upstream's own header, untouched"
    );
}

/// A hung upstream costs one per-try timeout, then a retry succeeds.
pub async fn a_hung_upstream_costs_one_per_try_timeout_then_a_retry<G: Gateway>() {
    let upstream =
        MockUpstream::start(Script::of([Step::Hang]).then(Step::Reply(Reply::message()))).await;
    let setup = Setup {
        policy: serde_json::json!({"try_timeout_ms": 300, "backoff": {"base_ms": 10, "cap_ms": 20}}),
        ..Setup::default()
    };
    let gw: G = gateway_for(&upstream, &setup);
    // Ignored, the setting would leave the standard's minute per try.
    let resp = tokio::time::timeout(Duration::from_secs(10), post(&gw, MESSAGE))
        .await
        .expect("answered long before the default try timeout");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    let seen = upstream.requests();
    let gap = seen[1].at - seen[0].at;
    // 300 ms for the try, then a backoff of at most 20 ms.
    assert!(gap >= Duration::from_millis(300), "retried after {gap:?}");
    assert!(gap < Duration::from_millis(1_000), "retried after {gap:?}");
}

/// The host's attempt ceiling is lower than the policy's: it wins.
pub async fn the_hosts_attempt_ceiling_overrules_the_policy<G: Gateway>() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let setup = Setup {
        max_attempts: Some(2),
        ..Setup::default()
    };
    let gw: G = gateway_for(&upstream, &setup);
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(upstream.requests().len(), 2);
}

/// A mild overload: 8 clients at once, every request answered 529 once and
/// then 200. One retry saves each of them, so every request succeeds with
/// 2 attempts; a retry the budget has no room for waits for room instead
/// of failing (the budget's own cap is checked in the gateway suite).
pub async fn a_mild_overload_is_saved_by_one_retry_per_request<G: Gateway>() {
    const CLIENTS: usize = 8;
    const EACH: usize = 4;
    let upstream = MockUpstream::start(
        Script::always(Step::Reply(Reply::message()))
            .first_sight(CLIENT_REQUEST, Step::Reply(Reply::overloaded())),
    )
    .await;
    let gw: G = gateway_for(&upstream, &Setup::default());
    let gw = &gw;
    let clients = (0..CLIENTS).map(|client| async move {
        let mut answers = Vec::new();
        for n in 0..EACH {
            let resp = reqwest::Client::new()
                .post(format!("{}/v1/messages", gw.url()))
                .header("x-api-key", "sk-ant-test-secret-0001")
                .header("content-type", "application/json")
                .header(CLIENT_REQUEST, format!("{client}-{n}"))
                .body(MESSAGE)
                .send()
                .await
                .expect("the gateway answers");
            let attempts = header(&resp, "x-levee-attempts").map(str::to_owned);
            answers.push((resp.status().as_u16(), attempts));
        }
        answers
    });
    let answers: Vec<_> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(answers.len(), CLIENTS * EACH);
    for answer in &answers {
        assert_eq!(*answer, (200, Some("2".to_owned())), "{answers:?}");
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2 * CLIENTS * EACH, "one retry each, no more");
}

/// The header that tells the mock one client request from another.
pub const CLIENT_REQUEST: &str = "x-test-client-request";
