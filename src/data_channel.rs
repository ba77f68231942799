//! Data channels: message streams with back-pressure in both directions.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::Stream;
pub use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit, RTCDataChannelState};

pub use crate::shared::channel::{DataChannelEvent, DataChannelMessage};
use crate::{
    error::{Error, Result},
    shared::{
        ConnHandle,
        channel::{Announced, DcShared},
        command::{Command, Payload},
        queue::TrySendError,
    },
    stream::EventStream,
    sync::lock,
};

/// The send-buffer level above which [`DataChannel::send`] waits, unless changed with
/// [`DataChannel::set_high_water_mark`] or
/// [`PeerConnectionBuilder::data_channel_high_water_mark`](crate::PeerConnectionBuilder::data_channel_high_water_mark).
pub const DEFAULT_HIGH_WATER_MARK: usize = 1024 * 1024;

/// What each buffered message counts against the [high-water mark](DataChannel::set_high_water_mark)
/// on top of its bytes: about what the protocol core keeps per queued message.
///
/// ```
/// use webrtc_streams::data_channel::{DEFAULT_HIGH_WATER_MARK, MESSAGE_OVERHEAD};
/// // At most this many 8-byte messages wait in a channel's send buffer by default:
/// assert_eq!(DEFAULT_HIGH_WATER_MARK / (8 + MESSAGE_OVERHEAD), 3_971);
/// ```
pub const MESSAGE_OVERHEAD: usize = crate::shared::channel::SEND_MESSAGE_OVERHEAD;

/// How many bytes of received messages a connection holds for the readers of all its data
/// channels together before it stops reading from SCTP, unless changed with
/// [`PeerConnectionBuilder::receive_budget`](crate::PeerConnectionBuilder::receive_budget).
pub const DEFAULT_RECEIVE_BUDGET: usize = 2 * 1024 * 1024;

