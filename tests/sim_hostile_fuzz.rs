//! A structure-aware fuzz run of hostile datagrams against a connected pair, on the simulator.
//!
//! A seeded generator builds datagrams that look like what the driver demultiplexes: STUN with
//! real ICE attributes (the victim's true ufrag included) and random ones, DTLS records of
//! every content type with wild lengths, epochs and handshake fragment headers, RTP and RTCP,
//! and random bytes; half of them come from the peer's own (forged) address, half from
//! strangers. Meanwhile the pair keeps echoing messages. The run asserts that nothing panics,
//! every echo comes back intact, the connection stays up and the victim's heap stays bounded.
//!
//! Knobs (environment):
//! * `WEBRTC_STREAMS_FUZZ_DATAGRAMS`: datagrams per seed (default 100,000; 1,000,000 or more
//!   for a long run, e.g. `WEBRTC_STREAMS_FUZZ_DATAGRAMS=1000000 cargo test --release
//!   --all-features --test sim_hostile_fuzz`);
//! * `WEBRTC_STREAMS_FUZZ_SEED`: the seed of the fresh run (default: a fixed one, so CI is
//!   reproducible).
//!
//! Seeds listed in `proptest-regressions/sim_hostile_fuzz.txt` run too (a fifth of the
//! datagrams each): when a seed fails, the test says so, and it belongs in that file.
#![cfg(feature = "runtime-sim")]

#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/sim.rs"]
mod sim_common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use alloc::{live_bytes, mib};
use bytes::Bytes;
use futures::StreamExt;
use hostile::*;
use sim_common::*;
use webrtc_streams::{
    rtc::peer_connection::state::RTCPeerConnectionState, runtime::sim::SimRuntime,
};

const DEFAULT_DATAGRAMS: u64 = 100_000;
const DEFAULT_SEED: u64 = 0x5eed_f00d;
/// Echo round trips between bursts of this many hostile datagrams.
const BURST: u64 = 1_000;
/// How far the victim's heap may grow (the pair's own steady state included).
const MEMORY_BOUND: isize = 4 * 1024 * 1024;

/// SplitMix64: small, fast, and the same on every platform.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn some_bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Mostly small, sometimes at the edges of the field.
    fn wild_u16(&mut self) -> u16 {
        match self.below(6) {
            0 => 0,
            1 => u16::MAX,
            2 => self.below(64) as u16,
            _ => self.next() as u16,
        }
    }
}

/// What the generator knows of the victim: its ICE ufrag (to forge plausible usernames).
struct Target {
    victim_ufrag: String,
    peer_ufrag: String,
}

fn stun_datagram(g: &mut Gen, t: &Target) -> Vec<u8> {
    let any = g.next() as u16 & 0x3fff;
    let msg_type = g.pick(&[
        BINDING_REQUEST,
        BINDING_REQUEST,
        BINDING_INDICATION,
        BINDING_SUCCESS,
        BINDING_ERROR,
        0x0003, // Allocate
        any,
    ]);
    let mut attrs = Vec::new();
    for _ in 0..g.below(8) {
        let attr = match g.below(10) {
            0 => {
                let name = match g.below(3) {
                    0 => format!("{}:{}", t.victim_ufrag, t.peer_ufrag),
                    1 => format!("{}:x", t.victim_ufrag),
                    _ => String::from_utf8_lossy(&g.some_bytes(40)).into_owned(),
                };
                (USERNAME, name.into_bytes())
            }
            1 => (ICE_CONTROLLED, g.next().to_be_bytes().to_vec()),
            2 => (ICE_CONTROLLING, g.next().to_be_bytes().to_vec()),
            3 => (USE_CANDIDATE, Vec::new()),
            4 => (PRIORITY, g.bytes(4)),
            5 => {
                let n = g.pick(&[20, 20, 0, 19, 32]);
                (MESSAGE_INTEGRITY, g.bytes(n))
            }
            6 => (FINGERPRINT, g.bytes(4)),
            7 => {
                let n = g.pick(&[8, 20, 3]);
                (0x0020, g.bytes(n)) // XOR-MAPPED-ADDRESS
            }
            _ => {
                let t = g.next() as u16;
                (t, g.some_bytes(64))
            }
        };
        attrs.push(attr);
    }
    let mut tid = [0u8; 12];
    tid.copy_from_slice(&g.bytes(12));
    let mut m = stun(msg_type, tid, &attrs);
    match g.below(10) {
        0 => {
            let keep = g.below(m.len() as u64) as usize;
            m.truncate(keep);
        }
        1 => {
            let len = g.wild_u16().to_be_bytes();
            m[2..4].copy_from_slice(&len);
        }
        2 => m.extend(g.some_bytes(16)),
        _ => {}
    }
    m
}

