//! ICE servers: the configuration is checked at `build()`, every `stun:` server yields a
//! server-reflexive candidate per socket (trickled, retransmitted on loss, not forgeable from
//! another address), and a server that never answers ends in an `IceCandidateError` while
//! gathering still completes.
// Linux only: starts coturn (Linux process management in tests/common/coturn.rs).
#![cfg(target_os = "linux")]

mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use common::{coturn::Coturn, *};
use futures::StreamExt;
use webrtc_streams::{
    Error, IceCandidateEvent, IceServerError, PeerConnection, PeerConnectionEvent,
    rtc::{
        peer_connection::{
            configuration::{RTCConfiguration, RTCConfigurationBuilder},
            transport::{RTCIceCandidateInit, RTCIceServer},
        },
        stun::{
            message::{BINDING_SUCCESS, Message, Setter},
            xoraddr::XorMappedAddress,
        },
    },
};

fn config(servers: Vec<RTCIceServer>) -> RTCConfiguration {
    RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .build()
}

fn stun(url: &str) -> RTCIceServer {
    RTCIceServer {
        urls: vec![url.to_owned()],
        ..Default::default()
    }
}

async fn build_with(servers: Vec<RTCIceServer>) -> webrtc_streams::Result<PeerConnection> {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .configuration(config(servers))
        .ice_server_timeout(Duration::from_secs(2))
        .build()
        .await
}

/// The reason `build()` refused `servers` for.
async fn refusal(servers: Vec<RTCIceServer>) -> (String, IceServerError) {
    match build_with(servers).await {
        Err(Error::InvalidIceServer { url, reason }) => (url, reason),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("configuration accepted"),
    }
}

/// Starts gathering on `pc` (an offer as local description) and collects the candidates up
/// to the end-of-candidates marker.
async fn gather(pc: &PeerConnection) -> Vec<RTCIceCandidateInit> {
    let mut candidates = pc.ice_candidates();
    pc.create_data_channel("x", Default::default())
        .await
        .expect("channel");
    let offer = pc.create_offer().await.expect("offer");
    pc.set_local_description(offer).await.expect("sld");
    let mut out = Vec::new();
    within("end of candidates", async {
        while let Some(c) = candidates.next().await {
            match c {
                IceCandidateEvent::Candidate(c) => out.push(c),
                IceCandidateEvent::Complete => return,
                other => panic!("{other:?}"),
            }
        }
        panic!("candidate stream ended")
    })
    .await;
    out
}

fn typ(c: &RTCIceCandidateInit) -> &str {
    let mut f = c.candidate.split_whitespace();
    while let Some(w) = f.next() {
        if w == "typ" {
            return f.next().unwrap_or_default();
        }
    }
    ""
}

/// `(address, raddr)` of a candidate line.
fn addrs(c: &RTCIceCandidateInit) -> (SocketAddr, Option<SocketAddr>) {
    let f: Vec<&str> = c.candidate.split_whitespace().collect();
    let addr = format!("{}:{}", f[4], f[5]).parse().expect("address");
    let raddr = f
        .iter()
        .position(|w| *w == "raddr")
        .map(|i| format!("{}:{}", f[i + 1], f[i + 3]).parse().expect("raddr"));
    (addr, raddr)
}

