//! A connection that sent a burst gives back its send buffers once it has been quiet for a
//! while: the batch it hands the kernel for segmentation offload (up to 60 KiB) and the queue
//! of datagrams taken from the core. Observed through `SocketStats::send_buffer_bytes` and,
//! for the whole pair, a counting allocator (a current-thread runtime: every task and both
//! drivers on the test's thread), on Tokio's paused clock (no wall-clock wait).
#![cfg(all(feature = "runtime-tokio", target_os = "linux"))]

mod common;

#[path = "common/alloc.rs"]
mod alloc;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;

/// Bytes sent in the burst, in 64 KiB messages.
const BURST: usize = 4 << 20;
const MESSAGE: usize = 64 * 1024;

#[tokio::test(start_paused = true)]
async fn a_connection_that_sent_a_burst_gives_its_send_buffers_back_when_idle() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("burst", Default::default()).await;
    let mut inbound = dc_b.messages();
    dc_a.send(Bytes::from_static(b"warm")).await.unwrap();
    within("warm-up message", inbound.next()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = alloc::live_bytes();
    let idle_buffers = a.socket_stats().send_buffer_bytes;

    let sender = {
        let dc_a = dc_a.clone();
        tokio::spawn(async move {
            for i in 0..BURST / MESSAGE {
                dc_a.send(Bytes::from(vec![i as u8; MESSAGE]))
                    .await
                    .unwrap();
            }
        })
    };
    let mut received = 0;
    while received < BURST {
        let m = within("burst message", inbound.next()).await.unwrap();
        assert!(m.data.iter().all(|b| *b == m.data[0]), "message corrupted");
        received += m.data.len();
    }
    sender.await.unwrap();
    let burst_buffers = a.socket_stats().send_buffer_bytes;
    let after_burst = alloc::live_bytes();
    // Quiet for longer than the driver's idle threshold (1 s) plus a few timer ticks.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rested_buffers = a.socket_stats().send_buffer_bytes;
    let rested = alloc::live_bytes();
    let kib = |b: isize| b as f64 / 1024.0;
    eprintln!(
        "sender's send buffers: idle {idle_buffers} B, after the burst {burst_buffers} B, \
         rested {rested_buffers} B; the pair's live heap: idle {:.1} KiB, after the burst \
         {:+.1} KiB, rested {:+.1} KiB (the rest is what rtc's queues keep)",
        kib(idle),
        kib(after_burst - idle),
        kib(rested - idle)
    );
    // Loopback segments (GSO): a burst fills batches of many datagrams.
    assert!(
        burst_buffers >= 16 * 1024,
        "a burst on loopback should have grown the batch buffer: {burst_buffers} B"
    );
    assert!(
        rested_buffers <= 4 * 1024,
        "the sender kept {rested_buffers} B of send buffers after resting"
    );
    assert!(
        rested < after_burst - (burst_buffers as isize - rested_buffers as isize) / 2,
        "the pair's heap did not shrink by the buffers given back"
    );
    // Still a working connection, and the buffers grow again on demand.
    dc_a.send(Bytes::from(vec![9u8; MESSAGE])).await.unwrap();
    let m = within("message after resting", inbound.next())
        .await
        .unwrap();
    assert_eq!(m.data.len(), MESSAGE);
    drop((dc_a, dc_b));
    a.close().await.unwrap();
    b.close().await.unwrap();
}
