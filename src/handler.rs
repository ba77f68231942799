//! The handler bridge: the optional push API on top of the streams.
//!
//! [`PeerConnectionEventHandler`] is implemented by the application;
//! [`HandlerBridge::attach`] attaches it to a running connection, and
//! [`PeerConnectionBuilder::handler`](crate::PeerConnectionBuilder::handler) to a connection
//! being built. One task per handler (the bridge) merges the connection's event stream and
//! every data channel's message and event streams into one `select_all` loop and calls the
//! handler, one callback at a time.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{
    FutureExt, Stream, StreamExt,
    channel::oneshot,
    future::{poll_fn, ready},
    stream::{self, SelectAll},
};
use log::trace;
use rtc::peer_connection::{
    event::RTCPeerConnectionIceErrorEvent,
    state::{
        RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
    },
    transport::RTCIceCandidateInit,
};

use crate::{
    data_channel::{
        ChannelRef, ChannelWatch, DataChannel, DataChannelEvent, DataChannelMessage, MessageStream,
    },
    error::Result,
    event::PeerConnectionEvent,
    media::RemoteTrack,
    peer_connection::{
        BoxFuture, BridgeInputs, PeerConnection, PeerConnectionBuilder, Starter, WeakPeerConnection,
    },
    stream::EventStream,
};

