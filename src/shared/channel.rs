//! The state one data channel's driver side and handles share: its parameters, state and
//! events, send accounting, and its inbox, which draws on the connection's receive budget.

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use event_listener::Event;
use futures::task::AtomicWaker;
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelState};

use crate::{
    stream::{EventStream, Multicast},
    sync::{LIVE_CHANNELS, Live, lock},
};

/// One message received on a data channel.
#[derive(Clone, PartialEq, Eq)]
pub struct DataChannelMessage {
    /// `true` if the remote sent it as text (UTF-8), `false` if as binary.
    pub is_string: bool,
    /// The payload.
    pub data: Bytes,
}

impl DataChannelMessage {
    /// The payload as text, if it was sent as text and is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        if self.is_string {
            std::str::from_utf8(&self.data).ok()
        } else {
            None
        }
    }
}

impl fmt::Debug for DataChannelMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataChannelMessage")
            .field("is_string", &self.is_string)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Something that happened to a data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataChannelEvent {
    /// The channel is open: messages can flow.
    Open,
    /// A close was requested; the channel is shutting down.
    Closing,
    /// The channel is closed. Nothing is sent or received any more.
    Closed,
    /// [`DataChannel::buffered_amount`](crate::DataChannel::buffered_amount) fell to or below
    /// the low threshold
    /// ([`DataChannel::set_buffered_amount_low_threshold`](crate::DataChannel::set_buffered_amount_low_threshold)).
    BufferedAmountLow,
}

/// What one buffered message costs against the high-water mark on top of its bytes. The core
/// keeps a record of about 220 bytes per queued message (its SCTP chunk), so without this a
/// 1 MiB mark would let 131,072 eight-byte messages queue, holding some 28 MiB.
pub(crate) const SEND_MESSAGE_OVERHEAD: usize = 256;

/// What the connection and the handles of one channel share.
pub(crate) struct DcShared {
    _live: Live,
    pub(crate) id: RTCDataChannelId,
    pub(crate) label: String,
    pub(crate) protocol: String,
    pub(crate) ordered: bool,
    pub(crate) max_retransmits: Option<u16>,
    pub(crate) max_packet_life_time: Option<u16>,
    pub(crate) negotiated: bool,
    /// SCTP stream id, `usize::MAX` while unknown.
    pub(crate) stream_id: AtomicUsize,
    pub(crate) state: Mutex<DcState>,
    /// Bytes handed to `send` that have not reached the protocol core yet.
    pub(crate) pending: AtomicUsize,
    /// Messages handed to `send` that have not reached the protocol core yet.
    pub(crate) pending_messages: AtomicUsize,
    /// Messages the core holds that SCTP has not acknowledged yet (refreshed by the driver).
    pub(crate) outstanding_messages: AtomicUsize,
    /// Bytes the core holds that SCTP has not acknowledged yet (refreshed by the driver).
    pub(crate) outstanding: AtomicUsize,
    /// Negotiated maximum message size, 0 while unknown.
    pub(crate) max_message_size: AtomicUsize,
    pub(crate) high_water_mark: AtomicUsize,
    pub(crate) low_threshold: AtomicUsize,
    /// Notified when sending may proceed: the buffer drained or the state changed.
    pub(crate) writable: Event,
    pub(crate) inbox: Mutex<Inbox>,
    /// The connection's receive budget, shared by all its channels' inboxes.
    pub(crate) budget: Arc<ReceiveBudget>,
    pub(crate) driver_waker: Arc<AtomicWaker>,
}

/// Bytes held in the inboxes of one connection's channels, against its limit.
///
/// The driver is the only one that adds; readers subtract. When a message does not fit, the
/// driver marks itself blocked *before* it checks again, and a reader that frees bytes wakes
/// it if marked: no wake-up is lost.
#[derive(Debug)]
pub(crate) struct ReceiveBudget {
    bytes: AtomicUsize,
    capacity: usize,
    driver_blocked: AtomicBool,
}

