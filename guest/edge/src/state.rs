//! Limiter and circuit state at the edge, keyed by upstream and by window.
//!
//! With a key-value store (Spin), instances share it; without one, state
//! lives in the instance, which a wasi:http host creates per request, so
//! nothing is shared. Either way it is approximate: a read-modify-write
//! with no atomics, between instances that run at the same time, on a
//! store that may be eventually consistent. See the README.

use crate::config::{Limits, Upstream};
use levee_policy_core::{
    Budget, Charge, Circuit, Health, LimitKind, LimitScope, TimestampMs, UpstreamView,
};
use std::cell::RefCell;
use std::collections::HashMap;

/// The limiter's window.
pub const WINDOW_MS: u64 = 60_000;
/// How long a 529 keeps an upstream marked overloaded without `retry-after`
/// (the bundled host's value).
pub const OVERLOAD_COOLDOWN_MS: u64 = 2_000;

/// A store of numbers by key.
pub trait Store {
    /// The value at `key`, if any.
    fn get(&self, key: &str) -> Option<u64>;
    /// Sets `key`; failures are logged and ignored (the edge fails open).
    fn set(&self, key: &str, value: u64);
    /// Removes `key`, if present.
    fn delete(&self, key: &str);
    /// Whether what is stored outlives one request (a key-value store
    /// shared by instances), so that an unused window means idle.
    fn shared(&self) -> bool {
        false
    }
}

/// Numbers in this instance's memory.
#[derive(Default)]
pub struct Local(RefCell<HashMap<String, u64>>);

impl Store for Local {
    fn get(&self, key: &str) -> Option<u64> {
        self.0.borrow().get(key).copied()
    }
    fn set(&self, key: &str, value: u64) {
        self.0.borrow_mut().insert(key.to_owned(), value);
    }
    fn delete(&self, key: &str) {
        self.0.borrow_mut().remove(key);
    }
}

/// The edge's view of its upstreams, over a [`Store`].
pub struct State<'a> {
    store: Box<dyn Store>,
    upstreams: &'a [Upstream],
    limits: Limits,
}

fn kind_label(kind: LimitKind) -> Option<&'static str> {
    match kind {
        LimitKind::Requests => Some("requests"),
        LimitKind::InputTokens => Some("input_tokens"),
        // Output is unknown until the answer; concurrency needs a
        // decrement that outlives a crashed instance. Neither is kept.
        LimitKind::OutputTokens | LimitKind::Concurrency => None,
    }
}

/// The window's start.
pub fn window(now: TimestampMs) -> u64 {
    now - now % WINDOW_MS
}

impl<'a> State<'a> {
    /// State for `upstreams` in `store`.
    pub fn new(store: Box<dyn Store>, upstreams: &'a [Upstream], limits: Limits) -> Self {
        State {
            store,
            upstreams,
            limits,
        }
    }

    fn key(&self, id: u32, what: &str) -> String {
        format!("levee:v1:{}:{what}", self.upstreams[id as usize].name)
    }

    fn window_key(&self, id: u32, class: &str, start: u64, kind: &str) -> String {
        self.key(id, &format!("{class}:w{start}:{kind}"))
    }

    /// The policy's view of every upstream at `now`, for a request of the
    /// model class `class`: the API limits each class apart, so windows and
    /// 429 closures are the class's.
    pub fn view(&self, now: TimestampMs, class: &str) -> Vec<UpstreamView> {
        let start = window(now);
        (0..self.upstreams.len() as u32)
            .map(|id| {
                let future = |v: Option<u64>| v.filter(|&v| v > now);
                let mut budgets = Vec::new();
                for (kind, limit) in [
                    (LimitKind::Requests, self.limits.requests),
                    (LimitKind::InputTokens, self.limits.input_tokens),
                ] {
                    let (Some(limit), Some(label)) = (limit, kind_label(kind)) else {
                        continue;
                    };
                    let used = self
                        .store
                        .get(&self.window_key(id, class, start, label))
                        .unwrap_or(0);
                    let limit = self.ramped(id, class, start, limit);
                    budgets.push(Budget {
                        kind,
                        remaining: u64::from(limit).saturating_sub(used) as u32,
                        limit,
                        reset_at: Some(start + WINDOW_MS),
                    });
                }
                let up = &self.upstreams[id as usize];
                UpstreamView {
                    id,
                    group: up.group,
                    weight: up.weight,
                    health: Health::Unknown,
                    circuit: Circuit::Closed,
                    in_flight: 0,
                    rate_limited_until: future(self.store.get(&self.closure_key(id, class))),
                    overloaded_until: future(self.store.get(&self.key(id, "overloaded_until"))),
                    budgets,
                    ttfb_ms: None,
                    slow: false,
                }
            })
            .collect()
    }

    /// `limit`, or the ramp's share of it when the window before `start`
    /// went unused: after idle the sending rate climbs back over a window
    /// instead of bursting. Only a shared store can tell idle from a new
    /// instance.
    fn ramped(&self, id: u32, class: &str, start: u64, limit: u32) -> u32 {
        let percent = self.limits.ramp_percent;
        if percent >= 100 || !self.store.shared() {
            return limit;
        }
        let last = start.saturating_sub(WINDOW_MS);
        let used = |label| {
            self.store
                .get(&self.window_key(id, class, last, label))
                .is_some()
        };
        if used("requests") || used("input_tokens") {
            return limit;
        }
        (u64::from(limit) * u64::from(percent)).div_ceil(100).max(1) as u32
    }

    fn raise(&self, key: String, until: u64) {
        if self.store.get(&key).is_none_or(|old| old < until) {
            self.store.set(&key, until);
        }
    }

