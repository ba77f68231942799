//! Offer/answer between two loopback peers; channels open in both directions.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::{
    IceCandidateEvent, PeerConnectionEvent,
    rtc::peer_connection::state::{
        RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
    },
};

#[tokio::test]
async fn channels_open_in_both_directions() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("a-to-b", Default::default()).await;
    assert_eq!(dc_b.label(), "a-to-b");
    assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
    within("b connected", connected(&b)).await;

    // A channel created by the answerer after the connection is up opens too.
    let mut incoming = a.data_channels();
    let dc_b2 = b
        .create_data_channel("b-to-a", Default::default())
        .await
        .unwrap();
    let dc_a2 = within("b-to-a arrives", incoming.next()).await.unwrap();
    assert_eq!(dc_a2.label(), "b-to-a");
    within("open", dc_b2.opened()).await.unwrap();

    let mut msgs_b = dc_b.messages();
    let mut msgs_a2 = dc_a2.messages();
    dc_a.send(Bytes::from_static(b"ping")).await.unwrap();
    dc_b2.send_text("pong").await.unwrap();
    let m = within("ping", msgs_b.next()).await.unwrap();
    assert_eq!(&m.data[..], b"ping");
    assert!(!m.is_string);
    let m = within("pong", msgs_a2.next()).await.unwrap();
    assert_eq!(m.text(), Some("pong"));

    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn trickle_ice_with_event_stream() {
    init_log();
    let a = loopback_peer().await;
    let b = loopback_peer().await;
    let mut ev_a = a.events();
    let mut cand_a = a.ice_candidates();
    let mut cand_b = b.ice_candidates();
    let _dc = a
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer.clone()).await.unwrap();
    b.set_remote_description(offer).await.unwrap();
    let answer = b.create_answer().await.unwrap();
    b.set_local_description(answer.clone()).await.unwrap();
    a.set_remote_description(answer).await.unwrap();
    // Forward candidates until each side's end-of-candidates marker.
    while let Some(IceCandidateEvent::Candidate(c)) = within("cand a", cand_a.next()).await {
        b.add_ice_candidate(c).await.unwrap();
    }
    while let Some(IceCandidateEvent::Candidate(c)) = within("cand b", cand_b.next()).await {
        a.add_ice_candidate(c).await.unwrap();
    }
    within("a connected", connected(&a)).await;
    a.close().await.unwrap();

    // The event stream saw the whole story in order.
    let mut seen = Vec::new();
    while let Some(ev) = within("events end", ev_a.next()).await {
        seen.push(ev);
    }
    let pos = |f: &dyn Fn(&PeerConnectionEvent) -> bool| {
        seen.iter()
            .position(f)
            .unwrap_or_else(|| panic!("missing event in {seen:?}"))
    };
    let negotiation = pos(&|e| matches!(e, PeerConnectionEvent::NegotiationNeeded));
    let have_offer = pos(&|e| {
        matches!(
            e,
            PeerConnectionEvent::SignalingStateChange(RTCSignalingState::HaveLocalOffer)
        )
    });
    let gathering = pos(&|e| {
        matches!(
            e,
            PeerConnectionEvent::IceGatheringStateChange(RTCIceGatheringState::Gathering)
        )
    });
    let candidate = pos(&|e| matches!(e, PeerConnectionEvent::IceCandidate(Some(_))));
    let end = pos(&|e| matches!(e, PeerConnectionEvent::IceCandidate(None)));
    let complete = pos(&|e| {
        matches!(
            e,
            PeerConnectionEvent::IceGatheringStateChange(RTCIceGatheringState::Complete)
        )
    });
    let connected = pos(&|e| {
        matches!(
            e,
            PeerConnectionEvent::ConnectionStateChange(RTCPeerConnectionState::Connected)
        )
    });
    let closed = pos(&|e| {
        matches!(
            e,
            PeerConnectionEvent::ConnectionStateChange(RTCPeerConnectionState::Closed)
        )
    });
    assert!(negotiation < have_offer && have_offer < gathering && gathering < candidate);
    assert!(candidate < end && end < complete && complete < connected && connected < closed);
    b.close().await.unwrap();
}
