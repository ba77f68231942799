//! `DataChannel::send` is cancel safe: a send future dropped while it waits for room in the
//! connection's command queue (under a timeout, in a `select!`, in an aborted task) leaves the
//! buffered amount as it was. Before the fix its bytes stayed counted for good: every later
//! `send` waited forever and `close()` never finished.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use sim_common::*;
use webrtc_streams::{rtc::data_channel::RTCDataChannelState, runtime::sim::SimRuntime};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn dropped_sends_leave_no_buffered_bytes() {
    init_log();
    let sim = SimRuntime::new(11);
    let h = sim.handle().clone();
    sim.block_on(async {
        let (a, b, tx, rx) = pair_with_channel(&h, "c", Default::default(), LIMIT).await;
        // Without yielding, the driver cannot run: the command queue fills up, and every send
        // after that is polled once, finds it full, and is dropped.
        let (mut queued, mut dropped) = (0, 0);
        for i in 0..400u32 {
            match tx.send(Bytes::from(vec![i as u8; 1000])).now_or_never() {
                Some(r) => {
                    r.unwrap();
                    queued += 1;
                }
                None => dropped += 1,
            }
        }
        assert!(dropped > 0, "the command queue never filled");
        // Every queued message arrives; then nothing is left buffered.
        let mut msgs = rx.messages();
        within(&h, "queued messages", LIMIT, async {
            for _ in 0..queued {
                msgs.next().await.expect("stream ended");
            }
        })
        .await;
        within(&h, "buffer drained", LIMIT, async {
            while tx.buffered_amount() > 0 {
                h.sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        // Sending and closing still work.
        within(
            &h,
            "send after drops",
            LIMIT,
            tx.send(Bytes::from_static(b"after")),
        )
        .await
        .unwrap();
        let m = within(&h, "message after drops", LIMIT, msgs.next())
            .await
            .unwrap();
        assert_eq!(&m.data[..], b"after");
        tx.close().await.unwrap();
        let mut states = tx.ready_states();
        within(&h, "channel closed", LIMIT, async {
            while let Some(s) = states.next().await {
                if s == RTCDataChannelState::Closed {
                    return;
                }
            }
        })
        .await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
