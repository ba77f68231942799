//! TURN over UDP with a real coturn on loopback: two relay-only peers connect through their
//! allocations and every byte arrives; wrong credentials end in a 401 `IceCandidateError`
//! while the host candidates still connect.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    coturn::{Coturn, CoturnConfig},
    *,
};
use futures::StreamExt;
use webrtc_streams::{
    DataChannel, PeerConnection,
    rtc::{
        peer_connection::{
            configuration::{
                RTCConfigurationBuilder, RTCIceTransportPolicy,
                setting_engine::{SettingEngine, SettingEngineBuilder},
            },
            transport::{RTCIceCandidateInit, RTCIceCandidateType, RTCIceServer},
        },
        statistics::report::RTCStatsReportEntry,
    },
};

async fn peer(servers: Vec<RTCIceServer>, policy: RTCIceTransportPolicy) -> PeerConnection {
    peer_with(servers, policy, SettingEngineBuilder::new().build()).await
}

async fn peer_with(
    servers: Vec<RTCIceServer>,
    policy: RTCIceTransportPolicy,
    settings: SettingEngine,
) -> PeerConnection {
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .with_ice_transport_policy(policy)
        .build();
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(settings)
        .configuration(config)
        .ice_server_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("build")
}

/// Trickle ICE between `a` (offerer) and `b`, with a channel "data" created by `a`.
/// Returns both ends of the channel, open, and the candidates each side announced.
async fn connect(
    a: &PeerConnection,
    b: &PeerConnection,
) -> (
    DataChannel,
    DataChannel,
    Vec<RTCIceCandidateInit>,
    Vec<RTCIceCandidateInit>,
) {
    let mut incoming = b.data_channels();
    let dc_a = a
        .create_data_channel("data", Default::default())
        .await
        .expect("dc");
    negotiate(a, b).await;
    let dc_b = within("remote channel", incoming.next())
        .await
        .expect("dc b");
    within("open a", dc_a.opened()).await.expect("open a");
    within("open b", dc_b.opened()).await.expect("open b");
    let ca = candidates_in(&a.local_description().await.unwrap().expect("a desc").sdp);
    let cb = candidates_in(&b.local_description().await.unwrap().expect("b desc").sdp);
    (dc_a, dc_b, ca, cb)
}

fn candidates_in(sdp: &str) -> Vec<RTCIceCandidateInit> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .map(|l| RTCIceCandidateInit {
            candidate: l.to_owned(),
            ..Default::default()
        })
        .collect()
}

fn typ(c: &RTCIceCandidateInit) -> &str {
    let f: Vec<&str> = c.candidate.split_whitespace().collect();
    f.iter()
        .position(|w| *w == "typ")
        .map(|i| f[i + 1])
        .unwrap_or_default()
}

/// The type of the selected pair's local candidate, from the stats report. (Each side's
/// remote candidate is the other side's local one; rtc 0.21.1 files no stats for remote
/// candidates that came in a description.)
async fn selected_local(pc: &PeerConnection) -> RTCIceCandidateType {
    let report = pc.stats().await.expect("stats");
    let transport = report.transport().expect("transport stats");
    let pair_id = &transport.selected_candidate_pair_id;
    let pair = report
        .candidate_pairs()
        .find(|p| &p.stats.id == pair_id)
        .unwrap_or_else(|| panic!("no selected pair {pair_id:?}"));
    // rtc 0.21.1 names the candidate in the pair by its bare id but files it under
    // "RTCLocalIceCandidate_<id>".
    let id = format!("RTCLocalIceCandidate_{}", pair.local_candidate_id);
    match report.get(&id) {
        Some(RTCStatsReportEntry::LocalCandidate(c)) => c.candidate_type,
        other => panic!("candidate {id}: {other:?}"),
    }
}

/// Sends `count` messages of `size` bytes, each filled from its index, and checks every byte
/// of every message on the other side, in order.
async fn transfer(tx: &DataChannel, rx: &DataChannel, count: usize, size: usize) {
    let mut msgs = rx.messages();
    let payload = |i: usize| -> Vec<u8> { (0..size).map(|j| ((i * 31 + j) % 251) as u8).collect() };
    let sender = async {
        for i in 0..count {
            tx.send(Bytes::from(payload(i))).await.expect("send");
        }
    };
    let receiver = async {
        for i in 0..count {
            let m = msgs.next().await.expect("message stream ended");
            assert_eq!(m.data.len(), size, "message {i}");
            assert!(m.data[..] == payload(i)[..], "message {i} corrupted");
        }
    };
    within("transfer", futures::future::join(sender, receiver)).await;
}

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
