//! The bounded wait lines for requests the limiter cannot admit yet, one
//! per model class: FIFO within a priority, higher priorities first. Only
//! a line's head tries to get admitted, so a later arrival never overtakes
//! an earlier one of its class and priority, and a class whose room is
//! spent never holds back another. A place is left when dropped (a client
//! that goes away), and the next in its line is woken.

use super::Class;
use prometheus_client::metrics::gauge::Gauge;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

type Key = (Reverse<u8>, u64);

/// The wait line: one line per model class, sharing one capacity.
pub struct Queue {
    capacity: usize,
    inner: Mutex<Inner>,
    depth: Gauge,
}

#[derive(Default)]
struct Inner {
    /// By class; made when first joined.
    lines: Vec<BTreeMap<Key, Arc<Notify>>>,
    /// Waiters in every line.
    len: usize,
    next: u64,
}

/// A place in a line, left when dropped.
pub struct Place<'a> {
    queue: &'a Queue,
    class: Class,
    key: Key,
    notify: Arc<Notify>,
}

impl Queue {
    /// A queue of at most `capacity` waiters in all, its length kept in
    /// `depth`.
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

    /// Waiters now, in every line.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether nobody waits in any line.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether nobody waits in `class`'s line.
    pub fn line_is_empty(&self, class: Class) -> bool {
        self.lock()
            .lines
            .get(usize::from(class))
            .is_none_or(BTreeMap::is_empty)
    }

    /// Joins `class`'s line with `priority` (higher goes first), or `None`
    /// when the queue is full.
    pub fn join(&self, class: Class, priority: u8) -> Option<Place<'_>> {
        let mut inner = self.lock();
        if inner.len >= self.capacity {
            return None;
        }
        let key = (Reverse(priority), inner.next);
        inner.next += 1;
        let notify = Arc::new(Notify::new());
        let i = usize::from(class);
        if inner.lines.len() <= i {
            inner.lines.resize_with(i + 1, BTreeMap::new);
        }
        inner.lines[i].insert(key, notify.clone());
        inner.len += 1;
        self.depth.set(inner.len as i64);
        Some(Place {
            queue: self,
            class,
            key,
            notify,
        })
    }
}

impl Place<'_> {
    /// Whether this place is at the head of its line.
    pub fn is_head(&self) -> bool {
        self.queue.lock().lines[usize::from(self.class)]
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
        let line = &mut inner.lines[usize::from(self.class)];
        line.remove(&self.key);
        if let Some((_, next)) = line.first_key_value() {
            next.notify_one();
        }
        inner.len -= 1;
        self.queue.depth.set(inner.len as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_fifo_per_priority_and_bounded() {
        let q = Queue::new(3, Gauge::default());
        let a = q.join(0, 0).unwrap();
        let b = q.join(0, 0).unwrap();
        assert!(a.is_head() && !b.is_head());
        let urgent = q.join(0, 5).unwrap();
        assert!(urgent.is_head(), "a higher priority goes first");
        assert!(q.join(0, 9).is_none(), "full");
        drop(urgent);
        assert!(a.is_head());
        drop(a);
        assert!(b.is_head());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn each_class_has_its_own_line_and_all_share_the_capacity() {
        let q = Queue::new(3, Gauge::default());
        let sonnet = q.join(1, 0).unwrap();
        let haiku = q.join(2, 0).unwrap();
        assert!(sonnet.is_head() && haiku.is_head(), "heads of their lines");
        assert!(!q.line_is_empty(1) && !q.line_is_empty(2) && q.line_is_empty(0));
        assert!(!q.is_empty());
        let later = q.join(1, 0).unwrap();
        assert!(!later.is_head(), "behind the earlier of its class");
        assert!(q.join(0, 0).is_none(), "three in all: full");
        drop(sonnet);
        assert!(later.is_head());
        assert_eq!(q.len(), 2);
    }

    #[tokio::test]
    async fn leaving_wakes_the_next_in_line() {
        let q = Queue::new(2, Gauge::default());
        let a = q.join(0, 0).unwrap();
        let b = q.join(0, 0).unwrap();
        let waiter = async { b.turn().await };
        let leave = async {
            tokio::task::yield_now().await;
            drop(a);
        };
        let ((), ()) = tokio::join!(waiter, leave);
        assert_eq!(q.len(), 1);
    }
}
