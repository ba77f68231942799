//! Audio and video: local tracks you send, remote tracks you receive, both as streams.
//!
//! Media needs codecs: the default [`MediaEngine`](rtc::peer_connection::configuration::media_engine::MediaEngine)
//! is empty (right for data-channel-only connections). Register the default codecs with
//! [`PeerConnectionBuilder::default_codecs`](crate::PeerConnectionBuilder::default_codecs), or
//! pass a media engine of your own.
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use webrtc_streams::{
//!     PeerConnection,
//!     media::{LocalTrack, Sample},
//!     rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8,
//! };
//!
//! # async fn f() -> webrtc_streams::Result<()> {
//! let pc = PeerConnection::builder().default_codecs().build().await?;
//! // Receive: every remote track is an item of `tracks()`, its RTP packets a stream.
//! let mut tracks = pc.tracks();
//! tokio::spawn(async move {
//!     while let Some(track) = tracks.next().await {
//!         println!("{:?} {:?}", track.kind(), track.codec());
//!         let mut rtp = track.rtp();
//!         tokio::spawn(async move {
//!             while let Some(packet) = rtp.next().await {
//!                 let _ = packet.header.sequence_number;
//!             }
//!         });
//!     }
//! });
//! // Send: samples (packetized here) or RTP packets as they are.
//! let video = pc.add_track(LocalTrack::video("camera", LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0))).await?;
//! // ... negotiate ...
//! video
//!     .write_sample(Sample::new(Bytes::from_static(b"<a VP8 frame>"), Duration::from_millis(33)))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Each track is sent or received on a [`Transceiver`] (one media section of the
//! negotiation): [`Transceiver::set_codec_preferences`] chooses and orders its codecs before
//! a negotiation, [`Transceiver::stop`] ends it for good (the next negotiation rejects its
//! section). A video track can be sent as simulcast, one encoding per RID
//! ([`LocalTrack::with_simulcast`], [`RtpSender::layer`]); a simulcast track received
//! arrives as one [`RemoteTrack`] per RID. For statistics, see
//! [`PeerConnection::stats`](crate::PeerConnection::stats) and
//! [`stats_stream`](crate::PeerConnection::stats_stream).

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::Stream;
use rtc::rtp_transceiver::RTCRtpTransceiverId;
pub use rtc::rtp_transceiver::{
    RTCRtpTransceiverDirection,
    rtp_sender::{RTCRtpCodec, RtpCodecKind},
};

pub use crate::shared::media::RtcpPackets;
use rtc::{
    rtp,
    rtp::{packetizer::new_packetizer, sequence::new_random_sequencer},
};

use crate::{
    error::{CoreError, Error, Result},
    shared::{
        ConnHandle,
        command::{Command, TrackSpec},
        media::{Layer, Queue, SenderShared, SenderState, TrackShared},
    },
};

/// The RTP payload size `write_sample` aims at (fits a 1,200-byte datagram with headers).
const SAMPLE_MTU: usize = 1_100;

/// A track to send: its kind, an id, the media stream it belongs to and its codec. Add it with
/// [`PeerConnection::add_track`](crate::PeerConnection::add_track).
#[derive(Debug, Clone)]
pub struct LocalTrack {
    pub(crate) spec: TrackSpec,
}

impl LocalTrack {
    /// A track of `kind`, identified by `id` (the `msid` track id), in media stream
    /// `stream_id`, sent with `codec`.
    pub fn new(
        kind: RtpCodecKind,
        id: impl Into<String>,
        stream_id: impl Into<String>,
        codec: RTCRtpCodec,
    ) -> Self {
        Self {
            spec: TrackSpec {
                kind,
                track_id: id.into(),
                stream_id: stream_id.into(),
                codec,
                rids: Vec::new(),
            },
        }
    }

    /// An audio track in a media stream named after it.
    pub fn audio(id: impl Into<String>, codec: RTCRtpCodec) -> Self {
        let id = id.into();
        Self::new(RtpCodecKind::Audio, id.clone(), id, codec)
    }

    /// A video track in a media stream named after it.
    pub fn video(id: impl Into<String>, codec: RTCRtpCodec) -> Self {
        let id = id.into();
        Self::new(RtpCodecKind::Video, id.clone(), id, codec)
    }

    /// A codec by MIME type (`rtc`'s `MIME_TYPE_*` constants), clock rate and channel count
    /// (0 for video), with no format parameters.
    pub fn codec(mime_type: &str, clock_rate: u32, channels: u16) -> RTCRtpCodec {
        RTCRtpCodec {
            mime_type: mime_type.to_owned(),
            clock_rate,
            channels,
            ..Default::default()
        }
    }

    /// The track's kind.
    pub fn kind(&self) -> RtpCodecKind {
        self.spec.kind
    }

    /// The track's id.
    pub fn id(&self) -> &str {
        &self.spec.track_id
    }

    /// Sends the track as simulcast: one encoding per RTP stream id (RID), each with an SSRC
    /// of its own, announced with `a=rid` and `a=simulcast` in the offer. Write each encoding
    /// through its own sender handle ([`RtpSender::layer`]); every packet then carries the MID
    /// and RID header extensions (RFC 8852) that let the receiver tell the encodings apart —
    /// the connection adds them. The remote peer gets one [`RemoteTrack`] per RID.
    ///
    /// A RID is 1 to 16 letters, digits, `-` or `_`; give at least two, all different
    /// ([`PeerConnection::add_track`](crate::PeerConnection::add_track) refuses others). The
    /// media engine must have the MID and RID header extensions for video, as
    /// [`default_codecs`](crate::PeerConnectionBuilder::default_codecs) registers them.
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{media::LocalTrack, rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8};
    /// let camera = pc
    ///     .add_track(
    ///         LocalTrack::video("cam", LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0))
    ///             .with_simulcast(["q", "h", "f"]),
    ///     )
    ///     .await?;
    /// let quarter = camera.layer("q").expect("a layer per RID");
    /// let full = camera.layer("f").expect("a layer per RID");
    /// // ... negotiate, then write each resolution to its layer:
    /// // quarter.write_sample(small_frame).await?; full.write_sample(big_frame).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_simulcast(mut self, rids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.spec.rids = rids.into_iter().map(Into::into).collect();
        self
    }

    /// The RIDs of a simulcast track; empty otherwise.
    pub fn rids(&self) -> &[String] {
        &self.spec.rids
    }
}

