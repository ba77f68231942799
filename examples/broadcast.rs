//! The SFU shape in one process: a publisher sends video, a forwarder receives it and fans
//! every packet out to several subscribers, unchanged (its `RtpSender`s rewrite only SSRC and
//! payload type), then asks the publisher for a key frame, as an SFU does when a subscriber
//! joins. Each subscriber checks that it got every packet, in order.
//!
//! ```text
//! cargo run --example broadcast
//! ```

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, future::try_join_all};
use webrtc_streams::{
    PeerConnection, Result,
    media::{LocalTrack, RtpSender},
    rtc::{
        peer_connection::{
            configuration::media_engine::MIME_TYPE_VP8, state::RTCPeerConnectionState,
        },
        rtp,
    },
};

const SUBSCRIBERS: usize = 3;
const PACKETS: u16 = 500;

async fn peer() -> Result<PeerConnection> {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .default_codecs()
        .build()
        .await
}

fn vp8() -> webrtc_streams::media::RTCRtpCodec {
    LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0)
}

#[tokio::main]
pub async fn main() -> Result<()> {
    // The publisher and the forwarder's connection to it.
    let publisher = peer().await?;
    let ingest = peer().await?;
    let camera = publisher
        .add_track(LocalTrack::video("camera", vp8()))
        .await?;
    let mut published = ingest.tracks();
    signal(&publisher, &ingest).await?;

    // The forwarder's connections to the subscribers: one sender each.
    let mut outputs: Vec<RtpSender> = Vec::new();
    let mut subscribers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let out = peer().await?;
        let sub = peer().await?;
        outputs.push(
            out.add_track(LocalTrack::video(format!("to-{i}"), vp8()))
                .await?,
        );
        let tracks = sub.tracks();
        signal(&out, &sub).await?;
        subscribers.push((out, sub, tracks));
    }
    // Media is real-time: what arrives before a subscriber is up is not kept for long. Start
    // once everyone is connected.
    for pc in [&publisher, &ingest]
        .into_iter()
        .chain(subscribers.iter().flat_map(|(out, sub, _)| [out, sub]))
    {
        connected(pc).await;
    }

    // Subscribers: every packet, in order.
    let checks = subscribers
        .iter_mut()
        .enumerate()
        .map(|(i, (_, _, tracks))| async move {
            let track = tracks.next().await.expect("a track");
            let mut rtp = track.rtp();
            for expected in 0..PACKETS {
                let p = rtp.next().await.expect("packets");
                assert_eq!(p.header.sequence_number, expected, "subscriber {i}");
            }
            println!("subscriber {i}: {PACKETS} packets, in order");
            Result::<()>::Ok(())
        });

    // The forwarder: one remote track in, every packet out to every subscriber.
    let forward = async {
        let track = published.next().await.expect("the published track");
        let mut packets = track.rtp();
        let mut forwarded = 0u16;
        while forwarded < PACKETS {
            let p = packets.next().await.expect("packets");
            try_join_all(outputs.iter().map(|o| o.write_rtp(p.clone()))).await?;
            forwarded += 1;
        }
        println!("forwarder: {forwarded} packets to {SUBSCRIBERS} subscribers");
        // A subscriber's keyframe request goes upstream.
        track.request_keyframe().await?;
        Result::<()>::Ok(())
    };

    // The publisher: 500 packets, paced.
    let publish = async {
        for seq in 0..PACKETS {
            let packet = rtp::Packet {
                header: rtp::Header {
                    version: 2,
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 3000,
                    ..Default::default()
                },
                payload: Bytes::from(vec![seq as u8; 800]),
            };
            camera.write_rtp(packet).await?;
            // Paced like a camera in a hurry: 10 packets every 2 ms.
            if seq % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Result::<()>::Ok(())
    };

    let (published_ok, forwarded_ok, checked) =
        tokio::join!(publish, forward, try_join_all(checks));
    published_ok?;
    forwarded_ok?;
    checked?;

    publisher.close().await?;
    ingest.close().await?;
    for (out, sub, _) in &subscribers {
        out.close().await?;
        sub.close().await?;
    }
    Ok(())
}

/// Waits until `pc` is connected.
async fn connected(pc: &PeerConnection) {
    let mut states = pc.connection_states();
    while let Some(s) = states.next().await {
        if s == RTCPeerConnectionState::Connected {
            return;
        }
    }
}

/// Offer/answer in-process, without trickle ICE.
async fn signal(a: &PeerConnection, b: &PeerConnection) -> Result<()> {
    a.set_local_description(a.create_offer().await?).await?;
    a.gathering_complete().await.unwrap();
    b.set_remote_description(a.local_description().await.unwrap().expect("offer"))
        .await?;
    b.set_local_description(b.create_answer().await?).await?;
    b.gathering_complete().await.unwrap();
    a.set_remote_description(b.local_description().await.unwrap().expect("answer"))
        .await
}
