//! Plain Rust mirrors of the WIT contract's types (`wit/policy.wit`).
//!
//! Field for field and case for case the same as the WIT types, so that
//! both sides of the component boundary use them as they are, with no
//! conversion:
//! - in the guest, `levee-policy-wit` has `wit-bindgen` lift and lower these
//!   very types (feature `wit`: the `_lift` constructors its generated code
//!   calls on fieldless enums; a case's index is its discriminant);
//! - in the host, feature `wasmtime` derives wasmtime's `ComponentType`,
//!   `Lower` and `Lift`, with each WIT name spelled out. wasmtime
//!   type-checks them against the component when it is loaded, so a drift
//!   from the WIT fails loudly at load, never silently at a call.
//!
//! Documentation lives on the WIT.

#![allow(missing_docs)]

/// Defines a fieldless enum with the WIT name of each case; with feature
/// `wit`, the `_lift` constructor that `wit-bindgen`'s generated code calls
/// (case `i` is the WIT enum's `i`th case); with feature `wasmtime`, the
/// host's derives.
macro_rules! wit_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($case:ident = $wit:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[cfg_attr(feature = "wasmtime", derive(
            wasmtime::component::ComponentType,
            wasmtime::component::Lower,
            wasmtime::component::Lift,
        ))]
        #[cfg_attr(feature = "wasmtime", component(enum))]
        #[repr(u8)]
        pub enum $name { $(#[cfg_attr(feature = "wasmtime", component(name = $wit))] $case),+ }

        #[cfg(feature = "wit")]
        impl $name {
            #[doc(hidden)]
            pub fn _lift(val: u8) -> $name {
                const CASES: &[$name] = &[$($name::$case),+];
                match CASES.get(usize::from(val)) {
                    Some(&case) => case,
                    None => panic!("invalid enum discriminant"),
                }
            }
        }
    };
}

/// Defines a record; with feature `wasmtime`, the host's derives, naming
/// each field as the WIT does where the Rust name differs.
macro_rules! wit_record {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($field:ident $(= $wit:literal)?: $ty:ty),+ $(,)?
    }) => {
        $(#[$meta])*
        #[cfg_attr(feature = "wasmtime", derive(
            wasmtime::component::ComponentType,
            wasmtime::component::Lower,
            wasmtime::component::Lift,
        ))]
        #[cfg_attr(feature = "wasmtime", component(record))]
        pub struct $name {
            $($(#[cfg_attr(feature = "wasmtime", component(name = $wit))])? pub $field: $ty),+
        }
    };
}

/// Milliseconds since the Unix epoch.
pub type TimestampMs = u64;

wit_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Method {
        Get = "get",
        Head = "head",
        Post = "post",
        Put = "put",
        Patch = "patch",
        Delete = "delete",
        Options = "options",
        Other = "other",
    }
}

wit_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Endpoint {
        Messages = "messages",
        CountTokens = "count-tokens",
        Models = "models",
        Batches = "batches",
        Other = "other",
    }
}

wit_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum LimitKind {
        Requests = "requests",
        InputTokens = "input-tokens",
        OutputTokens = "output-tokens",
        Concurrency = "concurrency",
    }
}

wit_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum LimitScope {
        Upstream = "upstream",
        Client = "client",
    }
}

wit_record! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Charge {
        scope: LimitScope,
        kind: LimitKind,
        amount: u32,
    }
}

wit_record! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RequestFacts {
        id: u64,
        method: Method,
        endpoint: Endpoint,
        model: Option<String>,
        stream: bool,
        max_tokens = "max-tokens": Option<u32>,
        est_input_tokens = "est-input-tokens": u32,
        client: Option<String>,
        priority: u8,
        client_retry_count = "client-retry-count": Option<u32>,
        received_at = "received-at": TimestampMs,
        deadline: TimestampMs,
    }
}

wit_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Health {
        Unknown = "unknown",
        Healthy = "healthy",
        Unhealthy = "unhealthy",
    }
}

wit_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Circuit {
        Closed = "closed",
        Open = "open",
        HalfOpen = "half-open",
    }
}

wit_record! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Budget {
        kind: LimitKind,
        remaining: u32,
        limit: u32,
        reset_at = "reset-at": Option<TimestampMs>,
    }
}

