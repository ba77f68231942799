//! Media, as the driver drives it: local tracks (senders), remote tracks and their packets.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Instant,
};

use log::{debug, trace};
use rtc::{
    crypto::RTCCryptoProvider,
    interceptor::{
        Attribute, Interceptor, Packet as InterceptorPacket, Registry, Slot, StreamInfo,
        TaggedPacket,
    },
    media_stream::MediaStreamTrack,
    peer_connection::{RTCPeerConnection, event::RTCTrackEvent},
    rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication,
    rtp,
    rtp_transceiver::{
        RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiver, RTCRtpTransceiverDirection,
        RTCRtpTransceiverInit,
        rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
    },
    sansio::Protocol,
};

use crate::{
    error::{CoreError, Error, Result},
    shared::{
        Shared,
        command::TrackSpec,
        hub::Raw,
        media::{
            DEFAULT_TRACK_CAPACITY, RtcpPackets, SenderShared, SenderState, TrackParams,
            TrackShared,
        },
    },
    sync::lock,
};

/// The connection's local and remote tracks.
pub(super) struct Media {
    shared: Arc<Shared>,
    crypto: Option<Arc<dyn RTCCryptoProvider>>,
    senders: Vec<Arc<SenderShared>>,
    /// Remote tracks by track id (several for a simulcast sender: one per layer).
    tracks: HashMap<String, Vec<Arc<TrackShared>>>,
    /// SRTP is up: senders may send.
    up: bool,
    /// Fallback SSRC source when no crypto provider is at hand.
    next_ssrc: u32,
}

impl Media {
    pub(super) fn new(shared: Arc<Shared>, crypto: Option<Arc<dyn RTCCryptoProvider>>) -> Self {
        Self {
            shared,
            crypto,
            senders: Vec::new(),
            tracks: HashMap::new(),
            up: false,
            next_ssrc: 0x5eed_0001,
        }
    }

    fn random_ssrc(&mut self) -> u32 {
        let mut b = [0u8; 4];
        if let Some(c) = &self.crypto
            && c.random().fill(&mut b).is_ok()
        {
            return u32::from_be_bytes(b).max(1);
        }
        self.next_ssrc = self
            .next_ssrc
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        self.next_ssrc.max(1)
    }