/// Push-style callbacks for the events of one [`PeerConnection`](crate::PeerConnection).
///
/// This is an adapter over the streams ([`PeerConnection::events`](crate::PeerConnection::events),
/// [`DataChannel::messages`], [`DataChannel::events`]): attach an implementation with
/// [`PeerConnectionBuilder::handler`](crate::PeerConnectionBuilder::handler) (or
/// [`handler_with`](crate::PeerConnectionBuilder::handler_with), which hands the handler a
/// [`WeakPeerConnection`](crate::WeakPeerConnection) to call back into the connection) while
/// building the connection, or to a running connection with [`HandlerBridge::attach`] (or
/// [`attach_with`](HandlerBridge::attach_with)), which returns a guard that detaches it.
///
/// Every method has a default that does nothing: implement the ones you need, as plain
/// `async fn`s with `&mut self` — no `Arc`, no locks, no boxing.
///
/// # Ordering
///
/// - A connection's events (state changes, ICE candidates, negotiation needed, remote data
///   channels, [`on_lagged`](Self::on_lagged)) reach the handler in the order they happened.
/// - For each data channel: [`on_data_channel`](Self::on_data_channel) (remote channels
///   only) comes first, then [`on_data_channel_open`](Self::on_data_channel_open), then its
///   messages in the order SCTP delivers them interleaved with
///   [`on_buffered_amount_low`](Self::on_buffered_amount_low), and last, once every received
///   message has been handed over, [`on_data_channel_close`](Self::on_data_channel_close).
///   A channel that closes without ever opening gets only the close.
/// - Events of *different* sources (two channels, or a channel and the connection) are
///   interleaved in no guaranteed order.
///
/// # Concurrency
///
/// The handler runs on its own task, spawned on the connection's
/// [`Runtime`](crate::runtime::Runtime), never on the connection's driver. Callbacks are called
/// one at a time (hence `&mut self`): the next one starts after the previous one's future
/// completes. A callback may call any method of the connection or of its channels — including
/// [`PeerConnection::close`](crate::PeerConnection::close) — without risk of deadlock. The
/// returned futures must be `Send`, so the bridge runs on multi-threaded executors.
///
/// # Back-pressure: what a slow handler costs
///
/// A handler that takes its time never stalls the connection's timers (ICE keep-alives, DTLS
/// and SCTP retransmissions keep running) nor other subscribers of its streams. While a
/// callback runs:
///
/// - **messages** wait in their channels' inboxes, which share the connection's
///   [receive budget](crate::PeerConnectionBuilder::receive_budget); once it is spent the
///   connection stops reading from SCTP and the remote sender is slowed down. Nothing is lost.
/// - **connection events** queue up to the
///   [event capacity](crate::PeerConnectionBuilder::event_capacity); beyond that the oldest are
///   dropped for this handler only, and [`on_lagged`](Self::on_lagged) tells how many. The
///   state getters ([`PeerConnection::connection_state`](crate::PeerConnection::connection_state)
///   and friends) always tell the current truth.
///
/// # Lifecycle
///
/// The bridge ends, and the handler is dropped, once the connection is closed (by
/// [`close`](crate::PeerConnection::close) or by dropping its last handle) and every channel's
/// remaining messages and close callback have been delivered — or, for a handler attached
/// with [`HandlerBridge::attach`], when the [`HandlerBridge`] is detached or dropped.
///
/// A handler that holds a strong [`PeerConnection`](crate::PeerConnection) or a
/// [`DataChannel`] keeps its own connection alive: it then ends only with an explicit
/// [`close`](crate::PeerConnection::close). Hold a
/// [`WeakPeerConnection`](crate::WeakPeerConnection) instead.
///
/// With a handler attached, the bridge reads every channel's messages: do not read them with
/// [`DataChannel::messages`] as well, or the two readers split them.
///
/// Media tracks will get an `on_track` callback when tracks arrive in this crate. Errors of
/// the application's own calls are returned by those calls; the only trouble the bridge itself
/// reports is [`on_lagged`](Self::on_lagged).
///
/// # Example
///
/// ```no_run
/// use webrtc_streams::{
///     DataChannel, DataChannelMessage, PeerConnection, PeerConnectionEventHandler,
///     RTCIceCandidateInit, RTCPeerConnectionState, WeakPeerConnection,
/// };
///
/// struct Echo {
///     pc: WeakPeerConnection,
/// }
///
/// impl PeerConnectionEventHandler for Echo {
///     async fn on_connection_state_change(&mut self, state: RTCPeerConnectionState) {
///         println!("connection: {state}");
///     }
///
///     async fn on_ice_candidate(&mut self, candidate: Option<RTCIceCandidateInit>) {
///         // send it to the remote peer through your signaling channel
///     }
///
///     async fn on_message(&mut self, dc: &DataChannel, msg: DataChannelMessage) {
///         if msg.text() == Some("bye") {
///             if let Some(pc) = self.pc.upgrade() {
///                 let _ = pc.close().await;
///             }
///         } else if dc.send(msg.data).await.is_err() {
///             // the channel closed meanwhile
///         }
///     }
/// }
///
/// # async fn run() -> webrtc_streams::Result<()> {
/// let pc = PeerConnection::builder()
///     .handler_with(|pc| Echo { pc })
///     .build()
///     .await?;
/// // ... signaling ...
/// # Ok(()) }
/// ```
pub trait PeerConnectionEventHandler: Send + 'static {
    /// The aggregate connection state changed.
    fn on_connection_state_change(
        &mut self,
        state: RTCPeerConnectionState,
    ) -> impl Future<Output = ()> + Send {
        let _ = state;
        async {}
    }

    /// The signaling (offer/answer) state changed.
    fn on_signaling_state_change(
        &mut self,
        state: RTCSignalingState,
    ) -> impl Future<Output = ()> + Send {
        let _ = state;
        async {}
    }

    /// The ICE connection state changed.
    fn on_ice_connection_state_change(
        &mut self,
        state: RTCIceConnectionState,
    ) -> impl Future<Output = ()> + Send {
        let _ = state;
        async {}
    }

    /// The ICE gathering state changed.
    fn on_ice_gathering_state_change(
        &mut self,
        state: RTCIceGatheringState,
    ) -> impl Future<Output = ()> + Send {
        let _ = state;
        async {}
    }

    /// A local ICE candidate to signal to the remote peer; `None` marks the end of candidates.
    fn on_ice_candidate(
        &mut self,
        candidate: Option<RTCIceCandidateInit>,
    ) -> impl Future<Output = ()> + Send {
        let _ = candidate;
        async {}
    }

    /// A STUN or TURN server failed for one local socket (see
    /// [`PeerConnectionEvent::IceCandidateError`]); gathering goes on without it.
    fn on_ice_candidate_error(
        &mut self,
        error: RTCPeerConnectionIceErrorEvent,
    ) -> impl Future<Output = ()> + Send {
        let _ = error;
        async {}
    }

    /// A (re)negotiation is needed: create an offer and signal it.
    fn on_negotiation_needed(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The remote peer opened a data channel. Channels created locally with
    /// [`PeerConnection::create_data_channel`](crate::PeerConnection::create_data_channel) do
    /// not come here, but get every other channel callback.
    ///
    /// Keeping `dc` keeps the connection alive (see the trait's "Lifecycle").
    fn on_data_channel(&mut self, dc: DataChannel) -> impl Future<Output = ()> + Send {
        let _ = dc;
        async {}
    }

    /// A data channel (remote or local) is open: messages can flow.
    fn on_data_channel_open(&mut self, dc: &DataChannel) -> impl Future<Output = ()> + Send {
        let _ = dc;
        async {}
    }

    /// A message arrived on `dc`. While this runs, further messages wait in the channel's
    /// inbox (see the trait's "Back-pressure").
    fn on_message(
        &mut self,
        dc: &DataChannel,
        msg: DataChannelMessage,
    ) -> impl Future<Output = ()> + Send {
        let _ = (dc, msg);
        async {}
    }

    /// `dc` is closed, and every message it received has been passed to
    /// [`on_message`](Self::on_message).
    fn on_data_channel_close(&mut self, dc: &DataChannel) -> impl Future<Output = ()> + Send {
        let _ = dc;
        async {}
    }

    /// `dc`'s buffered amount fell to or below its low threshold
    /// ([`DataChannel::set_buffered_amount_low_threshold`]).
    fn on_buffered_amount_low(&mut self, dc: &DataChannel) -> impl Future<Output = ()> + Send {
        let _ = dc;
        async {}
    }

    /// The remote peer sends a track. Read its packets with
    /// [`RemoteTrack::rtp`](crate::media::RemoteTrack::rtp), typically on a task of its own:
    /// they are not pushed to the handler.
    fn on_track(&mut self, track: RemoteTrack) -> impl Future<Output = ()> + Send {
        let _ = track;
        async {}
    }

    /// The handler fell behind the connection's events and `missed` of them were dropped at
    /// this point (see the trait's "Back-pressure"). Read the current states from the
    /// connection's getters if it matters. A remote data channel announced by a dropped event
    /// gets no callbacks; raise the
    /// [event capacity](crate::PeerConnectionBuilder::event_capacity) if that can happen.
    fn on_lagged(&mut self, missed: u64) -> impl Future<Output = ()> + Send {
        let _ = missed;
        async {}
    }
}

