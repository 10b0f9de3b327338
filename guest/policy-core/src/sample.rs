//! Seeded generators of decision inputs, for differential tests (the same
//! cases through the native core and through a wasm component must give
//! the same answers) and for benchmarks.
//!
//! [`Sampler::case`] covers the input space densely, odd corners included;
//! [`Sampler::typical`] gives the realistic common case.

use crate::backoff::mix64;
use crate::types::{
    Attempt, Budget, Circuit, Endpoint, ErrorKind, FailureKind, Health, LimitKind, Method, Outcome,
    RequestFacts, ResponseFacts, UpstreamView, View,
};

/// A moment near which sampled clocks sit (2027-01-15T08:00:00Z).
const EPOCH: u64 = 1_800_000_000_000;

/// Statuses the API documents, sampled more often than the rest.
const STATUSES: [u16; 14] = [
    200, 400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503, 504, 529,
];

const FAILURES: [FailureKind; 6] = [
    FailureKind::Dns,
    FailureKind::Connect,
    FailureKind::Tls,
    FailureKind::Proxy,
    FailureKind::Timeout,
    FailureKind::Reset,
];

const ERRORS: [ErrorKind; 11] = [
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
];

const METHODS: [Method; 8] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Patch,
    Method::Delete,
    Method::Options,
    Method::Other,
];

const ENDPOINTS: [Endpoint; 5] = [
    Endpoint::Messages,
    Endpoint::CountTokens,
    Endpoint::Models,
    Endpoint::Batches,
    Endpoint::Other,
];

const LIMITS: [LimitKind; 4] = [
    LimitKind::Requests,
    LimitKind::InputTokens,
    LimitKind::OutputTokens,
    LimitKind::Concurrency,
];

/// One complete set of decision inputs: what `on_request` takes (`req`,
/// `view`) and what `on_outcome` takes (all four).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The client request.
    pub req: RequestFacts,
    /// The plan's upstream order.
    pub order: Vec<u32>,
    /// The finished attempt.
    pub attempt: Attempt,
    /// The host's view of the world.
    pub view: View,
}

/// A deterministic generator (splitmix64): the same seed gives the same
/// cases on every platform.
#[derive(Clone, Debug)]
pub struct Sampler {
    state: u64,
}

