//! Bad settings get a clear answer naming the setting; secrets never show.

use super::Edge;
use super::scenarios::{Gateway as _, MESSAGE, Setup, header, post};
use levee_tests::edge::{EdgeServer, components};
use levee_tests::mock::{MockUpstream, Script};
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_upstream_list_is_answered_with_the_setting_and_the_entry() {
    let edge = EdgeServer::wasmtime(
        Path::new(components::EDGE_STANDARD),
        &[("LEVEE_UPSTREAMS", "primary=ftp://example.com".into())],
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", edge.url))
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(header(&resp, "x-should-retry"), Some("false"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    assert_eq!(
        body["error"]["message"],
        "levee edge is misconfigured: `LEVEE_UPSTREAMS`: entry 1 (primary): \"ftp://example.com\" must start with http:// or https://"
    );
    edge.wait_log(
        "configuration error: `LEVEE_UPSTREAMS`",
        Duration::from_secs(10),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_policy_config_names_the_policys_key() {
    let upstream = MockUpstream::start(Script::new()).await;
    let setup = Setup {
        policy: serde_json::json!({"backoff": {"base_ms": -1}}),
        ..Setup::default()
    };
    let edge = Edge::serve(
        components::EDGE_STANDARD,
        &[("primary", upstream.url())],
        &setup,
    );
    let resp = post(&edge, MESSAGE).await;
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("levee edge is misconfigured: `LEVEE_POLICY_CONFIG`: `backoff.base_ms`:"),
        "{message}"
    );
    assert!(upstream.requests().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_edge_key_replaces_the_clients_and_never_reaches_the_log() {
    let upstream = MockUpstream::start(Script::new()).await;
    let edge = EdgeServer::wasmtime(
        Path::new(components::EDGE_STANDARD),
        &[
            ("LEVEE_UPSTREAMS", format!("primary={}", upstream.url())),
            ("LEVEE_API_KEY", "sk-ant-edge-secret-0042".into()),
            ("LEVEE_ACCESS_TOKEN", "edge-token-0042".into()),
        ],
    );
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages", edge.url);
    let denied = client.post(&url).body(MESSAGE).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let resp = client
        .post(&url)
        .header("authorization", "Bearer edge-token-0042")
        .header("x-api-key", "sk-ant-client-key")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = &upstream.requests()[0];
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-edge-secret-0042"));
    assert_eq!(
        seen.header("authorization"),
        None,
        "the edge token stays at the edge"
    );
    let log = edge.wait_log("status=200", Duration::from_secs(10));
    assert!(
        !log.contains("sk-ant-edge-secret"),
        "the key leaked:\n{log}"
    );
    assert!(!log.contains("edge-token-0042"), "the token leaked:\n{log}");
}

/// With an access token and no key of its own, the edge passes the
/// client's key through, and keeps the token: it never goes upstream.
#[tokio::test(flavor = "multi_thread")]
async fn the_access_token_alone_stays_at_the_edge_and_the_clients_key_passes() {
    let upstream = MockUpstream::start(Script::new()).await;
    let edge = EdgeServer::wasmtime(
        Path::new(components::EDGE_STANDARD),
        &[
            ("LEVEE_UPSTREAMS", format!("primary={}", upstream.url())),
            ("LEVEE_ACCESS_TOKEN", "edge-token-0042".into()),
        ],
    );
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages", edge.url);
    for wrong in [
        "Bearer edge-token-0041",
        "Bearer edge-token-00420",
        "edge-token-0042",
    ] {
        let denied = client
            .post(&url)
            .header("authorization", wrong)
            .body(MESSAGE)
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), 401, "{wrong}");
    }
    let resp = client
        .post(&url)
        .header("authorization", "Bearer edge-token-0042")
        .header("x-api-key", "sk-ant-client-key")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "only the right token got through");
    assert_eq!(seen[0].header("x-api-key"), Some("sk-ant-client-key"));
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the token stays at the edge"
    );
}

/// The edge decodes no compression, so it asks the upstream for none,
/// whatever the client accepts: every error body and usage it reads is
/// plain.
#[tokio::test(flavor = "multi_thread")]
async fn the_edge_asks_the_upstream_for_identity() {
    let upstream = MockUpstream::start(Script::new()).await;
    let edge = Edge::serve(
        components::EDGE_STANDARD,
        &[("primary", upstream.url())],
        &Setup::default(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", edge.url()))
        .header("accept-encoding", "gzip, deflate, br")
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("accept-encoding"), Some("identity"));
}
