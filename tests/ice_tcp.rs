//! ICE-TCP (RFC 6544): peers that gather only TCP candidates connect over a TCP candidate
//! pair (active → passive, RFC 4571 framing) and move data over it; a peer with UDP and TCP
//! reaches a TCP-only peer; strangers on the passive port change nothing.

mod common;

use std::io::Write;

use bytes::Bytes;
use common::{init_log, negotiate, within};
use futures::StreamExt;
use webrtc_streams::{
    DataChannel, PeerConnection, rtc::peer_connection::transport::RTCIceProtocol,
};

async fn peer(udp: bool) -> PeerConnection {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .ice_tcp(true)
        .ice_udp(udp)
        .build()
        .await
        .expect("build")
}

async fn channel_pair(a: &PeerConnection, b: &PeerConnection) -> (DataChannel, DataChannel) {
    let mut incoming = b.data_channels();
    let tx = a
        .create_data_channel("tcp", Default::default())
        .await
        .unwrap();
    negotiate(a, b).await;
    let rx = within("remote channel", incoming.next()).await.unwrap();
    within("open", tx.opened()).await.unwrap();
    (tx, rx)
}

/// 1 MiB in 16 KiB messages from `tx` to `rx`, every byte checked, and one reply back.
async fn transfer(tx: &DataChannel, rx: &DataChannel) {
    let mut msgs = rx.messages();
    let send = async {
        for i in 0..64u32 {
            let chunk: Vec<u8> = (0..16 * 1024u32).map(|j| (i * 13 + j) as u8).collect();
            within("send", tx.send(Bytes::from(chunk))).await.unwrap();
        }
    };
    let receive = async {
        for i in 0..64u32 {
            let m = within("receive", msgs.next()).await.unwrap();
            assert_eq!(m.data.len(), 16 * 1024);
            assert!(
                m.data
                    .iter()
                    .enumerate()
                    .all(|(j, b)| *b == (i * 13 + j as u32) as u8),
                "chunk {i} corrupted"
            );
        }
    };
    futures::join!(send, receive);
    let mut back = tx.messages();
    rx.send(Bytes::from_static(b"over tcp")).await.unwrap();
    assert_eq!(
        &within("reply", back.next()).await.unwrap().data[..],
        b"over tcp"
    );
}

async fn assert_tcp_pair(pc: &PeerConnection, who: &str) {
    let pair = pc
        .selected_candidate_pair()
        .await
        .unwrap()
        .expect("selected pair");
    assert_eq!(pair.local().protocol, RTCIceProtocol::Tcp, "{who}: {pair}");
    assert_eq!(pair.remote().protocol, RTCIceProtocol::Tcp, "{who}: {pair}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_peers_connect_over_tcp() {
    init_log();
    let (a, b) = (peer(false).await, peer(false).await);
    let (tx, rx) = channel_pair(&a, &b).await;
    for pc in [&a, &b] {
        let sdp = pc.local_description().await.unwrap().unwrap().sdp;
        assert!(
            sdp.contains(" tcp ") && sdp.contains("tcptype passive"),
            "{sdp}"
        );
        assert!(sdp.contains("tcptype active"), "{sdp}");
        assert!(!sdp.contains(" udp "), "UDP candidate gathered: {sdp}");
    }
    assert_tcp_pair(&a, "a").await;
    assert_tcp_pair(&b, "b").await;
    transfer(&tx, &rx).await;
    transfer(&rx, &tx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_and_tcp_peer_reaches_a_tcp_only_peer() {
    init_log();
    let (a, b) = (peer(true).await, peer(false).await);
    let (tx, rx) = channel_pair(&a, &b).await;
    assert_tcp_pair(&a, "a").await;
    transfer(&tx, &rx).await;
    // And the other way round: the TCP-only side offers.
    let (c, d) = (peer(false).await, peer(true).await);
    let (tx, rx) = channel_pair(&c, &d).await;
    assert_tcp_pair(&d, "d").await;
    transfer(&tx, &rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_passive_port_change_nothing() {
    init_log();
    let (a, b) = (peer(false).await, peer(false).await);
    let (tx, rx) = channel_pair(&a, &b).await;
    let sdp = b.local_description().await.unwrap().unwrap().sdp;
    let passive: std::net::SocketAddr = sdp
        .lines()
        .find(|l| l.contains("tcptype passive"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{}:{}", f[4], f[5]).parse().ok()
        })
        .expect("passive candidate");
    // Garbage, a frame longer than what follows, a zero-length frame, and many connections.
    let mut strangers = Vec::new();
    for i in 0..40u8 {
        let Ok(mut s) = std::net::TcpStream::connect(passive) else {
            continue; // the listener's backlog may refuse some: fine
        };
        let _ = match i % 3 {
            0 => s.write_all(&[0xff; 300]),
            1 => s.write_all(&[0, 0, 0x00, 0x10, 1, 2, 3]),
            _ => s.write_all(&[0x00, 0x40, 0x16, 0xfe, 0xfd]),
        };
        strangers.push(s);
    }
    transfer(&tx, &rx).await;
    // The frames that were whole reached the filter and were refused there.
    let stats = b.filter_stats();
    assert!(stats.stranger + stats.malformed > 0, "{stats:?}");
}
