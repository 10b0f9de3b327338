use super::*;
use crate::core::Charge;
use proptest::prelude::*;

/// Upstream 0's lane for class 0.
const LANE: Lane = Lane {
    upstream: 0,
    class: 0,
};

fn charge(scope: LimitScope, kind: LimitKind, amount: u32) -> Charge {
    Charge {
        scope,
        kind,
        amount,
    }
}

fn request(input: u32, output: u32) -> Vec<Charge> {
    vec![
        charge(LimitScope::Upstream, LimitKind::Requests, 1),
        charge(LimitScope::Upstream, LimitKind::Concurrency, 1),
        charge(LimitScope::Upstream, LimitKind::InputTokens, input),
        charge(LimitScope::Upstream, LimitKind::OutputTokens, output),
    ]
}

fn spec(rpm: u64, itpm: u64, otpm: u64, conc: u32) -> LimitSpec {
    LimitSpec {
        requests_per_minute: Some(rpm),
        input_tokens_per_minute: Some(itpm),
        output_tokens_per_minute: Some(otpm),
        max_concurrency: Some(conc),
    }
}

#[test]
fn a_reservation_is_all_or_nothing() {
    let l = MemoryLimiter::new(&[spec(10, 1_000, 1_000, 10)], LimitSpec::default(), 0);
    l.try_reserve(LANE, None, &request(900, 10), 0)
        .expect("fits");
    // Requests and output still fit, input does not: nothing is taken.
    assert_eq!(
        l.try_reserve(LANE, None, &request(200, 10), 0),
        Err(Denied::Until(6_000))
    );
    let b = l.budgets(LANE, 0);
    assert_eq!(
        b[0].remaining, 9,
        "the refused request took no request token"
    );
    assert_eq!(b[2].remaining, 990);
}

#[test]
fn concurrency_is_held_until_settled_and_refunds_on_cancel() {
    let l = MemoryLimiter::new(&[spec(100, 10_000, 10_000, 1)], LimitSpec::default(), 0);
    let g = l
        .try_reserve(LANE, None, &request(10, 500), 0)
        .expect("fits");
    assert_eq!(
        l.try_reserve(LANE, None, &request(10, 10), 0),
        Err(Denied::Busy)
    );
    l.settle(
        &g,
        Usage {
            input: Some(30),
            output: Some(100),
            ..Usage::default()
        },
        0,
    );
    let b = l.budgets(LANE, 0);
    assert_eq!(
        (
            b[0].remaining,
            b[1].remaining,
            b[2].remaining,
            b[3].remaining
        ),
        (99, 9_970, 9_900, 1),
        "the input under-estimate is charged, the output over-estimate refunded"
    );
    let g = l
        .try_reserve(LANE, None, &request(10, 10), 0)
        .expect("fits");
    l.cancel(&g, 0);
    assert_eq!(
        l.budgets(LANE, 0)[0].remaining,
        99,
        "a cancel gives all back"
    );
}

#[test]
fn token_estimates_above_the_capacity_are_capped_so_they_always_fit_in_time() {
    let l = MemoryLimiter::new(&[spec(100, 1_000, 500, 10)], LimitSpec::default(), 0);
    let g = l
        .try_reserve(LANE, None, &request(50_000, 1), 0)
        .expect("an input estimate is capped too");
    assert!(g.taken.contains(&Taken {
        client: false,
        kind: LimitKind::InputTokens,
        amount: 1_000
    }));
    l.cancel(&g, 0);
    let g = l
        .try_reserve(LANE, None, &request(10, 64_000), 0)
        .expect("capped");
    assert!(g.taken.contains(&Taken {
        client: false,
        kind: LimitKind::OutputTokens,
        amount: 500
    }));
}