#[tokio::test]
async fn malformed_or_unsupported_ice_servers_fail_build_with_a_typed_error() {
    init_log();
    let (url, reason) = refusal(vec![stun("http://stun.example.org")]).await;
    assert_eq!(url, "http://stun.example.org");
    assert_eq!(reason, IceServerError::UnsupportedScheme("http".to_owned()));
    let (_, reason) = refusal(vec![stun("stuns:stun.example.org")]).await;
    assert_eq!(
        reason,
        IceServerError::UnsupportedScheme("stuns".to_owned())
    );
    for bad in [
        "stun:",
        "stun:[::1",
        "stun:host:notaport",
        "stun:host?transport=udp",
    ] {
        let (url, reason) = refusal(vec![stun(bad)]).await;
        assert_eq!(url, bad);
        assert!(
            matches!(reason, IceServerError::Malformed(_)),
            "{bad}: {reason}"
        );
    }
    let turn = |user: &str, pass: &str| RTCIceServer {
        urls: vec!["turn:127.0.0.1:3478?transport=udp".to_owned()],
        username: user.to_owned(),
        credential: pass.to_owned(),
    };
    for (user, pass) in [("", "secret"), ("user", ""), ("", "")] {
        let (_, reason) = refusal(vec![turn(user, pass)]).await;
        assert_eq!(reason, IceServerError::MissingCredentials);
    }
    let (_, reason) = refusal(vec![RTCIceServer {
        urls: vec!["turn:127.0.0.1?transport=sctp".to_owned()],
        username: "u".to_owned(),
        credential: "p".to_owned(),
    }])
    .await;
    assert!(matches!(reason, IceServerError::Malformed(_)));
    // One bad URL among good ones is enough to refuse.
    let (url, _) = refusal(vec![
        stun("stun:127.0.0.1:3478"),
        stun("stun:127.0.0.1:3478"),
        stun("turn:127.0.0.1"),
    ])
    .await;
    assert_eq!(url, "turn:127.0.0.1");
    // A sound configuration builds.
    build_with(vec![stun("stun:127.0.0.1:3478"), turn("user", "secret")])
        .await
        .expect("valid configuration");
}

