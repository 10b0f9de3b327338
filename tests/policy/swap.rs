//! Hot swap under concurrent calls: no call fails, and a request that holds
//! the policy it started with is answered wholly by it, never a mix, even
//! when a swap lands between its two calls (as the gateway's driver holds
//! one policy per request).

use levee::core::{
    Admission, Attempt, Circuit, Endpoint, Health, Method, NextStep, Outcome, RequestFacts,
    ResponseFacts, UpstreamView, View,
};
use levee::policy::{PolicyHandle, PolicySource, Stage};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const NOW: u64 = 1_800_000_000_000;

/// A request whose two decisions tell the profiles apart: standard plans a
/// 10-minute try timeout and waits out a 5 s `retry-after`; interactive
/// plans 60 s and hands the wait back to the client.
fn probe() -> (RequestFacts, View, Attempt) {
    let req = RequestFacts {
        id: 1,
        method: Method::Post,
        endpoint: Endpoint::Messages,
        model: None,
        stream: false,
        max_tokens: Some(100),
        est_input_tokens: 10,
        client: None,
        priority: 0,
        client_retry_count: None,
        received_at: NOW,
        deadline: NOW + 3_600_000,
    };
    let view = View {
        now: NOW,
        random: 42,
        retry_budget: true,
        upstreams: vec![UpstreamView {
            id: 0,
            group: 0,
            weight: 1,
            health: Health::Healthy,
            circuit: Circuit::Closed,
            in_flight: 0,
            rate_limited_until: None,
            overloaded_until: None,
            budgets: vec![],
            ttfb_ms: None,
            slow: false,
        }],
    };
    let attempt = Attempt {
        number: 0,
        upstream: 0,
        prev_delay_ms: 0,
        outcome: Outcome::Response(ResponseFacts {
            status: 429,
            should_retry: None,
            retry_after_ms: Some(5_000),
            retry_after: None,
            error: None,
            spend_cap: false,
            elapsed_ms: 5,
        }),
    };
    (req, view, attempt)
}

#[derive(Debug, PartialEq)]
enum Answer {
    Standard,
    Interactive,
}

fn classify(admission: &Admission, step: &NextStep) -> Option<Answer> {
    match (admission, step) {
        (Admission::Admit(p), NextStep::Retry(r))
            if p.try_timeout_ms == 600_000 && r.delay_ms == 5_000 =>
        {
            Some(Answer::Standard)
        }
        (Admission::Admit(p), NextStep::Fail(g))
            if p.try_timeout_ms == 60_000 && g.should_retry && g.retry_after_ms == Some(5_000) =>
        {
            Some(Answer::Interactive)
        }
        _ => None,
    }
}

#[test]
fn swapping_under_load_never_fails_or_mixes_a_request() {
    let engine = Arc::new(super::patient_engine());
    let handle = Arc::new(PolicyHandle::new(
        engine.load(&PolicySource::Builtin("standard"), "").unwrap(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    // Swaps done so far: each request's calls straddle one.
    let swaps = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    const WORKERS: usize = 4;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (handle, stop, swaps, answered) = (
                handle.clone(),
                stop.clone(),
                swaps.clone(),
                answered.clone(),
            );
            std::thread::spawn(move || {
                let (req, view, attempt) = probe();
                while !stop.load(Ordering::Relaxed) {
                    let before = swaps.load(Ordering::SeqCst);
                    let policy = handle.current();
                    let admission = policy.try_on_request(&req, &view).expect("call succeeds");
                    // The next swap lands between this request's calls.
                    while swaps.load(Ordering::SeqCst) == before && !stop.load(Ordering::Relaxed) {
                        std::thread::yield_now();
                    }
                    let step = policy
                        .try_on_outcome(&req, &[0], &attempt, &view)
                        .expect("call succeeds");
                    match classify(&admission, &step) {
                        Some(Answer::Standard) => answered[0].fetch_add(1, Ordering::Relaxed),
                        Some(Answer::Interactive) => answered[1].fetch_add(1, Ordering::Relaxed),
                        None => panic!("a mixed or unknown answer: {admission:?} then {step:?}"),
                    };
                }
            })
        })
        .collect();

    let total = || answered[0].load(Ordering::Relaxed) + answered[1].load(Ordering::Relaxed);
    for i in 0..20 {
        let name = if i % 2 == 0 {
            "interactive"
        } else {
            "standard"
        };
        let before = total();
        let record = handle
            .swap(&engine, &PolicySource::Builtin(name), "")
            .expect("swap succeeds");
        assert!(record.result.is_ok());
        // A refused swap in between changes nothing.
        let refused = handle.swap(
            &engine,
            &PolicySource::Builtin(name),
            "{\"max_attempts\": 0}",
        );
        assert_eq!(refused.unwrap_err().stage, Stage::Configure);
        assert_eq!(handle.current().info().name, name);
        swaps.fetch_add(1, Ordering::SeqCst);
        // Every worker finishes the request the swap landed in, and starts
        // the next on this policy.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while total() < before + WORKERS {
            assert!(
                std::time::Instant::now() < deadline,
                "workers stopped answering"
            );
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("no worker panicked");
    }
    // Requests began under each policy, and each was answered by it alone
    // though a swap to the other came between its calls.
    assert!(answered[0].load(Ordering::Relaxed) > 0 && answered[1].load(Ordering::Relaxed) > 0);
    assert!(total() >= 20 * WORKERS);
    assert_eq!(engine.stats().fallbacks.load(Ordering::Relaxed), 0);
    let history = handle.history();
    assert_eq!(
        history.len(),
        32,
        "the history keeps the last 32 of 40 attempts"
    );
    assert_eq!(history.iter().filter(|r| r.result.is_err()).count(), 16);
}
