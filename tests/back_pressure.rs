//! Back-pressure end to end: a fast sender against a reader that pauses. Memory stays bounded
//! on both sides, and every byte arrives once the reader resumes.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::{DataChannelEvent, PeerConnection};

const MESSAGE: usize = 16 * 1024;
const TOTAL: usize = 32 * 1024 * 1024;
const INBOX: usize = 256 * 1024;
const HIGH_WATER: usize = 256 * 1024;

async fn peer() -> PeerConnection {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .receive_budget(INBOX)
        .data_channel_high_water_mark(HIGH_WATER)
        .build()
        .await
        .unwrap()
}

fn chunk(i: usize) -> Bytes {
    Bytes::from((0..MESSAGE).map(|j| (i * 7 + j) as u8).collect::<Vec<u8>>())
}

#[tokio::test]
async fn paused_reader_bounds_memory_and_loses_nothing() {
    init_log();
    let a = peer().await;
    let b = peer().await;
    let mut incoming = b.data_channels();
    let tx = a
        .create_data_channel("bulk", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    let rx = within("remote channel", incoming.next()).await.unwrap();
    within("open", tx.opened()).await.unwrap();

    let sent = Arc::new(AtomicUsize::new(0));
    let max_buffered = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (tx, sent, max_buffered) = (tx.clone(), sent.clone(), max_buffered.clone());
        tokio::spawn(async move {
            for i in 0..TOTAL / MESSAGE {
                tx.send(chunk(i)).await.unwrap();
                sent.fetch_add(MESSAGE, Ordering::SeqCst);
                max_buffered.fetch_max(tx.buffered_amount(), Ordering::SeqCst);
            }
        })
    };

    let mut msgs = rx.messages();
    let mut received = 0usize;
    let mut index = 0usize;
    let mut check = |m: webrtc_streams::DataChannelMessage, received: &mut usize| {
        assert_eq!(m.data, chunk(index), "message {index}");
        index += 1;
        *received += m.data.len();
    };
    // Read 1 MiB, then stop reading.
    while received < 1024 * 1024 {
        let m = within("first MiB", msgs.next()).await.unwrap();
        check(m, &mut received);
    }
    // Wait until the sender is blocked: `sent` stops moving.
    let stalled_at = within("sender stalls", async {
        let mut last = usize::MAX;
        let mut still = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = sent.load(Ordering::SeqCst);
            if now == last {
                still += 1;
                if still == 10 {
                    return now;
                }
            } else {
                (last, still) = (now, 0);
            }
        }
    })
    .await;
    // What can be in flight while the reader sleeps: the inbox, SCTP's receive window (1 MiB)
    // and the core's read backlog on the receiver, the send buffer on the sender.
    let bound = 1024 * 1024 + INBOX + 1024 * 1024 + 256 * MESSAGE + HIGH_WATER + 2 * MESSAGE;
    assert!(stalled_at < TOTAL, "the sender was never slowed down");
    assert!(
        stalled_at - received <= bound,
        "{} bytes in flight while the reader paused (bound {bound})",
        stalled_at - received
    );
    assert!(
        rx.received_amount() <= INBOX + MESSAGE,
        "inbox {}",
        rx.received_amount()
    );
    assert!(
        tx.buffered_amount() <= HIGH_WATER + MESSAGE,
        "send buffer {}",
        tx.buffered_amount()
    );

    // Resume: everything arrives, in order and intact.
    within("the rest", async {
        while received < TOTAL {
            let m = msgs.next().await.expect("stream ended early");
            check(m, &mut received);
        }
    })
    .await;
    within("sender done", sender).await.unwrap();
    assert!(max_buffered.load(Ordering::SeqCst) <= HIGH_WATER + MESSAGE);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn buffered_amount_low_fires_when_the_buffer_drains() {
    init_log();
    let (a, b, tx, rx) = pair_with_channel("low", Default::default()).await;
    tx.set_buffered_amount_low_threshold(64 * 1024);
    let mut events = tx.events();
    let reader = tokio::spawn(async move {
        let mut msgs = rx.messages();
        let mut n = 0;
        while n < 64 * MESSAGE {
            n += msgs.next().await.unwrap().data.len();
        }
    });
    for i in 0..64 {
        tx.send(chunk(i)).await.unwrap();
    }
    within("low event", async {
        while let Some(ev) = events.next().await {
            if ev == DataChannelEvent::BufferedAmountLow {
                return;
            }
        }
        panic!("events ended");
    })
    .await;
    within("reader", reader).await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}
