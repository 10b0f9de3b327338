use super::*;
use crate::core::LimitScope;
use crate::limits::LimitSpec;
use crate::limits::memory::MemoryLimiter;
use std::cell::Cell;
use tokio::time::Instant;

thread_local! {
    static BASE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Milliseconds of tokio's (paused) time since the test's first look.
fn clock() -> u64 {
    BASE.with(|b| {
        let base = b.get().unwrap_or_else(|| {
            let now = Instant::now();
            b.set(Some(now));
            now
        });
        base.elapsed().as_millis() as u64
    })
}

fn admitter(spec: LimitSpec, queue: usize) -> Arc<Admitter> {
    let limiter = Arc::new(MemoryLimiter::new(
        &[spec, spec],
        LimitSpec::default(),
        clock(),
    ));
    Arc::new(Admitter::with_clock(
        limiter,
        queue,
        Gauge::default(),
        clock,
    ))
}

fn rpm(n: u64) -> LimitSpec {
    LimitSpec {
        requests_per_minute: Some(n),
        ..LimitSpec::default()
    }
}

const ONE: [Charge; 2] = [
    Charge {
        scope: LimitScope::Upstream,
        kind: LimitKind::Requests,
        amount: 1,
    },
    Charge {
        scope: LimitScope::Upstream,
        kind: LimitKind::Concurrency,
        amount: 1,
    },
];

/// Admits `n` requests and sends them: the bucket is that much lower.
async fn drain(a: &Arc<Admitter>, n: usize) {
    for _ in 0..n {
        let (_, mut r) = a.admit(ask(&[0], u64::MAX), None).await.expect("fits");
        r.sent();
    }
}

fn ask(order: &[u32], deadline: u64) -> Ask<'_> {
    Ask {
        order,
        class: 0,
        client: None,
        charges: &ONE,
        priority: 0,
        deadline,
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_does_not_fit_waits_for_the_refill() {
    let a = admitter(rpm(60), 10);
    drain(&a, 60).await;
    assert_eq!(clock(), 0, "a full bucket allows a burst");
    let (_, _r) = a
        .admit(ask(&[0], 60_000), None)
        .await
        .expect("queued, then fits");
    assert_eq!(clock(), 1_000, "60 rpm refill one per second");
}

#[tokio::test(start_paused = true)]
async fn another_upstream_with_room_is_used_first() {
    let a = admitter(rpm(1), 10);
    let (up, _r) = a.admit(ask(&[0, 1], 60_000), None).await.unwrap();
    assert_eq!(up, 0);
    let (up, _r) = a.admit(ask(&[0, 1], 60_000), None).await.unwrap();
    assert_eq!(up, 1, "0 is spent, 1 has room");
    assert_eq!(clock(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_too_close_is_refused_with_the_bucket_time() {
    let a = admitter(rpm(60), 10);
    drain(&a, 60).await;
    assert_eq!(
        a.admit(ask(&[0], 500), None).await.err(),
        Some(Refused::Deadline {
            retry_after_ms: 1_000
        })
    );
    assert_eq!(clock(), 0, "refused at once, not after waiting");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_at_once_and_a_dropped_waiter_leaves() {
    let a = admitter(rpm(60), 1);
    drain(&a, 60).await;
    let mut waiter = Box::pin(a.admit(ask(&[0], 60_000), None));
    // Poll the waiter until it sits in the queue.
    tokio::select! {
        biased;
        _ = &mut waiter => panic!("cannot fit yet"),
        () = tokio::task::yield_now() => {}
    }
    assert_eq!(a.queued(), 1);
    assert!(matches!(
        a.admit(ask(&[0], 60_000), None).await,
        Err(Refused::QueueFull { retry_after_ms }) if retry_after_ms <= 1_000
    ));
    assert_eq!(clock(), 0, "shed at once");
    drop(waiter);
    assert_eq!(a.queued(), 0, "the client went away: its place is free");
    let (_, r) = a.admit(ask(&[0], 60_000), None).await.unwrap();
    assert_eq!(clock(), 1_000);
    drop(r);
}

#[tokio::test(start_paused = true)]
async fn a_released_concurrency_slot_wakes_the_head_at_once() {
    let spec = LimitSpec {
        max_concurrency: Some(1),
        ..LimitSpec::default()
    };
    let a = admitter(spec, 4);
    let (_, mut first) = a.admit(ask(&[0], 60_000), None).await.unwrap();
    first.sent();
    let release = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        first.finish(Usage::default());
    };
    let (admitted, ()) = tokio::join!(a.admit(ask(&[0], 60_000), None), release);
    assert!(admitted.is_ok());
    assert_eq!(clock(), 250, "woken by the release, not by a poll");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_unsent_reservation_gives_everything_back() {
    let a = admitter(rpm(1), 4);
    let (_, r) = a.admit(ask(&[0], 60_000), None).await.unwrap();
    drop(r);
    let (_, mut r) = a.admit(ask(&[0], 60_000), None).await.unwrap();
    assert_eq!(clock(), 0, "the first one was never sent");
    r.sent();
    drop(r);
    assert!(matches!(
        a.admit(ask(&[0], 1_000), None).await,
        Err(Refused::Deadline {
            retry_after_ms: 60_000
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_cost_above_every_limit_is_too_large() {
    let a = admitter(
        LimitSpec {
            requests_per_minute: Some(10),
            ..LimitSpec::default()
        },
        4,
    );
    let charges = [Charge {
        scope: LimitScope::Upstream,
        kind: LimitKind::Requests,
        amount: 11,
    }];
    let ask = Ask {
        charges: &charges,
        ..ask(&[0, 1], 60_000)
    };
    assert_eq!(
        a.admit(ask, None).await.err(),
        Some(Refused::TooLarge(LimitKind::Requests))
    );
}

#[tokio::test(start_paused = true)]
async fn a_place_taken_early_keeps_its_turn() {
    let a = admitter(rpm(60), 2);
    drain(&a, 60).await;
    let early = a.line_up(0, 0).expect("room");
    // The late one is polled first: without its place kept, the early one
    // would be admitted second.
    // Each keeps its reservation (dropping one unsent gives its token back).
    let late = async { (a.admit(ask(&[0], 60_000), None).await, clock()) };
    let first = async { (a.admit(ask(&[0], 60_000), Some(early)).await, clock()) };
    let ((late, late_at), (first, first_at)) = tokio::join!(late, first);
    assert!(late.is_ok() && first.is_ok());
    assert_eq!(
        first_at, 1_000,
        "the early place is admitted at the first refill"
    );
    assert_eq!(late_at, 2_000, "the late one a second after it");
    assert!(a.line_up(0, 0).is_some() && a.queued() == 0);
}

#[tokio::test(start_paused = true)]
async fn a_class_waiting_for_room_never_holds_back_another() {
    let a = admitter(rpm(60), 4);
    drain(&a, 60).await;
    let sonnet = Ask {
        class: 1,
        ..ask(&[0], 60_000)
    };
    let haiku = Ask {
        class: 2,
        ..ask(&[0], 60_000)
    };
    // Class 0's bucket is spent and its request waits in line; the other
    // classes' buckets are full, and get in at once.
    let waiting = async { (a.admit(ask(&[0], 60_000), None).await, clock()) };
    let others = async {
        tokio::task::yield_now().await;
        assert_eq!(a.queued(), 1, "class 0's request waits");
        let s = a.admit(sonnet, None).await;
        let h = a.admit(haiku, None).await;
        (s.is_ok() && h.is_ok(), clock())
    };
    let ((waited, waited_at), (others_in, others_at)) = tokio::join!(waiting, others);
    assert!(others_in);
    assert_eq!(others_at, 0, "no wait behind the other class");
    assert!(waited.is_ok());
    assert_eq!(waited_at, 1_000, "class 0 at its next refill");
}
