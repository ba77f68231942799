//! ICE restart on virtual time: a connection whose network path dies comes back through a
//! restart over another path without losing a byte of a reliable channel, and a restart of
//! a healthy connection keeps its channels open and data flowing; new ICE servers given with
//! `set_configuration` are checked like the builder's.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    DataChannel, Error, IceCandidateEvent, IceServerError, PeerConnection, PeerConnectionBuilder,
    rtc::peer_connection::{
        configuration::RTCConfigurationBuilder,
        state::{RTCIceConnectionState, RTCPeerConnectionState},
        transport::RTCIceServer,
    },
    runtime::sim::{JoinHandle, LinkConfig, SimHandle, SimRuntime},
};

/// The second address of each host: the path that appears when the first one dies (Wi-Fi
/// gone, cellular there).
const HOST_A2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
const HOST_B2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2));

const MESSAGES: usize = 300;
const MESSAGE_SIZE: usize = 1200;

fn link() -> LinkConfig {
    LinkConfig::new().delay(Duration::from_millis(10))
}

/// A connection bound to two addresses of one host; with `discard`, its core forgets its
/// local candidates at an ICE restart (the driver must enumerate them again).
async fn two_homed(
    sim: &SimHandle,
    first: IpAddr,
    second: IpAddr,
    discard: bool,
) -> PeerConnection {
    let settings = PeerConnectionBuilder::default_settings()
        .with_discard_local_candidates_during_ice_restart(discard)
        .build();
    PeerConnection::builder()
        .runtime(sim.runtime())
        .setting_engine(settings)
        .bind([SocketAddr::new(first, 0), SocketAddr::new(second, 0)])
        .build()
        .await
        .expect("build")
}

/// Message `i`: its index, then bytes derived from it.
fn message(i: usize) -> Vec<u8> {
    let mut m = (i as u32).to_be_bytes().to_vec();
    m.extend((0..MESSAGE_SIZE - 4).map(|j| (i * 31 + j * 7) as u8));
    m
}

/// Sends [`MESSAGES`] messages, one every `gap` of virtual time.
fn send_all(sim: &SimHandle, dc: DataChannel, gap: Duration) -> JoinHandle<()> {
    let h = sim.clone();
    sim.spawn(async move {
        for i in 0..MESSAGES {
            dc.send(Bytes::from(message(i))).await.expect("send");
            h.sleep(gap).await;
        }
    })
}

/// Receives every message and checks each byte, in order.
async fn receive_all(sim: &SimHandle, dc: &DataChannel, limit: Duration) {
    let mut messages = dc.messages();
    for i in 0..MESSAGES {
        let m = within(sim, "message", limit, messages.next())
            .await
            .unwrap_or_else(|| panic!("stream ended after {i} messages"));
        assert_eq!(m.data.as_ref(), message(i).as_slice(), "message {i}");
    }
}

/// Waits until `pc`'s ICE connection is in `state`.
async fn ice_state(sim: &SimHandle, pc: &PeerConnection, state: RTCIceConnectionState) {
    let mut states = pc.ice_connection_states();
    if pc.ice_connection_state() == state {
        return;
    }
    within(sim, "ice state", Duration::from_secs(60), async {
        while let Some(s) = states.next().await {
            if s == state {
                return;
            }
        }
        panic!("ICE state stream ended before {state}")
    })
    .await
}

/// Relays every trickled candidate of `from` to `to`; returns how many were relayed (the end
/// marker included) when `from` closes.
fn trickle(sim: &SimHandle, from: &PeerConnection, to: &PeerConnection) -> JoinHandle<usize> {
    let mut candidates = from.ice_candidates();
    let to = to.clone();
    sim.spawn(async move {
        let mut n = 0;
        while let Some(c) = candidates.next().await {
            n += 1;
            if let IceCandidateEvent::Candidate(c) = c {
                let _ = to.add_ice_candidate(c).await;
            }
        }
        n
    })
}

/// The restart offer/answer, with full descriptions.
async fn restart(offerer: &PeerConnection, answerer: &PeerConnection) {
    let mut needed = offerer.negotiation_needed();
    offerer.restart_ice().await.expect("restart_ice");
    assert!(needed.next().await.is_some(), "negotiation needed");
    let before = ufrag(&offerer.local_description().await.unwrap().unwrap().sdp);
    negotiate(offerer, answerer).await;
    let after = ufrag(&offerer.local_description().await.unwrap().unwrap().sdp);
    assert_ne!(before, after, "the restart offer has new credentials");
}

fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("ufrag")
        .to_owned()
}

/// The local address of the selected pair.
async fn selected_local(pc: &PeerConnection) -> IpAddr {
    let pair = pc
        .selected_candidate_pair()
        .await
        .unwrap()
        .expect("selected pair");
    pair.local().address.parse().expect("address")
}

