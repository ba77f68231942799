//! `UdpMux`: one UDP port serves many connections. Each client reaches its own connection
//! (no cross-talk: every message names its pair and is checked), a connection that closes
//! leaves the others alone, strangers are dropped and counted, and the mux ends with its last
//! connection.

mod common;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::{init_log, negotiate, within};
use futures::{StreamExt, future::join_all};
use webrtc_streams::{DataChannel, PeerConnection, UdpMux};

const CLIENTS: usize = 8;
const MESSAGES: usize = 50;

struct Pair {
    client: PeerConnection,
    server: PeerConnection,
    tx: DataChannel,
    rx: DataChannel,
}

async fn client() -> PeerConnection {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .build()
        .await
        .expect("client")
}

/// A client connected to its own connection on the mux, with a channel open both ways.
async fn pair(mux: &UdpMux, n: usize) -> Pair {
    let client = client().await;
    let server = PeerConnection::builder()
        .udp_mux(mux)
        .build()
        .await
        .expect("server on mux");
    assert_eq!(server.local_addrs(), &mux.local_addrs()[..]);
    let mut incoming = server.data_channels();
    let tx = client
        .create_data_channel(&format!("pair-{n}"), Default::default())
        .await
        .unwrap();
    negotiate(&client, &server).await;
    let rx = within("server channel", incoming.next()).await.unwrap();
    within("open", tx.opened()).await.unwrap();
    assert_eq!(rx.label(), format!("pair-{n}"));
    Pair {
        client,
        server,
        tx,
        rx,
    }
}

