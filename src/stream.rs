//! Multicast event streams.
//!
//! Every event source of a connection is a multicast queue: bounded, in overflow mode.
//! Publishing never waits: when a subscriber falls behind by more than the queue's
//! capacity, its oldest unread events are dropped *for that subscriber only*, and its
//! [`EventStream`] counts them ([`EventStream::missed`]). The driver and the other subscribers
//! never notice a slow one.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use async_broadcast::{InactiveReceiver, Receiver, RecvError, Sender};
use futures::Stream;

/// The default number of events a subscriber may fall behind before it starts missing events.
pub(crate) const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// A multicast queue with no memory when nobody listens.
#[derive(Debug)]
pub(crate) struct Multicast<R> {
    tx: Sender<R>,
    // Keeps the channel open while there are no active subscribers.
    _keep: InactiveReceiver<R>,
}

impl<R: Clone> Multicast<R> {
    pub(crate) fn new(capacity: usize) -> Self {
        let (mut tx, rx) = async_broadcast::broadcast(capacity.max(1));
        tx.set_overflow(true);
        tx.set_await_active(false);
        Self {
            tx,
            _keep: rx.deactivate(),
        }
    }

    /// Publishes `item` to every current subscriber; never waits.
    pub(crate) fn publish(&self, item: R) {
        // Overflow mode never reports `Full`; `Inactive` (no subscriber) and `Closed` mean
        // nobody is there to receive it.
        let _ = self.tx.try_broadcast(item);
    }

    pub(crate) fn subscribe(&self) -> Receiver<R> {
        self.tx.new_receiver()
    }

    /// Ends every subscriber's stream once it has read what is already queued.
    pub(crate) fn close(&self) {
        self.tx.close();
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
/// A subscriber that stops reading never slows anyone else down: once it has fallen
/// [`DEFAULT_EVENT_CAPACITY`](crate::PeerConnectionBuilder::event_capacity) events behind,
/// its oldest unread events are discarded and counted in [`missed`](Self::missed).
#[must_use = "streams do nothing unless polled"]
pub struct EventStream<T> {
    inner: Box<dyn Source<T>>,
}

impl<T> EventStream<T> {
    pub(crate) fn new<R, F>(first: Option<T>, rx: Receiver<R>, convert: F) -> Self
    where
        T: Send + 'static,
        R: Clone + Send + Sync + 'static,
        F: FnMut(R) -> Option<T> + Send + 'static,
    {
        Self {
            inner: Box::new(Broadcast {
                first,
                rx,
                convert,
                missed: 0,
                lag: None,
            }),
        }
    }

    /// Like [`new`](Self::new), and also yields `lag(n)` in-band where `n` events were missed.
    pub(crate) fn with_lag<R, F>(
        first: Option<T>,
        rx: Receiver<R>,
        convert: F,
        lag: fn(u64) -> T,
    ) -> Self
    where
        T: Send + 'static,
        R: Clone + Send + Sync + 'static,
        F: FnMut(R) -> Option<T> + Send + 'static,
    {
        Self {
            inner: Box::new(Broadcast {
                first,
                rx,
                convert,
                missed: 0,
                lag: Some(lag),
            }),
        }
    }

    /// How many events this subscriber has missed so far because it fell too far behind.
    pub fn missed(&self) -> u64 {
        self.inner.missed()
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
}

struct Broadcast<R, T, F> {
    first: Option<T>,
    rx: Receiver<R>,
    convert: F,
    missed: u64,
    lag: Option<fn(u64) -> T>,
}

impl<R, T, F> Source<T> for Broadcast<R, T, F>
where
    T: Send,
    R: Clone + Send + Sync,
    F: FnMut(R) -> Option<T> + Send,
{
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        loop {
            match Pin::new(&mut self.rx).poll_recv(cx) {
                Poll::Ready(Some(Ok(raw))) => {
                    if let Some(item) = (self.convert)(raw) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(Some(Err(RecvError::Overflowed(n)))) => {
                    self.missed += n;
                    if let Some(lag) = self.lag {
                        return Poll::Ready(Some(lag(n)));
                    }
                }
                Poll::Ready(Some(Err(RecvError::Closed))) | Poll::Ready(None) => {
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn missed(&self) -> u64 {
        self.missed
    }
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, executor::block_on};

    use super::*;

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
        let mut s = EventStream::with_lag(None, m.subscribe(), Some, |n| 1000 + n as u32);
        for i in 0..5 {
            m.publish(i);
        }
        m.close();
        assert_eq!(block_on(s.by_ref().collect::<Vec<_>>()), vec![1003, 3, 4]);
        assert_eq!(s.missed(), 3);
    }
}
