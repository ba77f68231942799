//! Soak and leak test: many connect -> exchange -> close cycles in one process, a mix of
//! `close()` and plain drop, with and without open channels and with sends still pending.
//! Afterwards the live drivers, connections, channels and subscriptions, and the sockets
//! (simulated, then real file descriptors), are back to their baseline; heap and RSS growth
//! are printed.
//!
//! Cycle counts: `SOAK_CYCLES` (simulated runtime, default 1,000) and `SOAK_LOOPBACK_CYCLES`
//! (Tokio on 127.0.0.1, default 100), e.g.
//! `SOAK_CYCLES=10000 cargo test --release --all-features --test soak -- --nocapture`.
//!
//! One test in this binary on purpose: the live counts are per process.
// Linux only: counts open file descriptors and RSS through /proc.
#![cfg(target_os = "linux")]
#![cfg(feature = "runtime-sim")]

#[path = "common/alloc.rs"]
mod alloc;
mod common;
#[path = "common/sim.rs"]
mod sim_common;

use common::process::{env_usize, open_fds, rss_kib};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{
    __live, DataChannel, PeerConnection, rtc::data_channel::RTCDataChannelState,
    runtime::sim::SimRuntime,
};

/// Live objects of the library in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    drivers: usize,
    connections: usize,
    channels: usize,
    subscriptions: usize,
    sockets: usize,
}

fn counts(sockets: usize) -> Counts {
    Counts {
        drivers: __live::drivers(),
        connections: __live::connections(),
        channels: __live::channels(),
        subscriptions: __live::subscriptions(),
        sockets,
    }
}

/// How a cycle ends.
#[derive(Debug, Clone, Copy)]
enum End {
    /// `close()` on both, channels open.
    Close,
    /// Every handle dropped, channels open.
    Drop,
    /// Sends still queued, then every handle dropped.
    DropPending,
    /// Sends still queued, then `close()`.
    ClosePending,
    /// Channels closed first, then every handle dropped.
    ChannelsClosedThenDrop,
}

const ENDS: [End; 5] = [
    End::Close,
    End::Drop,
    End::DropPending,
    End::ClosePending,
    End::ChannelsClosedThenDrop,
];

/// Exchanges one message each way, then ends the pair as `end` says.
async fn exchange_and_end(
    a: PeerConnection,
    b: PeerConnection,
    dc_a: DataChannel,
    dc_b: DataChannel,
    end: End,
) {
    let mut at_b = dc_b.messages();
    let mut at_a = dc_a.messages();
    dc_a.send(Bytes::from_static(b"ping")).await.unwrap();
    assert_eq!(&at_b.next().await.expect("b messages").data[..], b"ping");
    dc_b.send(Bytes::from_static(b"pong")).await.unwrap();
    assert_eq!(&at_a.next().await.expect("a messages").data[..], b"pong");
    // Subscriptions of every kind, dropped with the pair.
    let _events = (
        a.events(),
        b.connection_states(),
        dc_a.events(),
        a.ice_candidates(),
    );
    if std::env::var_os("SOAK_LEAK_CHECK").is_some() {
        std::mem::forget(b.events()); // shows that the test sees a leaked subscription
    }
    match end {
        End::Close => {
            a.close().await.unwrap();
            b.close().await.unwrap();
        }
        End::Drop => {}
        End::DropPending | End::ClosePending => {
            for _ in 0..8 {
                dc_a.send(Bytes::from(vec![7u8; 16 * 1024])).await.unwrap();
            }
            if matches!(end, End::ClosePending) {
                a.close().await.unwrap();
                b.close().await.unwrap();
            }
        }
        End::ChannelsClosedThenDrop => {
            dc_a.close().await.unwrap();
            let mut states = dc_b.ready_states();
            while let Some(s) = states.next().await {
                if s == RTCDataChannelState::Closed {
                    break;
                }
            }
        }
    }
}

