//! STUN responses leave before DTLS queued in the same round.
//!
//! When the controlling peer's nominating check (USE-CANDIDATE) arrives, the controlled peer
//! answers it and, in the same round, selects the pair and (as DTLS client) queues its
//! ClientHello. Firefox discards a DTLS record that arrives before its ICE layer has seen the
//! Binding Success for the nominated pair and then waits a second for the retransmission, so
//! the answer must be on the wire first. This test watches every datagram the answerer sends
//! and checks the order.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use sim_common::*;
use webrtc_streams::runtime::sim::SimRuntime;

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const USE_CANDIDATE: u16 = 0x0025;

/// What one datagram on the wire was.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// A STUN Binding request; whether it nominates (USE-CANDIDATE); transaction id.
    Request(bool, [u8; 12]),
    /// A STUN Binding success response and its transaction id.
    Success([u8; 12]),
    /// A DTLS record (RFC 7983: first byte 20..=63).
    Dtls,
    Other,
}

fn classify(d: &[u8]) -> Seen {
    if d.len() >= 20 && d[0] < 4 && d[4..8] == MAGIC_COOKIE {
        let kind = u16::from_be_bytes([d[0], d[1]]);
        let tid: [u8; 12] = d[8..20].try_into().unwrap();
        return match kind {
            BINDING_REQUEST => {
                let mut use_candidate = false;
                let mut at = 20;
                while at + 4 <= d.len() {
                    let t = u16::from_be_bytes([d[at], d[at + 1]]);
                    let len = u16::from_be_bytes([d[at + 2], d[at + 3]]) as usize;
                    use_candidate |= t == USE_CANDIDATE;
                    at += 4 + len.div_ceil(4) * 4;
                }
                Seen::Request(use_candidate, tid)
            }
            BINDING_SUCCESS => Seen::Success(tid),
            _ => Seen::Other,
        };
    }
    if matches!(d.first(), Some(20..=63)) {
        return Seen::Dtls;
    }
    Seen::Other
}

#[test]
fn binding_success_goes_out_before_the_client_hello() {
    init_log();
    let sim = SimRuntime::new(7);
    let wire: Arc<Mutex<Vec<(SocketAddr, Seen)>>> = Arc::default();
    let log = wire.clone();
    sim.set_drop_filter(move |from, _to, payload| {
        log.lock().unwrap().push((from, classify(payload)));
        false // observe only
    });
    let h = sim.handle().clone();
    sim.block_on(async move {
        let (_a, _b, _, _) =
            pair_with_channel(&h, "order", Default::default(), Duration::from_secs(30)).await;
    });
    let wire = wire.lock().unwrap().clone();
    // The answerer (on HOST_B) is controlled and DTLS client: its first DTLS record is the
    // ClientHello, sent once the offerer's nominating check selected the pair.
    let first_dtls = wire
        .iter()
        .position(|(from, s)| from.ip() == HOST_B && *s == Seen::Dtls)
        .expect("the answerer sent no DTLS");
    let nominations: Vec<[u8; 12]> = wire
        .iter()
        .filter_map(|(from, s)| match s {
            Seen::Request(true, tid) if from.ip() == HOST_A => Some(*tid),
            _ => None,
        })
        .collect();
    assert!(
        !nominations.is_empty(),
        "the offerer never nominated: {wire:?}"
    );
    let answered_before_dtls = wire[..first_dtls].iter().any(|(from, s)| {
        from.ip() == HOST_B && matches!(s, Seen::Success(tid) if nominations.contains(tid))
    });
    assert!(
        answered_before_dtls,
        "the answerer's ClientHello (datagram {first_dtls}) went out before its Binding \
         Success for the nominating check: {:?}",
        &wire[..(first_dtls + 4).min(wire.len())]
    );
}