/// A chunk of encoded media — an audio frame, a video frame — and how long it lasts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Sample {
    /// The encoded frame.
    pub data: Bytes,
    /// How long it plays; the RTP timestamp advances by this much.
    pub duration: Duration,
}

impl Sample {
    /// A sample of `data` lasting `duration`.
    pub fn new(data: Bytes, duration: Duration) -> Self {
        Self { data, duration }
    }
}

/// The sending side of a local track; cheap to clone. Returned by
/// [`PeerConnection::add_track`](crate::PeerConnection::add_track).
///
/// Packets written before the connection is up, or before the track's transceiver has been
/// negotiated for sending, would be dropped by the protocol core, so
/// [`write_rtp`](Self::write_rtp) and [`write_sample`](Self::write_sample) wait until both
/// are true.
#[derive(Clone)]
pub struct RtpSender {
    pub(crate) conn: Arc<ConnHandle>,
    pub(crate) shared: Arc<SenderShared>,
    /// Which encoding this handle writes (index into the shared layers).
    pub(crate) layer: usize,
}

impl RtpSender {
    /// The track's kind.
    pub fn kind(&self) -> RtpCodecKind {
        self.shared.kind
    }

    /// The track's id.
    pub fn track_id(&self) -> &str {
        &self.shared.track_id
    }

    /// The SSRC this handle sends with (its encoding's, for a simulcast track).
    pub fn ssrc(&self) -> u32 {
        self.own_layer().ssrc
    }

    /// The RTP stream id of the encoding this handle writes, for a simulcast track.
    pub fn rid(&self) -> Option<&str> {
        Some(self.own_layer().rid.as_str()).filter(|r| !r.is_empty())
    }

