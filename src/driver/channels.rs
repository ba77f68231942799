//! Data channels, as the driver drives them: creation, delivery of received messages into
//! inboxes (within the connection's receive budget), send accounting, and close.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use log::{debug, trace, warn};
use rtc::{
    data_channel::{
        RTCDataChannelId, RTCDataChannelInit, RTCDataChannelMessage, RTCDataChannelState,
    },
    peer_connection::{RTCPeerConnection, event::RTCDataChannelEvent},
};

use crate::{
    error::{CoreError, Error, Result},
    shared::{
        Shared,
        channel::{DataChannelEvent, DataChannelMessage, DcParams, DcShared},
        command::Payload,
        hub::Raw,
    },
    sync::lock,
};

/// How long a channel closed by the application may stay `Closing`: waiting for the data sent
/// before the close to be delivered, then for the peer to acknowledge the stream reset. A peer
/// that does neither in time (a dead path, a stalled receiver) gets the channel closed
/// locally: its streams end and what was still unsent is lost.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most data channels a connection keeps open at once. A channel the remote peer opens
/// beyond it is closed at once, unannounced (each costs some kilobytes on both sides, and SCTP
/// allows 65,535), and counted in [`Channels::refused`].
pub(crate) const MAX_DATA_CHANNELS: usize = 4096;

/// The connection's data channels and what the driver tracks of them.
pub(super) struct Channels {
    shared: Arc<Shared>,
    high_water_mark: usize,
    event_capacity: usize,
    /// Ordered by id, so that whatever walks the channels does so in the same order every run.
    map: BTreeMap<RTCDataChannelId, Channel>,
    /// Channels closing locally, waiting for their sent data to be delivered, with the
    /// deadline of their close.
    closing: Vec<(RTCDataChannelId, Instant)>,
    /// Channels whose stream reset has started, waiting for the core to report them closed,
    /// with the deadline of their close.
    resetting: Vec<(RTCDataChannelId, Instant)>,
    /// Channels the core reported closed, waiting for their received messages to be read
    /// from the core.
    closed: Vec<RTCDataChannelId>,
    /// Channels with data in flight, whose buffered amount the driver keeps current.
    busy: Vec<RTCDataChannelId>,
    /// A message that did not fit the receive budget; nothing more is read until it is
    /// delivered.
    parked: Option<(RTCDataChannelId, DataChannelMessage)>,
    /// Remote channels closed at once because [`MAX_DATA_CHANNELS`] were open.
    refused: u64,
    /// Remote channels dropped from the hold unannounced (nobody subscribed while more than
    /// the event capacity of them opened): closed at the next round, so the remote peer
    /// learns that nobody will read them.
    unclaimed: Vec<RTCDataChannelId>,
}

struct Channel {
    dc: Arc<DcShared>,
    /// Buffered amount at the last refresh, to detect the fall below the low threshold.
    last_buffered: usize,
    /// Listed in `Channels::busy`.
    busy: bool,
    /// Bytes handed to the core so far, and where each message handed and not yet
    /// acknowledged ends in that count: the messages in flight are those that end beyond what
    /// the core has acknowledged (handed minus its buffered amount).
    handed: u64,
    in_flight: VecDeque<u64>,
}

impl Channels {
    pub(super) fn new(shared: Arc<Shared>, high_water_mark: usize, event_capacity: usize) -> Self {
        Self {
            shared,
            high_water_mark,
            event_capacity,
            map: BTreeMap::new(),
            closing: Vec::new(),
            resetting: Vec::new(),
            closed: Vec::new(),
            busy: Vec::new(),
            parked: None,
            refused: 0,
            unclaimed: Vec::new(),
        }
    }

    /// Closes remote channel `id` if the connection has [`MAX_DATA_CHANNELS`] already;
    /// returns whether it did.
    fn refuse_remote(&mut self, core: &mut RTCPeerConnection, id: RTCDataChannelId) -> bool {
        if self.map.len() < MAX_DATA_CHANNELS {
            return false;
        }
        if self.refused == 0 {
            warn!("remote data channels beyond {MAX_DATA_CHANNELS} are closed at once");
        }
        self.refused += 1;
        if let Some(mut dc) = core.data_channel(id)
            && let Err(e) = dc.close()
        {
            debug!("close of refused channel {id}: {e}");
        }
        true
    }