impl Sampler {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Sampler {
        Sampler { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = mix64(self.state);
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// A draw from `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A uniformly chosen element.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A clock reading: usually near [`EPOCH`], sometimes extreme.
    fn time(&mut self) -> u64 {
        match self.below(20) {
            0 => 0,
            1 => u64::MAX,
            2 => self.next_u64(),
            _ => EPOCH - 600_000 + self.below(1_200_000),
        }
    }

    /// A time relative to `now`: past, just now, soon, later, or extreme.
    fn around(&mut self, now: u64) -> u64 {
        match self.below(8) {
            0 => now.saturating_sub(self.below(100_000)),
            1 => now,
            2 | 3 => now.saturating_add(1 + self.below(5_000)),
            4 | 5 => now.saturating_add(self.below(1_000_000)),
            6 => now.saturating_add(self.below(200_000_000)),
            _ => self.time(),
        }
    }

    /// A header value in milliseconds: zero, small, large or absurd.
    fn header(&mut self) -> Option<u64> {
        match self.below(6) {
            0 | 1 => None,
            2 => Some(0),
            3 => Some(self.below(10_000)),
            4 => Some(self.below(1_000_000)),
            _ => Some(self.next_u64()),
        }
    }

    /// `None`, `Some(false)` or `Some(true)`.
    fn tri(&mut self) -> Option<bool> {
        self.pick(&[None, None, Some(false), Some(true)])
    }

    /// Optional short text.
    fn text(&mut self, prefix: &str) -> Option<String> {
        self.chance(70)
            .then(|| format!("{prefix}-{}", self.below(1000)))
    }

    /// A densely varied case, odd corners included.
    pub fn case(&mut self) -> Case {
        let now = self.time();
        let received_at = self.around(now).min(now);
        let req = RequestFacts {
            id: self.next_u64(),
            method: self.pick(&METHODS),
            endpoint: self.pick(&ENDPOINTS),
            model: self.text("claude"),
            stream: self.chance(50),
            max_tokens: self
                .chance(80)
                .then(|| self.pick(&[0, 1, 1024, 64_000, u32::MAX])),
            est_input_tokens: self.pick(&[0, 1, 3_000, 200_000, u32::MAX]),
            client: self.text("team"),
            priority: self.below(4) as u8,
            client_retry_count: self.chance(30).then(|| self.below(4) as u32),
            received_at: if self.chance(10) {
                self.time()
            } else {
                received_at
            },
            deadline: self.around(now),
        };
        let count = self.below(5) as u32;
        let upstreams: Vec<UpstreamView> = (0..count).map(|i| self.upstream(i, now)).collect();
        let mut order: Vec<u32> = upstreams.iter().map(|u| u.id).collect();
        if self.chance(20) {
            order.push(self.below(8) as u32);
        }
        if self.chance(10) {
            order.clear();
        }
        let attempt = Attempt {
            number: if self.chance(95) {
                self.below(13) as u32
            } else {
                self.next_u64() as u32
            },
            upstream: if count > 0 && self.chance(85) {
                self.below(u64::from(count)) as u32
            } else {
                self.below(8) as u32
            },
            prev_delay_ms: self.header().unwrap_or(0),
            outcome: self.outcome(),
        };
        let view = View {
            now,
            random: self.next_u64(),
            upstreams,
            retry_budget: self.chance(85),
        };
        Case {
            req,
            order,
            attempt,
            view,
        }
    }

    /// A varied upstream; its id is `index`, or now and then a repeat or a
    /// stray.
    fn upstream(&mut self, index: u32, now: u64) -> UpstreamView {
        let budgets = (0..self.below(3))
            .map(|_| {
                let limit = self.pick(&[0, 1, 50, 4_000, u32::MAX]);
                Budget {
                    kind: self.pick(&LIMITS),
                    remaining: if self.chance(40) {
                        0
                    } else {
                        self.below(u64::from(limit) + 1) as u32
                    },
                    limit,
                    reset_at: self.chance(80).then(|| self.around(now)),
                }
            })
            .collect();
        UpstreamView {
            id: match self.below(20) {
                0 => index.saturating_sub(1),
                1 => self.next_u64() as u32,
                _ => index,
            },
            group: self.below(3) as u8,
            weight: self.pick(&[0, 1, 1, 3, 100, u16::MAX]),
            health: self.pick(&[
                Health::Unknown,
                Health::Healthy,
                Health::Healthy,
                Health::Unhealthy,
            ]),
            circuit: self.pick(&[
                Circuit::Closed,
                Circuit::Closed,
                Circuit::Open,
                Circuit::HalfOpen,
            ]),
            in_flight: self.below(100) as u32,
            rate_limited_until: self.chance(25).then(|| self.around(now)),
            overloaded_until: self.chance(20).then(|| self.around(now)),
            budgets,
            ttfb_ms: self.chance(60).then(|| self.below(5_000) as u32),
            slow: self.chance(15),
        }
    }

    /// A varied attempt outcome: responses of every kind, and failures.
    fn outcome(&mut self) -> Outcome {
        if self.chance(20) {
            return Outcome::Failure(self.pick(&FAILURES));
        }
        let status = match self.below(10) {
            0..=6 => self.pick(&STATUSES),
            7 | 8 => 100 + self.below(500) as u16,
            _ => self.next_u64() as u16,
        };
        Outcome::Response(ResponseFacts {
            status,
            should_retry: self.tri(),
            retry_after_ms: self.header(),
            retry_after: self.header(),
            error: self.chance(60).then(|| self.pick(&ERRORS)),
            spend_cap: self.chance(8),
            elapsed_ms: self.below(120_000) as u32,
        })
    }

    /// The realistic common case: two healthy upstreams, a streaming
    /// messages POST, and a 429 with `retry-after: 2` from the first.
    pub fn typical(&mut self) -> Case {
        let now = EPOCH + self.below(1_000_000);
        let healthy = |id| UpstreamView {
            id,
            group: 0,
            weight: 1,
            health: Health::Healthy,
            circuit: Circuit::Closed,
            in_flight: 3,
            rate_limited_until: None,
            overloaded_until: None,
            budgets: vec![Budget {
                kind: LimitKind::Requests,
                remaining: 40,
                limit: 50,
                reset_at: Some(now + 1_200),
            }],
            ttfb_ms: Some(600),
            slow: false,
        };
        Case {
            req: RequestFacts {
                id: self.next_u64(),
                method: Method::Post,
                endpoint: Endpoint::Messages,
                model: Some("claude-sonnet-4-5".to_owned()),
                stream: true,
                max_tokens: Some(4_096),
                est_input_tokens: 3_000,
                client: Some("team-a".to_owned()),
                priority: 1,
                client_retry_count: Some(0),
                received_at: now - 800,
                deadline: now + 600_000,
            },
            order: vec![0, 1],
            attempt: Attempt {
                number: 0,
                upstream: 0,
                prev_delay_ms: 0,
                outcome: Outcome::Response(ResponseFacts {
                    status: 429,
                    should_retry: None,
                    retry_after_ms: None,
                    retry_after: Some(2_000),
                    error: Some(ErrorKind::RateLimit),
                    spend_cap: false,
                    elapsed_ms: 180,
                }),
            },
            view: View {
                now,
                random: self.next_u64(),
                upstreams: vec![healthy(0), healthy(1)],
                retry_budget: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Admission, NextStep, Policy, Profile};

    #[test]
    fn same_seed_same_cases() {
        let (mut a, mut b) = (Sampler::new(42), Sampler::new(42));
        for _ in 0..100 {
            assert_eq!(a.case(), b.case());
        }
        assert_ne!(Sampler::new(1).case(), Sampler::new(2).case());
    }

    #[test]
    fn cases_cover_every_decision() {
        let mut s = Sampler::new(7);
        let policies = [
            Policy::new(Profile::Standard),
            Policy::new(Profile::Interactive),
        ];
        let mut seen = [0usize; 6];
        for _ in 0..20_000 {
            let case = s.case();
            for p in &policies {
                match p.on_request(&case.req, &case.view) {
                    Admission::Admit(_) => seen[0] += 1,
                    Admission::Queue(_) => seen[1] += 1,
                    Admission::Reject(_) => seen[2] += 1,
                }
                match p.on_outcome(&case.req, &case.order, &case.attempt, &case.view) {
                    NextStep::Deliver => seen[3] += 1,
                    NextStep::Retry(r) => {
                        seen[4] += 1;
                        assert!(case.view.now.saturating_add(r.delay_ms) < p.deadline(&case.req));
                    }
                    NextStep::Fail(_) => seen[5] += 1,
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 200), "{seen:?}");
    }

    #[test]
    fn typical_case_fails_over_or_waits() {
        let case = Sampler::new(3).typical();
        let p = Policy::new(Profile::Standard);
        assert!(matches!(
            p.on_request(&case.req, &case.view),
            Admission::Admit(_)
        ));
        let step = p.on_outcome(&case.req, &case.order, &case.attempt, &case.view);
        assert_eq!(
            step,
            NextStep::Retry(crate::Retry {
                upstream: 1,
                delay_ms: 0
            })
        );
    }
}
