//! The API limits each model class apart: one class's spent budget or 429
//! never closes the upstream to another.

use super::{Gateway, MESSAGE, Setup, gateway_for, header, post};
use levee_tests::mock::{MockUpstream, RateLimits, Reply, Script, Step};

/// A Haiku request, otherwise [`MESSAGE`].
const HAIKU: &str =
    r#"{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;

/// Sonnet may send one request a minute, Haiku has no limit. Once Sonnet's
/// is spent (levee learns it from the headers, or hears the upstream's
/// 429), Sonnet is refused at once; Haiku still goes straight through, and
/// the upstream sees it. Where the gateway remembers between requests,
/// the next Sonnet request is refused by levee, not sent.
pub async fn a_spent_model_class_leaves_another_class_open<G: Gateway>() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    upstream.set_class_limits(&[("sonnet", RateLimits::requests(1))]);
    // Waits longer than a second are refused: Sonnet's minute is not
    // waited out.
    let setup = Setup {
        policy: serde_json::json!({
            "max_attempts": 4, "max_wait_ms": 1000,
            "backoff": {"base_ms": 20, "cap_ms": 100},
        }),
        ..Setup::default()
    };
    let gw: G = gateway_for(&upstream, &setup);
    let first = post(&gw, MESSAGE).await;
    assert_eq!(first.status(), 200, "Sonnet's one request of the minute");
    let spent = post(&gw, MESSAGE).await;
    assert_eq!(spent.status(), 429, "Sonnet's minute is spent");
    assert_eq!(header(&spent, "x-should-retry"), Some("true"));
    let sent = upstream.requests().len();
    assert!(
        (1..=2).contains(&sent),
        "the spent request went upstream once at most: {sent}"
    );
    let haiku = post(&gw, HAIKU).await;
    assert_eq!(haiku.status(), 200, "Haiku is not held by Sonnet's limit");
    assert_eq!(header(&haiku, "x-levee-attempts"), Some("1"));
    let seen = upstream.requests();
    assert_eq!(seen.len(), sent + 1);
    assert_eq!(seen[sent].json()["model"], "claude-haiku-4-5");
    if !gw.remembers_between_requests() {
        return;
    }
    let again = post(&gw, MESSAGE).await;
    assert_eq!(again.status(), 429, "Sonnet is still closed");
    assert_eq!(
        upstream.requests().len(),
        sent + 1,
        "and refused by levee, not sent"
    );
}
