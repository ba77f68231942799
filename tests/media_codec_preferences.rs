//! Codec preferences (W3C `setCodecPreferences`): the offer lists the preferred codecs in
//! order, the negotiation picks the first, media flows with it; unknown codecs are refused.
#![cfg(feature = "runtime-sim")]

#[path = "common/media.rs"]
mod media_common;
#[path = "common/sim.rs"]
mod sim_common;

use media_common::*;
use sim_common::*;
use webrtc_streams::{
    Error,
    media::{LocalTrack, RtpCodecKind},
    rtc::{
        peer_connection::configuration::media_engine::{
            MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_PCMU, MIME_TYPE_VP8, MIME_TYPE_VP9,
        },
        rtp_transceiver::RTCRtpTransceiverDirection,
    },
    runtime::sim::SimRuntime,
};

/// The codec names of the `m=<kind>` section of `sdp`, in the order of its format list
/// (`a=rtpmap` looked up per payload type), without the retransmission formats.
fn codec_order(sdp: &str, kind: &str) -> Vec<String> {
    let mut sections = sdp.split("\r\nm=").skip(1);
    let section = sections
        .find(|s| s.starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} section in\n{sdp}"));
    let mut lines = section.lines();
    let formats: Vec<&str> = lines.next().unwrap().split(' ').skip(3).collect();
    let rtpmaps: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("a=rtpmap:"))
        .collect();
    formats
        .iter()
        .filter_map(|pt| {
            let prefix = format!("a=rtpmap:{pt} ");
            let name = rtpmaps
                .iter()
                .find_map(|l| l.strip_prefix(prefix.as_str()))?;
            let name = name.split('/').next()?.to_ascii_lowercase();
            (name != "rtx").then_some(name)
        })
        .collect()
}

