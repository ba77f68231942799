//! Multicast DNS candidates between two of our peers, inside a network namespace the test
//! creates (only `lo`, with multicast on and the multicast route through it, so nothing leaves
//! the namespace) and deletes.
//!
//! The offerer hides its host address behind a `<uuid>.local` name (gather mode, as browsers
//! do by default); the answerer resolves it (query-only, the default). The answer reaches the
//! offerer without candidates, so the offerer cannot contact the answerer first: the
//! connection comes up only if the answerer resolved the name and checked the address behind
//! it (the offerer then learns the answerer as a peer-reflexive candidate).
//!
//! Needs root and `ip` (CI runs it in `.ci/run`).
// Linux only: network namespaces (setns, ip netns, nftables).
#![cfg(target_os = "linux")]

mod common;

use std::process::{Command, Stdio};

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{
    PeerConnection,
    rtc::{ice::mdns::MulticastDnsMode, peer_connection::sdp::RTCSessionDescription},
};

use common::{connected, netns::NsRuntime, within};

/// A namespace with only `lo`, multicast on; deleted on drop.
struct Namespace(String);

impl Namespace {
    fn new() -> Self {
        let name = format!("wrs-mdns-{}", std::process::id());
        let ns = Self(name.clone());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        for args in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
            vec!["-n", &name, "link", "set", "lo", "multicast", "on"],
            vec!["-n", &name, "route", "add", "224.0.0.0/4", "dev", "lo"],
        ] {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .unwrap_or_else(|e| panic!("`ip` not runnable ({e}); this test needs iproute2"));
            assert!(
                out.status.success(),
                "ip {}: {} (this test needs root)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        ns
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn candidate_lines(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect()
}

fn without_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_host_address_is_resolved_over_multicast_dns() {
    common::init_log();
    let ns = Namespace::new();
    let rt = NsRuntime::start(&ns.0);
    let loopback = "127.0.0.1:0".parse().unwrap();
    let offerer = rt
        .peer(move || {
            PeerConnection::builder()
                .bind([loopback])
                .mdns(MulticastDnsMode::QueryAndGather)
        })
        .await;
    let answerer = rt
        .peer(move || PeerConnection::builder().bind([loopback]))
        .await;

    let mut incoming = answerer.data_channels();
    let ours = offerer
        .create_data_channel("mdns", Default::default())
        .await
        .expect("channel");
    let offer = offerer.create_offer().await.expect("offer");
    offerer.set_local_description(offer).await.expect("sld");
    within("offerer gathering", offerer.gathering_complete())
        .await
        .expect("gathering");
    let offer = offerer
        .local_description()
        .await
        .expect("offer sdp")
        .expect("an offer");
    let lines = candidate_lines(&offer.sdp);
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains(".local ")),
        "gather mode must signal only .local names: {lines:?}"
    );
    assert!(
        !offer.sdp.contains("127.0.0.1"),
        "the host address leaked: {lines:?}"
    );

    answerer.set_remote_description(offer).await.expect("srd");
    let answer = answerer.create_answer().await.expect("answer");
    answerer.set_local_description(answer).await.expect("sld");
    within("answerer gathering", answerer.gathering_complete())
        .await
        .expect("gathering");
    let answer = answerer
        .local_description()
        .await
        .expect("answer sdp")
        .expect("an answer");
    let answer = RTCSessionDescription::answer(without_candidates(&answer.sdp)).unwrap();
    offerer.set_remote_description(answer).await.expect("srd");

    connected(&offerer).await;
    connected(&answerer).await;
    let theirs = within("remote channel", incoming.next())
        .await
        .expect("channel stream ended");
    within("open", ours.opened()).await.expect("open");
    ours.send(Bytes::from_static(b"over a resolved name"))
        .await
        .expect("send");
    let mut messages = theirs.messages();
    let m = within("message", messages.next()).await.expect("message");
    assert_eq!(&m.data[..], b"over a resolved name");

    offerer.close().await.expect("close");
    answerer.close().await.expect("close");
    drop(rt);
}

/// Asking for an mDNS mode that the given setting engine does not have is a typed error, not a
/// silently ignored option.
#[tokio::test]
async fn an_mdns_mode_against_the_given_setting_engine_is_an_error() {
    let result = PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(webrtc_streams::PeerConnectionBuilder::default_settings().build())
        .mdns(MulticastDnsMode::QueryAndGather)
        .build()
        .await;
    assert!(
        matches!(result, Err(webrtc_streams::Error::InvalidOperation(_))),
        "expected InvalidOperation, got {:?}",
        result.err()
    );
    // The same mode as the engine's is fine.
    let pc = PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(webrtc_streams::PeerConnectionBuilder::default_settings().build())
        .mdns(MulticastDnsMode::QueryOnly)
        .build()
        .await
        .expect("same mode");
    pc.close().await.expect("close");
}
