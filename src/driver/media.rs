//! Media, as the driver drives it: local tracks (senders), remote tracks and their packets.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;
use log::{debug, trace};
use rtc::{
    crypto::RTCCryptoProvider,
    interceptor::{
        Attribute, Interceptor, Packet as InterceptorPacket, Registry, Slot, StreamInfo,
        TaggedPacket,
    },
    media_stream::MediaStreamTrack,
    peer_connection::{
        RTCPeerConnection,
        event::RTCTrackEvent,
        sdp::{RTCSdpType, RTCSessionDescription},
    },
    rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication,
    rtp,
    rtp_transceiver::{
        RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiver, RTCRtpTransceiverDirection,
        RTCRtpTransceiverId, RTCRtpTransceiverInit,
        rtp_sender::{
            RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
            RtpCodecKind,
        },
    },
    sansio::Protocol,
    sdp::extmap::{SDES_MID_URI, SDES_RTP_STREAM_ID_URI},
};

use super::sdp::media_sections;
use crate::{
    error::{CoreError, Error, Result},
    shared::{
        Shared,
        command::TrackSpec,
        hub::Raw,
        media::{
            DEFAULT_TRACK_CAPACITY, Layer, RtcpPackets, SenderShared, SenderState, TrackParams,
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
    /// Transceivers whose codec preferences the application set: their senders send with
    /// the first negotiated codec.
    preferred: HashSet<RTCRtpTransceiverId>,
    /// Stopped transceivers: by the application, or rejected by the remote peer.
    stopped: HashSet<RTCRtpTransceiverId>,
    /// The last description created, with the sections of stopped transceivers rejected, and
    /// as the core made it (the core takes back only what it made).
    created: Option<(String, RTCSessionDescription)>,
    /// What simulcast senders tag each packet with (`rtc` does not).
    simulcast: HashMap<RTCRtpSenderId, SimulcastTags>,
}

/// The MID and RID header extensions (RFC 8852) of a simulcast sender's packets: without
/// them, the receiver cannot tell its encodings apart.
struct SimulcastTags {
    /// The negotiated extension ids (`None` if the remote peer did not accept one).
    mid_id: Option<u8>,
    rid_id: Option<u8>,
    /// The transceiver's MID.
    mid: Bytes,
    /// Each encoding's SSRC and RID.
    rids: Vec<(u32, Bytes)>,
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
            preferred: HashSet::new(),
            stopped: HashSet::new(),
            created: None,
            simulcast: HashMap::new(),
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
        check_rids(&spec.rids)?;
        let layers: Vec<Layer> = if spec.rids.is_empty() {
            vec![Layer::new(String::new(), self.random_ssrc())]
        } else {
            spec.rids
                .iter()
                .map(|rid| Layer::new(rid.clone(), self.random_ssrc()))
                .collect()
        };
        let track = media_track(&spec, &layers);
        let id = core
            .add_track(track)
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))?;
        let sender = Arc::new(SenderShared::new(
            id,
            layers,
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
            let preferred = self.preferred.contains(&RTCRtpTransceiverId::from(s.id));
            let chosen = core.rtp_sender(s.id).and_then(|mut sender| {
                let params = sender.get_parameters();
                let mut media = params
                    .rtp_parameters
                    .codecs
                    .iter()
                    .filter(|c| !is_repair_codec(&c.rtp_codec));
                let same = |c: &&RTCRtpCodecParameters| {
                    c.rtp_codec
                        .mime_type
                        .eq_ignore_ascii_case(&s.codec.mime_type)
                };
                let c = if preferred {
                    media.next()
                } else {
                    media.clone().find(same).or_else(|| media.next())
                };
                c.map(|c| (c.rtp_codec.clone(), c.payload_type))
            });
            let pt = chosen.as_ref().map(|c| c.1);
            if let Some((codec, pt)) = chosen {
                s.set_send_codec(codec, pt);
            }
            if s.layers.len() > 1
                && let Some(tags) = simulcast_tags(core, s)
            {
                self.simulcast.insert(s.id, tags);
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
    ) -> Result<RTCRtpTransceiverId> {
        let init = RTCRtpTransceiverInit {
            direction,
            streams: Vec::new(),
            send_encodings: Vec::new(),
        };
        core.add_transceiver_from_kind(kind, Some(init))
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))
    }

    /// Sets the codecs transceiver `id` offers and accepts, in order of preference (W3C
    /// `setCodecPreferences`); an empty list restores the media engine's.
    pub(super) fn set_codec_preferences(
        &mut self,
        core: &mut RTCPeerConnection,
        id: RTCRtpTransceiverId,
        kind: RtpCodecKind,
        codecs: Vec<RTCRtpCodec>,
    ) -> Result<()> {
        if self.stopped.contains(&id) {
            return Err(Error::TransceiverStopped);
        }
        let empty = codecs.is_empty();
        let params = |codecs: &[RTCRtpCodec]| -> Vec<RTCRtpCodecParameters> {
            codecs
                .iter()
                .map(|c| RTCRtpCodecParameters {
                    rtp_codec: c.clone(),
                    payload_type: 0, // the core takes the media engine's
                })
                .collect()
        };
        // The preferences in force, to restore after finding the codec refused.
        let Some(current) = codec_capabilities(core, id, kind) else {
            return Err(Error::TransceiverStopped);
        };
        let Some(mut t) = core.rtp_transceiver(id) else {
            return Err(Error::TransceiverStopped);
        };
        // The core checks the whole list before it changes anything.
        if t.set_codec_preferences(params(&codecs)).is_err() {
            // Which one: the first the core refuses alone.
            let refused = codecs
                .iter()
                .find(|c| {
                    t.set_codec_preferences(params(std::slice::from_ref(c)))
                        .is_err()
                })
                .or(codecs.first());
            if let Err(e) = t.set_codec_preferences(params(&current)) {
                debug!("codec preferences not restored: {e}");
            }
            return Err(Error::UnsupportedCodec {
                mime_type: refused.map(|c| c.mime_type.clone()).unwrap_or_default(),
            });
        }
        if empty {
            self.preferred.remove(&id);
        } else {
            self.preferred.insert(id);
        }
        self.refresh(core);
        Ok(())
    }

    /// Stops transceiver `id` for good (W3C `RTCRtpTransceiver.stop()`): its sender fails
    /// from now on, its remote tracks end, and the next negotiation rejects its media section.
    pub(super) fn stop(
        &mut self,
        core: &mut RTCPeerConnection,
        id: RTCRtpTransceiverId,
    ) -> Result<()> {
        if self.stopped.contains(&id) {
            return Ok(());
        }
        let Some(mut t) = core.rtp_transceiver(id) else {
            return Err(Error::TransceiverStopped);
        };
        t.stop()
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))?;
        self.mark_stopped(id);
        // `rtc` does not flag it; the remote peer learns of it only through a negotiation.
        lock(&self.shared.hub).publish(Raw::NegotiationNeeded);
        Ok(())
    }

    /// Transceiver `id` is stopped: its senders fail, its remote tracks end.
    fn mark_stopped(&mut self, id: RTCRtpTransceiverId) {
        self.stopped.insert(id);
        for s in &self.senders {
            if RTCRtpTransceiverId::from(s.id) == id {
                s.set_state(SenderState::Stopped);
            }
        }
        self.tracks.retain(|_, layers| {
            layers.retain(|t| {
                let end = RTCRtpTransceiverId::from(t.receiver_id) == id;
                if end {
                    t.close();
                }
                !end
            });
            !layers.is_empty()
        });
    }

    /// A remote description was applied: the transceivers whose media section it rejects
    /// (port 0) stop, as JSEP wants (`rtc` ignores the port).
    pub(super) fn remote_rejections(&mut self, core: &mut RTCPeerConnection, remote: &str) {
        let rejected: Vec<&str> = media_sections(remote)
            .into_iter()
            .filter(|s| s.rejected && matches!(s.kind(), "audio" | "video"))
            .filter_map(|s| s.mid)
            .collect();
        if rejected.is_empty() {
            return;
        }
        let ids: Vec<RTCRtpTransceiverId> = core.get_transceivers().collect();
        for id in ids {
            let hit = core
                .rtp_transceiver(id)
                .and_then(|t| t.mid().clone())
                .is_some_and(|mid| rejected.contains(&mid.as_str()));
            if hit && !self.stopped.contains(&id) {
                debug!("remote peer rejected transceiver {id}: stopping it");
                if let Some(mut t) = core.rtp_transceiver(id)
                    && let Err(e) = t.stop()
                {
                    debug!("stop: {e}");
                }
                self.mark_stopped(id);
            }
        }
    }

    /// `desc` as the application gets it: the media sections of stopped transceivers (and, in
    /// an answer, those the remote offer rejected) rejected with port 0 and left out of the
    /// BUNDLE group. `rtc` writes them as ordinary inactive sections.
    pub(super) fn rejecting_stopped(
        &self,
        core: &mut RTCPeerConnection,
        desc: RTCSessionDescription,
    ) -> RTCSessionDescription {
        let mut mids: Vec<String> = self
            .stopped
            .iter()
            .filter_map(|&id| core.rtp_transceiver(id).and_then(|t| t.mid().clone()))
            .collect();
        if desc.sdp_type == RTCSdpType::Answer
            && let Some(remote) = core.remote_description()
        {
            mids.extend(
                media_sections(&remote.sdp)
                    .into_iter()
                    .filter(|s| s.rejected && matches!(s.kind(), "audio" | "video"))
                    .filter_map(|s| s.mid.map(str::to_owned)),
            );
        }
        let Some(sdp) = reject_sections(&desc.sdp, &mids) else {
            return desc;
        };
        let rewritten = match desc.sdp_type {
            RTCSdpType::Offer => RTCSessionDescription::offer(sdp),
            RTCSdpType::Answer => RTCSessionDescription::answer(sdp),
            RTCSdpType::Pranswer => RTCSessionDescription::pranswer(sdp),
            _ => return desc,
        };
        rewritten.unwrap_or(desc)
    }

    /// [`rejecting_stopped`](Self::rejecting_stopped) for a description just created; remembers
    /// the original for [`as_created`](Self::as_created).
    pub(super) fn created(
        &mut self,
        core: &mut RTCPeerConnection,
        desc: RTCSessionDescription,
    ) -> RTCSessionDescription {
        let rewritten = self.rejecting_stopped(core, desc.clone());
        self.created = (rewritten.sdp != desc.sdp).then(|| (rewritten.sdp.clone(), desc));
        rewritten
    }

    /// The description to give the core for `desc`: what it made, if `desc` is its rewritten
    /// text.
    pub(super) fn as_created(&self, desc: RTCSessionDescription) -> RTCSessionDescription {
        match &self.created {
            Some((text, original)) if *text == desc.sdp && original.sdp_type == desc.sdp_type => {
                original.clone()
            }
            _ => desc,
        }
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
            return Err(Error::TransceiverStopped);
        };
        if shared.kind != spec.kind {
            return Err(Error::InvalidOperation(CoreError::from(
                rtc::shared::error::Error::ErrRTPSenderNewTrackHasIncorrectKind,
            )));
        }
        let track = media_track(&spec, &shared.layers);
        let Some(mut s) = core.rtp_sender(sender) else {
            return Err(Error::TransceiverStopped);
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
            Err(Error::TransceiverStopped)
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
        let mut packet = packet;
        if let Some(tags) = self.simulcast.get(&sender) {
            tags.tag(&mut packet);
        }
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

impl SimulcastTags {
    /// Sets the MID and RID header extensions of `packet` (sent on one of the encodings).
    fn tag(&self, packet: &mut rtp::Packet) {
        let Some((_, rid)) = self
            .rids
            .iter()
            .find(|(ssrc, _)| *ssrc == packet.header.ssrc)
        else {
            return;
        };
        for (id, value) in [(self.mid_id, &self.mid), (self.rid_id, rid)] {
            if let Some(id) = id
                && let Err(e) = packet.header.set_extension(id, value.clone())
            {
                debug!("simulcast header extension {id}: {e}");
            }
        }
    }
}

/// The tags of simulcast sender `s`, once its transceiver has a MID.
fn simulcast_tags(core: &mut RTCPeerConnection, s: &SenderShared) -> Option<SimulcastTags> {
    let mid = core
        .rtp_transceiver(RTCRtpTransceiverId::from(s.id))?
        .mid()
        .clone()?;
    let mut sender = core.rtp_sender(s.id)?;
    let params = sender.get_parameters();
    let id_of = |uri: &str| {
        params
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|e| e.uri == uri)
            .and_then(|e| u8::try_from(e.id).ok())
    };
    Some(SimulcastTags {
        mid_id: id_of(SDES_MID_URI),
        rid_id: id_of(SDES_RTP_STREAM_ID_URI),
        mid: Bytes::from(mid),
        rids: s
            .layers
            .iter()
            .map(|l| (l.ssrc, Bytes::from(l.rid.clone())))
            .collect(),
    })
}

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

