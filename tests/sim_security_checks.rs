//! Security checks of the handshake, on virtual time: a DTLS certificate that does not match
//! the `a=fingerprint` of the remote description fails the connection and delivers nothing; a
//! wrong ICE password never connects; a certificate generated once and reused (PEM out, PEM
//! in) keeps a server's fingerprint stable across connections.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    CloseReason, Error, EventStream, PeerConnection,
    rtc::{
        crypto::{self, SignatureScheme},
        peer_connection::{
            certificate::{CertificateParams, RTCCertificate},
            sdp::RTCSessionDescription,
            state::{RTCIceConnectionState, RTCPeerConnectionState},
        },
    },
    runtime::sim::{SimHandle, SimRuntime},
};

/// A third virtual host, for a second client of the same server.
const HOST_C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));

/// The `a=fingerprint` lines of `sdp`.
fn fingerprints(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|l| l.starts_with("a=fingerprint:"))
        .collect()
}

/// `sdp` with every line starting with `prefix` replaced by `line`.
fn replace_lines(sdp: &str, prefix: &str, line: &str) -> String {
    let mut n = 0;
    let out: String = sdp
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with(prefix) {
                n += 1;
                format!("{line}\r\n")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(n > 0, "no {prefix} line in the description");
    out
}

/// The full local description after gathering.
async fn full_local(pc: &PeerConnection, desc: RTCSessionDescription) -> RTCSessionDescription {
    pc.set_local_description(desc).await.expect("sld");
    pc.gathering_complete().await.expect("gathering");
    pc.local_description()
        .await
        .unwrap()
        .expect("local description")
}

/// Offer from `a`, answer from `b`; `tamper` rewrites the answer before `a` applies it.
async fn negotiate_tampered(
    a: &PeerConnection,
    b: &PeerConnection,
    tamper: impl FnOnce(&str) -> String,
) {
    let offer = full_local(a, a.create_offer().await.expect("offer")).await;
    b.set_remote_description(offer).await.expect("srd offer");
    let answer = full_local(b, b.create_answer().await.expect("answer")).await;
    let sdp = tamper(&answer.sdp);
    let answer = RTCSessionDescription::answer(sdp).expect("tampered answer parses");
    a.set_remote_description(answer).await.expect("srd answer");
}

/// Waits (bounded by `limit`) until `states` yields `state`, `Failed` first or then; panics
/// if it yields `Connected`.
async fn reaches_without_connecting(
    h: &SimHandle,
    mut states: EventStream<RTCPeerConnectionState>,
    state: RTCPeerConnectionState,
    limit: Duration,
) {
    within(h, "state", limit, async {
        let mut failed = false;
        while let Some(s) = states.next().await {
            assert_ne!(s, RTCPeerConnectionState::Connected, "must not connect");
            failed |= s == RTCPeerConnectionState::Failed;
            if s == state {
                assert!(failed, "{state} without Failed first");
                return;
            }
        }
        panic!("state stream ended before {state}");
    })
    .await;
}

/// A DTLS certificate that does not match the fingerprint in the remote description: the
/// side that checks it goes `Failed`, no channel opens and no message is delivered.
#[test]
fn a_certificate_not_matching_the_fingerprint_fails_and_delivers_nothing() {
    init_log();
    let wall = Instant::now();
    let sim = SimRuntime::new(11);
    let h = sim.handle().clone();
    let limit = Duration::from_secs(90);
    sim.block_on(async {
        let a = peer(&h, HOST_A).await;
        let b = peer(&h, HOST_B).await;
        // A real fingerprint, of another connection's certificate.
        let other = peer(&h, HOST_C).await;
        let other_offer = full_local(&other, other.create_offer().await.unwrap()).await;
        let wrong = fingerprints(&other_offer.sdp)[0].to_owned();

        let mut b_channels = b.data_channels();
        let dc_a = a
            .create_data_channel("secret", Default::default())
            .await
            .unwrap();
        let mut a_ice = a.ice_connection_states();
        let (a_states, b_states) = (a.connection_states(), b.connection_states());
        negotiate_tampered(&a, &b, |sdp| {
            assert_ne!(fingerprints(sdp)[0], wrong);
            replace_lines(sdp, "a=fingerprint:", &wrong)
        })
        .await;
        // ICE itself succeeds (the credentials are right): the failure is DTLS's.
        within(&h, "ice connected", limit, async {
            while let Some(s) = a_ice.next().await {
                if s == RTCIceConnectionState::Connected {
                    return;
                }
            }
        })
        .await;
        // Both sides give the handshake up: `Failed`, then closed, with the reason.
        for (who, states) in [("a", a_states), ("b", b_states)] {
            reaches_without_connecting(&h, states, RTCPeerConnectionState::Closed, limit).await;
            println!("{who}: Failed then Closed by {:?} (virtual)", h.elapsed());
        }
        let opened = dc_a.opened().await;
        assert!(opened.is_err(), "{opened:?}");
        assert!(matches!(
            a.create_offer().await,
            Err(Error::Closed(CloseReason::DtlsFailed))
        ));
        // b never got the channel (nor any message on it).
        let got = b_channels.next().await;
        assert!(got.is_none(), "b got a channel: {got:?}");
        println!("wall {:?}", wall.elapsed());
    });
}

/// A wrong ICE password in the remote description: the connectivity checks of the side that
/// uses it are refused, nothing connects, ICE fails, nothing is delivered.
#[test]
fn a_wrong_ice_password_never_connects() {
    init_log();
    let wall = Instant::now();
    let sim = SimRuntime::new(12);
    let h = sim.handle().clone();
    let limit = Duration::from_secs(90);
    sim.block_on(async {
        let a = peer(&h, HOST_A).await;
        let b = peer(&h, HOST_B).await;
        let mut b_channels = b.data_channels();
        let dc_a = a
            .create_data_channel("secret", Default::default())
            .await
            .unwrap();
        let mut a_ice = a.ice_connection_states();
        let a_states = a.connection_states();
        negotiate_tampered(&a, &b, |sdp| {
            // Same length and alphabet as a real one, another value.
            replace_lines(sdp, "a=ice-pwd:", "a=ice-pwd:WrongPasswordWrongPassword1")
        })
        .await;
        within(&h, "ice failed", limit, async {
            while let Some(s) = a_ice.next().await {
                assert!(
                    !matches!(
                        s,
                        RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
                    ),
                    "ICE connected with a wrong password"
                );
                if s == RTCIceConnectionState::Failed {
                    return;
                }
            }
            panic!("ICE state stream ended");
        })
        .await;
        println!("a: ICE Failed at {:?} (virtual)", h.elapsed());
        // `Failed`, then closed when no ICE restart came within the failed timeout.
        reaches_without_connecting(&h, a_states, RTCPeerConnectionState::Closed, limit).await;
        let opened = dc_a.opened().await;
        assert!(opened.is_err(), "{opened:?}");
        assert!(matches!(
            a.create_offer().await,
            Err(Error::Closed(CloseReason::IceFailed))
        ));
        let got = h.timeout(Duration::from_secs(10), b_channels.next()).await;
        assert!(
            got.is_err() || got.as_ref().unwrap().is_none(),
            "b got a channel: {got:?}"
        );
        assert!(!matches!(
            b.ice_connection_state(),
            RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
        ));
        println!(
            "b: ICE {} after {:?} (virtual); wall {:?}",
            b.ice_connection_state(),
            h.elapsed(),
            wall.elapsed()
        );
    });
}

/// A certificate generated once, written as PEM and read back for every connection: each
/// connection's description carries the same fingerprint (the certificate's), each connects,
/// and a connection without it gets another one.
#[test]
fn a_reused_certificate_keeps_the_fingerprint_stable() {
    init_log();
    let provider = crypto::default_provider().expect("crypto provider");
    let generated = RTCCertificate::generate(
        provider.crypto(),
        SignatureScheme::EcdsaP256Sha256,
        CertificateParams::new(vec!["server".to_owned()]).unwrap(),
    )
    .expect("generate");
    let pem = generated.serialize_pem().expect("pem out");
    // Expiry, private key and certificate: everything needed to use it again.
    for block in ["EXPIRES", "PRIVATE_KEY", "CERTIFICATE"] {
        assert!(pem.contains(&format!("-----BEGIN {block}-----")), "{block}");
    }
    let fingerprint = {
        let fp = &generated.get_fingerprints(provider.crypto()).unwrap()[0];
        format!("a=fingerprint:{} {}", fp.algorithm, fp.value)
    };

    let sim = SimRuntime::new(13);
    let h = sim.handle().clone();
    let limit = Duration::from_secs(30);
    sim.block_on(async {
        let server = |host| {
            let cert = RTCCertificate::from_pem(&pem, provider.crypto()).expect("pem in");
            PeerConnection::builder()
                .runtime(h.runtime())
                .bind([SocketAddr::new(host, 0)])
                .certificate(cert)
                .build()
        };
        let mut seen = Vec::new();
        // Two connections of the same server (one per client, on its own socket).
        for (server_host, client_host) in [(HOST_B, HOST_A), (HOST_B, HOST_C)] {
            let s = server(server_host)
                .await
                .expect("build with the certificate");
            let c = peer(&h, client_host).await;
            let mut incoming = s.data_channels();
            let dc_c = c
                .create_data_channel("hello", Default::default())
                .await
                .unwrap();
            negotiate(&c, &s).await;
            let answer = s.local_description().await.unwrap().unwrap();
            let lines: Vec<String> = fingerprints(&answer.sdp)
                .into_iter()
                .map(str::to_owned)
                .collect();
            assert!(!lines.is_empty());
            assert!(
                lines.iter().all(|l| l.eq_ignore_ascii_case(&fingerprint)),
                "{lines:?} vs {fingerprint}"
            );
            // The client checks that certificate against it: the connection comes up.
            let dc_s = within(&h, "channel", limit, incoming.next()).await.unwrap();
            let mut msgs = dc_s.messages();
            within(&h, "open", limit, dc_c.opened()).await.unwrap();
            dc_c.send(Bytes::from_static(b"hi")).await.unwrap();
            assert_eq!(
                &within(&h, "message", limit, msgs.next())
                    .await
                    .unwrap()
                    .data[..],
                b"hi"
            );
            seen.push(lines[0].clone());
            s.close().await.unwrap();
            c.close().await.unwrap();
        }
        assert_eq!(seen[0], seen[1]);
        let fresh = peer(&h, HOST_B).await;
        let offer = full_local(&fresh, fresh.create_offer().await.unwrap()).await;
        assert_ne!(
            fingerprints(&offer.sdp)[0],
            seen[0],
            "a fresh connection has its own"
        );
        println!("stable across 2 connections: {}", seen[0]);
    });
}
