//! The host's bindings of the `policy-component` world (generated once,
//! here), and conversions from and to `levee-policy-core`'s types.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "policy-component",
    path: "../wit",
});

pub use exports::levee::policy::policy::Guest as PolicyExports;
use exports::levee::policy::types as wit;
use levee_policy_core as core;

/// The interface name a policy component must export.
pub const POLICY_INTERFACE: &str = "levee:policy/policy@0.1.0";

/// Maps a fieldless enum both ways, case for case.
macro_rules! same_enum {
    ($wit:ident <-> $core:ident { $($case:ident),+ $(,)? }) => {
        impl From<wit::$wit> for core::$core {
            fn from(v: wit::$wit) -> Self {
                match v { $(wit::$wit::$case => core::$core::$case),+ }
            }
        }
        impl From<core::$core> for wit::$wit {
            fn from(v: core::$core) -> Self {
                match v { $(core::$core::$case => wit::$wit::$case),+ }
            }
        }
    };
}

same_enum!(Method <-> Method { Get, Head, Post, Put, Patch, Delete, Options, Other });
same_enum!(Endpoint <-> Endpoint { Messages, CountTokens, Models, Batches, Other });
same_enum!(LimitKind <-> LimitKind { Requests, InputTokens, OutputTokens, Concurrency });
same_enum!(LimitScope <-> LimitScope { Upstream, Client });
same_enum!(Health <-> Health { Unknown, Healthy, Unhealthy });
same_enum!(Circuit <-> Circuit { Closed, Open, HalfOpen });
same_enum!(FailureKind <-> FailureKind { Dns, Connect, Tls, Proxy, Timeout, Reset });
same_enum!(ErrorKind <-> ErrorKind {
    InvalidRequest, Authentication, Billing, Permission, NotFound, RequestTooLarge,
    RateLimit, ApiError, TimeoutError, Overloaded, Other,
});

pub fn request(r: &core::RequestFacts) -> wit::RequestFacts {
    wit::RequestFacts {
        id: r.id,
        method: r.method.into(),
        endpoint: r.endpoint.into(),
        model: r.model.clone(),
        stream: r.stream,
        max_tokens: r.max_tokens,
        est_input_tokens: r.est_input_tokens,
        client: r.client.clone(),
        priority: r.priority,
        client_retry_count: r.client_retry_count,
        received_at: r.received_at,
        deadline: r.deadline,
    }
}

pub fn view(v: &core::View) -> wit::View {
    wit::View {
        now: v.now,
        random: v.random,
        retry_budget: v.retry_budget,
        upstreams: v
            .upstreams
            .iter()
            .map(|u| wit::UpstreamView {
                id: u.id,
                group: u.group,
                weight: u.weight,
                health: u.health.into(),
                circuit: u.circuit.into(),
                in_flight: u.in_flight,
                rate_limited_until: u.rate_limited_until,
                overloaded_until: u.overloaded_until,
                budgets: u
                    .budgets
                    .iter()
                    .map(|b| wit::Budget {
                        kind: b.kind.into(),
                        remaining: b.remaining,
                        limit: b.limit,
                        reset_at: b.reset_at,
                    })
                    .collect(),
                ttfb_ms: u.ttfb_ms,
                slow: u.slow,
            })
            .collect(),
    }
}

pub fn attempt(a: &core::Attempt) -> wit::Attempt {
    wit::Attempt {
        number: a.number,
        upstream: a.upstream,
        prev_delay_ms: a.prev_delay_ms,
        outcome: match a.outcome {
            core::Outcome::Response(r) => wit::Outcome::Response(wit::ResponseFacts {
                status: r.status,
                should_retry: r.should_retry,
                retry_after_ms: r.retry_after_ms,
                retry_after: r.retry_after,
                error: r.error.map(Into::into),
                spend_cap: r.spend_cap,
                elapsed_ms: r.elapsed_ms,
            }),
            core::Outcome::Failure(kind) => wit::Outcome::Failure(kind.into()),
        },
    }
}

impl From<wit::Admission> for core::Admission {
    fn from(a: wit::Admission) -> Self {
        match a {
            wit::Admission::Admit(p) => core::Admission::Admit(core::Plan {
                upstreams: p.upstreams,
                try_timeout_ms: p.try_timeout_ms,
                deadline: p.deadline,
                charges: p
                    .charges
                    .into_iter()
                    .map(|c| core::Charge {
                        scope: c.scope.into(),
                        kind: c.kind.into(),
                        amount: c.amount,
                    })
                    .collect(),
            }),
            wit::Admission::Queue(until) => core::Admission::Queue(until),
            wit::Admission::Reject(r) => core::Admission::Reject(core::Rejection {
                status: r.status,
                error_type: r.error_type,
                message: r.message,
                retry_after_ms: r.retry_after_ms,
                should_retry: r.should_retry,
            }),
        }
    }
}

impl From<wit::NextStep> for core::NextStep {
    fn from(n: wit::NextStep) -> Self {
        match n {
            wit::NextStep::Deliver => core::NextStep::Deliver,
            wit::NextStep::Retry(r) => core::NextStep::Retry(core::Retry {
                upstream: r.upstream,
                delay_ms: r.delay_ms,
            }),
            wit::NextStep::Fail(g) => core::NextStep::Fail(core::GiveUp {
                should_retry: g.should_retry,
                retry_after_ms: g.retry_after_ms,
            }),
        }
    }
}

impl From<wit::PolicyInfo> for core::PolicyInfo {
    fn from(i: wit::PolicyInfo) -> Self {
        core::PolicyInfo {
            name: i.name,
            version: i.version,
            summary: i.summary,
        }
    }
}

impl From<wit::ConfigError> for core::ConfigError {
    fn from(e: wit::ConfigError) -> Self {
        core::ConfigError {
            key: e.key,
            message: e.message,
        }
    }
}
