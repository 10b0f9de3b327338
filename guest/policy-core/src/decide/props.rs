//! Property tests: the rails hold for any input, and the decisions are
//! exactly the ones their documentation states.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::order;
use super::*;
use crate::types::{Budget, Circuit, Endpoint, Health, Method, ResponseFacts, UpstreamView};

const BASE: u64 = 1_800_000_000_000;

/// A timestamp: usually within two minutes of `BASE`, where `now` mostly
/// falls, so that waits of a few seconds or minutes are common; else
/// within a quarter hour, or extreme.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => BASE - 120_000..BASE + 120_000,
        2 => BASE - 1_000_000..BASE + 1_000_000,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// The host's clock: mostly within a minute of `BASE`, now and then
/// anywhere or extreme.
fn now() -> impl Strategy<Value = u64> {
    prop_oneof![
        16 => BASE - 60_000..BASE + 60_000,
        2 => BASE - 1_000_000..BASE + 1_000_000,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// When a request was received: mostly in the half minute before `BASE`.
fn received_at() -> impl Strategy<Value = u64> {
    prop_oneof![3 => BASE - 30_000..=BASE, 1 => time()]
}

/// The host's deadline for a request: mostly minutes after `BASE`.
fn deadline() -> impl Strategy<Value = u64> {
    prop_oneof![3 => BASE..BASE + 2_000_000, 1 => time()]
}

/// A delay or header value: usually plausible, sometimes huge.
fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..400_000, 1 => any::<u64>()]
}

/// A count of requests or tokens at every scale: none, one, a few, many,
/// and the extremes.
fn amount() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1u32),
        2u32..=100,
        101u32..=10_000_000,
        Just(u32::MAX),
        any::<u32>(),
    ]
}

/// The value `draw` picks within `low..=high`: `u64::MAX` picks `high`.
fn within(draw: u64, low: u64, high: u64) -> u64 {
    if draw == u64::MAX {
        high
    } else {
        low + draw % (high - low + 1)
    }
}

/// A draw for [`within`]: the low end, the high end, or anywhere.
fn draw() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()]
}

/// Milliseconds for a setting whose valid range is `1..=max`.
fn setting_ms(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(1u64),
        1 => 1..=1_000u64,
        4 => 1..=max,
        1 => Just(max),
    ]
}

/// A policy of either profile, configured over the whole valid range of
/// every key. A key left out keeps the profile's default; a key whose
/// bound depends on another (`backoff.base_ms <= backoff.cap_ms`,
/// `max_wait_ms <= deadline_ms`) is drawn within that bound.
fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(Profile::Standard), Just(Profile::Interactive)],
        option::of(1u32..=10),
        option::of(prop::sample::select(vec!["full", "equal", "decorrelated"])),
        option::of(setting_ms(600_000)),
        option::of(draw()),
        option::of(setting_ms(3_600_000)),
        option::of(setting_ms(86_400_000)),
        option::of(draw()),
        option::of(prop_oneof![Just(0.0f64), Just(1.0f64), 0.0..=1.0f64]),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(profile, attempts, jitter, cap, base, try_timeout, deadline, wait, share, client)| {
                let d = Settings::defaults(profile);
                let mut doc = serde_json::Map::new();
                let mut backoff = serde_json::Map::new();
                if let Some(jitter) = jitter {
                    backoff.insert("jitter".into(), jitter.into());
                }
                if let Some(cap) = cap {
                    backoff.insert("cap_ms".into(), cap.into());
                }
                let cap = cap.unwrap_or(d.cap_ms);
                // The default base must be set when it exceeds the cap.
                let base = base.or((d.base_ms > cap).then_some(u64::MAX));
                if let Some(base) = base {
                    let base = within(base, 1, cap);
                    backoff.insert("base_ms".into(), base.into());
                }
                if !backoff.is_empty() {
                    doc.insert("backoff".into(), backoff.into());
                }
                if let Some(n) = attempts {
                    doc.insert("max_attempts".into(), n.into());
                }
                if let Some(ms) = try_timeout {
                    doc.insert("try_timeout_ms".into(), ms.into());
                }
                if let Some(ms) = deadline {
                    doc.insert("deadline_ms".into(), ms.into());
                }
                let deadline = deadline.unwrap_or(d.deadline_ms);
                // The default wait must be set when it exceeds the deadline.
                let wait = wait.or((d.max_wait_ms > deadline).then_some(u64::MAX));
                if let Some(wait) = wait {
                    doc.insert("max_wait_ms".into(), within(wait, 0, deadline).into());
                }
                if let Some(share) = share {
                    doc.insert("output_reserve_share".into(), share.into());
                }
                if let Some(client) = client {
                    doc.insert("charge_client".into(), client.into());
                }
                let json = serde_json::Value::Object(doc).to_string();
                let mut p = Policy::new(profile);
                if let Err(e) = p.configure(&json) {
                    panic!("the generator's config {json} is refused: {e}");
                }
                p
            },
        )
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
        Method::Other,
    ])
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop::sample::select(vec![
        Endpoint::Messages,
        Endpoint::CountTokens,
        Endpoint::Models,
        Endpoint::Batches,
        Endpoint::Other,
    ])
}

