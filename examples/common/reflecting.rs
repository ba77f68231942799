//! Reflecting a browser's media back to it, shared by the `reflect`, `axum-signaling` and
//! `actix-signaling` examples: every RTP packet of a remote track goes back on a sender of the
//! same codec, and the browser's key-frame requests for the reflection go to its own track.

use futures::{StreamExt, future};
use webrtc_streams::{
    media::{LocalTrack, RTCRtpCodec, RemoteTrack, RtpCodecKind, RtpSender},
    rtc::{
        peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8},
        rtcp::payload_feedbacks::{
            full_intra_request::FullIntraRequest, picture_loss_indication::PictureLossIndication,
        },
    },
};

/// Sends every packet of `track` back on `sender`, and the browser's key-frame requests for
/// the reflected video to the browser's own video.
pub async fn reflect(track: RemoteTrack, sender: RtpSender) {
    let codec = track
        .codec()
        .map(|c| c.mime_type.clone())
        .unwrap_or_default();
    if !codec.eq_ignore_ascii_case(&sender.codec().mime_type) {
        // The packets would be decoded as another codec; the page asks for VP8 and Opus.
        eprintln!(
            "{} track in {codec:?}, not {:?}: not reflected",
            track.kind(),
            sender.codec().mime_type
        );
        return;
    }
    eprintln!("reflecting {} ({codec})", track.kind());
    let forward_rtp = async {
        if track.kind() == RtpCodecKind::Video {
            let _ = track.request_keyframe().await;
        }
        let mut rtp = track.rtp();
        while let Some(packet) = rtp.next().await {
            if sender.write_rtp(packet).await.is_err() {
                break;
            }
        }
    };
    let forward_keyframe_requests = async {
        let mut rtcp = sender.rtcp();
        while let Some(compound) = rtcp.next().await {
            let wants_keyframe = compound.iter().any(|p| {
                p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()
            });
            if wants_keyframe && track.request_keyframe().await.is_err() {
                break;
            }
        }
        // The connection is closing; let the packets drain.
        future::pending::<()>().await;
    };
    tokio::pin!(forward_rtp, forward_keyframe_requests);
    future::select(forward_rtp, forward_keyframe_requests).await;
}

/// What the reflector sends for `kind`: the page prefers the same codecs.
pub fn codec(kind: RtpCodecKind) -> RTCRtpCodec {
    match kind {
        RtpCodecKind::Audio => LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2),
        _ => LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
    }
}

/// The kinds of the offer's media sections in which the offerer sends, in order.
pub fn sent_kinds(sdp: &str) -> Vec<RtpCodecKind> {
    let mut kinds = Vec::new();
    let mut section: Option<(RtpCodecKind, bool)> = None;
    let mut close = |section: Option<(RtpCodecKind, bool)>| {
        if let Some((kind, true)) = section {
            kinds.push(kind);
        }
    };
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            close(section.take());
            let mut fields = m.split_whitespace();
            let kind = match fields.next() {
                Some("audio") => Some(RtpCodecKind::Audio),
                Some("video") => Some(RtpCodecKind::Video),
                _ => None,
            };
            // Port 0: a rejected section.
            let open = fields.next() != Some("0");
            section = kind.map(|k| (k, open));
        } else if let Some((_, sends)) = section.as_mut()
            && matches!(line.trim_end(), "a=recvonly" | "a=inactive")
        {
            *sends = false;
        }
    }
    close(section);
    kinds
}
