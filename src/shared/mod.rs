//! The small types the driver and the handles share: commands, the connection's shared state,
//! the event hub, per-channel state and counters. Everything above imports these; they import
//! nothing of the crate but the multicast primitive, the error type, the lock helper and the
//! runtime seam (a handle keeps its connection's runtime, for timers on the handle side).

pub(crate) mod channel;
pub(crate) mod command;
pub(crate) mod counters;
pub(crate) mod hub;
pub(crate) mod media;
pub(crate) mod queue;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use futures::{channel::oneshot, task::AtomicWaker};

use self::{
    channel::ReceiveBudget,
    command::{Command, Reply},
    counters::FilterCounters,
    hub::Hub,
    queue::CommandSender,
};
use crate::{
    error::{CloseReason, Error, Result},
    runtime::Runtime,
    sync::{LIVE_CONNECTIONS, Live, lock},
};

/// State shared by the driver and every handle.
pub(crate) struct Shared {
    pub(crate) hub: Mutex<Hub>,
    pub(crate) driver_waker: Arc<AtomicWaker>,
    /// What the inbound filter passed and refused.
    pub(crate) filter: Arc<FilterCounters>,
    /// The receive budget all channel inboxes share.
    pub(crate) budget: Arc<ReceiveBudget>,
    /// What the sockets reported.
    pub(crate) sockets: Arc<counters::SocketCounters>,
    /// Why the connection closed, set once by the driver before it stops.
    pub(crate) close_reason: Mutex<Option<CloseReason>>,
    _live: Live,
}

impl Shared {
    pub(crate) fn new(hub: Hub, filter: Arc<FilterCounters>, budget: Arc<ReceiveBudget>) -> Self {
        Self {
            hub: Mutex::new(hub),
            driver_waker: Arc::default(),
            filter,
            budget,
            sockets: Arc::default(),
            close_reason: Mutex::new(None),
            _live: Live::new(&LIVE_CONNECTIONS),
        }
    }

    /// Records why the connection closes; the first reason recorded stays.
    pub(crate) fn set_close_reason(&self, reason: CloseReason) {
        lock(&self.close_reason).get_or_insert(reason);
    }

    /// Why the connection closed: [`CloseReason::DriverGone`] if its driver stopped without
    /// saying.
    pub(crate) fn close_reason(&self) -> CloseReason {
        lock(&self.close_reason).unwrap_or(CloseReason::DriverGone)
    }

    /// Whether the connection is closed (or closing).
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.close_reason).is_some()
    }

    /// The error of a call on the closed connection.
    pub(crate) fn closed(&self) -> Error {
        Error::Closed(self.close_reason())
    }
}

/// What every handle of one connection holds. When the last one is dropped, the command channel
/// closes and the driver shuts the connection down.
pub(crate) struct ConnHandle {
    pub(crate) cmd: CommandSender,
    pub(crate) shared: Arc<Shared>,
    pub(crate) local_addrs: Vec<SocketAddr>,
    /// The connection's runtime (`None` for a [detached](Self::detached) handle).
    pub(crate) runtime: Option<Arc<dyn Runtime>>,
}

impl ConnHandle {
    /// Sends a command and waits for the driver's reply.
    pub(crate) async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .await
            .map_err(|_| self.shared.closed())?;
        rx.await.map_err(|_| self.shared.closed())?
    }

    /// A handle whose connection is gone: every command fails with [`Error::Closed`]. Stands
    /// in for the connection where a channel handle must be made after its last handle was
    /// dropped (the handler bridge delivering a channel's last messages).
    pub(crate) fn detached() -> Arc<Self> {
        // No receiver: every command fails as on a closed connection.
        let cmd = CommandSender::closed();
        let shared = Shared::new(Hub::new(1), Arc::default(), Arc::new(ReceiveBudget::new(1)));
        // Made only after the last handle was dropped, which closes the connection.
        shared.set_close_reason(CloseReason::Local);
        Arc::new(Self {
            cmd,
            shared: Arc::new(shared),
            local_addrs: Vec::new(),
            runtime: None,
        })
    }
}