// Attaching a handler is part of the builder, but lives here: the connection knows nothing of
// the bridge beyond its `Starter` hook.
impl PeerConnectionBuilder {
    /// Attaches a [`PeerConnectionEventHandler`]: the connection's events are pushed to it,
    /// in order, on a task of its own (see the trait for ordering, concurrency and
    /// back-pressure). The streams keep working alongside, except that the handler reads every
    /// data channel's messages.
    ///
    /// To call the connection from the handler, use [`handler_with`](Self::handler_with).
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{PeerConnection, PeerConnectionEventHandler, RTCPeerConnectionState};
    ///
    /// struct Log;
    ///
    /// impl PeerConnectionEventHandler for Log {
    ///     async fn on_connection_state_change(&mut self, state: RTCPeerConnectionState) {
    ///         println!("{state}");
    ///     }
    /// }
    ///
    /// let pc = PeerConnection::builder().handler(Log).build().await?;
    /// # Ok(()) }
    /// ```
    pub fn handler(self, handler: impl PeerConnectionEventHandler) -> Self {
        self.handler_with(move |_| handler)
    }

    /// Like [`handler`](Self::handler), with the handler made by `make` from a
    /// [`WeakPeerConnection`] to its own connection, so that it can call back into it
    /// without keeping it alive. [`build`](Self::build) calls `make` once, before it returns.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{PeerConnection, PeerConnectionEventHandler, WeakPeerConnection};
    ///
    /// struct Renegotiate {
    ///     pc: WeakPeerConnection,
    /// }
    ///
    /// impl PeerConnectionEventHandler for Renegotiate {
    ///     async fn on_negotiation_needed(&mut self) {
    ///         let Some(pc) = self.pc.upgrade() else { return };
    ///         if let Ok(offer) = pc.create_offer().await {
    ///             let _ = pc.set_local_description(offer).await;
    ///             // ... signal it ...
    ///         }
    ///     }
    /// }
    ///
    /// let pc = PeerConnection::builder()
    ///     .handler_with(|pc| Renegotiate { pc })
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn handler_with<H, F>(self, make: F) -> Self
    where
        H: PeerConnectionEventHandler,
        F: FnOnce(WeakPeerConnection) -> H + Send + 'static,
    {
        self.set_bridge(starter(make))
    }
}

/// A [`Starter`] for `handler`, which is built from a weak handle to the connection. The
/// bridge runs until the connection closes.
pub(crate) fn starter<H, F>(make: F) -> Starter
where
    H: PeerConnectionEventHandler,
    F: FnOnce(WeakPeerConnection) -> H + Send + 'static,
{
    Box::new(move |inputs: BridgeInputs| {
        let handler = make(inputs.conn.clone());
        Box::pin(run(handler, inputs, Control::default())) as BoxFuture
    })
}

