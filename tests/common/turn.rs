//! Peers for the TURN tests (`tests/nat_turn.rs`, `tests/nat_turn_tcp.rs`): built with ICE
//! servers and a transport policy on 127.0.0.1, connected by trickle ICE, with a checked
//! transfer.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{
    DataChannel, PeerConnection,
    rtc::peer_connection::{
        configuration::{
            RTCConfigurationBuilder, RTCIceTransportPolicy,
            setting_engine::{SettingEngine, SettingEngineBuilder},
        },
        transport::{RTCIceCandidateInit, RTCIceCandidateType, RTCIceServer},
    },
};

use super::{negotiate, within};

pub async fn peer(servers: Vec<RTCIceServer>, policy: RTCIceTransportPolicy) -> PeerConnection {
    peer_with(servers, policy, SettingEngineBuilder::new().build()).await
}

pub async fn peer_with(
    servers: Vec<RTCIceServer>,
    policy: RTCIceTransportPolicy,
    settings: SettingEngine,
) -> PeerConnection {
    peer_trusting(servers, policy, settings, None).await
}

/// A peer that trusts `ca` (a PEM file) for `turns:` servers.
pub async fn peer_trusting(
    servers: Vec<RTCIceServer>,
    policy: RTCIceTransportPolicy,
    settings: SettingEngine,
    ca: Option<&std::path::Path>,
) -> PeerConnection {
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .with_ice_transport_policy(policy)
        .build();
    let mut builder = PeerConnection::builder();
    if let Some(ca) = ca {
        builder = builder.tls_root_certificates(std::fs::read(ca).expect("CA PEM"));
    }
    builder
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(settings)
        .configuration(config)
        .ice_server_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("build")
}

/// Trickle ICE between `a` (offerer) and `b`, with a channel "data" created by `a`.
/// Returns both ends of the channel, open, and the candidates each side announced.
pub async fn connect(
    a: &PeerConnection,
    b: &PeerConnection,
) -> (
    DataChannel,
    DataChannel,
    Vec<RTCIceCandidateInit>,
    Vec<RTCIceCandidateInit>,
) {
    let mut incoming = b.data_channels();
    let dc_a = a
        .create_data_channel("data", Default::default())
        .await
        .expect("dc");
    negotiate(a, b).await;
    let dc_b = within("remote channel", incoming.next())
        .await
        .expect("dc b");
    within("open a", dc_a.opened()).await.expect("open a");
    within("open b", dc_b.opened()).await.expect("open b");
    let ca = candidates_in(
        &a.local_description()
            .await
            .expect("a desc")
            .expect("a has one")
            .sdp,
    );
    let cb = candidates_in(
        &b.local_description()
            .await
            .expect("b desc")
            .expect("b has one")
            .sdp,
    );
    (dc_a, dc_b, ca, cb)
}

pub fn candidates_in(sdp: &str) -> Vec<RTCIceCandidateInit> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .map(|l| RTCIceCandidateInit {
            candidate: l.to_owned(),
            ..Default::default()
        })
        .collect()
}

pub fn typ(c: &RTCIceCandidateInit) -> &str {
    let f: Vec<&str> = c.candidate.split_whitespace().collect();
    f.iter()
        .position(|w| *w == "typ")
        .map(|i| f[i + 1])
        .unwrap_or_default()
}

/// The type of the selected pair's local candidate.
pub async fn selected_local(pc: &PeerConnection) -> RTCIceCandidateType {
    pc.selected_candidate_pair()
        .await
        .expect("selected pair")
        .expect("ICE selected no pair")
        .local()
        .typ
}

/// Sends `count` messages of `size` bytes, each filled from its index, and checks every byte
/// of every message on the other side, in order.
pub async fn transfer(tx: &DataChannel, rx: &DataChannel, count: usize, size: usize) {
    let mut msgs = rx.messages();
    let payload = |i: usize| -> Vec<u8> { (0..size).map(|j| ((i * 31 + j) % 251) as u8).collect() };
    let sender = async {
        for i in 0..count {
            tx.send(Bytes::from(payload(i))).await.expect("send");
        }
    };
    let receiver = async {
        for i in 0..count {
            let m = msgs.next().await.expect("message stream ended");
            assert_eq!(m.data.len(), size, "message {i}");
            assert!(m.data[..] == payload(i)[..], "message {i} corrupted");
        }
    };
    within("transfer", futures::future::join(sender, receiver)).await;
}
