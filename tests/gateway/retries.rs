//! Retries that only the bundled host can ration: the global retry budget
//! (the shared retry, failover and streaming scenarios are in
//! `tests/scenarios`, run here by `all_scenarios!`).

use super::scenarios::retries::CLIENT_REQUEST;
use super::{MESSAGE, client, header, levee_for, metric, post, status};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Reply, Script, Step};

/// `/status`'s `retry_budget`.
async fn budget(levee: &Levee) -> serde_json::Value {
    status(levee).await["retry_budget"].clone()
}

/// A budget that allows no retry at all refuses at once (nothing can make
/// room), counts the refusal, and leaves the retry to the client: the
/// budget is levee's limit, not the upstream's word.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_of_no_retries_refuses_at_once_and_leaves_the_client_free_to_retry() {
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
    assert_eq!(header(&resp, "x-should-retry"), Some("true"));
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(
        metric(&levee, "levee_retry_budget_exhausted_total").await,
        1.0
    );
    assert_eq!(budget(&levee).await["exhausted"], 1);
}

/// The shared mild-overload scenario, against the bundled host's default
/// budget (3 retries in flight with 8 requests): every request is saved,
/// the retries that found no room waited for it, and never were more than
/// 3 in flight at once.
#[tokio::test(flavor = "multi_thread")]
async fn under_a_mild_overload_retries_wait_for_the_budget_and_never_exceed_it() {
    let upstream = MockUpstream::start(
        Script::always(Step::Reply(Reply::message()))
            .first_sight(CLIENT_REQUEST, Step::Reply(Reply::overloaded())),
    )
    .await;
    // Backoff of 200-400 ms: 8 retries at once cannot all fit in 3 slots.
    let levee = levee_for(
        &upstream,
        "[policy]\nsource = \"builtin:standard\"\n[policy.config]\nbackoff = { base_ms = 200, cap_ms = 400 }\n",
    );
    let requests = (0..8).map(|n| {
        let levee = &levee;
        async move {
            client()
                .post(format!("{}/v1/messages", levee.url()))
                .header("x-api-key", "sk-ant-test-secret-0001")
                .header("content-type", "application/json")
                .header(CLIENT_REQUEST, n.to_string())
                .body(MESSAGE)
                .send()
                .await
                .expect("levee answers")
        }
    });
    for resp in futures_util::future::join_all(requests).await {
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    }
    assert_eq!(upstream.requests().len(), 16);
    let b = budget(&levee).await;
    assert_eq!(b["cap"], 3, "{b}");
    assert_eq!(
        b["peak"], 3,
        "the retries filled the budget, and no more: {b}"
    );
    assert_eq!(b["exhausted"], 0, "{b}");
    assert_eq!(
        metric(&levee, "levee_retry_budget_exhausted_total").await,
        0.0
    );
}
