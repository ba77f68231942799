//! Nothing is lost and nobody waits forever: remote channels announced before anyone
//! listened, typed errors that say why a connection is closed, and the end of every stream.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::{
    CloseReason, Error, IceCandidateEvent, PeerConnectionEvent,
    rtc::peer_connection::state::RTCPeerConnectionState,
};

/// Waits until these local channels are open: the remote side acknowledged them, so it has
/// announced them.
async fn open_all(dcs: &[webrtc_streams::DataChannel]) {
    for dc in dcs {
        within("open", dc.opened()).await.unwrap();
    }
}

#[tokio::test]
async fn remote_channels_wait_for_their_first_reader() {
    init_log();
    let a = loopback_peer().await;
    let b = loopback_peer().await;
    let dc_a = a
        .create_data_channel("early", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    connected(&b).await;
    open_all(std::slice::from_ref(&dc_a)).await;
    // Nobody on `b` listens yet: the channel and its messages wait.
    for i in 0..10u8 {
        dc_a.send(Bytes::from(vec![i])).await.unwrap();
    }
    let mut incoming = b.data_channels();
    let dc_b = within("held channel", incoming.next()).await.unwrap();
    assert_eq!(dc_b.label(), "early");
    assert_eq!(incoming.missed(), 0);
    let mut msgs = dc_b.messages();
    for i in 0..10u8 {
        let m = within("held message", msgs.next()).await.unwrap();
        assert_eq!(&m.data[..], &[i]);
    }
    // The first reader took it: a later subscriber does not see it again.
    drop(incoming);
    let mut events = b.events();
    // A channel opened while nobody listens is held for the next subscriber too: `events()`
    // took the hold now, so a second channel reaches it.
    let dc_a2 = a
        .create_data_channel("late", Default::default())
        .await
        .unwrap();
    open_all(std::slice::from_ref(&dc_a2)).await;
    let label = within("second channel", async {
        loop {
            match events.next().await.expect("events ended") {
                PeerConnectionEvent::DataChannel(dc) => break dc.label().to_owned(),
                PeerConnectionEvent::Lagged { missed } => panic!("lagged by {missed}"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(label, "late");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn first_event_subscriber_receives_channels_announced_before_it() {
    init_log();
    let a = loopback_peer().await;
    let b = loopback_peer().await;
    let dc_a = a
        .create_data_channel("one", Default::default())
        .await
        .unwrap();
    let dc_a2 = a
        .create_data_channel("two", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    connected(&b).await;
    open_all(&[dc_a, dc_a2]).await;
    let mut events = b.events();
    let mut labels = Vec::new();
    within("held channels", async {
        while labels.len() < 2 {
            match events.next().await.expect("events ended") {
                PeerConnectionEvent::DataChannel(dc) => labels.push(dc.label().to_owned()),
                PeerConnectionEvent::Lagged { missed } => panic!("lagged by {missed}"),
                _ => {}
            }
        }
    })
    .await;
    labels.sort();
    assert_eq!(labels, ["one", "two"]);
    // `events()` took them: a `data_channels()` subscriber after it starts empty.
    let mut incoming = b.data_channels();
    a.close().await.unwrap();
    b.close().await.unwrap();
    assert!(within("ends", incoming.next()).await.is_none());
}

#[tokio::test]
async fn closed_says_it_was_closed_here() {
    init_log();
    let a = loopback_peer().await;
    a.close().await.unwrap();
    let r = a.create_offer().await;
    assert!(matches!(r, Err(Error::Closed(CloseReason::Local))), "{r:?}");
    // Closing again is not an error.
    a.close().await.unwrap();
}

#[test]
fn closed_says_the_driver_is_gone_when_its_runtime_stopped() {
    init_log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = rt.block_on(loopback_peer());
    drop(rt); // the driver task goes with its runtime, without closing anything
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(within("offer", a.create_offer()));
    assert!(
        matches!(r, Err(Error::Closed(CloseReason::DriverGone))),
        "{r:?}"
    );
}

#[tokio::test]
async fn descriptions_and_gathering_tell_complete_from_closed() {
    init_log();
    let a = loopback_peer().await;
    assert!(a.local_description().await.unwrap().is_none());
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    within("gathering", a.gathering_complete()).await.unwrap();
    assert!(a.local_description().await.unwrap().is_some());
    a.close().await.unwrap();
    let r = a.local_description().await;
    assert!(matches!(r, Err(Error::Closed(CloseReason::Local))), "{r:?}");
    let r = a.remote_description().await;
    assert!(matches!(r, Err(Error::Closed(CloseReason::Local))), "{r:?}");
    let r = within("gathering after close", a.gathering_complete()).await;
    assert!(matches!(r, Err(Error::Closed(CloseReason::Local))), "{r:?}");

    // Closed while gathering waits (no description set: gathering never starts).
    let b = loopback_peer().await;
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.gathering_complete().await }
    });
    tokio::task::yield_now().await;
    b.close().await.unwrap();
    let r = within("gathering ends", waiting).await.unwrap();
    assert!(matches!(r, Err(Error::Closed(CloseReason::Local))), "{r:?}");
}

#[tokio::test]
async fn candidates_reach_a_subscriber_that_subscribes_after_set_local_description() {
    init_log();
    let a = loopback_peer().await;
    let b = loopback_peer().await;
    let _dc = a
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    // W3C fires `icecandidate` after the call resolved: subscribing now misses nothing.
    let mut candidates = a.ice_candidates();
    let mut got = Vec::new();
    within("candidates", async {
        loop {
            match candidates.next().await.expect("candidates ended") {
                IceCandidateEvent::Candidate(c) => got.push(c),
                IceCandidateEvent::Complete => break,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert!(!got.is_empty(), "no host candidate");
    assert_eq!(candidates.missed(), 0);
    // Trickle them to `b`, with an offer that carries none of them.
    let offer = a.local_description().await.unwrap().unwrap();
    let bare: String = offer
        .sdp
        .split("\r\n")
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=end-of-candidates"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let offer = webrtc_streams::rtc::peer_connection::sdp::RTCSessionDescription::offer(
        bare.trim_end().to_owned() + "\r\n",
    )
    .unwrap();
    b.set_remote_description(offer).await.unwrap();
    for c in got {
        b.add_ice_candidate(c).await.unwrap();
    }
    let answer = b.create_answer().await.unwrap();
    b.set_local_description(answer).await.unwrap();
    within("b gathering", b.gathering_complete()).await.unwrap();
    a.set_remote_description(b.local_description().await.unwrap().unwrap())
        .await
        .unwrap();
    connected(&a).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn early_remote_candidates_are_bounded() {
    init_log();
    let a = loopback_peer().await;
    let candidate =
        |i: usize| webrtc_streams::rtc::peer_connection::transport::RTCIceCandidateInit {
            candidate: format!(
                "candidate:{i} 1 udp 2130706431 127.0.0.1 {} typ host",
                10_000 + i
            ),
            sdp_mid: Some("0".to_owned()),
            sdp_mline_index: Some(0),
            ..Default::default()
        };
    let mut kept = 0;
    let refused = loop {
        match a.add_ice_candidate(candidate(kept)).await {
            Ok(()) => kept += 1,
            Err(e) => break e,
        }
        assert!(kept <= 10_000, "early candidates are not bounded");
    };
    assert!(
        matches!(refused, Error::TooManyEarlyCandidates { max } if max == kept),
        "{refused:?} after {kept}"
    );
    // The connection still works.
    a.create_offer().await.unwrap();
    a.close().await.unwrap();
}

#[tokio::test]
async fn a_remote_close_is_noticed_at_once() {
    init_log();
    let (a, b, _dc_a, dc_b) = pair_with_channel("bye", Default::default()).await;
    let mut states = b.connection_states();
    let mut msgs = dc_b.messages();
    a.close().await.unwrap();
    // The reason tells the close_notify path from the consent timeout (which would say
    // ConsentExpired, after 30 s + the failed timeout); `sim_lossless` bounds it in time.
    assert!(within("channel ends", msgs.next()).await.is_none());
    let mut seen = Vec::new();
    within("b's states end", async {
        while let Some(s) = states.next().await {
            seen.push(s);
        }
    })
    .await;
    assert_eq!(
        seen.last(),
        Some(&RTCPeerConnectionState::Closed),
        "{seen:?}"
    );
    let r = b.create_offer().await;
    assert!(
        matches!(r, Err(Error::Closed(CloseReason::Remote))),
        "{r:?}"
    );
}
