//! TURN over TCP (`turn:…?transport=tcp`) and TLS (`turns:`) with a real coturn on loopback:
//! relay-only peers connect through allocations made over one TCP or TLS connection each and
//! every byte arrives; a `turns:` server whose certificate is not trusted is reported and the
//! host candidates still connect; a server that vanishes mid-call is reported, not spun on.
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
use webrtc_streams::{
    IceCandidateEvent, PeerConnection,
    rtc::peer_connection::{
        configuration::{RTCIceTransportPolicy, setting_engine::SettingEngineBuilder},
        transport::RTCIceCandidateType,
    },
};

fn tls_turn() -> Coturn {
    Coturn::start(CoturnConfig {
        tls: true,
        ..CoturnConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Two relay-only peers whose only server is `url`: they connect through it, the selected
/// local candidate is relay on both sides, data arrives byte for byte both ways, and both
/// allocations are released on close before the connections to the server end.
async fn relay_only_through(turn: &Coturn, url: String, ca: Option<&std::path::Path>) {
    let servers = vec![turn.ice_server(&[url])];
    let settings = || SettingEngineBuilder::new().build();
    let a = peer_trusting(
        servers.clone(),
        RTCIceTransportPolicy::Relay,
        settings(),
        ca,
    )
    .await;
    let b = peer_trusting(servers, RTCIceTransportPolicy::Relay, settings(), ca).await;
    let mut errors = a.ice_candidate_errors();
    let (dc_a, dc_b, ca_, cb) = connect(&a, &b).await;
    for (side, cands) in [("a", &ca_), ("b", &cb)] {
        assert!(
            !cands.is_empty() && cands.iter().all(|c| typ(c) == "relay"),
            "{side}: only relay candidates expected: {cands:?}\n{}",
            turn.diagnostics()
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
    // Odd sizes: ChannelData over a stream is padded to 4 bytes, the padding must not leak.
    transfer(&dc_a, &dc_b, 50, 1001).await;
    transfer(&dc_b, &dc_a, 50, 3).await;
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    let error = errors.next().await;
    assert!(error.is_none(), "{error:?}\n{}", turn.diagnostics());
    let log = log_with(turn, "lifetime=0", 2).await;
    // Every allocation came over a stream: the two peers' connections come on top of the
    // harness's readiness probes (one per TCP or TLS port).
    let probes = 1 + usize::from(turn.tls_addr.is_some());
    assert!(
        log.matches("tcp or tls connected to").count() >= probes + 2,
        "{}",
        turn.diagnostics()
    );
    // Both sessions end once the peers have closed (coturn names the reason variously: a
    // FIN, a TLS close_notify, or the socket gone by the time it answers).
    let log = log_with(turn, "closed (2nd stage), user <test>", 2).await;
    assert!(
        log.matches("CHANNEL_BIND processed, success").count() >= 2,
        "{}",
        turn.diagnostics()
    );
}

#[tokio::test]
async fn relay_only_peers_connect_through_turn_over_tcp() {
    init_log();
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    relay_only_through(&turn, turn.turn_tcp_url(), None).await;
}

#[tokio::test]
async fn relay_only_peers_connect_through_turn_over_tls() {
    init_log();
    let turn = tls_turn();
    let url = turn.turns_url().expect("TLS url");
    let ca = turn.ca_pem.clone().expect("CA");
    relay_only_through(&turn, url, Some(&ca)).await;
}

/// The test CA is not among the webpki roots: the `turns:` server is refused with a
/// certificate error, no relay candidate is gathered, and host candidates still connect.
#[tokio::test]
async fn untrusted_tls_certificate_is_an_error_and_host_candidates_still_connect() {
    init_log();
    let turn = tls_turn();
    let url = turn.turns_url().expect("TLS url");
    let a = peer(
        vec![turn.ice_server(std::slice::from_ref(&url))],
        RTCIceTransportPolicy::All,
    )
    .await;
    let b = peer(Vec::new(), RTCIceTransportPolicy::All).await;
    let mut errors = a.ice_candidate_errors();
    let (dc_a, dc_b, ca, _) = connect(&a, &b).await;
    let error = within("certificate error", errors.next())
        .await
        .expect("error event");
    assert_eq!(error.url, url, "{error:?}");
    assert_eq!(error.error_code, 701, "{error:?}");
    assert!(
        error.error_text.contains("certificate") && error.error_text.contains("UnknownIssuer"),
        "{error:?}"
    );
    assert!(ca.iter().any(|c| typ(c) == "host"), "{ca:?}");
    assert!(!ca.iter().any(|c| typ(c) == "relay"), "{ca:?}");
    connected(&a).await;
    assert_eq!(selected_local(&a).await, RTCIceCandidateType::Host);
    transfer(&dc_a, &dc_b, 50, 500).await;
    // A PEM without a certificate is refused when the connection is built.
    let bad = PeerConnection::builder()
        .tls_root_certificates(b"no certificate here".to_vec())
        .build()
        .await;
    assert!(
        matches!(bad, Err(webrtc_streams::Error::InvalidTlsRoots(_))),
        "{bad:?}"
    );
}

/// A wrong password over TCP ends in a 401 like over UDP.
#[tokio::test]
async fn wrong_password_over_tcp_reports_401() {
    init_log();
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut server = turn.ice_server(&[turn.turn_tcp_url()]);
    server.credential = "not-the-password".to_owned();
    let a = peer(vec![server], RTCIceTransportPolicy::All).await;
    let mut errors = a.ice_candidate_errors();
    let mut candidates = a.ice_candidates();
    a.create_data_channel("x", Default::default())
        .await
        .expect("dc");
    let offer = a.create_offer().await.expect("offer");
    a.set_local_description(offer).await.expect("local");
    let error = within("401", errors.next()).await.expect("error event");
    assert_eq!(error.error_code, 401, "{error:?}");
    assert_eq!(error.url, turn.turn_tcp_url());
    // Gathering completes.
    within("gathering", async {
        while let Some(IceCandidateEvent::Candidate(_)) = candidates.next().await {}
    })
    .await;
}

/// The TURN server goes away while the call runs over its relay: the lost connection is an
/// error event ("allocation lost"), and the connection fails by consent freshness instead of
/// the driver spinning or panicking.
#[tokio::test]
async fn turn_server_vanishing_mid_call_is_reported() {
    init_log();
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let servers = vec![turn.ice_server(&[turn.turn_tcp_url()])];
    let a = peer(servers.clone(), RTCIceTransportPolicy::Relay).await;
    let b = peer(servers, RTCIceTransportPolicy::Relay).await;
    let mut errors = a.ice_candidate_errors();
    let (dc_a, dc_b, _, _) = connect(&a, &b).await;
    transfer(&dc_a, &dc_b, 10, 100).await;
    drop(turn); // kills coturn: the TCP connections end
    let error = within("allocation lost", errors.next())
        .await
        .expect("error event");
    assert!(error.error_text.contains("allocation lost"), "{error:?}");
    let mut states = a.connection_states();
    within("connection fails", async {
        while let Some(s) = states.next().await {
            if matches!(
                s,
                webrtc_streams::rtc::peer_connection::state::RTCPeerConnectionState::Failed
                    | webrtc_streams::rtc::peer_connection::state::RTCPeerConnectionState::Disconnected
            ) {
                break;
            }
        }
    })
    .await;
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

/// coturn's log once it holds `needle` at least `count` times (bounded wait; the log is in
/// the failure message).
async fn log_with(turn: &Coturn, needle: &str, count: usize) -> String {
    let wait = async {
        loop {
            let log = turn.log_text();
            if log.matches(needle).count() >= count {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    match tokio::time::timeout(TIMEOUT, wait).await {
        Ok(log) => log,
        Err(_) => panic!(
            "coturn's log does not hold {needle:?} {count} times\n{}",
            turn.diagnostics()
        ),
    }
}
