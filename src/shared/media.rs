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
    rtcp, rtp,
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
    /// The encodings it sends: one, or one per RID of a simulcast track.
    pub(crate) layers: Vec<Layer>,
    pub(crate) kind: RtpCodecKind,
    pub(crate) codec: RTCRtpCodec,
    pub(crate) track_id: String,
    /// The negotiated payload type, [`NO_PAYLOAD_TYPE`] until known.
    payload_type: AtomicU16,
    /// The codec it sends with: the negotiated one matching the track's codec, or, where
    /// codec preferences were set, the first negotiated one. `None` until negotiated.
    send_codec: Mutex<Option<RTCRtpCodec>>,
    state: Mutex<SenderState>,
    /// Notified when the state changes.
    pub(crate) changed: Event,
    /// Received RTCP about this sender's stream (receiver reports, NACK, PLI, ...).
    pub(crate) rtcp: Queue<RtcpPackets>,
}

/// One encoding of a local track: its SSRC, its RID (empty unless simulcast), its packetizer.
pub(crate) struct Layer {
    pub(crate) rid: String,
    pub(crate) ssrc: u32,
    /// Turns samples into packets, for the payload type it was made for; made on the first
    /// sample, and again when the payload type changes.
    pub(crate) packetizer: Mutex<Option<(u8, Box<dyn Packetizer>)>>,
}

impl Layer {
    pub(crate) fn new(rid: String, ssrc: u32) -> Self {
        Self {
            rid,
            ssrc,
            packetizer: Mutex::new(None),
        }
    }
}

impl SenderState {
    /// A state the sender never leaves.
    pub(crate) fn is_final(self) -> bool {
        matches!(self, SenderState::Closed | SenderState::Stopped)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SenderState {
    /// The connection is not up yet: packets would be dropped by the core.
    Waiting,
    /// SRTP is up: packets go out.
    Ready,
    /// The connection or the sender is gone.
    Closed,
    /// The sender's transceiver was stopped.
    Stopped,
}

impl SenderShared {
    pub(crate) fn new(
        id: RTCRtpSenderId,
        layers: Vec<Layer>,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        track_id: String,
    ) -> Self {
        Self {
            id,
            layers,
            kind,
            codec,
            track_id,
            payload_type: AtomicU16::new(NO_PAYLOAD_TYPE),
            send_codec: Mutex::new(None),
            state: Mutex::new(SenderState::Waiting),
            changed: Event::new(),
            rtcp: Queue::new(DEFAULT_RTCP_CAPACITY),
        }
    }

    pub(crate) fn state(&self) -> SenderState {
        *lock(&self.state)
    }

    /// Moves to `state` (never out of `Closed` or `Stopped`) and wakes whoever waits.
    pub(crate) fn set_state(&self, state: SenderState) {
        let mut st = lock(&self.state);
        if !st.is_final() {
            *st = state;
        }
        drop(st);
        if state.is_final() {
            self.rtcp.close();
        }
        self.changed.notify(usize::MAX);
    }

    pub(crate) fn payload_type(&self) -> Option<u8> {
        u8::try_from(self.payload_type.load(Ordering::Acquire)).ok()
    }

    /// The codec it sends with, once negotiated, and its payload type.
    pub(crate) fn set_send_codec(&self, codec: RTCRtpCodec, pt: u8) {
        *lock(&self.send_codec) = Some(codec);
        self.payload_type.store(u16::from(pt), Ordering::Release);
    }

    pub(crate) fn send_codec(&self) -> Option<RTCRtpCodec> {
        lock(&self.send_codec).clone()
    }
}

impl fmt::Debug for SenderShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpSender")
            .field("track_id", &self.track_id)
            .field("kind", &self.kind)
            .field(
                "ssrcs",
                &self.layers.iter().map(|l| l.ssrc).collect::<Vec<_>>(),
            )
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
    /// Received RTP packets.
    pub(crate) rtp: Queue<rtp::Packet>,
    /// Sequence numbers recently delivered (retransmissions repeat packets) and how many
    /// repeats were dropped.
    seen: Mutex<(SeqWindow, u64)>,
    /// Received RTCP about this track (sender reports, ...).
    pub(crate) rtcp: Queue<RtcpPackets>,
}

/// Received RTCP packets, as one compound packet.
pub type RtcpPackets = Vec<Box<dyn rtcp::Packet>>;

/// How many received RTCP compound packets a track or sender holds for its reader before the
/// oldest are dropped.
pub const DEFAULT_RTCP_CAPACITY: usize = 64;

/// A bounded real-time queue: when full, the oldest item is dropped and counted.
pub(crate) struct Queue<T> {
    inner: Mutex<QueueInner<T>>,
    capacity: usize,
}

struct QueueInner<T> {
    items: VecDeque<T>,
    received: u64,
    dropped: u64,
    closed: bool,
    readers: Vec<Waker>,
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(QueueInner {
                items: VecDeque::new(),
                received: 0,
                dropped: 0,
                closed: false,
                readers: Vec::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    /// Queues `item`; when the queue is full, the oldest item is dropped and counted.
    pub(crate) fn push(&self, item: T) {
        let mut q = lock(&self.inner);
        if q.closed {
            return;
        }
        q.received += 1;
        if q.items.len() >= self.capacity {
            q.items.pop_front();
            q.dropped += 1;
        }
        q.items.push_back(item);
        let readers = std::mem::take(&mut q.readers);
        drop(q);
        readers.into_iter().for_each(Waker::wake);
    }

    /// Ends the stream once its items are read.
    pub(crate) fn close(&self) {
        let mut q = lock(&self.inner);
        q.closed = true;
        let readers = std::mem::take(&mut q.readers);
        drop(q);
        readers.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut q = lock(&self.inner);
        if let Some(item) = q.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        if !q.readers.iter().any(|w| w.will_wake(cx.waker())) {
            q.readers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// (received, dropped) items so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let q = lock(&self.inner);
        (q.received, q.dropped)
    }

    /// Items waiting for the reader.
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).items.len()
    }
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
            rtp: Queue::new(p.capacity),
            rtcp: Queue::new(DEFAULT_RTCP_CAPACITY),
            seen: Mutex::new((SeqWindow::default(), 0)),
        }
    }

