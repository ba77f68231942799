//! A peer without codecs answers an offer of video + data channel: it rejects the video, and
//! its description must still be usable — candidates in the kept (bundled) section, ICE
//! credentials, DTLS setup and the offered formats in the rejected one (`rtc` 0.21 put the
//! candidates into the rejected section and left it without credentials, which aiortc refuses
//! and which leaves a peer that waits for our candidates nothing to check).
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    PeerConnection,
    media::LocalTrack,
    rtc::peer_connection::{
        configuration::media_engine::MIME_TYPE_VP8, sdp::RTCSessionDescription,
    },
    runtime::sim::SimRuntime,
};

const LIMIT: Duration = Duration::from_secs(60);

/// The media sections of `sdp`, each as its lines.
fn sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for l in sdp.lines().map(str::trim_end) {
        if l.starts_with("m=") {
            out.push(vec![l]);
        } else if let Some(s) = out.last_mut() {
            s.push(l);
        }
    }
    out
}

#[test]
fn rejected_video_leaves_a_usable_answer_and_the_channel_opens() {
    init_log();
    let sim = SimRuntime::new(51);
    let h = sim.handle().clone();
    sim.block_on(async {
        let offerer = PeerConnection::builder()
            .runtime(h.runtime())
            .bind([SocketAddr::new(HOST_A, 0)])
            .default_codecs()
            .build()
            .await
            .unwrap();
        let answerer = peer(&h, HOST_B).await; // no codecs
        let _video = offerer
            .add_track(LocalTrack::video(
                "cam",
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ))
            .await
            .unwrap();
        let dc = offerer
            .create_data_channel("chat", Default::default())
            .await
            .unwrap();
        let mut incoming = answerer.data_channels();

        offerer
            .set_local_description(offerer.create_offer().await.unwrap())
            .await
            .unwrap();
        offerer.gathering_complete().await.unwrap();
        answerer
            .set_remote_description(offerer.local_description().await.unwrap().unwrap())
            .await
            .unwrap();
        let answer = answerer.create_answer().await.unwrap();
        // What create_answer returns is accepted back by set_local_description.
        answerer.set_local_description(answer).await.unwrap();
        answerer.gathering_complete().await.unwrap();
        let answer = answerer.local_description().await.unwrap().unwrap();

        let s = sections(&answer.sdp);
        assert_eq!(s.len(), 2, "{}", answer.sdp);
        let (video, app) = (&s[0], &s[1]);
        assert!(video[0].starts_with("m=video 0 "), "{}", answer.sdp);
        assert!(
            !video.iter().any(|l| l.starts_with("a=candidate")),
            "{}",
            answer.sdp
        );
        assert!(
            app.iter().any(|l| l.starts_with("a=candidate")),
            "{}",
            answer.sdp
        );
        for section in [video, app] {
            for attr in ["a=ice-ufrag:", "a=ice-pwd:", "a=setup:"] {
                assert!(
                    section.iter().any(|l| l.starts_with(attr)),
                    "{attr}: {}",
                    answer.sdp
                );
            }
        }
        // The rejected section names what was offered (VP8 and its RTX), not format 0.
        assert!(
            video.iter().any(|l| l.contains("VP8/90000")),
            "{}",
            answer.sdp
        );

        offerer
            .set_remote_description(RTCSessionDescription::answer(answer.sdp).unwrap())
            .await
            .unwrap();
        let theirs = within(&h, "channel", LIMIT, incoming.next()).await.unwrap();
        within(&h, "open", LIMIT, dc.opened()).await.unwrap();
        dc.send(Bytes::from_static(b"hi")).await.unwrap();
        let m = within(&h, "message", LIMIT, theirs.messages().next())
            .await
            .unwrap();
        assert_eq!(&m.data[..], b"hi");
        offerer.close().await.unwrap();
        answerer.close().await.unwrap();
    });
}
