//! Multicast event streams.
//!
//! Every event source of a connection is a multicast queue: bounded, in overflow mode.
//! Publishing never waits: when a subscriber falls behind by more than the queue's
//! capacity, its oldest unread events are dropped *for that subscriber only*, and its
//! [`EventStream`] counts them ([`EventStream::missed`]). The driver and the other subscribers
//! never notice a slow one.
//!
//! # Why not `async-broadcast`
//!
//! The queue is this crate's own ring rather than `async-broadcast` 0.7, because measured side
//! by side (`cargo bench --bench multicast`, one run on a shared 2-core machine) the ring is
//! faster and smaller where it matters. `async-broadcast` was used as this crate would have
//! to use it: overflow mode, an `InactiveReceiver` keeping each queue alive with no
//! subscriber, and its capacity grown on demand from 1 to the event capacity (its
//! `broadcast(cap)` allocates the whole capacity up front). Events of 64 bytes:
//!
//! | | ring | async-broadcast |
//! |---|---:|---:|
//! | idle queue, no subscriber | 136 B | 208 B |
//! | idle subscriber | 76 B | 24 B |
//! | idle connection (10 queues, 2 subscribers) | 1,688 B | 2,152 B |
//! | queue + 1 subscriber after 1,024 events read | 65,792 B | 73,976 B |
//! | events/s, 1 subscriber | 22.5 M | 14.1 M |
//! | events/s, 8 subscribers | 6.3 M | 3.5 M |
//!
//! Beyond the figures, `async-broadcast`'s `Stream` skips lost events silently (the lag
//! count needs `recv`), and it has no "skip to the newest" for the conflating state streams.

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use futures::Stream;

use crate::sync::{LIVE_SUBSCRIPTIONS, Live, lock};

/// The default number of events a subscriber may fall behind before it starts missing events.
pub(crate) const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// A multicast queue: one publisher, any number of subscribers, each reading at its own pace.
///
/// Publishing never waits. The queue holds only what some subscriber has not read yet (nothing
/// at all when nobody listens), and at most `capacity` items: beyond that the oldest item is
/// dropped and the subscribers that had not read it are told how many they missed. Memory
/// grows with use, not with the capacity (a preallocating broadcast channel would cost a full
/// queue per event source per connection).
pub(crate) struct Multicast<T> {
    ring: Arc<Mutex<Ring<T>>>,
}

struct Ring<T> {
    queue: VecDeque<T>,
    /// Sequence number of `queue[0]`.
    head: u64,
    capacity: usize,
    closed: bool,
    subscribers: Vec<Option<Subscriber>>,
    free: Vec<usize>,
}

struct Subscriber {
    /// Sequence number of the next item this subscriber reads.
    next: u64,
    waker: Option<Waker>,
}

impl<T> Ring<T> {
    fn tail(&self) -> u64 {
        self.head + self.queue.len() as u64
    }

    /// Drops items every subscriber has read.
    fn trim(&mut self) {
        let min = self
            .subscribers
            .iter()
            .flatten()
            .map(|s| s.next)
            .min()
            .unwrap_or_else(|| self.tail());
        while self.head < min && self.queue.pop_front().is_some() {
            self.head += 1;
        }
    }

    fn wake_all(&mut self) {
        for s in self.subscribers.iter_mut().flatten() {
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }
}

impl<T: Clone> Multicast<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            ring: Arc::new(Mutex::new(Ring {
                queue: VecDeque::new(),
                head: 0,
                capacity: capacity.max(1),
                closed: false,
                subscribers: Vec::new(),
                free: Vec::new(),
            })),
        }
    }

    /// Publishes `item` to every current subscriber; never waits.
    pub(crate) fn publish(&self, item: T) {
        let mut ring = lock(&self.ring);
        if ring.closed || ring.free.len() == ring.subscribers.len() {
            return; // closed, or nobody listens
        }
        ring.queue.push_back(item);
        if ring.queue.len() > ring.capacity {
            ring.queue.pop_front();
            ring.head += 1;
        }
        ring.wake_all();
    }

    /// Whether anybody subscribes now.
    pub(crate) fn has_subscribers(&self) -> bool {
        let ring = lock(&self.ring);
        ring.free.len() < ring.subscribers.len()
    }

    /// A subscriber that receives every item published from now on.
    pub(crate) fn subscribe(&self) -> Receiver<T> {
        let mut ring = lock(&self.ring);
        let sub = Subscriber {
            next: ring.tail(),
            waker: None,
        };
        let id = match ring.free.pop() {
            Some(id) => {
                ring.subscribers[id] = Some(sub);
                id
            }
            None => {
                ring.subscribers.push(Some(sub));
                ring.subscribers.len() - 1
            }
        };
        Receiver {
            ring: self.ring.clone(),
            id,
            _live: Live::new(&LIVE_SUBSCRIPTIONS),
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.ring).closed
    }

    /// Ends every subscriber's stream once it has read what is already queued.
    pub(crate) fn close(&self) {
        let mut ring = lock(&self.ring);
        ring.closed = true;
        ring.wake_all();
    }
}

