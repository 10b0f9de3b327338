//! The canonical JSON form of every type of the contract, by its WIT names.

use super::{Wire, WireError, field, object, payload, tagged, variant};
use crate::types::*;
use serde_json::{Map, Value};

/// A record: each field by its WIT name.
macro_rules! record {
    ($name:ident { $($field:ident: $wit:literal),+ $(,)? }) => {
        impl Wire for $name {
            fn to_json(&self) -> Value {
                let mut m = Map::new();
                $(m.insert($wit.into(), self.$field.to_json());)+
                Value::Object(m)
            }
            fn from_json(v: &Value) -> Result<Self, WireError> {
                let m = object(v, &[$($wit),+])?;
                Ok($name { $($field: field(m, $wit)?),+ })
            }
        }
    };
}

/// A fieldless enum: each case by its WIT name.
macro_rules! enumeration {
    ($name:ident { $($case:ident: $wit:literal),+ $(,)? }) => {
        impl Wire for $name {
            fn to_json(&self) -> Value {
                Value::String(match self { $($name::$case => $wit),+ }.into())
            }
            fn from_json(v: &Value) -> Result<Self, WireError> {
                const CASES: &[&str] = &[$($wit),+];
                match v.as_str() {
                    $(Some($wit) => Ok($name::$case),)+
                    _ => Err(WireError::new(format!(
                        "expected one of: {}; got {}",
                        CASES.join(", "),
                        super::shown(v)
                    ))),
                }
            }
        }
    };
}

enumeration!(Method {
    Get: "get",
    Head: "head",
    Post: "post",
    Put: "put",
    Patch: "patch",
    Delete: "delete",
    Options: "options",
    Other: "other",
});
enumeration!(Endpoint {
    Messages: "messages",
    CountTokens: "count-tokens",
    Models: "models",
    Batches: "batches",
    Other: "other",
});
enumeration!(LimitKind {
    Requests: "requests",
    InputTokens: "input-tokens",
    OutputTokens: "output-tokens",
    Concurrency: "concurrency",
});
enumeration!(LimitScope {
    Upstream: "upstream",
    Client: "client"
});
enumeration!(Health {
    Unknown: "unknown",
    Healthy: "healthy",
    Unhealthy: "unhealthy"
});
enumeration!(Circuit {
    Closed: "closed",
    Open: "open",
    HalfOpen: "half-open"
});
enumeration!(FailureKind {
    Dns: "dns",
    Connect: "connect",
    Tls: "tls",
    Proxy: "proxy",
    Timeout: "timeout",
    Reset: "reset",
});
enumeration!(ErrorKind {
    InvalidRequest: "invalid-request",
    Authentication: "authentication",
    Billing: "billing",
    Permission: "permission",
    NotFound: "not-found",
    RequestTooLarge: "request-too-large",
    RateLimit: "rate-limit",
    ApiError: "api-error",
    TimeoutError: "timeout-error",
    Overloaded: "overloaded",
    Other: "other",
});

record!(Charge {
    scope: "scope",
    kind: "kind",
    amount: "amount"
});
record!(RequestFacts {
    id: "id",
    method: "method",
    endpoint: "endpoint",
    model: "model",
    stream: "stream",
    max_tokens: "max-tokens",
    est_input_tokens: "est-input-tokens",
    client: "client",
    priority: "priority",
    client_retry_count: "client-retry-count",
    received_at: "received-at",
    deadline: "deadline",
});
record!(Budget {
    kind: "kind",
    remaining: "remaining",
    limit: "limit",
    reset_at: "reset-at"
});
record!(UpstreamView {
    id: "id",
    group: "group",
    weight: "weight",
    health: "health",
    circuit: "circuit",
    in_flight: "in-flight",
    rate_limited_until: "rate-limited-until",
    overloaded_until: "overloaded-until",
    budgets: "budgets",
    ttfb_ms: "ttfb-ms",
    slow: "slow",
});
record!(View {
    now: "now",
    random: "random",
    upstreams: "upstreams",
    retry_budget: "retry-budget"
});
record!(Plan {
    upstreams: "upstreams",
    try_timeout_ms: "try-timeout-ms",
    deadline: "deadline",
    charges: "charges",
});
record!(Rejection {
    status: "status",
    error_type: "error-type",
    message: "message",
    retry_after_ms: "retry-after-ms",
    should_retry: "should-retry",
});
record!(ResponseFacts {
    status: "status",
    should_retry: "should-retry",
    retry_after_ms: "retry-after-ms",
    retry_after: "retry-after",
    error: "error",
    spend_cap: "spend-cap",
    elapsed_ms: "elapsed-ms",
});
record!(Attempt {
    number: "number",
    upstream: "upstream",
    prev_delay_ms: "prev-delay-ms",
    outcome: "outcome",
});
record!(Retry {
    upstream: "upstream",
    delay_ms: "delay-ms"
});
record!(GiveUp {
    should_retry: "should-retry",
    retry_after_ms: "retry-after-ms"
});
record!(PolicyInfo {
    name: "name",
    version: "version",
    summary: "summary"
});
record!(ConfigError {
    key: "key",
    message: "message"
});

impl Wire for Admission {
    fn to_json(&self) -> Value {
        match self {
            Admission::Admit(p) => tagged("admit", Some(p.to_json())),
            Admission::Queue(t) => tagged("queue", Some(t.to_json())),
            Admission::Reject(r) => tagged("reject", Some(r.to_json())),
        }
    }
    fn from_json(v: &Value) -> Result<Self, WireError> {
        match variant(v, &["admit", "queue", "reject"])? {
            ("admit", val) => payload(val, "admit").map(Admission::Admit),
            ("queue", val) => payload(val, "queue").map(Admission::Queue),
            (_, val) => payload(val, "reject").map(Admission::Reject),
        }
    }
}

impl Wire for Outcome {
    fn to_json(&self) -> Value {
        match self {
            Outcome::Response(r) => tagged("response", Some(r.to_json())),
            Outcome::Failure(k) => tagged("failure", Some(k.to_json())),
        }
    }
    fn from_json(v: &Value) -> Result<Self, WireError> {
        match variant(v, &["response", "failure"])? {
            ("response", val) => payload(val, "response").map(Outcome::Response),
            (_, val) => payload(val, "failure").map(Outcome::Failure),
        }
    }
}

impl Wire for NextStep {
    fn to_json(&self) -> Value {
        match self {
            NextStep::Deliver => tagged("deliver", None),
            NextStep::Retry(r) => tagged("retry", Some(r.to_json())),
            NextStep::Fail(g) => tagged("fail", Some(g.to_json())),
        }
    }
    fn from_json(v: &Value) -> Result<Self, WireError> {
        match variant(v, &["deliver", "retry", "fail"])? {
            ("deliver", _) => Ok(NextStep::Deliver),
            ("retry", val) => payload(val, "retry").map(NextStep::Retry),
            (_, val) => payload(val, "fail").map(NextStep::Fail),
        }
    }
}