    fn publish(&mut self, raw: Raw) {
        let dropped = lock(&self.shared.hub).publish(raw);
        if let Some(Raw::DataChannel(dc)) = dropped {
            if self.unclaimed.is_empty() {
                debug!(
                    "remote channel {} dropped unannounced from the hold: closing it",
                    dc.id
                );
            }
            self.unclaimed.push(dc.id);
        }
    }

    /// Creates a channel in the core and its shared state.
    pub(super) fn create(
        &mut self,
        core: &mut RTCPeerConnection,
        label: &str,
        init: RTCDataChannelInit,
    ) -> Result<Arc<DcShared>> {
        let id = core
            .create_data_channel(label, Some(init))
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))?
            .id();
        let dc = self.register(core, id).ok_or(Error::DataChannelClosed)?;
        lock(&self.shared.hub).announce_local_channel(&dc);
        Ok(dc)
    }

    /// Creates the shared state of channel `id` from the core's view of it.
    fn register(
        &mut self,
        core: &mut RTCPeerConnection,
        id: RTCDataChannelId,
    ) -> Option<Arc<DcShared>> {
        let max_message_size = max_message_size(core);
        let core_dc = core.data_channel(id)?;
        let dc = Arc::new(DcShared::new(
            DcParams {
                id,
                label: core_dc.label().to_owned(),
                protocol: core_dc.protocol().to_owned(),
                ordered: core_dc.ordered(),
                max_retransmits: core_dc.max_retransmits(),
                max_packet_life_time: core_dc.max_packet_life_time(),
                negotiated: core_dc.negotiated(),
                high_water_mark: self.high_water_mark,
                budget: self.shared.budget.clone(),
                event_capacity: self.event_capacity,
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
        self.map.insert(
            id,
            Channel {
                dc: dc.clone(),
                last_buffered: 0,
                busy: false,
                handed: 0,
                in_flight: VecDeque::new(),
            },
        );
        Some(dc)
    }

    /// Hands a message to SCTP; its bytes move from "pending" to the core's accounting.
    pub(super) fn send(
        &mut self,
        core: &mut RTCPeerConnection,
        now: Instant,
        id: RTCDataChannelId,
        payload: Payload,
    ) {
        let len = payload.len();
        if let Some(ch) = self.map.get_mut(&id) {
            ch.dc.pending.fetch_sub(len, Ordering::AcqRel);
            ch.dc.pending_messages.fetch_sub(1, Ordering::AcqRel);
            ch.handed += len as u64;
            ch.in_flight.push_back(ch.handed);
            ch.dc
                .outstanding_messages
                .store(ch.in_flight.len(), Ordering::Release);
            if !ch.busy {
                ch.busy = true;
                self.busy.push(id);
            }
        }
        let Some(mut dc) = core.data_channel(id) else {
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

    /// The application closes channel `id`. The core resets the stream at once, ahead of
    /// messages still queued; so the reset waits until everything sent before the close has
    /// been delivered.
    pub(super) fn close(&mut self, id: RTCDataChannelId, now: Instant) {
        if let Some(ch) = self.map.get(&id) {
            ch.dc.set_state(RTCDataChannelState::Closing);
            let known = |list: &[(RTCDataChannelId, Instant)]| list.iter().any(|(c, _)| *c == id);
            if !known(&self.closing) && !known(&self.resetting) {
                self.closing.push((id, now + CLOSE_TIMEOUT));
            }
        }
    }

    /// Starts the stream reset of closing channels whose sent data has all been delivered,
    /// and closes locally those past their deadline.
    pub(super) fn close_drained(&mut self, core: &mut RTCPeerConnection, now: Instant) {
        for id in std::mem::take(&mut self.unclaimed) {
            self.close(id, now);
        }
        if self.closing.is_empty() && self.resetting.is_empty() {
            return;
        }
        let map = &self.map;
        let resetting = &mut self.resetting;
        self.closing.retain(|&(id, deadline)| {
            let Some(ch) = map.get(&id) else {
                return false;
            };
            let Some(mut dc) = core.data_channel(id) else {
                return false;
            };
            let drained = ch.dc.pending.load(Ordering::Acquire) == 0 && dc.outstanding_bytes() == 0;
            if !drained && now < deadline {
                return true;
            }
            if let Err(e) = dc.close() {
                debug!("close of channel {id}: {e}");
            }
            resetting.push((id, deadline));
            false
        });
        let mut expired = Vec::new();
        self.resetting.retain(|&(id, deadline)| {
            if !map.contains_key(&id) {
                return false; // the core reported it closed
            }
            if now < deadline {
                return true;
            }
            expired.push(id);
            false
        });
        for id in expired {
            debug!("channel {id} not closed by the peer in time: closed locally");
            if let Some(ch) = self.map.remove(&id) {
                ch.dc.set_state(RTCDataChannelState::Closed);
            }
            self.closed.retain(|c| *c != id);
        }
    }

    /// The earliest deadline of a closing channel.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.closing
            .iter()
            .chain(&self.resetting)
            .map(|(_, deadline)| *deadline)
            .min()
    }

    /// Whether no channel gives the core a reason to keep a timer: nothing sent waits for its
    /// acknowledgement (which would keep SCTP's retransmission timer running), no close or
    /// stream reset is under way, no opening handshake is pending, and no received message
    /// waits for room.
    pub(super) fn idle(&self) -> bool {
        self.busy.is_empty()
            && self.closing.is_empty()
            && self.resetting.is_empty()
            && self.closed.is_empty()
            && self.parked.is_none()
            && self
                .map
                .values()
                .all(|ch| ch.dc.ready_state() == RTCDataChannelState::Open)
    }

    /// A data-channel event of the core.
    pub(super) fn handle_event(&mut self, core: &mut RTCPeerConnection, ev: RTCDataChannelEvent) {
        match ev {
            RTCDataChannelEvent::OnOpen(id) => {
                // A known id is a local channel (or one already announced); an unknown one was
                // opened by the remote peer.
                let known = self.map.get(&id).map(|ch| ch.dc.clone());
                let (dc, remote) = match known {
                    Some(dc) => (dc, false),
                    None if self.refuse_remote(core, id) => return,
                    None => match self.register(core, id) {
                        Some(dc) => (dc, true),
                        None => return,
                    },
                };
                if let Some(sid) = core.data_channel(id).and_then(|d| d.stream_id()) {
                    dc.stream_id.store(sid as usize, Ordering::Release);
                }
                dc.max_message_size
                    .store(max_message_size(core), Ordering::Release);
                dc.set_state(RTCDataChannelState::Open);
                if remote {
                    self.publish(Raw::DataChannel(dc));
                }
            }
            RTCDataChannelEvent::OnClose(id) => {
                // Messages received before the close may still sit in the core's read queue:
                // the channel closes once they are delivered.
                if self.map.contains_key(&id) && !self.closed.contains(&id) {
                    self.closed.push(id);
                }
            }
            other => trace!("channel event ignored: {other:?}"),
        }
    }

    /// Retries the message that did not fit the budget. Returns whether reading may go on
    /// (nothing is parked any more).
    pub(super) fn retry_parked(&mut self, core: &mut RTCPeerConnection) -> bool {
        match self.parked.take() {
            Some((id, msg)) => self.deliver(core, id, msg),
            None => true,
        }
    }

    /// A message the core received on channel `id`. Returns false if it did not fit the
    /// receive budget: it is parked, and reading must stop until a reader makes room.
    pub(super) fn deliver_read(
        &mut self,
        core: &mut RTCPeerConnection,
        id: RTCDataChannelId,
        msg: RTCDataChannelMessage,
    ) -> bool {
        let msg = DataChannelMessage {
            is_string: msg.is_string,
            data: msg.data.freeze(),
        };
        self.deliver(core, id, msg)
    }

    /// Closes the channels the core closed, once their received messages are delivered.
    pub(super) fn finish_closed(&mut self) {
        if self.parked.is_some() {
            return;
        }
        for id in std::mem::take(&mut self.closed) {
            if let Some(ch) = self.map.remove(&id) {
                ch.dc.set_state(RTCDataChannelState::Closed);
            }
            self.closing.retain(|(c, _)| *c != id);
            self.resetting.retain(|(c, _)| *c != id);
        }
    }

    /// Frees the inboxes of channels nobody can read any more (no handle, no stream, no
    /// unread event holds them). Returns whether anything was freed.
    pub(super) fn discard_unreadable_inboxes(&mut self) -> bool {
        if self.shared.budget.held() == 0 {
            return false;
        }
        let mut freed = 0;
        for ch in self.map.values() {
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
    fn deliver(
        &mut self,
        core: &mut RTCPeerConnection,
        id: RTCDataChannelId,
        msg: DataChannelMessage,
    ) -> bool {
        let open_in_core = |core: &mut RTCPeerConnection| {
            core.data_channel(id)
                .is_some_and(|d| d.ready_state() == RTCDataChannelState::Open)
        };
        if !self.map.contains_key(&id)
            && open_in_core(core)
            && !self.refuse_remote(core, id)
            && self.register(core, id).is_some()
        {
            // A message overtook the channel's open event: announce the channel now.
            if let Some(dc) = self.map.get(&id).map(|ch| ch.dc.clone()) {
                self.publish(Raw::DataChannel(dc));
            }
        }
        let Some(ch) = self.map.get(&id) else {
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
            && let Some(ch) = self.map.get(&id)
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

    /// Updates each channel's buffered amount from the core, wakes blocked senders and
    /// reports the fall below the low threshold.
    pub(super) fn refresh_buffered(&mut self, core: &mut RTCPeerConnection) {
        let map = &mut self.map;
        self.busy.retain(|id| {
            let Some(ch) = map.get_mut(id) else {
                return false;
            };
            let pending = ch.dc.pending.load(Ordering::Acquire);
            let outstanding = core.data_channel(*id).map_or(0, |d| d.outstanding_bytes());
            ch.dc.outstanding.store(outstanding, Ordering::Release);
            let acked = ch.handed.saturating_sub(outstanding as u64);
            let before = ch.in_flight.len();
            while ch.in_flight.front().is_some_and(|&end| end <= acked) {
                ch.in_flight.pop_front();
            }
            if ch.in_flight.is_empty() && ch.in_flight.capacity() > 1024 {
                ch.in_flight = VecDeque::new(); // a burst's room, not kept while idle
            }
            ch.dc
                .outstanding_messages
                .store(ch.in_flight.len(), Ordering::Release);
            let buffered = pending + outstanding;
            if ch.in_flight.len() < before && buffered >= ch.last_buffered {
                // Only empty messages were acknowledged: room all the same.
                ch.dc.writable.notify(usize::MAX);
            }
            if buffered < ch.last_buffered {
                let low = ch.dc.low_threshold.load(Ordering::Acquire);
                if ch.last_buffered > low && buffered <= low {
                    ch.dc.publish(DataChannelEvent::BufferedAmountLow);
                }
                ch.dc.writable.notify(usize::MAX);
            }
            ch.last_buffered = buffered;
            ch.busy = buffered > 0 || !ch.in_flight.is_empty();
            ch.busy
        });
    }

    /// The connection is closed: every channel is.
    pub(super) fn shutdown(&mut self) {
        for (_, ch) in std::mem::take(&mut self.map) {
            ch.dc.set_state(RTCDataChannelState::Closed);
        }
        self.parked = None;
    }
}

/// The negotiated maximum message size, 0 while unknown.
fn max_message_size(core: &RTCPeerConnection) -> usize {
    core.sctp()
        .and_then(|s| s.max_message_size())
        .map_or(0, |m| m as usize)
}
