//! Scenario tests: one per rule of the API's retry semantics and of
//! admission.

use super::*;
use crate::types::{Budget, Circuit, Endpoint, Health, Method, ResponseFacts, UpstreamView};

const NOW: u64 = 1_800_000_000_000;

fn standard() -> Policy {
    Policy::new(Profile::Standard)
}

fn interactive() -> Policy {
    Policy::new(Profile::Interactive)
}

fn req() -> RequestFacts {
    RequestFacts {
        id: 1,
        method: Method::Post,
        endpoint: Endpoint::Messages,
        model: Some("claude-sonnet-4-5".to_owned()),
        stream: false,
        max_tokens: Some(1000),
        est_input_tokens: 500,
        client: Some("team-a".to_owned()),
        priority: 0,
        client_retry_count: None,
        received_at: NOW,
        deadline: u64::MAX,
    }
}

fn up(id: u32, group: u8) -> UpstreamView {
    UpstreamView {
        id,
        group,
        weight: 1,
        health: Health::Healthy,
        circuit: Circuit::Closed,
        in_flight: 0,
        rate_limited_until: None,
        overloaded_until: None,
        budgets: vec![],
        ttfb_ms: None,
        slow: false,
    }
}

fn view(upstreams: Vec<UpstreamView>) -> View {
    View {
        now: NOW,
        random: 0x1234_5678_9abc_def0,
        upstreams,
        retry_budget: true,
    }
}

fn one() -> View {
    view(vec![up(1, 0)])
}

fn two() -> View {
    view(vec![up(1, 0), up(2, 0)])
}

fn status(status: u16) -> ResponseFacts {
    ResponseFacts {
        status,
        should_retry: None,
        retry_after_ms: None,
        retry_after: None,
        error: None,
        spend_cap: false,
        elapsed_ms: 100,
    }
}

fn response(number: u32, r: ResponseFacts) -> Attempt {
    Attempt {
        number,
        upstream: 1,
        prev_delay_ms: 0,
        outcome: Outcome::Response(r),
    }
}

fn failure(kind: FailureKind) -> Attempt {
    Attempt {
        number: 0,
        upstream: 1,
        prev_delay_ms: 0,
        outcome: Outcome::Failure(kind),
    }
}

fn outcome(p: &Policy, attempt: &Attempt, v: &View) -> NextStep {
    p.on_outcome(&req(), &[1, 2, 3], attempt, v)
}

fn backoff_of(p: &Policy, number: u32, v: &View) -> u64 {
    let s = p.settings();
    backoff::delay_ms(s.jitter, s.base_ms, s.cap_ms, number, 0, v.random)
}

fn admit(a: Admission) -> Plan {
    match a {
        Admission::Admit(plan) => plan,
        other => panic!("expected admit, got {other:?}"),
    }
}

fn rejection(a: Admission) -> Rejection {
    match a {
        Admission::Reject(r) => r,
        other => panic!("expected reject, got {other:?}"),
    }
}

// ---- on_outcome: what is retried -------------------------------------------

#[test]
fn success_statuses_deliver() {
    for s in [100, 200, 201, 204, 304, 399] {
        assert_eq!(
            outcome(&standard(), &response(0, status(s)), &two()),
            NextStep::Deliver
        );
    }
}

#[test]
fn client_errors_400_401_402_403_404_413_deliver() {
    for s in [400, 401, 402, 403, 404, 413, 422] {
        let mut r = status(s);
        r.retry_after = Some(1000);
        assert_eq!(
            outcome(&standard(), &response(0, r), &two()),
            NextStep::Deliver,
            "{s}"
        );
    }
}

#[test]
fn statuses_408_409_429_500_504_529_retry() {
    let p = standard();
    let v = one();
    for s in [408, 409, 429, 500, 502, 503, 504, 529, 599] {
        let step = outcome(&p, &response(0, status(s)), &v);
        assert_eq!(step, retry(1, backoff_of(&p, 0, &v)), "{s}");
    }
}

#[test]
fn x_should_retry_true_retries_a_400() {
    let mut r = status(400);
    r.should_retry = Some(true);
    let v = one();
    let p = standard();
    assert_eq!(
        outcome(&p, &response(0, r), &v),
        retry(1, backoff_of(&p, 0, &v))
    );
}