    /// Queues a received packet unless it repeats one delivered recently (a retransmission
    /// that crossed the original, or a duplicate on the path); repeats are counted.
    pub(crate) fn deliver(&self, packet: rtp::Packet) {
        let mut seen = lock(&self.seen);
        if !seen.0.insert(packet.header.sequence_number) {
            seen.1 += 1;
            return;
        }
        drop(seen);
        self.rtp.push(packet);
    }

    /// Repeated packets dropped so far.
    pub(crate) fn duplicates(&self) -> u64 {
        lock(&self.seen).1
    }

    /// The track ends: both its streams end once read.
    pub(crate) fn close(&self) {
        self.rtp.close();
        self.rtcp.close();
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

/// Which of the last [`SeqWindow::SIZE`] RTP sequence numbers (counting back from the highest
/// seen, modulo 2^16) have been seen.
#[derive(Default)]
pub(crate) struct SeqWindow {
    highest: Option<u16>,
    /// Bit `i` (word `i / 64`, bit `i % 64`) set: `highest - i` was seen.
    bits: [u64; 16],
}

impl SeqWindow {
    const SIZE: usize = 1024;

    /// Records `seq`; returns false if it was seen already.
    pub(crate) fn insert(&mut self, seq: u16) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.bits = [0; 16];
            self.set(0);
            return true;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead != 0 && ahead < 0x8000 {
            self.shift(usize::from(ahead));
            self.highest = Some(seq);
            self.set(0);
            return true;
        }
        let back = usize::from(highest.wrapping_sub(seq));
        if back >= Self::SIZE {
            return true; // older than the window: cannot tell, deliver
        }
        if self.get(back) {
            return false;
        }
        self.set(back);
        true
    }

    fn get(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize) {
        self.bits[i / 64] |= 1 << (i % 64);
    }

    /// Moves every recorded number `n` places further back.
    fn shift(&mut self, n: usize) {
        if n >= Self::SIZE {
            self.bits = [0; 16];
            return;
        }
        let (words, bits) = (n / 64, n % 64);
        for i in (0..16usize).rev() {
            let from = i.checked_sub(words);
            let hi = from.map_or(0, |f| self.bits[f] << bits);
            let lo = match from.and_then(|f| f.checked_sub(1)) {
                Some(f) if bits > 0 => self.bits[f] >> (64 - bits),
                _ => 0,
            };
            self.bits[i] = hi | lo;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SeqWindow;

    #[test]
    fn repeats_are_recognised_across_wraparound_and_gaps() {
        let mut w = SeqWindow::default();
        for seq in [65_530u16, 65_535, 2, 100, 3, 65_531] {
            assert!(w.insert(seq), "{seq}");
        }
        for seq in [65_530u16, 65_535, 2, 100, 3, 65_531] {
            assert!(!w.insert(seq), "{seq} again");
        }
        assert!(w.insert(1)); // inside the window, never seen
        assert!(!w.insert(1));
        // A jump of more than the window forgets the past.
        assert!(w.insert(5_000));
        assert!(w.insert(100));
    }
}
