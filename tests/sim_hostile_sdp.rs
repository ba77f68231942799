//! Hostile input through signaling and from the remote peer: huge descriptions, thousands of
//! media sections, candidates and repeated attributes, candidates at multicast, broadcast or
//! unspecified addresses, a remote that opens thousands of channels. Each case is a typed
//! error or a bounded cost, never a panic; each prints its cost (allocations are counted on
//! the simulation's single thread, wall time is for information only).
#![cfg(feature = "runtime-sim")]

#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/sim.rs"]
mod sim_common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    Error, MAX_SESSION_DESCRIPTION_SIZE, PeerConnection,
    media::RtpCodecKind,
    rtc::{
        data_channel::RTCDataChannelState,
        peer_connection::{
            sdp::{RTCSdpType, RTCSessionDescription},
            state::RTCSignalingState,
            transport::RTCIceCandidateInit,
        },
        rtp_transceiver::RTCRtpTransceiverDirection,
    },
    runtime::sim::{SimHandle, SimRuntime},
};

/// `PeerConnectionBuilder::event_capacity`'s default.
const EVENT_CAPACITY: usize = 1024;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` and prints what it cost: wall time, allocations, bytes allocated, and the
/// growth of live heap memory.
async fn measured<F: std::future::Future>(what: &str, f: F) -> F::Output {
    let (n0, bytes0) = alloc::allocated();
    let live0 = alloc::live_bytes();
    let wall = Instant::now();
    let out = f.await;
    let wall = wall.elapsed();
    let (n1, bytes1) = alloc::allocated();
    println!(
        "{what}: {wall:?} (wall), {} allocations, {:.1} MiB allocated, live {:+.2} MiB",
        n1 - n0,
        alloc::mib((bytes1 - bytes0) as isize),
        alloc::mib(alloc::live_bytes() - live0)
    );
    out
}

/// An offer of a fresh peer with a data channel and an audio section, candidates included.
async fn base_offer(h: &SimHandle) -> (PeerConnection, String) {
    let a = peer(h, HOST_A).await;
    let _dc = a
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    a.add_transceiver(RtpCodecKind::Audio, RTCRtpTransceiverDirection::Recvonly)
        .await
        .unwrap();
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    within(h, "gathering", LIMIT, a.gathering_complete())
        .await
        .unwrap();
    let sdp = a.local_description().await.unwrap().unwrap().sdp;
    (a, sdp)
}

fn offer(sdp: String) -> RTCSessionDescription {
    // `offer()` parses: build the plain value instead, as a signaling server would hand it.
    let mut desc = RTCSessionDescription::default();
    desc.sdp_type = RTCSdpType::Offer;
    desc.sdp = sdp;
    desc
}

/// The connection still works after the hostile input: if `b` took the offer of `a`, it
/// answers and connects to `a`; if it refused it, it negotiates with a fresh peer.
async fn still_works(h: &SimHandle, a: &PeerConnection, b: &PeerConnection) {
    if b.signaling_state() == RTCSignalingState::HaveRemoteOffer {
        let answer = b.create_answer().await.unwrap();
        b.set_local_description(answer).await.unwrap();
        within(h, "gathering", LIMIT, b.gathering_complete())
            .await
            .unwrap();
        a.set_remote_description(b.local_description().await.unwrap().unwrap())
            .await
            .unwrap();
        connected(h, b, LIMIT).await;
        return;
    }
    let c = peer(h, HOST_A).await;
    let _dc = c
        .create_data_channel("after", Default::default())
        .await
        .unwrap();
    negotiate(&c, b).await;
    connected(h, b, LIMIT).await;
    c.close().await.unwrap();
}

fn run(seed: u64, f: impl AsyncFnOnce(&SimHandle)) {
    init_log();
    let sim = SimRuntime::new(seed);
    let h = sim.handle().clone();
    sim.block_on(async move { f(&h).await });
}

#[test]
fn a_huge_description_is_a_typed_error() {
    run(1, async |h| {
        let (a, sdp) = base_offer(h).await;
        let b = peer(h, HOST_B).await;
        let mut huge = sdp.clone();
        while huge.len() < 10 << 20 {
            huge.push_str("a=x-pad:0123456789012345678901234567890123456789012345678901234\r\n");
        }
        let size = huge.len();
        let r = measured(
            "10 MiB remote description",
            b.set_remote_description(offer(huge)),
        )
        .await;
        match r {
            Err(Error::SessionDescriptionTooLarge { size: s, max }) => {
                assert_eq!((s, max), (size, MAX_SESSION_DESCRIPTION_SIZE));
            }
            other => panic!("{other:?}"),
        }
        let r = b
            .set_local_description(offer("v=0\r\n".repeat(MAX_SESSION_DESCRIPTION_SIZE)))
            .await;
        assert!(
            matches!(r, Err(Error::SessionDescriptionTooLarge { .. })),
            "{r:?}"
        );
        let r = b
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: "candidate:".to_owned() + &"1".repeat(10 << 20),
                sdp_mid: Some("0".to_owned()),
                ..Default::default()
            })
            .await;
        assert!(matches!(r, Err(Error::CandidateTooLarge { .. })), "{r:?}");
        still_works(h, &a, &b).await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// `sdp` with its `m=audio` section repeated until there are `n` sections, each with its own
/// mid.
fn with_sections(sdp: &str, n: usize) -> String {
    let start = sdp.find("m=audio").expect("audio section");
    let end = sdp[start + 1..]
        .find("\r\nm=")
        .map_or(sdp.len(), |i| start + 1 + i + 2);
    let section = &sdp[start..end];
    let (head, tail) = sdp.split_at(end);
    let mut out = head.to_owned();
    let mid = section
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .expect("mid");
    for i in 2..n {
        out.push_str(&section.replace(&format!("a=mid:{mid}\r\n"), &format!("a=mid:x{i}\r\n")));
    }
    out.push_str(tail);
    // The BUNDLE group names only the original sections: the copies are unbundled.
    out
}

#[test]
fn thousands_of_media_sections_cost_a_bounded_time() {
    run(2, async |h| {
        let (a, sdp) = base_offer(h).await;
        let b = peer(h, HOST_B).await;
        let many = with_sections(&sdp, 2_000);
        println!("2,000 sections: {} bytes", many.len());
        let r = measured(
            "2,000 media sections",
            b.set_remote_description(offer(many)),
        )
        .await;
        println!("  -> {:?}", r.as_ref().map(|_| ()));
        assert!(
            matches!(r, Ok(()) | Err(Error::InvalidSessionDescription(_))),
            "{r:?}"
        );
        if r.is_ok() {
            let answer = measured("answer to 2,000 sections", b.create_answer()).await;
            println!("  -> {:?}", answer.as_ref().map(|a| a.sdp.len()));
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[test]
fn thousands_of_candidates_in_a_description_cost_a_bounded_time() {
    run(3, async |h| {
        let (a, sdp) = base_offer(h).await;
        let b = peer(h, HOST_B).await;
        let at = sdp.find("a=candidate:").expect("a candidate");
        let mut lines = String::new();
        for i in 0..10_000 {
            lines.push_str(&format!(
                "a=candidate:{i} 1 udp 2130706431 10.1.{}.{} {} typ host\r\n",
                i / 250,
                1 + i % 250,
                1024 + i
            ));
        }
        let many = format!("{}{lines}{}", &sdp[..at], &sdp[at..]);
        measured(
            "10,000 candidates in a description",
            b.set_remote_description(offer(many)),
        )
        .await
        .unwrap();
        let remote = b.remote_description().await.unwrap().unwrap().sdp;
        let kept = remote.matches("a=candidate:").count();
        println!("  -> {kept} kept");
        assert_eq!(kept, 1_000);
        let refused = measured("10,000 candidates added one by one", async {
            let mut refused = 0;
            for i in 0..10_000 {
                let r = b
                    .add_ice_candidate(RTCIceCandidateInit {
                        candidate: format!(
                            "candidate:{i} 1 udp 2130706431 10.2.{}.{} {} typ host",
                            i / 250,
                            1 + i % 250,
                            1024 + i
                        ),
                        sdp_mid: Some("0".to_owned()),
                        ..Default::default()
                    })
                    .await;
                match r {
                    Err(Error::TooManyRemoteCandidates { max: 1_000 }) => refused += 1,
                    other => panic!("{other:?}"),
                }
            }
            refused
        })
        .await;
        assert_eq!(refused, 10_000);
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[test]
fn repeated_attributes_are_an_error_or_harmless() {
    run(4, async |h| {
        for attr in [
            "a=ice-ufrag:",
            "a=ice-pwd:",
            "a=fingerprint:",
            "a=mid:",
            "a=setup:",
        ] {
            let (a, sdp) = base_offer(h).await;
            let b = peer(h, HOST_B).await;
            let line = sdp
                .lines()
                .find(|l| l.starts_with(attr))
                .unwrap_or_else(|| panic!("no {attr}"));
            let at = sdp.find(line).unwrap();
            let mut repeated = String::new();
            for _ in 0..5_000 {
                repeated.push_str(line);
                repeated.push_str("\r\n");
            }
            let bad = format!("{}{repeated}{}", &sdp[..at], &sdp[at..]);
            let r = measured(
                &format!("{attr} x 5,000"),
                b.set_remote_description(offer(bad)),
            )
            .await;
            println!("  -> {r:?}");
            assert!(
                matches!(r, Ok(()) | Err(Error::InvalidSessionDescription(_))),
                "{r:?}"
            );
            still_works(h, &a, &b).await;
            a.close().await.unwrap();
            b.close().await.unwrap();
        }
    });
}

const UNUSABLE: [&str; 7] = [
    "224.0.0.251",
    "239.255.255.250",
    "255.255.255.255",
    "0.0.0.0",
    "::",
    "ff02::1",
    "::ffff:224.0.0.1",
];

#[test]
fn candidates_at_multicast_broadcast_or_unspecified_addresses_are_refused() {
    run(5, async |h| {
        let (a, sdp) = base_offer(h).await;
        let b = peer(h, HOST_B).await;
        // In the description: dropped, the rest of it applies.
        let at = sdp.find("a=candidate:").expect("a candidate");
        let lines: String = UNUSABLE
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("a=candidate:9{i} 1 udp 2130706431 {ip} 5353 typ host\r\n"))
            .collect();
        let bad = format!("{}{lines}{}", &sdp[..at], &sdp[at..]);
        b.set_remote_description(offer(bad)).await.unwrap();
        let remote = b.remote_description().await.unwrap().unwrap().sdp;
        for ip in UNUSABLE {
            assert!(
                !remote.contains(&format!(" {ip} 5353 ")),
                "{ip} kept:\n{remote}"
            );
        }
        assert!(
            remote.contains("a=candidate:"),
            "the sound candidate went too"
        );
        // Added one by one: a typed error each.
        for ip in UNUSABLE {
            let r = b
                .add_ice_candidate(RTCIceCandidateInit {
                    candidate: format!("candidate:1 1 udp 2130706431 {ip} 5353 typ host"),
                    sdp_mid: Some("0".to_owned()),
                    ..Default::default()
                })
                .await;
            match r {
                Err(Error::UnusableCandidateAddress { address }) => {
                    assert_eq!(address.port(), 5353);
                }
                other => panic!("{ip}: {other:?}"),
            }
        }
        // And the connection still completes with the sound candidates.
        let answer = b.create_answer().await.unwrap();
        b.set_local_description(answer).await.unwrap();
        within(h, "gathering", LIMIT, b.gathering_complete())
            .await
            .unwrap();
        a.set_remote_description(b.local_description().await.unwrap().unwrap())
            .await
            .unwrap();
        connected(h, &b, LIMIT).await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[test]
fn a_remote_that_opens_thousands_of_channels_costs_bounded_memory() {
    /// The most channels a connection keeps open (`MAX_DATA_CHANNELS` in the driver).
    const MAX: usize = 4096;
    const CHANNELS: usize = MAX + 100;
    run(6, async |h| {
        let (a, b, _dc_a, _dc_b) = pair_with_channel(h, "first", Default::default(), LIMIT).await;
        let live0 = alloc::live_bytes();
        let dcs = measured(&format!("{CHANNELS} remote channels opened"), async {
            let mut dcs = Vec::new();
            for i in 0..CHANNELS {
                let dc = a
                    .create_data_channel(&format!("c{i}"), Default::default())
                    .await
                    .unwrap();
                dcs.push(dc);
            }
            for dc in &dcs {
                // Open, then closed by `b` beyond its bound.
                let _ = within(h, "open", LIMIT, dc.opened()).await;
            }
            h.sleep(Duration::from_secs(5)).await;
            dcs
        })
        .await;
        let open = dcs
            .iter()
            .filter(|dc| dc.ready_state() == RTCDataChannelState::Open)
            .count();
        println!(
            "  {open} of {CHANNELS} channels stay open; live memory of both peers +{:.2} MiB \
             ({:.1} KiB per open channel)",
            alloc::mib(alloc::live_bytes() - live0),
            (alloc::live_bytes() - live0) as f64 / 1024.0 / open as f64
        );
        // `b` keeps `first` and MAX - 1 of these at most; the rest were closed at once. Nobody
        // on `b` subscribes: the channels held for a first reader are bounded by the event
        // capacity (1,024 by default), and those dropped from the hold are closed too (never
        // left open unannounced), so what stays open is what is held.
        assert_eq!(open, EVENT_CAPACITY.min(MAX - 1));
        let mut incoming = b.data_channels();
        let mut got = 0;
        while let Ok(Some(_)) = h.timeout(Duration::from_millis(100), incoming.next()).await {
            got += 1;
        }
        println!(
            "  held for b's first reader: {got}, missed {}",
            incoming.missed()
        );
        assert!(got <= EVENT_CAPACITY, "{got}");
        assert_eq!(
            got, open,
            "every channel still open is one held for the first reader"
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[test]
fn messages_at_the_maximum_size_to_a_reader_that_does_not_read_cost_bounded_memory() {
    const MESSAGES: usize = 512;
    run(7, async |h| {
        let (a, b, dc_a, dc_b) = pair_with_channel(h, "big", Default::default(), LIMIT).await;
        let max = dc_a.max_message_size().expect("open");
        println!("maximum message size: {max} bytes");
        let live0 = alloc::live_bytes();
        // The sender goes as fast as back-pressure lets it; nobody reads on `b`.
        let sender = {
            let dc_a = dc_a.clone();
            h.spawn(async move {
                for i in 0..MESSAGES {
                    dc_a.send(bytes::Bytes::from(vec![i as u8; max]))
                        .await
                        .unwrap();
                }
            })
        };
        h.sleep(Duration::from_secs(10)).await;
        let held = alloc::live_bytes() - live0;
        println!(
            "{MESSAGES} messages of {max} bytes ({:.1} MiB) sent to a reader that does not \
             read: both peers hold {:.2} MiB after 10 s",
            alloc::mib((MESSAGES * max) as isize),
            alloc::mib(held)
        );
        println!(
            "  of which: {:.2} MiB in b's inbox (receive budget 2 MiB), {:.2} MiB in a's send \
             buffer (high-water mark 1 MiB); the rest is in the core (SCTP receive window and \
             its read backlog, as in tests/back_pressure.rs: up to 256 messages) and in flight",
            alloc::mib(dc_b.received_amount() as isize),
            alloc::mib(dc_a.buffered_amount() as isize)
        );
        // The receive budget (2 MiB), the sender's high-water mark (1 MiB), the core's read
        // backlog (256 messages) and SCTP's receive window (1 MiB) bound it, plus 4 MiB of
        // transport buffers: about 24 MiB with 64 KiB messages, whatever was sent.
        let bound = (2 << 20) + (1 << 20) + 256 * max as isize + (1 << 20) + (4 << 20);
        assert!(held < bound, "{held} bytes held (bound {bound})");
        if MESSAGES * max > bound as usize {
            assert!(!sender.is_finished(), "the sender was not held back");
        }
        // Nothing is lost: every message arrives whole once `b` reads.
        let mut msgs = dc_b.messages();
        for i in 0..MESSAGES {
            let m = within(h, "message", LIMIT, msgs.next())
                .await
                .expect("ended");
            assert_eq!(m.data.len(), max);
            assert!(m.data.iter().all(|&x| x == i as u8));
        }
        within(h, "sender", LIMIT, sender).await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