impl ReceiveBudget {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            bytes: AtomicUsize::new(0),
            capacity: capacity.max(1),
            driver_blocked: AtomicBool::new(false),
        }
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Takes `len` bytes if they fit (or if nothing is held: a message larger than the budget
    /// still gets through, alone).
    fn try_take(&self, len: usize) -> bool {
        let fits = |held: usize| held == 0 || held + len <= self.capacity;
        if !fits(self.bytes.load(Ordering::SeqCst)) {
            self.driver_blocked.store(true, Ordering::SeqCst);
            if !fits(self.bytes.load(Ordering::SeqCst)) {
                return false;
            }
            self.driver_blocked.store(false, Ordering::SeqCst);
        }
        self.bytes.fetch_add(len, Ordering::SeqCst);
        true
    }

    /// Gives `len` bytes back; wakes the driver if it waits for room.
    fn release(&self, len: usize, driver: &AtomicWaker) {
        if len == 0 {
            return;
        }
        self.bytes.fetch_sub(len, Ordering::SeqCst);
        if self.driver_blocked.swap(false, Ordering::SeqCst) {
            driver.wake();
        }
    }
}

pub(crate) struct DcState {
    pub(crate) ready: RTCDataChannelState,
    pub(crate) events: Multicast<DataChannelEvent>,
}

#[derive(Default)]
pub(crate) struct Inbox {
    queue: VecDeque<DataChannelMessage>,
    pub(crate) bytes: usize,
    closed: bool,
    readers: Vec<Waker>,
}

/// Construction parameters of a [`DcShared`].
pub(crate) struct DcParams {
    pub(crate) id: RTCDataChannelId,
    pub(crate) label: String,
    pub(crate) protocol: String,
    pub(crate) ordered: bool,
    pub(crate) max_retransmits: Option<u16>,
    pub(crate) max_packet_life_time: Option<u16>,
    pub(crate) negotiated: bool,
    pub(crate) high_water_mark: usize,
    pub(crate) budget: Arc<ReceiveBudget>,
    pub(crate) event_capacity: usize,
}

impl DcShared {
    pub(crate) fn new(p: DcParams, driver_waker: Arc<AtomicWaker>) -> Self {
        Self {
            _live: Live::new(&LIVE_CHANNELS),
            id: p.id,
            label: p.label,
            protocol: p.protocol,
            ordered: p.ordered,
            max_retransmits: p.max_retransmits,
            max_packet_life_time: p.max_packet_life_time,
            negotiated: p.negotiated,
            stream_id: AtomicUsize::new(usize::MAX),
            state: Mutex::new(DcState {
                ready: RTCDataChannelState::Connecting,
                events: Multicast::new(p.event_capacity),
            }),
            pending: AtomicUsize::new(0),
            pending_messages: AtomicUsize::new(0),
            outstanding_messages: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            max_message_size: AtomicUsize::new(0),
            high_water_mark: AtomicUsize::new(p.high_water_mark),
            low_threshold: AtomicUsize::new(0),
            writable: Event::new(),
            inbox: Mutex::new(Inbox::default()),
            budget: p.budget,
            driver_waker,
        }
    }

    pub(crate) fn ready_state(&self) -> RTCDataChannelState {
        lock(&self.state).ready
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        self.pending.load(Ordering::Acquire) + self.outstanding.load(Ordering::Acquire)
    }

    /// What the buffered messages cost against the high-water mark: their bytes plus
    /// [`SEND_MESSAGE_OVERHEAD`] each.
    pub(crate) fn buffered_cost(&self) -> usize {
        let messages = self.pending_messages.load(Ordering::Acquire)
            + self.outstanding_messages.load(Ordering::Acquire);
        self.buffered_amount() + messages * SEND_MESSAGE_OVERHEAD
    }

