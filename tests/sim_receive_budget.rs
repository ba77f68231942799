//! The receive budget: all channels of a connection share one bound on unread messages.
//!
//! Before it, each channel had an inbox of its own, so memory grew with the number of
//! channels the *remote* peer chose to open, inboxes nobody could read any more were kept,
//! and one full inbox stopped reading for every channel at once.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use sim_common::*;
use webrtc_streams::{
    DataChannel, PeerConnection, data_channel::DEFAULT_RECEIVE_BUDGET, runtime::sim::SimRuntime,
};

const LIMIT: Duration = Duration::from_secs(60);
const MESSAGE: usize = 16 * 1024;

fn payload(channel: usize, i: usize) -> Bytes {
    Bytes::from(vec![(channel * 31 + i) as u8; MESSAGE])
}

/// Sends `n` messages on `dc` from a task of its own.
fn send_in_background(
    sim: &webrtc_streams::runtime::sim::SimHandle,
    dc: &DataChannel,
    channel: usize,
    n: usize,
) {
    let dc = dc.clone();
    let _detached = sim.spawn(async move {
        for i in 0..n {
            if dc.send(payload(channel, i)).await.is_err() {
                return;
            }
        }
    });
}

/// Waits until `pc.received_amount()` has not changed for a second of virtual time.
async fn settled(sim: &webrtc_streams::runtime::sim::SimHandle, pc: &PeerConnection) -> usize {
    let mut last = usize::MAX;
    loop {
        sim.sleep(Duration::from_secs(1)).await;
        let now = pc.received_amount();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The remote peer opens 32 channels and sends 256 KiB on each, while the receiver's event
/// stream (which holds every new channel) is never read: unread messages stay within the
/// budget, and are freed once nobody can read them any more.
#[test]
fn many_remote_channels_share_one_budget() {
    init_log();
    let sim = SimRuntime::new(21);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = peer(&h, HOST_A).await;
        let b = peer(&h, HOST_B).await;
        let unread_events = b.events();
        let mut channels = Vec::new();
        for i in 0..32 {
            channels.push(
                a.create_data_channel(&format!("c{i}"), Default::default())
                    .await
                    .unwrap(),
            );
        }
        negotiate(&a, &b).await;
        for (i, dc) in channels.iter().enumerate() {
            within(&h, "open", LIMIT, dc.opened()).await.unwrap();
            send_in_background(&h, dc, i, 256 * 1024 / MESSAGE);
        }
        let held = within(&h, "settle", LIMIT, settled(&h, &b)).await;
        assert!(held > 0, "nothing was delivered");
        assert!(
            held <= DEFAULT_RECEIVE_BUDGET + MESSAGE,
            "{held} bytes held for unread channels (budget {DEFAULT_RECEIVE_BUDGET})"
        );
        // The only thing that could still read them goes away: the memory is freed.
        drop(unread_events);
        within(&h, "inboxes freed", LIMIT, async {
            while b.received_amount() > 0 {
                h.sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// A channel whose reader does not read holds back its sibling only once its unread messages
/// have spent the budget; reading them lets everything through, in order.
#[test]
fn a_slow_channel_holds_back_others_only_once_the_budget_is_spent() {
    init_log();
    let sim = SimRuntime::new(22);
    let h = sim.handle().clone();
    sim.block_on(async {
        let (a, b, ping, pong) = pair_with_channel(&h, "echo", Default::default(), LIMIT).await;
        let mut incoming = b.data_channels();
        let slow_tx = a
            .create_data_channel("slow", Default::default())
            .await
            .unwrap();
        let slow_rx = within(&h, "slow channel", LIMIT, incoming.next())
            .await
            .unwrap();
        within(&h, "open", LIMIT, slow_tx.opened()).await.unwrap();
        let echo = pong.clone();
        let _echo = h.spawn(async move {
            let mut rx = echo.messages();
            while let Some(m) = rx.next().await {
                if echo.send(m.data).await.is_err() {
                    break;
                }
            }
        });
        let mut pongs = ping.messages();

        // 1.5 MiB unread on the slow channel: within the 2 MiB budget, so the echo flows.
        let first = 3 * 512 * 1024 / MESSAGE;
        send_in_background(&h, &slow_tx, 0, first);
        within(&h, "settle", LIMIT, settled(&h, &b)).await;
        assert_eq!(b.received_amount(), first * MESSAGE);
        for i in 0..10 {
            ping.send(Bytes::from(format!("{i}"))).await.unwrap();
            let m = within(&h, "echo beside a slow channel", LIMIT, pongs.next()).await;
            assert_eq!(m.unwrap().data, format!("{i}").as_bytes());
        }

        // Another 1.5 MiB: the budget is spent, and the echo waits for the slow reader.
        let slow_tx2 = slow_tx.clone();
        let _more = h.spawn(async move {
            for i in first..2 * first {
                if slow_tx2.send(payload(0, i)).await.is_err() {
                    return;
                }
            }
        });
        within(&h, "settle", LIMIT, settled(&h, &b)).await;
        assert!(b.received_amount() <= DEFAULT_RECEIVE_BUDGET + MESSAGE);
        ping.send(Bytes::from_static(b"stuck")).await.unwrap();
        h.sleep(Duration::from_secs(5)).await;
        assert!(
            pongs.next().now_or_never().is_none(),
            "the budget was not enforced"
        );

        // The slow reader catches up: every byte arrives in order, and the echo resumes.
        let mut slow = slow_rx.messages();
        within(&h, "slow reader", LIMIT, async {
            for i in 0..2 * first {
                assert_eq!(slow.next().await.unwrap().data, payload(0, i));
            }
        })
        .await;
        let m = within(&h, "echo after the slow reader", LIMIT, pongs.next())
            .await
            .unwrap();
        assert_eq!(&m.data[..], b"stuck");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