#[test]
fn a_dead_path_comes_back_through_a_restart_and_no_byte_is_lost() {
    dead_path_comes_back(41, false);
}

/// The same with a core that drops its local candidates at the restart: the host candidates
/// come back from the bound sockets, and are trickled.
#[test]
fn a_dead_path_comes_back_with_candidates_gathered_anew_and_trickled() {
    dead_path_comes_back(44, true);
}

fn dead_path_comes_back(seed: u64, discard: bool) {
    init_log();
    let sim = SimRuntime::new(seed);
    // Only the first path works at first.
    sim.set_default_link(LinkConfig::cut());
    sim.set_path(HOST_A, HOST_B, link());
    let h = sim.handle().clone();
    let limit = Duration::from_secs(60);
    sim.block_on(async {
        let a = two_homed(&h, HOST_A, HOST_A2, discard).await;
        let b = two_homed(&h, HOST_B, HOST_B2, discard).await;
        let mut incoming = b.data_channels();
        let dc_a = a.create_data_channel("transfer", Default::default()).await;
        let dc_a = dc_a.expect("create");
        negotiate(&a, &b).await;
        let dc_b = within(&h, "channel", limit, incoming.next()).await.unwrap();
        within(&h, "open", limit, dc_a.opened()).await.unwrap();
        assert_eq!(selected_local(&a).await, HOST_A);

        // A message every 50 ms: 15 s of transfer, with the outage in the middle.
        let sender = send_all(&h, dc_a.clone(), Duration::from_millis(50));
        let receiver = {
            let (h2, dc_b) = (h.clone(), dc_b.clone());
            h.spawn(async move { receive_all(&h2, &dc_b, limit).await })
        };
        h.sleep(Duration::from_secs(3)).await;
        // The first path dies; the second appears.
        h.set_path(HOST_A, HOST_B, LinkConfig::cut());
        h.set_path(HOST_A2, HOST_B2, link());
        ice_state(&h, &a, RTCIceConnectionState::Disconnected).await;
        assert_ne!(a.connection_state(), RTCPeerConnectionState::Closed);

        let (mut from_a, mut from_b) = (a.ice_candidates(), b.ice_candidates());
        if discard {
            // The answer has no candidates (the answerer's core dropped them with the
            // offer): they come by trickle.
            let mut needed = a.negotiation_needed();
            a.restart_ice().await.unwrap();
            assert!(needed.next().await.is_some(), "negotiation needed");
            let offer = a.create_offer().await.unwrap();
            a.set_local_description(offer.clone()).await.unwrap();
            b.set_remote_description(offer).await.unwrap();
            let answer = b.create_answer().await.unwrap();
            assert!(!answer.sdp.contains("a=candidate:"), "{}", answer.sdp);
            b.set_local_description(answer.clone()).await.unwrap();
            a.set_remote_description(answer).await.unwrap();
            for (from, to) in [(&mut from_a, &b), (&mut from_b, &a)] {
                let mut hosts = Vec::new();
                while let IceCandidateEvent::Candidate(c) =
                    within(&h, "trickle", limit, from.next()).await.unwrap()
                {
                    hosts.push(c.candidate.split(' ').nth(4).unwrap().to_owned());
                    to.add_ice_candidate(c).await.unwrap();
                }
                assert_eq!(hosts.len(), 2, "both sockets, again: {hosts:?}");
            }
        } else {
            restart(&a, &b).await;
        }
        connected(&h, &a, limit).await;
        ice_state(&h, &a, RTCIceConnectionState::Connected).await;
        ice_state(&h, &b, RTCIceConnectionState::Connected).await;
        assert_eq!(selected_local(&a).await, HOST_A2);
        assert_eq!(selected_local(&b).await, HOST_B2);

        within(&h, "sender", limit, sender).await;
        within(&h, "receiver", limit, receiver).await;
        assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
        // Channels keep working both ways after the restart.
        let mut back = dc_a.messages();
        dc_b.send(Bytes::from_static(b"back")).await.unwrap();
        let m = within(&h, "reply", limit, back.next()).await.unwrap();
        assert_eq!(m.data.as_ref(), b"back");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[test]
fn a_restart_of_a_healthy_connection_keeps_channels_open_and_gathers_again() {
    init_log();
    let sim = SimRuntime::new(42);
    sim.set_default_link(link());
    let h = sim.handle().clone();
    let limit = Duration::from_secs(60);
    sim.block_on(async {
        let (a, b, dc_a, dc_b) = pair_with_channel(&h, "flow", Default::default(), limit).await;
        let (to_b, to_a) = (trickle(&h, &a, &b), trickle(&h, &b, &a));
        let sender = send_all(&h, dc_a.clone(), Duration::from_millis(10));
        let receiver = {
            let (h2, dc_b) = (h.clone(), dc_b.clone());
            h.spawn(async move { receive_all(&h2, &dc_b, limit).await })
        };
        h.sleep(Duration::from_secs(1)).await;
        let mut gathering = a.ice_gathering_states();
        restart(&a, &b).await;
        // Gathering ran again; the connection stays (or comes back) connected.
        within(&h, "gathering", limit, async {
            while let Some(s) = gathering.next().await {
                if s == webrtc_streams::rtc::peer_connection::state::RTCIceGatheringState::Complete
                {
                    return;
                }
            }
        })
        .await;
        ice_state(&h, &a, RTCIceConnectionState::Connected).await;
        ice_state(&h, &b, RTCIceConnectionState::Connected).await;
        let offer = a.local_description().await.unwrap().unwrap().sdp;
        let answer = b.local_description().await.unwrap().unwrap().sdp;
        within(&h, "sender", limit, sender).await;
        within(&h, "receiver", limit, receiver).await;
        assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
        assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);
        a.close().await.unwrap();
        b.close().await.unwrap();
        let (to_b, to_a) = (
            within(&h, "trickle", limit, to_b).await,
            within(&h, "trickle", limit, to_a).await,
        );
        // The restart's gathering ended on both sides (its end marker was trickled); the
        // host candidates the core kept are in the restart offer and answer, under the new
        // credentials (`rtc` announces a kept candidate only in the description).
        assert!(to_b >= 1 && to_a >= 1, "trickled {to_b} and {to_a}");
        for sdp in [offer, answer] {
            assert!(sdp.contains("a=candidate:"), "{sdp}");
        }
    });
}

#[test]
fn set_configuration_checks_ice_servers_like_build() {
    init_log();
    let sim = SimRuntime::new(43);
    let h = sim.handle().clone();
    sim.block_on(async {
        let pc = peer(&h, HOST_A).await;
        let config = |urls: &[&str], user: &str| {
            RTCConfigurationBuilder::new()
                .with_ice_servers(vec![RTCIceServer {
                    urls: urls.iter().map(|u| (*u).to_owned()).collect(),
                    username: user.to_owned(),
                    credential: user.to_owned(),
                }])
                .build()
        };
        let r = pc.set_configuration(config(&["http://x"], "")).await;
        assert!(
            matches!(
                r,
                Err(Error::InvalidIceServer {
                    reason: IceServerError::UnsupportedScheme(_),
                    ..
                })
            ),
            "{r:?}"
        );
        let r = pc
            .set_configuration(config(&["turn:10.0.0.9:3478"], ""))
            .await;
        assert!(
            matches!(
                r,
                Err(Error::InvalidIceServer {
                    reason: IceServerError::MissingCredentials,
                    ..
                })
            ),
            "{r:?}"
        );
        pc.set_configuration(config(&["stun:10.0.0.9:3478"], ""))
            .await
            .expect("a valid configuration");
        pc.close().await.unwrap();
        let r = pc
            .set_configuration(config(&["stun:10.0.0.9:3478"], ""))
            .await;
        assert!(matches!(r, Err(Error::Closed(_))), "{r:?}");
    });
}

/// Servers given with `set_configuration` are used by the restart's gathering: a STUN
/// server that never answers ends in an error event naming it, and gathering still
/// completes.
#[test]
fn the_restart_gathers_through_the_servers_of_set_configuration() {
    init_log();
    let sim = SimRuntime::new(45);
    sim.set_default_link(link());
    let h = sim.handle().clone();
    let limit = Duration::from_secs(60);
    sim.block_on(async {
        let (a, b, dc_a, dc_b) = pair_with_channel(&h, "reconf", Default::default(), limit).await;
        let mut errors = a.ice_candidate_errors();
        let url = "stun:10.0.9.9:3478";
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(vec![RTCIceServer {
                urls: vec![url.to_owned()],
                ..Default::default()
            }])
            .build();
        a.set_configuration(configuration).await.unwrap();
        // Nothing gathers before the restart.
        h.sleep(Duration::from_secs(10)).await;
        let early = h.timeout(Duration::ZERO, errors.next()).await;
        assert!(early.is_err(), "{early:?}");
        restart(&a, &b).await;
        let error = within(&h, "error event", limit, errors.next())
            .await
            .unwrap();
        assert_eq!(error.url, url);
        ice_state(&h, &a, RTCIceConnectionState::Connected).await;
        let mut msgs = dc_b.messages();
        dc_a.send(Bytes::from_static(b"still here")).await.unwrap();
        let m = within(&h, "message", limit, msgs.next()).await.unwrap();
        assert_eq!(m.data.as_ref(), b"still here");
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
