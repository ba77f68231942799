//! The connection driver: one task that owns the `rtc` core, the sockets and the timer.
//!
//! # The sans-I/O rule
//!
//! After every input (a datagram, a timeout, a command) the driver drains every output of the
//! core — events, then received messages, then datagrams to send — before it takes the next
//! input, and re-arms its timer from `poll_timeout` before it sleeps. Work per wake-up is
//! bounded: after [`ITERATIONS_PER_POLL`] rounds it yields to the executor and asks to be
//! polled again.

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use futures::{Stream, channel::oneshot};
use log::{debug, trace, warn};
use rtc::{
    data_channel::{RTCDataChannelId, RTCDataChannelInit, RTCDataChannelState},
    peer_connection::{
        RTCPeerConnection,
        configuration::{RTCAnswerOptions, RTCOfferOptions},
        event::{RTCDataChannelEvent, RTCPeerConnectionEvent},
        message::RTCMessage,
        sdp::RTCSessionDescription,
        state::{
            RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
        },
        transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit},
    },
    sansio::Protocol,
    shared::{TaggedBytesMut, TransportContext, TransportProtocol},
};

use crate::{
    data_channel::{
        DataChannelEvent, DataChannelMessage, DcParams, DcShared, Payload, ReceiveBudget, lock,
    },
    error::{CoreError, Error, Result},
    event::Raw,
    ingress::{Credentials, Ingress},
    peer_connection::Shared,
    runtime::{AsyncTimer, AsyncUdpSocket, Runtime},
};

/// Rounds of input + drain per wake-up before yielding to the executor.
const ITERATIONS_PER_POLL: usize = 16;
/// Commands taken per round.
const COMMANDS_PER_ROUND: usize = 64;
/// Datagrams read per socket per round.
const DATAGRAMS_PER_ROUND: usize = 64;
/// Minimum spacing of timeouts handled for deadlines that are already in the past, so a core
/// that keeps reporting an expired deadline cannot make the driver spin.
const MIN_IMMEDIATE_TIMEOUT_INTERVAL: Duration = Duration::from_millis(1);
/// DTLS datagrams kept for replay while ICE is not connected yet, and their total size.
const EARLY_DTLS_MAX: usize = 16;
const EARLY_DTLS_MAX_BYTES: usize = 32 * 1024;
/// Upper bound of one send batch (segmentation offload takes at most 64 KiB).
const MAX_BATCH_BYTES: usize = 60 * 1024;