fn dtls_datagram(g: &mut Gen) -> Vec<u8> {
    if g.chance(30) {
        return tidy_dtls_datagram(g);
    }
    let mut d = Vec::new();
    for _ in 0..=g.below(4) {
        let shift = if g.chance(5) { g.below(40) as u8 } else { 0 };
        let content_type = g
            .pick(&[
                CHANGE_CIPHER_SPEC,
                ALERT,
                HANDSHAKE,
                HANDSHAKE,
                APPLICATION_DATA,
            ])
            .wrapping_add(shift);
        let epoch = g.pick(&[0, 0, 1, 1, 2, u16::MAX]);
        let body = match content_type {
            HANDSHAKE if epoch == 0 => {
                let mut b = Vec::new();
                for _ in 0..=g.below(20) {
                    let data = g.some_bytes(80);
                    let any_length = g.below(1 << 24) as u32;
                    let length = g.pick(&[0, data.len() as u32, 1 << 20, any_length]);
                    let any_offset = g.below(100) as u32;
                    let offset = g.pick(&[0, any_offset, u32::MAX >> 8]);
                    let any_seq = g.wild_u16();
                    let seq = g.pick(&[0, 1, 5, 31, 33, any_seq]);
                    let msg_type = g.below(30) as u8;
                    let mut f = handshake_fragment(msg_type, length, seq, offset, &data);
                    if g.chance(10) {
                        // A fragment length that disagrees with the bytes present.
                        let wild = g.below(1 << 24) as u32;
                        f[9..12].copy_from_slice(&wild.to_be_bytes()[1..]);
                    }
                    b.extend(f);
                }
                b
            }
            ALERT => g.bytes(2),
            CHANGE_CIPHER_SPEC => vec![1],
            _ => g.some_bytes(300),
        };
        let record_seq = g.next() & 0xffff_ffff_ffff;
        let mut r = dtls_record(epoch, record_seq, content_type, &body);
        if g.chance(10) {
            let len = g.wild_u16().to_be_bytes();
            r[11..13].copy_from_slice(&len);
        }
        d.extend(r);
    }
    d
}

/// Well-formed records that get past framing checks: epoch-1 records of any type, and
/// epoch-0 handshake fragments within bounds and with sequence numbers a handshake uses.
fn tidy_dtls_datagram(g: &mut Gen) -> Vec<u8> {
    let record_seq = g.next() & 0xffff_ffff_ffff;
    if g.chance(50) {
        let content_type = g.pick(&[ALERT, HANDSHAKE, APPLICATION_DATA]);
        let body = g.some_bytes(200);
        return dtls_record(1, record_seq, content_type, &body);
    }
    let mut body = Vec::new();
    for _ in 0..=g.below(8) {
        let length = g.below(200) as u32 + 1;
        let offset = g.below(u64::from(length)) as u32;
        let n = g.below(u64::from(length - offset)) as usize + 1;
        let data = g.bytes(n);
        let seq = g.below(16) as u16;
        let msg_type = g.pick(&[1, 2, 11, 12, 13, 14, 15, 16, 20]);
        body.extend(handshake_fragment(msg_type, length, seq, offset, &data));
    }
    dtls_record(0, record_seq, HANDSHAKE, &body)
}

fn media_datagram(g: &mut Gen) -> Vec<u8> {
    let mut p = if g.chance(50) {
        rtp(g.next() as u32, g.next() as u16)
    } else {
        rtcp_sender_report(g.next() as u32)
    };
    p[1] = g.next() as u8;
    p.extend(g.some_bytes(200));
    let keep = g.below(p.len() as u64 + 1) as usize;
    p.truncate(keep);
    if let Some(b) = p.first_mut() {
        *b = 128 + (*b & 63);
    }
    p
}

