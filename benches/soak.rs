//! Soak: 10,000 connect -> exchange -> close cycles (by default) on the deterministic
//! simulator, ended in turn by `close()`, by plain drop, with sends still pending and with
//! channels closed first; prints the heap and RSS growth per cycle, every 1,000 cycles, and
//! checks at the end that no driver, connection, channel, subscription or socket is left.
//! Goal: 0 growth per cycle within noise.
//!
//! `cargo bench --all-features --bench soak` (`CYCLES=n`, default 10,000).

#[path = "../tests/common/alloc.rs"]
mod alloc;
#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/common/sim.rs"]
mod sim_common;

use process::{env_usize, rss_kib};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{__live, runtime::sim::SimRuntime};

fn live() -> [usize; 4] {
    [
        __live::drivers(),
        __live::connections(),
        __live::channels(),
        __live::subscriptions(),
    ]
}

fn main() {
    let cycles = env_usize("CYCLES", 10_000);
    let sim = SimRuntime::new(7);
    let h = sim.handle().clone();
    let limit = Duration::from_secs(60);
    let (heap0, measured) = sim.block_on(async {
        let baseline = (live(), h.bound_addrs().len());
        let settle = || async {
            let _ = h
                .timeout(limit, async {
                    while (live(), h.bound_addrs().len()) != baseline {
                        h.sleep(Duration::from_millis(100)).await;
                    }
                })
                .await;
            h.sleep(Duration::from_secs(1)).await;
            assert_eq!(
                (live(), h.bound_addrs().len()),
                baseline,
                "not back to baseline"
            );
        };
        let warm = cycles / 10;
        let (mut heap0, mut rss0) = (0, 0);
        let wall = Instant::now();
        for i in 0..cycles {
            if i == warm {
                settle().await;
                (heap0, rss0) = (alloc::live_bytes(), rss_kib());
            }
            if i > warm && (i - warm).is_multiple_of(1000) {
                let n = (i - warm) as f64;
                println!(
                    "{i:>6} cycles: heap {:+.1} B/cycle, RSS {:+.3} KiB/cycle since warm-up",
                    (alloc::live_bytes() - heap0) as f64 / n,
                    (rss_kib() as f64 - rss0 as f64) / n
                );
            }
            let (a, b, dc_a, dc_b) =
                sim_common::pair_with_channel(&h, "soak", Default::default(), limit).await;
            let mut at_b = dc_b.messages();
            dc_a.send(Bytes::from_static(b"ping")).await.unwrap();
            assert_eq!(&at_b.next().await.unwrap().data[..], b"ping");
            match i % 4 {
                0 => {
                    a.close().await.unwrap();
                    b.close().await.unwrap();
                }
                1 => {}
                2 => {
                    for _ in 0..8 {
                        dc_a.send(Bytes::from(vec![7u8; 16 * 1024])).await.unwrap();
                    }
                }
                _ => dc_a.close().await.unwrap(),
            }
        }
        settle().await;
        let n = (cycles - warm).max(1) as f64;
        println!(
            "soak: {cycles} cycles in {:?} (wall); after {warm} warm-up cycles: heap {:+} B \
             ({:+.1} B/cycle), RSS {:+} KiB ({:+.3} KiB/cycle); live objects and sockets back \
             to baseline",
            wall.elapsed(),
            alloc::live_bytes() - heap0,
            (alloc::live_bytes() - heap0) as f64 / n,
            rss_kib() as isize - rss0 as isize,
            (rss_kib() as f64 - rss0 as f64) / n,
        );
        (heap0, n)
    });
    // What the simulation itself held (its timers, sockets, tasks) goes with it: if the
    // growth goes too, it was the simulator's, not the connections'.
    drop(h);
    drop(sim);
    println!(
        "after the simulation is dropped: heap {:+} B ({:+.1} B/cycle) against the warm-up mark",
        alloc::live_bytes() - heap0,
        (alloc::live_bytes() - heap0) as f64 / measured,
    );
}
