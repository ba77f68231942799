//! Data channels: message streams with back-pressure in both directions.

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use event_listener::Event;
use futures::{Stream, task::AtomicWaker};
pub use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit, RTCDataChannelState};

use crate::{
    error::{Error, Result},
    peer_connection::ConnHandle,
    stream::{EventStream, Multicast},
};

/// The send-buffer level above which [`DataChannel::send`] waits, unless changed with
/// [`DataChannel::set_high_water_mark`] or
/// [`PeerConnectionBuilder::data_channel_high_water_mark`](crate::PeerConnectionBuilder::data_channel_high_water_mark).
pub const DEFAULT_HIGH_WATER_MARK: usize = 1024 * 1024;

/// How many bytes of received messages a connection holds for the readers of all its data
/// channels together before it stops reading from SCTP, unless changed with
/// [`PeerConnectionBuilder::receive_budget`](crate::PeerConnectionBuilder::receive_budget).
pub const DEFAULT_RECEIVE_BUDGET: usize = 2 * 1024 * 1024;

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
    /// [`DataChannel::buffered_amount`] fell to or below the low threshold
    /// ([`DataChannel::set_buffered_amount_low_threshold`]).
    BufferedAmountLow,
}

/// What the connection and the handles of one channel share.
pub(crate) struct DcShared {
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
    bytes: usize,
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

