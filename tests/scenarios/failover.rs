//! Failover: a 529, a refused connection or a long 429 on the primary moves
//! the request to the backup at once.

use super::{Gateway, MESSAGE, Setup, header, post};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};
use std::time::Duration;

/// A loopback URL where nothing listens (bound, then released).
fn refused_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// 529 on the primary: the second attempt goes to the backup.
pub async fn an_overloaded_primary_fails_over_to_the_backup<G: Gateway>() {
    let primary = MockUpstream::start(Script::always(Step::Reply(Reply::overloaded()))).await;
    let backup = MockUpstream::start(Script::new()).await;
    let gw = G::start(
        &[("primary", primary.url()), ("backup", backup.url())],
        &Setup::default(),
    );
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    assert_eq!(primary.requests().len(), 1);
    assert_eq!(backup.requests().len(), 1);
    assert_eq!(backup.requests()[0].body, MESSAGE.as_bytes());
}

/// A refused primary: the backup answers.
pub async fn a_refused_primary_fails_over_to_the_backup<G: Gateway>() {
    let backup = MockUpstream::start(Script::new()).await;
    let gw = G::start(
        &[("primary", refused_url()), ("backup", backup.url())],
        &Setup::default(),
    );
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    assert_eq!(backup.requests().len(), 1);
}

/// A 429 asking for 30 s on the primary: the backup is tried without
/// waiting it out.
pub async fn a_rate_limited_primary_hands_over_without_waiting<G: Gateway>() {
    let primary = MockUpstream::start(Script::always(Step::Reply(Reply::rate_limited(
        RetryAfter::Secs(30),
    ))))
    .await;
    let backup = MockUpstream::start(Script::new()).await;
    let gw = G::start(
        &[("primary", primary.url()), ("backup", backup.url())],
        &Setup::default(),
    );
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-levee-attempts"), Some("2"));
    // The primary asked for 30 s; the policy's own backoff is at most
    // 100 ms. A second covers that and a slow machine's connect.
    let gap = backup.requests()[0].at - primary.requests()[0].at;
    assert!(
        gap < Duration::from_secs(1),
        "waited {gap:?} for a limit another upstream did not have"
    );
}
