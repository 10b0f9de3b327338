//! Which worker thread is running: the gateway's workers each set their
//! index once, and the upstream client picks that worker's connection
//! pool by it.

use std::cell::Cell;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running on this thread (0 elsewhere).
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Marks this thread as worker `index`.
pub fn set_current(index: usize) {
    INDEX.with(|i| i.set(index));
}