/// A [`PeerConnectionEventHandler`] attached to a running connection; detaches it when
/// dropped.
///
/// [`attach`](Self::attach) pushes the connection's events to the handler from the moment it
/// is called, with the ordering, concurrency and back-pressure rules of
/// [`PeerConnectionEventHandler`]; the application's streams keep working alongside. This is
/// how a stream-style application hands one part of its work to a handler, after the fact.
/// (The builder's [`handler`](crate::PeerConnectionBuilder::handler) is the short form for a
/// handler that lives as long as the connection; it runs on the same bridge.)
///
/// # What the handler sees
///
/// - the connection's events published after `attach`, in order, plus the remote data
///   channels, tracks and local candidates held for the next subscriber (see
///   [`PeerConnection::events`](crate::PeerConnection::events)). State callbacks come for
///   changes only: read the states at attach time from the connection's getters.
/// - every data channel *announced after* `attach`: remote ones through
///   [`on_data_channel`](PeerConnectionEventHandler::on_data_channel), and those created
///   locally with [`create_data_channel`](crate::PeerConnection::create_data_channel) from
///   then on, whose messages the bridge reads. Channels that existed before are left to
///   their readers.
///
/// Any number of handlers may be attached to one connection; each gets every event, but a
/// channel's messages go to one reader only (see [`DataChannel::messages`]).
///
/// # Detaching
///
/// [`detach`](Self::detach) (or dropping the guard) stops the bridge: no callback starts
/// after that, the one running is finished, and the handler is dropped. Events and messages
/// the bridge had not taken stay with the connection: unread messages wait in their
/// channels' inboxes for another reader. `detach().await` returns once the handler is
/// dropped. The bridge also ends on its own when the connection closes
/// ([`finished`](Self::finished)); [`run_until_closed`](Self::run_until_closed) gives up the
/// guard and lets it.
///
/// The guard holds no [`PeerConnection`]: it does not keep the connection alive.
///
/// # Example
///
/// ```no_run
/// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
/// use webrtc_streams::{HandlerBridge, PeerConnectionEventHandler, RTCPeerConnectionState};
///
/// struct Log;
///
/// impl PeerConnectionEventHandler for Log {
///     async fn on_connection_state_change(&mut self, state: RTCPeerConnectionState) {
///         println!("{state}");
///     }
/// }
///
/// // ... pc is connected, its streams are read elsewhere ...
/// let bridge = HandlerBridge::attach(&pc, Log)?;
/// // ... later:
/// bridge.detach().await; // no more callbacks; `Log` is dropped
/// # Ok(()) }
/// ```
#[must_use = "dropping a HandlerBridge detaches its handler at once"]
pub struct HandlerBridge {
    /// Dropped to stop the bridge; sent to (by `run_until_closed`) to let it run on.
    stop: Option<oneshot::Sender<()>>,
    /// Closed once the bridge has ended and dropped the handler.
    done: async_channel::Receiver<()>,
}

impl HandlerBridge {
    /// Attaches `handler` to the running connection `pc`: its events are pushed to it from
    /// now on, on a task of its own spawned on the connection's runtime, until the returned
    /// guard is dropped or detached, or the connection closes.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed) if `pc` is closed.
    pub fn attach(pc: &PeerConnection, handler: impl PeerConnectionEventHandler) -> Result<Self> {
        Self::attach_with(pc, move |_| handler)
    }

    /// Like [`attach`](Self::attach), with the handler made by `make` from a
    /// [`WeakPeerConnection`] to `pc`, so that it can call back into the connection without
    /// keeping it alive. `make` is called once, before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed) if `pc` is closed (`make` is not called).
    pub fn attach_with<H, F>(pc: &PeerConnection, make: F) -> Result<Self>
    where
        H: PeerConnectionEventHandler,
        F: FnOnce(WeakPeerConnection) -> H,
    {
        let (inputs, runtime) = pc.bridge_inputs()?;
        let handler = make(inputs.conn.clone());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = async_channel::bounded(1);
        let control = Control {
            stop: Some(stop_rx),
            done: Some(done_tx),
        };
        runtime.spawn(Box::pin(run(handler, inputs, control)));
        Ok(Self {
            stop: Some(stop_tx),
            done: done_rx,
        })
    }

