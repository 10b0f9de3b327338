//! Retries follow the API's rules, with the waits the headers ask for.

use super::{MESSAGE, header, levee_for, post};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_three_times_then_ok_waits_what_each_429_asks() {
    let upstream = MockUpstream::start(
        Script::of((0..3).map(|_| Step::Reply(Reply::rate_limited(RetryAfter::Ms(150)))))
            .then(Step::Reply(Reply::message())),
    )
    .await;
    let levee = levee_for(&upstream, "");
    let resp = post(&levee, MESSAGE).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn always_overloaded_gives_up_after_the_policy_attempts_and_says_do_not_retry() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let levee = levee_for(&upstream, "");
    let resp = post(&levee, MESSAGE).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_spend_cap_is_final() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::spend_cap()))).await;
    let levee = levee_for(&upstream, "");
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_errors_are_delivered_as_they_are() {
    let reply = Reply::error(400, "invalid_request_error", "max_tokens: field required");
    let expected = reply.body.clone();
    let upstream = MockUpstream::start(Script::always(Step::Reply(reply))).await;
    let levee = levee_for(&upstream, "");
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("1"));
    assert_eq!(resp.bytes().await.unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn x_should_retry_true_retries_even_a_400() {
    let upstream = MockUpstream::start(
        Script::of([Step::Reply(
            Reply::error(400, "invalid_request_error", "flaky").should_retry(true),
        )])
        .then(Step::Reply(Reply::message())),
    )
    .await;
    let levee = levee_for(&upstream, "");
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_before_the_head_is_retried_with_the_same_body() {
    let upstream =
        MockUpstream::start(Script::of([Step::Reset]).then(Step::Reply(Reply::message()))).await;
    let levee = levee_for(&upstream, "");
    let resp = post(&levee, MESSAGE).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_beyond_what_the_policy_waits_gives_up_at_once_and_passes_it_on() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::rate_limited(
        RetryAfter::Secs(3600),
    ))))
    .await;
    let levee = levee_for(&upstream, "");
    let resp = post(&levee, MESSAGE).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_upstream_costs_one_per_try_timeout_then_a_retry() {
    let upstream =
        MockUpstream::start(Script::of([Step::Hang]).then(Step::Reply(Reply::message()))).await;
    let levee = levee_for(
        &upstream,
        "[policy]\nsource = \"builtin:standard\"\n[policy.config]\ntry_timeout_ms = 300\nbackoff = { base_ms = 10, cap_ms = 20 }\n",
    );
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    let seen = upstream.requests();
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_attempt_ceiling_overrules_the_policy() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let levee = levee_for(
        &upstream,
        &format!("{}\n[rails]\nmax_attempts = 2\n", super::FAST_POLICY),
    );
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_retry_budget_stops_retries() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let levee = levee_for(
        &upstream,
        &format!(
            "{}\n[rails]\nretry_budget_ratio = 0.0\nretry_budget_min_retries = 0\n",
            super::FAST_POLICY
        ),
    );
    let resp = post(&levee, MESSAGE).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(
        header(&resp, "x-levee-attempts"),
        Some("1"),
        "no retry without budget"
    );
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    assert_eq!(upstream.requests().len(), 1);
}