#[test]
fn client_limits_bind_each_client_apart() {
    let client = LimitSpec {
        requests_per_minute: Some(2),
        ..LimitSpec::default()
    };
    let l = MemoryLimiter::new(&[LimitSpec::default()], client, 0);
    let both = |n| {
        vec![
            charge(LimitScope::Upstream, LimitKind::Requests, n),
            charge(LimitScope::Client, LimitKind::Requests, n),
        ]
    };
    let (a, b) = (ClientKey::of(b"sk-a"), ClientKey::of(b"sk-b"));
    assert!(l.try_reserve(LANE, Some(&a), &both(2), 0).is_ok());
    assert_eq!(
        l.try_reserve(LANE, Some(&a), &both(1), 0),
        Err(Denied::Until(30_000))
    );
    assert!(l.try_reserve(LANE, Some(&b), &both(1), 0).is_ok());
    assert!(
        l.try_reserve(LANE, None, &both(1), 0).is_ok(),
        "anonymous: upstream only"
    );
    assert!(!format!("{a:?}").contains("sk-a"));
}

#[test]
fn headers_teach_a_limit_where_none_is_configured() {
    let l = MemoryLimiter::new(&[LimitSpec::default()], LimitSpec::default(), 0);
    assert!(l.budgets(LANE, 0).is_empty());
    let report = Reported {
        limit: Some(50),
        remaining: Some(0),
        reset_at: Some(1_200),
    };
    l.observe(LANE, LimitKind::Requests, report, 0);
    assert_eq!(
        l.try_reserve(LANE, None, &request(1, 1), 0),
        Err(Denied::Until(1_200)),
        "50 per minute refill one request every 1.2 s"
    );
    let b = l.budgets(LANE, 0);
    assert_eq!(
        (b[0].limit, b[0].remaining, b[0].reset_at),
        (50, 0, Some(1_200))
    );
}

#[test]
fn a_close_delays_even_an_unlimited_upstream() {
    let l = MemoryLimiter::new(&[LimitSpec::default()], LimitSpec::default(), 0);
    l.close_until(LANE, 15_000);
    assert_eq!(
        l.try_reserve(LANE, None, &request(1, 1), 1_000),
        Err(Denied::Until(15_000))
    );
    assert!(l.try_reserve(LANE, None, &request(1, 1), 15_000).is_ok());
}

#[test]
fn each_class_has_its_own_rates_and_all_share_the_concurrency() {
    let (sonnet, haiku) = (Lane::new(0, 1), Lane::new(0, 2));
    let up = ScopeLimits {
        base: spec(2, 1_000, 1_000, 3),
        // Haiku's own request rate; its token limits are the base's.
        classes: vec![(
            2,
            LimitSpec {
                requests_per_minute: Some(10),
                ..LimitSpec::default()
            },
        )],
    };
    let l = MemoryLimiter::scoped(&[up], ScopeLimits::default(), 0);
    l.try_reserve(sonnet, None, &request(1, 1), 0)
        .expect("sonnet 1");
    l.try_reserve(sonnet, None, &request(1, 1), 0)
        .expect("sonnet 2");
    assert_eq!(
        l.try_reserve(sonnet, None, &request(1, 1), 0),
        Err(Denied::Until(30_000)),
        "sonnet's 2 per minute are spent"
    );
    let g = l
        .try_reserve(haiku, None, &request(1, 1), 0)
        .expect("haiku is untouched");
    assert_eq!(
        l.try_reserve(haiku, None, &request(1, 1), 0),
        Err(Denied::Busy),
        "the three in flight are the upstream's, across classes"
    );
    l.settle(&g, Usage::default(), 0);
    let budgets = |lane| {
        l.budgets(lane, 0)
            .iter()
            .map(|b| (b.kind, b.remaining, b.limit))
            .collect::<Vec<_>>()
    };
    assert_eq!(budgets(haiku)[0], (LimitKind::Requests, 9, 10));
    assert_eq!(budgets(sonnet)[0], (LimitKind::Requests, 0, 2));
    assert_eq!(budgets(sonnet)[1], (LimitKind::InputTokens, 998, 1_000));
    assert_eq!(
        budgets(Lane::new(0, 0))[0],
        (LimitKind::Requests, 2, 2),
        "an unused class shows its configured bucket, full"
    );
}

