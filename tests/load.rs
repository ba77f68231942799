//! Load: many connected pairs at once in one process (Tokio, real UDP sockets on 127.0.0.1),
//! every pair echoing messages at the same time; no pair stalls and every message comes back,
//! in order, exactly once. Prints the wall time and the RSS.
//!
//! `LOAD_PAIRS` (default 100, so the suite stays fast in debug on a small machine) and
//! `LOAD_MESSAGES` (per pair, default 20). The full figure:
//! `LOAD_PAIRS=500 cargo test --release --all-features --test load -- --nocapture`.

mod common;

use common::process::{env_usize, rss_kib};
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, stream};

/// Raises the soft limit on open files to the hard one (each pair holds two sockets, and
/// the runtime a few more); returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of each call.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

#[test]
fn many_pairs_echo_at_once_and_nothing_is_lost() {
    common::init_log();
    let pairs = env_usize("LOAD_PAIRS", 100);
    let messages = env_usize("LOAD_MESSAGES", 20);
    let nofile = raise_nofile();
    assert!(
        nofile as usize > pairs * 2 + 64,
        "RLIMIT_NOFILE {nofile} is too low for {pairs} pairs"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rss0 = rss_kib();
        let wall = Instant::now();
        // Set up with a bounded number in flight (the handshakes are CPU-bound), then hold
        // them all.
        let connected: Vec<_> = stream::iter(0..pairs)
            .map(|i| async move {
                let (a, b, dc_a, dc_b) =
                    common::pair_with_channel(&format!("load-{i}"), Default::default()).await;
                (i, a, b, dc_a, dc_b)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let setup = wall.elapsed();
        let rss_held = rss_kib();
        assert_eq!(connected.len(), pairs);
        println!(
            "{pairs} pairs connected in {setup:?} (wall); RSS {rss0} -> {rss_held} KiB \
             ({:.1} KiB per pair)",
            (rss_held as f64 - rss0 as f64) / pairs as f64
        );

        // Every pair echoes at the same time: b sends back what it reads, a checks that each
        // message comes back once, in order.
        let echo_start = Instant::now();
        let tasks: Vec<_> = connected
            .iter()
            .map(|(i, _, _, dc_a, dc_b)| {
                let (i, dc_a, dc_b) = (*i, dc_a.clone(), dc_b.clone());
                tokio::spawn(async move {
                    let mut at_b = dc_b.messages();
                    let echo = tokio::spawn(async move {
                        for _ in 0..messages {
                            let m = at_b.next().await.expect("b's messages ended");
                            dc_b.send(m.data).await.expect("echo");
                        }
                    });
                    let mut at_a = dc_a.messages();
                    for n in 0..messages {
                        let payload = format!("pair {i} message {n}");
                        dc_a.send(Bytes::from(payload)).await.expect("send");
                    }
                    for n in 0..messages {
                        let m = at_a.next().await.expect("a's messages ended");
                        assert_eq!(m.data, format!("pair {i} message {n}").as_bytes());
                    }
                    echo.await.unwrap();
                    messages
                })
            })
            .collect();
        let mut echoed = 0;
        for t in tasks {
            echoed += common::within("echo", t).await.expect("pair task");
        }
        assert_eq!(echoed, pairs * messages);
        let echo_wall = echo_start.elapsed();
        let rss_echo = rss_kib();
        println!(
            "{echoed} messages echoed by {pairs} pairs at once in {echo_wall:?} (wall); \
             RSS {rss_echo} KiB"
        );
        for (_, a, b, _, _) in &connected {
            assert_eq!(
                a.connection_state(),
                webrtc_streams::rtc::peer_connection::state::RTCPeerConnectionState::Connected
            );
            assert_eq!(
                b.connection_state(),
                webrtc_streams::rtc::peer_connection::state::RTCPeerConnectionState::Connected
            );
        }
        drop(connected);
        println!("total {:?} (wall)", wall.elapsed());
    });
}