#[test]
fn x_should_retry_false_fails_a_529() {
    let mut r = status(529);
    r.should_retry = Some(false);
    r.retry_after = Some(1000);
    assert_eq!(
        outcome(&standard(), &response(0, r), &two()),
        fail(false, None)
    );
}

#[test]
fn spend_cap_429_fails_for_good() {
    let mut r = status(429);
    r.spend_cap = true;
    r.error = Some(ErrorKind::RateLimit);
    r.should_retry = Some(true);
    assert_eq!(
        outcome(&standard(), &response(0, r), &two()),
        fail(false, None)
    );
}

// ---- on_outcome: how long to wait ------------------------------------------

#[test]
fn retry_after_ms_beats_retry_after() {
    let mut r = status(429);
    r.retry_after_ms = Some(1500);
    r.retry_after = Some(3000);
    assert_eq!(
        outcome(&standard(), &response(0, r), &one()),
        retry(1, 1500)
    );
}

#[test]
fn retry_after_applies_without_retry_after_ms() {
    let mut r = status(503);
    r.retry_after = Some(3000);
    assert_eq!(
        outcome(&standard(), &response(0, r), &one()),
        retry(1, 3000)
    );
}

#[test]
fn zero_retry_after_ms_falls_back_to_retry_after() {
    let mut r = status(429);
    r.retry_after_ms = Some(0);
    r.retry_after = Some(2000);
    assert_eq!(
        outcome(&standard(), &response(0, r), &one()),
        retry(1, 2000)
    );
}

#[test]
fn zero_headers_mean_backoff() {
    let mut r = status(429);
    r.retry_after_ms = Some(0);
    r.retry_after = Some(0);
    let (p, v) = (standard(), one());
    assert_eq!(
        outcome(&p, &response(2, r), &v),
        retry(1, backoff_of(&p, 2, &v))
    );
}

