//! Non-streaming bodies that arrive slowly or broken: a slow body arrives
//! whole, and a broken one never reaches the client as a short body that
//! looks complete, nor leaves it waiting.

use super::{Gateway, MESSAGE, Setup, gateway_for, header, post};
use levee_tests::mock::{MockUpstream, Reply, Script};
use std::time::{Duration, Instant};

/// The default policy with a 400 ms idle timeout.
fn setup() -> Setup {
    Setup {
        idle_timeout_ms: Some(400),
        ..Setup::default()
    }
}

/// Longer than any broken body may take to fail.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Sends [`MESSAGE`] and reads the answer, which is broken, to its end: the
/// client must see it fail, promptly, never read it as a whole body. Either
/// its read of the body fails, after the head; or, when the head, the bytes
/// before the break and the close reach hyper's client at once, the request
/// itself fails as an incomplete message. Returns the head's status and
/// `x-levee-attempts` when there was a head.
async fn expect_broken<G: Gateway>(gw: &G) -> Option<(u16, Option<String>)> {
    let exchange = async {
        let sent = reqwest::Client::new()
            .post(format!("{}/v1/messages", gw.url()))
            .header("x-api-key", "sk-ant-test-secret-0001")
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(MESSAGE)
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                assert!(is_incomplete_message(&e), "{e:?}");
                return None;
            }
        };
        let attempts = header(&resp, "x-levee-attempts").map(str::to_owned);
        let head = (resp.status().as_u16(), attempts);
        match resp.bytes().await {
            Ok(body) => panic!(
                "a broken body read as whole: {}",
                String::from_utf8_lossy(&body)
            ),
            Err(_) => Some(head),
        }
    };
    tokio::time::timeout(PROMPTLY, exchange)
        .await
        .unwrap_or_else(|_| panic!("the answer neither ended nor failed within {PROMPTLY:?}"))
}

/// Whether hyper's client failed `e` as a message cut short.
fn is_incomplete_message(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// A 200 whose JSON body is cut (RST) after 20 bytes: the client sees it
/// fail. Levee passed the head on before the cut, so there is no retry.
pub async fn a_cut_json_body_fails_at_the_client<G: Gateway>() {
    let upstream = MockUpstream::start(
        Script::of([Reply::message().cut_after(20)]).otherwise(Reply::message()),
    )
    .await;
    let gw: G = gateway_for(&upstream, &setup());
    if let Some(head) = expect_broken(&gw).await {
        assert_eq!(head, (200, Some("1".to_owned())));
    }
    assert_eq!(upstream.requests().len(), 1);
}

/// The same with a clean close (FIN) short of the content-length.
pub async fn a_json_body_closed_short_fails_at_the_client<G: Gateway>() {
    let upstream = MockUpstream::start(
        Script::of([Reply::message().close_after(20)]).otherwise(Reply::message()),
    )
    .await;
    let gw: G = gateway_for(&upstream, &setup());
    if let Some(head) = expect_broken(&gw).await {
        assert_eq!(head, (200, Some("1".to_owned())));
    }
    assert_eq!(upstream.requests().len(), 1);
}

/// A 400 (final) whose JSON error body is cut after 20 bytes: levee reads
/// error bodies before it decides, so the cut happens in its hands; the
/// client must see the answer fail all the same, not wait for bytes that
/// will never come.
pub async fn a_cut_error_body_fails_at_the_client<G: Gateway>() {
    let reply = Reply::error(400, "invalid_request_error", "max_tokens: field required");
    let upstream =
        MockUpstream::start(Script::of([reply.cut_after(20)]).otherwise(Reply::message())).await;
    let gw: G = gateway_for(&upstream, &setup());
    if let Some(head) = expect_broken(&gw).await {
        assert_eq!(head, (400, Some("1".to_owned())));
    }
    assert_eq!(upstream.requests().len(), 1, "a 400 is not retried");
}

/// A body trickled in 32-byte pieces 100 ms apart takes longer than the
/// 400 ms idle timeout, but no gap reaches it: it arrives byte for byte.
pub async fn a_trickled_body_arrives_whole_though_it_outlasts_the_idle_timeout<G: Gateway>() {
    let gap = Duration::from_millis(100);
    let reply = Reply::message().trickle(32, gap);
    let expected = reply.body.clone();
    let pieces = expected.len().div_ceil(32) as u32;
    let least = gap * (pieces - 1);
    assert!(least > Duration::from_millis(400), "{least:?}");
    let upstream = MockUpstream::start(Script::always(reply)).await;
    let gw: G = gateway_for(&upstream, &setup());
    let started = Instant::now();
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("a whole body"), expected);
    let took = started.elapsed();
    assert!(took >= least, "{took:?} < {least:?}: not trickled");
    assert!(took < least + Duration::from_secs(3), "{took:?}");
    assert_eq!(upstream.requests().len(), 1);
}

/// A JSON body whose next piece would come 10 s after the first: the
/// client's read fails once the 400 ms idle timeout has passed, not later.
pub async fn a_json_body_that_stalls_past_the_idle_timeout_fails_the_clients_read<G: Gateway>() {
    let upstream = MockUpstream::start(Script::always(
        Reply::message().trickle(32, Duration::from_secs(10)),
    ))
    .await;
    let gw: G = gateway_for(&upstream, &setup());
    let resp = post(&gw, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), resp.bytes())
        .await
        .expect("failed before the next piece came");
    let took = started.elapsed();
    assert!(read.is_err(), "a stalled body read as whole");
    assert!(
        took >= Duration::from_millis(300),
        "{took:?}: before the idle timeout"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}
