//! Field-for-field conversions between the generated WIT types and
//! `levee-policy-core`'s mirrors of them.

use crate::bindings::exports::levee::policy::types as wit;
use levee_policy_core as core;

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

impl From<wit::RequestFacts> for core::RequestFacts {
    fn from(r: wit::RequestFacts) -> Self {
        core::RequestFacts {
            id: r.id,
            method: r.method.into(),
            endpoint: r.endpoint.into(),
            model: r.model,
            stream: r.stream,
            max_tokens: r.max_tokens,
            est_input_tokens: r.est_input_tokens,
            client: r.client,
            priority: r.priority,
            client_retry_count: r.client_retry_count,
            received_at: r.received_at,
            deadline: r.deadline,
        }
    }
}

impl From<wit::Budget> for core::Budget {
    fn from(b: wit::Budget) -> Self {
        core::Budget {
            kind: b.kind.into(),
            remaining: b.remaining,
            limit: b.limit,
            reset_at: b.reset_at,
        }
    }
}

impl From<wit::UpstreamView> for core::UpstreamView {
    fn from(u: wit::UpstreamView) -> Self {
        core::UpstreamView {
            id: u.id,
            group: u.group,
            weight: u.weight,
            health: u.health.into(),
            circuit: u.circuit.into(),
            in_flight: u.in_flight,
            rate_limited_until: u.rate_limited_until,
            overloaded_until: u.overloaded_until,
            budgets: u.budgets.into_iter().map(Into::into).collect(),
            ttfb_ms: u.ttfb_ms,
            slow: u.slow,
        }
    }
}

impl From<wit::View> for core::View {
    fn from(v: wit::View) -> Self {
        core::View {
            now: v.now,
            random: v.random,
            upstreams: v.upstreams.into_iter().map(Into::into).collect(),
            retry_budget: v.retry_budget,
        }
    }
}

impl From<wit::Attempt> for core::Attempt {
    fn from(a: wit::Attempt) -> Self {
        core::Attempt {
            number: a.number,
            upstream: a.upstream,
            prev_delay_ms: a.prev_delay_ms,
            outcome: match a.outcome {
                wit::Outcome::Response(r) => core::Outcome::Response(core::ResponseFacts {
                    status: r.status,
                    should_retry: r.should_retry,
                    retry_after_ms: r.retry_after_ms,
                    retry_after: r.retry_after,
                    error: r.error.map(Into::into),
                    spend_cap: r.spend_cap,
                    elapsed_ms: r.elapsed_ms,
                }),
                wit::Outcome::Failure(kind) => core::Outcome::Failure(kind.into()),
            },
        }
    }
}

impl From<core::Charge> for wit::Charge {
    fn from(c: core::Charge) -> Self {
        wit::Charge {
            scope: c.scope.into(),
            kind: c.kind.into(),
            amount: c.amount,
        }
    }
}

impl From<core::Rejection> for wit::Rejection {
    fn from(r: core::Rejection) -> Self {
        wit::Rejection {
            status: r.status,
            error_type: r.error_type,
            message: r.message,
            retry_after_ms: r.retry_after_ms,
            should_retry: r.should_retry,
        }
    }
}

impl From<core::Admission> for wit::Admission {
    fn from(a: core::Admission) -> Self {
        match a {
            core::Admission::Admit(p) => wit::Admission::Admit(wit::Plan {
                upstreams: p.upstreams,
                try_timeout_ms: p.try_timeout_ms,
                deadline: p.deadline,
                charges: p.charges.into_iter().map(Into::into).collect(),
            }),
            core::Admission::Queue(until) => wit::Admission::Queue(until),
            core::Admission::Reject(r) => wit::Admission::Reject(r.into()),
        }
    }
}

impl From<core::NextStep> for wit::NextStep {
    fn from(n: core::NextStep) -> Self {
        match n {
            core::NextStep::Deliver => wit::NextStep::Deliver,
            core::NextStep::Retry(r) => wit::NextStep::Retry(wit::Retry {
                upstream: r.upstream,
                delay_ms: r.delay_ms,
            }),
            core::NextStep::Fail(g) => wit::NextStep::Fail(wit::GiveUp {
                should_retry: g.should_retry,
                retry_after_ms: g.retry_after_ms,
            }),
        }
    }
}

impl From<core::PolicyInfo> for wit::PolicyInfo {
    fn from(i: core::PolicyInfo) -> Self {
        wit::PolicyInfo {
            name: i.name,
            version: i.version,
            summary: i.summary,
        }
    }
}

impl From<core::ConfigError> for wit::ConfigError {
    fn from(e: core::ConfigError) -> Self {
        wit::ConfigError {
            key: e.key,
            message: e.message,
        }
    }
}