    /// Moves to `ready` and tells subscribers; a no-op if already there or closed.
    pub(crate) fn set_state(&self, ready: RTCDataChannelState) {
        let mut st = lock(&self.state);
        if st.ready == ready || st.ready == RTCDataChannelState::Closed {
            return;
        }
        st.ready = ready;
        let ev = match ready {
            RTCDataChannelState::Open => Some(DataChannelEvent::Open),
            RTCDataChannelState::Closing => Some(DataChannelEvent::Closing),
            RTCDataChannelState::Closed => Some(DataChannelEvent::Closed),
            _ => None,
        };
        if let Some(ev) = ev {
            st.events.publish(ev);
        }
        if ready == RTCDataChannelState::Closed {
            st.events.close();
            drop(st);
            let mut inbox = lock(&self.inbox);
            inbox.closed = true;
            let readers = std::mem::take(&mut inbox.readers);
            drop(inbox);
            readers.into_iter().for_each(Waker::wake);
        } else {
            drop(st);
        }
        self.writable.notify(usize::MAX);
    }

    pub(crate) fn publish(&self, ev: DataChannelEvent) {
        lock(&self.state).events.publish(ev);
    }

    /// Hands a received message to the reader; gives it back when the connection's receive
    /// budget is spent.
    pub(crate) fn try_deliver(
        &self,
        msg: DataChannelMessage,
    ) -> std::result::Result<(), DataChannelMessage> {
        let mut inbox = lock(&self.inbox);
        if inbox.closed {
            return Ok(()); // nobody will read it: dropped
        }
        if !self.budget.try_take(msg.data.len()) {
            return Err(msg);
        }
        inbox.bytes += msg.data.len();
        inbox.queue.push_back(msg);
        let readers = std::mem::take(&mut inbox.readers);
        drop(inbox);
        readers.into_iter().for_each(Waker::wake);
        Ok(())
    }

    pub(crate) fn poll_message(&self, cx: &mut Context<'_>) -> Poll<Option<DataChannelMessage>> {
        let mut inbox = lock(&self.inbox);
        if let Some(msg) = inbox.queue.pop_front() {
            inbox.bytes -= msg.data.len();
            drop(inbox);
            self.budget.release(msg.data.len(), &self.driver_waker);
            return Poll::Ready(Some(msg));
        }
        if inbox.closed {
            return Poll::Ready(None);
        }
        if !inbox.readers.iter().any(|w| w.will_wake(cx.waker())) {
            inbox.readers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Drops unread messages (nobody can read them any more) and returns their bytes to the
    /// budget. Returns how many bytes were freed.
    pub(crate) fn discard_inbox(&self) -> usize {
        let mut inbox = lock(&self.inbox);
        let freed = std::mem::take(&mut inbox.bytes);
        inbox.queue = VecDeque::new();
        drop(inbox);
        self.budget.release(freed, &self.driver_waker);
        freed
    }
}

impl Drop for DcShared {
    fn drop(&mut self) {
        let inbox = self.inbox.get_mut().unwrap_or_else(|e| e.into_inner());
        let freed = std::mem::take(&mut inbox.bytes);
        self.budget.release(freed, &self.driver_waker);
    }
}

impl fmt::Debug for DcShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataChannel")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("state", &self.ready_state())
            .finish_non_exhaustive()
    }
}

/// A channel announced to the handler bridge, with its event subscription taken at once so
/// that the bridge misses none of its events.
pub(crate) struct Announced {
    pub(crate) dc: Arc<DcShared>,
    /// The channel is or was open: the bridge yields `Open` without waiting for the event.
    pub(crate) opened: bool,
    pub(crate) events: EventStream<DataChannelEvent>,
}

impl Announced {
    /// Subscribes to `dc`'s events. `announced_open`: the channel is known to have opened
    /// (remote channels are announced once open).
    pub(crate) fn new(dc: Arc<DcShared>, announced_open: bool) -> Self {
        let st = lock(&dc.state);
        let opened = announced_open || st.ready == RTCDataChannelState::Open;
        let events = EventStream::new(None, st.events.subscribe(), Some);
        drop(st);
        Self { dc, opened, events }
    }
}
