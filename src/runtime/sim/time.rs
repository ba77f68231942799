//! Virtual time: the timer registry, the runtime's timer, and the `sleep` / `timeout` futures.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    fmt,
    future::Future,
    pin::Pin,
    sync::Weak,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use super::{Inner, SimHandle};
use crate::{runtime::AsyncTimer, sync::lock};

/// Every timer of a simulation. Deadlines are offsets from the simulation's start.
///
/// The heap holds `(deadline, seq, id)`; an entry is live only while its `seq` is the timer's
/// `armed` one, so resets and drops need no heap surgery (stale entries are skipped).
#[derive(Default)]
pub(super) struct Timers {
    entries: BTreeMap<u64, Entry>,
    heap: BinaryHeap<Reverse<(Duration, u64, u64)>>,
    next_id: u64,
}

struct Entry {
    deadline: Duration,
    waker: Option<Waker>,
    /// Sequence number of this timer's live heap entry.
    armed: Option<u64>,
}

impl Timers {
    pub(super) fn insert(&mut self, deadline: Duration, seq: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                deadline,
                waker: None,
                armed: Some(seq),
            },
        );
        self.heap.push(Reverse((deadline, seq, id)));
        id
    }

    pub(super) fn reset(&mut self, id: u64, deadline: Duration, seq: u64) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.deadline = deadline;
            e.armed = Some(seq);
            self.heap.push(Reverse((deadline, seq, id)));
        }
    }

    /// Whether timer `id` has expired at `now`; registers `waker` otherwise.
    pub(super) fn poll(&mut self, id: u64, now: Duration, waker: &Waker, seq: u64) -> bool {
        let Some(e) = self.entries.get_mut(&id) else {
            return true; // cannot happen while the timer object exists
        };
        if now >= e.deadline {
            return true;
        }
        match &mut e.waker {
            Some(w) if w.will_wake(waker) => {}
            w => *w = Some(waker.clone()),
        }
        if e.armed.is_none() {
            e.armed = Some(seq);
            self.heap.push(Reverse((e.deadline, seq, id)));
        }
        false
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<Waker> {
        self.entries.remove(&id).and_then(|e| e.waker)
    }

    /// Drops stale heap entries and entries of timers nobody waits on (nothing can come of
    /// firing those; they re-enter the heap when polled).
    fn clean(&mut self) {
        while let Some(Reverse((_, seq, id))) = self.heap.peek().copied() {
            match self.entries.get_mut(&id) {
                Some(e) if e.armed == Some(seq) => {
                    if e.waker.is_some() {
                        return;
                    }
                    e.armed = None;
                }
                _ => {}
            }
            self.heap.pop();
        }
    }

    /// `(deadline, seq)` of the earliest timer somebody waits on.
    pub(super) fn peek(&mut self) -> Option<(Duration, u64)> {
        self.clean();
        self.heap.peek().map(|Reverse((d, seq, _))| (*d, *seq))
    }

    /// Takes the earliest timer (as found by [`peek`](Self::peek)) out of the heap and returns
    /// its waker.
    pub(super) fn fire(&mut self) -> Option<Waker> {
        let Reverse((_, _, id)) = self.heap.pop()?;
        let e = self.entries.get_mut(&id)?;
        e.armed = None;
        e.waker.take()
    }

    pub(super) fn clear_wakers(&mut self) -> Vec<Waker> {
        self.heap.clear();
        self.entries
            .values_mut()
            .filter_map(|e| {
                e.armed = None;
                e.waker.take()
            })
            .collect()
    }
}

/// The timer the simulation hands to connection drivers ([`Runtime::new_timer`]).
///
/// [`Runtime::new_timer`]: crate::runtime::Runtime::new_timer
pub(super) struct SimTimer {
    sim: Weak<Inner>,
    id: u64,
}

impl SimTimer {
    pub(super) fn new(handle: &SimHandle, deadline: Instant) -> Self {
        let inner = &handle.inner;
        let mut world = lock(&inner.world);
        let deadline = inner.offset(deadline);
        let seq = world.next_seq();
        let id = world.timers.insert(deadline, seq);
        Self {
            sim: std::sync::Arc::downgrade(inner),
            id,
        }
    }

    fn reset_to(&self, deadline: Instant) {
        if let Some(inner) = self.sim.upgrade() {
            let mut world = lock(&inner.world);
            let deadline = inner.offset(deadline);
            let seq = world.next_seq();
            world.timers.reset(self.id, deadline, seq);
        }
    }

    fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(inner) = self.sim.upgrade() else {
            return Poll::Pending; // the simulation is gone: time stands still
        };
        let mut world = lock(&inner.world);
        let (now, seq) = (world.now, world.next_seq());
        if world.timers.poll(self.id, now, cx.waker(), seq) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for SimTimer {
    fn drop(&mut self) {
        if let Some(inner) = self.sim.upgrade() {
            let waker = lock(&inner.world).timers.remove(self.id);
            drop(waker); // outside the lock
        }
    }
}

impl fmt::Debug for SimTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTimer").field("id", &self.id).finish()
    }
}

impl AsyncTimer for SimTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.reset_to(deadline);
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_expired(cx)
    }
}

/// Waits until a point in virtual time; see [`SimHandle::sleep`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Sleep {
    timer: SimTimer,
    deadline: Instant,
}

impl Sleep {
    pub(super) fn new(handle: &SimHandle, deadline: Instant) -> Self {
        Self {
            timer: SimTimer::new(handle, deadline),
            deadline,
        }
    }

    /// The instant (on the simulation's clock) this sleep completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline, as if the sleep had been created for `deadline`.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.timer.reset_to(deadline);
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.timer.poll_expired(cx)
    }
}

/// Runs a future with a limit in virtual time; see [`SimHandle::timeout`].
#[must_use = "futures do nothing unless polled"]
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
    limit: Duration,
}

impl<F> Timeout<F> {
    pub(super) fn new(future: F, sleep: Sleep, limit: Duration) -> Self {
        Self {
            future: Box::pin(future),
            sleep,
            limit,
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(v) = this.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(this.limit))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// The error of a [`Timeout`]: the limit passed, in virtual time, before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(Duration);

impl Elapsed {
    /// The limit that passed.
    pub fn limit(&self) -> Duration {
        self.0
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline of {:?} (virtual time) elapsed", self.0)
    }
}

impl std::error::Error for Elapsed {}