    fn poll_message(&self, cx: &mut Context<'_>) -> Poll<Option<DataChannelMessage>> {
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

/// A handle to one data channel; cheap to clone.
///
/// Obtained from [`PeerConnection::create_data_channel`](crate::PeerConnection::create_data_channel)
/// (local channels) or from [`PeerConnection::data_channels`](crate::PeerConnection::data_channels)
/// (channels the remote peer opened).
///
/// # Back-pressure
///
/// * **Sending**: [`send`](Self::send) waits while [`buffered_amount`](Self::buffered_amount)
///   is above the [high-water mark](Self::set_high_water_mark), so a fast writer runs at the
///   speed of the network with bounded memory.
/// * **Receiving**: each channel has an inbox read through [`messages`](Self::messages), and
///   all inboxes of a connection share one bound, the
///   [receive budget](crate::PeerConnectionBuilder::receive_budget). When a reader stops
///   reading, its unread messages take up the budget; while some is left, the connection's
///   other channels keep flowing. Once it is spent, the connection stops taking data from
///   SCTP, and SCTP flow control (one receive window for the whole association) slows the
///   remote sender on every channel until the reader catches up. Nothing is dropped.
///
/// A channel handle keeps its connection alive: the connection shuts down when the last
/// [`PeerConnection`](crate::PeerConnection) *and* the last `DataChannel` handle are dropped.
#[derive(Clone)]
pub struct DataChannel {
    pub(crate) conn: Arc<ConnHandle>,
    pub(crate) dc: Arc<DcShared>,
}

impl DataChannel {
    /// The channel's id within its connection (not the SCTP stream id).
    pub fn id(&self) -> RTCDataChannelId {
        self.dc.id
    }

    /// The label given when the channel was created.
    pub fn label(&self) -> &str {
        &self.dc.label
    }

    /// The sub-protocol given when the channel was created.
    pub fn protocol(&self) -> &str {
        &self.dc.protocol
    }

    /// Whether messages are delivered in order.
    pub fn ordered(&self) -> bool {
        self.dc.ordered
    }

    /// The retransmission limit of a partially reliable channel.
    pub fn max_retransmits(&self) -> Option<u16> {
        self.dc.max_retransmits
    }

    /// The lifetime limit (milliseconds) of a partially reliable channel.
    pub fn max_packet_life_time(&self) -> Option<u16> {
        self.dc.max_packet_life_time
    }

    /// Whether the channel was negotiated out of band (both sides created it with the same id).
    pub fn negotiated(&self) -> bool {
        self.dc.negotiated
    }

    /// The SCTP stream id, once known (after the DTLS role is settled).
    pub fn stream_id(&self) -> Option<u16> {
        u16::try_from(self.dc.stream_id.load(Ordering::Acquire)).ok()
    }

    /// The current state.
    pub fn ready_state(&self) -> RTCDataChannelState {
        self.dc.ready_state()
    }

    /// The negotiated maximum message size, once the channel is open.
    pub fn max_message_size(&self) -> Option<usize> {
        match self.dc.max_message_size.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Bytes accepted by [`send`](Self::send) that the remote peer has not acknowledged yet.
    pub fn buffered_amount(&self) -> usize {
        self.dc.buffered_amount()
    }

    /// Bytes received and waiting in this channel's inbox for [`messages`](Self::messages)
    /// to read. All channels of a connection together hold at most its receive budget
    /// ([`PeerConnectionBuilder::receive_budget`](crate::PeerConnectionBuilder::receive_budget))
    /// plus one message.
    pub fn received_amount(&self) -> usize {
        lock(&self.dc.inbox).bytes
    }

    /// The level at or below which [`DataChannelEvent::BufferedAmountLow`] fires (default 0).
    pub fn buffered_amount_low_threshold(&self) -> usize {
        self.dc.low_threshold.load(Ordering::Acquire)
    }

    /// Sets the level at or below which [`DataChannelEvent::BufferedAmountLow`] fires when the
    /// buffered amount falls to it.
    pub fn set_buffered_amount_low_threshold(&self, threshold: usize) {
        self.dc.low_threshold.store(threshold, Ordering::Release);
    }

    /// The buffered amount above which [`send`](Self::send) waits.
    pub fn high_water_mark(&self) -> usize {
        self.dc.high_water_mark.load(Ordering::Acquire)
    }

    /// Sets the buffered amount above which [`send`](Self::send) waits. Larger values buy
    /// throughput on long fat paths at the cost of memory.
    pub fn set_high_water_mark(&self, bytes: usize) {
        self.dc.high_water_mark.store(bytes, Ordering::Release);
        self.dc.writable.notify(usize::MAX);
    }

    /// Sends a binary message.
    ///
    /// Waits while the channel is still connecting, and while the send buffer is above the
    /// high-water mark. The payload is handed to SCTP without a copy when `data` is the only
    /// reference to its buffer.
    ///
    /// # Errors
    ///
    /// [`Error::DataChannelClosed`] if the channel is closing or closed,
    /// [`Error::MessageTooLarge`] if `data` exceeds the negotiated maximum message size,
    /// [`Error::Closed`] if the connection is closed. A failed send changes nothing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. If the future is dropped before it completes (a timeout, a `select!`
    /// branch that lost, an aborted task), the message was either not sent at all and
    /// [`buffered_amount`](Self::buffered_amount) is as before, or it was handed to the
    /// connection and will be sent. It is never sent twice or in part.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(dc: webrtc_streams::DataChannel) -> webrtc_streams::Result<()> {
    /// use bytes::Bytes;
    /// dc.send(Bytes::from_static(b"hello")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, data: Bytes) -> Result<()> {
        self.send_payload(Payload::Binary(data)).await
    }

    /// Sends a text message. Otherwise like [`send`](Self::send).
    pub async fn send_text(&self, text: impl Into<String>) -> Result<()> {
        self.send_payload(Payload::Text(text.into())).await
    }

    async fn send_payload(&self, payload: Payload) -> Result<()> {
        let len = payload.len();
        // Listen only when the fast path fails: registering a listener allocates.
        while !self.sendable(len)? {
            let listener = self.dc.writable.listen();
            if self.sendable(len)? {
                break;
            }
            listener.await;
        }
        // Counted as buffered from here on; if this future is dropped before the command is
        // queued (a timeout, a `select!`, an aborted task), the guard takes it back.
        let reservation = Reservation::new(&self.dc, len);
        let cmd = crate::driver::Command::Send {
            id: self.dc.id,
            payload,
        };
        if self.conn.cmd.send(cmd).await.is_err() {
            return Err(Error::Closed); // the reservation is returned on drop
        }
        // Queued: the driver subtracts it when it hands the message to SCTP.
        reservation.commit();
        Ok(())
    }

    /// Waits until the channel is open.
    ///
    /// # Errors
    ///
    /// [`Error::DataChannelClosed`] if it closes first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn opened(&self) -> Result<()> {
        while !self.is_open()? {
            let listener = self.dc.writable.listen();
            if self.is_open()? {
                break;
            }
            listener.await;
        }
        Ok(())
    }

    fn is_open(&self) -> Result<bool> {
        match self.dc.ready_state() {
            RTCDataChannelState::Open => Ok(true),
            RTCDataChannelState::Closing | RTCDataChannelState::Closed => {
                Err(Error::DataChannelClosed)
            }
            _ => Ok(false),
        }
    }

    /// `Ok(true)` when a message of `len` bytes may be queued now, `Ok(false)` when the sender
    /// must wait (still connecting, or the buffer is above the high-water mark).
    fn sendable(&self, len: usize) -> Result<bool> {
        if !self.is_open()? {
            return Ok(false);
        }
        let max = self.dc.max_message_size.load(Ordering::Acquire);
        if max != 0 && len > max {
            return Err(Error::MessageTooLarge { size: len, max });
        }
        Ok(self.dc.buffered_amount() <= self.high_water_mark())
    }

    /// The messages received on this channel, in the order SCTP delivers them.
    ///
    /// Messages are not multicast: all streams returned by this method share one inbox, and
    /// each message goes to exactly one of them. Messages that arrive before the first call
    /// wait in the inbox. The stream ends after the channel closes and the inbox is empty.
    pub fn messages(&self) -> MessageStream {
        MessageStream {
            dc: self.dc.clone(),
        }
    }

    /// The channel's events ([`DataChannelEvent`]) from now on.
    pub fn events(&self) -> EventStream<DataChannelEvent> {
        let st = lock(&self.dc.state);
        EventStream::new(None, st.events.subscribe(), Some)
    }

    /// The channel's ready state: the current one first, then every change.
    pub fn ready_states(&self) -> EventStream<RTCDataChannelState> {
        let st = lock(&self.dc.state);
        EventStream::new(Some(st.ready), st.events.subscribe(), |ev| match ev {
            DataChannelEvent::Open => Some(RTCDataChannelState::Open),
            DataChannelEvent::Closing => Some(RTCDataChannelState::Closing),
            DataChannelEvent::Closed => Some(RTCDataChannelState::Closed),
            _ => None,
        })
    }

    /// Closes the channel (both directions). Idempotent.
    ///
    /// Messages already received stay readable on [`messages`](Self::messages).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: once the request is queued the channel closes whether or not this
    /// future is still polled; dropped before that, nothing happens.
    pub async fn close(&self) -> Result<()> {
        match self.dc.ready_state() {
            RTCDataChannelState::Closing | RTCDataChannelState::Closed => return Ok(()),
            _ => {}
        }
        match self
            .conn
            .request(|reply| crate::driver::Command::CloseChannel {
                id: self.dc.id,
                reply,
            })
            .await
        {
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }
}

impl Drop for DataChannel {
    fn drop(&mut self) {
        // The driver may be holding a message for a reader that no longer exists.
        self.dc.driver_waker.wake();
    }
}

impl fmt::Debug for DataChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.dc.fmt(f)
    }
}