impl<T> Drop for Multicast<T> {
    fn drop(&mut self) {
        let mut ring = lock(&self.ring);
        ring.closed = true;
        ring.wake_all();
    }
}

impl<T> fmt::Debug for Multicast<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = lock(&self.ring);
        f.debug_struct("Multicast")
            .field("queued", &ring.queue.len())
            .field("capacity", &ring.capacity)
            .field("closed", &ring.closed)
            .finish()
    }
}

/// One subscriber of a [`Multicast`].
pub(crate) struct Receiver<T> {
    ring: Arc<Mutex<Ring<T>>>,
    id: usize,
    _live: Live,
}

impl<T: Clone> Receiver<T> {
    /// The next item, `Err(n)` if `n` items were lost to overflow first, `None` once closed
    /// and drained.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, u64>>> {
        let mut ring = lock(&self.ring);
        let head = ring.head;
        let Some(sub) = ring.subscribers[self.id].as_mut() else {
            return Poll::Ready(None);
        };
        if sub.next < head {
            let missed = head - sub.next;
            sub.next = head;
            return Poll::Ready(Some(Err(missed)));
        }
        let index = (sub.next - head) as usize;
        if let Some(item) = ring.queue.get(index).cloned() {
            if let Some(sub) = ring.subscribers[self.id].as_mut() {
                sub.next += 1;
            }
            if index == 0 {
                ring.trim();
            }
            return Poll::Ready(Some(Ok(item)));
        }
        if ring.closed {
            return Poll::Ready(None);
        }
        if let Some(sub) = ring.subscribers[self.id].as_mut() {
            sub.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Skips to the newest queued item and returns it (the subscriber's next read is the
    /// first item published after it), with how many queued items were skipped before it.
    fn skip_to_latest(&mut self) -> Option<(T, u64)> {
        let mut ring = lock(&self.ring);
        let tail = ring.tail();
        let head = ring.head;
        let latest = ring.queue.back().cloned()?;
        let sub = ring.subscribers[self.id].as_mut()?;
        let skipped = (tail - 1).saturating_sub(sub.next.max(head));
        sub.next = tail;
        ring.trim();
        Some((latest, skipped))
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut ring = lock(&self.ring);
        ring.subscribers[self.id] = None;
        ring.free.push(self.id);
        ring.trim();
    }
}

/// A subscription to one of a connection's event sources.
///
/// Created by [`PeerConnection::events`](crate::PeerConnection::events) and its typed
/// views, and by [`DataChannel::events`](crate::DataChannel::events). Each subscriber
/// receives every event published after it subscribed, in order; a stream of states yields
/// the current state first. The stream ends when its source closes (for a connection: after
/// [`PeerConnection::close`](crate::PeerConnection::close) or when the last handle is
/// dropped).
///
/// A subscriber that stops reading never slows anyone else down: once it has fallen more
/// than the connection's event capacity behind (default 1024,
/// [`PeerConnectionBuilder::event_capacity`](crate::PeerConnectionBuilder::event_capacity)),
/// its oldest unread events are discarded and counted in [`missed`](Self::missed).
#[must_use = "streams do nothing unless polled"]
pub struct EventStream<T> {
    inner: Box<dyn Source<T>>,
}

impl<T> EventStream<T> {
    pub(crate) fn new<R, F>(first: Option<T>, rx: Receiver<R>, convert: F) -> Self
    where
        T: Send + 'static,
        R: Clone + Send + 'static,
        F: FnMut(R) -> Option<T> + Send + 'static,
    {
        Self::build(first, Held::default(), rx, convert, Lag::Count)
    }

    /// Like [`new`](Self::new), but conflating: a subscriber that fell behind skips to the
    /// newest item (what was skipped is counted in [`missed`](Self::missed)), so for a stream
    /// of states it never lags behind the current state by more than the queue's capacity and
    /// always ends up reading the latest one.
    pub(crate) fn conflating<R, F>(first: Option<T>, rx: Receiver<R>, convert: F) -> Self
    where
        T: Send + 'static,
        R: Clone + Send + 'static,
        F: FnMut(R) -> Option<T> + Send + 'static,
    {
        Self::build(first, Held::default(), rx, convert, Lag::Conflate)
    }

    /// Like [`new`](Self::new) (with the lag marker if `lag` is set), but yields the items
    /// `held` for the first reader before the subscription's, `held.lost` counting as missed.
    pub(crate) fn with_held<R, F>(
        held: Held<R>,
        rx: Receiver<R>,
        convert: F,
        lag: Option<fn(u64) -> T>,
    ) -> Self
    where
        T: Send + 'static,
        R: Clone + Send + 'static,
        F: FnMut(R) -> Option<T> + Send + 'static,
    {
        let lag = match lag {
            Some(marker) => Lag::Marker(marker),
            None => Lag::Count,
        };
        Self::build(None, held, rx, convert, lag)
    }

    fn build<R, F>(
        first: Option<T>,
        held: Held<R>,
        rx: Receiver<R>,
        convert: F,
        lag: Lag<T>,
    ) -> Self
    where
        T: Send + 'static,
        R: Clone + Send + 'static,
        F: FnMut(R) -> Option<T> + Send + 'static,
    {
        Self {
            inner: Box::new(Broadcast {
                first,
                held,
                rx,
                convert,
                missed: 0,
                lag,
            }),
        }
    }

    /// How many events this subscriber has missed so far because it fell too far behind.
    pub fn missed(&self) -> u64 {
        self.inner.missed()
    }

    /// This stream with its losses in band: every item as [`WithLag::Item`], and a
    /// [`WithLag::Lagged`] at each point where items were lost (because this subscriber fell
    /// more than the event capacity behind), before the item that follows the gap. For the
    /// typed streams without a lag marker of their own —
    /// [`data_channels`](crate::PeerConnection::data_channels),
    /// [`tracks`](crate::PeerConnection::tracks),
    /// [`ice_candidate_errors`](crate::PeerConnection::ice_candidate_errors), the state
    /// streams — where [`missed`](Self::missed) alone would say only *that* something was
    /// lost, not *where*. ([`events`](crate::PeerConnection::events) and
    /// [`ice_candidates`](crate::PeerConnection::ice_candidates) already yield a `Lagged`
    /// item of their own, and yield it as [`WithLag::Item`] here: no loss is reported twice.)
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) {
    /// use futures::StreamExt;
    /// use webrtc_streams::WithLag;
    /// let mut channels = pc.data_channels().with_lag();
    /// while let Some(next) = channels.next().await {
    ///     match next {
    ///         WithLag::Item(dc) => println!("remote channel {}", dc.label()),
    ///         WithLag::Lagged { missed } => {
    ///             // Their channels were not announced here; unless another subscriber holds
    ///             // them, the connection closes them and the peer sees them closed.
    ///             eprintln!("{missed} remote channels missed: read faster");
    ///         }
    ///     }
    /// }
    /// # }
    /// ```
    pub fn with_lag(self) -> LagStream<T> {
        let reported = self.missed();
        LagStream {
            inner: self,
            reported,
            next: None,
        }
    }
}

/// An item of a [`LagStream`]: an item of the underlying [`EventStream`], or the mark of
/// items lost at this point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithLag<T> {
    /// The next item.
    Item(T),
    /// The subscriber fell more than the event capacity behind and lost `missed` items here,
    /// between the item before and the one after.
    Lagged {
        /// How many items were lost.
        missed: u64,
    },
}

/// An [`EventStream`] whose losses are items too: see [`EventStream::with_lag`].
#[must_use = "streams do nothing unless polled"]
pub struct LagStream<T> {
    inner: EventStream<T>,
    /// Losses already reported.
    reported: u64,
    /// The item that followed a gap, yielded after its `Lagged`.
    next: Option<T>,
}

impl<T> LagStream<T> {
    /// How many items were lost so far (see [`EventStream::missed`]).
    pub fn missed(&self) -> u64 {
        self.inner.missed()
    }

