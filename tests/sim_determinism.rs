//! Same seed, same run: two simulations with the same seed over a lossy, jittery, reordering,
//! duplicating network produce the same event trace (every state change, channel opening and
//! received message, with its virtual arrival time); another seed produces another trace.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    DataChannel,
    runtime::sim::{LinkConfig, SimHandle, SimRuntime},
};

const LIMIT: Duration = Duration::from_secs(120);

fn network() -> LinkConfig {
    LinkConfig::new()
        .delay(Duration::from_millis(20))
        .jitter(Duration::from_millis(10))
        .loss(0.1)
        .reorder(0.05, Duration::from_millis(15))
        .duplicate(0.02)
}

fn payload(i: usize) -> Bytes {
    let len = 1 + (i * 7919) % 6000;
    Bytes::from((0..len).map(|j| (i * 31 + j) as u8).collect::<Vec<u8>>())
}

/// Channels besides the one carrying messages.
const SIDE_CHANNELS: usize = 4;

/// Records every ready state of `dc`.
fn watch_channel(sim: &SimHandle, trace: &Trace, who: &'static str, dc: &DataChannel) {
    let (mut states, label, trace) = (dc.ready_states(), dc.label().to_owned(), trace.clone());
    drop(sim.spawn(async move {
        while let Some(s) = states.next().await {
            trace.record(who, format!("{label} {s}"));
        }
    }));
}

/// One run: connect, exchange messages both ways, close; returns the trace.
fn run(seed: u64) -> Trace {
    let sim = SimRuntime::new(seed);
    sim.set_default_link(network());
    let h = sim.handle().clone();
    let trace = Trace::new(&h);
    sim.block_on(async {
        let a = peer(&h, HOST_A).await;
        let b = peer(&h, HOST_B).await;
        let watch_a = trace.watch("a", &a);
        let watch_b = trace.watch("b", &b);
        let mut incoming = b.data_channels();
        let dc_a = a
            .create_data_channel("det", Default::default())
            .await
            .unwrap();
        // Idle side channels: their states (closing all at once at the end) are traced too.
        let mut side = Vec::new();
        for i in 0..SIDE_CHANNELS {
            let dc = a
                .create_data_channel(&format!("side-{i}"), Default::default())
                .await
                .unwrap();
            watch_channel(&h, &trace, "a", &dc);
            side.push(dc);
        }
        negotiate(&a, &b).await;
        let mut dc_b = None;
        for _ in 0..=SIDE_CHANNELS {
            let dc = within(&h, "remote channel", LIMIT, incoming.next())
                .await
                .unwrap();
            watch_channel(&h, &trace, "b", &dc);
            if dc.label() == "det" {
                dc_b = Some(dc);
            } else {
                side.push(dc);
            }
        }
        let dc_b = dc_b.expect("no channel \"det\"");
        within(&h, "open a", LIMIT, dc_a.opened()).await.unwrap();
        trace.record("a", "channel open");
        within(&h, "open b", LIMIT, dc_b.opened()).await.unwrap();
        trace.record("b", "channel open");

        // b reads 40 messages from a and answers every fourth one.
        let reader = {
            let (trace, dc_b) = (trace.clone(), dc_b.clone());
            h.spawn(async move {
                let mut msgs = dc_b.messages();
                for i in 0..40 {
                    let m = msgs.next().await.expect("b's messages ended");
                    trace.record(
                        "b",
                        format!("recv {} {:08x}", m.data.len(), checksum(&m.data)),
                    );
                    if i % 4 == 0 {
                        dc_b.send(payload(1000 + i)).await.unwrap();
                    }
                }
            })
        };
        let mut replies = dc_a.messages();
        for i in 0..40 {
            dc_a.send(payload(i)).await.unwrap();
        }
        within(&h, "all messages", LIMIT, reader).await;
        within(&h, "all replies", LIMIT, async {
            for _ in 0..10 {
                let m = replies.next().await.expect("a's messages ended");
                trace.record(
                    "a",
                    format!("recv {} {:08x}", m.data.len(), checksum(&m.data)),
                );
            }
        })
        .await;
        a.close().await.unwrap();
        b.close().await.unwrap();
        within(&h, "a's events end", LIMIT, watch_a).await;
        within(&h, "b's events end", LIMIT, watch_b).await;
        trace.record("-", "done");
    });
    let stats = sim.network_stats();
    trace.record("-", format!("{stats:?}"));
    trace
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    init_log();
    let wall = Instant::now();
    let first = run(7);
    let second = run(7);
    let other = run(8);
    println!("3 runs in {:?} of wall time", wall.elapsed());
    println!("{}", first.dump());

    let lines = first.lines();
    for expected in [
        "ConnectionStateChange(Connected)",
        "channel open",
        "events ended",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "trace lacks {expected:?}"
        );
    }
    assert_eq!(lines.iter().filter(|l| l.contains("recv")).count(), 50);
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("lost: ") && !l.contains("lost: 0,")),
        "the network lost nothing: the test proves little"
    );
    assert!(
        first.lines() == second.lines(),
        "same seed, different traces:\n--- first\n{}\n--- second\n{}",
        first.dump(),
        second.dump()
    );
    assert_ne!(
        first.lines(),
        other.lines(),
        "another seed gave the same trace"
    );
}
