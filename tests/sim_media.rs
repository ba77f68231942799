//! Audio and video between two peers on the simulator: tracks as streams, every packet
//! accounted for, a slow reader losing only its own oldest packets.
#![cfg(feature = "runtime-sim")]

#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/sim.rs"]
mod sim_common;

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    PeerConnection,
    media::{LocalTrack, RemoteTrack, RtpCodecKind, RtpSender, RtpStream, Sample},
    rtc::{
        peer_connection::{
            configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8},
            sdp::RTCSessionDescription,
        },
        rtp,
    },
    runtime::sim::{SimHandle, SimRuntime},
};

const LIMIT: Duration = Duration::from_secs(60);

async fn media_peer(sim: &SimHandle, host: std::net::IpAddr) -> PeerConnection {
    PeerConnection::builder()
        .runtime(sim.runtime())
        .bind([std::net::SocketAddr::new(host, 0)])
        .default_codecs()
        .build()
        .await
        .expect("build")
}

async fn add_av(pc: &PeerConnection, who: &str) -> (RtpSender, RtpSender) {
    let video = pc
        .add_track(LocalTrack::video(
            format!("{who}-video"),
            LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
        ))
        .await
        .expect("add video");
    let audio = pc
        .add_track(LocalTrack::audio(
            format!("{who}-audio"),
            LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2),
        ))
        .await
        .expect("add audio");
    (video, audio)
}

fn packet(seq: u16, len: usize) -> rtp::Packet {
    rtp::Packet {
        header: rtp::Header {
            version: 2,
            sequence_number: seq,
            timestamp: u32::from(seq) * 3000,
            ..Default::default()
        },
        payload: Bytes::from(vec![seq as u8; len]),
    }
}

/// Waits for `n` remote tracks.
async fn take_tracks(
    sim: &SimHandle,
    tracks: &mut webrtc_streams::EventStream<RemoteTrack>,
    n: usize,
) -> Vec<RemoteTrack> {
    within(sim, "remote tracks", LIMIT, async {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(tracks.next().await.expect("track stream ended"));
        }
        out
    })
    .await
}

/// `a` has video and audio for `b`, negotiated and connected, and the first video packet
/// has reached `b`'s track.
struct VideoFlowing {
    a: PeerConnection,
    b: PeerConnection,
    tracks_b: webrtc_streams::EventStream<RemoteTrack>,
    video: RtpSender,
    _audio: RtpSender,
    _remote: RemoteTrack,
    rtp: RtpStream,
}

async fn video_flowing(h: &SimHandle) -> VideoFlowing {
    let a = media_peer(h, HOST_A).await;
    let b = media_peer(h, HOST_B).await;
    let mut tracks_b = b.tracks();
    let (video, audio) = add_av(&a, "a").await;
    negotiate(&a, &b).await;
    connected(h, &a, LIMIT).await;
    video.write_rtp(packet(0, 100)).await.unwrap();
    let remote = take_tracks(h, &mut tracks_b, 1).await.remove(0);
    let mut rtp = remote.rtp();
    within(h, "first packet", LIMIT, rtp.next()).await.unwrap();
    VideoFlowing {
        a,
        b,
        tracks_b,
        video,
        _audio: audio,
        _remote: remote,
        rtp,
    }
}