    /// A loss not reported yet, if any (and if the stream does not mark its own).
    fn unreported(&mut self) -> Option<WithLag<T>> {
        let missed = self.inner.missed();
        if missed == self.reported {
            return None;
        }
        let new = missed - self.reported;
        self.reported = missed;
        (!self.inner.inner.marks_lag()).then_some(WithLag::Lagged { missed: new })
    }
}

// Nothing of `T` is ever pinned: the item waiting after a gap is moved out as it is.
impl<T> Unpin for LagStream<T> {}

impl<T> Stream for LagStream<T> {
    type Item = WithLag<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WithLag<T>>> {
        let this = self.get_mut();
        if let Some(item) = this.next.take() {
            return Poll::Ready(Some(WithLag::Item(item)));
        }
        match this.inner.inner.poll_next(cx) {
            Poll::Ready(Some(item)) => match this.unreported() {
                Some(lag) => {
                    this.next = Some(item);
                    Poll::Ready(Some(lag))
                }
                None => Poll::Ready(Some(WithLag::Item(item))),
            },
            // Losses just before the end are reported before it.
            Poll::Ready(None) => Poll::Ready(this.unreported()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> fmt::Debug for LagStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagStream")
            .field("missed", &self.missed())
            .finish_non_exhaustive()
    }
}

impl<T> Stream for EventStream<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().inner.poll_next(cx)
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("missed", &self.missed())
            .finish_non_exhaustive()
    }
}

trait Source<T>: Send {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>>;
    fn missed(&self) -> u64;
    /// Whether the stream yields its own marker where items were lost.
    fn marks_lag(&self) -> bool;
}

/// Items kept for a stream's first reader because nobody listened when they were published
/// (remote data channels and tracks, see [`Hub`](crate::shared::hub::Hub)), and how many of
/// them were dropped because the hold was full.
pub(crate) struct Held<R> {
    pub(crate) items: VecDeque<R>,
    pub(crate) lost: u64,
}

impl<R> Default for Held<R> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            lost: 0,
        }
    }
}

