//! Hostile datagrams against a connected pair: forged DTLS handshake fragments, counter
//! overflows, RTP/RTCP floods with fresh SSRCs and DTLS from strangers before ICE selects a
//! pair — from addresses of their own and with the peer's address forged. The victim's memory
//! must not grow, its echo traffic must stay intact, and the inbound filter counts what it
//! refused (`PeerConnection::filter_stats`).
#![cfg(feature = "runtime-sim")]

#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/sim.rs"]
mod sim_common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use alloc::{live_bytes, mib};
use bytes::Bytes;
use futures::StreamExt;
use hostile::*;
use sim_common::*;
use webrtc_streams::{
    DataChannel, PeerConnection,
    rtc::peer_connection::state::RTCPeerConnectionState,
    runtime::sim::{LinkConfig, SimHandle, SimRuntime},
};

const LIMIT: Duration = Duration::from_secs(60);
/// A host of the attacker's own.
const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66)), 40000);
/// What the victim's heap may grow by under attack (rounding, counters, one-off buffers).
const MEMORY_SLACK: isize = 2 * 1024 * 1024;

/// A connected pair; the answerer echoes every message on its channel.
struct Victim {
    a: PeerConnection,
    b: PeerConnection,
    dc: DataChannel,
    /// The victim's (answerer's) socket, and its peer's.
    victim: SocketAddr,
    peer: SocketAddr,
}

async fn echo_pair(sim: &SimHandle) -> Victim {
    let (a, b, dc_a, dc_b) = pair_with_channel(sim, "echo", Default::default(), LIMIT).await;
    let echo = dc_b.clone();
    drop(sim.spawn(async move {
        let mut rx = echo.messages();
        while let Some(m) = rx.next().await {
            if echo.send(m.data).await.is_err() {
                break;
            }
        }
    }));
    let victim = b.local_addrs()[0];
    let peer = a.local_addrs()[0];
    Victim {
        a,
        b,
        dc: dc_a,
        victim,
        peer,
    }
}

/// Sends `n` numbered messages through the echo and checks every one comes back, in order.
async fn echo_intact(sim: &SimHandle, dc: &DataChannel, n: u32) {
    let mut rx = dc.messages();
    within(sim, "echo", LIMIT, async {
        for i in 0..n {
            dc.send(Bytes::from(format!("ping {i}"))).await.unwrap();
            let m = rx.next().await.expect("echo stream ended");
            assert_eq!(m.data, format!("ping {i}").as_bytes());
        }
    })
    .await;
}

/// Runs `attack` against a connected echo pair; asserts the echo works before and after,
/// the connection stays up, and the victim's heap grows by less than [`MEMORY_SLACK`].
/// Returns the victim's filter counters.
fn under_attack<F, Fut>(seed: u64, attack: F) -> webrtc_streams::FilterStats
where
    F: FnOnce(SimHandle, SocketAddr, SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    init_log();
    let sim = SimRuntime::new(seed);
    let h = sim.handle().clone();
    sim.block_on(async {
        let v = echo_pair(&h).await;
        echo_intact(&h, &v.dc, 50).await;
        let before = live_bytes();
        attack(h.clone(), v.victim, v.peer).await;
        h.sleep(Duration::from_secs(1)).await;
        echo_intact(&h, &v.dc, 50).await;
        let grown = live_bytes() - before;
        eprintln!("victim heap grew by {:.2} MiB under attack", mib(grown));
        assert!(
            grown < MEMORY_SLACK,
            "victim heap grew by {:.1} MiB",
            mib(grown)
        );
        assert_eq!(v.b.connection_state(), RTCPeerConnectionState::Connected);
        let stats = v.b.filter_stats();
        eprintln!("{stats:?}");
        v.a.close().await.unwrap();
        v.b.close().await.unwrap();
        stats
    })
}

/// 5,000 epoch-0 handshake records of 100 zero-length fragments each, half from a stranger,
/// half with the peer's address forged. Before the fix they cost the victim ~55 MiB and
/// slowed every later record down.
#[test]
fn forged_handshake_fragments_are_refused() {
    let stats = under_attack(1, |sim, victim, peer| async move {
        for from in [STRANGER, peer] {
            let forged =
                (0..2_500u64).map(|i| empty_fragments(1000 + i, 1000 + (i as u16 % 7), 100));
            blast(&sim, from, victim, forged, 200).await;
        }
    });
    assert!(stats.stranger >= 2_500, "{stats:?}");
    assert!(stats.dtls >= 2_500, "{stats:?}");
}

