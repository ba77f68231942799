//! Small synchronisation helpers shared by every layer.

use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicUsize, Ordering},
};

/// Locks `m`, ignoring poisoning: no code holding these locks can leave them inconsistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Process-wide counts of live objects, for leak tests (read through
/// [`crate::__live`]).
pub(crate) static LIVE_DRIVERS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static LIVE_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static LIVE_CHANNELS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static LIVE_SUBSCRIPTIONS: AtomicUsize = AtomicUsize::new(0);

/// Counts one live object in a counter while it exists (a field of the counted object).
pub(crate) struct Live(&'static AtomicUsize);

impl Live {
    pub(crate) fn new(counter: &'static AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