    /// The sender handle of a simulcast track's encoding `rid`; `None` if the track has no
    /// such RID. (The handle [`add_track`](crate::PeerConnection::add_track) returns writes
    /// the first one.) Everything but the writes — direction, stop, RTCP — is shared by the
    /// track's encodings.
    pub fn layer(&self, rid: &str) -> Option<RtpSender> {
        let layer = self
            .shared
            .layers
            .iter()
            .position(|l| !l.rid.is_empty() && l.rid == rid)?;
        Some(RtpSender {
            layer,
            ..self.clone()
        })
    }

    /// One sender handle per encoding, in the order of the RIDs (one handle, this one's
    /// encoding first, for a track without simulcast).
    pub fn layers(&self) -> Vec<RtpSender> {
        (0..self.shared.layers.len())
            .map(|layer| RtpSender {
                layer,
                ..self.clone()
            })
            .collect()
    }

    fn own_layer(&self) -> &Layer {
        &self.shared.layers[self.layer.min(self.shared.layers.len() - 1)]
    }

    /// The codec the track was added with.
    pub fn codec(&self) -> &RTCRtpCodec {
        &self.shared.codec
    }

    /// The codec the sender sends with, once negotiated: the negotiated codec of the track's
    /// codec type, or, if codec preferences were set on its transceiver
    /// ([`set_codec_preferences`](Self::set_codec_preferences)), the first negotiated one —
    /// feed the sender frames of that codec.
    pub fn send_codec(&self) -> Option<RTCRtpCodec> {
        self.shared.send_codec()
    }

    /// The transceiver this sender sends on.
    pub fn transceiver(&self) -> Transceiver {
        Transceiver {
            conn: self.conn.clone(),
            id: RTCRtpTransceiverId::from(self.shared.id),
            kind: self.shared.kind,
        }
    }

    /// Stops this sender's transceiver for good (W3C `RTCRtpTransceiver.stop()`); see
    /// [`Transceiver::stop`]. Writes fail with [`Error::TransceiverStopped`] from now on.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection is closed.
    pub async fn stop(&self) -> Result<()> {
        self.transceiver().stop().await
    }

    /// Sets the codecs this sender's transceiver offers and accepts, most preferred first;
    /// see [`Transceiver::set_codec_preferences`]. The sender then sends with the first of
    /// them the negotiation keeps ([`send_codec`](Self::send_codec)).
    ///
    /// # Errors
    ///
    /// As [`Transceiver::set_codec_preferences`].
    pub async fn set_codec_preferences(
        &self,
        codecs: impl IntoIterator<Item = RTCRtpCodec>,
    ) -> Result<()> {
        self.transceiver().set_codec_preferences(codecs).await
    }

    /// The negotiated payload type, once the connection is up.
    pub fn payload_type(&self) -> Option<u8> {
        self.shared.payload_type()
    }

    /// The RTCP the receiver sends about this track — receiver reports, NACKs, picture loss
    /// indications (an SFU forwards those to the publisher) — one compound packet per item. A
    /// reader that falls 64 packets behind loses the oldest.
    pub fn rtcp(&self) -> RtcpStream {
        RtcpStream {
            source: RtcpSource::Sender(self.shared.clone()),
        }
    }

    /// Sends one RTP packet. Its SSRC and payload type are replaced by this sender's, so
    /// packets received on another connection can be forwarded as they are.
    ///
    /// Waits until the connection is up (and while the connection's command queue is full).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection is closed, [`Error::TransceiverStopped`] if the
    /// sender's transceiver was [stopped](Self::stop) (here or by the remote peer).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped before it completes, the packet is either not sent or handed to
    /// the connection whole.
    pub async fn write_rtp(&self, mut packet: rtp::Packet) -> Result<()> {
        let pt = self.ready().await?;
        packet.header.ssrc = self.own_layer().ssrc;
        packet.header.payload_type = pt;
        self.send(packet).await
    }

