//! The components' allocator: a bump arena that empties itself whenever
//! nothing in it is live, in front of the standard allocator.
//!
//! A policy keeps no heap memory between calls (its settings are plain
//! values), so everything allocated during a call (the arguments the host
//! copies in, their conversions, the decision and its lowered result) is
//! freed by the end of the call or of its post-return. Bumping a pointer
//! and counting live blocks is then all the bookkeeping a call needs: when
//! the count returns to zero the arena starts over. A block that does not
//! fit (a large view, an alignment above 16) comes from the standard
//! allocator instead; should a block ever outlive its call, the arena
//! simply stays full and every later block takes that path, which is
//! slower but still correct.
//!
//! About 20 blocks are allocated and freed per decision round; this takes
//! a tenth off the round's cost, against Rust's default `dlmalloc`.

// A `GlobalAlloc` is unsafe to implement and to call; the safety argument
// is on each `unsafe` item below.
#![allow(unsafe_code)]
// Outside single-threaded wasm only the tests use the arena.
#![cfg_attr(
    not(all(target_arch = "wasm32", not(target_feature = "atomics"))),
    allow(dead_code)
)]

use std::cell::{Cell, UnsafeCell};
use std::ptr::NonNull;

/// The largest alignment an arena serves (its own).
const ALIGN: usize = 16;

/// `N` bytes handed out bottom-up, and taken back all at once.
#[repr(C, align(16))]
pub(crate) struct Arena<const N: usize> {
    bytes: UnsafeCell<[u8; N]>,
    /// The first free byte.
    top: Cell<usize>,
    /// Blocks handed out and not yet freed.
    live: Cell<usize>,
}

impl<const N: usize> Arena<N> {
    pub(crate) const fn new() -> Self {
        Arena {
            bytes: UnsafeCell::new([0; N]),
            top: Cell::new(0),
            live: Cell::new(0),
        }
    }

    fn base(&self) -> *mut u8 {
        self.bytes.get().cast()
    }

    /// The offset of `ptr` in the arena, if it points into it.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        let offset = (ptr as usize).wrapping_sub(self.base() as usize);
        (offset < N).then_some(offset)
    }

    /// Whether `ptr` points into the arena.
    pub(crate) fn owns(&self, ptr: *mut u8) -> bool {
        self.offset(ptr).is_some()
    }

    /// A fresh block of `size` bytes aligned to `align` (a power of two),
    /// if it fits.
    pub(crate) fn alloc(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if align > ALIGN {
            return None;
        }
        let start = self.top.get().next_multiple_of(align);
        let end = start.checked_add(size).filter(|&end| end <= N)?;
        self.top.set(end);
        self.live.set(self.live.get() + 1);
        // `start <= end <= N`: within the arena, which is aligned to
        // `ALIGN`, so the block is aligned to `align`.
        NonNull::new(self.base().wrapping_add(start))
    }

    /// Takes a block back; when it was the last live one, the arena starts
    /// over.
    pub(crate) fn free(&self) {
        let live = self.live.get().saturating_sub(1);
        self.live.set(live);
        if live == 0 {
            self.top.set(0);
        }
    }

    /// Resizes the block at `ptr` (of `old` bytes) to `new` bytes where it
    /// is, if it can: the newest block grows or shrinks, any block shrinks.
    pub(crate) fn resize_in_place(&self, ptr: *mut u8, old: usize, new: usize) -> bool {
        let Some(offset) = self.offset(ptr) else {
            return false;
        };
        if offset + old == self.top.get() && offset + new <= N {
            self.top.set(offset + new);
            return true;
        }
        new <= old
    }
}

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
pub(crate) use global::PerCall;

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod global {
    use super::Arena;
    use std::alloc::{GlobalAlloc, Layout, System};

    /// Bytes in the components' arena.
    const SIZE: usize = 64 << 10;

    /// A wrapper that may be a `static`.
    struct Shared(Arena<SIZE>);

    // SAFETY: compiled only for wasm32 without the `atomics` feature, where
    // there is one thread: the arena is never shared between threads.
    unsafe impl Sync for Shared {}

    static ARENA: Shared = Shared(Arena::new());

    /// The arena, in front of [`System`].
    pub(crate) struct PerCall;

    // SAFETY: the arena hands out disjoint blocks (only bytes above `top`,
    // which it reuses only once every block is freed), aligned as asked;
    // the rest come from `System`. `owns` tells the two apart, as `System`
    // never hands out the arena's static bytes, so each block goes back to
    // the allocator it came from.
    unsafe impl GlobalAlloc for PerCall {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            match ARENA.0.alloc(layout.size(), layout.align()) {
                Some(ptr) => ptr.as_ptr(),
                // SAFETY: the caller's contract, passed on.
                None => unsafe { System.alloc(layout) },
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if ARENA.0.owns(ptr) {
                ARENA.0.free();
            } else {
                // SAFETY: not the arena's, so `System`'s.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if ARENA.0.resize_in_place(ptr, layout.size(), new_size) {
                return ptr;
            }
            if !ARENA.0.owns(ptr) {
                // SAFETY: the caller's contract, passed on; `System`'s block.
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            // SAFETY: `GlobalAlloc::realloc`'s contract makes this layout
            // valid.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: the caller's contract, passed on.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are valid for the smaller size, and
                // distinct (the old one is still live).
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(arena: &Arena<256>, size: usize, align: usize) -> usize {
        let ptr = arena.alloc(size, align).expect("fits");
        ptr.as_ptr() as usize - arena.base() as usize
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused_once_all_are_free() {
        let arena = Box::new(Arena::<256>::new());
        assert_eq!(addr(&arena, 3, 1), 0);
        assert_eq!(addr(&arena, 8, 8), 8);
        assert_eq!(addr(&arena, 1, 16), 16);
        arena.free();
        arena.free();
        assert_eq!(addr(&arena, 1, 1), 17, "one block is still live");
        arena.free();
        arena.free();
        assert_eq!(addr(&arena, 1, 1), 0, "every block was freed");
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let arena = Box::new(Arena::<256>::new());
        assert!(arena.alloc(8, 32).is_none(), "alignment above the arena's");
        assert!(arena.alloc(257, 1).is_none());
        assert_eq!(addr(&arena, 250, 1), 0);
        assert!(arena.alloc(8, 1).is_none());
        assert!(arena.alloc(usize::MAX, 1).is_none());
        assert!(!arena.owns(std::ptr::null_mut()));
        let outside = arena.base().wrapping_add(256);
        assert!(!arena.owns(outside));
    }

    #[test]
    fn the_newest_block_resizes_in_place_and_any_block_shrinks() {
        let arena = Box::new(Arena::<256>::new());
        let a = arena.alloc(8, 8).unwrap().as_ptr();
        let b = arena.alloc(8, 8).unwrap().as_ptr();
        assert!(arena.resize_in_place(b, 8, 100));
        assert_eq!(addr(&arena, 1, 1), 8 + 100, "b grew in place");
        assert!(!arena.resize_in_place(a, 8, 9), "a is not the newest");
        assert!(arena.resize_in_place(a, 8, 4));
        assert!(!arena.resize_in_place(b, 100, 300), "beyond the arena");
        let outside = arena.base().wrapping_add(300);
        assert!(!arena.resize_in_place(outside, 1, 1));
    }
}