/// Both peers send audio and video; every packet sent arrives, on the right track, in order.
#[test]
fn audio_and_video_both_ways_every_packet_accounted_for() {
    init_log();
    let sim = SimRuntime::new(41);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let (mut tracks_a, mut tracks_b) = (a.tracks(), b.tracks());
        let (va, aa) = add_av(&a, "a").await;
        let (vb, ab) = add_av(&b, "b").await;
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        connected(&h, &b, LIMIT).await;

        const N: u16 = 300;
        for sender in [&va, &aa, &vb, &ab] {
            let sender = sender.clone();
            let _task = h.spawn(async move {
                for seq in 0..N {
                    sender.write_rtp(packet(seq, 200)).await.unwrap();
                }
            });
        }
        let mut by_side = Vec::new();
        for (tracks, senders) in [(&mut tracks_b, [&va, &aa]), (&mut tracks_a, [&vb, &ab])] {
            let remote = take_tracks(&h, tracks, 2).await;
            let mut kinds = HashMap::new();
            for t in &remote {
                let sender = senders
                    .iter()
                    .find(|s| s.kind() == t.kind())
                    .expect("a track of each kind");
                assert_eq!(t.ssrc(), sender.ssrc(), "{t:?}");
                let codec = t.codec().expect("codec").mime_type.to_lowercase();
                let expected = match t.kind() {
                    RtpCodecKind::Video => "video/vp8",
                    _ => "audio/opus",
                };
                assert_eq!(codec, expected);
                let mut rtp = t.rtp();
                let got = within(&h, "packets", LIMIT, async {
                    let mut got = Vec::new();
                    while got.len() < usize::from(N) {
                        got.push(rtp.next().await.expect("rtp ended").header.sequence_number);
                    }
                    got
                })
                .await;
                assert_eq!(got, (0..N).collect::<Vec<_>>(), "{t:?}");
                assert_eq!(t.received(), u64::from(N));
                assert_eq!(t.dropped(), 0);
                kinds.insert(format!("{:?}", t.kind()), got.len());
            }
            by_side.push(kinds);
        }
        assert_eq!(by_side.len(), 2);
        // The statistics report sees the same streams.
        for pc in [&a, &b] {
            let report = pc.stats().await.unwrap();
            let sent: u64 = report
                .outbound_rtp_streams()
                .map(|s| s.sent_rtp_stream_stats.packets_sent)
                .sum();
            let received: u64 = report
                .inbound_rtp_streams()
                .map(|s| s.received_rtp_stream_stats.packets_received)
                .sum();
            assert_eq!(sent, 2 * u64::from(N), "{report:?}");
            assert_eq!(received, 2 * u64::from(N), "{report:?}");
            assert!(report.transport().is_some());
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// A track whose reader does not read loses its oldest packets (counted); another track of
/// the same connection gets every packet.
#[test]
fn a_paused_track_reader_loses_only_its_own_oldest_packets() {
    init_log();
    let sim = SimRuntime::new(42);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let mut tracks_b = b.tracks();
        let (video, audio) = add_av(&a, "a").await;
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;

        const N: u16 = 2_000;
        for seq in 0..N {
            video.write_rtp(packet(seq, 100)).await.unwrap();
            audio.write_rtp(packet(seq, 100)).await.unwrap();
            if seq % 50 == 0 {
                h.sleep(Duration::from_millis(5)).await;
            }
        }
        let remote = take_tracks(&h, &mut tracks_b, 2).await;
        let paused = remote
            .iter()
            .find(|t| t.kind() == RtpCodecKind::Video)
            .unwrap();
        let live = remote
            .iter()
            .find(|t| t.kind() == RtpCodecKind::Audio)
            .unwrap();
        // The live reader reads everything; the paused one has read nothing so far.
        let mut rtp = live.rtp();
        let got = within(&h, "live track", LIMIT, async {
            let mut n = 0u16;
            // Only what is still queued can be read: the live track was not read either
            // until now, so it too kept only its newest packets.
            while let Some(p) = rtp.next().await {
                n += 1;
                if p.header.sequence_number == N - 1 {
                    break;
                }
            }
            n
        })
        .await;
        h.sleep(Duration::from_secs(1)).await;
        assert_eq!(paused.received(), u64::from(N));
        assert_eq!(live.received(), u64::from(N));
        // Both queues held at most their capacity; the rest was dropped and counted.
        assert_eq!(
            paused.dropped() + paused.rtp().queued() as u64,
            u64::from(N)
        );
        assert_eq!(live.dropped() + u64::from(got), u64::from(N));
        assert!(
            paused.dropped() > 0,
            "nothing dropped: {}",
            paused.dropped()
        );
        // The newest packets are the ones kept.
        let first_kept = paused.rtp().next().await.unwrap().header.sequence_number;
        assert_eq!(u64::from(first_kept), paused.dropped());

        // With the reader keeping up, nothing is dropped.
        let before = live.dropped();
        let mut live_rtp = live.rtp();
        for seq in N..N + 100 {
            audio.write_rtp(packet(seq, 100)).await.unwrap();
            let p = within(&h, "live packet", LIMIT, live_rtp.next())
                .await
                .unwrap();
            assert_eq!(p.header.sequence_number, seq);
        }
        assert_eq!(live.dropped(), before);
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// Samples are packetized for the codec; the receiver gets RTP whose timestamps advance by
/// each sample's duration.
#[test]
fn samples_are_packetized() {
    init_log();
    let sim = SimRuntime::new(43);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let mut tracks_b = b.tracks();
        let (video, _audio) = add_av(&a, "a").await;
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        // A 3,000-byte "frame" needs several RTP packets at the default MTU.
        for i in 0..10u8 {
            let frame = Bytes::from(vec![i; 3_000]);
            video
                .write_sample(Sample::new(frame, Duration::from_millis(40)))
                .await
                .unwrap();
        }
        let remote = take_tracks(&h, &mut tracks_b, 1).await;
        let mut rtp = remote[0].rtp();
        let packets = within(&h, "sample packets", LIMIT, async {
            let mut v = Vec::new();
            while v.len() < 30 {
                v.push(rtp.next().await.unwrap());
            }
            v
        })
        .await;
        // 40 ms at 90 kHz: consecutive frames are 3,600 ticks apart.
        let mut stamps: Vec<u32> = packets.iter().map(|p| p.header.timestamp).collect();
        stamps.dedup();
        assert!(stamps.len() >= 9, "{stamps:?}");
        for w in stamps.windows(2) {
            assert_eq!(w[1].wrapping_sub(w[0]), 3_600);
        }
        assert!(packets.iter().any(|p| p.header.marker), "no frame ended");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// With media negotiated, RTP and RTCP reach SRTP only for the signalled SSRCs and a few
/// unsignalled ones: 20,000 packets with fresh SSRCs from the peer's forged address cost
/// nothing, and the real tracks keep flowing.
#[test]
fn forged_ssrcs_are_bounded_when_media_is_negotiated() {
    init_log();
    let sim = SimRuntime::new(44);
    let h = sim.handle().clone();
    sim.block_on(async {
        // Bound first: the fields left out stay alive to the end of the test.
        let flowing = video_flowing(&h).await;
        let VideoFlowing {
            a,
            b,
            video,
            mut rtp,
            ..
        } = flowing;
        connected(&h, &b, LIMIT).await;

        let before = alloc::live_bytes();
        let (victim, spoofed) = (b.local_addrs()[0], a.local_addrs()[0]);
        let forged = (0..10_000u32).map(|i| hostile::rtp(0x4000_0000 + i, i as u16));
        hostile::blast(&h, spoofed, victim, forged, 500).await;
        let forged = (0..10_000u32).map(|i| hostile::rtcp_sender_report(0x5000_0000 + i));
        hostile::blast(&h, spoofed, victim, forged, 500).await;
        h.sleep(Duration::from_secs(1)).await;
        let grown = alloc::live_bytes() - before;
        assert!(
            grown < 1024 * 1024,
            "heap grew by {:.2} MiB",
            alloc::mib(grown)
        );
        let stats = b.filter_stats();
        assert!(stats.media >= 20_000 - 16, "{stats:?}");

        for seq in 1..100 {
            video.write_rtp(packet(seq, 100)).await.unwrap();
            let p = within(&h, "packet after the flood", LIMIT, rtp.next())
                .await
                .unwrap();
            assert_eq!(p.header.sequence_number, seq);
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// A keyframe request from the receiver reaches the sender's RTCP stream as a picture loss
/// indication for its SSRC; the receiver's track sees the sender's reports.
#[test]
fn keyframe_requests_reach_the_sender() {
    use webrtc_streams::rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

    init_log();
    let sim = SimRuntime::new(46);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let mut tracks_b = b.tracks();
        let (video, _audio) = add_av(&a, "a").await;
        let mut feedback = video.rtcp();
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        for seq in 0..10 {
            video.write_rtp(packet(seq, 100)).await.unwrap();
        }
        let remote = take_tracks(&h, &mut tracks_b, 1).await;
        remote[0].request_keyframe().await.unwrap();
        let pli = within(&h, "picture loss indication", LIMIT, async {
            while let Some(packets) = feedback.next().await {
                for p in packets {
                    if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
                        return pli.media_ssrc;
                    }
                }
            }
            panic!("sender RTCP ended")
        })
        .await;
        assert_eq!(pli, video.ssrc());
        // Sender reports come about once a second: the receiving side sees one.
        let mut reports = remote[0].rtcp();
        within(&h, "a sender report", LIMIT, reports.next())
            .await
            .expect("rtcp ended");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// On a path that loses 10 % of the media, the default interceptors' NACKs get every lost
/// packet retransmitted: every packet from the first one received on arrives, exactly once
/// (repeats are dropped and counted).
#[test]
fn nack_recovers_lost_video_packets() {
    init_log();
    let sim = SimRuntime::new(47);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let mut tracks_b = b.tracks();
        let (video, _audio) = add_av(&a, "a").await;
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        connected(&h, &b, LIMIT).await;
        h.set_link(
            HOST_A,
            HOST_B,
            webrtc_streams::runtime::sim::LinkConfig::new()
                .delay(Duration::from_millis(20))
                .loss(0.1),
        );
        const N: u16 = 300;
        let (sender, h2) = (video.clone(), h.clone());
        let _send = h.spawn(async move {
            for seq in 0..N {
                sender.write_rtp(packet(seq, 300)).await.unwrap();
                h2.sleep(Duration::from_millis(10)).await;
            }
        });
        let remote = take_tracks(&h, &mut tracks_b, 1).await;
        let mut rtp = remote[0].rtp();
        let mut seen = std::collections::BTreeMap::<u16, u32>::new();
        within(&h, "every packet, lost ones retransmitted", LIMIT, async {
            loop {
                let p = rtp.next().await.expect("rtp ended");
                *seen.entry(p.header.sequence_number).or_default() += 1;
                let first = *seen.keys().next().unwrap();
                if (first..N).all(|s| seen.contains_key(&s)) {
                    break;
                }
            }
        })
        .await;
        assert!(
            h.network_stats().lost > 10,
            "the link lost too little to test anything"
        );
        assert!(
            seen.values().all(|&n| n == 1),
            "a packet was delivered twice"
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// Renegotiation: a connected pair with only a data channel adds a video track on one side and
/// an audio track on the other, one after the other, each time re-offering from the side that
/// added; the new tracks arrive and carry packets, and the channel keeps working.
#[test]
fn tracks_added_after_connecting_arrive_through_renegotiation() {
    init_log();
    let sim = SimRuntime::new(48);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let (mut tracks_a, mut tracks_b) = (a.tracks(), b.tracks());
        let mut incoming = b.data_channels();
        let dc = a
            .create_data_channel("chat", Default::default())
            .await
            .unwrap();
        negotiate(&a, &b).await;
        let theirs = within(&h, "channel", LIMIT, incoming.next()).await.unwrap();
        within(&h, "open", LIMIT, dc.opened()).await.unwrap();

        // a adds video, starts writing at once (the writes wait for the negotiation: the core
        // would drop them before) and re-offers.
        let video = a
            .add_track(LocalTrack::video(
                "late-video",
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ))
            .await
            .unwrap();
        let early = video.clone();
        let writer = h.spawn(async move {
            for seq in 0..20 {
                early.write_rtp(packet(seq, 100)).await.unwrap();
            }
        });
        negotiate(&a, &b).await;
        writer.await;
        let remote = take_tracks(&h, &mut tracks_b, 1).await;
        assert_eq!(remote[0].kind(), RtpCodecKind::Video);
        let mut rtp = remote[0].rtp();
        let first = within(&h, "video after renegotiation", LIMIT, rtp.next())
            .await
            .unwrap();
        assert_eq!(
            first.header.sequence_number, 0,
            "a packet written early was lost"
        );

        // b adds audio and re-offers.
        let audio = b
            .add_track(LocalTrack::audio(
                "late-audio",
                LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2),
            ))
            .await
            .unwrap();
        negotiate(&b, &a).await;
        for seq in 0..20 {
            audio.write_rtp(packet(seq, 100)).await.unwrap();
        }
        let remote = take_tracks(&h, &mut tracks_a, 1).await;
        assert_eq!(remote[0].kind(), RtpCodecKind::Audio);
        let mut rtp = remote[0].rtp();
        within(&h, "audio after renegotiation", LIMIT, rtp.next())
            .await
            .unwrap();

        dc.send(Bytes::from_static(b"still here")).await.unwrap();
        let m = within(&h, "message", LIMIT, theirs.messages().next())
            .await
            .unwrap();
        assert_eq!(&m.data[..], b"still here");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// A track removed and renegotiated away ends on the remote side: its packet stream returns
/// `None`; the sender's writes fail.
#[test]
fn a_removed_track_ends_on_the_remote_side() {
    init_log();
    let sim = SimRuntime::new(49);
    let h = sim.handle().clone();
    sim.block_on(async {
        // Bound first: the fields left out stay alive to the end of the test.
        let flowing = video_flowing(&h).await;
        let VideoFlowing {
            a,
            b,
            video,
            mut rtp,
            ..
        } = flowing;

        a.remove_track(&video).await.unwrap();
        assert!(video.write_rtp(packet(1, 100)).await.is_err());
        negotiate(&a, &b).await;
        let end = within(&h, "the track's end", LIMIT, rtp.next()).await;
        assert!(end.is_none(), "{end:?}");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// Glare, resolved the "perfect negotiation" way (RFC 8829 §5.7): both peers add a track and
/// offer at once; the impolite one ignores the other's offer, the polite one rolls its own
/// back and answers, then offers again; both tracks arrive.
#[test]
fn glare_is_resolved_by_rolling_back_the_polite_peers_offer() {
    use webrtc_streams::rtc::peer_connection::state::RTCSignalingState;

    init_log();
    let sim = SimRuntime::new(50);
    let h = sim.handle().clone();
    sim.block_on(async {
        let impolite = media_peer(&h, HOST_A).await;
        let polite = media_peer(&h, HOST_B).await;
        let (mut tracks_impolite, mut tracks_polite) = (impolite.tracks(), polite.tracks());
        let (v1, _) = add_av(&impolite, "impolite").await;
        let (v2, _) = add_av(&polite, "polite").await;

        // Both offer at once.
        for pc in [&impolite, &polite] {
            pc.set_local_description(pc.create_offer().await.unwrap())
                .await
                .unwrap();
            pc.gathering_complete().await.unwrap();
        }
        let offer_impolite = impolite.local_description().await.unwrap().unwrap();
        let offer_polite = polite.local_description().await.unwrap().unwrap();
        assert_eq!(
            impolite.signaling_state(),
            RTCSignalingState::HaveLocalOffer
        );
        // The impolite peer ignores the colliding offer; the polite one rolls back.
        drop(offer_polite);
        polite
            .set_local_description(RTCSessionDescription::rollback(None).unwrap())
            .await
            .unwrap();
        assert_eq!(polite.signaling_state(), RTCSignalingState::Stable);
        polite.set_remote_description(offer_impolite).await.unwrap();
        polite
            .set_local_description(polite.create_answer().await.unwrap())
            .await
            .unwrap();
        impolite
            .set_remote_description(polite.local_description().await.unwrap().unwrap())
            .await
            .unwrap();
        // The polite peer's own track needs a negotiation of its own.
        negotiate(&polite, &impolite).await;

        for (sender, tracks) in [(&v1, &mut tracks_polite), (&v2, &mut tracks_impolite)] {
            for seq in 0..10 {
                sender.write_rtp(packet(seq, 100)).await.unwrap();
            }
            let remote = within(&h, "tracks", LIMIT, async {
                loop {
                    let t = tracks.next().await.expect("tracks ended");
                    if t.kind() == RtpCodecKind::Video {
                        return t;
                    }
                }
            })
            .await;
            assert_eq!(remote.ssrc(), sender.ssrc());
        }
        impolite.close().await.unwrap();
        polite.close().await.unwrap();
    });
}

/// An offerer that only receives: a receive-only transceiver gets the answerer's track; and
/// `replace_track` keeps the remote track going (same SSRC, no renegotiation).
#[test]
fn receive_only_offerer_and_replaced_track() {
    use webrtc_streams::rtc::rtp_transceiver::RTCRtpTransceiverDirection;

    init_log();
    let sim = SimRuntime::new(52);
    let h = sim.handle().clone();
    sim.block_on(async {
        let viewer = media_peer(&h, HOST_A).await;
        let camera = media_peer(&h, HOST_B).await;
        let mut tracks = viewer.tracks();
        viewer
            .add_transceiver(RtpCodecKind::Video, RTCRtpTransceiverDirection::Recvonly)
            .await
            .unwrap();
        viewer
            .set_local_description(viewer.create_offer().await.unwrap())
            .await
            .unwrap();
        viewer.gathering_complete().await.unwrap();
        camera
            .set_remote_description(viewer.local_description().await.unwrap().unwrap())
            .await
            .unwrap();
        // The answerer's track takes the offered transceiver.
        let video = camera
            .add_track(LocalTrack::video(
                "cam",
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ))
            .await
            .unwrap();
        camera
            .set_local_description(camera.create_answer().await.unwrap())
            .await
            .unwrap();
        camera.gathering_complete().await.unwrap();
        viewer
            .set_remote_description(camera.local_description().await.unwrap().unwrap())
            .await
            .unwrap();
        connected(&h, &camera, LIMIT).await;
        for seq in 0..10 {
            video.write_rtp(packet(seq, 100)).await.unwrap();
        }
        let remote = take_tracks(&h, &mut tracks, 1).await;
        let mut rtp = remote[0].rtp();
        for seq in 0..10 {
            let p = within(&h, "packet", LIMIT, rtp.next()).await.unwrap();
            assert_eq!(p.header.sequence_number, seq);
        }

        // Another source on the same sender: the remote track goes on.
        video
            .replace_track(LocalTrack::video(
                "screen",
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ))
            .await
            .unwrap();
        let wrong_kind = LocalTrack::audio("mic", LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2));
        assert!(video.replace_track(wrong_kind).await.is_err());
        for seq in 10..20 {
            video.write_rtp(packet(seq, 100)).await.unwrap();
            let p = within(&h, "packet after replace", LIMIT, rtp.next())
                .await
                .unwrap();
            assert_eq!(p.header.sequence_number, seq);
            assert_eq!(p.header.ssrc, video.ssrc());
        }
        viewer.close().await.unwrap();
        camera.close().await.unwrap();
    });
}

/// The handler bridge hands remote tracks to `on_track`, fed from the same streams; the
/// handler reads the packets on a task of its own.
#[test]
fn the_handler_gets_remote_tracks() {
    use std::sync::{Arc, Mutex};
    use webrtc_streams::{PeerConnectionEventHandler, media::RemoteTrack};

    struct Tracks(Arc<Mutex<Vec<RemoteTrack>>>);
    impl PeerConnectionEventHandler for Tracks {
        async fn on_track(&mut self, track: RemoteTrack) {
            self.0.lock().unwrap().push(track);
        }
    }

    init_log();
    let sim = SimRuntime::new(53);
    let h = sim.handle().clone();
    sim.block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let a = media_peer(&h, HOST_A).await;
        let b = PeerConnection::builder()
            .runtime(h.runtime())
            .bind([std::net::SocketAddr::new(HOST_B, 0)])
            .default_codecs()
            .handler(Tracks(seen.clone()))
            .build()
            .await
            .unwrap();
        let (video, audio) = add_av(&a, "a").await;
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        video.write_rtp(packet(0, 100)).await.unwrap();
        audio.write_rtp(packet(0, 100)).await.unwrap();
        let tracks = within(&h, "on_track twice", LIMIT, async {
            loop {
                let t = seen.lock().unwrap().clone();
                if t.len() == 2 {
                    return t;
                }
                h.sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let mut kinds: Vec<_> = tracks.iter().map(|t| format!("{:?}", t.kind())).collect();
        kinds.sort();
        assert_eq!(kinds, ["Audio", "Video"]);
        for t in &tracks {
            let p = within(&h, "packet", LIMIT, t.rtp().next()).await.unwrap();
            assert_eq!(p.header.ssrc, t.ssrc());
        }
        drop(tracks);
        seen.lock().unwrap().clear();
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// A sender set inactive and renegotiated: the remote track ends and writes wait; set back to
/// sending and renegotiated, a new remote track arrives with the same SSRC.
#[test]
fn a_sender_paused_and_resumed_through_its_direction() {
    use webrtc_streams::media::RTCRtpTransceiverDirection;

    init_log();
    let sim = SimRuntime::new(54);
    let h = sim.handle().clone();
    sim.block_on(async {
        // Bound first: the fields left out stay alive to the end of the test.
        let flowing = video_flowing(&h).await;
        let VideoFlowing {
            a,
            b,
            mut tracks_b,
            video,
            mut rtp,
            ..
        } = flowing;

        video
            .set_direction(RTCRtpTransceiverDirection::Inactive)
            .await
            .unwrap();
        negotiate(&a, &b).await;
        let end = within(&h, "the track's end", LIMIT, rtp.next()).await;
        assert!(end.is_none(), "{end:?}");
        // Writes wait while the negotiated direction does not send.
        let waiting = h
            .timeout(Duration::from_secs(1), video.write_rtp(packet(1, 100)))
            .await;
        assert!(
            waiting.is_err(),
            "a write went out on an inactive transceiver"
        );

        video
            .set_direction(RTCRtpTransceiverDirection::Sendrecv)
            .await
            .unwrap();
        negotiate(&a, &b).await;
        video.write_rtp(packet(2, 100)).await.unwrap();
        let again = take_tracks(&h, &mut tracks_b, 1).await;
        assert_eq!(again[0].ssrc(), video.ssrc());
        let p = within(&h, "packet after resuming", LIMIT, again[0].rtp().next())
            .await
            .unwrap();
        assert_eq!(p.header.sequence_number, 2);
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
