//! Nothing stuck, on virtual time: a channel closed while its peer is unreachable ends within
//! a bound instead of staying `Closing`.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    rtc::data_channel::RTCDataChannelState,
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