/// A handle to one data channel; cheap to clone.
///
/// Obtained from [`PeerConnection::create_data_channel`](crate::PeerConnection::create_data_channel)
/// (local channels) or from [`PeerConnection::data_channels`](crate::PeerConnection::data_channels)
/// (channels the remote peer opened).
///
/// # Back-pressure
///
/// * **Sending**: [`send`](Self::send) waits while the buffered messages are above the
///   [high-water mark](Self::set_high_water_mark), so a fast writer runs at the speed of the
///   network with bounded memory. Each buffered message counts its bytes plus
///   [`MESSAGE_OVERHEAD`] against the mark (the core keeps a record of about that size per
///   message), so a megabyte of 8-byte messages is ~4,000 messages, not 131,072;
///   [`buffered_amount`](Self::buffered_amount) itself counts bytes only, as in the W3C API.
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
///
/// # Message size
///
/// A message is sent as one SCTP message, so its size is bounded. Each side advertises in its
/// description (`a=max-message-size`) the largest message it accepts, and a side sends at
/// most what the other accepts ([`max_message_size`](Self::max_message_size), once open; a
/// larger send fails with [`Error::MessageTooLarge`]). This crate advertises `rtc`'s default,
/// **64 KiB** ([`SctpMaxMessageSize::DEFAULT_MESSAGE_SIZE`](crate::SctpMaxMessageSize::DEFAULT_MESSAGE_SIZE));
/// browsers advertise 256 KiB (Chromium) or 1 GiB (Firefox). To accept (and so let a peer
/// send) larger messages, raise it in the setting engine, up to `rtc`'s ceiling of 256 KiB
/// ([`SctpMaxMessageSize::MAX_MESSAGE_SIZE`](crate::SctpMaxMessageSize::MAX_MESSAGE_SIZE)):
///
/// ```no_run
/// # async fn f() -> webrtc_streams::Result<()> {
/// use webrtc_streams::{PeerConnection, PeerConnectionBuilder, SctpMaxMessageSize};
///
/// let settings = PeerConnectionBuilder::default_settings() // keep the crate's defaults
///     .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(256 * 1024))
///     .build();
/// let pc = PeerConnection::builder().setting_engine(settings).build().await?;
/// # Ok(()) }
/// ```
///
/// Both sides need it for 256 KiB messages both ways. For larger payloads, cut them into
/// messages, or use [`byte_stream`](Self::byte_stream), which does.
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

    /// The level above which [`send`](Self::send) waits: buffered bytes plus
    /// [`MESSAGE_OVERHEAD`] per buffered message.
    pub fn high_water_mark(&self) -> usize {
        self.dc.high_water_mark.load(Ordering::Acquire)
    }

    /// Sets the level above which [`send`](Self::send) waits (buffered bytes plus
    /// [`MESSAGE_OVERHEAD`] per buffered message). Larger values buy throughput on long fat
    /// paths at the cost of memory.
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

    /// Sends `msg` as it is: binary as binary, text as text. The way to send a received
    /// message on (an echo, a relay between channels) without copying it in this crate:
    /// binary payloads go to SCTP without a copy (as with [`send`](Self::send)); a text
    /// payload becomes the text message's buffer without a copy when `msg` holds the only
    /// reference to it, after one UTF-8 check (the `rtc` core copies text once into its
    /// packet buffer, as for [`send_text`](Self::send_text)). Otherwise like
    /// [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and [`Error::InvalidUtf8`] for a text message whose bytes are
    /// not UTF-8 (a remote peer may send such).
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Self::send).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(dc: webrtc_streams::DataChannel) -> webrtc_streams::Result<()> {
    /// use futures::StreamExt;
    ///
    /// let mut messages = dc.messages();
    /// while let Some(msg) = messages.next().await {
    ///     dc.send_message(msg).await?; // echo, text or binary
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_message(&self, msg: DataChannelMessage) -> Result<()> {
        self.send_payload(Payload::of(msg)?).await
    }

    /// Queues `payload` now if the channel is open, below its high-water mark and the
    /// connection's command queue has room; otherwise hands it back (`Ok(Err(payload))`) for
    /// [`send_payload`](Self::send_payload) to wait with. Never queues it in part.
    pub(crate) fn try_send_payload(&self, payload: Payload) -> Result<Result<(), Payload>> {
        if !self.sendable(payload.len())? {
            return Ok(Err(payload));
        }
        let reservation = Reservation::new(&self.dc, payload.len());
        let cmd = Command::Send {
            id: self.dc.id,
            payload,
        };
        match self.conn.cmd.try_send(cmd) {
            Ok(()) => {
                reservation.commit();
                Ok(Ok(()))
            }
            Err(TrySendError::Full(Command::Send { payload, .. })) => {
                Ok(Err(payload)) // the reservation is returned on drop
            }
            Err(_) => Err(self.conn.shared.closed()),
        }
    }

    pub(crate) async fn send_payload(&self, payload: Payload) -> Result<()> {
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
        let cmd = Command::Send {
            id: self.dc.id,
            payload,
        };
        if self.conn.cmd.send(cmd).await.is_err() {
            return Err(self.conn.shared.closed()); // the reservation is returned on drop
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
        Ok(self.dc.buffered_cost() <= self.high_water_mark())
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
    /// Messages already received stay readable on [`messages`](Self::messages). The channel
    /// is `Closing` while what was sent before the close is delivered and the peer
    /// acknowledges the close; if that takes more than 30 s (the peer is unreachable or
    /// stops reading), the channel is closed locally and what was not delivered is lost.
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
            .request(|reply| Command::CloseChannel {
                id: self.dc.id,
                reply,
            })
            .await
        {
            Err(Error::Closed(_)) => Ok(()),
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
        dc.pending_messages.fetch_add(1, Ordering::AcqRel);
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
        self.dc.pending_messages.fetch_sub(1, Ordering::AcqRel);
        // Senders waiting for room, and a close waiting for the buffer to drain, may go on.
        self.dc.writable.notify(usize::MAX);
        self.dc.driver_waker.wake();
    }
}

/// Identifies a data channel without keeping its connection alive (the handler bridge holds
/// these between callbacks and makes a [`DataChannel`] for each callback).
#[derive(Clone)]
pub(crate) struct ChannelRef(pub(crate) Arc<DcShared>);

impl ChannelRef {
    /// The channel's messages; see [`DataChannel::messages`].
    pub(crate) fn messages(&self) -> MessageStream {
        MessageStream { dc: self.0.clone() }
    }
}

/// A data channel as the handler bridge learns of it: its reference, whether it is already
/// open, and its event subscription (taken when the channel was announced, so nothing is
/// missed).
pub(crate) struct ChannelWatch {
    pub(crate) channel: ChannelRef,
    pub(crate) opened: bool,
    pub(crate) events: EventStream<DataChannelEvent>,
}

impl ChannelWatch {
    /// A channel announced by the driver (a locally created one).
    pub(crate) fn announced(a: Announced) -> Self {
        Self {
            channel: ChannelRef(a.dc),
            opened: a.opened,
            events: a.events,
        }
    }

    /// A channel delivered through the event stream (a remote one, announced once open).
    pub(crate) fn of(dc: &DataChannel) -> Self {
        Self::announced(Announced::new(dc.dc.clone(), true))
    }
}