/// The codecs transceiver `id` receives (or, if it does not receive, sends) with, most
/// preferred first; `None` if there is no such transceiver or it neither sends nor receives.
fn codec_capabilities(
    core: &mut RTCPeerConnection,
    id: RTCRtpTransceiverId,
    kind: RtpCodecKind,
) -> Option<Vec<RTCRtpCodec>> {
    if let Some(r) = core.rtp_receiver(RTCRtpReceiverId::from(id)) {
        return Some(
            r.get_capabilities(kind)
                .map(|c| c.codecs)
                .unwrap_or_default(),
        );
    }
    let s = core.rtp_sender(RTCRtpSenderId::from(id))?;
    Some(
        s.get_capabilities(kind)
            .map(|c| c.codecs)
            .unwrap_or_default(),
    )
}

/// Retransmission and error-correction formats, which accompany a media codec.
fn is_repair_codec(codec: &RTCRtpCodec) -> bool {
    let mime = codec.mime_type.to_ascii_lowercase();
    let sub = mime.split_once('/').map_or(mime.as_str(), |(_, sub)| sub);
    matches!(sub, "rtx" | "ulpfec" | "red") || sub.starts_with("flexfec")
}

/// `sdp` with the media sections of `mids` rejected (port 0) and left out of the BUNDLE
/// group; `None` if nothing changes.
fn reject_sections(sdp: &str, mids: &[String]) -> Option<String> {
    if mids.is_empty() {
        return None;
    }
    let rejected: HashSet<u16> = media_sections(sdp)
        .iter()
        .filter(|s| !s.rejected && s.mid.is_some_and(|m| mids.iter().any(|x| x == m)))
        .map(|s| s.index)
        .collect();
    if rejected.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sdp.len());
    let mut section: Option<u16> = None;
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end();
        let end = &line[text.len()..];
        if let Some(m) = text.strip_prefix("m=") {
            section = Some(section.map_or(0, |i| i + 1));
            if section.is_some_and(|i| rejected.contains(&i)) {
                let mut fields: Vec<&str> = m.split(' ').collect();
                if fields.len() > 1 {
                    fields[1] = "0";
                }
                out.push_str("m=");
                out.push_str(&fields.join(" "));
                out.push_str(end);
                continue;
            }
        } else if section.is_none()
            && let Some(group) = text.strip_prefix("a=group:BUNDLE")
        {
            let kept: Vec<&str> = group
                .split_whitespace()
                .filter(|m| !mids.iter().any(|x| x == m))
                .collect();
            if !kept.is_empty() {
                out.push_str("a=group:BUNDLE ");
                out.push_str(&kept.join(" "));
                out.push_str(end);
            }
            continue;
        }
        out.push_str(line);
    }
    Some(out)
}