fn datagram(g: &mut Gen, t: &Target) -> Vec<u8> {
    match g.below(10) {
        0..=2 => stun_datagram(g, t),
        3..=6 => dtls_datagram(g),
        7 | 8 => media_datagram(g),
        _ => g.some_bytes(1500),
    }
}

fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .expect("ice-ufrag")
        .to_owned()
}

/// One fuzz run: `datagrams` hostile datagrams from `seed`, echo checked between bursts.
fn run(seed: u64, datagrams: u64) {
    init_log();
    let sim = SimRuntime::new(seed);
    let h = sim.handle().clone();
    sim.block_on(async {
        let limit = Duration::from_secs(60);
        let (a, b, ping, pong) = pair_with_channel(&h, "echo", Default::default(), limit).await;
        let _echo = h.spawn(async move {
            let mut rx = pong.messages();
            while let Some(m) = rx.next().await {
                if pong.send(m.data).await.is_err() {
                    break;
                }
            }
        });
        let target = Target {
            victim_ufrag: ufrag(&b.local_description().await.unwrap().unwrap().sdp),
            peer_ufrag: ufrag(&a.local_description().await.unwrap().unwrap().sdp),
        };
        let (victim, peer) = (b.local_addrs()[0], a.local_addrs()[0]);
        let mut g = Gen(seed);
        let mut pongs = ping.messages();
        let mut echoed = 0u64;
        let mut round_trip = async |what: &str| {
            let body = Bytes::from(format!("echo {echoed}"));
            echoed += 1;
            ping.send(body.clone()).await.unwrap();
            let m = within(&h, what, limit, pongs.next()).await;
            assert_eq!(m.expect("echo stream ended").data, body, "seed {seed}");
        };
        round_trip("echo before the attack").await;
        let before = live_bytes();
        let mut peak = 0;
        let mut sent = 0;
        while sent < datagrams {
            for _ in 0..BURST.min(datagrams - sent) {
                let from = if g.chance(50) {
                    peer
                } else {
                    let host = Ipv4Addr::new(10, 0, 1, g.below(4) as u8 + 1);
                    SocketAddr::new(IpAddr::V4(host), 1024 + g.below(4) as u16)
                };
                h.inject(from, victim, &datagram(&mut g, &target));
                sent += 1;
            }
            h.sleep(Duration::from_millis(2)).await;
            round_trip("echo during the attack").await;
            peak = peak.max(live_bytes() - before);
        }
        h.sleep(Duration::from_secs(1)).await;
        round_trip("echo after the attack").await;
        let stats = b.filter_stats();
        eprintln!(
            "seed {seed}: {sent} datagrams, heap peak +{:.2} MiB, {stats:?}",
            mib(peak)
        );
        assert!(
            peak < MEMORY_BOUND,
            "seed {seed}: heap grew by {:.1} MiB",
            mib(peak)
        );
        assert_eq!(
            b.connection_state(),
            RTCPeerConnectionState::Connected,
            "seed {seed}"
        );
        assert_eq!(
            a.connection_state(),
            RTCPeerConnectionState::Connected,
            "seed {seed}"
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// Runs `seed`, telling which seed failed if it panics.
fn run_reporting(seed: u64, datagrams: u64) {
    let r = std::panic::catch_unwind(|| run(seed, datagrams));
    if let Err(e) = r {
        eprintln!(
            "\nsim_hostile_fuzz: seed {seed} FAILED; add it to \
             proptest-regressions/sim_hostile_fuzz.txt\n"
        );
        std::panic::resume_unwind(e);
    }
}

#[test]
fn hostile_datagrams_fuzz() {
    let datagrams = env_u64("WEBRTC_STREAMS_FUZZ_DATAGRAMS").unwrap_or(DEFAULT_DATAGRAMS);
    let seed = env_u64("WEBRTC_STREAMS_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    run_reporting(seed, datagrams);
}

#[test]
fn hostile_datagrams_fuzz_regressions() {
    let datagrams = env_u64("WEBRTC_STREAMS_FUZZ_DATAGRAMS").unwrap_or(DEFAULT_DATAGRAMS) / 5;
    let seeds = include_str!("../proptest-regressions/sim_hostile_fuzz.txt");
    for line in seeds.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let seed = line.parse().expect("a seed per line");
        run_reporting(seed, datagrams);
    }
}
