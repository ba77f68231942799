//! Media interop with the reference Rust stack, `webrtc` 0.21.1, as the receiver of our
//! simulcast: we offer one video track with three encodings (RIDs); the reference answers and
//! opens one RID layer per encoding (it models a simulcast track as one remote track with an
//! `OnOpen` per layer), and every packet of every layer arrives, tagged with its RID.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use webrtc::media_stream::track_remote::TrackRemoteEvent;
use webrtc_streams::{
    PeerConnection,
    media::LocalTrack,
    rtc::{peer_connection::configuration::media_engine::MIME_TYPE_VP8, rtp},
};
use webrtc_streams_compare::anchor::*;

const RIDS: [&str; 3] = ["q", "h", "f"];
const N: u16 = 100;

#[tokio::test]
async fn webrtc021_receives_our_simulcast_layer_by_layer() {
    init_log();
    let ours = PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .default_codecs()
        .build()
        .await
        .unwrap();
    let theirs = anchor_media_peer().await;
    let camera = ours
        .add_track(
            LocalTrack::video("cam", LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0))
                .with_simulcast(RIDS),
        )
        .await
        .unwrap();
    let layers: Vec<_> = RIDS.iter().map(|r| camera.layer(r).unwrap()).collect();

    let offer = ours.create_offer().await.unwrap();
    ours.set_local_description(offer).await.unwrap();
    ours.gathering_complete().await.unwrap();
    theirs
        .pc
        .set_remote_description(ours.local_description().await.unwrap().unwrap())
        .await
        .unwrap();
    let answer = theirs.pc.create_answer(None).await.unwrap();
    theirs.pc.set_local_description(answer).await.unwrap();
    within("reference gathering", theirs.gathering_complete()).await;
    let answer = theirs.pc.local_description().await.unwrap();
    assert!(
        answer.sdp.contains("a=simulcast:recv q;h;f"),
        "the reference accepts the three layers:\n{}",
        answer.sdp
    );
    ours.set_remote_description(answer).await.unwrap();
    within("connected", connected(&ours)).await;

    // A sender task per layer, paced a little so the reference's bounded queues keep up.
    for (i, layer) in layers.iter().enumerate() {
        let layer = layer.clone();
        tokio::spawn(async move {
            for seq in 0..N {
                let p = rtp::Packet {
                    header: rtp::Header {
                        version: 2,
                        sequence_number: seq,
                        timestamp: u32::from(seq) * 3000,
                        ..Default::default()
                    },
                    payload: vec![i as u8; 300].into(),
                };
                layer.write_rtp(p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }

    let track = within("reference track", theirs.tracks.recv())
        .await
        .unwrap();
    // Per SSRC: the RID the layer opened with and the sequence numbers received.
    let mut opened: HashMap<u32, String> = HashMap::new();
    let mut got: HashMap<u32, Vec<u16>> = HashMap::new();
    within("every layer's packets", async {
        while opened.len() < RIDS.len()
            || got.values().map(Vec::len).sum::<usize>() < RIDS.len() * usize::from(N)
        {
            match track.poll().await.expect("reference track ended") {
                TrackRemoteEvent::OnOpen(init) => {
                    opened.insert(init.ssrc, init.rid.clone().expect("a RID per layer"));
                }
                TrackRemoteEvent::OnRtpPacket(p) => {
                    got.entry(p.header.ssrc)
                        .or_default()
                        .push(p.header.sequence_number);
                }
                _ => {}
            }
        }
    })
    .await;
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(opened.get(&layer.ssrc()).map(String::as_str), Some(RIDS[i]));
        let mut seqs = got.remove(&layer.ssrc()).unwrap_or_default();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "layer {}", RIDS[i]);
    }
    assert!(got.is_empty(), "packets on unknown SSRCs: {got:?}");
    ours.close().await.unwrap();
    let _ = theirs.pc.close().await;
}
