//! Metric handles for a few label sets, found by a short linear scan.
//!
//! prometheus-client's `Family::get_or_create` hashes the label set with
//! SipHash on every call. On the request path that hashing was the largest
//! part of what recording metrics costs (about 1 600 of 5 600 extra
//! instructions per request, measured with callgrind). The request path's
//! label sets are few and short, so this keeps the handles it has seen
//! (each an `Arc` inside) and finds them by comparing keys instead.
//!
//! Each thread looks in a slot of its own ([`PerThread`]): one lock taken
//! by every worker for every request would move its cache line between
//! cores each time.

use super::per_thread::PerThread;
use std::sync::RwLock;

/// Keys beyond this many are not kept: each lookup then goes to the family.
const MAX_KEPT: usize = 64;

/// Handles by key, in the order first seen, per thread slot.
#[derive(Debug)]
pub struct Few<K, M> {
    slots: PerThread<RwLock<Vec<(K, M)>>>,
}

impl<K, M> Default for Few<K, M> {
    fn default() -> Self {
        Few {
            slots: PerThread::default(),
        }
    }
}

impl<K, M: Clone> Few<K, M> {
    /// Runs `use_it` on the handle whose key `is` picks; when none is kept
    /// yet, `make` gives the key and the handle (from the family), which
    /// is kept for next time.
    pub fn with(
        &self,
        is: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, M),
        use_it: impl FnOnce(&M),
    ) {
        let shard = self.slots.mine();
        {
            let seen = shard.read().unwrap_or_else(|p| p.into_inner());
            if let Some((_, m)) = seen.iter().find(|(k, _)| is(k)) {
                return use_it(m);
            }
        }
        let (key, m) = make();
        use_it(&m);
        let mut seen = shard.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() < MAX_KEPT && !seen.iter().any(|(k, _)| is(k)) {
            seen.push((key, m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<K, M> Few<K, M> {
        /// Handles kept in this thread's slot.
        fn kept(&self) -> usize {
            self.slots.mine().read().unwrap().len()
        }
    }
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    #[test]
    fn handles_are_the_familys_and_kept_once() {
        let family: Family<Vec<(String, String)>, Counter> = Family::default();
        let few: Few<&'static str, Counter> = Few::default();
        let label = |o: &str| vec![("outcome".to_owned(), o.to_owned())];
        for outcome in ["2xx", "429", "2xx", "2xx"] {
            few.with(
                |k| *k == outcome,
                || (outcome, family.get_or_create(&label(outcome)).clone()),
                |c| {
                    c.inc();
                },
            );
        }
        assert_eq!(family.get_or_create(&label("2xx")).get(), 3);
        assert_eq!(family.get_or_create(&label("429")).get(), 1);
        assert_eq!(few.kept(), 2);
    }

    #[test]
    fn past_the_cap_every_lookup_goes_to_the_family() {
        let few: Few<u32, u32> = Few::default();
        let mut made = 0;
        for k in 0..(MAX_KEPT as u32 + 10) {
            few.with(
                |x| *x == k,
                || {
                    made += 1;
                    (k, k)
                },
                |_| {},
            );
        }
        few.with(|x| *x == MAX_KEPT as u32 + 5, || (0, 0), |_| {});
        assert_eq!(made, MAX_KEPT + 10);
        assert_eq!(few.kept(), MAX_KEPT);
    }

    #[test]
    fn each_thread_keeps_its_own() {
        let few: Few<u32, u32> = Few::default();
        let used: Vec<usize> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        few.with(|k| *k == 1, || (1, 1), |_| {});
                        assert_eq!(few.kept(), 1);
                        crate::telemetry::per_thread::slot()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut distinct = used.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let kept: usize = few.slots.all().map(|s| s.read().unwrap().len()).sum();
        assert_eq!(kept, distinct.len());
    }
}