    /// Adds a local track to the core (a new transceiver, or a free one of its kind).
    pub(super) fn add_track(
        &mut self,
        core: &mut RTCPeerConnection,
        spec: TrackSpec,
    ) -> Result<Arc<SenderShared>> {
        let ssrc = self.random_ssrc();
        let track = media_track(&spec, ssrc);
        let id = core
            .add_track(track)
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))?;
        let sender = Arc::new(SenderShared::new(
            id,
            ssrc,
            spec.kind,
            spec.codec,
            spec.track_id,
        ));
        self.senders.push(sender.clone());
        self.refresh(core);
        Ok(sender)
    }

    /// Reads the negotiated payload types; marks senders ready once SRTP is up.
    pub(super) fn refresh(&mut self, core: &mut RTCPeerConnection) {
        // Senders whose transceiver negotiated sending: a track added to a live connection
        // waits for its negotiation instead of writing packets the core would drop.
        let sending = each_transceiver(core, |t| {
            let sends = matches!(
                t.current_direction(),
                RTCRtpTransceiverDirection::Sendrecv | RTCRtpTransceiverDirection::Sendonly
            );
            t.sender().filter(|_| sends)
        });
        for s in &self.senders {
            let pt = core.rtp_sender(s.id).and_then(|mut sender| {
                let codecs = &sender.get_parameters().rtp_parameters.codecs;
                codecs
                    .iter()
                    .find(|c| {
                        c.rtp_codec
                            .mime_type
                            .eq_ignore_ascii_case(&s.codec.mime_type)
                    })
                    .or(codecs.first())
                    .map(|c| c.payload_type)
            });
            if let Some(pt) = pt {
                s.set_payload_type(pt);
            }
            let ready = self.up && pt.is_some() && sending.contains(&s.id);
            s.set_state(if ready {
                SenderState::Ready
            } else {
                SenderState::Waiting
            });
        }
    }

    /// Adds a transceiver of `kind` without a track (for example, receive-only).
    pub(super) fn add_transceiver(
        &mut self,
        core: &mut RTCPeerConnection,
        kind: RtpCodecKind,
        direction: RTCRtpTransceiverDirection,
    ) -> Result<()> {
        let init = RTCRtpTransceiverInit {
            direction,
            streams: Vec::new(),
            send_encodings: Vec::new(),
        };
        core.add_transceiver_from_kind(kind, Some(init))
            .map(|_| ())
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))
    }

    /// Sends `spec`'s track on `sender` from now on, with the sender's SSRC (no negotiation
    /// needed when the codec stays the same).
    pub(super) fn replace_track(
        &mut self,
        core: &mut RTCPeerConnection,
        sender: RTCRtpSenderId,
        spec: TrackSpec,
    ) -> Result<()> {
        let Some(shared) = self.senders.iter().find(|s| s.id == sender) else {
            return Err(Error::Closed);
        };
        if shared.kind != spec.kind {
            return Err(Error::InvalidOperation(CoreError::from(
                rtc::shared::error::Error::ErrRTPSenderNewTrackHasIncorrectKind,
            )));
        }
        let track = media_track(&spec, shared.ssrc);
        let Some(mut s) = core.rtp_sender(sender) else {
            return Err(Error::Closed);
        };
        s.replace_track(track)
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))
    }

    /// Sets the direction of `sender`'s transceiver (it takes effect at the next negotiation).
    pub(super) fn set_direction(
        &mut self,
        core: &mut RTCPeerConnection,
        sender: RTCRtpSenderId,
        direction: RTCRtpTransceiverDirection,
    ) -> Result<()> {
        let found = each_transceiver(core, |mut t| {
            (t.sender() == Some(sender)).then(|| t.set_direction(direction))
        });
        if found.is_empty() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Stops sending track `sender` (the next negotiation tells the remote peer).
    pub(super) fn remove_track(
        &mut self,
        core: &mut RTCPeerConnection,
        sender: RTCRtpSenderId,
    ) -> Result<()> {
        core.remove_track(sender)
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))?;
        self.senders.retain(|s| {
            let removed = s.id == sender;
            if removed {
                s.set_state(SenderState::Closed);
            }
            !removed
        });
        Ok(())
    }

    /// After a negotiation: ends the remote tracks whose transceiver no longer receives (the
    /// remote peer removed the track, or the transceiver stopped). `rtc` reports no track end.
    pub(super) fn reconcile(&mut self, core: &mut RTCPeerConnection) {
        let ended = each_transceiver(core, |t| {
            let receiving = matches!(
                t.current_direction(),
                RTCRtpTransceiverDirection::Sendrecv | RTCRtpTransceiverDirection::Recvonly
            );
            t.receiver().filter(|_| !receiving)
        });
        self.tracks.retain(|_, layers| {
            layers.retain(|t| {
                let end = ended.contains(&t.receiver_id);
                if end {
                    t.close();
                }
                !end
            });
            !layers.is_empty()
        });
    }

    /// The connection is up (DTLS done, SRTP keys in place).
    pub(super) fn connected(&mut self, core: &mut RTCPeerConnection) {
        self.up = true;
        self.refresh(core);
    }

    pub(super) fn write_rtp(
        &mut self,
        core: &mut RTCPeerConnection,
        now: Instant,
        sender: RTCRtpSenderId,
        packet: rtp::Packet,
    ) {
        let Some(mut s) = core.rtp_sender(sender) else {
            debug!("RTP for an unknown sender dropped");
            return;
        };
        if let Err(e) = s.write_rtp(now, packet) {
            debug!("write_rtp: {e}");
        }
    }

    pub(super) fn request_keyframe(
        &mut self,
        core: &mut RTCPeerConnection,
        now: Instant,
        receiver: RTCRtpReceiverId,
        media_ssrc: u32,
    ) {
        let Some(mut r) = core.rtp_receiver(receiver) else {
            return;
        };
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if let Err(e) = r.write_rtcp(now, vec![Box::new(pli)]) {
            debug!("picture loss indication: {e}");
        }
    }

    /// A track event of the core.
    pub(super) fn handle_event(&mut self, core: &mut RTCPeerConnection, ev: RTCTrackEvent) {
        match ev {
            RTCTrackEvent::OnOpen(init) => {
                let (kind, codec) = match core.rtp_receiver(init.receiver_id) {
                    Some(r) => (r.track().kind(), r.track().codec(init.ssrc).cloned()),
                    None => return,
                };
                let track = Arc::new(TrackShared::new(TrackParams {
                    track_id: init.track_id.clone(),
                    receiver_id: init.receiver_id,
                    kind,
                    codec,
                    ssrc: init.ssrc,
                    rid: init.rid.clone(),
                    stream_ids: init.stream_ids.clone(),
                    capacity: DEFAULT_TRACK_CAPACITY,
                }));
                self.tracks
                    .entry(init.track_id)
                    .or_default()
                    .push(track.clone());
                lock(&self.shared.hub).publish(Raw::Track(track));
            }
            RTCTrackEvent::OnClose(track_id) => {
                for t in self.tracks.remove(&track_id).unwrap_or_default() {
                    t.close();
                }
            }
            other => trace!("track event ignored: {other:?}"),
        }
    }

    /// A received RTP packet of track `track_id`.
    pub(super) fn deliver(&mut self, track_id: &str, packet: rtp::Packet) {
        let Some(layers) = self.tracks.get(track_id) else {
            trace!("RTP for unknown track {track_id} dropped");
            return;
        };
        let track = layers
            .iter()
            .find(|t| t.ssrc == packet.header.ssrc)
            .or(layers.first());
        if let Some(t) = track {
            t.deliver(packet);
        }
    }

    /// Received RTCP, which the core routes by the first packet's media SSRC to a local track
    /// (feedback for our sender) or a remote one (reports of its sender).
    pub(super) fn deliver_rtcp(&mut self, track_id: &str, packets: RtcpPackets) {
        if let Some(s) = self.senders.iter().find(|s| s.track_id == track_id) {
            s.rtcp.push(packets);
        } else if let Some(t) = self.tracks.get(track_id).and_then(|l| l.first()) {
            t.rtcp.push(packets);
        } else {
            trace!("RTCP for unknown track {track_id} dropped");
        }
    }

    /// The connection is closed: every track ends, every sender fails.
    pub(super) fn shutdown(&mut self) {
        for t in self.tracks.drain().flat_map(|(_, v)| v) {
            t.close();
        }
        for s in &self.senders {
            s.set_state(SenderState::Closed);
        }
    }
}