    /// Detaches the handler: no callback starts after this is called; the one running (if
    /// any) completes. Returns once the handler has been dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the handler is detached as soon as this is called; dropping the future
    /// only stops the wait.
    pub fn detach(mut self) -> impl Future<Output = ()> + Send + 'static {
        self.stop = None;
        let done = self.done.clone();
        async move {
            // Fails once the bridge's sender is dropped: that is the signal.
            let _ = done.recv().await;
        }
    }

    /// Whether the bridge has ended (connection closed and drained) and dropped the handler.
    pub fn is_finished(&self) -> bool {
        self.done.is_closed()
    }

    /// Waits until the bridge ends on its own: the connection closed and every channel's last
    /// messages and close were delivered. The handler is then dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn finished(&self) {
        let _ = self.done.recv().await;
    }

    /// Gives up the guard: the handler stays attached until the connection closes, as one
    /// attached with the builder's [`handler`](crate::PeerConnectionBuilder::handler).
    pub fn run_until_closed(mut self) {
        if let Some(stop) = self.stop.take() {
            // Fails only if the bridge has already ended.
            let _ = stop.send(());
        }
    }
}

impl Drop for HandlerBridge {
    fn drop(&mut self) {
        // Dropping the sender (if still here) is the stop signal.
        self.stop = None;
    }
}

impl fmt::Debug for HandlerBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerBridge")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// How a bridge is controlled from outside: `None`s for the builder's bridge, which runs
/// until the connection closes.
#[derive(Default)]
struct Control {
    /// Resolves `Err` when the guard is dropped (stop), `Ok` when it is given up (run on).
    stop: Option<oneshot::Receiver<()>>,
    /// Dropped after the handler.
    done: Option<async_channel::Sender<()>>,
}

/// What the bridge loop does next.
enum Next {
    Item(Item),
    Stop,
    End,
}

/// One item of the bridge's merged stream.
enum Item {
    Event(PeerConnectionEvent),
    EventsEnded,
    LocalChannel(ChannelWatch),
    LocalChannelsEnded,
    Channel(ChannelRef, ChannelItem),
}

enum ChannelItem {
    Open,
    Message(DataChannelMessage),
    BufferedAmountLow,
    Close,
}

type BoxStream = Pin<Box<dyn Stream<Item = Item> + Send>>;

/// The bridge loop: runs until the connection and all its channels are closed, or until it
/// is told to stop.
async fn run<H: PeerConnectionEventHandler>(handler: H, inputs: BridgeInputs, control: Control) {
    let Control { stop, done } = control;
    drive(handler, inputs, stop).await;
    // `drive` dropped the handler (and every stream it read) before this tells anyone.
    drop(done);
}

