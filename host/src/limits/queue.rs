//! The bounded wait line for requests the limiter cannot admit yet: FIFO
//! within a priority, higher priorities first. Only the head tries to get
//! admitted, so a later arrival never overtakes an earlier one of its
//! priority. A place is left when dropped (a client that goes away), and
//! the next in line is woken.

use prometheus_client::metrics::gauge::Gauge;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

type Key = (Reverse<u8>, u64);

/// The wait line.
pub struct Queue {
    capacity: usize,
    inner: Mutex<Inner>,
    depth: Gauge,
}

#[derive(Default)]
struct Inner {
    waiting: BTreeMap<Key, Arc<Notify>>,
    next: u64,
}

/// A place in the line, left when dropped.
pub struct Place<'a> {
    queue: &'a Queue,
    key: Key,
    notify: Arc<Notify>,
}

impl Queue {
    /// A line of at most `capacity` waiters, its length kept in `depth`.
    pub fn new(capacity: usize, depth: Gauge) -> Queue {
        Queue {
            capacity,
            inner: Mutex::new(Inner::default()),
            depth,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waiters now.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Joins the line with `priority` (higher goes first), or `None` when
    /// it is full.
    pub fn join(&self, priority: u8) -> Option<Place<'_>> {
        let mut inner = self.lock();
        if inner.waiting.len() >= self.capacity {
            return None;
        }
        let key = (Reverse(priority), inner.next);
        inner.next += 1;
        let notify = Arc::new(Notify::new());
        inner.waiting.insert(key, notify.clone());
        self.depth.set(inner.waiting.len() as i64);
        Some(Place {
            queue: self,
            key,
            notify,
        })
    }
}

impl Place<'_> {
    /// Whether this place is at the head of the line.
    pub fn is_head(&self) -> bool {
        self.queue
            .lock()
            .waiting
            .first_key_value()
            .is_some_and(|(k, _)| *k == self.key)
    }

    /// Waits until this place is at the head.
    pub async fn turn(&self) {
        while !self.is_head() {
            self.notify.notified().await;
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut inner = self.queue.lock();
        inner.waiting.remove(&self.key);
        self.queue.depth.set(inner.waiting.len() as i64);
        if let Some((_, next)) = inner.waiting.first_key_value() {
            next.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_fifo_per_priority_and_bounded() {
        let q = Queue::new(3, Gauge::default());
        let a = q.join(0).unwrap();
        let b = q.join(0).unwrap();
        assert!(a.is_head() && !b.is_head());
        let urgent = q.join(5).unwrap();
        assert!(urgent.is_head(), "a higher priority goes first");
        assert!(q.join(9).is_none(), "full");
        drop(urgent);
        assert!(a.is_head());
        drop(a);
        assert!(b.is_head());
        assert_eq!(q.len(), 1);
    }

    #[tokio::test]
    async fn leaving_wakes_the_next_in_line() {
        let q = Queue::new(2, Gauge::default());
        let a = q.join(0).unwrap();
        let b = q.join(0).unwrap();
        let waiter = async { b.turn().await };
        let leave = async {
            tokio::task::yield_now().await;
            drop(a);
        };
        let ((), ()) = tokio::join!(waiter, leave);
        assert_eq!(q.len(), 1);
    }
}
