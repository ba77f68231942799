//! Connection setup on loopback: build → data channel open on both sides, 20 fresh pairs per
//! library, this crate and `webrtc` 0.21.1 in the same run.
//!
//! `cargo bench --bench setup` (`PAIRS=n` to change the count).

mod common;

use std::time::Instant;

use common::*;

fn main() {
    let pairs = env_usize("PAIRS", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm up both (certificate generation code paths, allocator).
        let _ = ours_pair().await;
        let _ = anchor_pair(1 << 20).await;

        let mut ours = Vec::new();
        for _ in 0..pairs {
            let t = Instant::now();
            let (a, b, _, _) = ours_pair().await;
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            a.close().await.unwrap();
            b.close().await.unwrap();
        }
        let mut theirs = Vec::new();
        for _ in 0..pairs {
            let t = Instant::now();
            let (a, b, _, _) = anchor_pair(1 << 20).await;
            theirs.push(t.elapsed().as_secs_f64() * 1e3);
            let _ = a.pc.close().await;
            let _ = b.pc.close().await;
        }
        let (om, omin, omax) = stats(ours);
        let (tm, tmin, tmax) = stats(theirs);
        println!("setup: build -> channel open on both sides, {pairs} pairs each, loopback");
        println!(
            "{:<16} {:>10} {:>10} {:>10}",
            "library", "median ms", "min ms", "max ms"
        );
        println!(
            "{:<16} {om:>10.2} {omin:>10.2} {omax:>10.2}",
            "webrtc-streams"
        );
        println!(
            "{:<16} {tm:>10.2} {tmin:>10.2} {tmax:>10.2}",
            "webrtc 0.21.1"
        );
        println!(
            "ratio (ours / webrtc 0.21.1, median): {:.3}  (target <= 0.8)",
            om / tm
        );
    });
}
