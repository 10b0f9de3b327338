//! The imported policy interface, on `levee-policy-core`'s own types.
//!
//! The world is declared inline: it imports `levee:policy/policy` from the
//! one contract in `wit/` and nothing else. The HTTP side comes from
//! spin-sdk's `wasi:http@0.2` bindings.

#![allow(missing_docs, unsafe_code, unused_unsafe, clippy::all)]

wit_bindgen::generate!({
    inline: "package levee:edge@0.1.0;\nworld edge { import levee:policy/policy@0.1.0; }",
    path: "../../wit",
    world: "levee:edge/edge",
    generate_all,
    with: {
        "levee:policy/types@0.1.0/method": ::levee_policy_core::Method,
        "levee:policy/types@0.1.0/endpoint": ::levee_policy_core::Endpoint,
        "levee:policy/types@0.1.0/limit-kind": ::levee_policy_core::LimitKind,
        "levee:policy/types@0.1.0/limit-scope": ::levee_policy_core::LimitScope,
        "levee:policy/types@0.1.0/charge": ::levee_policy_core::Charge,
        "levee:policy/types@0.1.0/request-facts": ::levee_policy_core::RequestFacts,
        "levee:policy/types@0.1.0/health": ::levee_policy_core::Health,
        "levee:policy/types@0.1.0/circuit": ::levee_policy_core::Circuit,
        "levee:policy/types@0.1.0/budget": ::levee_policy_core::Budget,
        "levee:policy/types@0.1.0/upstream-view": ::levee_policy_core::UpstreamView,
        "levee:policy/types@0.1.0/view": ::levee_policy_core::View,
        "levee:policy/types@0.1.0/plan": ::levee_policy_core::Plan,
        "levee:policy/types@0.1.0/rejection": ::levee_policy_core::Rejection,
        "levee:policy/types@0.1.0/admission": ::levee_policy_core::Admission,
        "levee:policy/types@0.1.0/failure-kind": ::levee_policy_core::FailureKind,
        "levee:policy/types@0.1.0/error-kind": ::levee_policy_core::ErrorKind,
        "levee:policy/types@0.1.0/response-facts": ::levee_policy_core::ResponseFacts,
        "levee:policy/types@0.1.0/outcome": ::levee_policy_core::Outcome,
        "levee:policy/types@0.1.0/attempt": ::levee_policy_core::Attempt,
        "levee:policy/types@0.1.0/retry": ::levee_policy_core::Retry,
        "levee:policy/types@0.1.0/give-up": ::levee_policy_core::GiveUp,
        "levee:policy/types@0.1.0/next-step": ::levee_policy_core::NextStep,
        "levee:policy/types@0.1.0/policy-info": ::levee_policy_core::PolicyInfo,
        "levee:policy/types@0.1.0/config-error": ::levee_policy_core::ConfigError,
    },
});

pub use levee::policy::policy;
