//! Stopping a transceiver (W3C `RTCRtpTransceiver.stop()`), from the sending and from the
//! receiving side: the next negotiation rejects its media section (port 0), the remote track
//! ends, writes fail with `Error::TransceiverStopped`, and the other tracks go on.
#![cfg(feature = "runtime-sim")]

#[path = "common/media.rs"]
mod media_common;
#[path = "common/sim.rs"]
mod sim_common;

use futures::StreamExt;
use media_common::*;
use sim_common::*;
use webrtc_streams::{
    Error, PeerConnection,
    media::{LocalTrack, RemoteTrack, RtpCodecKind, RtpSender},
    rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8},
    rtc::rtp_transceiver::RTCRtpTransceiverDirection,
    runtime::sim::{SimHandle, SimRuntime},
};

/// The port of the first `m=<kind>` line of `sdp`.
fn port(sdp: &str, kind: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("m={kind} ")))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m={kind} line in\n{sdp}"))
}

fn bundle(sdp: &str) -> String {
    sdp.lines()
        .find(|l| l.starts_with("a=group:BUNDLE"))
        .unwrap_or_default()
        .to_owned()
}

/// `a` sends video and audio to `b`; both remote tracks have received packets.
struct Flowing {
    a: PeerConnection,
    b: PeerConnection,
    video: RtpSender,
    audio: RtpSender,
    remote_video: RemoteTrack,
    remote_audio: RemoteTrack,
}

async fn flowing(h: &SimHandle) -> Flowing {
    let a = media_peer(h, HOST_A).await;
    let b = media_peer(h, HOST_B).await;
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
    negotiate(&a, &b).await;
    connected(h, &a, LIMIT).await;
    connected(h, &b, LIMIT).await;
    for seq in 0..10 {
        video.write_rtp(packet(seq, 300)).await.unwrap();
        audio.write_rtp(packet(seq, 100)).await.unwrap();
    }
    let remote = take_tracks(h, &mut tracks_b, 2).await;
    let remote_video = remote
        .iter()
        .find(|t| t.kind() == RtpCodecKind::Video)
        .unwrap()
        .clone();
    let remote_audio = remote
        .iter()
        .find(|t| t.kind() == RtpCodecKind::Audio)
        .unwrap()
        .clone();
    assert_eq!(
        read_seqs(h, &remote_video, 10).await,
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        read_seqs(h, &remote_audio, 10).await,
        (0..10).collect::<Vec<_>>()
    );
    Flowing {
        a,
        b,
        video,
        audio,
        remote_video,
        remote_audio,
    }
}

/// Reads `track` until its stream ends; returns how many packets were still read.
async fn until_end(h: &SimHandle, track: &RemoteTrack) -> usize {
    let mut rtp = track.rtp();
    within(h, "track end", LIMIT, async {
        let mut n = 0;
        while rtp.next().await.is_some() {
            n += 1;
        }
        n
    })
    .await
}

/// Audio still flows from `a` to `b` after the renegotiation.
async fn audio_goes_on(h: &SimHandle, f: &Flowing) {
    for seq in 10..20 {
        f.audio.write_rtp(packet(seq, 100)).await.unwrap();
    }
    assert_eq!(
        read_seqs(h, &f.remote_audio, 10).await,
        (10..20).collect::<Vec<_>>()
    );
}

