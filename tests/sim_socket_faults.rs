//! What the operating system reports on a socket, injected on the simulated network: failed
//! sends (`ENOBUFS`-like) lose their datagrams and are counted, and the reliable channel
//! still delivers everything; ICMP errors on receive are counted and change nothing; a socket
//! whose every receive fails is given up after a few tries instead of spinning the driver,
//! and the connection then fails through ICE on virtual time.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{io::ErrorKind, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    DataChannel,
    rtc::peer_connection::state::RTCPeerConnectionState,
    runtime::sim::{LinkConfig, SimHandle, SimRuntime},
};

const LIMIT: Duration = Duration::from_secs(60);

/// `n` numbered 1 KiB messages from `tx`, all received in order by `rx`.
async fn transfer(sim: &SimHandle, tx: &DataChannel, rx: &DataChannel, n: u32) {
    let mut msgs = rx.messages();
    let send = async {
        for i in 0..n {
            let mut m = vec![(i % 251) as u8; 1024];
            m[..4].copy_from_slice(&i.to_be_bytes());
            tx.send(Bytes::from(m)).await.expect("send");
        }
    };
    let receive = async {
        for i in 0..n {
            let m = msgs.next().await.expect("messages");
            assert_eq!(&m.data[..4], &i.to_be_bytes(), "message {i} out of order");
        }
    };
    within(sim, "transfer", LIMIT, async {
        futures::join!(send, receive)
    })
    .await;
}

#[test]
fn failed_sends_are_counted_and_nothing_is_lost() {
    init_log();
    let sim = SimRuntime::new(71);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(5)));
    let h = sim.handle().clone();
    sim.block_on(async move {
        let (a, b, tx, rx) = pair_with_channel(&h, "faults", Default::default(), LIMIT).await;
        let a_addr = a.local_addrs()[0];
        assert!(h.fail_sends(a_addr, ErrorKind::OutOfMemory, Some(20)));
        transfer(&h, &tx, &rx, 300).await;
        let stats = a.socket_stats();
        assert_eq!(stats.send_errors, 20, "{stats:?}");
        assert_eq!(stats.failed_sockets, 0, "{stats:?}");
        drop((a, b));
    });
}

#[test]
fn icmp_errors_on_receive_are_counted_and_change_nothing() {
    init_log();
    let sim = SimRuntime::new(72);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(5)));
    let h = sim.handle().clone();
    sim.block_on(async move {
        let (a, b, tx, rx) = pair_with_channel(&h, "icmp", Default::default(), LIMIT).await;
        let b_addr = b.local_addrs()[0];
        assert!(h.fail_receives(b_addr, ErrorKind::ConnectionRefused, Some(50)));
        transfer(&h, &tx, &rx, 100).await;
        let stats = b.socket_stats();
        assert_eq!(stats.receive_errors, 50, "{stats:?}");
        assert_eq!(stats.failed_sockets, 0, "{stats:?}");
        assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);
        drop((a, b));
    });
}

#[test]
fn a_socket_that_always_fails_is_given_up_without_spinning() {
    init_log();
    let sim = SimRuntime::new(73);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(5)));
    let h = sim.handle().clone();
    sim.block_on(async move {
        let (a, b, tx, rx) = pair_with_channel(&h, "broken", Default::default(), LIMIT).await;
        transfer(&h, &tx, &rx, 10).await;
        let mut states = b.connection_states();
        assert!(h.fail_receives(b.local_addrs()[0], ErrorKind::Other, None));
        // A driver spinning on the failing socket would keep the executor busy at one
        // instant, and virtual time would never reach the end of this sleep.
        h.sleep(Duration::from_secs(1)).await;
        let stats = b.socket_stats();
        assert_eq!(stats.failed_sockets, 1, "{stats:?}");
        assert!(stats.receive_errors >= 16, "{stats:?}");
        // Nothing reaches b any more: ICE consent runs out and the connection fails.
        within(&h, "b fails", LIMIT, async {
            while let Some(s) = states.next().await {
                if s == RTCPeerConnectionState::Failed {
                    return;
                }
            }
            panic!("state stream ended before Failed");
        })
        .await;
        // Given up means not read again: the count stays where it was.
        assert_eq!(b.socket_stats().receive_errors, stats.receive_errors);
        drop((a, b));
    });
}
