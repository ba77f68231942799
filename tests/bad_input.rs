//! Bad input gets a clear, typed error, and the connection keeps working afterwards.

mod common;

use std::{
    net::{SocketAddr, UdpSocket as StdUdpSocket},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::{
    CloseReason, DataChannel, Error, PeerConnection,
    rtc::{
        data_channel::RTCDataChannelState,
        peer_connection::{
            sdp::RTCSessionDescription,
            state::{RTCPeerConnectionState, RTCSignalingState},
            transport::RTCIceCandidateInit,
        },
    },
};

/// A session description with the given type and unparsable SDP text, built without the
/// validating constructors.
fn garbage_description(sdp_type: &str) -> RTCSessionDescription {
    serde_json::from_value(serde_json::json!({ "type": sdp_type, "sdp": "garbage" }))
        .expect("deserialize description")
}

/// Round trips in both directions on a pair's channel.
async fn both_ways(dc_a: &DataChannel, dc_b: &DataChannel) {
    round_trip(dc_a, dc_b, b"a to b").await;
    round_trip(dc_b, dc_a, b"b to a").await;
}

/// The `a=mid:` of the first media section of `desc`.
fn first_mid(desc: &RTCSessionDescription) -> String {
    desc.sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .expect("description has a mid")
        .to_owned()
}

/// A well-formed host candidate line for `addr`.
fn host_candidate(addr: SocketAddr) -> String {
    format!(
        "candidate:1 1 udp 2130706431 {} {} typ host",
        addr.ip(),
        addr.port()
    )
}

/// Garbage SDP is rejected with `InvalidSessionDescription`, and the same connection then
/// negotiates normally (as answerer and as offerer) and carries messages.
#[tokio::test]
async fn malformed_sdp_is_rejected_and_connection_still_negotiates() {
    init_log();
    let a = loopback_peer().await;
    let b = loopback_peer().await;

    // b rejects a garbage offer while stable.
    let r = within(
        "garbage offer",
        b.set_remote_description(garbage_description("offer")),
    )
    .await;
    assert!(
        matches!(r, Err(Error::InvalidSessionDescription(_))),
        "garbage offer: {r:?}"
    );
    assert!(b.remote_description().await.unwrap().is_none());

    let mut incoming = b.data_channels();
    let dc_a = a
        .create_data_channel("chat", Default::default())
        .await
        .unwrap();

    // a rejects a garbage answer while it has a local offer, and keeps waiting for the real one.
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    within("a gathering", a.gathering_complete()).await.unwrap();
    let r = within(
        "garbage answer",
        a.set_remote_description(garbage_description("answer")),
    )
    .await;
    assert!(
        matches!(r, Err(Error::InvalidSessionDescription(_))),
        "garbage answer: {r:?}"
    );
    assert!(a.remote_description().await.unwrap().is_none());

    let offer = a.local_description().await.unwrap().expect("local offer");
    b.set_remote_description(offer).await.expect("srd offer");
    let answer = b.create_answer().await.expect("answer");
    b.set_local_description(answer).await.expect("sld answer");
    within("b gathering", b.gathering_complete()).await.unwrap();
    let answer = b.local_description().await.unwrap().expect("local answer");
    a.set_remote_description(answer).await.expect("srd answer");

    within("a connected", connected(&a)).await;
    within("b connected", connected(&b)).await;
    let dc_b = within("remote channel", incoming.next())
        .await
        .expect("data channel stream ended");
    within("open a", dc_a.opened()).await.unwrap();
    within("open b", dc_b.opened()).await.unwrap();
    both_ways(&dc_a, &dc_b).await;

    // Garbage while connected (a broken renegotiation) is rejected the same way and disturbs
    // nothing.
    for (pc, sdp_type) in [(&a, "offer"), (&b, "offer"), (&a, "answer")] {
        let r = within(
            "garbage",
            pc.set_remote_description(garbage_description(sdp_type)),
        )
        .await;
        assert!(
            matches!(r, Err(Error::InvalidSessionDescription(_))),
            "garbage {sdp_type} while connected: {r:?}"
        );
        assert_eq!(pc.signaling_state(), RTCSignalingState::Stable);
    }
    assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
    both_ways(&dc_a, &dc_b).await;

    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Candidates naming an unknown media section get `UnknownMediaSection`, malformed ones get
/// `InvalidCandidate`, and the connection keeps carrying messages.
#[tokio::test]
async fn bad_candidates_are_rejected_and_connection_keeps_working() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("chat", Default::default()).await;
    let remote = a
        .remote_description()
        .await
        .unwrap()
        .expect("remote description");
    let mid = first_mid(&remote);
    let valid = host_candidate(b.local_addrs()[0]);

    let r = a
        .add_ice_candidate(RTCIceCandidateInit {
            candidate: valid.clone(),
            sdp_mid: Some("nope".to_owned()),
            ..Default::default()
        })
        .await;
    match r {
        Err(Error::UnknownMediaSection { mid, mline_index }) => {
            assert_eq!(mid.as_deref(), Some("nope"));
            assert_eq!(mline_index, None);
        }
        other => panic!("unknown mid: {other:?}"),
    }

    let r = a
        .add_ice_candidate(RTCIceCandidateInit {
            candidate: valid.clone(),
            sdp_mid: None,
            sdp_mline_index: Some(42),
            ..Default::default()
        })
        .await;
    match r {
        Err(Error::UnknownMediaSection { mid, mline_index }) => {
            assert_eq!(mid, None);
            assert_eq!(mline_index, Some(42));
        }
        other => panic!("unknown m-line index: {other:?}"),
    }

    let r = a
        .add_ice_candidate(RTCIceCandidateInit {
            candidate: "candidate:garbage".to_owned(),
            sdp_mid: Some(mid.clone()),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(r, Err(Error::InvalidCandidate(_))),
        "malformed candidate: {r:?}"
    );

    // Control: the same well-formed candidate (the peer's real address) with the right mid is
    // accepted, so the errors above are about the media section, not the candidate.
    a.add_ice_candidate(RTCIceCandidateInit {
        candidate: valid,
        sdp_mid: Some(mid),
        sdp_mline_index: Some(0),
        ..Default::default()
    })
    .await
    .expect("valid candidate with the right mid");

    assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
    both_ways(&dc_a, &dc_b).await;

    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Sending on a closed channel fails with `DataChannelClosed` while other channels keep
/// working; sending after the connection is closed fails without hanging.
#[tokio::test]
async fn send_on_closed_channel_or_connection_fails_cleanly() {
    init_log();
    // The remote end of the closed channel is covered in close_drop.rs.
    let (a, b, dc_a, _dc_b) = pair_with_channel("first", Default::default()).await;
    let mut incoming = b.data_channels();
    let other_a = a
        .create_data_channel("second", Default::default())
        .await
        .unwrap();
    let other_b = within("second arrives", incoming.next())
        .await
        .expect("data channel stream ended");
    within("second open", other_a.opened()).await.unwrap();
    within("second open remote", other_b.opened())
        .await
        .unwrap();

    within("close first", dc_a.close()).await.unwrap();
    let r = within("send on closed", dc_a.send(Bytes::from_static(b"x"))).await;
    assert!(matches!(r, Err(Error::DataChannelClosed)), "send: {r:?}");
    let r = within("send_text on closed", dc_a.send_text("x")).await;
    assert!(
        matches!(r, Err(Error::DataChannelClosed)),
        "send_text: {r:?}"
    );
    // Closing again is fine.
    within("close first again", dc_a.close()).await.unwrap();

    both_ways(&other_a, &other_b).await;

    within("close pc", a.close()).await.unwrap();
    for dc in [&other_a, &dc_a] {
        let r = within("send after pc close", dc.send(Bytes::from_static(b"x"))).await;
        assert!(
            matches!(r, Err(Error::DataChannelClosed | Error::Closed(_))),
            "send after pc close: {r:?}"
        );
        assert_eq!(dc.ready_state(), RTCDataChannelState::Closed);
    }
    let r = within(
        "create channel after close",
        a.create_data_channel("late", Default::default()),
    )
    .await;
    assert!(
        matches!(r, Err(Error::Closed(CloseReason::Local))),
        "create after close: {r:?}"
    );
    b.close().await.unwrap();
}

/// A message larger than the negotiated maximum gets `MessageTooLarge`; one of exactly the
/// maximum and a normal one still go through.
#[tokio::test]
async fn oversized_message_is_rejected_and_channel_keeps_working() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("big", Default::default()).await;
    let max = dc_a.max_message_size().expect("max message size once open");
    assert!(max > 0);

    let r = within("too large", dc_a.send(Bytes::from(vec![7u8; max + 1]))).await;
    match r {
        Err(Error::MessageTooLarge { size, max: m }) => {
            assert_eq!(size, max + 1);
            assert_eq!(m, max);
        }
        other => panic!("oversized send: {other:?}"),
    }
    let r = within("too large text", dc_a.send_text("x".repeat(max + 1))).await;
    assert!(
        matches!(r, Err(Error::MessageTooLarge { .. })),
        "oversized text: {r:?}"
    );
    assert_eq!(dc_a.buffered_amount(), 0, "a failed send changes nothing");

    // Exactly the maximum is allowed and arrives intact.
    let mut msgs_b = dc_b.messages();
    within("max size", dc_a.send(Bytes::from(vec![9u8; max])))
        .await
        .expect("send max-size message");
    let m = within("max size arrives", msgs_b.next()).await.unwrap();
    assert_eq!(m.data.len(), max);
    assert!(m.data.iter().all(|&x| x == 9));
    drop(msgs_b);

    both_ways(&dc_a, &dc_b).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Deterministic xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// One junk datagram: random size and content, with the first byte spread over every
/// demultiplexing range of RFC 7983, and now and then a truncated STUN header.
fn junk_datagram(rng: &mut XorShift, i: usize) -> Vec<u8> {
    let len = rng.below(1500) as usize;
    let mut buf = vec![0u8; len];
    rng.fill(&mut buf);
    if i % 10 == 9 {
        // A STUN header (type, length, magic cookie, transaction id) cut off somewhere.
        let mut stun = vec![0u8; 20 + rng.below(60) as usize];
        rng.fill(&mut stun);
        let typ: u16 = [0x0001, 0x0101, 0x0111, 0x0003][rng.below(4) as usize];
        stun[..2].copy_from_slice(&typ.to_be_bytes());
        let claimed = (rng.below(200) as u16) * 4;
        stun[2..4].copy_from_slice(&claimed.to_be_bytes());
        stun[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        stun.truncate(rng.below(stun.len() as u64 + 1) as usize);
        return stun;
    }
    if let Some(first) = buf.first_mut() {
        *first = match i % 8 {
            0 => rng.below(4) as u8,            // STUN
            1 | 2 => 20 + rng.below(44) as u8,  // DTLS
            3 => 64 + rng.below(16) as u8,      // TURN channel
            4 | 5 => 128 + rng.below(64) as u8, // RTP/RTCP
            6 => 4 + rng.below(16) as u8,       // unassigned
            _ => 192 + rng.below(64) as u8,     // unassigned
        };
    }
    buf
}

/// Ten thousand datagrams of random bytes to each peer neither panic the driver nor disturb
/// the connection: it stays connected and echoes messages throughout and afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_do_not_disturb_the_connection() {
    init_log();
    const DATAGRAMS: usize = 10_000;
    let (a, b, dc_a, dc_b) = pair_with_channel("echo", Default::default()).await;
    within("b connected", connected(&b)).await;
    let targets = [a.local_addrs()[0], b.local_addrs()[0]];

    // b echoes everything back.
    let echo = {
        let dc_b = dc_b.clone();
        tokio::spawn(async move {
            let mut msgs = dc_b.messages();
            while let Some(m) = msgs.next().await {
                if dc_b.send(m.data).await.is_err() {
                    break;
                }
            }
        })
    };

    // The flood, from a socket the peers have never heard of.
    let flood = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for i in 0..DATAGRAMS {
            for (k, target) in targets.iter().enumerate() {
                let d = junk_datagram(&mut rng, i * 2 + k);
                // A full socket buffer may refuse some; the content is what matters.
                let _ = sock.send_to(&d, target).await;
            }
            if i % 64 == 63 {
                tokio::task::yield_now().await;
            }
        }
    });

    // Echo while the flood runs.
    let mut echoes = dc_a.messages();
    let mut sent = 0u32;
    while !flood.is_finished() || sent < 5 {
        sent += 1;
        let payload = Bytes::from(format!("ping {sent}"));
        within("echo send", dc_a.send(payload.clone()))
            .await
            .expect("send during flood");
        let m = within("echo during flood", echoes.next())
            .await
            .expect("echo stream ended");
        assert_eq!(m.data, payload);
    }
    within("flood done", flood).await.expect("flood task");

    assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);
    for i in 0..20 {
        let payload = Bytes::from(format!("after {i}"));
        within("echo send", dc_a.send(payload.clone()))
            .await
            .expect("send after flood");
        let m = within("echo after flood", echoes.next())
            .await
            .expect("echo stream ended");
        assert_eq!(m.data, payload);
    }
    assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);

    a.close().await.unwrap();
    b.close().await.unwrap();
    within("echo task ends", echo).await.expect("echo task");
}

/// A bind address that cannot be bound gives `Error::Io` (no panic), for an address this
/// machine does not have and for a port already in use.
#[tokio::test]
async fn unbindable_address_is_an_io_error() {
    init_log();
    let r = within(
        "build on TEST-NET",
        PeerConnection::builder()
            .bind(["192.0.2.123:0".parse().unwrap()])
            .build(),
    )
    .await;
    assert!(matches!(r, Err(Error::Io(_))), "TEST-NET address: {r:?}");

    let taken = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let r = within(
        "build on a port in use",
        PeerConnection::builder().bind([addr]).build(),
    )
    .await;
    match r {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("port in use: {other:?}"),
    }

    // One bad address among good ones fails the whole build and leaks nothing: the good
    // address can be bound again right away.
    let free = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let good = free.local_addr().unwrap();
    drop(free);
    let r = within(
        "build with one bad address",
        PeerConnection::builder().bind([good, addr]).build(),
    )
    .await;
    assert!(matches!(r, Err(Error::Io(_))), "mixed addresses: {r:?}");
    within("good port released", async {
        while StdUdpSocket::bind(good).is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(taken);
}
