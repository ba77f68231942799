//! Unauthenticated STUN cannot flip the ICE role.
//!
//! rtc-ice resolves ICE-CONTROLLING/ICE-CONTROLLED role conflicts before it checks USERNAME
//! and MESSAGE-INTEGRITY (RFC 8445 §7.3 says: authenticate first). A stranger who sends
//! Binding requests claiming ICE-CONTROLLED with tiebreaker 0 to an answerer waiting for its
//! answer to be signalled made it switch to controlling, and most such connections failed.
//! The inbound filter now drops requests without valid credentials before the agent sees them.
#![cfg(feature = "runtime-sim")]

#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/sim.rs"]
mod sim_common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hostile::*;
use sim_common::*;
use webrtc_streams::{
    rtc::peer_connection::state::RTCPeerConnectionState,
    runtime::sim::{LinkConfig, SimRuntime},
};

const ATTACKER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66)), 40000);
/// How long the answer takes to reach the offerer.
const SIGNALLING_DELAY: Duration = Duration::from_secs(2);

/// Connects a pair while an attacker sends 2,000 role-flipping requests a second to the
/// answerer; returns whether both reached `Connected` within 30 s, and how many requests the
/// answerer's filter refused.
fn connect_under_attack(seed: u64) -> (bool, u64) {
    init_log();
    let sim = SimRuntime::new(seed);
    sim.set_default_link(LinkConfig::new().delay(Duration::from_millis(10)));
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = peer(&h, HOST_A).await;
        let b = peer(&h, HOST_B).await;
        let _dc = a
            .create_data_channel("x", Default::default())
            .await
            .unwrap();
        a.set_local_description(a.create_offer().await.unwrap())
            .await
            .unwrap();
        a.gathering_complete().await.unwrap();
        b.set_remote_description(a.local_description().await.unwrap().unwrap())
            .await
            .unwrap();
        b.set_local_description(b.create_answer().await.unwrap())
            .await
            .unwrap();
        b.gathering_complete().await.unwrap();
        let answer = b.local_description().await.unwrap().unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let victim = b.local_addrs()[0];
        let attacker = {
            let (h, stop) = (h.clone(), stop.clone());
            h.clone().spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..2 {
                        h.inject(ATTACKER, victim, &role_flip_request(n, "x:y"));
                        n += 1;
                    }
                    h.sleep(Duration::from_millis(1)).await;
                }
            })
        };
        h.sleep(SIGNALLING_DELAY).await;
        a.set_remote_description(answer).await.unwrap();
        let up = |pc: &webrtc_streams::PeerConnection| {
            pc.connection_state() == RTCPeerConnectionState::Connected
        };
        let start = h.elapsed();
        while !(up(&a) && up(&b)) && h.elapsed() - start < Duration::from_secs(30) {
            h.sleep(Duration::from_millis(50)).await;
        }
        let ok = up(&a) && up(&b);
        stop.store(true, Ordering::Relaxed);
        attacker.await;
        let refused = b.filter_stats().unauthenticated_stun;
        a.close().await.unwrap();
        b.close().await.unwrap();
        (ok, refused)
    })
}

#[test]
fn role_flipping_requests_do_not_stop_ice() {
    let mut failed = Vec::new();
    let mut refused = Vec::new();
    for seed in 0..6 {
        let (ok, n) = connect_under_attack(seed);
        refused.push(n);
        if !ok {
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "connections failed under attack: seeds {failed:?}"
    );
    // Two seconds of signalling delay at 2,000 requests a second, all refused.
    assert!(refused.iter().all(|&n| n >= 4_000), "refused: {refused:?}");
}
