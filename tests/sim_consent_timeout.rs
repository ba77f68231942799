//! ICE consent freshness (RFC 7675) on virtual time: after the network between two connected
//! peers is cut, each side goes `Disconnected` after ~5 s and `Failed` after ~30 s of silence
//! (the `rtc` defaults) — and the test takes milliseconds of wall time.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    PeerConnection,
    rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState},
    runtime::sim::{LinkConfig, SimHandle, SimRuntime},
};

/// What one side saw: `(virtual time, state)` for each state stream.
#[derive(Default)]
struct Seen {
    ice: Vec<(Duration, RTCIceConnectionState)>,
    connection: Vec<(Duration, RTCPeerConnectionState)>,
}

fn watch(sim: &SimHandle, pc: &PeerConnection) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (mut ice, mut conn) = (pc.ice_connection_states(), pc.connection_states());
    let (h, s) = (sim.clone(), seen.clone());
    drop(sim.spawn(async move {
        while let Some(state) = ice.next().await {
            s.lock().unwrap().ice.push((h.elapsed(), state));
        }
    }));
    let (h, s) = (sim.clone(), seen.clone());
    drop(sim.spawn(async move {
        while let Some(state) = conn.next().await {
            s.lock().unwrap().connection.push((h.elapsed(), state));
        }
    }));
    seen
}

/// When `state` was first seen at or after `since`, as a delay from `since`.
fn first<S: PartialEq + Copy>(seen: &[(Duration, S)], state: S, since: Duration) -> Duration {
    seen.iter()
        .find(|(t, s)| *s == state && *t >= since)
        .map(|(t, _)| *t - since)
        .expect("state never reached")
}

#[test]
fn cut_network_fails_after_the_consent_timeout() {
    init_log();
    let wall = Instant::now();
    let sim = SimRuntime::new(30);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(10)));
    let h = sim.handle().clone();
    let limit = Duration::from_secs(60);

    let (cut_at, seen_a, seen_b) = sim.block_on(async {
        let (a, b, dc_a, dc_b) = pair_with_channel(&h, "consent", Default::default(), limit).await;
        let (seen_a, seen_b) = (watch(&h, &a), watch(&h, &b));
        // Let the connection idle for a while with keep-alives flowing, then cut the cable.
        h.sleep(Duration::from_secs(10)).await;
        assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
        let cut_at = h.elapsed();
        h.set_path(HOST_A, HOST_B, LinkConfig::cut());

        let failed = |pc: &PeerConnection| {
            let mut states = pc.connection_states();
            async move {
                while let Some(s) = states.next().await {
                    if s == RTCPeerConnectionState::Failed {
                        return;
                    }
                }
                panic!("state stream ended before Failed");
            }
        };
        within(&h, "a fails", limit, failed(&a)).await;
        within(&h, "b fails", limit, failed(&b)).await;
        println!(
            "after the failure: channel a {:?}, channel b {:?}",
            dc_a.ready_state(),
            dc_b.ready_state()
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
        (cut_at, seen_a, seen_b)
    });
    let wall = wall.elapsed();

    for (who, seen) in [("a", seen_a), ("b", seen_b)] {
        let seen = seen.lock().unwrap();
        println!("{who} ice:        {:?}", seen.ice);
        println!("{who} connection: {:?}", seen.connection);
        let ice_disconnected = first(&seen.ice, RTCIceConnectionState::Disconnected, cut_at);
        let ice_failed = first(&seen.ice, RTCIceConnectionState::Failed, cut_at);
        let disconnected = first(
            &seen.connection,
            RTCPeerConnectionState::Disconnected,
            cut_at,
        );
        let failed = first(&seen.connection, RTCPeerConnectionState::Failed, cut_at);
        println!(
            "{who}: cut at {cut_at:?}; ICE disconnected after {ice_disconnected:?}, failed after \
             {ice_failed:?}; connection disconnected after {disconnected:?}, failed after {failed:?}"
        );
        // The agent checks every 2 s (the keep-alive interval) whether more than 5 s
        // (disconnected) or 5 + 25 s (failed) have passed since the peer was last heard, which
        // was at most one keep-alive interval before the cut.
        let s = Duration::from_secs;
        assert!(
            (s(3)..=s(8)).contains(&ice_disconnected),
            "{who}: ICE disconnected after {ice_disconnected:?}"
        );
        assert!(
            (s(28)..=s(33)).contains(&ice_failed),
            "{who}: ICE failed after {ice_failed:?}"
        );
        assert_eq!(
            disconnected, ice_disconnected,
            "{who}: connection disconnected"
        );
        assert_eq!(failed, ice_failed, "{who}: connection failed");
        // Nothing in between: Connected -> Disconnected -> Failed (-> Closed on close()).
        let after: Vec<_> = seen
            .connection
            .iter()
            .filter(|(t, _)| *t >= cut_at)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            after,
            [
                RTCPeerConnectionState::Disconnected,
                RTCPeerConnectionState::Failed,
                RTCPeerConnectionState::Closed
            ],
            "{who}"
        );
    }
    println!(
        "simulated {:?} of virtual time in {wall:?} of wall time",
        sim.elapsed()
    );
}
