//! Nothing stuck, on virtual time: a channel closed while its peer is unreachable ends within
//! a bound instead of staying `Closing`; a failed connection ends every reader.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    CloseReason, Error, PeerConnection,
    rtc::{data_channel::RTCDataChannelState, peer_connection::state::RTCPeerConnectionState},
    runtime::sim::{LinkConfig, SimRuntime},
};

#[test]
fn a_channel_closed_towards_a_dead_peer_does_not_stay_closing() {
    init_log();
    let sim = SimRuntime::new(11);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(10)));
    let h = sim.handle().clone();
    let limit = Duration::from_secs(120);
    sim.block_on(async {
        let (a, b, dc_a, _dc_b) = pair_with_channel(&h, "stuck", Default::default(), limit).await;
        h.set_path(HOST_A, HOST_B, LinkConfig::cut());
        // Data in flight that can never be acknowledged.
        dc_a.send(Bytes::from(vec![7u8; 4096])).await.unwrap();
        let mut states = dc_a.ready_states();
        dc_a.close().await.unwrap();
        let closed = within(&h, "closed", limit, async {
            while let Some(s) = states.next().await {
                if s == RTCDataChannelState::Closed {
                    return h.elapsed();
                }
            }
            panic!("state stream ended before Closed");
        })
        .await;
        println!("closed locally at {closed:?} of virtual time");
        assert_eq!(dc_a.ready_state(), RTCDataChannelState::Closed);
        // Its message stream ends too.
        assert!(
            within(&h, "messages end", limit, dc_a.messages().next())
                .await
                .is_none()
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// After `Failed`, the connection waits `failed_timeout` for an ICE restart, then closes:
/// a reader of a channel's messages sees its stream end, calls say why.
#[test]
fn a_failed_connection_closes_after_its_failed_timeout_and_every_reader_ends() {
    init_log();
    let sim = SimRuntime::new(12);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(10)));
    let h = sim.handle().clone();
    let limit = Duration::from_secs(120);
    sim.block_on(async {
        let peer = |host| {
            PeerConnection::builder()
                .runtime(h.runtime())
                .bind([SocketAddr::new(host, 0)])
                .failed_timeout(Duration::from_secs(5))
                .build()
        };
        let a = peer(HOST_A).await.unwrap();
        let b = peer(HOST_B).await.unwrap();
        let mut incoming = b.data_channels();
        let dc_a = a
            .create_data_channel("dead", Default::default())
            .await
            .unwrap();
        negotiate(&a, &b).await;
        let dc_b = within(&h, "channel", limit, incoming.next()).await.unwrap();
        within(&h, "open", limit, dc_a.opened()).await.unwrap();
        let mut states = b.connection_states();
        let mut msgs = dc_b.messages();
        h.set_path(HOST_A, HOST_B, LinkConfig::cut());
        // The reader waits on a dead connection: it must end, not hang.
        let ended = within(&h, "reader ends", limit, msgs.next()).await;
        assert!(ended.is_none(), "got {ended:?}");
        let mut seen = Vec::new();
        while let Some(s) = within(&h, "states end", limit, states.next()).await {
            seen.push(s);
        }
        assert!(seen.contains(&RTCPeerConnectionState::Failed), "{seen:?}");
        assert_eq!(seen.last(), Some(&RTCPeerConnectionState::Closed));
        assert_eq!(dc_b.ready_state(), RTCDataChannelState::Closed);
        let r = b.create_offer().await;
        assert!(
            matches!(r, Err(Error::Closed(CloseReason::ConsentExpired))),
            "{r:?}"
        );
        let r = dc_b.send(Bytes::from_static(b"late")).await;
        assert!(r.is_err(), "{r:?}");
        a.close().await.unwrap();
    });
}

/// A peer's `close()` (DTLS close_notify, SCTP ABORT) closes this side at once, not after the
/// consent timeout (5 s to `Disconnected`).
#[test]
fn a_remote_close_closes_this_side_within_a_round_trip() {
    init_log();
    let sim = SimRuntime::new(13);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(10)));
    let h = sim.handle().clone();
    let limit = Duration::from_secs(120);
    sim.block_on(async {
        let (a, b, _dc_a, dc_b) = pair_with_channel(&h, "bye", Default::default(), limit).await;
        let mut states = b.connection_states();
        let start = h.elapsed();
        a.close().await.unwrap();
        while within(&h, "states end", limit, states.next())
            .await
            .is_some()
        {}
        let took = h.elapsed() - start;
        println!("closed by the peer after {took:?} of virtual time");
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert_eq!(dc_b.ready_state(), RTCDataChannelState::Closed);
        let r = b.create_offer().await;
        assert!(
            matches!(r, Err(Error::Closed(CloseReason::Remote))),
            "{r:?}"
        );
    });
}