/// The core's track for `spec`, one encoding per layer.
fn media_track(spec: &TrackSpec, layers: &[Layer]) -> MediaStreamTrack {
    let encodings = layers
        .iter()
        .map(|l| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: l.rid.clone(),
                ssrc: Some(l.ssrc),
                ..Default::default()
            },
            active: true,
            codec: spec.codec.clone(),
            ..Default::default()
        })
        .collect();
    MediaStreamTrack::new(
        spec.stream_id.clone(),
        spec.track_id.clone(),
        spec.track_id.clone(),
        spec.kind,
        encodings,
    )
}

/// Checks the RIDs of a simulcast track (RFC 8851 `rid-id`, and short enough for a one-byte
/// header extension).
fn check_rids(rids: &[String]) -> Result<()> {
    let bad = |why: String| Err(Error::InvalidOperation(CoreError(why)));
    if rids.is_empty() {
        return Ok(());
    }
    if rids.len() < 2 {
        return bad("simulcast needs at least two RIDs".to_owned());
    }
    for (i, rid) in rids.iter().enumerate() {
        let valid = (1..=16).contains(&rid.len())
            && rid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return bad(format!(
                "invalid RID {rid:?}: 1 to 16 letters, digits, '-' or '_'"
            ));
        }
        if rids[..i].contains(rid) {
            return bad(format!("RID {rid:?} given twice"));
        }
    }
    Ok(())
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
