//! Upstream TLS: verification against the system roots plus `ca_file`, with
//! failures explained in plain words.

use super::{FAST_POLICY, MESSAGE, post};
use levee_tests::levee::Levee;
use levee_tests::mock::{Chain, MockUpstream, Script, TestPki};

fn levee_tls(upstream: &MockUpstream, ca_file: Option<&std::path::Path>) -> Levee {
    let port = upstream.addr().port();
    let tls = ca_file.map_or(String::new(), |p| {
        format!("[upstreams.tls]\nca_file = \"{}\"\n", p.display())
    });
    Levee::start(&format!(
        "{FAST_POLICY}\n[[upstreams]]\nname = \"secure\"\nurl = \"https://localhost:{port}\"\n{tls}"
    ))
}

async fn error_message(levee: &Levee) -> String {
    let resp = post(levee, MESSAGE).await;
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_ca_fails_with_the_fix_and_ca_file_makes_it_work() {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::Full)).await;
    let without = levee_tls(&upstream, None);
    let message = error_message(&without).await;
    assert!(
        message.starts_with(
            "tls: certificate verify failed: unknown issuer for localhost; set ca_file if a corporate proxy re-signs TLS"
        ),
        "{message}"
    );
    assert_eq!(
        upstream.requests().len(),
        0,
        "no request crossed an unverified connection"
    );

    let dir = tempfile::tempdir().unwrap();
    let with = levee_tls(&upstream, Some(&pki.write_ca(dir.path())));
    let resp = post(&with, MESSAGE).await;
    assert_eq!(resp.status(), 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].version,
        http::Version::HTTP_2,
        "HTTP/2 negotiated by ALPN"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_fails_clearly() {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(Script::new(), pki.expired_server_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let levee = levee_tls(&upstream, Some(&pki.write_ca(dir.path())));
    let message = error_message(&levee).await;
    assert!(
        message.contains("the certificate of localhost has expired"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_intermediate_is_an_unknown_issuer() {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::LeafOnly)).await;
    let dir = tempfile::tempdir().unwrap();
    let levee = levee_tls(&upstream, Some(&pki.write_ca(dir.path())));
    let message = error_message(&levee).await;
    assert!(
        message.contains("unknown issuer for localhost"),
        "{message}"
    );
    assert!(message.contains("incomplete chain"), "{message}");
}