/// `MESSAGES` messages each way, each naming its pair: a datagram routed to the wrong
/// connection would fail DTLS there, so a mix-up shows as missing or foreign messages.
async fn exchange(p: &Pair, n: usize, round: usize) {
    let mut at_server = p.rx.messages();
    let mut at_client = p.tx.messages();
    for i in 0..MESSAGES {
        let up = format!("{n}/{round}/up/{i}");
        within("send up", p.tx.send(Bytes::from(up))).await.unwrap();
        let down = format!("{n}/{round}/down/{i}");
        within("send down", p.rx.send(Bytes::from(down)))
            .await
            .unwrap();
    }
    for i in 0..MESSAGES {
        let m = within("receive up", at_server.next()).await.unwrap();
        assert_eq!(m.data, format!("{n}/{round}/up/{i}").as_bytes());
        let m = within("receive down", at_client.next()).await.unwrap();
        assert_eq!(m.data, format!("{n}/{round}/down/{i}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_port() {
    init_log();
    let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap()).expect("mux");
    let port = mux.local_addrs()[0].port();
    let pairs = join_all((0..CLIENTS).map(|n| pair(&mux, n))).await;
    assert_eq!(mux.stats().connections, CLIENTS);

    // Every server connection's selected pair is on the mux port, with its own client.
    for p in &pairs {
        let selected = p.server.selected_candidate_pair().await.unwrap().unwrap();
        assert_eq!(selected.local().port, port, "{selected}");
        assert_eq!(
            selected.remote().port,
            p.client.local_addrs()[0].port(),
            "{selected}"
        );
    }

    join_all(pairs.iter().enumerate().map(|(n, p)| exchange(p, n, 0))).await;

    // Strangers: noise, and a Binding request for a real ufrag without the password.
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target: SocketAddr = mux.local_addrs()[0];
    let before = mux.stats().unrouted;
    stranger.send_to(&[0x16; 100], target).unwrap(); // "DTLS" from nobody
    stranger
        .send_to(&forged_binding_request(&pairs[0].server).await, target)
        .unwrap();
    within("strangers counted", async {
        while mux.stats().unrouted < before + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Half the connections close (the server side closes some, the client side others),
    // the rest go on undisturbed.
    let mut pairs = pairs;
    let rest = pairs.split_off(CLIENTS / 2);
    for (n, p) in pairs.into_iter().enumerate() {
        if n % 2 == 0 {
            p.server.close().await.unwrap();
        } else {
            p.client.close().await.unwrap();
            drop(p.server);
        }
    }
    within("closed connections leave the mux", async {
        while mux.stats().connections != CLIENTS - CLIENTS / 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    join_all(
        rest.iter()
            .enumerate()
            .map(|(n, p)| exchange(p, CLIENTS / 2 + n, 1)),
    )
    .await;
    // A newcomer still finds its way in.
    let late = pair(&mux, 99).await;
    exchange(&late, 99, 2).await;

    drop(rest);
    drop(late);
    within("every connection left", async {
        while mux.stats().connections != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(mux.stats().overflowed, 0);
}

/// A Binding request carrying `pc`'s real ufrag, as anyone who saw its SDP could send, but
/// signed with a wrong password.
async fn forged_binding_request(pc: &PeerConnection) -> Vec<u8> {
    use webrtc_streams::rtc::stun::{
        attributes::ATTR_USERNAME,
        integrity::MessageIntegrity,
        message::{BINDING_REQUEST, Message, TransactionId},
        textattrs::TextAttribute,
    };
    let sdp = pc.local_description().await.unwrap().unwrap().sdp;
    let ufrag = sdp
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_owned();
    let crypto = webrtc_streams::rtc::crypto::default_provider().unwrap();
    let mut m = Message::new();
    m.build(&[
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(TextAttribute::new(ATTR_USERNAME, format!("{ufrag}:evil"))),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
            "not-the-password".into(),
            crypto.crypto(),
        )),
    ])
    .unwrap();
    m.raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_an_io_error_and_a_connection_keeps_the_mux_alive() {
    init_log();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    assert!(matches!(
        UdpMux::bind(addr),
        Err(webrtc_streams::Error::Io(_))
    ));

    let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = PeerConnection::builder()
        .udp_mux(&mux)
        .build()
        .await
        .unwrap();
    let addr = mux.local_addrs()[0];
    drop(mux);
    // The connection still holds the socket: the port stays taken.
    assert!(std::net::UdpSocket::bind(addr).is_err());
    let c = client().await;
    let mut incoming = server.data_channels();
    let tx = c
        .create_data_channel("alive", Default::default())
        .await
        .unwrap();
    negotiate(&c, &server).await;
    let rx = within("channel", incoming.next()).await.unwrap();
    within("open", tx.opened()).await.unwrap();
    common::round_trip(&tx, &rx, b"still here").await;
}

/// Bulk transfers of several connections at once through the one socket: segmented sends
/// from several drivers share it, every byte arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bulk_transfers_through_one_port() {
    init_log();
    const PAIRS: usize = 3;
    const BYTES: usize = 2 * 1024 * 1024;
    const CHUNK: usize = 16 * 1024;
    let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let pairs = join_all((0..PAIRS).map(|n| pair(&mux, n))).await;
    join_all(pairs.iter().enumerate().map(|(n, p)| async move {
        let mut at_client = p.tx.messages();
        let send = async {
            for i in 0..BYTES / CHUNK {
                let chunk: Vec<u8> = (0..CHUNK).map(|j| (n * 31 + i * 7 + j) as u8).collect();
                within("bulk send", p.rx.send(Bytes::from(chunk)))
                    .await
                    .unwrap();
            }
        };
        let receive = async {
            for i in 0..BYTES / CHUNK {
                let m = within("bulk receive", at_client.next()).await.unwrap();
                assert_eq!(m.data.len(), CHUNK);
                assert!(
                    m.data
                        .iter()
                        .enumerate()
                        .all(|(j, b)| *b == (n * 31 + i * 7 + j) as u8),
                    "pair {n} chunk {i} corrupted"
                );
            }
        };
        futures::join!(send, receive);
    }))
    .await;
    assert_eq!(mux.stats().connections, PAIRS);
}

/// `nat_1to1_ips` takes host or srflx and unicast addresses only; the error says which.
#[tokio::test]
async fn a_bad_1to1_mapping_is_a_typed_error() {
    use webrtc_streams::rtc::peer_connection::transport::RTCIceCandidateType;
    let build = |ip: &str, kind| {
        PeerConnection::builder()
            .bind(["127.0.0.1:0".parse().unwrap()])
            .nat_1to1_ips([ip.parse().unwrap()], kind)
            .build()
    };
    for (ip, kind) in [
        ("203.0.113.7", RTCIceCandidateType::Relay),
        ("203.0.113.7", RTCIceCandidateType::Prflx),
        ("0.0.0.0", RTCIceCandidateType::Host),
        ("255.255.255.255", RTCIceCandidateType::Host),
        ("224.0.0.251", RTCIceCandidateType::Srflx),
        ("ff02::1", RTCIceCandidateType::Host),
    ] {
        match build(ip, kind).await {
            Err(webrtc_streams::Error::InvalidNat1To1(why)) => assert!(!why.is_empty()),
            other => panic!("{ip} {kind}: {other:?}"),
        }
    }
    // A public IP of the other family leaves the socket's host candidate as it is.
    let pc = build("2001:db8::7", RTCIceCandidateType::Host)
        .await
        .unwrap();
    assert!(pc.local_addrs()[0].ip().is_loopback());
}

/// ICE-TCP through the mux: every connection's passive candidate is the mux's one TCP
/// listener (same port as UDP); clients that gather only TCP candidates connect to it, each
/// reaching its own connection, and a stranger's TCP connection is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_clients_share_the_mux_listener() {
    use webrtc_streams::rtc::peer_connection::transport::{RTCIceProtocol, RTCIceTcpCandidateType};
    init_log();
    const TCP_CLIENTS: usize = 4;
    let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .with_ice_tcp()
        .expect("TCP listener");
    let port = mux.local_addrs()[0].port();
    let tcp_pair = |n: usize| {
        let mux = mux.clone();
        async move {
            let only_tcp = || {
                PeerConnection::builder()
                    .bind(["127.0.0.1:0".parse().unwrap()])
                    .ice_tcp(true)
                    .ice_udp(false)
            };
            let client = only_tcp().build().await.unwrap();
            let server = PeerConnection::builder()
                .udp_mux(&mux)
                .ice_tcp(true)
                .ice_udp(false)
                .build()
                .await
                .unwrap();
            let mut incoming = server.data_channels();
            let tx = client
                .create_data_channel(&format!("pair-{n}"), Default::default())
                .await
                .unwrap();
            negotiate(&client, &server).await;
            let sdp = server.local_description().await.unwrap().unwrap().sdp;
            assert!(
                sdp.contains(&format!("127.0.0.1 {port} typ host tcptype passive")),
                "{sdp}"
            );
            let rx = within("server channel", incoming.next()).await.unwrap();
            within("open", tx.opened()).await.unwrap();
            Pair {
                client,
                server,
                tx,
                rx,
            }
        }
    };
    // A stranger connects first and sends a frame that is no Binding request for anyone.
    let mut stranger = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::Write;
    stranger.write_all(&[0, 4, 0x16, 0xfe, 0xfd, 0]).unwrap();
    let pairs = join_all((0..TCP_CLIENTS).map(tcp_pair)).await;
    for p in &pairs {
        let selected = p.server.selected_candidate_pair().await.unwrap().unwrap();
        assert_eq!(selected.local().protocol, RTCIceProtocol::Tcp, "{selected}");
        assert_eq!(
            selected.local().tcp_type,
            RTCIceTcpCandidateType::Passive,
            "{selected}"
        );
        assert_eq!(selected.local().port, port, "{selected}");
    }
    join_all(pairs.iter().enumerate().map(|(n, p)| exchange(p, n, 0))).await;
    // The stranger's frame was read and belonged to nobody.
    assert!(mux.stats().unrouted >= 1, "{:?}", mux.stats());
    drop(pairs);
    within("every connection left", async {
        while mux.stats().connections != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
