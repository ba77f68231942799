//! Sending simulcast: one local video track with three encodings (RIDs), written through one
//! sender handle per RID; the receiver gets one remote track per RID, every packet on the
//! right one.
#![cfg(feature = "runtime-sim")]

#[path = "common/media.rs"]
mod media_common;
#[path = "common/sim.rs"]
mod sim_common;

use std::collections::HashSet;

use media_common::*;
use sim_common::*;
use webrtc_streams::{
    Error,
    media::LocalTrack,
    rtc::{peer_connection::configuration::media_engine::MIME_TYPE_VP8, rtp},
    runtime::sim::SimRuntime,
};

const RIDS: [&str; 3] = ["q", "h", "f"];

fn vp8() -> webrtc_streams::media::RTCRtpCodec {
    LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0)
}

/// `N` packets per encoding, each layer's payload marked with its index: `b` sees three
/// remote tracks with the RIDs and SSRCs of the layers, each with exactly its own packets, in
/// order, none dropped. The offer announces the RIDs.
#[test]
fn three_encodings_arrive_as_three_remote_tracks() {
    init_log();
    let sim = SimRuntime::new(51);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let mut tracks_b = b.tracks();
        let camera = a
            .add_track(LocalTrack::video("cam", vp8()).with_simulcast(RIDS))
            .await
            .unwrap();
        assert_eq!(
            camera.rid(),
            Some("q"),
            "add_track's handle writes the first layer"
        );
        let layers: Vec<_> = RIDS.iter().map(|r| camera.layer(r).unwrap()).collect();
        assert!(camera.layer("x").is_none());
        assert_eq!(camera.layers().len(), 3);
        let ssrcs: HashSet<u32> = layers.iter().map(|l| l.ssrc()).collect();
        assert_eq!(ssrcs.len(), 3, "an SSRC per layer");

        negotiate(&a, &b).await;
        let offer = b.remote_description().await.unwrap().unwrap().sdp;
        for rid in RIDS {
            assert!(offer.contains(&format!("a=rid:{rid} send")), "{offer}");
        }
        assert!(offer.contains("a=simulcast:send q;h;f"), "{offer}");
        connected(&h, &a, LIMIT).await;

        const N: u16 = 200;
        for seq in 0..N {
            for (i, layer) in layers.iter().enumerate() {
                let mut p = packet(seq, 200);
                p.payload = vec![i as u8; 200].into();
                layer.write_rtp(p).await.unwrap();
            }
        }
        let remote = take_tracks(&h, &mut tracks_b, 3).await;
        let rids: HashSet<&str> = remote.iter().filter_map(|t| t.rid()).collect();
        assert_eq!(rids, RIDS.into_iter().collect::<HashSet<_>>());
        for t in &remote {
            let i = RIDS.iter().position(|r| Some(*r) == t.rid()).unwrap();
            assert_eq!(t.ssrc(), layers[i].ssrc(), "{t:?}");
            assert_eq!(t.id(), "cam");
            let mut rtp = t.rtp();
            let got: Vec<rtp::Packet> = within(&h, "layer packets", LIMIT, async {
                use futures::StreamExt;
                let mut got = Vec::new();
                while got.len() < usize::from(N) {
                    got.push(rtp.next().await.expect("rtp ended"));
                }
                got
            })
            .await;
            let seqs: Vec<u16> = got.iter().map(|p| p.header.sequence_number).collect();
            assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "{t:?}");
            assert!(
                got.iter().all(|p| p.payload.iter().all(|&b| b == i as u8)),
                "{t:?}"
            );
            // Every packet carries the MID and RID header extensions (RFC 8852).
            let ext = |uri: &str| -> u8 {
                let line = offer
                    .lines()
                    .find(|l| l.starts_with("a=extmap:") && l.ends_with(uri))
                    .unwrap_or_else(|| panic!("no extmap for {uri}"));
                line["a=extmap:".len()..]
                    .split([' ', '/'])
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let (mid_id, rid_id) = (
                ext("urn:ietf:params:rtp-hdrext:sdes:mid"),
                ext("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"),
            );
            for p in &got {
                assert_eq!(
                    p.header.get_extension(mid_id).as_deref(),
                    Some(&b"0"[..]),
                    "{p:?}"
                );
                assert_eq!(
                    p.header.get_extension(rid_id).as_deref(),
                    Some(RIDS[i].as_bytes()),
                    "{p:?}"
                );
            }
            assert_eq!(t.received(), u64::from(N), "{t:?}");
            assert_eq!(t.dropped(), 0, "{t:?}");
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// Samples are packetized per layer (each its own sequence numbers), and invalid RID lists
/// are refused with a typed error.
#[test]
fn samples_per_layer_and_invalid_rids() {
    init_log();
    let sim = SimRuntime::new(52);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        for rids in [
            vec!["only"],
            vec!["a", "a"],
            vec!["a", ""],
            vec!["a", "no spaces"],
            vec!["a", "seventeen-chars-x"],
        ] {
            let r = a
                .add_track(LocalTrack::video("bad", vp8()).with_simulcast(rids.clone()))
                .await;
            assert!(
                matches!(r, Err(Error::InvalidOperation(_))),
                "{rids:?}: {r:?}"
            );
        }
        let b = media_peer(&h, HOST_B).await;
        let mut tracks_b = b.tracks();
        let camera = a
            .add_track(LocalTrack::video("cam", vp8()).with_simulcast(["lo", "hi"]))
            .await
            .unwrap();
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        let (lo, hi) = (camera.layer("lo").unwrap(), camera.layer("hi").unwrap());
        const FRAMES: usize = 20;
        for _ in 0..FRAMES {
            // A VP8 key frame header is not needed by the packetizer: any bytes do.
            lo.write_sample(webrtc_streams::media::Sample::new(
                vec![1u8; 500].into(),
                std::time::Duration::from_millis(33),
            ))
            .await
            .unwrap();
            hi.write_sample(webrtc_streams::media::Sample::new(
                vec![2u8; 3_000].into(),
                std::time::Duration::from_millis(33),
            ))
            .await
            .unwrap();
        }
        let remote = take_tracks(&h, &mut tracks_b, 2).await;
        for t in &remote {
            // 500 bytes fit one packet; 3,000 bytes take three.
            let per_frame = if t.rid() == Some("lo") { 1 } else { 3 };
            let seqs = read_seqs(&h, t, FRAMES * per_frame).await;
            for w in seqs.windows(2) {
                assert_eq!(w[1], w[0].wrapping_add(1), "{t:?}: consecutive");
            }
            assert_eq!(t.dropped(), 0);
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
