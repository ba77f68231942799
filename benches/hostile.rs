//! Hostile datagrams: the victim's echo rate and heap before and after 100,000 hostile
//! datagrams of each kind, on the deterministic simulator (which can forge the peer's source
//! address). Rates are round trips per second of CPU time of the simulation's thread: the real
//! work of both peers' drivers and the `rtc` core; only the network is simulated. Target: the rate after the attack within 10 % of the rate before,
//! the heap within a few MiB.
//!
//! `cargo bench --all-features --bench hostile` (`DATAGRAMS=n` per kind, default 100,000;
//! `ECHOES=n` round trips per measurement, default 5,000).

#[path = "../tests/common/alloc.rs"]
mod alloc;
#[path = "../tests/common/hostile.rs"]
mod hostile;
#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/common/sim.rs"]
mod sim_common;

use process::env_usize;
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
    DataChannel,
    runtime::sim::{SimHandle, SimRuntime},
};

const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66)), 40000);

/// CPU time of the calling thread: the simulation runs both peers on it, so this is their
/// work alone, whatever else the machine is doing.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Echo round trips per second of the simulation thread's CPU time (median of five runs of
/// `n`).
async fn echo_rate(
    sim: &SimHandle,
    dc: &DataChannel,
    rx: &mut webrtc_streams::MessageStream,
    n: usize,
) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = thread_cpu();
        for i in 0..n {
            dc.send(Bytes::from(vec![i as u8; 64])).await.unwrap();
            let m = within(sim, "echo", Duration::from_secs(60), rx.next()).await;
            assert_eq!(m.unwrap().data.len(), 64);
        }
        rates.push(n as f64 / (thread_cpu() - start).as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[2]
}

type Attack = fn(u32) -> Vec<u8>;

fn main() {
    let datagrams = env_usize("DATAGRAMS", 100_000) as u32;
    let echoes = env_usize("ECHOES", 5_000);
    let attacks: [(&str, bool, Attack); 9] = [
        ("forged handshake fragments (stranger)", false, |i| {
            empty_fragments(u64::from(i), 1000, 100)
        }),
        ("forged handshake fragments (spoofed peer)", true, |i| {
            empty_fragments(u64::from(i), 1000, 100)
        }),
        ("plausible fragments (spoofed peer)", true, |i| {
            dtls_record(
                0,
                u64::from(i),
                HANDSHAKE,
                &handshake_fragment(11, 64, 2, 0, &[i as u8; 64]),
            )
        }),
        ("epoch-1 garbage (spoofed peer)", true, |i| {
            dtls_record(1, u64::from(i) + 1000, APPLICATION_DATA, &[i as u8; 100])
        }),
        ("RTP, fresh SSRCs (spoofed peer)", true, |i| {
            rtp(i, i as u16)
        }),
        ("RTCP, fresh SSRCs (spoofed peer)", true, rtcp_sender_report),
        ("role-flipping STUN (stranger)", false, |i| {
            role_flip_request(i, "x:y")
        }),
        ("role-flipping STUN (spoofed peer)", true, |i| {
            role_flip_request(i, "x:y")
        }),
        ("random bytes (stranger)", false, |i| {
            vec![(64 + i % 64) as u8; 200]
        }),
    ];
    println!(
        "hostile datagrams: {datagrams} per kind, echo of 64-byte messages ({echoes} round trips, median of 5)"
    );
    // Warm up (allocator, caches, CPU frequency) so that the first row is not penalised.
    run_attack(
        "warm-up",
        false,
        |i| vec![(64 + i % 64) as u8; 200],
        1_000,
        echoes,
        false,
    );
    println!(
        "{:<44} {:>12} {:>12} {:>7} {:>10}",
        "attack", "before", "after", "ratio", "heap"
    );
    for (name, spoofed, make) in attacks {
        run_attack(name, spoofed, make, datagrams, echoes, true);
    }
}

/// One fresh pair: echo rate, `datagrams` hostile datagrams made by `make`, echo rate again.
fn run_attack(name: &str, spoofed: bool, make: Attack, datagrams: u32, echoes: usize, print: bool) {
    let sim = SimRuntime::new(1);
    let h = sim.handle().clone();
    sim.block_on(async {
        let (a, b, ping, pong) =
            pair_with_channel(&h, "echo", Default::default(), Duration::from_secs(60)).await;
        let _echo = h.spawn(async move {
            let mut rx = pong.messages();
            while let Some(m) = rx.next().await {
                if pong.send(m.data).await.is_err() {
                    break;
                }
            }
        });
        let mut rx = ping.messages();
        let before = echo_rate(&h, &ping, &mut rx, echoes).await;
        let heap = live_bytes();
        let (victim, peer) = (b.local_addrs()[0], a.local_addrs()[0]);
        let from = if spoofed { peer } else { STRANGER };
        blast(&h, from, victim, (0..datagrams).map(make), 200).await;
        let grown = live_bytes() - heap;
        let after = echo_rate(&h, &ping, &mut rx, echoes).await;
        if print {
            println!(
                "{name:<44} {before:>12.0} {after:>12.0} {:>7.2} {:>6.2} MiB",
                after / before,
                mib(grown)
            );
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
