//! The command queue from a connection's handles to its driver.
//!
//! Bounded in count like `async_channel::bounded`, but allocated as it fills: a bounded channel
//! preallocates every slot (128 commands, ~7 KiB per connection, idle or not), while this queue
//! stores commands in an unbounded channel (blocks allocated on demand) and keeps the bound
//! itself, in an atomic count. Senders wait for room exactly as with a bounded channel.
//!
//! Cancel safety: a slot is reserved and the command pushed in one synchronous step, so a
//! [`CommandSender::send`] future dropped while it waits has queued nothing and holds nothing.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use event_listener::Event;
use futures::Stream;

use super::command::Command;

/// A command queue holding at most `capacity` commands.
pub(crate) fn command_queue(capacity: usize) -> (CommandSender, CommandReceiver) {
    let (tx, rx) = async_channel::unbounded();
    let room = Arc::new(Room {
        queued: AtomicUsize::new(0),
        capacity,
        freed: Event::new(),
    });
    (
        CommandSender {
            tx,
            room: room.clone(),
        },
        CommandReceiver {
            rx: Box::pin(rx),
            room,
        },
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

/// The count shared by both ends.
struct Room {
    /// Commands pushed and not yet taken by the driver.
    queued: AtomicUsize,
    capacity: usize,
    /// Notified when the driver takes a command, and (all listeners) when it closes the queue.
    freed: Event,
}

impl Room {
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
}

/// The handles' end; the queue closes when it is dropped.
pub(crate) struct CommandSender {
    tx: async_channel::Sender<Command>,
    room: Arc<Room>,
}

impl CommandSender {
    /// Queues `cmd` if there is room, without waiting.
    pub(crate) fn try_send(&self, cmd: Command) -> Result<(), TrySendError> {
        if self.tx.is_closed() {
            return Err(TrySendError::Closed);
        }
        if !self.room.reserve() {
            return Err(TrySendError::Full(cmd));
        }
        self.tx.try_send(cmd).map_err(|_| {
            // Closed meanwhile (the channel is unbounded: never full).
            self.room.release();
            TrySendError::Closed
        })
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
            let listener = self.room.freed.listen();
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

/// The driver's end.
pub(crate) struct CommandReceiver {
    rx: Pin<Box<async_channel::Receiver<Command>>>,
    room: Arc<Room>,
}

impl CommandReceiver {
    /// Takes a queued command without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Command> {
        let cmd = self.rx.try_recv().ok()?;
        self.room.release();
        Some(cmd)
    }

    /// Refuses further commands; those queued can still be taken. Wakes every waiting sender.
    pub(crate) fn close(&mut self) {
        self.rx.close();
        self.room.freed.notify(usize::MAX);
    }
}

impl Stream for CommandReceiver {
    type Item = Command;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Command>> {
        let poll = self.rx.as_mut().poll_next(cx);
        if let Poll::Ready(Some(_)) = poll {
            self.room.release();
        }
        poll
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
