//! Property tests: the rails hold for any input.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::order;
use super::*;
use crate::types::{Budget, Circuit, Endpoint, Health, Method, ResponseFacts, UpstreamView};

const BASE: u64 = 1_800_000_000_000;

/// A timestamp: usually near `BASE`, sometimes extreme.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => BASE - 1_000_000..BASE + 1_000_000,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// A delay or header value: usually plausible, sometimes huge.
fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..400_000, 1 => any::<u64>()]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(Profile::Standard), Just(Profile::Interactive)],
        option::of(1u32..=10),
        prop_oneof![Just("full"), Just("equal"), Just("decorrelated")],
    )
        .prop_map(|(profile, attempts, jitter)| {
            let mut p = Policy::new(profile);
            let attempts = attempts.map_or(String::new(), |n| format!(r#""max_attempts":{n},"#));
            p.configure(&format!(
                r#"{{{attempts}"backoff":{{"jitter":"{jitter}"}}}}"#
            ))
            .unwrap();
            p
        })
}

fn request() -> impl Strategy<Value = RequestFacts> {
    (
        option::of(any::<u32>()),
        any::<u32>(),
        option::of("[a-z]{1,8}"),
        time(),
        time(),
    )
        .prop_map(
            |(max_tokens, est, client, received_at, deadline)| RequestFacts {
                id: 7,
                method: Method::Post,
                endpoint: Endpoint::Messages,
                model: Some("m".to_owned()),
                stream: true,
                max_tokens,
                est_input_tokens: est,
                client,
                priority: 0,
                client_retry_count: None,
                received_at,
                deadline,
            },
        )
}

fn budget() -> impl Strategy<Value = Budget> {
    (
        prop_oneof![
            Just(LimitKind::Requests),
            Just(LimitKind::InputTokens),
            Just(LimitKind::OutputTokens),
            Just(LimitKind::Concurrency),
        ],
        prop_oneof![Just(0u32), any::<u32>()],
        option::of(time()),
    )
        .prop_map(|(kind, remaining, reset_at)| Budget {
            kind,
            remaining,
            limit: remaining,
            reset_at,
        })
}

fn upstream() -> impl Strategy<Value = UpstreamView> {
    (
        (
            0u32..6,
            0u8..3,
            prop_oneof![Just(0u16), 1u16..5, any::<u16>()],
        ),
        prop_oneof![
            Just(Health::Unknown),
            Just(Health::Healthy),
            Just(Health::Unhealthy)
        ],
        prop_oneof![
            Just(Circuit::Closed),
            Just(Circuit::Open),
            Just(Circuit::HalfOpen)
        ],
        option::of(time()),
        option::of(time()),
        vec(budget(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |((id, group, weight), health, circuit, rl, ov, budgets, slow)| UpstreamView {
                id,
                group,
                weight,
                health,
                circuit,
                in_flight: 0,
                rate_limited_until: rl,
                overloaded_until: ov,
                budgets,
                ttfb_ms: None,
                slow,
            },
        )
}

fn view() -> impl Strategy<Value = View> {
    (time(), any::<u64>(), vec(upstream(), 0..5), any::<bool>()).prop_map(
        |(now, random, upstreams, retry_budget)| View {
            now,
            random,
            upstreams,
            retry_budget,
        },
    )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    let status = prop_oneof![
        prop::sample::select(vec![
            200u16, 400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503, 504, 529,
        ]),
        100u16..600,
        any::<u16>(),
    ];
    let response = (
        status,
        option::of(any::<bool>()),
        option::of(millis()),
        option::of(millis()),
        option::of(Just(ErrorKind::RateLimit)),
        any::<bool>(),
    )
        .prop_map(|(status, should_retry, ms, secs, error, spend_cap)| {
            Outcome::Response(ResponseFacts {
                status,
                should_retry,
                retry_after_ms: ms,
                retry_after: secs,
                error,
                spend_cap,
                elapsed_ms: 1,
            })
        });
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
        prop_oneof![0u32..13, any::<u32>()],
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn on_outcome_keeps_every_rail(
        p in policy(),
        req in request(),
        order in vec(0u32..7, 0..6),
        attempt in attempt(),
        view in view(),
    ) {
        let step = p.on_outcome(&req, &order, &attempt, &view);
        prop_assert_eq!(step, p.on_outcome(&req, &order, &attempt, &view));
        let NextStep::Retry(r) = step else { return Ok(()) };
        let s = p.settings();
        prop_assert!(view.now.saturating_add(r.delay_ms) < p.deadline(&req));
        prop_assert!(attempt.number.saturating_add(1) < s.max_attempts);
        prop_assert!(view.retry_budget);
        prop_assert!(view.upstreams.iter().any(|u| u.id == r.upstream));
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
        match admission {
            Admission::Admit(plan) => {
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
                prop_assert!(view.now < at && at < p.deadline(&req));
                prop_assert!(at - view.now <= p.settings().max_wait_ms);
            }
            Admission::Reject(r) => {
                prop_assert!(matches!(r.status, 429 | 503 | 504));
                prop_assert_eq!(r.should_retry, r.retry_after_ms.is_some());
            }
        }
    }
}

/// The ranking as it was first written (a vector per tier, sorted and
/// shuffled tier by tier): the reference that the allocation-free
/// [`order::rank`] must match exactly.
mod reference {
    use super::order::{Ranking, Standing, standing};
    use crate::backoff::mix64;
    use crate::types::{UpstreamView, View};

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