/// What a stream does when its subscriber fell behind and lost items.
enum Lag<T> {
    /// Counts them in [`EventStream::missed`] only.
    Count,
    /// Also yields this marker in their place.
    Marker(fn(u64) -> T),
    /// Also skips to the newest item (for states: the current one).
    Conflate,
}

struct Broadcast<R, T, F> {
    first: Option<T>,
    held: Held<R>,
    rx: Receiver<R>,
    convert: F,
    missed: u64,
    lag: Lag<T>,
}

impl<R, T, F> Source<T> for Broadcast<R, T, F>
where
    T: Send,
    R: Clone + Send,
    F: FnMut(R) -> Option<T> + Send,
{
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        if self.held.lost > 0 {
            let n = std::mem::take(&mut self.held.lost);
            self.missed += n;
            if let Lag::Marker(lag) = self.lag {
                return Poll::Ready(Some(lag(n)));
            }
        }
        while let Some(raw) = self.held.items.pop_front() {
            if let Some(item) = (self.convert)(raw) {
                return Poll::Ready(Some(item));
            }
        }
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(raw))) => {
                    if let Some(item) = (self.convert)(raw) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(Some(Err(n))) => {
                    self.missed += n;
                    match self.lag {
                        Lag::Count => {}
                        Lag::Marker(lag) => return Poll::Ready(Some(lag(n))),
                        Lag::Conflate => {
                            if let Some((raw, skipped)) = self.rx.skip_to_latest() {
                                self.missed += skipped;
                                if let Some(item) = (self.convert)(raw) {
                                    return Poll::Ready(Some(item));
                                }
                            }
                        }
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn missed(&self) -> u64 {
        self.missed
    }

    fn marks_lag(&self) -> bool {
        matches!(self.lag, Lag::Marker(_))
    }
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, executor::block_on};

    use super::*;

    #[test]
    fn with_lag_marks_each_gap_where_it_was() {
        let m = Multicast::<u32>::new(4);
        let mut s = EventStream::new(None, m.subscribe(), Some).with_lag();
        block_on(async {
            m.publish(0);
            assert_eq!(s.next().await, Some(WithLag::Item(0)));
            for i in 1..=10 {
                m.publish(i); // 1..=6 are lost: only the last 4 stay
            }
            assert_eq!(s.next().await, Some(WithLag::Lagged { missed: 6 }));
            for i in 7..=10 {
                assert_eq!(s.next().await, Some(WithLag::Item(i)));
            }
            for i in 11..=20 {
                m.publish(i);
            }
            m.close();
            assert_eq!(s.next().await, Some(WithLag::Lagged { missed: 6 }));
            for i in 17..=20 {
                assert_eq!(s.next().await, Some(WithLag::Item(i)));
            }
            assert_eq!(s.next().await, None);
            assert_eq!(s.missed(), 12);
        });
    }

    #[test]
    fn with_lag_on_a_conflating_stream_marks_the_skip_before_the_newest() {
        let m = Multicast::<u32>::new(2);
        let mut s = EventStream::conflating(Some(100), m.subscribe(), Some).with_lag();
        block_on(async {
            assert_eq!(s.next().await, Some(WithLag::Item(100)));
            for i in 0..10 {
                m.publish(i);
            }
            assert!(matches!(s.next().await, Some(WithLag::Lagged { missed }) if missed > 0));
            assert_eq!(s.next().await, Some(WithLag::Item(9)));
        });
    }

    #[test]
    fn with_lag_does_not_report_twice_what_a_stream_marks_itself() {
        let m = Multicast::<i64>::new(2);
        let held = Held::default();
        let mut s =
            EventStream::with_held(held, m.subscribe(), Some, Some(|n| -(n as i64))).with_lag();
        block_on(async {
            for i in 1..=5 {
                m.publish(i);
            }
            m.close();
            // The stream's own marker (-3) is an item; no `Lagged` beside it.
            assert_eq!(s.next().await, Some(WithLag::Item(-3)));
            assert_eq!(s.next().await, Some(WithLag::Item(4)));
            assert_eq!(s.next().await, Some(WithLag::Item(5)));
            assert_eq!(s.next().await, None);
        });
    }

    #[test]
    fn idle_subscriber_does_not_stall_others_and_counts_what_it_missed() {
        let m = Multicast::<u32>::new(64);
        let mut idle = EventStream::new(None, m.subscribe(), Some);
        let mut reader = EventStream::new(None, m.subscribe(), Some);
        block_on(async {
            for i in 0..10_000u32 {
                m.publish(i);
                assert_eq!(reader.next().await, Some(i));
            }
        });
        m.close();
        let rest: Vec<u32> = block_on(idle.by_ref().collect());
        assert_eq!(rest, (10_000 - 64..10_000).collect::<Vec<_>>());
        assert_eq!(idle.missed(), 10_000 - 64);
        assert_eq!(reader.missed(), 0);
    }

    #[test]
    fn subscribers_see_events_from_subscription_on_and_first_item_first() {
        let m = Multicast::<u32>::new(8);
        m.publish(1); // nobody listens: not kept
        let mut s = EventStream::new(Some(100), m.subscribe(), Some);
        m.publish(2);
        m.close();
        assert_eq!(block_on(s.by_ref().collect::<Vec<_>>()), vec![100, 2]);
    }

    #[test]
    fn in_band_lag_marker() {
        let m = Multicast::<u32>::new(2);
        let lag: fn(u64) -> u32 = |n| 1000 + n as u32;
        let mut s = EventStream::with_held(Held::default(), m.subscribe(), Some, Some(lag));
        for i in 0..5 {
            m.publish(i);
        }
        m.close();
        assert_eq!(block_on(s.by_ref().collect::<Vec<_>>()), vec![1003, 3, 4]);
        assert_eq!(s.missed(), 3);
    }

    #[test]
    fn a_conflating_subscriber_that_fell_behind_skips_to_the_newest_item() {
        let m = Multicast::<u32>::new(4);
        let mut s = EventStream::conflating(Some(0), m.subscribe(), Some);
        assert_eq!(block_on(s.next()), Some(0));
        for i in 1..=10 {
            m.publish(i);
        }
        assert_eq!(block_on(s.next()), Some(10));
        assert_eq!(s.missed(), 9);
        m.publish(11);
        m.close();
        assert_eq!(block_on(s.by_ref().collect::<Vec<_>>()), vec![11]);
        // Not behind: nothing skipped.
        let m = Multicast::<u32>::new(4);
        let mut s = EventStream::conflating(None, m.subscribe(), Some);
        for i in 1..=4 {
            m.publish(i);
        }
        m.close();
        assert_eq!(block_on(s.by_ref().collect::<Vec<_>>()), vec![1, 2, 3, 4]);
        assert_eq!(s.missed(), 0);
    }

    #[test]
    fn held_items_come_first_after_their_loss_count() {
        let m = Multicast::<u32>::new(8);
        let held = Held {
            items: VecDeque::from([7, 8]),
            lost: 2,
        };
        let lag: fn(u64) -> u32 = |n| 1000 + n as u32;
        let mut s = EventStream::with_held(held, m.subscribe(), Some, Some(lag));
        m.publish(9);
        m.close();
        assert_eq!(
            block_on(s.by_ref().collect::<Vec<_>>()),
            vec![1002, 7, 8, 9]
        );
        assert_eq!(s.missed(), 2);
    }
}
