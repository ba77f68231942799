//! The command queue from a connection's handles to its driver.
//!
//! Bounded in count like `async_channel::bounded`, but allocated as it fills: a bounded channel
//! preallocates every slot (128 commands, ~7 KiB per connection, idle or not). This queue is a
//! `VecDeque` behind a mutex that grows on demand and gives back what a burst grew once it is
//! empty again, plus an atomic count that keeps the bound. Senders wait for room exactly as with
//! a bounded channel; the driver is woken through one `AtomicWaker` (no listener to register
//! each time it finds the queue empty, as an async channel's receiver does).
//!
//! Cancel safety: a slot is reserved and the command pushed in one synchronous step, so a
//! [`CommandSender::send`] future dropped while it waits has queued nothing and holds nothing.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use event_listener::Event;
use futures::{Stream, task::AtomicWaker};

use super::command::Command;

/// Commands an empty queue keeps room for; a burst's larger buffer is given back.
const KEEP_EMPTY: usize = 4;

/// A command queue holding at most `capacity` commands.
pub(crate) fn command_queue(capacity: usize) -> (CommandSender, CommandReceiver) {
    let inner = Arc::new(Inner {
        queue: Mutex::new(VecDeque::new()),
        queued: AtomicUsize::new(0),
        capacity,
        closed: AtomicBool::new(false),
        receiver: AtomicWaker::new(),
        freed: Event::new(),
    });
    (
        CommandSender {
            inner: inner.clone(),
        },
        CommandReceiver { inner },
    )
}

/// Why [`CommandSender::try_send`] handed a command back.
pub(crate) enum TrySendError {
    /// The queue holds `capacity` commands.
    Full(Command),
    /// The driver is gone; the command was dropped.
    Closed,
}

/// The driver is gone; the command was dropped.
#[derive(Debug)]
pub(crate) struct Closed;

/// What both ends share.
struct Inner {
    queue: Mutex<VecDeque<Command>>,
    /// Slots reserved: commands pushed (or being pushed) and not yet taken by the driver.
    queued: AtomicUsize,
    capacity: usize,
    /// Set by either end: the receiver refuses further commands, or the sender is gone.
    closed: AtomicBool,
    /// The driver's waker: woken by every command and by the sender's drop.
    receiver: AtomicWaker,
    /// Notified when the driver takes a command, and (all listeners) when it closes the queue.
    freed: Event,
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Command>> {
        // A panic while the lock was held cannot leave the deque itself inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(&self) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_additional(1);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes the oldest command, releasing its slot.
    fn take(&self) -> Option<Command> {
        let mut queue = self.queue();
        let cmd = queue.pop_front()?;
        if queue.is_empty() && queue.capacity() > KEEP_EMPTY {
            queue.shrink_to(KEEP_EMPTY);
        }
        drop(queue);
        self.release();
        Some(cmd)
    }
}

/// The handles' end; the queue closes when it is dropped.
pub(crate) struct CommandSender {
    inner: Arc<Inner>,
}

impl CommandSender {
    /// Queues `cmd` if there is room, without waiting.
    pub(crate) fn try_send(&self, cmd: Command) -> Result<(), TrySendError> {
        let inner = &*self.inner;
        if inner.is_closed() {
            return Err(TrySendError::Closed);
        }
        if !inner.reserve() {
            return Err(TrySendError::Full(cmd));
        }
        {
            let mut queue = inner.queue();
            // Checked under the lock: the receiver closes under it too, so a command is
            // either refused here or queued before the close and still taken.
            if inner.is_closed() {
                drop(queue);
                inner.release();
                return Err(TrySendError::Closed);
            }
            queue.push_back(cmd);
        }
        inner.receiver.wake();
        Ok(())
    }

    /// Queues `cmd`, waiting for room.
    ///
    /// Cancel safe: if the future is dropped, `cmd` was either queued or dropped, never both.
    pub(crate) async fn send(&self, mut cmd: Command) -> Result<(), Closed> {
        loop {
            match self.try_send(cmd) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed) => return Err(Closed),
                Err(TrySendError::Full(back)) => cmd = back,
            }
            // Listen before checking again: a command taken in between is not missed.
            let listener = self.inner.freed.listen();
            match self.try_send(cmd) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed) => return Err(Closed),
                Err(TrySendError::Full(back)) => cmd = back,
            }
            listener.await;
        }
    }

    /// A sender whose queue has no receiver: every command fails as on a closed connection.
    pub(crate) fn closed() -> Self {
        command_queue(1).0
    }
}

impl Drop for CommandSender {
    /// The last handle is gone: the driver sees the end of the stream once it has taken what
    /// is queued.
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.receiver.wake();
    }
}

/// The driver's end.
pub(crate) struct CommandReceiver {
    inner: Arc<Inner>,
}

