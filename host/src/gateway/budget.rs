//! The global retry budget, in the spirit of Envoy's: retries in flight may
//! be at most a share of the requests in flight, with a floor, so that a
//! brownout is not multiplied by retries.
//!
//! A retry the budget has no room for waits for room, in order of asking,
//! until the latest moment its request can still use it. The budget caps
//! the extra load retries put on a struggling upstream; dropping a request
//! that one retry would save is not its job. Only a retry still waiting
//! when its time runs out is refused, and counted.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// Counts requests and retries in flight, and the retries waiting.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_retries: u64,
    active: AtomicU64,
    retrying: AtomicU64,
    /// The most retries ever in flight at once.
    peak: AtomicU64,
    exhausted: AtomicU64,
    /// Retries waiting for room, oldest first; each is told through its
    /// channel that a slot was taken for it.
    waiting: Mutex<VecDeque<oneshot::Sender<()>>>,
    /// `waiting.len()`, read without the lock on the request path.
    queued: AtomicU64,
}

/// Held while a request is in flight.
pub struct Active<'a>(&'a RetryBudget);

/// Held while a retry (its wait and its attempt) is in flight.
pub struct RetryToken<'a>(&'a RetryBudget);

impl RetryBudget {
    /// Retries in flight may reach `max(min_retries, ratio * active)`.
    pub fn new(ratio: f64, min_retries: u32) -> RetryBudget {
        RetryBudget {
            ratio,
            min_retries: u64::from(min_retries),
            active: AtomicU64::new(0),
            retrying: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            waiting: Mutex::default(),
            queued: AtomicU64::new(0),
        }
    }

    /// Marks a request in flight until the guard drops. A new request
    /// raises the cap, which may make room for a waiting retry.
    pub fn enter(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.wake();
        Active(self)
    }

    /// A retry slot, taken at once when there is room and nobody waits;
    /// otherwise after the retries that asked first, as room appears,
    /// waiting at most `wait`. `None` (counted) when the time ran out.
    pub async fn retry(&self, wait: Duration) -> Option<RetryToken<'_>> {
        if self.queued.load(Ordering::Acquire) == 0
            && let Some(token) = self.try_take()
        {
            return Some(token);
        }
        if self.ratio <= 0.0 && self.min_retries == 0 {
            // No retry is ever allowed: nothing can make room.
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let (tx, mut rx) = oneshot::channel();
        {
            let mut waiting = self.lock();
            waiting.push_back(tx);
            self.queued.store(waiting.len() as u64, Ordering::Release);
        }
        // Room may have appeared before this retry joined the line.
        self.wake();
        if let Ok(Ok(())) = tokio::time::timeout(wait, &mut rx).await {
            return Some(RetryToken(self));
        }
        // A slot taken for this retry just as its time ran out is its own.
        rx.close();
        if rx.try_recv().is_ok() {
            return Some(RetryToken(self));
        }
        self.exhausted.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Retries refused because the budget had no room in time.
    pub fn exhausted(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Requests and retries in flight, retries waiting, the most retries
    /// ever in flight at once, the cap, and refusals so far.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "active": self.active.load(Ordering::Relaxed),
            "retrying": self.retrying.load(Ordering::Relaxed),
            "waiting": self.queued.load(Ordering::Relaxed),
            "peak": self.peak.load(Ordering::Relaxed),
            "cap": self.cap(),
            "exhausted": self.exhausted(),
            "ratio": self.ratio,
            "min_retries": self.min_retries,
        })
    }

    fn cap(&self) -> u64 {
        let share = (self.active.load(Ordering::Relaxed) as f64 * self.ratio) as u64;
        share.max(self.min_retries)
    }

    /// Counts one more retry in flight, if the cap allows.
    fn take(&self) -> bool {
        let cap = self.cap();
        match self
            .retrying
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            }) {
            Ok(before) => {
                self.peak.fetch_max(before + 1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn try_take(&self) -> Option<RetryToken<'_>> {
        self.take().then(|| RetryToken(self))
    }

    /// Hands the room there is to the retries waiting, oldest first.
    fn wake(&self) {
        if self.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut waiting = self.lock();
        while let Some(first) = waiting.front() {
            if first.is_closed() {
                waiting.pop_front();
                continue;
            }
            if !self.take() {
                break;
            }
            let tx = waiting.pop_front().expect("the front exists");
            if tx.send(()).is_err() {
                // It gave up just now: the slot goes to the next.
                self.retrying.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.queued.store(waiting.len() as u64, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<oneshot::Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for RetryToken<'_> {
    fn drop(&mut self) {
        self.0.retrying.fetch_sub(1, Ordering::AcqRel);
        self.0.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn the_floor_applies_when_few_requests_are_active() {
        let b = RetryBudget::new(0.2, 3);
        let _a = b.enter();
        let mut t = Vec::new();
        for _ in 0..3 {
            t.push(b.retry(Duration::ZERO).await.expect("within the floor"));
        }
        assert!(b.retry(Duration::from_millis(5)).await.is_none());
        assert_eq!(b.exhausted(), 1);
        drop(t);
        assert!(b.retry(Duration::ZERO).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_of_no_retries_refuses_without_waiting() {
        let b = RetryBudget::new(0.0, 0);
        let _a = b.enter();
        let started = tokio::time::Instant::now();
        assert!(b.retry(LONG).await.is_none());
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(b.exhausted(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_of_active_requests_caps_retries() {
        let b = RetryBudget::new(0.2, 3);
        let active: Vec<_> = (0..100).map(|_| b.enter()).collect();
        let mut tokens = Vec::new();
        while let Some(t) = b.retry(Duration::ZERO).await {
            tokens.push(t);
        }
        assert_eq!(tokens.len(), 20);
        assert_eq!(b.exhausted(), 1);
        drop(active);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_without_room_waits_for_a_slot_to_come_back() {
        let b = RetryBudget::new(0.0, 1);
        let held = b.retry(LONG).await.expect("room for one");
        let started = tokio::time::Instant::now();
        let (waited, ()) = tokio::join!(b.retry(LONG), async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            drop(held);
        });
        assert!(waited.is_some(), "granted when the slot came back");
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert_eq!(b.exhausted(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_retries_get_room_in_the_order_they_asked() {
        let b = RetryBudget::new(0.0, 1);
        let held = b.retry(LONG).await.unwrap();
        let order = Mutex::new(Vec::new());
        let wait = |n: u32, after_ms: u64| {
            let (b, order) = (&b, &order);
            async move {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                let token = b.retry(LONG).await.expect("granted in time");
                order.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(token);
            }
        };
        let release = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
        };
        // Asked in the order 1, 2, 3; granted in that order.
        tokio::join!(wait(3, 30), wait(1, 10), wait(2, 20), release);
        assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_whose_time_runs_out_is_refused_and_leaves_no_slot_behind() {
        let b = RetryBudget::new(0.0, 1);
        let held = b.retry(LONG).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(b.retry(Duration::from_millis(40)).await.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(40));
        assert_eq!(b.exhausted(), 1);
        drop(held);
        assert_eq!(b.status()["retrying"], 0);
        assert!(b.retry(Duration::ZERO).await.is_some(), "the slot is free");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_raising_the_cap_lets_a_waiting_retry_go() {
        let b = RetryBudget::new(0.5, 1);
        let _one = b.enter();
        let _held = b.retry(LONG).await.unwrap();
        let (waited, _more) = tokio::join!(b.retry(LONG), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Four active requests: half of them, two retries, may run.
            [b.enter(), b.enter(), b.enter()]
        });
        assert!(waited.is_some());
        assert_eq!(b.status()["retrying"], 2);
    }
}