    /// Packetizes one sample for the codec the sender sends with ([`send_codec`](Self::send_codec))
    /// and sends the packets; RTP timestamps advance by the sample's duration.
    ///
    /// Waits until the connection is up (and while the connection's command queue is full).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection is closed; [`Error::TransceiverStopped`] if the
    /// sender's transceiver was [stopped](Self::stop); [`Error::InvalidOperation`] if the
    /// codec has no packetizer (`rtc` packetizes Opus, G.722, PCMU/PCMA, VP8, VP9,
    /// H.264, H.265 and AV1).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropped midway, part of the sample's packets may have been sent.
    pub async fn write_sample(&self, sample: Sample) -> Result<()> {
        let pt = self.ready().await?;
        let codec = self
            .shared
            .send_codec()
            .unwrap_or_else(|| self.shared.codec.clone());
        let samples = (sample.duration.as_secs_f64() * f64::from(codec.clock_rate)).round() as u32;
        let packets = {
            let mut packetizer = crate::sync::lock(&self.own_layer().packetizer);
            // A packetizer per payload type: a renegotiation may change the codec.
            if packetizer
                .as_ref()
                .is_none_or(|(made_for, _)| *made_for != pt)
            {
                let payloader = codec
                    .payloader()
                    .map_err(|e| Error::InvalidOperation(CoreError::from(e)))?;
                *packetizer = Some((
                    pt,
                    Box::new(new_packetizer(
                        Instant::now(),
                        SAMPLE_MTU,
                        pt,
                        self.own_layer().ssrc,
                        payloader,
                        Box::new(new_random_sequencer()),
                        codec.clock_rate,
                    )),
                ));
            }
            let Some((_, p)) = packetizer.as_mut() else {
                unreachable!("the packetizer was just made");
            };
            p.packetize(Instant::now(), &sample.data, samples)
                .map_err(|e| Error::InvalidOperation(CoreError::from(e)))?
        };
        for packet in packets {
            self.send(packet).await?;
        }
        Ok(())
    }

    /// Sends `track` on this sender from now on: same SSRC, so the remote track goes on
    /// without a renegotiation. The sender keeps sending (and packetizing for) the codec it
    /// was added with.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOperation`] if `track` is of another kind, [`Error::Closed`] if the
    /// sender or the connection is gone.
    pub async fn replace_track(&self, track: LocalTrack) -> Result<()> {
        self.conn
            .request(|reply| Command::ReplaceTrack {
                sender: self.shared.id,
                track: Box::new(track.spec),
                reply,
            })
            .await
    }

    /// Sets the direction of this sender's transceiver — for example
    /// [`Inactive`](RTCRtpTransceiverDirection::Inactive) to pause the track, or
    /// [`Sendrecv`](RTCRtpTransceiverDirection::Sendrecv) to send and receive on it. Takes
    /// effect at the next negotiation
    /// ([`negotiation_needed`](crate::PeerConnection::negotiation_needed) fires); writes wait
    /// while the negotiated direction does not send.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the sender or the connection is gone.
    pub async fn set_direction(&self, direction: RTCRtpTransceiverDirection) -> Result<()> {
        self.conn
            .request(|reply| Command::SetDirection {
                sender: self.shared.id,
                direction,
                reply,
            })
            .await
    }

    /// Waits until packets can go out; returns the payload type to send with.
    async fn ready(&self) -> Result<u8> {
        loop {
            let listener = self.shared.changed.listen();
            match self.shared.state() {
                SenderState::Ready => {
                    if let Some(pt) = self.shared.payload_type() {
                        return Ok(pt);
                    }
                }
                SenderState::Closed => return Err(self.conn.shared.closed()),
                SenderState::Stopped => return Err(Error::TransceiverStopped),
                SenderState::Waiting => {}
            }
            listener.await;
        }
    }

    async fn send(&self, packet: rtp::Packet) -> Result<()> {
        let cmd = Command::WriteRtp {
            sender: self.shared.id,
            packet: Box::new(packet),
        };
        self.conn
            .cmd
            .send(cmd)
            .await
            .map_err(|_| self.conn.shared.closed())
    }
}

impl fmt::Debug for RtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

