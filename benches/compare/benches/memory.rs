//! Memory: RSS per connected idle pair (100 pairs), and RSS growth over 10 rounds of
//! create/connect/close/drop of 20 pairs (leak per connection; goal 0). This crate and
//! `webrtc` 0.21.1, each measured in a fresh child process of this binary, in the same run.
//!
//! `cargo bench --bench memory` (`PAIRS=n`, default 100; `ROUNDS=n` leak rounds, default 10).

mod common;

use std::time::Duration;

use common::*;

const LEAK_PAIRS: usize = 20;

fn leak_rounds() -> usize {
    env_usize("ROUNDS", 10).max(3)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Connects `n` pairs of the given library and returns a guard keeping them alive.
async fn connect(lib: &str, n: usize) -> Vec<Box<dyn std::any::Any + Send>> {
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    for _ in 0..n {
        if lib == "ours" {
            keep.push(Box::new(ours_pair().await));
        } else {
            let (a, b, tx, rx) = anchor_pair(1 << 20).await;
            keep.push(Box::new((a.pc, b.pc, tx, rx)));
        }
    }
    keep
}

async fn close_all(lib: &str, keep: Vec<Box<dyn std::any::Any + Send>>) {
    for k in keep {
        if lib == "ours" {
            let (a, b, _, _) = *k
                .downcast::<(
                    webrtc_streams::PeerConnection,
                    webrtc_streams::PeerConnection,
                    webrtc_streams::DataChannel,
                    webrtc_streams::DataChannel,
                )>()
                .unwrap();
            a.close().await.unwrap();
            b.close().await.unwrap();
        } else {
            type Anchor = std::sync::Arc<dyn webrtc::peer_connection::PeerConnection>;
            type Dc = std::sync::Arc<dyn webrtc::data_channel::DataChannel>;
            let (a, b, _, _) = *k.downcast::<(Anchor, Anchor, Dc, Dc)>().unwrap();
            let _ = a.close().await;
            let _ = b.close().await;
        }
    }
}

/// Child: bytes of RSS per idle connected pair.
fn idle(lib: &str, pairs: usize) {
    let rt = runtime();
    rt.block_on(async {
        // Warm up: code paths, runtime threads, allocator arenas.
        let warm = connect(lib, 2).await;
        close_all(lib, warm).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_bytes();
        let keep = connect(lib, pairs).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_bytes();
        println!("{}", (after.saturating_sub(before)) / pairs);
        close_all(lib, keep).await;
    });
}

/// Child: RSS growth per connection over rounds 2..=10 of create/connect/close/drop.
fn leak(lib: &str) {
    let rt = runtime();
    rt.block_on(async {
        let rounds = leak_rounds();
        let mut after_first = 0;
        for round in 0..rounds {
            let keep = connect(lib, LEAK_PAIRS).await;
            close_all(lib, keep).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if round == 1 {
                after_first = rss_bytes();
            }
        }
        let growth = rss_bytes() as i64 - after_first as i64;
        let connections = ((rounds - 2) * LEAK_PAIRS * 2) as i64;
        println!("{}", growth / connections);
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let mode = args[i + 1].as_str();
        let pairs = env_usize("PAIRS", 100);
        match mode {
            "ours-idle" => idle("ours", pairs),
            "anchor-idle" => idle("anchor", pairs),
            "ours-leak" => leak("ours"),
            "anchor-leak" => leak("anchor"),
            other => panic!("unknown child mode {other}"),
        }
        return;
    }
    let pairs = env_usize("PAIRS", 100);
    let num = |s: String| s.trim().parse::<f64>().expect("child output");
    let ours_idle = num(run_child("ours-idle"));
    let anchor_idle = num(run_child("anchor-idle"));
    let ours_leak = num(run_child("ours-leak"));
    let anchor_leak = num(run_child("anchor-leak"));
    println!("memory: RSS per connected idle pair ({pairs} pairs, each a fresh process)");
    println!(
        "{:<16} {:>14} {:>24}",
        "library", "KiB per pair", "leak B per connection"
    );
    println!(
        "{:<16} {:>14.1} {:>24.0}",
        "webrtc-streams",
        ours_idle / 1024.0,
        ours_leak
    );
    println!(
        "{:<16} {:>14.1} {:>24.0}",
        "webrtc 0.21.1",
        anchor_idle / 1024.0,
        anchor_leak
    );
    println!(
        "ratio memory per pair (ours / webrtc 0.21.1): {:.2} (target <= 0.8); leak: {} rounds x {} pairs, growth after round 2 (goal 0)",
        ours_idle / anchor_idle,
        leak_rounds(),
        LEAK_PAIRS
    );
}