/// Forged fragments of sequence numbers a handshake does use, after the handshake: only
/// byte-for-byte repeats of the peer's real messages may pass, so these do not.
#[test]
fn forged_fragments_with_plausible_sequence_numbers_are_refused() {
    let stats = under_attack(2, |sim, victim, peer| async move {
        let forged = (0..2_000u64).map(|i| {
            let body: Vec<u8> = (0..20u16)
                .flat_map(|j| handshake_fragment(11, 64, (j % 8) + 1, 0, &[i as u8; 64]))
                .collect();
            dtls_record(0, 5000 + i, HANDSHAKE, &body)
        });
        blast(&sim, peer, victim, forged, 200).await;
    });
    assert!(stats.dtls >= 2_000, "{stats:?}");
}

/// 65,536 complete empty handshake messages in sequence: before the fix, rtc-dtls's 16-bit
/// message counter overflowed (a panic in builds with overflow checks, such as this test's).
#[test]
fn handshake_message_counter_cannot_be_overflowed() {
    let stats = under_attack(3, |sim, victim, peer| async move {
        let forged = (0..656u64).map(|i| empty_fragments(9000 + i, (i * 100) as u16, 100));
        blast(&sim, peer, victim, forged, 50).await;
    });
    assert!(stats.dtls >= 656, "{stats:?}");
}

/// RTP and RTCP with 20,000 fresh SSRCs each, from a stranger and from the forged peer
/// address. Before the fix every SSRC cost ~200 bytes of SRTP state until the connection
/// closed.
#[test]
fn rtp_and_rtcp_floods_keep_no_state() {
    let stats = under_attack(4, |sim, victim, peer| async move {
        for from in [STRANGER, peer] {
            let rtp = (0..10_000u32).map(|i| rtp(0x1000_0000 + i, i as u16));
            blast(&sim, from, victim, rtp, 500).await;
            let rtcp = (0..10_000u32).map(|i| rtcp_sender_report(0x2000_0000 + i));
            blast(&sim, from, victim, rtcp, 500).await;
        }
    });
    assert_eq!(stats.media, 40_000, "{stats:?}");
}

/// Unauthenticated Binding requests and responses, and non-STUN noise, after the handshake.
#[test]
fn unauthenticated_stun_and_noise_are_refused() {
    let stats = under_attack(5, |sim, victim, peer| async move {
        for from in [STRANGER, peer] {
            let requests = (0..2_000u32).map(|i| role_flip_request(i, "guess:guess"));
            blast(&sim, from, victim, requests, 200).await;
            let responses = (0..500u32).map(|i| {
                stun(
                    BINDING_SUCCESS,
                    [i as u8; 12],
                    &[(MESSAGE_INTEGRITY, vec![1; 20])],
                )
            });
            blast(&sim, from, victim, responses, 200).await;
            let noise = (0..500u32).map(|i| vec![(64 + i % 64) as u8; 40 + (i as usize % 100)]);
            blast(&sim, from, victim, noise, 200).await;
        }
    });
    assert_eq!(stats.unauthenticated_stun, 5_000, "{stats:?}");
    assert_eq!(stats.malformed, 1_000, "{stats:?}");
}

