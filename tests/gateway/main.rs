//! The gateway end to end: the real `levee` binary between a client and the
//! scriptable mock upstream.

mod bodies;
mod contract;
mod dns;
mod doctor;
mod egress;
mod encoding;
mod failover;
mod lifecycle;
mod limits;
mod metrics;
mod operator;
mod otel;
mod pool;
mod redis;
mod retries;
mod sdk;
mod status;
mod streams;
mod tls;
mod trace;

#[path = "../scenarios/mod.rs"]
mod scenarios;

use levee_tests::levee::Levee;
use levee_tests::mock::MockUpstream;
use std::time::{Duration, Instant};

/// A short-scale standard policy: small backoff, four attempts.
pub const FAST_POLICY: &str = r#"
[policy]
source = "builtin:standard"
[policy.config]
max_attempts = 4
backoff = { base_ms = 20, cap_ms = 100 }
"#;

/// Levee in front of one mock upstream, with `extra` TOML (policy, rails,
/// streaming sections) or [`FAST_POLICY`] when `extra` is empty.
pub fn levee_for(upstream: &MockUpstream, extra: &str) -> Levee {
    let extra = if extra.is_empty() { FAST_POLICY } else { extra };
    Levee::start(&format!(
        "{extra}\n\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n",
        upstream.url()
    ))
}

/// A client that never retries or pools in surprising ways.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

/// POSTs a small Messages request.
pub async fn post(levee: &Levee, body: &str) -> reqwest::Response {
    post_on(&client(), levee, body).await
}

/// POSTs a small Messages request with `client` (and its connections).
pub async fn post_on(client: &reqwest::Client, levee: &Levee, body: &str) -> reqwest::Response {
    client
        .post(format!("{}/v1/messages", levee.url()))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("levee answers")
}

/// A minimal Messages request body.
pub const MESSAGE: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;

/// The same, streaming.
pub const STREAM_MESSAGE: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// The admin listener's `/status`, as JSON.
pub async fn status(levee: &Levee) -> serde_json::Value {
    client()
        .get(format!("{}/status", levee.admin_url()))
        .bearer_auth(levee_tests::levee::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .expect("JSON")
}

/// The value of one series on `/metrics`, 0 when absent.
pub async fn metric(levee: &Levee, series: &str) -> f64 {
    let text = client()
        .get(format!("{}/metrics", levee.admin_url()))
        .bearer_auth(levee_tests::levee::ADMIN_TOKEN)
        .send()
        .await
        .expect("admin answers")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits at most 5 s for an access line holding every one of `fields`.
pub async fn access_line(levee: &Levee, fields: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = levee.log();
        let found = log.lines().find(|l| {
            l.contains("levee::access") && fields.iter().all(|f| l.split(' ').any(|w| w == *f))
        });
        if let Some(line) = found {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no access line with {fields:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Levee in front of `primary` (group 0) and `backup` (group 1), with the
/// fast policy.
pub fn primary_and_backup(primary: &MockUpstream, backup: &MockUpstream) -> Levee {
    Levee::start(&format!(
        "{FAST_POLICY}\n[[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n\n[[upstreams]]\nname = \"backup\"\nurl = \"{}\"\ngroup = 1\n",
        primary.url(),
        backup.url()
    ))
}

/// A response header as text.
pub fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The bundled host, as the shared scenarios see it.
pub struct Native(Levee);

impl scenarios::Gateway for Native {
    fn start(upstreams: &[(&str, String)], setup: &scenarios::Setup) -> Self {
        let mut config = format!(
            "[policy]\nsource = \"builtin:standard\"\nconfig = {}\n",
            toml_inline(&setup.policy)
        );
        if let Some(n) = setup.max_attempts {
            config += &format!("\n[rails]\nmax_attempts = {n}\n");
        }
        if setup.idle_timeout_ms.is_some() || setup.hold_ms.is_some() {
            config += "\n[streaming]\n";
        }
        if let Some(ms) = setup.idle_timeout_ms {
            config += &format!("idle_timeout_ms = {ms}\n");
        }
        if let Some(ms) = setup.hold_ms {
            config += &format!("hold_ms = {ms}\n");
        }
        for (group, (name, url)) in upstreams.iter().enumerate() {
            config +=
                &format!("\n[[upstreams]]\nname = \"{name}\"\nurl = \"{url}\"\ngroup = {group}\n");
        }
        Native(Levee::start(&config))
    }

    fn url(&self) -> String {
        self.0.url()
    }

    fn log(&self) -> String {
        self.0.log()
    }
}

/// A JSON value as a TOML inline value (objects become inline tables).
fn toml_inline(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

all_scenarios!(Native);
