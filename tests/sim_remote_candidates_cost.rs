//! Adding a remote candidate costs the same whatever the size of the remote description: the
//! driver does not parse the description again for each candidate. Prints the cost of about
//! 1,000 candidates (990: with the description's own and a warm-up one, just under the bound
//! of 1,000 remote candidates per description) (allocations counted on the simulation's single thread; wall time for
//! information only).
#![cfg(feature = "runtime-sim")]

#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/sim.rs"]
mod sim_common;

use std::time::Instant;

use sim_common::*;
use webrtc_streams::{
    PeerConnection,
    media::RtpCodecKind,
    rtc::{
        peer_connection::transport::RTCIceCandidateInit,
        rtp_transceiver::RTCRtpTransceiverDirection,
    },
    runtime::sim::SimRuntime,
};

const CANDIDATES: usize = 990;

fn candidate(i: usize) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: format!(
            "candidate:{i} 1 udp 2130706431 10.0.{}.{} {} typ host",
            1 + i / 250,
            1 + i % 250,
            10_000 + i
        ),
        sdp_mid: Some("0".to_owned()),
        sdp_mline_index: Some(0),
        ..Default::default()
    }
}

/// Sets an offer of `a` with `sections` media sections as `b`'s remote description, then adds
/// [`CANDIDATES`] candidates to `b`; returns the remote description's size and, per candidate, the
/// allocations and bytes allocated.
fn cost(sections: usize) -> (usize, f64, f64) {
    let sim = SimRuntime::new(7);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = peer(&h, HOST_A).await;
        let b: PeerConnection = peer(&h, HOST_B).await;
        let _dc = a
            .create_data_channel("x", Default::default())
            .await
            .unwrap();
        for i in 1..sections {
            let kind = if i % 2 == 0 {
                RtpCodecKind::Audio
            } else {
                RtpCodecKind::Video
            };
            a.add_transceiver(kind, RTCRtpTransceiverDirection::Recvonly)
                .await
                .unwrap();
        }
        let offer = a.create_offer().await.unwrap();
        let size = offer.sdp.len();
        b.set_remote_description(offer).await.unwrap();
        // Warm up (first-use allocations of the command path).
        b.add_ice_candidate(candidate(CANDIDATES)).await.unwrap();
        let (n0, bytes0) = alloc::allocated();
        let wall = Instant::now();
        for i in 0..CANDIDATES {
            b.add_ice_candidate(candidate(i)).await.unwrap();
        }
        let wall = wall.elapsed();
        let (n1, bytes1) = alloc::allocated();
        let per = |x: u64| x as f64 / CANDIDATES as f64;
        println!(
            "{sections:>3} sections ({size:>6} bytes of SDP): {CANDIDATES} candidates in \
             {wall:?} (wall), {:.0} allocations and {:.0} bytes allocated per candidate",
            per(n1 - n0),
            per(bytes1 - bytes0)
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
        (size, per(n1 - n0), per(bytes1 - bytes0))
    })
}

#[test]
fn the_cost_of_a_remote_candidate_does_not_grow_with_the_remote_description() {
    init_log();
    let (small_sdp, small_n, small_bytes) = cost(1);
    let (big_sdp, big_n, big_bytes) = cost(41);
    assert!(big_sdp > 10 * small_sdp, "{small_sdp} vs {big_sdp}");
    // Parsing the description again would allocate at least once per line and about its
    // size in bytes, per candidate. Allow some slack for the core's per-candidate work
    // (which does not depend on the description).
    assert!(
        big_n < small_n * 1.5 + 20.0,
        "allocations per candidate grow with the description: {small_n} -> {big_n}"
    );
    assert!(
        big_bytes < (big_sdp as f64) / 2.0,
        "bytes allocated per candidate ({big_bytes}) on the order of the description \
         ({big_sdp} bytes)"
    );
    println!(
        "per candidate: {small_n:.0} -> {big_n:.0} allocations, {small_bytes:.0} -> \
         {big_bytes:.0} bytes"
    );
}