/// A transceiver: one media section of the negotiation, which sends and/or receives one
/// track. Cheap to clone.
///
/// Made by [`PeerConnection::add_transceiver`](crate::PeerConnection::add_transceiver), or
/// found through [`RtpSender::transceiver`] and [`RemoteTrack::transceiver`].
///
/// ```no_run
/// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
/// use webrtc_streams::{
///     media::{LocalTrack, RtpCodecKind},
///     rtc::{
///         peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_VP8},
///         rtp_transceiver::RTCRtpTransceiverDirection,
///     },
/// };
/// // Receive video, H.264 rather than VP8 (and nothing else).
/// let video = pc
///     .add_transceiver(RtpCodecKind::Video, RTCRtpTransceiverDirection::Recvonly)
///     .await?;
/// video
///     .set_codec_preferences([
///         LocalTrack::codec(MIME_TYPE_H264, 90_000, 0),
///         LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
///     ])
///     .await?;
/// // ... negotiate, receive ...
/// video.stop().await?; // and renegotiate: the media section is rejected
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Transceiver {
    conn: Arc<ConnHandle>,
    id: RTCRtpTransceiverId,
    kind: RtpCodecKind,
}

impl Transceiver {
    pub(crate) fn new(conn: Arc<ConnHandle>, id: RTCRtpTransceiverId, kind: RtpCodecKind) -> Self {
        Self { conn, id, kind }
    }

    /// Audio or video.
    pub fn kind(&self) -> RtpCodecKind {
        self.kind
    }