/// While the pair negotiates, a stranger sends DTLS ClientHello-like records to the answerer.
/// The core must see none of them (before the fix the first 16 were kept and replayed into
/// DTLS once ICE connected), and the connection comes up exactly as fast as without them.
#[test]
fn strangers_dtls_before_selection_is_not_kept() {
    fn connect_time(attack: bool) -> (Duration, u64) {
        init_log();
        let sim = SimRuntime::new(6);
        let h = sim.handle().clone();
        sim.block_on(async {
            let a = peer(&h, HOST_A).await;
            let b = peer(&h, HOST_B).await;
            let _dc = a
                .create_data_channel("x", Default::default())
                .await
                .unwrap();
            let victim = b.local_addrs()[0];
            if attack {
                let h2 = h.clone();
                drop(h.spawn(async move {
                    let hello = (0..2_000u64).map(|i| {
                        let body = handshake_fragment(1, 40, 0, 0, &[i as u8; 40]);
                        dtls_record(0, i, HANDSHAKE, &body)
                    });
                    blast(&h2, STRANGER, victim, hello, 2).await;
                }));
            }
            let start = h.elapsed();
            negotiate(&a, &b).await;
            connected(&h, &a, LIMIT).await;
            connected(&h, &b, LIMIT).await;
            let took = h.elapsed() - start;
            let stranger = b.filter_stats().stranger;
            a.close().await.unwrap();
            b.close().await.unwrap();
            (took, stranger)
        })
    }
    let (calm, _) = connect_time(false);
    let (attacked, refused) = connect_time(true);
    assert!(refused > 0, "the attack never reached the victim");
    assert_eq!(
        attacked, calm,
        "the stranger's records delayed the connection"
    );
}

/// One change-cipher-spec record of epoch 1 with the peer's address forged: rtc-dtls passes
/// such records through its "decryption" unauthenticated and moved the peer's epoch to 2, after
/// which it discarded every genuine record: one datagram killed the connection. (Found by
/// `sim_hostile_fuzz`.)
#[test]
fn forged_epoch_one_change_cipher_spec_is_refused() {
    let stats = under_attack(7, |sim, victim, peer| async move {
        let ccs = (0..10u64).map(|i| dtls_record(1, 1 << 40 | i, CHANGE_CIPHER_SPEC, &[1]));
        blast(&sim, peer, victim, ccs, 10).await;
    });
    assert_eq!(stats.dtls, 10, "{stats:?}");
}

/// The DTLS server's last flight (change-cipher-spec, Finished) is lost, and from the moment
/// the server has completed, an attacker forging the client's address floods it with forged
/// handshake fragments. The client's genuine repeat of its own last flight must still get
/// through afterwards (forged records never use up the repeat budget, as they would if any
/// well-formed record counted), so the server answers and both sides connect.
#[test]
fn lost_final_flight_is_recovered_under_forged_fragments() {
    init_log();
    let sim = SimRuntime::new(8);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(10)));
    // Every copy of the server's last flight (the only datagrams that start with a
    // change-cipher-spec record) is lost until the attack is over, including those the forged
    // records provoke.
    let losing = Arc::new(AtomicBool::new(true));
    let lose = losing.clone();
    sim.set_drop_filter(move |_, _, datagram| {
        lose.load(Ordering::Relaxed) && datagram.first() == Some(&CHANGE_CIPHER_SPEC)
    });
    let h = sim.handle().clone();
    let refused = sim.block_on(async {
        let a = peer(&h, HOST_A).await;
        let b = peer(&h, HOST_B).await;
        let _dc = a
            .create_data_channel("x", Default::default())
            .await
            .unwrap();
        negotiate(&a, &b).await;
        // The first to report Connected is the DTLS server (it completes on the client's
        // last flight; the client waits for the lost one).
        let up = |pc: &PeerConnection| pc.connection_state() == RTCPeerConnectionState::Connected;
        let (server, client) = within(&h, "server completes", LIMIT, async {
            loop {
                if up(&a) {
                    return (a.clone(), b.clone());
                }
                if up(&b) {
                    return (b.clone(), a.clone());
                }
                h.sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(!up(&client), "the final flight was not lost");
        let (victim, spoofed) = (server.local_addrs()[0], client.local_addrs()[0]);
        let forged = (0..3_000u64).map(|i| {
            if i % 2 == 0 {
                empty_fragments(100 + i, (i % 30) as u16, 30)
            } else {
                let f = handshake_fragment(11, 500, (i % 6) as u16, 0, &[i as u8; 300]);
                dtls_record(0, 100 + i, HANDSHAKE, &f)
            }
        });
        blast(&h, spoofed, victim, forged, 20).await;
        losing.store(false, Ordering::Relaxed);
        connected(&h, &client, LIMIT).await;
        let refused = server.filter_stats().dtls;
        a.close().await.unwrap();
        b.close().await.unwrap();
        refused
    });
    assert!(refused >= 3_000, "{refused} forged datagrams refused");
}
