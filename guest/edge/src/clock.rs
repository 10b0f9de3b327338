//! Time at the edge: the wall clock for the policy's `now`, and sleeps and
//! timeouts on `wasi:clocks/monotonic-clock`, driven by spin-sdk's executor.

use futures::future::{Either, select};
use spin_executor::CancelOnDropToken;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use wasi::clocks::monotonic_clock;
use wasi::io::poll::Pollable;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Waits for one wake-up of a pollable made by `make`: the first poll
/// registers it with spin-sdk's executor, the next one completes. Callers
/// re-check their own condition (a wake-up may be spurious), so a pollable's
/// `ready()` is never asked: wasmtime's answer for a fresh clock pollable
/// whose deadline has just passed can be `false`, and a wait that trusted
/// it would never end.
pub struct WaitOn<F> {
    make: F,
    token: Option<CancelOnDropToken>,
}

impl<F: Fn() -> Pollable + Unpin> Future for WaitOn<F> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.token.take().is_some() {
            return Poll::Ready(());
        }
        let pollable = (self.make)();
        let token = spin_executor::push_waker_and_get_token(pollable, cx.waker().clone());
        self.token = Some(token.into());
        Poll::Pending
    }
}

/// Waits for a wake-up from `make`'s pollable.
pub fn wait_on<F: Fn() -> Pollable + Unpin>(make: F) -> WaitOn<F> {
    WaitOn { make, token: None }
}

/// Sleeps for `ms` milliseconds on the monotonic clock.
pub async fn sleep_ms(ms: u64) {
    let until = monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000));
    while monotonic_clock::now() < until {
        wait_on(move || monotonic_clock::subscribe_instant(until)).await;
    }
}

/// Runs `fut` for at most `ms` milliseconds; `None` when time ran out.
pub async fn timeout<T>(ms: u64, fut: impl Future<Output = T>) -> Option<T> {
    let fut = pin!(fut);
    let sleep = pin!(sleep_ms(ms));
    match select(fut, sleep).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}
