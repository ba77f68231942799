//! Remote data channels that nobody claimed: when more than the event capacity of them open
//! while nobody subscribes, the oldest are dropped from the hold (counted in `missed()`) and
//! closed, so the remote peer learns that nobody will read them, instead of leaving them
//! open and unannounced.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{net::SocketAddr, time::Duration};

use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    PeerConnection, rtc::data_channel::RTCDataChannelState, runtime::sim::SimRuntime,
};

#[test]
fn channels_dropped_from_the_hold_are_closed() {
    init_log();
    let sim = SimRuntime::new(31);
    let h = sim.handle().clone();
    let limit = Duration::from_secs(30);
    sim.block_on(async {
        let a = peer(&h, HOST_A).await;
        let b = PeerConnection::builder()
            .runtime(h.runtime())
            .bind([SocketAddr::new(HOST_B, 0)])
            .event_capacity(2)
            .build()
            .await
            .unwrap();
        let mut created = Vec::new();
        for i in 0..5 {
            created.push(
                a.create_data_channel(&format!("c{i}"), Default::default())
                    .await
                    .unwrap(),
            );
        }
        negotiate(&a, &b).await;
        connected(&h, &a, limit).await;
        // Every channel opens on a; those b dropped unannounced close again.
        let mut open = Vec::new();
        let mut closed = Vec::new();
        for dc in &created {
            let end = within(&h, "channel settles", limit, async {
                let mut was_open = false;
                loop {
                    h.sleep(Duration::from_millis(200)).await;
                    match dc.ready_state() {
                        RTCDataChannelState::Open => was_open = true,
                        RTCDataChannelState::Closed => return RTCDataChannelState::Closed,
                        _ => {}
                    }
                    // Open and still open after the others settled: kept.
                    if was_open && h.elapsed() > Duration::from_secs(5) {
                        return RTCDataChannelState::Open;
                    }
                }
            })
            .await;
            match end {
                RTCDataChannelState::Open => open.push(dc.label().to_owned()),
                _ => closed.push(dc.label().to_owned()),
            }
        }
        println!("kept open: {open:?}; closed by b: {closed:?}");
        assert_eq!(open.len(), 2, "the event capacity's worth is held");
        assert_eq!(closed.len(), 3);
        // The late subscriber gets the held ones, and learns how many it missed.
        let mut incoming = b.data_channels();
        let mut got = Vec::new();
        for _ in 0..2 {
            let dc = within(&h, "held channel", limit, incoming.next())
                .await
                .unwrap();
            assert_eq!(dc.ready_state(), RTCDataChannelState::Open);
            got.push(dc.label().to_owned());
        }
        got.sort();
        open.sort();
        assert_eq!(got, open);
        assert_eq!(incoming.missed(), 3);
    });
}
