//! TURN over UDP with a real coturn on loopback: two relay-only peers connect through their
//! allocations and every byte arrives; wrong credentials end in a 401 `IceCandidateError`
//! while the host candidates still connect.
// Linux only: starts coturn (Linux process management in tests/common/coturn.rs).
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{
    coturn::{Coturn, CoturnConfig},
    turn::*,
    *,
};
use futures::StreamExt;
use webrtc_streams::rtc::peer_connection::{
    configuration::{RTCIceTransportPolicy, setting_engine::SettingEngineBuilder},
    transport::RTCIceCandidateType,
};

#[tokio::test]
async fn relay_only_peers_connect_through_coturn_and_every_byte_arrives() {
    init_log();
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let servers = vec![turn.ice_server(&[turn.stun_url(), turn.turn_udp_url()])];
    let a = peer(servers.clone(), RTCIceTransportPolicy::Relay).await;
    let b = peer(servers, RTCIceTransportPolicy::Relay).await;
    let mut errors = a.ice_candidate_errors();
    let (dc_a, dc_b, ca, cb) = connect(&a, &b).await;
    for (side, cands) in [("a", &ca), ("b", &cb)] {
        assert!(
            !cands.is_empty(),
            "{side}: no candidates\n{}",
            turn.diagnostics()
        );
        assert!(
            cands.iter().all(|c| typ(c) == "relay"),
            "{side}: only relay candidates with the Relay policy: {cands:?}"
        );
    }
    connected(&a).await;
    connected(&b).await;
    for (side, pc) in [("a", &a), ("b", &b)] {
        assert_eq!(
            selected_local(pc).await,
            RTCIceCandidateType::Relay,
            "{side}"
        );
    }
    transfer(&dc_a, &dc_b, 300, 1000).await;
    transfer(&dc_b, &dc_a, 300, 1000).await;
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    assert!(errors.next().await.is_none(), "no server error expected");
    // coturn saw permissions and channel bindings for the peers, and both allocations were
    // released on close (a Refresh with lifetime 0).
    let log = log_with(&turn, "lifetime=0", 2).await;
    assert!(
        log.matches("CREATE_PERMISSION processed, success").count() >= 2,
        "{}",
        turn.diagnostics()
    );
    assert!(
        log.matches("CHANNEL_BIND processed, success").count() >= 2,
        "{}",
        turn.diagnostics()
    );
}

/// coturn's log once it holds `needle` at least `count` times (bounded wait).
async fn log_with(turn: &Coturn, needle: &str, count: usize) -> String {
    within("coturn log", async {
        loop {
            let log = turn.log_text();
            if log.matches(needle).count() >= count {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Allocations are refreshed (here every second, through the setting engine's
/// `turn_allocation_refresh_interval_cap`: coturn grants at least 600 s, so its own half-life
/// schedule cannot be observed in a test), and the relayed connection keeps carrying data.
#[tokio::test]
async fn allocations_are_refreshed_and_keep_carrying_data() {
    init_log();
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let servers = vec![turn.ice_server(&[turn.turn_udp_url()])];
    let settings = || {
        SettingEngineBuilder::new()
            .with_turn_allocation_refresh_interval_cap(Duration::from_secs(1))
            .build()
    };
    let a = peer_with(servers.clone(), RTCIceTransportPolicy::Relay, settings()).await;
    let b = peer_with(servers, RTCIceTransportPolicy::Relay, settings()).await;
    let (dc_a, dc_b, _, _) = connect(&a, &b).await;
    // At least two refreshes per allocation (lifetime kept, not 0), then traffic still flows.
    log_with(
        &turn,
        "refreshed, realm=<webrtc-streams.test>, username=<test>, lifetime=600",
        4,
    )
    .await;
    transfer(&dc_a, &dc_b, 20, 1000).await;
    transfer(&dc_b, &dc_a, 20, 1000).await;
    assert_eq!(selected_local(&a).await, RTCIceCandidateType::Relay);
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test]
async fn wrong_turn_password_reports_401_and_host_candidates_still_connect() {
    init_log();
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut server = turn.ice_server(&[turn.turn_udp_url()]);
    server.credential = "not-the-password".to_owned();
    let a = peer(vec![server], RTCIceTransportPolicy::All).await;
    let b = peer(Vec::new(), RTCIceTransportPolicy::All).await;
    let mut errors = a.ice_candidate_errors();
    let (dc_a, dc_b, ca, _) = connect(&a, &b).await;
    let error = within("401", errors.next()).await.expect("error event");
    assert_eq!(error.error_code, 401, "{error:?}");
    assert_eq!(error.url, turn.turn_udp_url());
    assert_eq!(error.port, a.local_addrs()[0].port());
    assert!(ca.iter().any(|c| typ(c) == "host"), "{ca:?}");
    assert!(!ca.iter().any(|c| typ(c) == "relay"), "{ca:?}");
    connected(&a).await;
    assert_eq!(selected_local(&a).await, RTCIceCandidateType::Host);
    assert_eq!(selected_local(&b).await, RTCIceCandidateType::Host);
    transfer(&dc_a, &dc_b, 50, 500).await;
}

/// A STUN and a TURN URL of the same server share each socket and the server's address: the
/// STUN answer goes to the STUN job (by transaction id) even when the TURN allocation, made
/// first, is already in place. Gathering yields host and relay candidates (the
/// server-reflexive one equals the host address on loopback and is dropped as redundant)
/// and no server error.
#[tokio::test]
async fn stun_and_turn_on_one_server_share_the_socket() {
    init_log();
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let servers = vec![turn.ice_server(&[turn.turn_udp_url(), turn.stun_url()])];
    let a = peer(servers, RTCIceTransportPolicy::All).await;
    let b = peer(Vec::new(), RTCIceTransportPolicy::All).await;
    let mut errors = a.ice_candidate_errors();
    let (dc_a, dc_b, ca, _) = connect(&a, &b).await;
    assert!(ca.iter().any(|c| typ(c) == "host"), "{ca:?}");
    assert!(ca.iter().any(|c| typ(c) == "relay"), "{ca:?}");
    transfer(&dc_a, &dc_b, 20, 1000).await;
    a.close().await.expect("close");
    let error = errors.next().await;
    assert!(error.is_none(), "{error:?}\n{}", turn.diagnostics());
}
