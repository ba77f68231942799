//! Connection lifecycle: close, drop, and what each side observes.

mod common;

use std::{
    net::{SocketAddr, UdpSocket as StdUdpSocket},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use futures::{Stream, StreamExt};
use webrtc_streams::{
    DataChannel, DataChannelEvent, PeerConnection,
    rtc::{
        data_channel::RTCDataChannelState,
        peer_connection::state::{
            RTCIceConnectionState, RTCPeerConnectionState, RTCSignalingState,
        },
    },
};

/// Reads `s` until it ends; fails the test if it does not end within the timeout.
async fn ends<S: Stream + Unpin>(what: &str, mut s: S) {
    within(what, async { while s.next().await.is_some() {} }).await
}

/// Reads `s` until it ends and returns its last item.
async fn last<S: Stream + Unpin>(what: &str, s: S) -> Option<S::Item> {
    within(what, s.fold(None, |_, item| async move { Some(item) })).await
}

/// Whether something holds `addr`: it cannot be bound right now.
fn in_use(addr: SocketAddr) -> bool {
    StdUdpSocket::bind(addr).is_err()
}

/// Waits until `addr` can be bound again (the driver releases its socket asynchronously).
async fn released(addr: SocketAddr) {
    within("port released", async {
        while in_use(addr) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A 127.0.0.1 address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let s = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// A connection bound to exactly `addr`.
async fn peer_at(addr: SocketAddr) -> PeerConnection {
    within("build", PeerConnection::builder().bind([addr]).build())
        .await
        .expect("build")
}

/// Waits until the channel's ready state reaches `Closed`.
async fn channel_closes(what: &str, dc: &DataChannel) {
    let mut states = dc.ready_states();
    within(what, async {
        while let Some(s) = states.next().await {
            if s == RTCDataChannelState::Closed {
                return;
            }
        }
        panic!("ready state stream ended before Closed");
    })
    .await;
    assert_eq!(dc.ready_state(), RTCDataChannelState::Closed);
}

/// `close()` twice returns Ok both times and leaves every state `Closed`, on a fresh and on a
/// connected connection.
#[tokio::test]
async fn close_is_idempotent() {
    init_log();
    let fresh = loopback_peer().await;
    within("close fresh", fresh.close()).await.unwrap();
    within("close fresh again", fresh.close()).await.unwrap();
    assert_eq!(fresh.connection_state(), RTCPeerConnectionState::Closed);
    assert_eq!(fresh.signaling_state(), RTCSignalingState::Closed);

    let (a, b, _dc_a, _dc_b) = pair_with_channel("x", Default::default()).await;
    within("close", a.close()).await.unwrap();
    within("close again", a.close()).await.unwrap();
    // A clone is the same connection: closing through it is a no-op too.
    within("close clone", a.clone().close()).await.unwrap();
    assert_eq!(a.connection_state(), RTCPeerConnectionState::Closed);
    assert_eq!(a.signaling_state(), RTCSignalingState::Closed);
    assert_eq!(a.ice_connection_state(), RTCIceConnectionState::Closed);
    within("close b", b.close()).await.unwrap();
    within("close b again", b.close()).await.unwrap();
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Closed);
}

/// After `close()` every connection and channel stream ends, with the states' last item
/// being `Closed`.
#[tokio::test]
async fn every_stream_ends_after_close() {
    init_log();
    let (a, b, dc_a, _dc_b) = pair_with_channel("x", Default::default()).await;
    let events = a.events();
    let candidates = a.ice_candidates();
    let mut connection = a.connection_states();
    let mut signaling = a.signaling_states();
    let mut ice_connection = a.ice_connection_states();
    let ice_gathering = a.ice_gathering_states();
    let data_channels = a.data_channels();
    let negotiation = a.negotiation_needed();
    let messages = dc_a.messages();
    let mut dc_events = dc_a.events();
    let mut ready = dc_a.ready_states();

    within("close", a.close()).await.unwrap();

    ends("events", events).await;
    ends("ice_candidates", candidates).await;
    ends("ice_gathering_states", ice_gathering).await;
    ends("data_channels", data_channels).await;
    ends("negotiation_needed", negotiation).await;
    ends("messages", messages).await;

    assert_eq!(
        last("connection_states", connection.by_ref()).await,
        Some(RTCPeerConnectionState::Closed)
    );
    assert_eq!(
        last("signaling_states", signaling.by_ref()).await,
        Some(RTCSignalingState::Closed)
    );
    assert_eq!(
        last("ice_connection_states", ice_connection.by_ref()).await,
        Some(RTCIceConnectionState::Closed)
    );
    let seen: Vec<DataChannelEvent> = within("dc events", dc_events.by_ref().collect()).await;
    assert_eq!(seen.last(), Some(&DataChannelEvent::Closed), "{seen:?}");
    let states: Vec<RTCDataChannelState> = within("ready_states", ready.by_ref().collect()).await;
    assert_eq!(
        states.last(),
        Some(&RTCDataChannelState::Closed),
        "{states:?}"
    );

    // Streams subscribed after the close end at once (state streams after the current state).
    ends("late events", a.events()).await;
    ends("late messages", dc_a.messages()).await;
    ends("late dc events", dc_a.events()).await;
    let late: Vec<_> = within("late connection_states", a.connection_states().collect()).await;
    assert_eq!(late, vec![RTCPeerConnectionState::Closed]);
    let late: Vec<_> = within("late ready_states", dc_a.ready_states().collect()).await;
    assert_eq!(late, vec![RTCDataChannelState::Closed]);

    b.close().await.unwrap();
}

/// When one side closes the connection, the other side's data channel closes and its message
/// stream ends (after the messages already received).
#[tokio::test]
async fn remote_close_closes_the_remote_channel() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("x", Default::default()).await;
    let mut msgs_b = dc_b.messages();
    let mut events_b = dc_b.events();
    dc_a.send(Bytes::from_static(b"last words")).await.unwrap();
    let m = within("last message", msgs_b.next()).await.unwrap();
    assert_eq!(&m.data[..], b"last words");

    within("close a", a.close()).await.unwrap();

    channel_closes("b's channel closes", &dc_b).await;
    assert!(within("b's messages end", msgs_b.next()).await.is_none());
    let seen: Vec<_> = within("b's channel events end", events_b.by_ref().collect()).await;
    assert_eq!(seen.last(), Some(&DataChannelEvent::Closed), "{seen:?}");
    let r = within("send to closed", dc_b.send(Bytes::from_static(b"x"))).await;
    assert!(r.is_err(), "send on remotely closed channel: {r:?}");
    // b itself stays usable until it is closed.
    within("close b", b.close()).await.unwrap();
}

/// Closing one data channel closes its remote end; the connection and its other channels
/// stay up.
#[tokio::test]
async fn channel_close_reaches_the_remote_end() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("first", Default::default()).await;
    let mut incoming = b.data_channels();
    let other_a = a
        .create_data_channel("second", Default::default())
        .await
        .unwrap();
    let other_b = within("second arrives", incoming.next()).await.unwrap();
    within("second open", other_a.opened()).await.unwrap();

    within("close first", dc_a.close()).await.unwrap();
    channel_closes("first closes locally", &dc_a).await;
    channel_closes("first closes remotely", &dc_b).await;
    assert!(
        within("remote messages end", dc_b.messages().next())
            .await
            .is_none()
    );

    assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
    round_trip(&other_a, &other_b, b"still here").await;
    round_trip(&other_b, &other_a, b"me too").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Messages sent before `DataChannel::close()` reach the remote end, in order, before its
/// message stream ends (W3C closing procedure: finish sending pending messages first).
#[tokio::test]
async fn messages_sent_before_channel_close_are_delivered() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("x", Default::default()).await;
    let msgs_b = dc_b.messages();
    for i in 0..100u32 {
        within("send", dc_a.send(Bytes::from(i.to_be_bytes().to_vec())))
            .await
            .unwrap();
    }
    within("close", dc_a.close()).await.unwrap();
    let got: Vec<u32> = within(
        "remote messages end",
        msgs_b
            .map(|m| u32::from_be_bytes(m.data[..].try_into().unwrap()))
            .collect(),
    )
    .await;
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// When `close()` returns, the driver has stopped and its port can be bound again at once
/// (as documented), also on a multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_after_the_port_is_released() {
    init_log();
    for i in 0..200 {
        let addr = free_addr();
        let pc = peer_at(addr).await;
        within("close", pc.close()).await.unwrap();
        assert!(
            !in_use(addr),
            "round {i}: port still bound after close() returned"
        );
    }
}

/// Dropping the last handles (connection and channel) stops the driver: its event stream
/// ends and its UDP port is released.
#[tokio::test]
async fn dropping_last_handle_stops_driver_and_releases_port() {
    init_log();
    let addr = free_addr();
    let pc = peer_at(addr).await;
    assert_eq!(pc.local_addrs(), &[addr]);
    let dc = pc
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    let events = pc.events();
    let ready = dc.ready_states();
    let messages = dc.messages();
    assert!(in_use(addr), "the connection holds its port");

    drop(pc);
    drop(dc);

    ends("events", events).await;
    ends("ready_states", ready).await;
    ends("messages", messages).await;
    released(addr).await;
}

/// A data channel handle keeps its connection alive after the last `PeerConnection` handle is
/// dropped; dropping the channel handle too shuts it down and releases the port.
#[tokio::test]
async fn channel_handle_keeps_connection_alive() {
    init_log();
    let addr = free_addr();
    let a = peer_at(addr).await;
    let b = loopback_peer().await;
    let mut incoming = b.data_channels();
    let dc_a = a
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    within("negotiate", negotiate(&a, &b)).await;
    let dc_b = within("remote channel", incoming.next()).await.unwrap();
    within("open a", dc_a.opened()).await.unwrap();
    within("open b", dc_b.opened()).await.unwrap();
    let events_a = a.events();

    drop(a);
    // Still alive: both directions work, repeatedly, and the port stays bound.
    for _ in 0..10 {
        round_trip(&dc_a, &dc_b, b"ping").await;
        round_trip(&dc_b, &dc_a, b"pong").await;
        tokio::task::yield_now().await;
    }
    assert_eq!(dc_a.ready_state(), RTCDataChannelState::Open);
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);
    assert!(in_use(addr), "the connection still holds its port");

    // A remote-opened channel handle keeps its connection alive the same way.
    let b_addr = b.local_addrs()[0];
    drop(b);
    round_trip(&dc_a, &dc_b, b"b only has a channel").await;
    round_trip(&dc_b, &dc_a, b"and it works").await;
    assert!(in_use(b_addr));

    drop(dc_a);
    ends("a's events", events_a).await;
    released(addr).await;
    channel_closes("b's channel sees a go", &dc_b).await;
    drop(dc_b);
    released(b_addr).await;
}