    fn closure_key(&self, id: u32, class: &str) -> String {
        self.key(id, &format!("{class}:rate_limited_until"))
    }

    /// A 429 closes the upstream to `class` until `now + wait`.
    pub fn rate_limited(&self, id: u32, class: &str, now: u64, wait_ms: u64) {
        self.raise(self.closure_key(id, class), now.saturating_add(wait_ms));
    }

    /// A 529 marks the upstream overloaded for `wait_ms` or the cool-down.
    pub fn overloaded(&self, id: u32, now: u64, wait_ms: Option<u64>) {
        let until = now.saturating_add(wait_ms.unwrap_or(OVERLOAD_COOLDOWN_MS));
        self.raise(self.key(id, "overloaded_until"), until);
    }

    /// Charges an attempt to upstream `id`'s current window for `class`,
    /// and drops the window before the previous one.
    pub fn charge(&self, id: u32, class: &str, now: u64, charges: &[Charge]) {
        let start = window(now);
        for c in charges.iter().filter(|c| c.scope == LimitScope::Upstream) {
            let Some(label) = kind_label(c.kind) else {
                continue;
            };
            let key = self.window_key(id, class, start, label);
            let used = self.store.get(&key).unwrap_or(0);
            self.store
                .set(&key, used.saturating_add(u64::from(c.amount)));
            if let Some(old) = start.checked_sub(2 * WINDOW_MS) {
                self.store.delete(&self.window_key(id, class, old, label));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_upstreams;

    #[test]
    fn charges_fill_the_window_and_show_as_budgets() {
        let ups = parse_upstreams("a=http://a,b=http://b").unwrap();
        let limits = Limits {
            requests: Some(2),
            input_tokens: Some(100),
            ramp_percent: 50,
        };
        let s = State::new(Box::<Local>::default(), &ups, limits);
        let now = 120_500;
        let charges = [
            Charge {
                scope: LimitScope::Upstream,
                kind: LimitKind::Requests,
                amount: 1,
            },
            Charge {
                scope: LimitScope::Upstream,
                kind: LimitKind::InputTokens,
                amount: 30,
            },
            Charge {
                scope: LimitScope::Client,
                kind: LimitKind::Requests,
                amount: 1,
            },
        ];
        s.charge(0, "sonnet", now, &charges);
        s.charge(0, "sonnet", now, &charges);
        let v = s.view(now, "sonnet");
        assert_eq!(v[0].budgets[0].remaining, 0);
        assert_eq!(v[0].budgets[0].reset_at, Some(180_000));
        assert_eq!(v[0].budgets[1].remaining, 40);
        assert_eq!(v[1].budgets[0].remaining, 2, "another upstream's window");
        let haiku = s.view(now, "haiku");
        assert_eq!(haiku[0].budgets[0].remaining, 2, "another class's window");
        let later = s.view(180_000, "sonnet");
        assert_eq!(later[0].budgets[0].remaining, 2, "a new window");
    }

    #[test]
    fn limits_lapse_and_only_ever_extend() {
        let ups = parse_upstreams("a=http://a").unwrap();
        let s = State::new(Box::<Local>::default(), &ups, Limits::default());
        s.rate_limited(0, "sonnet", 1_000, 500);
        s.rate_limited(0, "sonnet", 1_000, 100);
        s.overloaded(0, 1_000, None);
        let v = s.view(1_200, "sonnet");
        assert_eq!(v[0].rate_limited_until, Some(1_500));
        assert_eq!(v[0].overloaded_until, Some(3_000));
        let haiku = s.view(1_200, "haiku");
        assert_eq!(haiku[0].rate_limited_until, None, "another class is open");
        assert_eq!(haiku[0].overloaded_until, Some(3_000), "overload is all");
        assert_eq!(s.view(5_000, "sonnet")[0].rate_limited_until, None);
    }

    /// A store that outlives the request, as Spin's key-value does.
    #[derive(Default)]
    struct Shared(Local);

    impl Store for Shared {
        fn get(&self, key: &str) -> Option<u64> {
            self.0.get(key)
        }
        fn set(&self, key: &str, value: u64) {
            self.0.set(key, value)
        }
        fn delete(&self, key: &str) {
            self.0.delete(key)
        }
        fn shared(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_window_after_an_unused_one_grants_the_ramps_share() {
        let ups = parse_upstreams("a=http://a").unwrap();
        let limits = Limits {
            requests: Some(10),
            input_tokens: None,
            ramp_percent: 50,
        };
        let s = State::new(Box::<Shared>::default(), &ups, limits);
        let one = [Charge {
            scope: LimitScope::Upstream,
            kind: LimitKind::Requests,
            amount: 1,
        }];
        let budget = |now| s.view(now, "sonnet")[0].budgets[0];
        assert_eq!(
            (budget(60_000).limit, budget(60_000).remaining),
            (5, 5),
            "after idle"
        );
        s.charge(0, "sonnet", 60_000, &one);
        assert_eq!(budget(60_500).remaining, 4);
        assert_eq!(budget(120_000).limit, 10, "the window after a used one");
        assert_eq!(budget(180_000).limit, 5, "idle again");
        let off = Limits {
            ramp_percent: 100,
            ..limits
        };
        let s = State::new(Box::<Shared>::default(), &ups, off);
        assert_eq!(s.view(60_000, "sonnet")[0].budgets[0].limit, 10);
        let local = State::new(Box::<Local>::default(), &ups, limits);
        assert_eq!(
            local.view(60_000, "sonnet")[0].budgets[0].limit,
            10,
            "an instance's own memory cannot tell idle"
        );
    }
}
