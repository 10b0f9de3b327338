//! The host's side of the `policy` interface: its four functions, found in a
//! component by name and type-checked once per instance, then called with
//! `levee-policy-core`'s types as they are.
//!
//! Why not `wasmtime::component::bindgen!`: it generates a second set of
//! types, and every call would convert the request facts and the view into
//! them (a `String` and a `Vec` each) and the decision back. The core's
//! types derive wasmtime's `Lower` and `Lift` instead (its `wasmtime`
//! feature), and wasmtime checks them against the component's WIT types
//! here, when an instance is created.

use levee_policy_core::{
    Admission, Attempt, ConfigError, NextStep, PolicyInfo, RequestFacts, View,
};
use wasmtime::component::{ComponentExportIndex, Func, Instance, InstancePre, TypedFunc};
use wasmtime::{AsContextMut, Engine, Store};

/// The interface name a policy component must export.
pub const POLICY_INTERFACE: &str = "levee:policy/policy@0.1.0";

type ConfigureParams<'a> = (&'a str,);
type ConfigureResult = (Result<(), ConfigError>,);
type RequestParams<'a> = (&'a RequestFacts, &'a View);
type OutcomeParams<'a> = (&'a RequestFacts, &'a [u32], &'a Attempt, &'a View);

/// A component ready to instantiate, with its policy functions located.
pub(crate) struct PolicyPre<T: 'static> {
    pre: InstancePre<T>,
    info: ComponentExportIndex,
    configure: ComponentExportIndex,
    on_request: ComponentExportIndex,
    on_outcome: ComponentExportIndex,
}

impl<T: 'static> PolicyPre<T> {
    /// Finds the policy interface and its functions; fails naming the first
    /// one that is missing.
    pub fn new(pre: InstancePre<T>) -> wasmtime::Result<Self> {
        let component = pre.component();
        let (_, interface) = component
            .get_export(None, POLICY_INTERFACE)
            .ok_or_else(|| wasmtime::format_err!("no export named `{POLICY_INTERFACE}`"))?;
        let func = |name: &str| {
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| {
                    wasmtime::format_err!("`{POLICY_INTERFACE}` has no function `{name}`")
                })
        };
        Ok(PolicyPre {
            info: func("info")?,
            configure: func("configure")?,
            on_request: func("on-request")?,
            on_outcome: func("on-outcome")?,
            pre,
        })
    }

    pub fn engine(&self) -> &Engine {
        self.pre.engine()
    }

    /// A new instance in `store`, its functions checked against the
    /// contract's types.
    pub fn instantiate(&self, store: &mut Store<T>) -> wasmtime::Result<PolicyFuncs> {
        let instance = self.pre.instantiate(&mut *store)?;
        let func = |store: &mut Store<T>, index: &ComponentExportIndex, name: &str| {
            instance_func(&instance, store, index, name)
        };
        let info = func(store, &self.info, "info")?;
        let configure = func(store, &self.configure, "configure")?;
        let on_request = func(store, &self.on_request, "on-request")?;
        let on_outcome = func(store, &self.on_outcome, "on-outcome")?;
        let mismatch = |name: &'static str| {
            move |e: wasmtime::Error| {
                e.context(format!(
                    "`{name}` does not have the type `{POLICY_INTERFACE}` gives it"
                ))
            }
        };
        configure
            .typed::<ConfigureParams<'_>, ConfigureResult>(&*store)
            .map_err(mismatch("configure"))?;
        on_request
            .typed::<RequestParams<'_>, (Admission,)>(&*store)
            .map_err(mismatch("on-request"))?;
        on_outcome
            .typed::<OutcomeParams<'_>, (NextStep,)>(&*store)
            .map_err(mismatch("on-outcome"))?;
        Ok(PolicyFuncs {
            info: info.typed(&*store).map_err(mismatch("info"))?,
            configure,
            on_request,
            on_outcome,
        })
    }
}

fn instance_func<T>(
    instance: &Instance,
    store: &mut Store<T>,
    index: &ComponentExportIndex,
    name: &str,
) -> wasmtime::Result<Func> {
    instance
        .get_func(store, index)
        .ok_or_else(|| wasmtime::format_err!("`{POLICY_INTERFACE}#{name}` is not a function"))
}

/// One instance's policy functions.
///
/// The three whose parameters borrow are kept untyped, because a struct
/// cannot name the lifetime of a call's arguments; each was type-checked
/// against its parameter types (for any lifetime) when the instance was
/// created, which is the check `TypedFunc::new_unchecked` asks of its
/// caller.
pub(crate) struct PolicyFuncs {
    info: TypedFunc<(), (PolicyInfo,)>,
    configure: Func,
    on_request: Func,
    on_outcome: Func,
}

impl PolicyFuncs {
    pub fn info(&self, store: impl AsContextMut) -> wasmtime::Result<PolicyInfo> {
        Ok(self.info.call(store, ())?.0)
    }

    pub fn configure(
        &self,
        store: impl AsContextMut,
        config: &str,
    ) -> wasmtime::Result<Result<(), ConfigError>> {
        // SAFETY: type-checked as exactly these types in `instantiate`.
        #[allow(unsafe_code)]
        let f = unsafe {
            TypedFunc::<ConfigureParams<'_>, ConfigureResult>::new_unchecked(self.configure)
        };
        Ok(f.call(store, (config,))?.0)
    }

    pub fn on_request(
        &self,
        store: impl AsContextMut,
        req: &RequestFacts,
        view: &View,
    ) -> wasmtime::Result<Admission> {
        // SAFETY: type-checked as exactly these types in `instantiate`.
        #[allow(unsafe_code)]
        let f =
            unsafe { TypedFunc::<RequestParams<'_>, (Admission,)>::new_unchecked(self.on_request) };
        Ok(f.call(store, (req, view))?.0)
    }

    pub fn on_outcome(
        &self,
        store: impl AsContextMut,
        req: &RequestFacts,
        order: &[u32],
        attempt: &Attempt,
        view: &View,
    ) -> wasmtime::Result<NextStep> {
        // SAFETY: type-checked as exactly these types in `instantiate`.
        #[allow(unsafe_code)]
        let f =
            unsafe { TypedFunc::<OutcomeParams<'_>, (NextStep,)>::new_unchecked(self.on_outcome) };
        Ok(f.call(store, (req, order, attempt, view))?.0)
    }
}