#[test]
fn headers_and_closes_stay_in_their_class() {
    let (sonnet, haiku) = (Lane::new(0, 1), Lane::new(0, 2));
    let l = MemoryLimiter::new(&[LimitSpec::default()], LimitSpec::default(), 0);
    let report = Reported {
        limit: Some(50),
        remaining: Some(0),
        reset_at: None,
    };
    l.observe(sonnet, LimitKind::Requests, report, 0);
    assert!(l.try_reserve(sonnet, None, &request(1, 1), 0).is_err());
    assert!(l.budgets(haiku, 0).is_empty(), "haiku learned nothing");
    assert!(l.try_reserve(haiku, None, &request(1, 1), 0).is_ok());
    l.close_until(haiku, 9_000);
    assert_eq!(
        l.try_reserve(haiku, None, &request(1, 1), 1),
        Err(Denied::Until(9_000))
    );
    assert_eq!(
        l.try_reserve(sonnet, None, &request(1, 1), 1_200)
            .map(|_| ()),
        Ok(()),
        "sonnet refilled and was not closed"
    );
}

#[test]
fn a_clients_classes_are_apart_too() {
    let client = ScopeLimits::uniform(LimitSpec {
        requests_per_minute: Some(1),
        ..LimitSpec::default()
    });
    let l = MemoryLimiter::scoped(&[ScopeLimits::default()], client, 0);
    let key = ClientKey::of(b"sk-a");
    let both = [charge(LimitScope::Client, LimitKind::Requests, 1)];
    assert!(l.try_reserve(Lane::new(0, 1), Some(&key), &both, 0).is_ok());
    assert!(
        l.try_reserve(Lane::new(0, 1), Some(&key), &both, 0)
            .is_err()
    );
    assert!(l.try_reserve(Lane::new(0, 2), Some(&key), &both, 0).is_ok());
}

#[derive(Clone, Debug)]
enum Op {
    /// Try to admit a request (input, output reserve) after a pause.
    Admit { pause: u64, input: u32, output: u32 },
    /// Settle the oldest open grant, using a share (0..=100 %) of its
    /// reservation.
    Settle { pause: u64, used_pct: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..2_000, 1u32..400, 0u32..400).prop_map(|(pause, input, output)| Op::Admit {
            pause,
            input,
            output
        }),
        (0u64..2_000, 0u64..=100).prop_map(|(pause, used_pct)| Op::Settle { pause, used_pct }),
    ]
}

proptest! {
    /// Whatever the sequence of admissions and reconciliations (within the
    /// reservations), what gets through in any window of `w` ms is at most
    /// the capacity plus what refills in `w`.
    #[test]
    fn no_window_lets_more_than_the_budget_through(ops in prop::collection::vec(op(), 1..200)) {
        const RPM: u64 = 30;
        const ITPM: u64 = 2_000;
        let l = MemoryLimiter::new(&[spec(RPM, ITPM, 1_000_000, 1_000)], LimitSpec::default(), 0);
        let mut now = 0;
        let mut open: std::collections::VecDeque<(Grant, usize, u64)> = Default::default();
        // (admitted at, input actually used)
        let mut through: Vec<(u64, u64)> = Vec::new();
        for op in ops {
            match op {
                Op::Admit { pause, input, output } => {
                    now += pause;
                    if let Ok(g) = l.try_reserve(LANE, None, &request(input, output), now) {
                        through.push((now, u64::from(input)));
                        open.push_back((g, through.len() - 1, u64::from(input)));
                    }
                }
                Op::Settle { pause, used_pct } => {
                    now += pause;
                    if let Some((g, i, input)) = open.pop_front() {
                        let used = input * used_pct / 100;
                        through[i].1 = used;
                        l.settle(&g, Usage { input: Some(used), ..Usage::default() }, now);
                    }
                }
            }
        }
        for (i, &(start, _)) in through.iter().enumerate() {
            for (j, &(end, _)) in through.iter().enumerate().skip(i) {
                let w = end - start;
                let requests = (j - i + 1) as u64;
                let tokens: u64 = through[i..=j].iter().map(|t| t.1).sum();
                let refill = |cap: u64| cap + (cap as f64 * w as f64 / 60_000.0).ceil() as u64;
                prop_assert!(requests <= refill(RPM), "{requests} requests in {w} ms");
                prop_assert!(tokens <= refill(ITPM), "{tokens} input tokens in {w} ms");
            }
        }
    }
}