/// The core's track for `spec`, sent with `ssrc`.
/// What `f` picks from each of the core's transceivers, in order.
fn each_transceiver<T>(
    core: &mut RTCPeerConnection,
    mut f: impl FnMut(RTCRtpTransceiver<'_>) -> Option<T>,
) -> Vec<T> {
    let ids: Vec<_> = core.get_transceivers().collect();
    ids.into_iter()
        .filter_map(|id| core.rtp_transceiver(id).and_then(&mut f))
        .collect()
}

fn media_track(spec: &TrackSpec, ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        spec.stream_id.clone(),
        spec.track_id.clone(),
        spec.track_id.clone(),
        spec.kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec: spec.codec.clone(),
            ..Default::default()
        }],
    )
}

/// An interceptor that marks every inbound RTCP packet for the application: without one, the
/// core's interceptor chain ends in a terminus that drops inbound RTCP.
#[derive(Default)]
pub(crate) struct DeliverRtcp {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// The slot of [`DeliverRtcp`]: after every built-in interceptor, which still see the packets.
const DELIVER_RTCP_SLOT: usize = 60_000;

impl DeliverRtcp {
    /// `registry` with RTCP delivery to the application added.
    pub(crate) fn install(registry: Registry) -> Registry {
        registry.with(Slot::from(DELIVER_RTCP_SLOT), Self::default())
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverRtcp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if matches!(msg.message.packet, InterceptorPacket::Rtcp(_)) {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> std::result::Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for DeliverRtcp {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
