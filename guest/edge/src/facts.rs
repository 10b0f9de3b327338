//! What the edge learns about a client request before sending it. These
//! mirror the bundled host's `gateway::facts`, on plain strings.

use levee_policy_core::{Endpoint, Method};

/// The body fields the policy cares about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// `model`
    pub model: Option<String>,
    /// `stream` (false when absent)
    pub stream: bool,
    /// `max_tokens`, saturated to `u32`
    pub max_tokens: Option<u32>,
}

#[derive(serde::Deserialize)]
struct Peek {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
}

/// Reads the fields from a JSON body; anything else yields defaults.
pub fn body_facts(body: &[u8]) -> BodyFacts {
    match serde_json::from_slice::<Peek>(body) {
        Ok(p) => BodyFacts {
            model: p.model,
            stream: p.stream.unwrap_or(false),
            max_tokens: p.max_tokens.map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
        },
        Err(_) => BodyFacts::default(),
    }
}

/// Input tokens, estimated as one per four bytes of body (as the host does).
pub fn estimate_input_tokens(body: &[u8]) -> u32 {
    u32::try_from(body.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// The API endpoint a path (without query) names.
pub fn endpoint(path: &str) -> Endpoint {
    let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
    match path {
        "/v1/messages" => Endpoint::Messages,
        "/v1/messages/count_tokens" => Endpoint::CountTokens,
        p if p == "/v1/models" || p.starts_with("/v1/models/") => Endpoint::Models,
        p if p.starts_with("/v1/messages/batches") => Endpoint::Batches,
        _ => Endpoint::Other,
    }
}

/// The method, as the contract names it.
pub fn method(m: &str) -> Method {
    match m {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    }
}

/// The client's own timeout from `x-stainless-timeout` (seconds), in ms.
pub fn client_timeout_ms(value: &str) -> Option<u64> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0 && secs <= 86_400.0).then(|| (secs * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_facts_and_endpoints_match_the_host() {
        let f = body_facts(br#"{"model":"m","max_tokens":9,"stream":true}"#);
        assert_eq!(
            (f.model.as_deref(), f.stream, f.max_tokens),
            (Some("m"), true, Some(9))
        );
        assert_eq!(body_facts(b"nope"), BodyFacts::default());
        assert_eq!(endpoint("/v1/messages?beta=true"), Endpoint::Messages);
        assert_eq!(endpoint("/v1/models/x"), Endpoint::Models);
        assert_eq!(endpoint("/v2"), Endpoint::Other);
        assert_eq!(client_timeout_ms("0.6"), Some(600));
        assert_eq!(client_timeout_ms("nan"), None);
    }
}