/// Prints what the cycles after the first tenth (warm-up: first-use allocations, caches)
/// added to the heap and to the RSS.
fn report(what: &str, cycles: usize, wall: Duration, heap: (isize, isize), rss: (usize, usize)) {
    let measured = cycles - cycles / 10;
    println!(
        "{what}: {cycles} cycles in {wall:?} (wall); after warm-up, heap {:+} bytes \
         ({:+.1} bytes/cycle), RSS {:+} KiB ({:+.2} KiB/cycle)",
        heap.1 - heap.0,
        (heap.1 - heap.0) as f64 / measured.max(1) as f64,
        rss.1 as isize - rss.0 as isize,
        (rss.1 as f64 - rss.0 as f64) / measured.max(1) as f64,
    );
}

/// Simulated runtime: deterministic, every task on this thread (so the heap counts are this
/// library's alone).
fn soak_sim(cycles: usize) {
    let sim = SimRuntime::new(42);
    let h = sim.handle().clone();
    let limit = Duration::from_secs(60);
    sim.block_on(async {
        let baseline = counts(h.bound_addrs().len());
        // Dropped drivers finish on their next poll, closing ones within a round trip; then
        // their last timers go.
        let settle = || async {
            let back = h.timeout(limit, async {
                while counts(h.bound_addrs().len()) != baseline {
                    h.sleep(Duration::from_millis(100)).await;
                }
            });
            let _ = back.await;
            let settled = counts(h.bound_addrs().len());
            assert_eq!(settled, baseline, "not back to baseline after {limit:?}");
            h.sleep(Duration::from_secs(1)).await;
            settled
        };
        let (mut heap0, mut rss0) = (alloc::live_bytes(), rss_kib());
        let wall = Instant::now();
        for i in 0..cycles {
            if i == cycles / 10 {
                settle().await;
                (heap0, rss0) = (alloc::live_bytes(), rss_kib());
            }
            let (a, b, dc_a, dc_b) =
                sim_common::pair_with_channel(&h, "soak", Default::default(), limit).await;
            let end = ENDS[i % ENDS.len()];
            sim_common::within(&h, "cycle", limit, exchange_and_end(a, b, dc_a, dc_b, end)).await;
        }
        let settled = settle().await;
        assert_eq!(settled, baseline);
        report(
            "simulated",
            cycles,
            wall.elapsed(),
            (heap0, alloc::live_bytes()),
            (rss0, rss_kib()),
        );
        println!("  live after: {settled:?} (sockets: simulated ones bound)");
    });
}

/// Tokio on 127.0.0.1: real sockets, so open file descriptors are checked too.
fn soak_loopback(cycles: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let baseline = counts(open_fds());
        let settle = || async {
            let back = tokio::time::timeout(common::TIMEOUT, async {
                while counts(open_fds()) != baseline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let _ = back.await;
            let settled = counts(open_fds());
            assert_eq!(settled, baseline, "not back to baseline");
            settled
        };
        let mut rss0 = rss_kib();
        let wall = Instant::now();
        for i in 0..cycles {
            if i == cycles / 10 {
                settle().await;
                rss0 = rss_kib();
            }
            let (a, b, dc_a, dc_b) = common::pair_with_channel("soak", Default::default()).await;
            let end = ENDS[i % ENDS.len()];
            common::within("cycle", exchange_and_end(a, b, dc_a, dc_b, end)).await;
        }
        let settled = settle().await;
        assert_eq!(settled, baseline);
        report(
            "loopback",
            cycles,
            wall.elapsed(),
            (0, 0),
            (rss0, rss_kib()),
        );
        println!("  live after: {settled:?} (sockets: open file descriptors)");
    });
}

#[test]
fn cycles_leave_nothing_behind() {
    common::init_log();
    soak_sim(env_usize("SOAK_CYCLES", 1_000));
    soak_loopback(env_usize("SOAK_LOOPBACK_CYCLES", 100));
}
