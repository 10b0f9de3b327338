//! Guest-side bindings of the `policy-component` world, on
//! `levee-policy-core`'s own types.
//!
//! Each policy component is a three-line crate that picks a profile:
//! `levee_policy_wit::export_policy!(levee_policy_wit::Standard);`.
//! Generated code lives here, in one place.
//!
//! Every WIT type is mapped (`with`) onto its mirror in
//! `levee_policy_core::types`, so the generated code lifts arguments
//! straight into the types the decisions take and lowers their results as
//! they are: no conversion and no copy between two sets of types.

mod arena;

/// Every component built on this crate allocates from a per-call arena
/// (see [`arena`]).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: arena::PerCall = arena::PerCall;

#[doc(hidden)]
#[allow(missing_docs, unsafe_code, unused_unsafe, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy-component",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "levee_policy_wit::bindings",
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
}

use bindings::exports::levee::policy::policy::Guest;
use levee_policy_core::{
    Admission, Attempt, ConfigError, NextStep, Policy, PolicyInfo, Profile, RequestFacts, View,
};
use std::cell::RefCell;

thread_local! {
    /// The instance's policy. A component instance is single-threaded, and
    /// only one profile is exported per component.
    static POLICY: RefCell<Option<Policy>> = const { RefCell::new(None) };
}

fn with_policy<R>(profile: Profile, f: impl FnOnce(&mut Policy) -> R) -> R {
    POLICY.with(|cell| {
        f(cell
            .borrow_mut()
            .get_or_insert_with(|| Policy::new(profile)))
    })
}

/// A component's profile, fixed at build time.
pub trait ProfileChoice {
    /// The profile this component runs.
    const PROFILE: Profile;
}

/// The `standard` policy: patient, honours every header.
pub struct Standard;
impl ProfileChoice for Standard {
    const PROFILE: Profile = Profile::Standard;
}

/// The `interactive` policy: tight deadline, fails over at once.
pub struct Interactive;
impl ProfileChoice for Interactive {
    const PROFILE: Profile = Profile::Interactive;
}

/// The exported policy, running profile `P` on `levee-policy-core`.
pub struct Component<P>(std::marker::PhantomData<P>);

impl<P: ProfileChoice> Guest for Component<P> {
    fn info() -> PolicyInfo {
        with_policy(P::PROFILE, |p| p.info())
    }

    fn configure(config: String) -> Result<(), ConfigError> {
        with_policy(P::PROFILE, |p| p.configure(&config))
    }

    fn on_request(req: RequestFacts, view: View) -> Admission {
        with_policy(P::PROFILE, |p| p.on_request(&req, &view))
    }

    fn on_outcome(req: RequestFacts, order: Vec<u32>, attempt: Attempt, view: View) -> NextStep {
        with_policy(P::PROFILE, |p| p.on_outcome(&req, &order, &attempt, &view))
    }
}

/// Exports profile `$profile` (a [`ProfileChoice`]) as this crate's policy
/// component.
#[macro_export]
macro_rules! export_policy {
    ($profile:ty) => {
        type LeveePolicy = $crate::Component<$profile>;
        $crate::bindings::export_bindings!(LeveePolicy with_types_in $crate::bindings);
    };
}
