//! Through a TURN relay: connection setup (build → data channel open on both sides) and
//! data-channel throughput, with both peers gathering relayed candidates only, against one
//! real coturn on 127.0.0.1 (started by the bench, Debian package `coturn`). This crate and
//! `webrtc` 0.21.1 in the same run, against the same server. Every byte of the transfer is
//! verified (count and checksum).
//!
//! `cargo bench --bench relay` (`PAIRS=n` setups per library, default 10; `MIB=n` per
//! transfer, default 32; `REPS=n` transfers, default 3).

// `common` holds the tests' coturn launcher (this bench runs coturn on loopback, outside any
// namespace).
mod common;

use std::time::Instant;

use bytes::Bytes;
use common::coturn::{Coturn, CoturnConfig};
use common::*;
use futures::StreamExt;
use webrtc_streams::{
    DataChannel, PeerConnection,
    rtc::peer_connection::configuration::{RTCConfigurationBuilder, RTCIceTransportPolicy},
};

const MESSAGE: usize = 64 * 1024;

async fn ours_relay_pair(
    turn: &Coturn,
) -> (PeerConnection, PeerConnection, DataChannel, DataChannel) {
    let peer = || async {
        PeerConnection::builder()
            .bind(["127.0.0.1:0".parse().unwrap()])
            .configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(vec![turn.ice_server(&[turn.turn_udp_url()])])
                    .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
                    .build(),
            )
            .build()
            .await
            .unwrap()
    };
    let (a, b) = (peer().await, peer().await);
    let mut incoming = b.data_channels();
    let tx = a
        .create_data_channel("bench", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    let rx = incoming.next().await.unwrap();
    tx.opened().await.unwrap();
    rx.opened().await.unwrap();
    (a, b, tx, rx)
}

async fn anchor_relay_pair(
    turn: &Coturn,
) -> (
    anchor::AnchorPeer,
    anchor::AnchorPeer,
    std::sync::Arc<dyn webrtc::data_channel::DataChannel>,
    std::sync::Arc<dyn webrtc::data_channel::DataChannel>,
) {
    let server = turn.ice_server(&[turn.turn_udp_url()]);
    let servers = vec![webrtc::peer_connection::RTCIceServer {
        urls: server.urls,
        username: server.username,
        credential: server.credential,
    }];
    let a = anchor::anchor_relay_peer(servers.clone(), 1 << 20).await;
    let b = anchor::anchor_relay_peer(servers, 1 << 20).await;
    let tx = a.pc.create_data_channel("bench", None).await.unwrap();
    anchor::negotiate(&a, &b).await;
    let rx = b.channels.recv().await.unwrap();
    anchor::wait_open(&tx).await;
    (a, b, tx, rx)
}

