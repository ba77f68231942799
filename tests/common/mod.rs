//! Helpers shared by the integration tests: loopback peers and signaling.
#![allow(dead_code)]

// coturn and namespaces: Linux process and network-namespace calls (prctl, setns, /proc).
#[cfg(target_os = "linux")]
pub mod coturn;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod process;
pub mod turn;

use std::{future::Future, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{
    DataChannel, PeerConnection, rtc::peer_connection::state::RTCPeerConnectionState,
};

/// Generous bound for anything that should take well under a second on loopback.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Fails the test if `f` does not finish within [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A connection with one UDP socket on 127.0.0.1.
pub async fn loopback_peer() -> PeerConnection {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .build()
        .await
        .expect("build")
}

/// Offer/answer without trickle: each side waits for gathering and sends its full description.
pub async fn negotiate(offerer: &PeerConnection, answerer: &PeerConnection) {
    let offer = offerer.create_offer().await.expect("offer");
    offerer
        .set_local_description(offer)
        .await
        .expect("sld offer");
    offerer.gathering_complete().await.unwrap();
    let offer = offerer
        .local_description()
        .await
        .unwrap()
        .expect("local offer");
    answerer
        .set_remote_description(offer)
        .await
        .expect("srd offer");
    let answer = answerer.create_answer().await.expect("answer");
    answerer
        .set_local_description(answer)
        .await
        .expect("sld answer");
    answerer.gathering_complete().await.unwrap();
    let answer = answerer
        .local_description()
        .await
        .unwrap()
        .expect("local answer");
    offerer
        .set_remote_description(answer)
        .await
        .expect("srd answer");
}

/// Waits until `pc` reports `Connected`.
pub async fn connected(pc: &PeerConnection) {
    let mut states = pc.connection_states();
    within("connected", async {
        while let Some(s) = states.next().await {
            match s {
                RTCPeerConnectionState::Connected => return,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    panic!("connection ended: {s}")
                }
                _ => {}
            }
        }
        panic!("state stream ended")
    })
    .await
}

/// Two connected loopback peers with one channel `label` created by the first and received
/// by the second, open on both sides.
pub async fn pair_with_channel(
    label: &str,
    init: webrtc_streams::rtc::data_channel::RTCDataChannelInit,
) -> (PeerConnection, PeerConnection, DataChannel, DataChannel) {
    let a = loopback_peer().await;
    let b = loopback_peer().await;
    let mut incoming = b.data_channels();
    let dc_a = a.create_data_channel(label, init).await.expect("create");
    negotiate(&a, &b).await;
    let dc_b = within("remote channel", incoming.next())
        .await
        .expect("data channel stream ended");
    within("open a", dc_a.opened()).await.expect("open a");
    within("open b", dc_b.opened()).await.expect("open b");
    (a, b, dc_a, dc_b)
}

/// Sends `payload` on `tx` and waits for exactly that message on `rx`.
pub async fn round_trip(tx: &DataChannel, rx: &DataChannel, payload: &'static [u8]) {
    let mut msgs = rx.messages();
    within("send", tx.send(Bytes::from_static(payload)))
        .await
        .expect("send");
    let m = within("receive", msgs.next())
        .await
        .expect("message stream ended");
    assert_eq!(&m.data[..], payload);
}