async fn drive<H: PeerConnectionEventHandler>(
    mut handler: H,
    inputs: BridgeInputs,
    mut stop: Option<oneshot::Receiver<()>>,
) {
    let BridgeInputs {
        events,
        local_channels,
        conn,
    } = inputs;
    let mut streams: SelectAll<BoxStream> = stream::select_all([
        // Never ends, so the set never empties: the loop decides when to stop.
        Box::pin(stream::pending()) as BoxStream,
        Box::pin(
            events
                .map(Item::Event)
                .chain(stream::once(ready(Item::EventsEnded))),
        ),
        Box::pin(
            local_channels
                .map(Item::LocalChannel)
                .chain(stream::once(ready(Item::LocalChannelsEnded))),
        ),
    ]);
    // The event stream and the local-channel feed; both end when the connection closes.
    let mut sources = 2;
    let mut channels = 0usize;
    loop {
        // The stop signal first: once it is given, no item is taken from the streams (what
        // is not taken stays with the connection).
        let next = poll_fn(|cx| {
            if let Some(rx) = &mut stop {
                match rx.poll_unpin(cx) {
                    Poll::Ready(Err(oneshot::Canceled)) => return Poll::Ready(Next::Stop),
                    Poll::Ready(Ok(())) => stop = None, // run until the connection closes
                    Poll::Pending => {}
                }
            }
            streams
                .poll_next_unpin(cx)
                .map(|item| item.map_or(Next::End, Next::Item))
        })
        .await;
        let item = match next {
            Next::Item(item) => item,
            Next::Stop => {
                trace!("handler bridge detached");
                return;
            }
            Next::End => break,
        };
        match item {
            Item::Event(ev) => match ev {
                PeerConnectionEvent::IceCandidate(c) => handler.on_ice_candidate(c).await,
                PeerConnectionEvent::IceCandidateError(e) => {
                    handler.on_ice_candidate_error(e).await
                }
                PeerConnectionEvent::ConnectionStateChange(s) => {
                    handler.on_connection_state_change(s).await
                }
                PeerConnectionEvent::SignalingStateChange(s) => {
                    handler.on_signaling_state_change(s).await
                }
                PeerConnectionEvent::IceConnectionStateChange(s) => {
                    handler.on_ice_connection_state_change(s).await
                }
                PeerConnectionEvent::IceGatheringStateChange(s) => {
                    handler.on_ice_gathering_state_change(s).await
                }
                PeerConnectionEvent::NegotiationNeeded => handler.on_negotiation_needed().await,
                PeerConnectionEvent::DataChannel(dc) => {
                    streams.push(Box::pin(ChannelFeed::new(ChannelWatch::of(&dc))));
                    channels += 1;
                    handler.on_data_channel(dc).await;
                }
                PeerConnectionEvent::Track(track) => handler.on_track(track).await,
                PeerConnectionEvent::Lagged { missed } => handler.on_lagged(missed).await,
            },
            Item::LocalChannel(watch) => {
                streams.push(Box::pin(ChannelFeed::new(watch)));
                channels += 1;
            }
            Item::Channel(channel, item) => {
                // Made per callback: between callbacks the bridge keeps no connection alive.
                let dc = conn.channel(&channel);
                match item {
                    ChannelItem::Open => handler.on_data_channel_open(&dc).await,
                    ChannelItem::Message(msg) => handler.on_message(&dc, msg).await,
                    ChannelItem::BufferedAmountLow => handler.on_buffered_amount_low(&dc).await,
                    ChannelItem::Close => {
                        channels -= 1;
                        handler.on_data_channel_close(&dc).await;
                    }
                }
            }
            Item::EventsEnded | Item::LocalChannelsEnded => sources -= 1,
        }
        if sources == 0 && channels == 0 {
            break;
        }
    }
    trace!("handler bridge finished");
}

/// One data channel as the bridge sees it: `Open` first, then messages and
/// `BufferedAmountLow` as they come, then — after the last received message — `Close`.
struct ChannelFeed {
    channel: ChannelRef,
    events: EventStream<DataChannelEvent>,
    messages: MessageStream,
    phase: Phase,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the channel to open; messages are not read yet.
    Connecting,
    /// Open, `Open` not yielded yet.
    Opening,
    Open,
    /// Closed: handing over the messages left in the inbox, then `Close`.
    Draining,
    Done,
}

impl ChannelFeed {
    fn new(watch: ChannelWatch) -> Self {
        Self {
            messages: watch.channel.messages(),
            channel: watch.channel,
            events: watch.events,
            phase: if watch.opened {
                Phase::Opening
            } else {
                Phase::Connecting
            },
        }
    }

    fn item(&self, item: ChannelItem) -> Poll<Option<Item>> {
        Poll::Ready(Some(Item::Channel(self.channel.clone(), item)))
    }

    /// Next message, or `Close` once the inbox has ended (channel closed, inbox empty).
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        match self.messages.poll_next_unpin(cx) {
            Poll::Ready(Some(msg)) => self.item(ChannelItem::Message(msg)),
            Poll::Ready(None) => {
                self.phase = Phase::Done;
                self.item(ChannelItem::Close)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Stream for ChannelFeed {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Connecting => match this.events.poll_next_unpin(cx) {
                    Poll::Ready(Some(DataChannelEvent::Open)) => {
                        this.phase = Phase::Open;
                        return this.item(ChannelItem::Open);
                    }
                    Poll::Ready(Some(DataChannelEvent::Closed) | None) => {
                        this.phase = Phase::Draining
                    }
                    Poll::Ready(Some(_)) => {}
                    Poll::Pending => return Poll::Pending,
                },
                Phase::Opening => {
                    this.phase = Phase::Open;
                    return this.item(ChannelItem::Open);
                }
                Phase::Open => match this.events.poll_next_unpin(cx) {
                    Poll::Ready(Some(DataChannelEvent::BufferedAmountLow)) => {
                        return this.item(ChannelItem::BufferedAmountLow);
                    }
                    Poll::Ready(Some(DataChannelEvent::Closed) | None) => {
                        this.phase = Phase::Draining
                    }
                    Poll::Ready(Some(_)) => {}
                    Poll::Pending => return this.poll_message(cx),
                },
                Phase::Draining => return this.poll_message(cx),
                Phase::Done => return Poll::Ready(None),
            }
        }
    }
}