/// Message `i`: its index in the first 8 bytes, then a pattern.
fn message(i: u64) -> Bytes {
    let mut v: Vec<u8> = (0..MESSAGE).map(|j| (j as u8).wrapping_mul(31)).collect();
    v[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(v)
}

/// Sends `count` messages from `tx` and checks them on `rx`; returns (seconds, CPU seconds).
async fn ours_transfer(tx: &DataChannel, rx: &DataChannel, count: u64) -> (f64, f64) {
    let expected = (0..count).fold(CHECKSUM_SEED, |h, i| checksum(h, &message(i)));
    let (t, cpu) = (Instant::now(), cpu_time());
    let mut msgs = rx.messages();
    let reader = async {
        let (mut n, mut h) = (0u64, CHECKSUM_SEED);
        while n < count {
            let m = msgs.next().await.expect("channel closed early");
            h = checksum(h, &m.data);
            n += 1;
        }
        h
    };
    let writer = async {
        for i in 0..count {
            tx.send(message(i)).await.unwrap();
        }
    };
    let (got, ()) = futures::join!(reader, writer);
    assert_eq!(got, expected, "webrtc-streams: bytes differ");
    (t.elapsed().as_secs_f64(), (cpu_time() - cpu).as_secs_f64())
}

async fn anchor_transfer(
    tx: &std::sync::Arc<dyn webrtc::data_channel::DataChannel>,
    rx: &std::sync::Arc<dyn webrtc::data_channel::DataChannel>,
    count: u64,
) -> (f64, f64) {
    let expected = (0..count).fold(CHECKSUM_SEED, |h, i| checksum(h, &message(i)));
    let (t, cpu) = (Instant::now(), cpu_time());
    let reader = async {
        let (mut n, mut h) = (0u64, CHECKSUM_SEED);
        while n < count {
            let m = anchor::next_message(rx)
                .await
                .expect("channel closed early");
            h = checksum(h, &m.data);
            n += 1;
        }
        h
    };
    let writer = async {
        for i in 0..count {
            tx.send(bytes::BytesMut::from(&message(i)[..]))
                .await
                .unwrap();
        }
    };
    let (got, ()) = futures::join!(reader, writer);
    assert_eq!(got, expected, "webrtc 0.21.1: bytes differ");
    (t.elapsed().as_secs_f64(), (cpu_time() - cpu).as_secs_f64())
}

fn main() {
    let pairs = env_usize("PAIRS", 10);
    let mib = env_usize("MIB", 32);
    let reps = env_usize("REPS", 3);
    let count = (mib * 1024 * 1024 / MESSAGE) as u64;
    let turn = Coturn::start(CoturnConfig {
        listen_ip: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("coturn: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm up both.
        let (a, b, _, _) = ours_relay_pair(&turn).await;
        let _ = (a.close().await, b.close().await);
        let (a, b, _, _) = anchor_relay_pair(&turn).await;
        let _ = (a.pc.close().await, b.pc.close().await);

        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..pairs {
            let t = Instant::now();
            let (a, b, _, _) = ours_relay_pair(&turn).await;
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            let _ = (a.close().await, b.close().await);
            let t = Instant::now();
            let (a, b, _, _) = anchor_relay_pair(&turn).await;
            theirs.push(t.elapsed().as_secs_f64() * 1e3);
            let _ = (a.pc.close().await, b.pc.close().await);
        }
        let (om, omin, omax) = stats(ours);
        let (tm, tmin, tmax) = stats(theirs);
        println!("relay setup: build -> channel open on both sides through coturn (relay-only), {pairs} pairs each");
        println!("{:<16} {:>10} {:>10} {:>10}", "library", "median ms", "min ms", "max ms");
        println!("{:<16} {om:>10.2} {omin:>10.2} {omax:>10.2}", "webrtc-streams");
        println!("{:<16} {tm:>10.2} {tmin:>10.2} {tmax:>10.2}", "webrtc 0.21.1");
        println!("ratio (ours / webrtc 0.21.1, median): {:.3}  (target <= 0.8)", om / tm);

        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            eprintln!("transfer through the relay: webrtc-streams");
            let (a, b, tx, rx) = ours_relay_pair(&turn).await;
            let (s, c) = ours_transfer(&tx, &rx, count).await;
            ours.push(mib as f64 * 8.0 * 1.048_576 / s);
            ours_cpu.push(c / (mib as f64 / 1024.0));
            let _ = (a.close().await, b.close().await);
            eprintln!("transfer through the relay: webrtc 0.21.1");
            let (a, b, tx, rx) = anchor_relay_pair(&turn).await;
            let (s, c) = anchor_transfer(&tx, &rx, count).await;
            theirs.push(mib as f64 * 8.0 * 1.048_576 / s);
            theirs_cpu.push(c / (mib as f64 / 1024.0));
            let _ = (a.pc.close().await, b.pc.close().await);
        }
        let ((om, _, _), (tm, _, _)) = (stats(ours), stats(theirs));
        let ((oc, _, _), (tc, _, _)) = (stats(ours_cpu), stats(theirs_cpu));
        println!(
            "relay throughput: {mib} MiB in 64 KiB messages through coturn, median of {reps} \
             (CPU: this process, not coturn)"
        );
        println!("{:<16} {:>12} {:>14}", "library", "Mbit/s", "CPU s / GiB");
        println!("{:<16} {om:>12.0} {oc:>14.2}", "webrtc-streams");
        println!("{:<16} {tm:>12.0} {tc:>14.2}", "webrtc 0.21.1");
        println!("ratio: {:.2}x rate, {:.2} CPU", om / tm, oc / tc);
    });
}
