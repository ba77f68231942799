//! Multicast event streams: every subscriber gets every event from the moment it subscribed,
//! state streams start with the current state, and an idle subscriber stalls nobody.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::{
    PeerConnectionEvent,
    rtc::peer_connection::state::{RTCPeerConnectionState, RTCSignalingState},
};

/// Channels opened by one side while the other side has an idle subscriber. (The `rtc` core
/// walks every channel on each output poll, so tens of thousands of channels are slow in a
/// debug build; the 10,000-event case of the same multicast runs as a unit test in
/// `src/stream.rs`.)
const CHANNELS: usize = 2_000;
/// Per-subscriber backlog.
const CAPACITY: usize = 256;
/// Channels created before the readers catch up.
const BATCH: usize = 100;

#[tokio::test]
async fn idle_subscriber_stalls_nobody_and_learns_what_it_missed() {
    init_log();
    let peer = || {
        webrtc_streams::PeerConnection::builder()
            .bind(["127.0.0.1:0".parse().unwrap()])
            .event_capacity(CAPACITY)
            .build()
    };
    let (a, b) = (peer().await.unwrap(), peer().await.unwrap());
    let mut incoming = b.data_channels();
    let dc_a = a
        .create_data_channel("data", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    let dc_b = within("data channel", incoming.next()).await.unwrap();
    within("open", dc_a.opened()).await.unwrap();
    let mut idle = b.events(); // never read until the end
    let mut reader = b.data_channels();
    let mut second_reader = b.events();

    // Data flows on the existing channel the whole time.
    let echo = tokio::spawn(async move {
        let mut msgs = dc_b.messages();
        while let Some(m) = msgs.next().await {
            if dc_b.send(m.data).await.is_err() {
                break;
            }
        }
    });
    let mut replies = dc_a.messages();

    // Channels are created in batches, each read before the next, so the reading subscribers
    // never fall a whole backlog behind; the idle one falls behind by all of them.
    let mut order = Vec::with_capacity(CHANNELS);
    let mut second_order = Vec::with_capacity(CHANNELS);
    let mut keep = Vec::with_capacity(CHANNELS);
    within("every channel", async {
        for batch in 0..CHANNELS / BATCH {
            for i in batch * BATCH..(batch + 1) * BATCH {
                keep.push(
                    a.create_data_channel(&i.to_string(), Default::default())
                        .await
                        .unwrap(),
                );
            }
            for _ in 0..BATCH {
                let dc = reader.next().await.expect("stream ended");
                order.push(dc.label().to_owned());
            }
            while second_order.len() < order.len() {
                match second_reader.next().await.unwrap() {
                    PeerConnectionEvent::DataChannel(dc) => {
                        second_order.push(dc.label().to_owned())
                    }
                    PeerConnectionEvent::Lagged { missed } => panic!("reader lagged by {missed}"),
                    _ => {}
                }
            }
            let payload = Bytes::from(batch.to_string());
            dc_a.send(payload.clone()).await.unwrap();
            assert_eq!(replies.next().await.unwrap().data, payload);
        }
    })
    .await;
    assert_eq!(reader.missed(), 0);
    let mut labels = order.clone();
    labels.sort_by_key(|l| l.parse::<usize>().unwrap());
    assert_eq!(
        labels,
        (0..CHANNELS).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    // Another full-event subscriber that kept up got all of them, in the same order.
    assert_eq!(second_order, order);
    assert_eq!(keep.len(), CHANNELS);

    // The idle subscriber learns how much it missed, then gets the newest events.
    a.close().await.unwrap();
    b.close().await.unwrap();
    let mut lagged = 0;
    let mut delivered = 0;
    while let Some(ev) = within("idle drains", idle.next()).await {
        match ev {
            PeerConnectionEvent::Lagged { missed } => lagged += missed,
            PeerConnectionEvent::DataChannel(_) => delivered += 1,
            _ => {}
        }
    }
    assert!(
        lagged >= (CHANNELS - CAPACITY) as u64,
        "idle subscriber missed only {lagged}"
    );
    assert_eq!(idle.missed(), lagged);
    assert!(delivered < CHANNELS);
    within("echo ends", echo).await.unwrap();
}

#[tokio::test]
async fn state_streams_start_with_the_current_state() {
    init_log();
    let (a, b, _dc_a, _dc_b) = pair_with_channel("x", Default::default()).await;
    let mut conn = a.connection_states();
    assert_eq!(conn.next().await, Some(RTCPeerConnectionState::Connected));
    let mut sig = b.signaling_states();
    assert_eq!(sig.next().await, Some(RTCSignalingState::Stable));
    // A late subscriber to the event stream sees only what happens after it subscribed.
    let mut late = a.events();
    a.close().await.unwrap();
    let mut got = Vec::new();
    while let Some(ev) = within("late events", late.next()).await {
        got.push(ev);
    }
    assert!(
        got.iter()
            .all(|e| !matches!(e, PeerConnectionEvent::IceCandidate(_))),
        "late subscriber saw old events: {got:?}"
    );
    assert!(got.iter().any(|e| matches!(
        e,
        PeerConnectionEvent::ConnectionStateChange(RTCPeerConnectionState::Closed)
    )));
    assert_eq!(conn.next().await, Some(RTCPeerConnectionState::Closed));
    assert_eq!(conn.next().await, None);
    b.close().await.unwrap();
}