impl PartialEq for DataChannel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.dc, &other.dc)
    }
}

impl Eq for DataChannel {}

/// The stream of messages of one data channel; see [`DataChannel::messages`].
#[must_use = "streams do nothing unless polled"]
pub struct MessageStream {
    dc: Arc<DcShared>,
}

impl Stream for MessageStream {
    type Item = DataChannelMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DataChannelMessage>> {
        self.dc.poll_message(cx)
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        self.dc.driver_waker.wake();
    }
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageStream")
            .field("channel", &self.dc.id)
            .finish()
    }
}

/// Bytes of a message counted in `pending` before its command is queued.
struct Reservation<'a> {
    dc: &'a DcShared,
    len: usize,
}

impl<'a> Reservation<'a> {
    fn new(dc: &'a DcShared, len: usize) -> Self {
        dc.pending.fetch_add(len, Ordering::AcqRel);
        Self { dc, len }
    }

    /// The command is queued: the driver owns the count now.
    fn commit(self) {
        std::mem::forget(self);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.dc.pending.fetch_sub(self.len, Ordering::AcqRel);
        // Senders waiting for room, and a close waiting for the buffer to drain, may go on.
        self.dc.writable.notify(usize::MAX);
        self.dc.driver_waker.wake();
    }
}

/// A message on its way to the core.
#[derive(Debug)]
pub(crate) enum Payload {
    Binary(Bytes),
    Text(String),
}

impl Payload {
    pub(crate) fn len(&self) -> usize {
        match self {
            Payload::Binary(b) => b.len(),
            Payload::Text(s) => s.len(),
        }
    }
}

/// Locks `m`, ignoring poisoning: no code holding these locks can leave them inconsistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