impl CommandReceiver {
    /// Takes a queued command without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Command> {
        self.inner.take()
    }

    /// Refuses further commands; those queued can still be taken. Wakes every waiting sender.
    pub(crate) fn close(&mut self) {
        {
            let _queue = self.inner.queue();
            self.inner.closed.store(true, Ordering::Release);
        }
        self.inner.freed.notify(usize::MAX);
    }
}

impl Stream for CommandReceiver {
    type Item = Command;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Command>> {
        let inner = &*self.inner;
        if let Some(cmd) = inner.take() {
            return Poll::Ready(Some(cmd));
        }
        inner.receiver.register(cx.waker());
        // Checked again after registering: a command pushed in between has woken us, or is
        // found here.
        if let Some(cmd) = inner.take() {
            return Poll::Ready(Some(cmd));
        }
        if inner.is_closed() {
            // Closed under the lock (receiver) or after the sender's last push: nothing more
            // can arrive; one last look for a command that raced the flag.
            return Poll::Ready(inner.take());
        }
        Poll::Pending
    }
}

impl Drop for CommandReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, channel::oneshot, executor::block_on};

    use super::*;

    fn cmd() -> Command {
        Command::Close {
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn bounded_in_count_and_waits_for_room() {
        let (tx, mut rx) = command_queue(2);
        assert!(tx.try_send(cmd()).is_ok());
        assert!(block_on(tx.send(cmd())).is_ok());
        assert!(matches!(tx.try_send(cmd()), Err(TrySendError::Full(_))));
        let mut waiting = Box::pin(tx.send(cmd()));
        assert!(waiting.as_mut().now_or_never().is_none(), "full: must wait");
        assert!(rx.try_recv().is_some());
        assert!(
            matches!(waiting.now_or_never(), Some(Ok(()))),
            "room: must queue"
        );
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn a_dropped_send_queues_nothing_and_keeps_no_slot() {
        let (tx, mut rx) = command_queue(1);
        assert!(tx.try_send(cmd()).is_ok());
        let mut waiting = Box::pin(tx.send(cmd()));
        assert!(waiting.as_mut().now_or_never().is_none());
        drop(waiting);
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_none(), "the cancelled command was queued");
        assert!(tx.try_send(cmd()).is_ok(), "the cancelled send kept a slot");
    }

    #[test]
    fn the_stream_ends_after_what_was_queued_once_the_sender_is_gone() {
        use futures::StreamExt;
        let (tx, mut rx) = command_queue(4);
        assert!(tx.try_send(cmd()).is_ok());
        drop(tx);
        block_on(async {
            assert!(rx.next().await.is_some(), "queued before the drop: taken");
            assert!(rx.next().await.is_none(), "then the end");
        });
    }

    #[test]
    fn a_waiting_driver_is_woken_by_each_command_and_by_the_end() {
        use std::sync::atomic::AtomicUsize;

        use futures::{StreamExt, task::ArcWake};

        struct Count(AtomicUsize);
        impl ArcWake for Count {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = futures::task::waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = command_queue(4);
        assert!(rx.poll_next_unpin(&mut cx).is_pending());
        assert!(tx.try_send(cmd()).is_ok());
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "a command wakes the driver"
        );
        assert!(matches!(rx.poll_next_unpin(&mut cx), Poll::Ready(Some(_))));
        assert!(rx.poll_next_unpin(&mut cx).is_pending());
        drop(tx);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "the sender's drop wakes the driver"
        );
        assert!(matches!(rx.poll_next_unpin(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn an_empty_queue_gives_back_what_a_burst_grew() {
        let (tx, mut rx) = command_queue(200);
        for _ in 0..100 {
            assert!(tx.try_send(cmd()).is_ok());
        }
        assert!(rx.inner.queue().capacity() >= 100);
        while rx.try_recv().is_some() {}
        assert!(rx.inner.queue().capacity() <= KEEP_EMPTY);
        assert_eq!(
            rx.inner.queued.load(Ordering::SeqCst),
            0,
            "every slot released"
        );
    }

    #[test]
    fn close_wakes_waiting_senders_with_an_error() {
        let (tx, mut rx) = command_queue(1);
        assert!(tx.try_send(cmd()).is_ok());
        let mut waiting = Box::pin(tx.send(cmd()));
        assert!(waiting.as_mut().now_or_never().is_none());
        rx.close();
        assert!(matches!(waiting.now_or_never(), Some(Err(Closed))));
        assert!(
            rx.try_recv().is_some(),
            "queued before the close: still taken"
        );
        drop(rx);
        assert!(matches!(tx.try_send(cmd()), Err(TrySendError::Closed)));
        assert!(matches!(
            CommandSender::closed().try_send(cmd()),
            Err(TrySendError::Closed)
        ));
    }
}