fn request() -> impl Strategy<Value = RequestFacts> {
    (
        (
            any::<u64>(),
            method(),
            endpoint(),
            option::of("[a-z0-9.-]{0,12}"),
            any::<bool>(),
        ),
        (
            option::of(amount()),
            amount(),
            option::of("[a-z]{1,8}"),
            prop_oneof![Just(0u8), any::<u8>()],
            option::of(prop_oneof![0u32..4, any::<u32>()]),
        ),
        received_at(),
        deadline(),
    )
        .prop_map(
            |(
                (id, method, endpoint, model, stream),
                (max_tokens, est_input_tokens, client, priority, client_retry_count),
                received_at,
                deadline,
            )| RequestFacts {
                id,
                method,
                endpoint,
                model,
                stream,
                max_tokens,
                est_input_tokens,
                client,
                priority,
                client_retry_count,
                received_at,
                deadline,
            },
        )
}

/// How much of a budget is left, relative to its limit.
#[derive(Clone, Copy, Debug)]
enum Left {
    /// Nothing: exhausted.
    Nothing,
    /// One unit.
    One,
    /// All but one unit.
    AllButOne,
    /// All of it: untouched.
    All,
    /// Anywhere in `0..=limit`, drawn by the value.
    Part(u64),
    /// Any value at all, even above the limit (the host's word against the
    /// upstream's headers).
    Any(u32),
}

/// A budget of any kind, limit and spending: partly spent as often as
/// exhausted or untouched, with limits of every scale (0 for a capacity
/// the host does not know), a reset known or not.
fn budget() -> impl Strategy<Value = Budget> {
    (
        prop::sample::select(vec![
            LimitKind::Requests,
            LimitKind::InputTokens,
            LimitKind::OutputTokens,
            LimitKind::Concurrency,
        ]),
        amount(),
        prop_oneof![
            3 => Just(Left::Nothing),
            1 => Just(Left::One),
            1 => Just(Left::AllButOne),
            2 => Just(Left::All),
            4 => any::<u64>().prop_map(Left::Part),
            1 => any::<u32>().prop_map(Left::Any),
        ],
        option::of(time()),
    )
        .prop_map(|(kind, limit, left, reset_at)| {
            let remaining = match left {
                Left::Nothing => 0,
                Left::One => limit.min(1),
                Left::AllButOne => limit.saturating_sub(1),
                Left::All => limit,
                // Within 0..=limit, so it fits.
                Left::Part(draw) => within(draw, 0, u64::from(limit)) as u32,
                Left::Any(n) => n,
            };
            Budget {
                kind,
                remaining,
                limit,
                reset_at,
            }
        })
}

fn upstream() -> impl Strategy<Value = UpstreamView> {
    (
        (
            0u32..6,
            prop_oneof![4 => 0u8..3, 1 => any::<u8>()],
            prop_oneof![Just(0u16), 1u16..5, any::<u16>()],
        ),
        prop_oneof![
            1 => Just(Health::Unknown),
            3 => Just(Health::Healthy),
            1 => Just(Health::Unhealthy)
        ],
        prop_oneof![
            3 => Just(Circuit::Closed),
            1 => Just(Circuit::Open),
            1 => Just(Circuit::HalfOpen)
        ],
        prop_oneof![Just(0u32), 1u32..=8, any::<u32>()],
        option::weighted(0.3, time()),
        option::weighted(0.3, time()),
        vec(budget(), 0..4),
        option::of(prop_oneof![0u32..=10_000, any::<u32>()]),
        any::<bool>(),
    )
        .prop_map(
            |((id, group, weight), health, circuit, in_flight, rl, ov, budgets, ttfb_ms, slow)| {
                UpstreamView {
                    id,
                    group,
                    weight,
                    health,
                    circuit,
                    in_flight,
                    rate_limited_until: rl,
                    overloaded_until: ov,
                    budgets,
                    ttfb_ms,
                    slow,
                }
            },
        )
}

