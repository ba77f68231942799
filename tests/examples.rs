//! The examples that finish by themselves run as tests, so they cannot rot.

mod common;

#[path = "../examples/broadcast.rs"]
mod broadcast;
#[path = "../examples/custom-runtime.rs"]
mod custom_runtime;
#[path = "../examples/handler.rs"]
mod handler;
#[cfg(target_os = "linux")]
#[path = "../examples/ice-servers.rs"]
mod ice_servers;
#[path = "../examples/streams.rs"]
mod streams;

/// A user-written runtime (async-executor + async-io) talks to a hand-written Tokio one.
#[test]
fn custom_runtime_example_runs() {
    custom_runtime::main().expect("custom-runtime example");
}

/// The chat in the handler style.
#[test]
fn handler_example_runs() {
    handler::main().expect("handler example");
}

/// The same chat in the stream style.
#[test]
fn streams_example_runs() {
    streams::main().expect("streams example");
}

/// One publisher fanned out to three subscribers through a forwarder.
#[test]
fn broadcast_example_runs() {
    broadcast::main().expect("broadcast example");
}

/// Two relay-only peers through a real coturn on loopback (started and killed by the test):
/// the selected pair is relayed on both ends.
#[cfg(target_os = "linux")] // coturn: see tests/common/coturn.rs
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_example_connects_through_turn() {
    use webrtc_streams::rtc::peer_connection::transport::RTCIceCandidateType;
    let turn = common::coturn::Coturn::start(common::coturn::CoturnConfig {
        listen_ip: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("coturn: {e}"));
    let config = ice_servers::Config {
        servers: vec![turn.ice_server(&[turn.turn_udp_url()])],
        relay_only: true,
        bind: Some("127.0.0.1:0".parse().unwrap()),
    };
    let pair = common::within("the example", ice_servers::run(config))
        .await
        .unwrap_or_else(|e| panic!("ice-servers example: {e}\n{}", turn.diagnostics()));
    assert_eq!(pair.local().typ, RTCIceCandidateType::Relay, "{pair:?}");
    assert_eq!(pair.remote().typ, RTCIceCandidateType::Relay, "{pair:?}");
}