/// The answer to a command.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// What handles ask of the driver.
pub(crate) enum Command {
    CreateOffer {
        options: Option<Box<RTCOfferOptions>>,
        reply: Reply<RTCSessionDescription>,
    },
    CreateAnswer {
        options: Option<Box<RTCAnswerOptions>>,
        reply: Reply<RTCSessionDescription>,
    },
    SetLocalDescription {
        desc: Box<RTCSessionDescription>,
        reply: Reply<()>,
    },
    SetRemoteDescription {
        desc: Box<RTCSessionDescription>,
        reply: Reply<()>,
    },
    AddIceCandidate {
        candidate: Box<RTCIceCandidateInit>,
        reply: Reply<()>,
    },
    LocalDescription {
        reply: Reply<Option<RTCSessionDescription>>,
    },
    RemoteDescription {
        reply: Reply<Option<RTCSessionDescription>>,
    },
    CreateDataChannel {
        label: String,
        init: Box<RTCDataChannelInit>,
        reply: Reply<Arc<DcShared>>,
    },
    Send {
        id: RTCDataChannelId,
        payload: Payload,
    },
    CloseChannel {
        id: RTCDataChannelId,
        reply: Reply<()>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// Datagrams gathered for one segmented send.
struct TxBatch {
    socket: usize,
    peer: SocketAddr,
    segment_size: usize,
}

/// A bound socket and the exact address the core knows it by.
pub(crate) struct Socket {
    pub(crate) sock: Arc<dyn AsyncUdpSocket>,
    pub(crate) addr: SocketAddr,
}

pub(crate) struct DriverConfig {
    pub(crate) event_capacity: usize,
    pub(crate) high_water_mark: usize,
}

struct Channel {
    dc: Arc<DcShared>,
    /// Buffered amount at the last refresh, to detect the fall below the low threshold.
    last_buffered: usize,
    /// Listed in `Driver::busy`.
    busy: bool,
}

/// The driver future. Completes when the connection is closed.
#[must_use = "the driver does nothing unless spawned"]
pub(crate) struct Driver {
    core: RTCPeerConnection,
    runtime: Arc<dyn Runtime>,
    shared: Arc<Shared>,
    cmd_rx: Pin<Box<async_channel::Receiver<Command>>>,
    sockets: Vec<Socket>,
    config: DriverConfig,
    timer: Pin<Box<dyn AsyncTimer>>,
    timer_deadline: Option<Instant>,
    last_immediate_timeout: Option<Instant>,
    /// Receive buffer size the sockets need.
    recv_buffer: usize,
    /// The batch in `tx_buf`, waiting for the socket.
    tx_batch: Option<TxBatch>,
    tx_buf: Vec<u8>,
    /// A datagram taken from the core that did not fit the previous batch.
    tx_next: Option<TaggedBytesMut>,
    /// Ordered by id, so that whatever walks the channels does so in the same order every run.
    channels: BTreeMap<RTCDataChannelId, Channel>,
    /// Channels closing locally, waiting for their sent data to be delivered.
    closing: Vec<RTCDataChannelId>,
    /// Channels the core reported closed, waiting for their received messages to be read
    /// from the core.
    closed: Vec<RTCDataChannelId>,
    /// Channels with data in flight, whose buffered amount the driver keeps current.
    busy: Vec<RTCDataChannelId>,
    /// A message whose channel inbox is full; nothing more is read until it is delivered.
    parked: Option<(RTCDataChannelId, DataChannelMessage)>,
    early_candidates: Vec<RTCIceCandidateInit>,
    gathered: bool,
    /// DTLS records that arrived before ICE selected a pair (the core drops those); replayed
    /// once ICE connects instead of waiting a second for the peer's retransmission. Only from
    /// sources the inbound filter authenticated, and bounded.
    early_dtls: Vec<TaggedBytesMut>,
    early_dtls_bytes: usize,
    /// What may reach the core from the network.
    ingress: Ingress,
    /// The receive budget all channel inboxes share.
    budget: Arc<ReceiveBudget>,
    /// ICE has been connected at least once.
    ice_connected: bool,
    /// Run `handle_timeout` once more in this round (the DTLS client's first flight waits
    /// for one after ICE connects).
    kick_timeout: bool,
    finished: bool,
}

impl Driver {
    pub(crate) fn new(
        core: RTCPeerConnection,
        runtime: Arc<dyn Runtime>,
        shared: Arc<Shared>,
        cmd_rx: async_channel::Receiver<Command>,
        sockets: Vec<Socket>,
        crypto: Option<Arc<dyn rtc::crypto::RTCCryptoProvider>>,
        config: DriverConfig,
    ) -> Self {
        let timer = runtime.new_timer(runtime.now() + Duration::from_secs(3600));
        let ingress = Ingress::new(crypto, shared.filter.clone());
        let budget = shared.budget.clone();
        let recv_buffer = sockets
            .iter()
            .map(|s| s.sock.recv_buffer_size())
            .max()
            .unwrap_or(2048);
        Self {
            core,
            runtime,
            shared,
            cmd_rx: Box::pin(cmd_rx),
            sockets,
            config,
            timer,
            timer_deadline: None,
            last_immediate_timeout: None,
            recv_buffer,
            tx_batch: None,
            tx_buf: Vec::new(),
            tx_next: None,
            channels: BTreeMap::new(),
            busy: Vec::new(),
            closing: Vec::new(),
            closed: Vec::new(),
            parked: None,
            early_candidates: Vec::new(),
            gathered: false,
            early_dtls: Vec::new(),
            early_dtls_bytes: 0,
            ingress,
            budget,
            ice_connected: false,
            kick_timeout: false,
            finished: false,
        }
    }

    fn publish(&self, raw: Raw) {
        lock(&self.shared.hub).publish(raw);
    }

    // ---- commands -------------------------------------------------------------------------

    /// Takes up to a batch of commands. Returns whether any was taken; starts the shutdown when
    /// every handle is gone.
    fn poll_commands(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        for _ in 0..COMMANDS_PER_ROUND {
            match self.cmd_rx.as_mut().poll_next(cx) {
                Poll::Ready(Some(cmd)) => {
                    any = true;
                    self.handle_command(cmd, cx);
                    if self.finished {
                        break;
                    }
                }
                Poll::Ready(None) => {
                    debug!("last handle dropped: closing");
                    self.shutdown(cx);
                    return true;
                }
                Poll::Pending => break,
            }
        }
        any
    }

    fn handle_command(&mut self, cmd: Command, cx: &mut Context<'_>) {
        let now = self.runtime.now();
        match cmd {
            Command::CreateOffer { options, reply } => {
                let r = self
                    .core
                    .create_offer(options.map(|o| *o))
                    .map_err(invalid_op);
                let _ = reply.send(r);
            }
            Command::CreateAnswer { options, reply } => {
                let r = self
                    .core
                    .create_answer(options.map(|o| *o))
                    .map_err(invalid_op);
                let _ = reply.send(r);
            }
            Command::SetLocalDescription { desc, reply } => {
                let r = self
                    .core
                    .set_local_description(now, *desc)
                    .map_err(|e| Error::InvalidSessionDescription(e.into()));
                if r.is_ok()
                    && let Some(creds) = self
                        .core
                        .local_description()
                        .and_then(|d| Credentials::from_sdp(&d.sdp))
                {
                    self.ingress.set_local(creds);
                }
                if r.is_ok() && !self.gathered {
                    self.gathered = true;
                    self.gather();
                }
                // Replied after gathering: the local description now holds the candidates.
                let _ = reply.send(r);
            }
            Command::SetRemoteDescription { desc, reply } => {
                let r = self
                    .core
                    .set_remote_description(now, *desc)
                    .map_err(|e| Error::InvalidSessionDescription(e.into()));
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok
                    && let Some(creds) = self
                        .core
                        .remote_description()
                        .and_then(|d| Credentials::from_sdp(&d.sdp))
                {
                    self.ingress.set_remote(creds);
                }
                if ok {
                    for c in std::mem::take(&mut self.early_candidates) {
                        if let Err(e) = self.add_remote_candidate(c) {
                            warn!("early remote candidate rejected: {e}");
                        }
                    }
                }
            }
            Command::AddIceCandidate { candidate, reply } => {
                let candidate = *candidate;
                let r = if self.core.remote_description().is_none() {
                    self.early_candidates.push(candidate);
                    Ok(())
                } else {
                    self.add_remote_candidate(candidate)
                };
                let _ = reply.send(r);
            }
            Command::LocalDescription { reply } => {
                let _ = reply.send(Ok(self.core.local_description()));
            }
            Command::RemoteDescription { reply } => {
                let _ = reply.send(Ok(self.core.remote_description().cloned()));
            }
            Command::CreateDataChannel { label, init, reply } => {
                let r = self.create_data_channel(&label, *init);
                let _ = reply.send(r);
            }
            Command::Send { id, payload } => self.send(now, id, payload),
            Command::CloseChannel { id, reply } => {
                // The core resets the stream at once, ahead of messages still queued; so the
                // reset waits until everything sent before the close has been delivered.
                if let Some(ch) = self.channels.get(&id) {
                    ch.dc.set_state(RTCDataChannelState::Closing);
                    if !self.closing.contains(&id) {
                        self.closing.push(id);
                    }
                }
                let _ = reply.send(Ok(()));
            }
            Command::Close { reply } => {
                self.shutdown(cx);
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn add_remote_candidate(&mut self, candidate: RTCIceCandidateInit) -> Result<()> {
        if let Some(remote) = self.core.remote_description() {
            check_media_section(&candidate, remote)?;
        }
        self.core
            .add_remote_candidate(candidate)
            .map_err(|e| Error::InvalidCandidate(e.into()))
    }

    /// Announces one host candidate per socket, then the end of candidates.
    fn gather(&mut self) {
        self.drain_events(); // the signaling change comes before gathering
        self.publish(Raw::IceGathering(RTCIceGatheringState::Gathering));
        for s in &self.sockets {
            let host = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "udp".to_owned(),
                    address: s.addr.ip().to_string(),
                    port: s.addr.port(),
                    component: 1,
                    ..Default::default()
                },
                ..Default::default()
            }
            .new_candidate_host()
            .and_then(|c| RTCIceCandidate::from(&c).to_json())
            .and_then(|init| self.core.add_local_candidate(init));
            if let Err(e) = host {
                warn!("host candidate {} not added: {e}", s.addr);
            }
        }
        // The empty candidate ends gathering; the core reports `Complete`.
        if let Err(e) = self
            .core
            .add_local_candidate(RTCIceCandidateInit::default())
        {
            warn!("end of candidates not accepted: {e}");
        }
    }

    fn create_data_channel(
        &mut self,
        label: &str,
        init: RTCDataChannelInit,
    ) -> Result<Arc<DcShared>> {
        let id = self
            .core
            .create_data_channel(label, Some(init))
            .map_err(invalid_op)?
            .id();
        let dc = self.register_channel(id).ok_or(Error::Closed)?;
        lock(&self.shared.hub).announce_local_channel(&dc);
        Ok(dc)
    }

    /// Creates the shared state of channel `id` from the core's view of it.
    fn register_channel(&mut self, id: RTCDataChannelId) -> Option<Arc<DcShared>> {
        let max_message_size = self.max_message_size();
        let core_dc = self.core.data_channel(id)?;
        let dc = Arc::new(DcShared::new(
            DcParams {
                id,
                label: core_dc.label().to_owned(),
                protocol: core_dc.protocol().to_owned(),
                ordered: core_dc.ordered(),
                max_retransmits: core_dc.max_retransmits(),
                max_packet_life_time: core_dc.max_packet_life_time(),
                negotiated: core_dc.negotiated(),
                high_water_mark: self.config.high_water_mark,
                budget: self.budget.clone(),
                event_capacity: self.config.event_capacity,
            },
            self.shared.driver_waker.clone(),
        ));
        if let Some(sid) = core_dc.stream_id() {
            dc.stream_id.store(sid as usize, Ordering::Release);
        }
        if core_dc.ready_state() == RTCDataChannelState::Open {
            dc.max_message_size
                .store(max_message_size, Ordering::Release);
            dc.set_state(RTCDataChannelState::Open);
        }
        self.channels.insert(
            id,
            Channel {
                dc: dc.clone(),
                last_buffered: 0,
                busy: false,
            },
        );
        Some(dc)
    }

    fn max_message_size(&self) -> usize {
        self.core
            .sctp()
            .and_then(|s| s.max_message_size())
            .map_or(0, |m| m as usize)
    }

    fn send(&mut self, now: Instant, id: RTCDataChannelId, payload: Payload) {
        let len = payload.len();
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.dc.pending.fetch_sub(len, Ordering::AcqRel);
            if !ch.busy {
                ch.busy = true;
                self.busy.push(id);
            }
        }
        let Some(mut dc) = self.core.data_channel(id) else {
            debug!("send on unknown channel {id} dropped");
            return;
        };
        let r = match payload {
            Payload::Binary(b) => dc.send(now, BytesMut::from(b)),
            Payload::Text(s) => dc.send_text(now, s),
        };
        if let Err(e) = r {
            // The handle checked state and size; this is a race with a close.
            debug!("send on channel {id} failed: {e}");
        }
    }

    // ---- core output ------------------------------------------------------------------------

    /// Drains core events, then received messages. Returns whether anything happened.
    fn drain_core(&mut self) -> bool {
        let mut any = self.drain_events();
        if self.kick_timeout {
            self.kick_timeout = false;
            let now = self.runtime.now();
            if let Err(e) = self.core.handle_timeout(now) {
                debug!("handle_timeout: {e}");
            }
            any |= self.drain_events();
        }
        any |= self.drain_reads();
        if self.parked.is_none() {
            for id in std::mem::take(&mut self.closed) {
                if let Some(ch) = self.channels.remove(&id) {
                    ch.dc.set_state(RTCDataChannelState::Closed);
                }
                self.closing.retain(|c| *c != id);
            }
        }
        any
    }

    /// Starts the stream reset of closing channels whose sent data has all been delivered.
    fn close_drained_channels(&mut self) {
        let (core, channels) = (&mut self.core, &self.channels);
        self.closing.retain(|id| {
            let Some(ch) = channels.get(id) else {
                return false;
            };
            let Some(mut dc) = core.data_channel(*id) else {
                return false;
            };
            if ch.dc.pending.load(Ordering::Acquire) > 0 || dc.outstanding_bytes() > 0 {
                return true;
            }
            if let Err(e) = dc.close() {
                debug!("close of channel {id}: {e}");
            }
            false
        });
    }

    fn drain_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.core.poll_event() {
            any = true;
            self.handle_event(ev);
        }
        any
    }

    fn handle_event(&mut self, ev: RTCPeerConnectionEvent) {
        trace!("core event {ev:?}");
        match ev {
            RTCPeerConnectionEvent::OnNegotiationNeededEvent => {
                self.publish(Raw::NegotiationNeeded)
            }
            RTCPeerConnectionEvent::OnIceCandidateEvent(e) => match e.candidate.to_json() {
                Ok(init) => self.publish(Raw::IceCandidate(Some(init))),
                Err(e) => warn!("local candidate not serializable: {e}"),
            },
            RTCPeerConnectionEvent::OnSignalingStateChangeEvent(s) => {
                self.publish(Raw::Signaling(s))
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(s) => {
                let up = matches!(
                    s,
                    RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
                );
                if up {
                    self.kick_timeout = true;
                    if !self.ice_connected {
                        self.ice_connected = true;
                        self.early_dtls_bytes = 0;
                        for early in std::mem::take(&mut self.early_dtls) {
                            let _ = self.core.handle_read(early);
                        }
                    }
                }
                self.publish(Raw::IceConnection(s))
            }
            RTCPeerConnectionEvent::OnIceGatheringStateChangeEvent(s) => {
                if s == RTCIceGatheringState::Complete {
                    self.publish(Raw::IceCandidate(None));
                }
                self.publish(Raw::IceGathering(s))
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => {
                if s == RTCPeerConnectionState::Connected {
                    // Connected means the DTLS handshake has completed.
                    self.ingress.dtls_complete();
                }
                self.publish(Raw::Connection(s))
            }
            RTCPeerConnectionEvent::OnDataChannel(e) => self.handle_channel_event(e),
            other => trace!("core event ignored: {other:?}"),
        }
    }

    fn handle_channel_event(&mut self, ev: RTCDataChannelEvent) {
        match ev {
            RTCDataChannelEvent::OnOpen(id) => {
                // A known id is a local channel (or one already announced); an unknown one was
                // opened by the remote peer.
                let (dc, remote) = match self.channels.get(&id) {
                    Some(ch) => (ch.dc.clone(), false),
                    None => match self.register_channel(id) {
                        Some(dc) => (dc, true),
                        None => return,
                    },
                };
                if let Some(sid) = self.core.data_channel(id).and_then(|d| d.stream_id()) {
                    dc.stream_id.store(sid as usize, Ordering::Release);
                }
                dc.max_message_size
                    .store(self.max_message_size(), Ordering::Release);
                dc.set_state(RTCDataChannelState::Open);
                if remote {
                    self.publish(Raw::DataChannel(dc));
                }
            }
            RTCDataChannelEvent::OnClose(id) => {
                // Messages received before the close may still sit in the core's read queue:
                // the channel closes once they are delivered.
                if self.channels.contains_key(&id) && !self.closed.contains(&id) {
                    self.closed.push(id);
                }
            }
            other => trace!("channel event ignored: {other:?}"),
        }
    }

    /// Moves received messages into channel inboxes until the core has none or an inbox is
    /// full (then SCTP's receive window closes and the remote sender slows down).
    fn drain_reads(&mut self) -> bool {
        let mut any = false;
        if let Some((id, msg)) = self.parked.take() {
            if !self.deliver(id, msg) {
                return false;
            }
            any = true;
        }
        while let Some(m) = self.core.poll_read() {
            any = true;
            match m.message {
                RTCMessage::DataChannelMessage(id, msg) => {
                    let msg = DataChannelMessage {
                        is_string: msg.is_string,
                        data: msg.data.freeze(),
                    };
                    if !self.deliver(id, msg) {
                        break;
                    }
                }
                other => trace!("message ignored: {other:?}"),
            }
        }
        any
    }

    /// Frees the inboxes of channels nobody can read any more (no handle, no stream, no
    /// unread event holds them). Returns whether anything was freed.
    fn discard_unreadable_inboxes(&mut self) -> bool {
        if self.budget.held() == 0 {
            return false;
        }
        let mut freed = 0;
        for ch in self.channels.values() {
            if Arc::strong_count(&ch.dc) == 1 {
                freed += ch.dc.discard_inbox();
            }
        }
        if freed > 0 {
            debug!("{freed} bytes of unreadable messages discarded");
        }
        freed > 0
    }

    /// Returns false if the message had to be parked.
    fn deliver(&mut self, id: RTCDataChannelId, msg: DataChannelMessage) -> bool {
        let open_in_core = |core: &mut RTCPeerConnection| {
            core.data_channel(id)
                .is_some_and(|d| d.ready_state() == RTCDataChannelState::Open)
        };
        if !self.channels.contains_key(&id)
            && open_in_core(&mut self.core)
            && self.register_channel(id).is_some()
        {
            // A message overtook the channel's open event: announce the channel now.
            if let Some(ch) = self.channels.get(&id) {
                self.publish(Raw::DataChannel(ch.dc.clone()));
            }
        }
        let Some(ch) = self.channels.get(&id) else {
            debug!("message for unknown channel {id} dropped");
            return true;
        };
        if Arc::strong_count(&ch.dc) == 1 {
            // No handle, stream or pending event can ever read it.
            trace!("message for unobserved channel {id} dropped");
            return true;
        }
        let msg = match ch.dc.try_deliver(msg) {
            Ok(()) => return true,
            Err(msg) => msg,
        };
        // The budget is spent: unless part of it is held for nobody, wait for a reader.
        if self.discard_unreadable_inboxes()
            && let Some(ch) = self.channels.get(&id)
        {
            match ch.dc.try_deliver(msg) {
                Ok(()) => return true,
                Err(msg) => self.parked = Some((id, msg)),
            }
        } else {
            self.parked = Some((id, msg));
        }
        false
    }

    /// Sends what the core has to send. Returns whether anything was sent.
    ///
    /// Consecutive datagrams for the same socket and peer, all of the first one's size (the
    /// last may be shorter), go out as one batch where the socket supports segmentation
    /// offload: one system call instead of dozens.
    fn drain_writes(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        loop {
            if self.tx_batch.is_none() {
                let first = match self.tx_next.take() {
                    Some(tx) => tx,
                    None => match self.core.poll_write() {
                        Some(tx) => tx,
                        None => return any,
                    },
                };
                let Some(socket) = self.socket_index(first.transport.local_addr) else {
                    debug!(
                        "no socket for {}: datagram dropped",
                        first.transport.local_addr
                    );
                    continue;
                };
                self.fill_batch(socket, first);
            }
            let Some(batch) = &self.tx_batch else {
                continue;
            };
            let sock = &self.sockets[batch.socket].sock;
            match sock.poll_send_segments(cx, &self.tx_buf, batch.segment_size, batch.peer) {
                Poll::Ready(r) => {
                    if let Err(e) = r {
                        debug!("send to {} failed: {e}", batch.peer);
                    }
                    any = true;
                    self.tx_batch = None;
                }
                Poll::Pending => return any,
            }
        }
    }

    /// Starts a batch with `first` and adds the core's next datagrams while they fit.
    fn fill_batch(&mut self, socket: usize, first: TaggedBytesMut) {
        let peer = first.transport.peer_addr;
        let segment_size = first.message.len().max(1);
        let max_segments = self.sockets[socket]
            .sock
            .max_send_segments()
            .min(MAX_BATCH_BYTES / segment_size)
            .max(1);
        self.tx_buf.clear();
        self.tx_buf.extend_from_slice(&first.message);
        let mut segments = 1;
        while segments < max_segments {
            let Some(next) = self.core.poll_write() else {
                break;
            };
            let fits = next.transport.peer_addr == peer
                && self.socket_index(next.transport.local_addr) == Some(socket)
                && !next.message.is_empty()
                && next.message.len() <= segment_size;
            if !fits {
                self.tx_next = Some(next);
                break;
            }
            self.tx_buf.extend_from_slice(&next.message);
            segments += 1;
            if next.message.len() < segment_size {
                break; // only the last segment may be short
            }
        }
        self.tx_batch = Some(TxBatch {
            socket,
            peer,
            segment_size,
        });
    }

    fn socket_index(&self, local: SocketAddr) -> Option<usize> {
        self.sockets
            .iter()
            .position(|s| s.addr == local)
            .or_else(|| {
                self.sockets
                    .iter()
                    .position(|s| s.addr.is_ipv4() == local.is_ipv4())
            })
    }

    /// Updates each channel's buffered amount from the core, wakes blocked senders and
    /// reports the fall below the low threshold.
    fn refresh_buffered(&mut self) {
        let (core, channels) = (&mut self.core, &mut self.channels);
        self.busy.retain(|id| {
            let Some(ch) = channels.get_mut(id) else {
                return false;
            };
            let pending = ch.dc.pending.load(Ordering::Acquire);
            let outstanding = core.data_channel(*id).map_or(0, |d| d.outstanding_bytes());
            ch.dc.outstanding.store(outstanding, Ordering::Release);
            let buffered = pending + outstanding;
            if buffered < ch.last_buffered {
                let low = ch.dc.low_threshold.load(Ordering::Acquire);
                if ch.last_buffered > low && buffered <= low {
                    ch.dc.publish(DataChannelEvent::BufferedAmountLow);
                }
                ch.dc.writable.notify(usize::MAX);
            }
            ch.last_buffered = buffered;
            ch.busy = buffered > 0;
            ch.busy
        });
    }

    // ---- input ------------------------------------------------------------------------------

    fn poll_sockets(&mut self, cx: &mut Context<'_>) -> bool {
        // One receive buffer per thread, not per connection: it only lives within this call,
        // and with receive coalescing it is 64 KiB.
        thread_local! {
            static RECV_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        RECV_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            if buf.len() < self.recv_buffer {
                buf.resize(self.recv_buffer, 0);
            }
            let mut any = false;
            for i in 0..self.sockets.len() {
                let local = self.sockets[i].addr;
                for _ in 0..DATAGRAMS_PER_ROUND {
                    let (len, stride, peer) =
                        match self.sockets[i].sock.poll_recv_segments(cx, &mut buf) {
                            Poll::Ready(Ok(r)) => r,
                            Poll::Ready(Err(e)) => {
                                // e.g. ICMP port unreachable reported on the next receive
                                trace!("recv on {local}: {e}");
                                any = true;
                                continue;
                            }
                            Poll::Pending => break,
                        };
                    any = true;
                    let now = self.runtime.now();
                    for datagram in buf[..len.min(buf.len())].chunks(stride.max(1)) {
                        self.handle_datagram(now, local, peer, datagram);
                    }
                }
            }
            any
        })
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
    ) {
        let packet = || TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: peer,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: BytesMut::from(datagram),
        };
        if !self.ingress.admit(peer, datagram) {
            return;
        }
        // RFC 7983: first byte 20..=63 is DTLS.
        let is_dtls = matches!(datagram.first(), Some(20..=63));
        if !self.ice_connected
            && is_dtls
            && self.early_dtls.len() < EARLY_DTLS_MAX
            && self.early_dtls_bytes + datagram.len() <= EARLY_DTLS_MAX_BYTES
        {
            self.early_dtls_bytes += datagram.len();
            self.early_dtls.push(packet());
        }
        let _ = self.core.handle_read(packet());
    }

    /// Handles an expired deadline. Returns whether a timeout was handled.
    fn poll_deadline(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.core.poll_timeout() else {
            return false;
        };
        if deadline > now {
            return false;
        }
        if let Some(last) = self.last_immediate_timeout
            && now < last + MIN_IMMEDIATE_TIMEOUT_INTERVAL
        {
            return false;
        }
        self.last_immediate_timeout = Some(now);
        if let Err(e) = self.core.handle_timeout(now) {
            // e.g. a handshake gave up; the state events tell the application
            debug!("handle_timeout: {e}");
        }
        // Timers fire a few times a second: often enough to notice inboxes that lost their
        // last reader.
        self.discard_unreadable_inboxes();
        true
    }

    /// Arms the timer for the core's next deadline. Returns true if it has already fired.
    fn arm_timer(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(mut deadline) = self.core.poll_timeout() else {
            self.timer_deadline = None;
            return false;
        };
        if deadline <= now {
            let last = self.last_immediate_timeout.unwrap_or(now);
            deadline = deadline.max(last + MIN_IMMEDIATE_TIMEOUT_INTERVAL);
        }
        if self.timer_deadline != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.timer_deadline = Some(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    // ---- shutdown ---------------------------------------------------------------------------

    /// Closes the core, sends its last datagrams, ends every stream and stops.
    fn shutdown(&mut self, cx: &mut Context<'_>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Err(e) = self.core.close() {
            debug!("close: {e}");
        }
        self.drain_events();
        // Best effort: the close_notify and SCTP ABORT go out now or not at all.
        self.tx_batch = None;
        self.tx_next = None;
        self.drain_writes(cx);
        // Release the ports now: `close()` returns after this.
        self.sockets.clear();
        let mut hub = lock(&self.shared.hub);
        hub.publish(Raw::Signaling(RTCSignalingState::Closed));
        hub.publish(Raw::IceConnection(RTCIceConnectionState::Closed));
        hub.publish(Raw::Connection(RTCPeerConnectionState::Closed));
        hub.close();
        drop(hub);
        for (_, ch) in std::mem::take(&mut self.channels) {
            ch.dc.set_state(RTCDataChannelState::Closed);
        }
        self.parked = None;
        self.cmd_rx.close();
        // Commands still queued get no reply: their callers see `Error::Closed`.
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            if let Command::Close { reply } = cmd {
                let _ = reply.send(Ok(()));
            }
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.shared.driver_waker.register(cx.waker());
        for _ in 0..ITERATIONS_PER_POLL {
            let mut progress = this.poll_commands(cx);
            if this.finished {
                return Poll::Ready(());
            }
            progress |= this.poll_sockets(cx);
            let now = this.runtime.now();
            progress |= this.poll_deadline(now);
            progress |= this.drain_core();
            progress |= this.drain_writes(cx);
            this.refresh_buffered();
            if !this.closing.is_empty() {
                this.close_drained_channels();
            }
            if !progress {
                if this.arm_timer(cx, now) {
                    continue;
                }
                return Poll::Pending;
            }
        }
        // Bounded work per wake-up: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn invalid_op(e: rtc::shared::error::Error) -> Error {
    Error::InvalidOperation(CoreError::from(e))
}

/// Rejects a candidate whose `sdpMid` / `sdpMLineIndex` names no media section of `remote`.
fn check_media_section(c: &RTCIceCandidateInit, remote: &RTCSessionDescription) -> Result<()> {
    if c.candidate.trim_start_matches("candidate:").is_empty() {
        return Ok(());
    }
    let parsed = remote
        .unmarshal()
        .map_err(|e| Error::InvalidSessionDescription(e.into()))?;
    let medias = &parsed.media_descriptions;
    let unknown = || Error::UnknownMediaSection {
        mid: c.sdp_mid.clone(),
        mline_index: c.sdp_mline_index,
    };
    if let Some(mid) = c.sdp_mid.as_deref().filter(|m| !m.is_empty()) {
        let found = medias
            .iter()
            .any(|m| m.attribute("mid").flatten() == Some(mid));
        if !found {
            return Err(unknown());
        }
    } else if let Some(i) = c.sdp_mline_index
        && usize::from(i) >= medias.len()
    {
        return Err(unknown());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every slot of the bounded command queue is allocated up front: keep commands small.
    #[test]
    fn commands_are_small() {
        assert!(std::mem::size_of::<super::Command>() <= 64);
    }
}