fn view() -> impl Strategy<Value = View> {
    (
        now(),
        any::<u64>(),
        prop_oneof![1 => Just(vec![]), 6 => vec(upstream(), 1..6)],
        prop::bool::weighted(0.8),
    )
        .prop_map(|(now, random, upstreams, retry_budget)| View {
            now,
            random,
            upstreams,
            retry_budget,
        })
}

/// Every `error.type` the contract names.
fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop::sample::select(vec![
        ErrorKind::InvalidRequest,
        ErrorKind::Authentication,
        ErrorKind::Billing,
        ErrorKind::Permission,
        ErrorKind::NotFound,
        ErrorKind::RequestTooLarge,
        ErrorKind::RateLimit,
        ErrorKind::ApiError,
        ErrorKind::TimeoutError,
        ErrorKind::Overloaded,
        ErrorKind::Other,
    ])
}

fn outcome() -> impl Strategy<Value = Outcome> {
    let status = prop_oneof![
        prop::sample::select(vec![
            200u16, 400, 401, 402, 403, 404, 408, 409, 413, 429, 500, 502, 503, 504, 529,
        ]),
        100u16..600,
        any::<u16>(),
    ];
    let response = (
        status,
        option::of(any::<bool>()),
        option::of(millis()),
        option::of(millis()),
        option::of(error_kind()),
        prop::bool::weighted(0.1),
        prop_oneof![0u32..=600_000, any::<u32>()],
    )
        .prop_map(
            |(status, should_retry, ms, secs, error, spend_cap, elapsed_ms)| {
                Outcome::Response(ResponseFacts {
                    status,
                    should_retry,
                    retry_after_ms: ms,
                    retry_after: secs,
                    error,
                    spend_cap,
                    elapsed_ms,
                })
            },
        );
    let failure = prop::sample::select(vec![
        FailureKind::Dns,
        FailureKind::Connect,
        FailureKind::Tls,
        FailureKind::Proxy,
        FailureKind::Timeout,
        FailureKind::Reset,
    ])
    .prop_map(Outcome::Failure);
    prop_oneof![3 => response, 1 => failure]
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (
        prop_oneof![4 => 0u32..3, 2 => 0u32..10, 1 => any::<u32>()],
        0u32..7,
        millis(),
        outcome(),
    )
        .prop_map(|(number, upstream, prev_delay_ms, outcome)| Attempt {
            number,
            upstream,
            prev_delay_ms,
            outcome,
        })
}