#[test]
fn backoff_grows_with_attempt_number_and_stays_under_cap() {
    let p = standard();
    let mut v = one();
    v.random = u64::MAX;
    let delays: Vec<_> = (0..4)
        .map(|n| match outcome(&p, &response(n, status(500)), &v) {
            NextStep::Retry(r) => r.delay_ms,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(delays, [499, 999, 1999, 3999]);
}

#[test]
fn http_date_retry_after_is_read_by_the_headers_module() {
    let now_secs = NOW / 1000;
    assert_eq!(now_secs % 60, 0);
    // 2027-01-15T08:00:00Z is NOW; ask for 08:00:20.
    let date = "Fri, 15 Jan 2027 08:00:20 GMT";
    let mut r = status(429);
    r.retry_after = crate::headers::parse_retry_after(date, NOW);
    assert_eq!(r.retry_after, Some(20_000));
    assert_eq!(
        outcome(&standard(), &response(0, r), &one()),
        retry(1, 20_000)
    );
}

#[test]
fn header_beyond_max_wait_gives_up_with_retry_after() {
    let mut r = status(429);
    r.retry_after = Some(15_000);
    let step = outcome(&interactive(), &response(0, r), &one());
    assert_eq!(step, fail(true, Some(15_000)));
}

#[test]
fn standard_waits_out_a_long_retry_after() {
    let mut r = status(429);
    r.retry_after = Some(60_000);
    assert_eq!(
        outcome(&standard(), &response(0, r), &one()),
        retry(1, 60_000)
    );
    r.retry_after = Some(300_001);
    assert_eq!(
        outcome(&standard(), &response(0, r), &one()),
        fail(true, Some(300_001))
    );
}

#[test]
fn interactive_sleeps_at_most_max_wait_on_the_same_upstream() {
    let mut r = status(529);
    r.retry_after_ms = Some(2_000);
    assert_eq!(
        outcome(&interactive(), &response(0, r), &one()),
        retry(1, 2_000)
    );
    r.retry_after_ms = Some(2_001);
    assert_eq!(
        outcome(&interactive(), &response(0, r), &one()),
        fail(true, Some(2_001))
    );
}

// ---- on_outcome: rails -------------------------------------------------------

#[test]
fn exhausted_attempts_fail_and_pass_on_the_header() {
    let mut r = status(429);
    r.retry_after = Some(5_000);
    assert_eq!(
        outcome(&standard(), &response(4, r), &two()),
        fail(false, Some(5_000))
    );
    assert_eq!(
        outcome(&interactive(), &response(1, r), &two()),
        fail(false, Some(5_000))
    );
    assert_eq!(
        outcome(&standard(), &response(u32::MAX, status(500)), &two()),
        fail(false, None)
    );
}

#[test]
fn retry_budget_exhausted_fails() {
    let mut v = two();
    v.retry_budget = false;
    assert_eq!(
        outcome(&standard(), &response(0, status(529)), &v),
        fail(false, None)
    );
}

#[test]
fn backoff_that_would_end_past_the_deadline_gives_up() {
    let mut rq = req();
    rq.deadline = NOW + 10;
    let mut v = one();
    v.random = u64::MAX; // backoff 499 ms
    let step = standard().on_outcome(&rq, &[1], &response(0, status(500)), &v);
    assert_eq!(step, fail(false, None));
}

#[test]
fn header_that_would_end_past_the_deadline_gives_up_with_it() {
    let mut rq = req();
    rq.deadline = NOW + 5_000;
    let mut r = status(429);
    r.retry_after = Some(5_000);
    let step = standard().on_outcome(&rq, &[1], &response(0, r), &one());
    assert_eq!(step, fail(true, Some(5_000)));
}

#[test]
fn deadline_is_clamped_by_deadline_ms() {
    // The host allows a day, but the policy's own deadline is 900 s after
    // receipt, which was 899 s ago.
    let mut rq = req();
    rq.received_at = NOW - 899_000;
    let mut r = status(429);
    r.retry_after = Some(1_000);
    let step = standard().on_outcome(&rq, &[1], &response(0, r), &one());
    assert_eq!(step, fail(true, Some(1_000)));
    r.retry_after = Some(999);
    let step = standard().on_outcome(&rq, &[1], &response(0, r), &one());
    assert_eq!(step, retry(1, 999));
}

#[test]
fn deadline_passed_gives_up_even_with_an_alternative() {
    let mut rq = req();
    rq.deadline = NOW;
    let step = standard().on_outcome(&rq, &[1, 2], &response(0, status(529)), &two());
    assert_eq!(step, fail(false, None));
}

// ---- on_outcome: failover ---------------------------------------------------

#[test]
fn failover_on_529_to_the_alternative_without_delay() {
    let mut r = status(529);
    r.retry_after = Some(30_000);
    assert_eq!(outcome(&standard(), &response(0, r), &two()), retry(2, 0));
}

#[test]
fn failover_on_429_and_on_rate_limit_error_bodies() {
    assert_eq!(
        outcome(&interactive(), &response(0, status(429)), &two()),
        retry(2, 0)
    );
    let mut r = status(500);
    r.error = Some(ErrorKind::Overloaded);
    assert_eq!(outcome(&standard(), &response(0, r), &two()), retry(2, 0));
    r.error = Some(ErrorKind::RateLimit);
    assert_eq!(outcome(&standard(), &response(0, r), &two()), retry(2, 0));
}

#[test]
fn server_errors_fail_over_after_backoff() {
    let (p, v) = (standard(), two());
    assert_eq!(
        outcome(&p, &response(1, status(502)), &v),
        retry(2, backoff_of(&p, 1, &v))
    );
}

#[test]
fn a_server_errors_retry_after_does_not_bind_the_alternative() {
    let (p, v) = (standard(), two());
    let mut r = status(503);
    r.retry_after = Some(3_600_000);
    assert_eq!(
        outcome(&p, &response(1, r), &v),
        retry(2, backoff_of(&p, 1, &v)),
        "an hour's retry-after on upstream 1 must not stop a retry on upstream 2"
    );
}

#[test]
fn alternative_wraps_around_the_order_and_skips_unavailable() {
    let mut v = view(vec![up(1, 0), up(2, 0), up(3, 1)]);
    v.upstreams[0].rate_limited_until = Some(NOW + 1);
    let a = Attempt {
        upstream: 2,
        ..response(0, status(529))
    };
    let p = standard();
    // After 2 comes 3, then (wrapping) 1, which is rate-limited.
    assert_eq!(p.on_outcome(&req(), &[1, 2, 3], &a, &v), retry(3, 0));
    v.upstreams[2].circuit = Circuit::Open;
    assert_eq!(
        p.on_outcome(&req(), &[1, 2, 3], &a, &v),
        retry(2, backoff_of(&p, 0, &v))
    );
    v.upstreams[0].rate_limited_until = Some(NOW);
    assert_eq!(p.on_outcome(&req(), &[1, 2, 3], &a, &v), retry(1, 0));
}

#[test]
fn alternative_must_be_available() {
    let mut v = two();
    v.upstreams[1].health = Health::Unhealthy;
    let p = standard();
    assert_eq!(
        outcome(&p, &response(0, status(529)), &v),
        retry(1, backoff_of(&p, 0, &v))
    );
    v.upstreams[1].health = Health::Unknown;
    v.upstreams[1].budgets = vec![Budget {
        kind: LimitKind::Requests,
        remaining: 0,
        limit: 50,
        reset_at: Some(NOW + 500),
    }];
    assert_eq!(
        outcome(&p, &response(0, status(529)), &v),
        retry(1, backoff_of(&p, 0, &v))
    );
}

#[test]
fn tls_failure_fails_over() {
    assert_eq!(
        outcome(&standard(), &failure(FailureKind::Tls), &two()),
        retry(2, 0)
    );
}

#[test]
fn tls_failure_without_alternative_fails() {
    assert_eq!(
        outcome(&standard(), &failure(FailureKind::Tls), &one()),
        fail(false, None)
    );
}

#[test]
fn network_failures_fail_over_or_back_off() {
    let p = standard();
    for kind in [
        FailureKind::Dns,
        FailureKind::Connect,
        FailureKind::Proxy,
        FailureKind::Timeout,
        FailureKind::Reset,
    ] {
        assert_eq!(outcome(&p, &failure(kind), &two()), retry(2, 0), "{kind:?}");
        let v = one();
        assert_eq!(
            outcome(&p, &failure(kind), &v),
            retry(1, backoff_of(&p, 0, &v))
        );
    }
}

#[test]
fn unknown_upstream_without_alternative_gives_up() {
    let a = Attempt {
        upstream: 9,
        ..response(0, status(500))
    };
    assert_eq!(
        standard().on_outcome(&req(), &[9], &a, &one()),
        fail(false, None)
    );
    // With an empty order the only candidate is the failed upstream itself.
    let a = Attempt { upstream: 1, ..a };
    let (p, v) = (standard(), one());
    assert_eq!(
        p.on_outcome(&req(), &[], &a, &v),
        retry(1, backoff_of(&p, 0, &v))
    );
}

#[test]
fn decisions_are_deterministic() {
    let p = standard();
    let v = two();
    let a = response(1, status(503));
    assert_eq!(outcome(&p, &a, &v), outcome(&p, &a, &v));
    assert_eq!(p.on_request(&req(), &v), p.on_request(&req(), &v));
}

// ---- on_request ------------------------------------------------------------

#[test]
fn no_upstream_rejects_with_503() {
    let r = rejection(standard().on_request(&req(), &view(vec![])));
    assert_eq!((r.status, r.error_type.as_str()), (503, "api_error"));
    assert_eq!((r.retry_after_ms, r.should_retry), (None, false));
    assert_eq!(r.message, "no upstream is configured");
}

#[test]
fn deadline_passed_rejects_with_504() {
    let mut rq = req();
    rq.deadline = NOW;
    let r = rejection(standard().on_request(&rq, &two()));
    assert_eq!((r.status, r.error_type.as_str()), (504, "timeout_error"));
    assert_eq!((r.retry_after_ms, r.should_retry), (None, false));
    assert_eq!(
        r.message,
        "deadline passed before the request could be sent"
    );
}

#[test]
fn plan_orders_by_group() {
    let v = view(vec![up(1, 2), up(2, 0), up(3, 1)]);
    assert_eq!(
        admit(standard().on_request(&req(), &v)).upstreams,
        [2, 3, 1]
    );
}

#[test]
fn slow_upstreams_follow_fast_ones_in_their_group() {
    let mut v = view(vec![up(1, 0), up(2, 0), up(3, 1)]);
    v.upstreams[0].slow = true;
    for random in 0..20 {
        v.random = random;
        assert_eq!(
            admit(standard().on_request(&req(), &v)).upstreams,
            [2, 1, 3]
        );
    }
}

#[test]
fn weighted_order_follows_random_and_weight_zero_is_last() {
    let mut v = view(vec![up(1, 0), up(2, 0), up(3, 0)]);
    v.upstreams[0].weight = 0;
    v.upstreams[2].weight = 3;
    let mut firsts = [0; 4];
    for random in 0..4000u64 {
        v.random = random.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let order = admit(standard().on_request(&req(), &v)).upstreams;
        assert_eq!(order.len(), 3);
        assert_eq!(order[2], 1);
        firsts[order[0] as usize] += 1;
    }
    // Weight 3 against weight 1: about three quarters first.
    assert!((2700..3300).contains(&firsts[3]), "{firsts:?}");
}

#[test]
fn open_circuits_are_left_out() {
    let mut v = two();
    v.upstreams[0].circuit = Circuit::Open;
    v.upstreams[1].circuit = Circuit::HalfOpen;
    assert_eq!(admit(standard().on_request(&req(), &v)).upstreams, [2]);
}

#[test]
fn panic_mode_when_every_circuit_is_open() {
    let mut v = view(vec![up(1, 1), up(2, 0)]);
    for u in &mut v.upstreams {
        u.circuit = Circuit::Open;
    }
    assert_eq!(admit(standard().on_request(&req(), &v)).upstreams, [2, 1]);
}

#[test]
fn unavailable_upstreams_follow_as_a_last_resort() {
    let mut v = view(vec![up(1, 0), up(2, 0), up(3, 0), up(4, 0), up(5, 9)]);
    v.upstreams[0].health = Health::Unhealthy;
    v.upstreams[1].rate_limited_until = Some(NOW + 9_000);
    v.upstreams[2].overloaded_until = Some(NOW + 20_000);
    v.upstreams[3].budgets = vec![Budget {
        kind: LimitKind::Requests,
        remaining: 0,
        limit: 10,
        reset_at: Some(NOW + 1_000),
    }];
    assert_eq!(
        admit(standard().on_request(&req(), &v)).upstreams,
        [5, 3, 4, 2, 1]
    );
}

#[test]
fn only_unhealthy_upstreams_are_still_tried() {
    let mut v = two();
    v.upstreams[1].health = Health::Unhealthy;
    v.upstreams[0].circuit = Circuit::Open;
    assert_eq!(admit(standard().on_request(&req(), &v)).upstreams, [2]);
}

#[test]
fn repeated_ids_appear_once() {
    let v = view(vec![up(1, 0), up(1, 1), up(2, 0)]);
    let mut plan = admit(standard().on_request(&req(), &v)).upstreams;
    plan.sort_unstable();
    assert_eq!(plan, [1, 2]);
}

#[test]
fn queue_when_an_upstream_frees_up_within_max_wait() {
    let mut v = two();
    v.upstreams[0].rate_limited_until = Some(NOW + 3_000);
    v.upstreams[1].overloaded_until = Some(NOW + 1_500);
    assert_eq!(
        standard().on_request(&req(), &v),
        Admission::Queue(NOW + 1_500)
    );
}

#[test]
fn reject_429_when_the_wait_exceeds_max_wait() {
    let mut v = one();
    v.upstreams[0].rate_limited_until = Some(NOW + 3_000);
    let r = rejection(interactive().on_request(&req(), &v));
    assert_eq!((r.status, r.error_type.as_str()), (429, "rate_limit_error"));
    assert_eq!((r.retry_after_ms, r.should_retry), (Some(3_000), true));
    assert_eq!(
        r.message,
        "every upstream is rate-limited or overloaded; the first is free again in 3000 ms"
    );
}

#[test]
fn reject_429_when_the_wait_passes_the_deadline() {
    let mut v = one();
    v.upstreams[0].rate_limited_until = Some(NOW + 3_000);
    let mut rq = req();
    rq.deadline = NOW + 3_000;
    let r = rejection(standard().on_request(&rq, &v));
    assert_eq!((r.status, r.retry_after_ms), (429, Some(3_000)));
    rq.deadline = NOW + 3_001;
    assert_eq!(
        standard().on_request(&rq, &v),
        Admission::Queue(NOW + 3_000)
    );
}

#[test]
fn plan_deadline_and_try_timeout_respect_both_deadlines() {
    let plan = admit(standard().on_request(&req(), &two()));
    assert_eq!(plan.deadline, NOW + 900_000);
    assert_eq!(plan.try_timeout_ms, 600_000);
    let mut rq = req();
    rq.deadline = NOW + 1_234;
    let plan = admit(standard().on_request(&rq, &two()));
    assert_eq!((plan.deadline, plan.try_timeout_ms), (NOW + 1_234, 1_234));
}

#[test]
fn charges_cover_upstream_and_client() {
    let plan = admit(standard().on_request(&req(), &two()));
    let c = |scope, kind, amount| Charge {
        scope,
        kind,
        amount,
    };
    use LimitKind::*;
    use LimitScope::*;
    assert_eq!(
        plan.charges,
        [
            c(Upstream, Requests, 1),
            c(Upstream, Concurrency, 1),
            c(Upstream, InputTokens, 500),
            c(Upstream, OutputTokens, 1000),
            c(Client, Requests, 1),
            c(Client, Concurrency, 1),
            c(Client, InputTokens, 500),
            c(Client, OutputTokens, 1000),
        ]
    );
}

/// Only requests that generate draw on the token limits: count_tokens and
/// batches are limited apart by the API (a burst of them must not drain
/// the messages budgets), so they are charged a request alone (which the
/// host keeps in their own lanes); reads are charged nothing; the
/// OpenAI-compatible path generates.
#[test]
fn only_generating_requests_are_charged_tokens() {
    let charged = |method, endpoint| {
        let mut rq = req();
        (rq.method, rq.endpoint) = (method, endpoint);
        let plan = admit(standard().on_request(&rq, &two()));
        let upstream = plan
            .charges
            .iter()
            .filter(|c| c.scope == LimitScope::Upstream);
        upstream.map(|c| c.kind).collect::<Vec<_>>()
    };
    use LimitKind::*;
    let all = [Requests, Concurrency, InputTokens, OutputTokens];
    assert_eq!(charged(Method::Post, Endpoint::Messages), all);
    assert_eq!(
        charged(Method::Post, Endpoint::Other),
        all,
        "chat completions"
    );
    for endpoint in [Endpoint::CountTokens, Endpoint::Batches] {
        assert_eq!(
            charged(Method::Post, endpoint),
            [Requests, Concurrency],
            "{endpoint:?}: a request, no tokens"
        );
    }
    for (method, endpoint) in [
        (Method::Get, Endpoint::Batches),
        (Method::Get, Endpoint::Models),
        (Method::Get, Endpoint::Other),
        (Method::Delete, Endpoint::Other),
        (Method::Get, Endpoint::Messages),
    ] {
        assert!(
            charged(method, endpoint).is_empty(),
            "{method:?} {endpoint:?}"
        );
    }
}

#[test]
fn charges_skip_zero_amounts_and_absent_clients() {
    let mut rq = req();
    rq.client = None;
    rq.est_input_tokens = 0;
    rq.max_tokens = Some(1001);
    let plan = admit(interactive().on_request(&rq, &two()));
    let kinds: Vec<_> = plan.charges.iter().map(|c| (c.kind, c.amount)).collect();
    // Interactive reserves half of max_tokens, rounded up.
    use LimitKind::*;
    assert_eq!(
        kinds,
        [(Requests, 1), (Concurrency, 1), (OutputTokens, 501)]
    );
    assert!(plan.charges.iter().all(|c| c.scope == LimitScope::Upstream));

    let mut p = standard();
    p.configure(r#"{"charge_client":false,"output_reserve_share":0}"#)
        .unwrap();
    let plan = admit(p.on_request(&req(), &two()));
    let kinds: Vec<_> = plan.charges.iter().map(|c| (c.scope, c.kind)).collect();
    assert_eq!(
        kinds,
        [
            (LimitScope::Upstream, Requests),
            (LimitScope::Upstream, Concurrency),
            (LimitScope::Upstream, InputTokens),
        ]
    );
}

// ---- the policy object -------------------------------------------------------

#[test]
fn configure_error_keeps_previous_settings() {
    let mut p = standard();
    p.configure(r#"{"max_attempts":3}"#).unwrap();
    let err = p.configure(r#"{"max_attempts":0}"#).unwrap_err();
    assert_eq!(err.key, "max_attempts");
    assert_eq!(p.settings().max_attempts, 3);
    p.configure("").unwrap();
    assert_eq!(p.settings(), &Settings::defaults(Profile::Standard));
}

#[test]
fn info_names_the_profile() {
    let info = interactive().info();
    assert_eq!(info.name, "interactive");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert!(!info.summary.is_empty());
    assert_eq!(standard().info().name, "standard");
    assert_eq!(standard().profile(), Profile::Standard);
}