/// Dropping one side's handles without `close()` is noticed by the other side: its channel
/// closes.
#[tokio::test]
async fn dropping_a_connected_side_is_noticed_by_the_peer() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("x", Default::default()).await;
    within("b connected", connected(&b)).await;
    let a_addr = a.local_addrs()[0];
    let mut msgs_b = dc_b.messages();

    drop(a);
    drop(dc_a);

    channel_closes("b's channel closes", &dc_b).await;
    assert!(within("b's messages end", msgs_b.next()).await.is_none());
    released(a_addr).await;
    b.close().await.unwrap();
}

/// Twenty connect / message / drop cycles each end their streams and release their ports.
#[tokio::test]
async fn repeated_connect_and_drop_releases_everything() {
    init_log();
    for i in 0..20 {
        let (a, b, dc_a, dc_b) = pair_with_channel("x", Default::default()).await;
        round_trip(&dc_a, &dc_b, b"hello").await;
        let addrs = [a.local_addrs()[0], b.local_addrs()[0]];
        let events = [a.events(), b.events()];
        let messages = [dc_a.messages(), dc_b.messages()];
        // Half the rounds close one side first, half just drop everything.
        if i % 2 == 0 {
            within("close a", a.close()).await.unwrap();
        }
        drop((a, b, dc_a, dc_b));
        for (n, s) in events.into_iter().enumerate() {
            ends(&format!("round {i}: events of peer {n}"), s).await;
        }
        for (n, s) in messages.into_iter().enumerate() {
            ends(&format!("round {i}: messages of peer {n}"), s).await;
        }
        for addr in addrs {
            released(addr).await;
        }
    }
}
