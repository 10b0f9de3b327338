//! Guest-side bindings of the `policy-component` world, and the one adapter
//! from them to `levee-policy-core`.
//!
//! Each policy component is a three-line crate that picks a profile:
//! `levee_policy_wit::export_policy!(levee_policy_wit::Standard);`.
//! Generated code lives here, in one place.

mod convert;

#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy-component",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "levee_policy_wit::bindings",
    });
}

use bindings::exports::levee::policy::policy::Guest;
use bindings::exports::levee::policy::types as wit;
use levee_policy_core::{Policy, Profile};
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
    fn info() -> wit::PolicyInfo {
        with_policy(P::PROFILE, |p| p.info().into())
    }

    fn configure(config: String) -> Result<(), wit::ConfigError> {
        with_policy(P::PROFILE, |p| p.configure(&config).map_err(Into::into))
    }

    fn on_request(req: wit::RequestFacts, view: wit::View) -> wit::Admission {
        let (req, view) = (req.into(), view.into());
        with_policy(P::PROFILE, |p| p.on_request(&req, &view).into())
    }

    fn on_outcome(
        req: wit::RequestFacts,
        order: Vec<u32>,
        attempt: wit::Attempt,
        view: wit::View,
    ) -> wit::NextStep {
        let (req, attempt, view) = (req.into(), attempt.into(), view.into());
        with_policy(P::PROFILE, |p| {
            p.on_outcome(&req, &order, &attempt, &view).into()
        })
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