fn payload_type_of(sdp: &str, codec: &str) -> u8 {
    sdp.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("a=rtpmap:")?;
            let (pt, name) = rest.split_once(' ')?;
            name.to_ascii_lowercase()
                .starts_with(&format!("{codec}/"))
                .then(|| pt.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {codec} in\n{sdp}"))
}

/// VP8 and Opus tracks whose transceivers prefer VP9 (then VP8) and PCMU (then Opus): the
/// offer lists exactly those, in that order; the remote tracks are VP9 and PCMU; every packet
/// arrives with the preferred codec's payload type. Without preferences the same tracks go
/// as VP8 and Opus.
#[test]
fn preferred_codecs_are_offered_in_order_negotiated_and_used() {
    init_log();
    let sim = SimRuntime::new(21);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let mut tracks_b = b.tracks();
        let video = a
            .add_track(LocalTrack::video(
                "cam",
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ))
            .await
            .unwrap();
        let audio = a
            .add_track(LocalTrack::audio(
                "mic",
                LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2),
            ))
            .await
            .unwrap();

        // Without preferences the track's own codec is offered.
        let plain = a.create_offer().await.unwrap();
        assert_eq!(codec_order(&plain.sdp, "video"), ["vp8"]);
        assert_eq!(codec_order(&plain.sdp, "audio"), ["opus"]);

        video
            .set_codec_preferences([
                LocalTrack::codec(MIME_TYPE_VP9, 90_000, 0),
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ])
            .await
            .unwrap();
        audio
            .set_codec_preferences([
                LocalTrack::codec(MIME_TYPE_PCMU, 8_000, 1),
                LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2),
            ])
            .await
            .unwrap();
        let offer = a.create_offer().await.unwrap();
        let video_codecs = codec_order(&offer.sdp, "video");
        // VP9 has two profiles in the media engine: both come before VP8, H.264 is gone.
        assert!(video_codecs.len() >= 2, "{video_codecs:?}");
        let (vp8, rest) = video_codecs.split_last().unwrap();
        assert_eq!(vp8, "vp8", "{video_codecs:?}");
        assert!(rest.iter().all(|c| c == "vp9"), "{video_codecs:?}");
        assert_eq!(codec_order(&offer.sdp, "audio"), ["pcmu", "opus"]);

        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        let answer = a.remote_description().await.unwrap().unwrap().sdp;
        assert_eq!(
            codec_order(&answer, "video").first().map(String::as_str),
            Some("vp9")
        );
        assert_eq!(
            codec_order(&answer, "audio").first().map(String::as_str),
            Some("pcmu")
        );
        assert_eq!(
            video.send_codec().unwrap().mime_type.to_ascii_lowercase(),
            "video/vp9"
        );
        assert_eq!(
            audio.send_codec().unwrap().mime_type.to_ascii_lowercase(),
            "audio/pcmu"
        );

        const N: u16 = 50;
        for seq in 0..N {
            video.write_rtp(packet(seq, 300)).await.unwrap();
            audio.write_rtp(packet(seq, 160)).await.unwrap();
        }
        let remote = take_tracks(&h, &mut tracks_b, 2).await;
        let local = b.local_description().await.unwrap().unwrap().sdp;
        for t in &remote {
            let (mime, name) = match t.kind() {
                RtpCodecKind::Video => ("video/vp9", "vp9"),
                _ => ("audio/pcmu", "pcmu"),
            };
            assert_eq!(t.codec().unwrap().mime_type.to_ascii_lowercase(), mime);
            let pt = payload_type_of(&local, name);
            let mut rtp = t.rtp();
            let got = within(&h, "packets", LIMIT, async {
                use futures::StreamExt;
                let mut got = Vec::new();
                while got.len() < usize::from(N) {
                    let p = rtp.next().await.expect("rtp ended");
                    assert_eq!(p.header.payload_type, pt, "{t:?}");
                    got.push(p.header.sequence_number);
                }
                got
            })
            .await;
            assert_eq!(got, (0..N).collect::<Vec<_>>(), "{t:?}");
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// A receive-only transceiver preferring H.264: the offer lists H.264 first; VP8 is left out.
/// Codecs the media engine does not have, or of the other kind, are a typed error and change
/// nothing.
#[test]
fn receive_only_preferences_and_unknown_codecs() {
    init_log();
    let sim = SimRuntime::new(22);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let video = a
            .add_transceiver(RtpCodecKind::Video, RTCRtpTransceiverDirection::Recvonly)
            .await
            .unwrap();
        assert_eq!(video.kind(), RtpCodecKind::Video);
        video
            .set_codec_preferences([
                LocalTrack::codec(MIME_TYPE_H264, 90_000, 0),
                LocalTrack::codec(MIME_TYPE_VP9, 90_000, 0),
            ])
            .await
            .unwrap();
        let before = codec_order(&a.create_offer().await.unwrap().sdp, "video");
        assert_eq!(before.first().map(String::as_str), Some("h264"), "{before:?}");
        assert!(!before.iter().any(|c| c == "vp8"), "{before:?}");

        let unknown = video
            .set_codec_preferences([LocalTrack::codec("video/nonesuch", 90_000, 0)])
            .await;
        assert!(
            matches!(&unknown, Err(Error::UnsupportedCodec { mime_type }) if mime_type == "video/nonesuch"),
            "{unknown:?}"
        );
        let wrong_kind = video
            .set_codec_preferences([
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
                LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2),
            ])
            .await;
        assert!(
            matches!(&wrong_kind, Err(Error::UnsupportedCodec { mime_type }) if mime_type == MIME_TYPE_OPUS),
            "{wrong_kind:?}"
        );
        let after = codec_order(&a.create_offer().await.unwrap().sdp, "video");
        assert_eq!(after, before, "a refused list changes nothing");

        // An empty list restores the media engine's codecs (VP8 first).
        video.set_codec_preferences([]).await.unwrap();
        let all = codec_order(&a.create_offer().await.unwrap().sdp, "video");
        assert_eq!(all.first().map(String::as_str), Some("vp8"), "{all:?}");
        assert!(all.len() > before.len(), "{all:?}");
        a.close().await.unwrap();
    });
}
