//! Typed streams that fall behind say so: `ice_candidates()` yields an in-band
//! `IceCandidateEvent::Lagged`, and state streams conflate (a lagging reader skips to the
//! current state).

mod common;

use common::*;
use futures::StreamExt;
use webrtc_streams::{
    IceCandidateEvent, PeerConnection, rtc::peer_connection::state::RTCSignalingState,
};

/// A loopback peer whose subscribers may fall only `capacity` events behind.
async fn small_peer(capacity: usize) -> PeerConnection {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .event_capacity(capacity)
        .build()
        .await
        .expect("build")
}

#[tokio::test]
async fn a_candidate_subscriber_that_fell_behind_is_told_in_band() {
    init_log();
    let a = small_peer(1).await;
    let mut candidates = a.ice_candidates();
    let _dc = a
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    within("gathering", a.gathering_complete()).await.unwrap();
    // One host candidate, then the end marker: one more than the capacity, unread. The
    // candidate is lost, and the reader sees it where it was lost.
    let first = within("first", candidates.next()).await.expect("ended");
    assert_eq!(first, IceCandidateEvent::Lagged { missed: 1 });
    let second = within("second", candidates.next()).await.expect("ended");
    assert_eq!(second, IceCandidateEvent::Complete);
    assert_eq!(candidates.missed(), 1);
    // The fallback the docs give: the local description holds the lost candidate.
    let sdp = a.local_description().await.unwrap().unwrap().sdp;
    assert!(sdp.contains("a=candidate:"), "{sdp}");
    a.close().await.unwrap();
    assert_eq!(within("end", candidates.next()).await, None);
}

#[tokio::test]
async fn a_state_subscriber_that_fell_behind_reads_the_current_state_next() {
    init_log();
    let a = small_peer(2).await;
    let b = small_peer(2).await;
    let _dc = a
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    let mut states = a.signaling_states();
    assert_eq!(
        within("current", states.next()).await,
        Some(RTCSignalingState::Stable)
    );
    // Three offer/answer rounds: six changes on `a`, unread, with room for two.
    for _ in 0..3 {
        negotiate(&a, &b).await;
    }
    assert_eq!(a.signaling_state(), RTCSignalingState::Stable);
    // Conflated: the next item is the current state, not a stale `HaveLocalOffer`.
    assert_eq!(
        within("after lag", states.next()).await,
        Some(RTCSignalingState::Stable)
    );
    assert_eq!(states.missed(), 5);
    // Then every change again, in order.
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    assert_eq!(
        within("next change", states.next()).await,
        Some(RTCSignalingState::HaveLocalOffer)
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
    assert_eq!(
        within("closed", states.next()).await,
        Some(RTCSignalingState::Closed)
    );
    assert_eq!(within("end", states.next()).await, None);
}

/// `data_channels()` has no lag item of its own; `with_lag()` puts the loss where it happened:
/// a subscriber that may fall two behind and reads only after five remote channels opened is
/// told that three were missed, then gets the last two announced (`rtc` opens channels created
/// before the connection in an order of its own).
#[tokio::test]
async fn a_channel_subscriber_that_fell_behind_learns_where_with_lag() {
    use webrtc_streams::WithLag;
    init_log();
    let a = small_peer(64).await;
    let b = small_peer(2).await;
    let mut channels = b.data_channels().with_lag();
    let mut opened = Vec::new();
    for i in 0..5 {
        let dc = a
            .create_data_channel(&format!("c{i}"), Default::default())
            .await
            .unwrap();
        opened.push(dc);
    }
    negotiate(&a, &b).await;
    for dc in &opened {
        within("open", dc.opened()).await.unwrap();
    }
    let first = within("lag", channels.next()).await.expect("ended");
    assert_eq!(first, WithLag::Lagged { missed: 3 });
    let mut labels = Vec::new();
    for _ in 0..2 {
        match within("channel", channels.next()).await.expect("ended") {
            WithLag::Item(dc) => labels.push(dc.label().to_owned()),
            other => panic!("expected a channel, got {other:?}"),
        }
    }
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), 2, "two different channels: {labels:?}");
    assert_eq!(channels.missed(), 3);
}
