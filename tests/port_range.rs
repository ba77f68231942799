//! `PeerConnectionBuilder::port_range`: sockets bind inside the range, connections work on
//! them, and a range with no free port is a typed error.

mod common;

use std::net::{SocketAddr, UdpSocket};

use common::{init_log, negotiate, round_trip, within};
use futures::StreamExt;
use webrtc_streams::{Error, PeerConnection};

/// `n` consecutive UDP ports on 127.0.0.1 that are free right now.
fn free_ports(n: u16) -> std::ops::RangeInclusive<u16> {
    for _ in 0..200 {
        let first = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("probe")
            .port();
        let Some(last) = first.checked_add(n - 1) else {
            continue;
        };
        let all_free = (first..=last).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return first..=last;
        }
    }
    panic!("no {n} consecutive free UDP ports");
}

async fn peer_in(ports: std::ops::RangeInclusive<u16>) -> Result<PeerConnection, Error> {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse::<SocketAddr>().unwrap()])
        .port_range(ports)
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_bind_inside_the_range_and_connect() {
    init_log();
    let ports = free_ports(3);
    let a = peer_in(ports.clone()).await.expect("a");
    let b = peer_in(ports.clone()).await.expect("b");
    for pc in [&a, &b] {
        let port = pc.local_addrs()[0].port();
        assert!(ports.contains(&port), "port {port} outside {ports:?}");
    }
    assert_ne!(a.local_addrs()[0], b.local_addrs()[0]);
    let mut incoming = b.data_channels();
    let tx = a
        .create_data_channel("range", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    let rx = within("remote channel", incoming.next()).await.unwrap();
    within("open", tx.opened()).await.unwrap();
    round_trip(&tx, &rx, b"through the range").await;

    // The third port is the last free one; a fourth connection finds none.
    let c = peer_in(ports.clone()).await.expect("c");
    assert!(ports.contains(&c.local_addrs()[0].port()));
    match peer_in(ports.clone()).await {
        Err(Error::PortRangeExhausted { start, end }) => {
            assert_eq!((start, end), (*ports.start(), *ports.end()));
        }
        other => panic!("expected PortRangeExhausted, got {other:?}"),
    }
    // Closing one frees its port for the next.
    let freed = c.local_addrs()[0];
    c.close().await.unwrap();
    let d = peer_in(ports.clone()).await.expect("d after a close");
    assert_eq!(d.local_addrs()[0], freed);
}

#[tokio::test]
async fn an_empty_range_is_a_typed_error() {
    for ports in [0..=0, std::ops::RangeInclusive::new(2, 1)] {
        match peer_in(ports.clone()).await {
            Err(Error::PortRangeExhausted { .. }) => {}
            other => panic!("{ports:?}: expected PortRangeExhausted, got {other:?}"),
        }
    }
}
