//! Plain Rust mirrors of the WIT contract's types (`wit/policy.wit`).
//!
//! Field for field the same as the WIT records, so the component adapters
//! and the host convert without judgement. Documentation lives on the WIT.

#![allow(missing_docs)]

/// Milliseconds since the Unix epoch.
pub type TimestampMs = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Messages,
    CountTokens,
    Models,
    Batches,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    InputTokens,
    OutputTokens,
    Concurrency,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Upstream,
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Charge {
    pub scope: LimitScope,
    pub kind: LimitKind,
    pub amount: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFacts {
    pub id: u64,
    pub method: Method,
    pub endpoint: Endpoint,
    pub model: Option<String>,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub est_input_tokens: u32,
    pub client: Option<String>,
    pub priority: u8,
    pub client_retry_count: Option<u32>,
    pub received_at: TimestampMs,
    pub deadline: TimestampMs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    Unknown,
    Healthy,
    Unhealthy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub kind: LimitKind,
    pub remaining: u32,
    pub limit: u32,
    pub reset_at: Option<TimestampMs>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamView {
    pub id: u32,
    pub group: u8,
    pub weight: u16,
    pub health: Health,
    pub circuit: Circuit,
    pub in_flight: u32,
    pub rate_limited_until: Option<TimestampMs>,
    pub overloaded_until: Option<TimestampMs>,
    pub budgets: Vec<Budget>,
    pub ttfb_ms: Option<u32>,
    pub slow: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub now: TimestampMs,
    pub random: u64,
    pub upstreams: Vec<UpstreamView>,
    pub retry_budget: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub upstreams: Vec<u32>,
    pub try_timeout_ms: u32,
    pub deadline: TimestampMs,
    pub charges: Vec<Charge>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub error_type: String,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    pub should_retry: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Admit(Plan),
    Queue(TimestampMs),
    Reject(Rejection),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    Dns,
    Connect,
    Tls,
    Proxy,
    Timeout,
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Billing,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    ApiError,
    TimeoutError,
    Overloaded,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseFacts {
    pub status: u16,
    pub should_retry: Option<bool>,
    pub retry_after_ms: Option<u64>,
    pub retry_after: Option<u64>,
    pub error: Option<ErrorKind>,
    pub spend_cap: bool,
    pub elapsed_ms: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Response(ResponseFacts),
    Failure(FailureKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub upstream: u32,
    pub prev_delay_ms: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub upstream: u32,
    pub delay_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GiveUp {
    pub should_retry: bool,
    pub retry_after_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    Deliver,
    Retry(Retry),
    Fail(GiveUp),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub summary: String,
}

/// A refused configuration: the dotted key and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}` {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