/// The sender stops its video transceiver: writes fail at once; the renegotiation (offered by
/// the sender) rejects the video section in offer and answer, and the receiver's video track
/// ends. Audio is unaffected.
#[test]
fn the_sender_stops_its_transceiver() {
    init_log();
    let sim = SimRuntime::new(31);
    let h = sim.handle().clone();
    sim.block_on(async {
        let f = flowing(&h).await;
        let mut needed = f.a.negotiation_needed();
        f.video.stop().await.unwrap();
        f.video.stop().await.unwrap(); // idempotent
        within(&h, "negotiation needed", LIMIT, needed.next())
            .await
            .unwrap();
        let err = f.video.write_rtp(packet(10, 300)).await;
        assert!(matches!(err, Err(Error::TransceiverStopped)), "{err:?}");
        let err = f
            .video
            .set_codec_preferences([LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0)])
            .await;
        assert!(matches!(err, Err(Error::TransceiverStopped)), "{err:?}");

        negotiate(&f.a, &f.b).await;
        let offer = f.a.local_description().await.unwrap().unwrap().sdp;
        let answer = f.b.local_description().await.unwrap().unwrap().sdp;
        for (what, sdp) in [("offer", &offer), ("answer", &answer)] {
            assert_eq!(port(sdp, "video"), 0, "{what}:\n{sdp}");
            assert_ne!(port(sdp, "audio"), 0, "{what}:\n{sdp}");
            assert!(
                !bundle(sdp).contains(" 0"),
                "{what}: video mid still bundled:\n{sdp}"
            );
        }
        until_end(&h, &f.remote_video).await;
        audio_goes_on(&h, &f).await;
        let err = f.video.write_rtp(packet(11, 300)).await;
        assert!(matches!(err, Err(Error::TransceiverStopped)), "{err:?}");

        // A later negotiation keeps the section rejected.
        let again = f.a.create_offer().await.unwrap().sdp;
        assert_eq!(port(&again, "video"), 0, "{again}");
        f.a.close().await.unwrap();
        f.b.close().await.unwrap();
    });
}

/// The receiver stops the transceiver its video track arrives on: the track ends at once; the
/// renegotiation (offered by the receiver) rejects the section, and the sender's writes then
/// fail. Audio is unaffected.
#[test]
fn the_receiver_stops_the_transceiver() {
    init_log();
    let sim = SimRuntime::new(32);
    let h = sim.handle().clone();
    sim.block_on(async {
        let f = flowing(&h).await;
        let mut needed = f.b.negotiation_needed();
        let transceiver = f.remote_video.transceiver();
        assert_eq!(transceiver.kind(), RtpCodecKind::Video);
        transceiver.stop().await.unwrap();
        // Ends without a renegotiation: nothing more is received on it.
        assert_eq!(until_end(&h, &f.remote_video).await, 0);
        within(&h, "negotiation needed", LIMIT, needed.next())
            .await
            .unwrap();

        // Until the renegotiation, the sender does not know.
        f.video.write_rtp(packet(10, 300)).await.unwrap();
        negotiate(&f.b, &f.a).await;
        let offer = f.b.local_description().await.unwrap().unwrap().sdp;
        let answer = f.a.local_description().await.unwrap().unwrap().sdp;
        for (what, sdp) in [("offer", &offer), ("answer", &answer)] {
            assert_eq!(port(sdp, "video"), 0, "{what}:\n{sdp}");
            assert_ne!(port(sdp, "audio"), 0, "{what}:\n{sdp}");
        }
        let err = f.video.write_rtp(packet(11, 300)).await;
        assert!(matches!(err, Err(Error::TransceiverStopped)), "{err:?}");
        audio_goes_on(&h, &f).await;
        f.a.close().await.unwrap();
        f.b.close().await.unwrap();
    });
}

/// A receive-only transceiver made with `add_transceiver` is stopped through the handle it
/// returned: its remote track ends, and after the renegotiation the remote sender fails.
#[test]
fn a_receive_only_transceiver_is_stopped_through_its_handle() {
    init_log();
    let sim = SimRuntime::new(33);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let mut tracks_a = a.tracks();
        let receive = a
            .add_transceiver(RtpCodecKind::Video, RTCRtpTransceiverDirection::Recvonly)
            .await
            .unwrap();
        let video = b
            .add_track(LocalTrack::video(
                "cam",
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ))
            .await
            .unwrap();
        negotiate(&a, &b).await;
        connected(&h, &b, LIMIT).await;
        for seq in 0..5 {
            video.write_rtp(packet(seq, 300)).await.unwrap();
        }
        let remote = take_tracks(&h, &mut tracks_a, 1).await.remove(0);
        assert_eq!(read_seqs(&h, &remote, 5).await, (0..5).collect::<Vec<_>>());

        receive.stop().await.unwrap();
        assert_eq!(until_end(&h, &remote).await, 0);
        negotiate(&a, &b).await;
        let offer = a.local_description().await.unwrap().unwrap().sdp;
        assert_eq!(port(&offer, "video"), 0, "{offer}");
        let err = video.write_rtp(packet(5, 300)).await;
        assert!(matches!(err, Err(Error::TransceiverStopped)), "{err:?}");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