    /// Sets the codecs this transceiver offers and accepts, most preferred first (W3C
    /// `setCodecPreferences`), before the next negotiation: the media section lists exactly
    /// these (with their retransmission formats), in this order, and the remote peer is asked
    /// to use the first one it supports. Codecs match by MIME type (format parameters, if
    /// given, pick among several of one type). An empty list restores the media engine's
    /// codecs.
    ///
    /// A sender on this transceiver sends with the first codec the negotiation keeps (see
    /// [`RtpSender::send_codec`]).
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedCodec`] for a codec the media engine does not have for this kind
    /// of media (nothing changes then), [`Error::TransceiverStopped`] if the transceiver is
    /// stopped, [`Error::Closed`] if the connection is closed (or the transceiver is inactive).
    pub async fn set_codec_preferences(
        &self,
        codecs: impl IntoIterator<Item = RTCRtpCodec>,
    ) -> Result<()> {
        let codecs: Vec<RTCRtpCodec> = codecs.into_iter().collect();
        self.conn
            .request(|reply| Command::SetCodecPreferences {
                transceiver: self.id,
                kind: self.kind,
                codecs,
                reply,
            })
            .await
    }

    /// Stops the transceiver for good (W3C `RTCRtpTransceiver.stop()`): its sender's writes
    /// fail with [`Error::TransceiverStopped`], its remote tracks end at once, and
    /// [`negotiation_needed`](crate::PeerConnection::negotiation_needed) fires. The next
    /// negotiation rejects its media section (port 0), which ends the remote peer's track and
    /// stops its side of the transceiver. Stopping a stopped transceiver does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection is closed.
    pub async fn stop(&self) -> Result<()> {
        self.conn
            .request(|reply| Command::StopTransceiver {
                transceiver: self.id,
                reply,
            })
            .await
    }
}

impl fmt::Debug for Transceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transceiver")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A track the remote peer sends; cheap to clone. Items of
/// [`PeerConnection::tracks`](crate::PeerConnection::tracks) (one per SSRC, or per RID of a
/// simulcast sender).
///
/// Its packets are read with [`rtp`](Self::rtp). Media is real-time: the track holds up to
/// 512 packets for its reader; when a reader falls further behind, the oldest packets are
/// dropped and counted ([`dropped`](Self::dropped)). A slow reader never slows the connection
/// or other tracks down.
#[derive(Clone)]
pub struct RemoteTrack {
    pub(crate) conn: Arc<ConnHandle>,
    pub(crate) shared: Arc<TrackShared>,
}

impl RemoteTrack {
    /// The track's id (the remote `msid` track id).
    pub fn id(&self) -> &str {
        &self.shared.track_id
    }

    /// The ids of the media streams the track belongs to.
    pub fn stream_ids(&self) -> &[String] {
        &self.shared.stream_ids
    }

    /// Audio or video.
    pub fn kind(&self) -> RtpCodecKind {
        self.shared.kind
    }

    /// The negotiated codec.
    pub fn codec(&self) -> Option<&RTCRtpCodec> {
        self.shared.codec.as_ref()
    }

    /// The SSRC of the packets.
    pub fn ssrc(&self) -> u32 {
        self.shared.ssrc
    }

    /// The RTP stream id (simulcast layer), if the sender uses RIDs.
    pub fn rid(&self) -> Option<&str> {
        self.shared.rid.as_deref()
    }

    /// The track's RTP packets, in the order they arrived. All streams returned by this
    /// method share one queue: each packet goes to one of them. Packets that arrived before the
    /// first call wait in the queue (up to its capacity). The stream ends when the track or
    /// the connection closes.
    pub fn rtp(&self) -> RtpStream {
        RtpStream {
            shared: self.shared.clone(),
        }
    }

    /// The RTCP the sender sends about this track (sender reports, ...), one compound packet
    /// per item. A reader that falls 64 packets behind loses the oldest.
    pub fn rtcp(&self) -> RtcpStream {
        RtcpStream {
            source: RtcpSource::Track(self.shared.clone()),
        }
    }

    /// Packets received on this track so far.
    pub fn received(&self) -> u64 {
        self.shared.rtp.counts().0
    }

    /// Packets dropped because the reader fell more than the queue's capacity behind.
    pub fn dropped(&self) -> u64 {
        self.shared.rtp.counts().1
    }

    /// Packets not delivered because they repeated one delivered recently (a retransmission
    /// that crossed the original, a duplicate on the path).
    pub fn duplicates(&self) -> u64 {
        self.shared.duplicates()
    }

    /// The transceiver this track is received on. [Stopping](Transceiver::stop) it ends the
    /// track (and stops sending on that transceiver, if it also sends).
    pub fn transceiver(&self) -> Transceiver {
        Transceiver {
            conn: self.conn.clone(),
            id: RTCRtpTransceiverId::from(self.shared.receiver_id),
            kind: self.shared.kind,
        }
    }

    /// Asks the sender for a key frame (RTCP picture loss indication).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection is closed.
    pub async fn request_keyframe(&self) -> Result<()> {
        let cmd = Command::RequestKeyframe {
            receiver: self.shared.receiver_id,
            media_ssrc: self.shared.ssrc,
        };
        self.conn
            .cmd
            .send(cmd)
            .await
            .map_err(|_| self.conn.shared.closed())
    }
}

impl fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl PartialEq for RemoteTrack {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for RemoteTrack {}

/// The RTP packets of one remote track; see [`RemoteTrack::rtp`].
#[must_use = "streams do nothing unless polled"]
pub struct RtpStream {
    shared: Arc<TrackShared>,
}

impl RtpStream {
    /// Packets dropped so far because the reader fell behind (for the whole track).
    pub fn dropped(&self) -> u64 {
        self.shared.rtp.counts().1
    }

    /// Packets waiting to be read.
    pub fn queued(&self) -> usize {
        self.shared.rtp.len()
    }
}

impl Stream for RtpStream {
    type Item = rtp::Packet;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<rtp::Packet>> {
        self.shared.rtp.poll_next(cx)
    }
}

impl fmt::Debug for RtpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpStream")
            .field("track", &self.shared.track_id)
            .finish()
    }
}

/// The RTCP of one sender or remote track; see [`RtpSender::rtcp`] and [`RemoteTrack::rtcp`].
#[must_use = "streams do nothing unless polled"]
pub struct RtcpStream {
    source: RtcpSource,
}

enum RtcpSource {
    Sender(Arc<SenderShared>),
    Track(Arc<TrackShared>),
}

impl RtcpStream {
    fn queue(&self) -> &Queue<RtcpPackets> {
        match &self.source {
            RtcpSource::Sender(s) => &s.rtcp,
            RtcpSource::Track(t) => &t.rtcp,
        }
    }

    /// Compound packets dropped so far because the reader fell behind.
    pub fn dropped(&self) -> u64 {
        self.queue().counts().1
    }
}

impl Stream for RtcpStream {
    type Item = RtcpPackets;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RtcpPackets>> {
        self.queue().poll_next(cx)
    }
}

impl fmt::Debug for RtcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtcpStream").finish_non_exhaustive()
    }
}
