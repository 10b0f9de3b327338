//! Retries that only the bundled host can ration: the global retry budget
//! (the shared retry, failover and streaming scenarios are in
//! `tests/scenarios`, run here by `all_scenarios!`).

use super::{MESSAGE, header, levee_for, post};
use levee_tests::mock::{MockUpstream, Reply, Script, Step};

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