/// A view, the plan's order and an attempt. The order is usually the
/// plan's (the view's ids, or some of them, shuffled), sometimes any ids;
/// the attempt usually went to an upstream of the order.
fn situation() -> impl Strategy<Value = (View, Vec<u32>, Attempt)> {
    view()
        .prop_flat_map(|view| {
            let ids: Vec<u32> = view.upstreams.iter().map(|u| u.id).collect();
            let n = ids.len();
            let order = prop_oneof![
                3 => Just(ids.clone()).prop_shuffle(),
                1 => prop::sample::subsequence(ids, 0..=n).prop_shuffle(),
                1 => vec(0u32..7, 0..6),
            ];
            let sent_to = option::weighted(0.8, any::<prop::sample::Index>());
            (Just(view), order, attempt(), sent_to)
        })
        .prop_map(|(view, order, mut attempt, sent_to)| {
            if let (Some(i), false) = (sent_to, order.is_empty()) {
                attempt.upstream = *i.get(&order);
            }
            (view, order, attempt)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn on_outcome_keeps_every_rail(
        p in policy(),
        req in request(),
        (view, order, attempt) in situation(),
    ) {
        let step = p.on_outcome(&req, &order, &attempt, &view);
        prop_assert_eq!(step, p.on_outcome(&req, &order, &attempt, &view));
        let NextStep::Retry(r) = step else { return Ok(()) };
        let s = p.settings();
        prop_assert!(view.now.saturating_add(r.delay_ms) < p.deadline(&req));
        prop_assert!(attempt.number.saturating_add(1) < s.max_attempts);
        prop_assert!(view.retry_budget);
        prop_assert!(view.upstreams.iter().any(|u| u.id == r.upstream));
        if r.upstream != attempt.upstream {
            // A failover goes to an upstream of the plan that can take it now.
            prop_assert!(order.contains(&r.upstream));
            prop_assert!(reference::available(&view, r.upstream));
        }
        match attempt.outcome {
            Outcome::Response(f) => {
                prop_assert!(f.status >= 400 && !f.spend_cap && f.should_retry != Some(false));
                let retryable = matches!(f.status, 408 | 409 | 429) || f.status >= 500;
                prop_assert!(retryable || f.should_retry == Some(true));
                prop_assert!(r.delay_ms <= s.cap_ms.max(s.max_wait_ms));
            }
            Outcome::Failure(kind) => {
                prop_assert!(r.delay_ms <= s.cap_ms);
                if kind == FailureKind::Tls {
                    prop_assert_ne!(r.upstream, attempt.upstream);
                }
            }
        }
    }

    #[test]
    fn on_request_plans_only_known_distinct_upstreams(
        p in policy(),
        req in request(),
        view in view(),
    ) {
        let admission = p.on_request(&req, &view);
        prop_assert_eq!(&admission, &p.on_request(&req, &view));
        let any_available = view.upstreams.iter().any(|u| reference::available(&view, u.id));
        match admission {
            Admission::Admit(plan) => {
                if any_available {
                    prop_assert!(reference::available(&view, plan.upstreams[0]));
                }
                prop_assert!(plan.deadline <= req.deadline);
                prop_assert!(view.now < plan.deadline);
                prop_assert!(plan.try_timeout_ms >= 1);
                prop_assert!(plan.try_timeout_ms <= p.settings().try_timeout_ms);
                prop_assert!(!plan.upstreams.is_empty());
                for (i, id) in plan.upstreams.iter().enumerate() {
                    prop_assert!(view.upstreams.iter().any(|u| u.id == *id));
                    prop_assert!(!plan.upstreams[..i].contains(id));
                }
                let mut distinct: Vec<u32> = view.upstreams.iter().map(|u| u.id).collect();
                distinct.sort_unstable();
                distinct.dedup();
                let all_open = view.upstreams.iter().all(|u| u.circuit == Circuit::Open);
                if all_open {
                    prop_assert_eq!(plan.upstreams.len(), distinct.len());
                }
                prop_assert!(plan.charges.iter().all(|c| c.amount > 0));
            }
            Admission::Queue(at) => {
                prop_assert!(!any_available);
                prop_assert!(view.now < at && at < p.deadline(&req));
                prop_assert!(at - view.now <= p.settings().max_wait_ms);
            }
            Admission::Reject(r) => {
                prop_assert!(matches!(r.status, 429 | 503 | 504));
                prop_assert_eq!(r.should_retry, r.retry_after_ms.is_some());
            }
        }
    }

    #[test]
    fn on_outcome_follows_its_documented_rules(
        p in policy(),
        req in request(),
        (view, order, attempt) in situation(),
    ) {
        prop_assert_eq!(
            p.on_outcome(&req, &order, &attempt, &view),
            reference::on_outcome(p.settings(), &req, &order, &attempt, &view)
        );
    }

    #[test]
    fn on_request_follows_its_documented_rules(
        p in policy(),
        req in request(),
        view in view(),
    ) {
        let mut admission = p.on_request(&req, &view);
        if let Admission::Reject(r) = &mut admission {
            prop_assert!(!r.message.is_empty());
            r.message.clear();
        }
        prop_assert_eq!(admission, reference::on_request(p.settings(), &req, &view));
    }
}

/// The decisions as their documentation states them, written apart from
/// the code under test (it shares only [`backoff::delay_ms`], which has
/// tests of its own): the reference the policy must match exactly.
///
/// The ranking is as it was first written (a vector per tier, sorted and
/// shuffled tier by tier), the reference for the allocation-free
/// [`order::rank`].
mod reference {
    use super::order::{Ranking, Standing};
    use crate::backoff::{self, mix64};
    use crate::config::Settings;
    use crate::types::{
        Admission, Attempt, Charge, Circuit, Endpoint, ErrorKind, FailureKind, GiveUp, Health,
        LimitKind, LimitScope, Method, NextStep, Outcome, Plan, Rejection, RequestFacts, Retry,
        TimestampMs, UpstreamView, View,
    };

    /// Where `u` stands at `now`, as the contract describes it. An open
    /// circuit rules it out, then failing health checks. Otherwise it is
    /// rate-limited while a 429's `retry-after` holds or while a requests
    /// budget with nothing left waits for a known reset, overloaded while a
    /// 529 holds, and free when each of these has lapsed. Nothing else
    /// takes it out: not requests in flight, its TTFB, a budget of another
    /// kind, a budget partly spent, or a half-open circuit.
    pub(super) fn standing(u: &UpstreamView, now: TimestampMs) -> Standing {
        if u.circuit == Circuit::Open {
            return Standing::Open;
        }
        if u.health == Health::Unhealthy {
            return Standing::Unhealthy;
        }
        let spent_until = u
            .budgets
            .iter()
            .filter(|b| b.kind == LimitKind::Requests && b.remaining == 0)
            .filter_map(|b| b.reset_at);
        let limited = (u.rate_limited_until.into_iter().chain(spent_until))
            .filter(|&t| t > now)
            .max();
        let overloaded = u.overloaded_until.filter(|&t| t > now);
        match (limited, overloaded) {
            (None, None) => Standing::Available,
            (None, Some(until)) => Standing::Overloaded { until },
            (Some(limited), overloaded) => Standing::RateLimited {
                until: overloaded.map_or(limited, |o| o.max(limited)),
            },
        }
    }

    /// The view's upstreams, each id once (the first, should it repeat).
    fn distinct(view: &View) -> Vec<&UpstreamView> {
        let mut seen: Vec<&UpstreamView> = Vec::new();
        for u in &view.upstreams {
            if seen.iter().all(|s| s.id != u.id) {
                seen.push(u);
            }
        }
        seen
    }

    /// Whether the view's upstream `id` can take a request now.
    pub(super) fn available(view: &View, id: u32) -> bool {
        distinct(view)
            .into_iter()
            .any(|u| u.id == id && standing(u, view.now) == Standing::Available)
    }

    /// The request's deadline: the host's, or `deadline_ms` after receipt,
    /// whichever is earlier.
    fn deadline(s: &Settings, req: &RequestFacts) -> TimestampMs {
        req.deadline
            .min(req.received_at.saturating_add(s.deadline_ms))
    }

    /// The next upstream after `failed` in `order` (from the start when it
    /// is not there), wrapping around, that is not `failed` and is
    /// available now.
    fn next_available(order: &[u32], failed: u32, view: &View) -> Option<u32> {
        let after = order
            .iter()
            .position(|&id| id == failed)
            .map_or(0, |i| i + 1);
        (order[after..].iter().chain(&order[..after]))
            .copied()
            .find(|&id| id != failed && available(view, id))
    }

    /// What follows `attempt`, by the rules on `Policy::on_outcome`.
    pub(super) fn on_outcome(
        s: &Settings,
        req: &RequestFacts,
        order: &[u32],
        attempt: &Attempt,
        view: &View,
    ) -> NextStep {
        let fail = |should_retry, retry_after_ms| {
            NextStep::Fail(GiveUp {
                should_retry,
                retry_after_ms,
            })
        };
        // Stopping early: a header's wait tells the client when to retry.
        let give_up = |header: Option<u64>| fail(header.is_some(), header);
        let retry = |upstream, delay_ms| NextStep::Retry(Retry { upstream, delay_ms });
        let (header, at_once) = match attempt.outcome {
            Outcome::Response(r) => {
                if r.status < 400 {
                    return NextStep::Deliver;
                }
                if r.spend_cap || r.should_retry == Some(false) {
                    return fail(false, None);
                }
                let retryable = r.should_retry == Some(true)
                    || matches!(r.status, 408 | 409 | 429 | 500..=u16::MAX);
                if !retryable {
                    return NextStep::Deliver;
                }
                // `retry-after-ms`, else `retry-after`; 0 gives no wait.
                let header = [r.retry_after_ms, r.retry_after]
                    .into_iter()
                    .flatten()
                    .find(|&ms| ms > 0);
                // A 429 or a 529, by status or by error body, fails over
                // at once; any other error only after a backoff.
                let at_once = matches!(r.status, 429 | 529)
                    || matches!(r.error, Some(ErrorKind::RateLimit | ErrorKind::Overloaded));
                (header, at_once)
            }
            // So does a network failure, at whatever layer.
            Outcome::Failure(_) => (None, true),
        };
        // Out of attempts or retry budget: the header is passed on, but
        // levee has spent its retries.
        if u64::from(attempt.number) + 1 >= u64::from(s.max_attempts) || !view.retry_budget {
            return fail(false, header);
        }
        let deadline = deadline(s, req);
        let alternative = next_available(order, attempt.upstream, view);
        if let (Some(alt), true) = (alternative, at_once) {
            return if view.now < deadline {
                retry(alt, 0)
            } else {
                give_up(header)
            };
        }
        if attempt.outcome == Outcome::Failure(FailureKind::Tls) {
            // Never the same upstream again, and there is no other.
            return fail(false, None);
        }
        // Another upstream after a backoff (the failed one's header does
        // not bind it), else the same one after its header or a backoff.
        let (target, wait) = match alternative {
            Some(alt) => (alt, None),
            None if view.upstreams.iter().any(|u| u.id == attempt.upstream) => {
                (attempt.upstream, header)
            }
            None => return give_up(header),
        };
        let delay = match wait {
            Some(ms) if ms > s.max_wait_ms => return give_up(header),
            Some(ms) => ms,
            None => backoff::delay_ms(
                s.jitter,
                s.base_ms,
                s.cap_ms,
                attempt.number,
                attempt.prev_delay_ms,
                view.random,
            ),
        };
        if view.now.saturating_add(delay) >= deadline {
            return give_up(header);
        }
        retry(target, delay)
    }

    /// The answer to a new request, by the rules on `Policy::on_request`,
    /// with a rejection's message left empty.
    pub(super) fn on_request(s: &Settings, req: &RequestFacts, view: &View) -> Admission {
        let reject = |status, error_type: &str, retry_after_ms: Option<u64>| {
            Admission::Reject(Rejection {
                status,
                error_type: error_type.to_owned(),
                message: String::new(),
                retry_after_ms,
                should_retry: retry_after_ms.is_some(),
            })
        };
        let deadline = deadline(s, req);
        if view.now >= deadline {
            return reject(504, "timeout_error", None);
        }
        if view.upstreams.is_empty() {
            return reject(503, "api_error", None);
        }
        let standings: Vec<Standing> = distinct(view)
            .into_iter()
            .map(|u| standing(u, view.now))
            .collect();
        let free_at = (standings.iter())
            .filter_map(|s| match *s {
                Standing::Overloaded { until } | Standing::RateLimited { until } => Some(until),
                _ => None,
            })
            .min();
        if let (false, Some(at)) = (standings.contains(&Standing::Available), free_at) {
            let wait = at - view.now;
            if at < deadline && wait <= s.max_wait_ms {
                return Admission::Queue(at);
            }
            return reject(429, "rate_limit_error", Some(wait));
        }
        let left = deadline - view.now;
        Admission::Admit(Plan {
            upstreams: rank(view).order,
            try_timeout_ms: if left < u64::from(s.try_timeout_ms) {
                left as u32
            } else {
                s.try_timeout_ms
            },
            deadline,
            charges: charges(s, req),
        })
    }

    /// One request, one concurrency slot, the estimated input tokens and
    /// `output_reserve_share` of `max_tokens` rounded up: for the upstream
    /// and, when `charge_client` and the request names a client, for the
    /// client too. Amounts of 0 are left out.
    fn charges(s: &Settings, req: &RequestFacts) -> Vec<Charge> {
        let post = req.method == Method::Post;
        let generating =
            post && (req.endpoint == Endpoint::Messages || req.endpoint == Endpoint::Other);
        // count_tokens and batches: a request, no tokens.
        let counted =
            post && (req.endpoint == Endpoint::CountTokens || req.endpoint == Endpoint::Batches);
        if !generating && !counted {
            return Vec::new();
        }
        let output = match req.max_tokens {
            Some(m) if generating => (f64::from(m) * s.output_reserve_share).ceil() as u32,
            _ => 0,
        };
        let input = if generating { req.est_input_tokens } else { 0 };
        let mut scopes = vec![LimitScope::Upstream];
        if s.charge_client && req.client.is_some() {
            scopes.push(LimitScope::Client);
        }
        let mut charges = Vec::new();
        for scope in scopes {
            for (kind, amount) in [
                (LimitKind::Requests, 1),
                (LimitKind::Concurrency, 1),
                (LimitKind::InputTokens, input),
                (LimitKind::OutputTokens, output),
            ] {
                if amount > 0 {
                    charges.push(Charge {
                        scope,
                        kind,
                        amount,
                    });
                }
            }
        }
        charges
    }

    /// Ranks the view's upstreams at `view.now`.
    ///
    /// Each tier is ordered by group (lowest first), non-slow before slow, then
    /// in a weighted random order drawn from `view.random` (weight 0 last).
    /// Rate-limited and overloaded upstreams instead sort by when they are
    /// free, then by group.
    pub(super) fn rank(view: &View) -> Ranking {
        let mut seen = Vec::with_capacity(view.upstreams.len());
        let mut available = Vec::new();
        let mut overloaded = Vec::new();
        let mut limited = Vec::new();
        let mut unhealthy = Vec::new();
        let mut open = Vec::new();
        for u in &view.upstreams {
            if seen.contains(&u.id) {
                continue;
            }
            seen.push(u.id);
            match standing(u, view.now) {
                Standing::Available => available.push(u),
                Standing::Overloaded { until } => overloaded.push((until, u)),
                Standing::RateLimited { until } => limited.push((until, u)),
                Standing::Unhealthy => unhealthy.push(u),
                Standing::Open => open.push(u),
            }
        }
        let soonest = overloaded.iter().chain(&limited).map(|&(t, _)| t).min();
        let any_available = !available.is_empty();
        let mut draws = Draws(view.random);
        let mut order = Vec::with_capacity(seen.len());
        if open.len() == seen.len() {
            order.extend(arrange(open, &mut draws));
        } else {
            order.extend(arrange(available, &mut draws));
            for mut tier in [overloaded, limited] {
                tier.sort_by_key(|&(until, u)| (until, u.group));
                order.extend(tier.iter().map(|(_, u)| u.id));
            }
            order.extend(arrange(unhealthy, &mut draws));
        }
        Ranking {
            order,
            any_available,
            soonest,
        }
    }

    /// Orders one tier: by group, non-slow first, then weighted random.
    fn arrange(mut tier: Vec<&UpstreamView>, draws: &mut Draws) -> Vec<u32> {
        tier.sort_by_key(|u| (u.group, u.slow));
        let mut order = Vec::with_capacity(tier.len());
        for run in tier.chunk_by(|a, b| (a.group, a.slow) == (b.group, b.slow)) {
            weighted_shuffle(run, draws, &mut order);
        }
        order
    }

    /// Appends `run`'s ids in weighted random order without replacement: each
    /// pick has probability proportional to weight among those left. Weight-0
    /// upstreams follow in their given order.
    fn weighted_shuffle(run: &[&UpstreamView], draws: &mut Draws, out: &mut Vec<u32>) {
        let mut left: Vec<&UpstreamView> = run.iter().copied().filter(|u| u.weight > 0).collect();
        while !left.is_empty() {
            let total: u64 = left.iter().map(|u| u64::from(u.weight)).sum();
            let mut point = draws.below(total);
            let mut pick = left.len() - 1;
            for (i, u) in left.iter().enumerate() {
                let w = u64::from(u.weight);
                if point < w {
                    pick = i;
                    break;
                }
                point -= w;
            }
            out.push(left.remove(pick).id);
        }
        out.extend(run.iter().filter(|u| u.weight == 0).map(|u| u.id));
    }

    /// A deterministic stream of draws derived from one random value
    /// (splitmix64).
    struct Draws(u64);

    impl Draws {
        /// A draw from `0..n` (`n > 0`).
        fn below(&mut self, n: u64) -> u64 {
            let x = mix64(self.0);
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            ((u128::from(x) * u128::from(n)) >> 64) as u64
        }
    }
}

/// Views of up to 24 upstreams with few distinct ids, groups and weights,
/// so that ties, repeats, weight 0 and the heap-allocated scratch path all
/// occur.
fn crowded_view() -> impl Strategy<Value = View> {
    let upstream = (
        upstream(),
        0u32..30,
        prop_oneof![Just(0u16), 1u16..4, any::<u16>()],
    )
        .prop_map(|(mut u, id, weight)| {
            u.id = id;
            u.weight = weight;
            u
        });
    (time(), any::<u64>(), vec(upstream, 0..25)).prop_map(|(now, random, upstreams)| View {
        now,
        random,
        upstreams,
        retry_budget: true,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn rank_matches_the_reference(view in prop_oneof![view(), crowded_view()]) {
        let (new, old) = (order::rank(&view), reference::rank(&view));
        prop_assert_eq!(&new.order, &old.order);
        prop_assert_eq!(new.any_available, old.any_available);
        prop_assert_eq!(new.soonest, old.soonest);
    }
}

/// The properties are only as good as what their generators reach: every
/// kind of decision, and each input dimension's unusual values, must come
/// up in a good share of the draws.
#[test]
fn generators_reach_every_decision_and_dimension() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    const DRAWS: u32 = 2_000;
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut count = |what: String| *seen.entry(what).or_default() += 1;
    for _ in 0..DRAWS {
        let (p, req, (view, order, attempt)) = (policy(), request(), situation())
            .new_tree(&mut runner)
            .unwrap()
            .current();
        count(match p.on_outcome(&req, &order, &attempt, &view) {
            NextStep::Deliver => "step: deliver".into(),
            NextStep::Fail(g) if g.should_retry => "step: give up, retry later".into(),
            NextStep::Fail(g) if g.retry_after_ms.is_some() => "step: fail with a header".into(),
            NextStep::Fail(_) => "step: fail".into(),
            NextStep::Retry(r) if r.upstream == attempt.upstream => "step: retry the same".into(),
            NextStep::Retry(r) if r.delay_ms == 0 => "step: fail over at once".into(),
            NextStep::Retry(_) => "step: fail over after a backoff".into(),
        });
        count(match p.on_request(&req, &view) {
            Admission::Admit(_) => "admission: admit".into(),
            Admission::Queue(_) => "admission: queue".into(),
            Admission::Reject(r) => format!("admission: reject {}", r.status),
        });
        match attempt.outcome {
            Outcome::Response(r) => count(format!("error: {:?}", r.error)),
            Outcome::Failure(kind) => count(format!("failure: {kind:?}")),
        }
        for u in &view.upstreams {
            if u.in_flight > 0 {
                count("upstream: requests in flight".into());
            }
            count(format!("upstream: ttfb known {}", u.ttfb_ms.is_some()));
            for b in &u.budgets {
                if 0 < b.remaining && b.remaining < b.limit {
                    count(format!("budget: {:?} partly spent", b.kind));
                }
            }
        }
    }
    let steps = [
        "deliver",
        "give up, retry later",
        "fail with a header",
        "fail",
        "retry the same",
        "fail over at once",
        "fail over after a backoff",
    ];
    let admissions = ["admit", "queue", "reject 429", "reject 503", "reject 504"];
    let errors = [
        "None",
        "Some(InvalidRequest)",
        "Some(Authentication)",
        "Some(Billing)",
        "Some(Permission)",
        "Some(NotFound)",
        "Some(RequestTooLarge)",
        "Some(RateLimit)",
        "Some(ApiError)",
        "Some(TimeoutError)",
        "Some(Overloaded)",
        "Some(Other)",
    ];
    let failures = ["Dns", "Connect", "Tls", "Proxy", "Timeout", "Reset"];
    let kinds = ["Requests", "InputTokens", "OutputTokens", "Concurrency"];
    let wanted = (steps.iter().map(|s| format!("step: {s}")))
        .chain(admissions.iter().map(|a| format!("admission: {a}")))
        .chain(errors.iter().map(|e| format!("error: {e}")))
        .chain(failures.iter().map(|f| format!("failure: {f}")))
        .chain(kinds.iter().map(|k| format!("budget: {k} partly spent")))
        .chain(["upstream: requests in flight".into()])
        .chain(["upstream: ttfb known true".into()])
        .chain(["upstream: ttfb known false".into()]);
    for what in wanted {
        let n = seen.get(&what).copied().unwrap_or(0);
        assert!(n >= DRAWS / 100, "{what}: {n} of {DRAWS} draws; {seen:#?}");
    }
}
