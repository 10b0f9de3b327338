//! A value per thread, each alone on its cache lines: for what every worker
//! updates on every request (metric cells, the access-line buffers), so
//! that no two cores take the same lock or write the same line. Threads
//! are spread over [`SHARDS`] slots; threads beyond that share a slot, so a
//! slot's value must still be safe to share.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots; levee runs one worker per core.
pub const SHARDS: usize = 8;

/// One `T` per thread slot.
#[derive(Debug)]
pub struct PerThread<T>([Padded<T>; SHARDS]);

/// Aligned to two cache lines: the adjacent-line prefetcher pairs them.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T: Default> Default for PerThread<T> {
    fn default() -> Self {
        PerThread(std::array::from_fn(|_| Padded(T::default())))
    }
}

impl<T> PerThread<T> {
    /// This thread's value.
    pub fn mine(&self) -> &T {
        &self.0[slot()].0
    }

    /// Every slot's value.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

/// This thread's slot: below [`SHARDS`], the same for the thread's life.
pub fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SLOT.with(|s| *s)
}