/// A STUN server on loopback that answers as one behind a NAT would: the mapped port is
/// the request's source port + 1000. It drops the first request (so the answer comes only
/// through a retransmission), and hands that request's transaction id to a forger on another
/// address, who answers it first with a mapping of its own choosing.
struct Responder {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    forged: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Responder {
    fn start(answer: bool) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let forger = UdpSocket::bind("127.0.0.1:0").expect("bind forger");
        let addr = sock.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let forged = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, f, s) = (requests.clone(), forged.clone(), stop.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let mut req = Message::new();
                req.raw = buf[..n].to_vec();
                if req.decode().is_err() {
                    continue;
                }
                let nth = r.fetch_add(1, Ordering::Relaxed);
                if !answer {
                    continue;
                }
                let reply = |mapped: SocketAddr| {
                    let mut m = Message::new();
                    m.typ = BINDING_SUCCESS;
                    m.transaction_id = req.transaction_id;
                    m.write_header();
                    XorMappedAddress {
                        ip: mapped.ip(),
                        port: mapped.port(),
                    }
                    .add_to(&mut m)
                    .expect("xor-mapped-address");
                    m.raw.clone()
                };
                if nth == 0 {
                    // The forger answers the first request; the server drops it.
                    let forged_reply = reply("10.9.9.9:9999".parse().unwrap());
                    forger.send_to(&forged_reply, from).expect("forge");
                    f.store(true, Ordering::Relaxed);
                    continue;
                }
                let mapped = SocketAddr::new(from.ip(), from.port() + 1000);
                sock.send_to(&reply(mapped), from).expect("reply");
            }
        });
        Self {
            addr,
            requests,
            forged,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("stun:{}", self.addr)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn stun_server_yields_a_server_reflexive_candidate_and_a_forged_answer_does_not() {
    init_log();
    let server = Responder::start(true);
    let pc = build_with(vec![stun(&server.url())]).await.expect("build");
    let local = pc.local_addrs()[0];
    let mut errors = pc.ice_candidate_errors();
    let candidates = gather(&pc).await;

    let host: Vec<_> = candidates.iter().filter(|c| typ(c) == "host").collect();
    let srflx: Vec<_> = candidates.iter().filter(|c| typ(c) == "srflx").collect();
    assert_eq!(host.len(), 1, "{candidates:?}");
    assert_eq!(srflx.len(), 1, "{candidates:?}");
    let (addr, raddr) = addrs(srflx[0]);
    assert_eq!(addr, SocketAddr::new(local.ip(), local.port() + 1000));
    assert_eq!(raddr, Some(local));
    assert_eq!(srflx[0].url.as_deref(), Some(server.url().as_str()));
    // The first request went unanswered by the server: the candidate came through a
    // retransmission. The forged answer to it, from another address, made nothing.
    assert!(server.requests.load(Ordering::Relaxed) >= 2);
    assert!(server.forged.load(Ordering::Relaxed));
    assert!(
        !candidates.iter().any(|c| c.candidate.contains("10.9.9.9")),
        "{candidates:?}"
    );
    // It reached the inbound filter, which refused it.
    let refused = pc.filter_stats().unauthenticated_stun;
    assert!(refused >= 1, "{:?}", pc.filter_stats());
    // The local description holds it too, and no server failed.
    let desc = pc
        .local_description()
        .await
        .unwrap()
        .expect("local description");
    assert!(desc.sdp.contains("typ srflx"), "{}", desc.sdp);
    pc.close().await.expect("close");
    assert!(errors.next().await.is_none(), "no error expected");
}

#[tokio::test]
async fn silent_stun_server_reports_an_error_and_gathering_still_completes() {
    init_log();
    let silent = Responder::start(false);
    let pc = build_with(vec![stun(&silent.url())]).await.expect("build");
    let local = pc.local_addrs()[0];
    let mut events = pc.events();
    let mut errors = pc.ice_candidate_errors();
    let candidates = gather(&pc).await;
    assert_eq!(candidates.len(), 1, "{candidates:?}");
    assert_eq!(typ(&candidates[0]), "host");
    // Requests were retransmitted until the server's timeout.
    assert!(silent.requests.load(Ordering::Relaxed) >= 2);

    let error = within("typed error", errors.next()).await.expect("error");
    assert_eq!(error.url, silent.url());
    assert_eq!(error.error_code, 701);
    assert_eq!(error.address, local.ip().to_string());
    assert_eq!(error.port, local.port());
    assert!(!error.error_text.is_empty());

    // On the ordered stream, the error comes before the end of candidates.
    let mut saw_error = false;
    within("events", async {
        while let Some(ev) = events.next().await {
            match ev {
                PeerConnectionEvent::IceCandidateError(e) => {
                    assert_eq!(e.error_code, 701);
                    saw_error = true;
                }
                PeerConnectionEvent::IceCandidate(None) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(saw_error);
}

/// coturn as a STUN server: on loopback it reports the host address itself, so the
/// server-reflexive candidate is redundant (RFC 8445 §5.1.3) and dropped; gathering
/// completes without errors and two peers configured with it connect.
#[tokio::test]
async fn peers_with_coturn_as_stun_server_gather_and_connect() {
    init_log();
    let turn = Coturn::start(Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let build = || async {
        PeerConnection::builder()
            .bind(["127.0.0.1:0".parse().unwrap()])
            .configuration(config(vec![stun(&turn.stun_url())]))
            .build()
            .await
            .expect("build")
    };
    let (a, b) = (build().await, build().await);
    let mut errors = a.ice_candidate_errors();
    let candidates = gather(&a).await;
    assert_eq!(candidates.len(), 1, "{candidates:?}");
    assert_eq!(typ(&candidates[0]), "host");

    let mut incoming = b.data_channels();
    let dc_a = a
        .create_data_channel("chat", Default::default())
        .await
        .expect("dc");
    negotiate(&a, &b).await;
    let dc_b = within("remote channel", async {
        while let Some(dc) = incoming.next().await {
            if dc.label() == "chat" {
                return dc;
            }
        }
        panic!("no channel")
    })
    .await;
    within("open", dc_a.opened()).await.expect("open");
    round_trip(&dc_a, &dc_b, b"through stun config").await;
    a.close().await.expect("close");
    assert!(errors.next().await.is_none(), "{}", turn.diagnostics());
}
