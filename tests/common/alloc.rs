//! A global allocator that counts the live heap bytes allocated *by the current thread*, and
//! how many allocations (and bytes) it made in total.
//!
//! The simulation runs every task of a run on the thread that calls `block_on`, so for a sim
//! test this is the memory of its connections, unaffected by tests running on other threads.
//! Include with `#[path = "common/alloc.rs"] mod alloc;` in a test binary; it installs itself.
#![allow(dead_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// (allocations, bytes allocated) since the thread started, frees not subtracted.
    static TOTAL: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn add(delta: isize) {
    // `try_with`: allocations during thread teardown are not counted.
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

fn count(bytes: usize) {
    let _ = TOTAL.try_with(|t| {
        let (n, b) = t.get();
        t.set((n + 1, b + bytes as u64));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap bytes allocated by this thread (minus those it freed) since it started.
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

/// How many allocations (reallocations included) this thread made since it started, and how
/// many bytes they asked for: the work done, where [`live_bytes`] is what is kept.
pub fn allocated() -> (u64, u64) {
    TOTAL.with(Cell::get)
}

/// `bytes` in MiB, for messages.
pub fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
