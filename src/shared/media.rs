//! The state the driver and the media handles share: one [`SenderShared`] per local track,
//! one [`TrackShared`] per remote track (its packet queue).

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU16, Ordering},
    },
    task::{Context, Poll, Waker},
};

use event_listener::Event;
use rtc::{
    rtp,
    rtp::packetizer::Packetizer,
    rtp_transceiver::{
        RTCRtpReceiverId, RTCRtpSenderId,
        rtp_sender::{RTCRtpCodec, RtpCodecKind},
    },
};

use crate::sync::lock;

/// How many received RTP packets a remote track holds for its reader before the oldest are
/// dropped (media is real-time: a late packet is worth less than a new one).
pub const DEFAULT_TRACK_CAPACITY: usize = 512;

/// Payload type not known yet.
const NO_PAYLOAD_TYPE: u16 = u16::MAX;

/// What the driver and the [`RtpSender`](crate::media::RtpSender) handles of one local track
/// share.
pub(crate) struct SenderShared {
    pub(crate) id: RTCRtpSenderId,
    pub(crate) ssrc: u32,
    pub(crate) kind: RtpCodecKind,
    pub(crate) codec: RTCRtpCodec,
    pub(crate) track_id: String,
    /// The negotiated payload type, [`NO_PAYLOAD_TYPE`] until known.
    payload_type: AtomicU16,
    state: Mutex<SenderState>,
    /// Notified when the state changes.
    pub(crate) changed: Event,
    /// Turns samples into packets; made on the first sample.
    pub(crate) packetizer: Mutex<Option<Box<dyn Packetizer>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SenderState {
    /// The connection is not up yet: packets would be dropped by the core.
    Waiting,
    /// SRTP is up: packets go out.
    Ready,
    /// The connection or the sender is gone.
    Closed,
}

impl SenderShared {
    pub(crate) fn new(
        id: RTCRtpSenderId,
        ssrc: u32,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        track_id: String,
    ) -> Self {
        Self {
            id,
            ssrc,
            kind,
            codec,
            track_id,
            payload_type: AtomicU16::new(NO_PAYLOAD_TYPE),
            state: Mutex::new(SenderState::Waiting),
            changed: Event::new(),
            packetizer: Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> SenderState {
        *lock(&self.state)
    }

    /// Moves to `state` (never out of `Closed`) and wakes whoever waits.
    pub(crate) fn set_state(&self, state: SenderState) {
        let mut st = lock(&self.state);
        if *st != SenderState::Closed {
            *st = state;
        }
        drop(st);
        self.changed.notify(usize::MAX);
    }

    pub(crate) fn payload_type(&self) -> Option<u8> {
        u8::try_from(self.payload_type.load(Ordering::Acquire)).ok()
    }

    pub(crate) fn set_payload_type(&self, pt: u8) {
        self.payload_type.store(u16::from(pt), Ordering::Release);
    }
}

impl fmt::Debug for SenderShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpSender")
            .field("track_id", &self.track_id)
            .field("kind", &self.kind)
            .field("ssrc", &self.ssrc)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// What the driver and the [`RemoteTrack`](crate::media::RemoteTrack) handles of one remote
/// track share.
pub(crate) struct TrackShared {
    pub(crate) track_id: String,
    pub(crate) receiver_id: RTCRtpReceiverId,
    pub(crate) kind: RtpCodecKind,
    pub(crate) codec: Option<RTCRtpCodec>,
    pub(crate) ssrc: u32,
    pub(crate) rid: Option<String>,
    pub(crate) stream_ids: Vec<String>,
    inbox: Mutex<TrackInbox>,
    capacity: usize,
}

#[derive(Default)]
struct TrackInbox {
    queue: VecDeque<rtp::Packet>,
    received: u64,
    dropped: u64,
    closed: bool,
    readers: Vec<Waker>,
}

/// Construction parameters of a [`TrackShared`].
pub(crate) struct TrackParams {
    pub(crate) track_id: String,
    pub(crate) receiver_id: RTCRtpReceiverId,
    pub(crate) kind: RtpCodecKind,
    pub(crate) codec: Option<RTCRtpCodec>,
    pub(crate) ssrc: u32,
    pub(crate) rid: Option<String>,
    pub(crate) stream_ids: Vec<String>,
    pub(crate) capacity: usize,
}

impl TrackShared {
    pub(crate) fn new(p: TrackParams) -> Self {
        Self {
            track_id: p.track_id,
            receiver_id: p.receiver_id,
            kind: p.kind,
            codec: p.codec,
            ssrc: p.ssrc,
            rid: p.rid,
            stream_ids: p.stream_ids,
            inbox: Mutex::new(TrackInbox::default()),
            capacity: p.capacity.max(1),
        }
    }

    /// Queues a received packet; when the queue is full, the oldest packet is dropped and
    /// counted.
    pub(crate) fn deliver(&self, packet: rtp::Packet) {
        let mut inbox = lock(&self.inbox);
        if inbox.closed {
            return;
        }
        inbox.received += 1;
        if inbox.queue.len() >= self.capacity {
            inbox.queue.pop_front();
            inbox.dropped += 1;
        }
        inbox.queue.push_back(packet);
        let readers = std::mem::take(&mut inbox.readers);
        drop(inbox);
        readers.into_iter().for_each(Waker::wake);
    }

    /// Ends the packet stream once its queue is read.
    pub(crate) fn close(&self) {
        let mut inbox = lock(&self.inbox);
        inbox.closed = true;
        let readers = std::mem::take(&mut inbox.readers);
        drop(inbox);
        readers.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn poll_packet(&self, cx: &mut Context<'_>) -> Poll<Option<rtp::Packet>> {
        let mut inbox = lock(&self.inbox);
        if let Some(p) = inbox.queue.pop_front() {
            return Poll::Ready(Some(p));
        }
        if inbox.closed {
            return Poll::Ready(None);
        }
        if !inbox.readers.iter().any(|w| w.will_wake(cx.waker())) {
            inbox.readers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// (received, dropped) packets so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let inbox = lock(&self.inbox);
        (inbox.received, inbox.dropped)
    }

    /// Packets waiting for the reader.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.inbox).queue.len()
    }
}

impl fmt::Debug for TrackShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("track_id", &self.track_id)
            .field("kind", &self.kind)
            .field("ssrc", &self.ssrc)
            .field("rid", &self.rid)
            .finish_non_exhaustive()
    }
}