wit_record! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct UpstreamView {
        id: u32,
        group: u8,
        weight: u16,
        health: Health,
        circuit: Circuit,
        in_flight = "in-flight": u32,
        rate_limited_until = "rate-limited-until": Option<TimestampMs>,
        overloaded_until = "overloaded-until": Option<TimestampMs>,
        budgets: Vec<Budget>,
        ttfb_ms = "ttfb-ms": Option<u32>,
        slow: bool,
    }
}

wit_record! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct View {
        now: TimestampMs,
        random: u64,
        upstreams: Vec<UpstreamView>,
        retry_budget = "retry-budget": bool,
    }
}

wit_record! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Plan {
        upstreams: Vec<u32>,
        try_timeout_ms = "try-timeout-ms": u32,
        deadline: TimestampMs,
        charges: Vec<Charge>,
    }
}

wit_record! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Rejection {
        status: u16,
        error_type = "error-type": String,
        message: String,
        retry_after_ms = "retry-after-ms": Option<u64>,
        should_retry = "should-retry": bool,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "wasmtime",
    derive(
        wasmtime::component::ComponentType,
        wasmtime::component::Lower,
        wasmtime::component::Lift,
    )
)]
#[cfg_attr(feature = "wasmtime", component(variant))]
pub enum Admission {
    #[cfg_attr(feature = "wasmtime", component(name = "admit"))]
    Admit(Plan),
    #[cfg_attr(feature = "wasmtime", component(name = "queue"))]
    Queue(TimestampMs),
    #[cfg_attr(feature = "wasmtime", component(name = "reject"))]
    Reject(Rejection),
}

wit_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum FailureKind {
        Dns = "dns",
        Connect = "connect",
        Tls = "tls",
        Proxy = "proxy",
        Timeout = "timeout",
        Reset = "reset",
    }
}

wit_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum ErrorKind {
        InvalidRequest = "invalid-request",
        Authentication = "authentication",
        Billing = "billing",
        Permission = "permission",
        NotFound = "not-found",
        RequestTooLarge = "request-too-large",
        RateLimit = "rate-limit",
        ApiError = "api-error",
        TimeoutError = "timeout-error",
        Overloaded = "overloaded",
        Other = "other",
    }
}

wit_record! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ResponseFacts {
        status: u16,
        should_retry = "should-retry": Option<bool>,
        retry_after_ms = "retry-after-ms": Option<u64>,
        retry_after = "retry-after": Option<u64>,
        error: Option<ErrorKind>,
        spend_cap = "spend-cap": bool,
        elapsed_ms = "elapsed-ms": u32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "wasmtime",
    derive(
        wasmtime::component::ComponentType,
        wasmtime::component::Lower,
        wasmtime::component::Lift,
    )
)]
#[cfg_attr(feature = "wasmtime", component(variant))]
pub enum Outcome {
    #[cfg_attr(feature = "wasmtime", component(name = "response"))]
    Response(ResponseFacts),
    #[cfg_attr(feature = "wasmtime", component(name = "failure"))]
    Failure(FailureKind),
}

wit_record! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Attempt {
        number: u32,
        upstream: u32,
        prev_delay_ms = "prev-delay-ms": u64,
        outcome: Outcome,
    }
}

wit_record! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Retry {
        upstream: u32,
        delay_ms = "delay-ms": u64,
    }
}

wit_record! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct GiveUp {
        should_retry = "should-retry": bool,
        retry_after_ms = "retry-after-ms": Option<u64>,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "wasmtime",
    derive(
        wasmtime::component::ComponentType,
        wasmtime::component::Lower,
        wasmtime::component::Lift,
    )
)]
#[cfg_attr(feature = "wasmtime", component(variant))]
pub enum NextStep {
    #[cfg_attr(feature = "wasmtime", component(name = "deliver"))]
    Deliver,
    #[cfg_attr(feature = "wasmtime", component(name = "retry"))]
    Retry(Retry),
    #[cfg_attr(feature = "wasmtime", component(name = "fail"))]
    Fail(GiveUp),
}

wit_record! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct PolicyInfo {
        name: String,
        version: String,
        summary: String,
    }
}

wit_record! {
    /// A refused configuration: the dotted key and what is wrong with it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ConfigError {
        key: String,
        message: String,
    }
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
