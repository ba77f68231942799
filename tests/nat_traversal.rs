//! Connections across NATs on a simulated internet (tests/common/netns.rs): real namespaces,
//! real nftables NAT, a real coturn in the public namespace. Each case asserts the types of the
//! selected candidate pair from `stats()`, not just "connected", and moves data over it.
//!
//! Needs root, `ip`, `nft` and `turnserver` (CI runs these in `.ci/run`; install with
//! `.ci/install-interop-deps`).
// Linux only: network namespaces, nftables NAT and coturn, as root.
#![cfg(target_os = "linux")]

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{
    EventStream, IceCandidateEvent, PeerConnection,
    rtc::{
        data_channel::RTCDataChannelInit,
        peer_connection::{
            configuration::{RTCConfigurationBuilder, RTCIceTransportPolicy},
            transport::{RTCIceCandidateType, RTCIceServer},
        },
    },
};

use common::{
    connected,
    coturn::{Coturn, CoturnConfig},
    netns::{Internet, Nat, NsRuntime, PEER_IP, SERVER_IP},
    within,
};

/// The bound on a whole case. Everything the case built (namespaces, coturn, connections) is
/// dropped, and so cleaned up, when it runs out.
const CASE_LIMIT: Duration = Duration::from_secs(55);

async fn bounded(case: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(CASE_LIMIT, case).await.is_err() {
        panic!("the case did not finish within {CASE_LIMIT:?}");
    }
}

/// One end of the selected candidate pair: its type and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct End {
    typ: RTCIceCandidateType,
    addr: Option<SocketAddr>,
}

/// The selected candidate pair, as `PeerConnection::selected_candidate_pair` gives it.
/// `remote` is always known (the report of `stats()` in `rtc` 0.21.1 lacks peer-reflexive
/// remote candidates and those that came in a description); it stays an `Option` so that the
/// cases read as before.
#[derive(Debug, Clone)]
struct Selected {
    local: End,
    remote: Option<End>,
}

impl Selected {
    fn involves(&self, t: RTCIceCandidateType) -> bool {
        self.local.typ == t || self.remote.is_some_and(|r| r.typ == t)
    }
}

fn end(c: &webrtc_streams::rtc::peer_connection::transport::RTCIceCandidate) -> End {
    End {
        typ: c.typ,
        addr: c
            .address
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, c.port)),
    }
}

async fn selected(pc: &PeerConnection, who: &str) -> Selected {
    let pair = pc
        .selected_candidate_pair()
        .await
        .unwrap_or_else(|e| panic!("{who}: {e}"))
        .unwrap_or_else(|| panic!("{who}: no selected candidate pair"));
    Selected {
        local: end(pair.local()),
        remote: Some(end(pair.remote())),
    }
}

/// Hands every candidate from `from` to `to` until the end-of-candidates marker.
async fn forward(mut from: EventStream<IceCandidateEvent>, to: &PeerConnection) {
    while let Some(IceCandidateEvent::Candidate(c)) = from.next().await {
        to.add_ice_candidate(c).await.expect("add_ice_candidate");
    }
}

/// Offer/answer with every candidate trickled through `add_ice_candidate` (the descriptions
/// themselves carry none), both directions at once, until both ends of gathering.
async fn negotiate_trickle(offerer: &PeerConnection, answerer: &PeerConnection) {
    let from_offerer = offerer.ice_candidates();
    let from_answerer = answerer.ice_candidates();
    let offer = offerer.create_offer().await.expect("offer");
    assert!(
        candidate_types(&offer.sdp).is_empty(),
        "candidates in the offer"
    );
    offerer
        .set_local_description(offer.clone())
        .await
        .expect("sld offer");
    answerer
        .set_remote_description(offer)
        .await
        .expect("srd offer");
    let answer = answerer.create_answer().await.expect("answer");
    assert!(
        candidate_types(&answer.sdp).is_empty(),
        "candidates in the answer"
    );
    answerer
        .set_local_description(answer.clone())
        .await
        .expect("sld answer");
    offerer
        .set_remote_description(answer)
        .await
        .expect("srd answer");
    within(
        "trickling every candidate until the end of gathering",
        futures::future::join(
            forward(from_offerer, answerer),
            forward(from_answerer, offerer),
        ),
    )
    .await;
}

/// The candidate types (`typ X`) in a description.
fn candidate_types(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.find(|w| *w == "typ")?;
            it.next().map(str::to_owned)
        })
        .collect()
}

/// Fails, saying which gathering is missing, unless `pc`'s complete local description has a
/// candidate of type `typ`.
async fn assert_gathered(pc: &PeerConnection, who: &str, typ: &str) {
    let desc = pc
        .local_description()
        .await
        .unwrap()
        .expect("local description");
    let types = candidate_types(&desc.sdp);
    assert!(
        types.iter().any(|t| t == typ),
        "{who} gathered no `{typ}` candidate (has {types:?}; {}): STUN/TURN gathering \
         (`ice_servers`) did not produce one",
        desc.sdp
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
}

/// Opens a channel from `a` to `b` and sends a few messages each way over the selected pair.
async fn exchange(a: &PeerConnection, b: &PeerConnection) {
    let mut incoming = b.data_channels();
    let dc_a = a
        .create_data_channel("nat", RTCDataChannelInit::default())
        .await
        .expect("create channel");
    // The channel was created after negotiation: its DCEP open goes over the SCTP association.
    // Remote channels wait for their first reader, so the "setup" channel of the case (opened
    // before anyone on b listened) comes first: skip it.
    let dc_b = within("remote channel", async {
        loop {
            let dc = incoming.next().await.expect("channel stream ended");
            if dc.label() == "nat" {
                return dc;
            }
        }
    })
    .await;
    within("open a", dc_a.opened()).await.expect("open a");
    within("open b", dc_b.opened()).await.expect("open b");
    let mut from_a = dc_b.messages();
    let mut from_b = dc_a.messages();
    for i in 0..20u32 {
        let payload = Bytes::from(format!("ping {i} {}", "x".repeat(i as usize * 50)));
        within("send a", dc_a.send(payload.clone()))
            .await
            .expect("send a");
        let m = within("receive at b", from_a.next())
            .await
            .expect("b messages");
        assert_eq!(m.data, payload);
        within("send b", dc_b.send(m.data)).await.expect("send b");
        let m = within("receive at a", from_b.next())
            .await
            .expect("a messages");
        assert_eq!(m.data, payload);
    }
}

fn coturn_in_public(net: &Internet) -> Coturn {
    Coturn::start(CoturnConfig {
        listen_ip: SERVER_IP.into(),
        netns: Some(net.public.clone()),
        ..CoturnConfig::default()
    })
    .unwrap_or_else(|e| panic!("coturn: {e}"))
}

/// A connection in `rt`'s namespace using `servers`.
async fn peer_in(rt: &NsRuntime, servers: Vec<RTCIceServer>) -> PeerConnection {
    peer_with_policy(rt, servers, RTCIceTransportPolicy::All).await
}

/// A connection in `rt`'s namespace using `servers`, gathering what `policy` allows.
async fn peer_with_policy(
    rt: &NsRuntime,
    servers: Vec<RTCIceServer>,
    policy: RTCIceTransportPolicy,
) -> PeerConnection {
    rt.peer(move || PeerConnection::builder().configuration(ice_config(servers, policy)))
        .await
}

/// A configuration with `servers` and `policy`.
fn ice_config(
    servers: Vec<RTCIceServer>,
    policy: RTCIceTransportPolicy,
) -> webrtc_streams::RTCConfiguration {
    RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .with_ice_transport_policy(policy)
        .build()
}

/// Both peers behind endpoint-independent NATs, with a STUN server on the public network: the
/// hosts cannot reach each other's private addresses, the server-reflexive pair works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_behind_endpoint_independent_nat_connect_over_srflx() {
    bounded(srflx_case(false)).await;
}

/// The same with a TURN server only: its Allocate answers give the server-reflexive
/// candidates, and the direct pair still beats the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srflx_candidates_come_from_a_turn_server_too() {
    bounded(srflx_case(true)).await;
}

/// `via_turn`: only a TURN server is configured; the server-reflexive candidates come from
/// its Allocate answers (XOR-MAPPED-ADDRESS), as browsers gather them.
async fn srflx_case(via_turn: bool) {
    common::init_log();
    let net = Internet::new(Nat::EndpointIndependent, Nat::EndpointIndependent);
    let turn = coturn_in_public(&net);
    let (rt_a, rt_b) = (NsRuntime::start(&net.a.host), NsRuntime::start(&net.b.host));
    let stun = if via_turn {
        vec![turn.ice_server(&[turn.turn_udp_url()])]
    } else {
        vec![RTCIceServer {
            urls: vec![turn.stun_url()],
            ..Default::default()
        }]
    };
    let a = peer_in(&rt_a, stun.clone()).await;
    let b = peer_in(&rt_b, stun).await;
    let dc = a
        .create_data_channel("setup", RTCDataChannelInit::default())
        .await
        .expect("channel");
    negotiate_trickle(&a, &b).await;
    assert_gathered(&a, "peer A", "srflx").await;
    assert_gathered(&b, "peer B", "srflx").await;
    tokio::join!(connected(&a), connected(&b));
    within("setup channel", dc.opened()).await.expect("open");
    exchange(&a, &b).await;

    let (sa, sb) = (selected(&a, "A").await, selected(&b, "B").await);
    for (who, s, peer_wan) in [("A", &sa, net.b.wan_ip), ("B", &sb, net.a.wan_ip)] {
        assert!(
            !s.involves(RTCIceCandidateType::Relay),
            "{who} relayed: {s:?}"
        );
        // The other side's packets pass this side's NAT only once this side has sent to them,
        // which needs their trickled candidate: the remote end is that signaled srflx.
        let remote = s
            .remote
            .unwrap_or_else(|| panic!("{who}: remote candidate not signaled: {s:?}"));
        assert_eq!(remote.typ, RTCIceCandidateType::Srflx, "{who}: {s:?}");
        assert_eq!(
            remote.addr.map(|a| a.ip()),
            Some(IpAddr::from(peer_wan)),
            "{who} talks to the other router's public address: {s:?}"
        );
    }
    a.close().await.ok();
    b.close().await.ok();
}

/// Both peers behind symmetric NATs: a server-reflexive address only works toward the STUN
/// server, so the connection must go through coturn's relay (TURN over UDP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_behind_symmetric_nat_connect_through_the_turn_relay() {
    bounded(relay_case(RTCIceTransportPolicy::Relay)).await;
}

/// The same with every candidate type gathered (as browsers do): the host and
/// server-reflexive pairs fail, the relay wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_behind_symmetric_nat_gathering_everything_end_up_on_the_relay() {
    bounded(relay_case(RTCIceTransportPolicy::All)).await;
}

async fn relay_case(relay: RTCIceTransportPolicy) {
    common::init_log();
    let net = Internet::new(Nat::Symmetric, Nat::Symmetric);
    let turn = coturn_in_public(&net);
    let (rt_a, rt_b) = (NsRuntime::start(&net.a.host), NsRuntime::start(&net.b.host));
    let servers = vec![turn.ice_server(&[turn.stun_url(), turn.turn_udp_url()])];
    // `relay`: relay candidates only, or every type. (Every type used to fail here because of
    // the test network, not the library: see the public namespace's default route in
    // tests/common/netns.rs.)
    let a = peer_with_policy(&rt_a, servers.clone(), relay).await;
    let b = peer_with_policy(&rt_b, servers, relay).await;
    let dc = a
        .create_data_channel("setup", RTCDataChannelInit::default())
        .await
        .expect("channel");
    negotiate_trickle(&a, &b).await;
    assert_gathered(&a, "peer A", "relay").await;
    assert_gathered(&b, "peer B", "relay").await;
    tokio::join!(connected(&a), connected(&b));
    within("setup channel", dc.opened()).await.expect("open");
    exchange(&a, &b).await;

    let (sa, sb) = (selected(&a, "A").await, selected(&b, "B").await);
    for (who, s) in [("A", &sa), ("B", &sb)] {
        assert!(
            s.involves(RTCIceCandidateType::Relay),
            "{who}: symmetric NATs on both sides, yet no relay in the selected pair: {s:?}\n{}",
            turn.diagnostics()
        );
    }
    let relay_end = |s: &Selected| {
        std::iter::once(s.local)
            .chain(s.remote)
            .filter(|e| e.typ == RTCIceCandidateType::Relay)
            .filter_map(|e| e.addr)
            .collect::<Vec<_>>()
    };
    for a in relay_end(&sa).into_iter().chain(relay_end(&sb)) {
        assert_eq!(
            a.ip(),
            IpAddr::from(SERVER_IP),
            "relayed address is coturn's"
        );
    }
    a.close().await.ok();
    b.close().await.ok();
}

/// A server on the public network (one UDP socket, no ICE servers) serving a client behind a
/// NAT: the client reaches the server's host candidate, the server learns the client's mapped
/// address as a peer-reflexive candidate. Works with host candidates alone, for each NAT
/// flavour that lets UDP out.
async fn public_server_serves_client_behind(nat: Nat) {
    common::init_log();
    let net = Internet::new(nat, Nat::EndpointIndependent);
    let (rt_pub, rt_a) = (NsRuntime::start(&net.public), NsRuntime::start(&net.a.host));
    let server = rt_pub
        .peer(|| PeerConnection::builder().bind([SocketAddr::new(PEER_IP.into(), 0)]))
        .await;
    let client = rt_a.peer(PeerConnection::builder).await;
    let server_addr = server.local_addrs()[0];
    let dc = client
        .create_data_channel("setup", RTCDataChannelInit::default())
        .await
        .expect("channel");
    negotiate_trickle(&client, &server).await;
    tokio::join!(connected(&client), connected(&server));
    within("setup channel", dc.opened()).await.expect("open");
    exchange(&client, &server).await;

    let (sc, ss) = (
        selected(&client, "client").await,
        selected(&server, "server").await,
    );
    let host = RTCIceCandidateType::Host;
    assert_eq!(sc.local.typ, host, "client: {sc:?}");
    assert_eq!(
        sc.local.addr.map(|a| a.ip()),
        Some(IpAddr::from(net.a.host_ip))
    );
    let server_end = End {
        typ: host,
        addr: Some(server_addr),
    };
    assert_eq!(sc.remote, Some(server_end), "client: {sc:?}");
    assert_eq!(ss.local, server_end, "server: {ss:?}");
    // The client signaled only its private host address, which the server cannot reach; the
    // server answers the client's router instead: a peer-reflexive remote candidate.
    let r = ss.remote.expect("remote end");
    assert_eq!(r.typ, RTCIceCandidateType::Prflx, "server: {ss:?}");
    assert_eq!(r.addr.map(|a| a.ip()), Some(IpAddr::from(net.a.wan_ip)));
    client.close().await.ok();
    server.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_server_serves_a_client_behind_endpoint_independent_nat() {
    bounded(public_server_serves_client_behind(Nat::EndpointIndependent)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_server_serves_a_client_behind_symmetric_nat() {
    bounded(public_server_serves_client_behind(Nat::Symmetric)).await;
}

/// Both homes drop every UDP packet on its way out (TCP still leaves, masqueraded): only
/// TURN over a stream gets through. `tls` picks TLS over TCP; relay-only, so that the
/// selected pair can only be the stream relay's.
async fn udp_blocked_case(tls: bool) {
    common::init_log();
    let net = Internet::new(Nat::UdpBlocked, Nat::UdpBlocked);
    let turn = Coturn::start(CoturnConfig {
        listen_ip: SERVER_IP.into(),
        netns: Some(net.public.clone()),
        tls,
        ..CoturnConfig::default()
    })
    .unwrap_or_else(|e| panic!("coturn: {e}"));
    let (rt_a, rt_b) = (NsRuntime::start(&net.a.host), NsRuntime::start(&net.b.host));
    let url = if tls {
        turn.turns_url().expect("turns url")
    } else {
        turn.turn_tcp_url()
    };
    // The UDP URL is given too: it must fail (UDP is blocked) without holding anything up.
    let servers = vec![turn.ice_server(&[turn.turn_udp_url(), url.clone()])];
    let ca = turn
        .ca_pem
        .as_ref()
        .map(|p| std::fs::read(p).expect("CA PEM"));
    let a = relay_only_peer(&rt_a, servers.clone(), ca.clone()).await;
    let b = relay_only_peer(&rt_b, servers, ca).await;
    let mut errors = a.ice_candidate_errors();
    let dc = a
        .create_data_channel("setup", RTCDataChannelInit::default())
        .await
        .expect("channel");
    negotiate_trickle(&a, &b).await;
    assert_gathered(&a, "peer A", "relay").await;
    assert_gathered(&b, "peer B", "relay").await;
    // The UDP server timed out; the stream server did not fail.
    let error = within("UDP TURN error", errors.next())
        .await
        .expect("error event");
    assert_eq!(error.url, turn.turn_udp_url(), "{error:?}");
    assert_eq!(error.error_code, 701, "{error:?}");
    tokio::join!(connected(&a), connected(&b));
    within("setup channel", dc.opened()).await.expect("open");
    exchange(&a, &b).await;

    let (sa, sb) = (selected(&a, "A").await, selected(&b, "B").await);
    for (who, s) in [("A", &sa), ("B", &sb)] {
        assert_eq!(
            s.local.typ,
            RTCIceCandidateType::Relay,
            "{who}: UDP blocked, yet the local end is not relayed: {s:?}\n{}",
            turn.diagnostics()
        );
        assert_eq!(
            s.local.addr.map(|a| a.ip()),
            Some(IpAddr::from(SERVER_IP)),
            "{who}: relayed address is coturn's: {s:?}"
        );
    }
    let log = turn.log_text();
    assert!(
        log.matches("tcp or tls connected to").count() >= 2,
        "the allocations came over streams\n{}",
        turn.diagnostics()
    );
    a.close().await.ok();
    b.close().await.ok();
}

/// A relay-only connection in `rt`'s namespace, trusting `ca` (PEM) for `turns:` servers.
async fn relay_only_peer(
    rt: &NsRuntime,
    servers: Vec<RTCIceServer>,
    ca: Option<Vec<u8>>,
) -> PeerConnection {
    rt.peer(move || {
        let builder = PeerConnection::builder()
            .ice_server_timeout(Duration::from_secs(3))
            .configuration(ice_config(servers, RTCIceTransportPolicy::Relay));
        match ca {
            Some(ca) => builder.tls_root_certificates(ca),
            None => builder,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_homes_udp_blocked_connect_through_turn_over_tcp() {
    bounded(udp_blocked_case(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_homes_udp_blocked_connect_through_turn_over_tls() {
    bounded(udp_blocked_case(true)).await;
}

/// A server behind a 1:1 NAT, as a cloud VM is: all its connections share one `UdpMux` port
/// and announce the NAT's public address (`nat_1to1_ips`): as their host candidate instead of
/// the private one (`Host`: the private address appears nowhere), or as a server-reflexive
/// candidate beside it (`Srflx`). A client on the public network and a client behind a NAT
/// both reach it at the public address.
async fn cloud_server_case(kind: RTCIceCandidateType) {
    use webrtc_streams::UdpMux;
    common::init_log();
    let net = Internet::new(Nat::OneToOne, Nat::EndpointIndependent);
    let (rt_srv, rt_pub, rt_b) = (
        NsRuntime::start(&net.a.host),
        NsRuntime::start(&net.public),
        NsRuntime::start(&net.b.host),
    );
    let (private, public) = (IpAddr::from(net.a.host_ip), IpAddr::from(net.a.wan_ip));
    let mux = rt_srv
        .run(|| async { UdpMux::bind("0.0.0.0:0".parse().unwrap()) })
        .await
        .expect("mux");
    let bound = mux.local_addrs();
    assert_eq!(bound.len(), 1, "{bound:?}");
    assert_eq!(bound[0].ip(), private);
    let announced = SocketAddr::new(public, bound[0].port());
    let server = |mux: UdpMux| {
        rt_srv.peer(move || {
            PeerConnection::builder()
                .udp_mux(&mux)
                .nat_1to1_ips([public], kind)
        })
    };
    let (s1, s2) = (server(mux.clone()).await, server(mux.clone()).await);
    let host = if kind == RTCIceCandidateType::Host {
        announced
    } else {
        bound[0]
    };
    assert_eq!(s1.local_addrs(), &[host]);
    let c1 = rt_pub
        .peer(|| PeerConnection::builder().bind([SocketAddr::new(PEER_IP.into(), 0)]))
        .await;
    let c2 = rt_b.peer(PeerConnection::builder).await;
    for (c, s) in [(&c1, &s1), (&c2, &s2)] {
        let dc = c
            .create_data_channel("setup", RTCDataChannelInit::default())
            .await
            .expect("channel");
        negotiate_trickle(c, s).await;
        tokio::join!(connected(c), connected(s));
        within("setup channel", dc.opened()).await.expect("open");
    }
    assert_eq!(mux.stats().connections, 2);
    tokio::join!(exchange(&c1, &s1), exchange(&c2, &s2));
    let end = End {
        typ: kind,
        addr: Some(announced),
    };
    for (c, s, who) in [(&c1, &s1, "public client"), (&c2, &s2, "NATed client")] {
        let (sc, ss) = (selected(c, who).await, selected(s, "server").await);
        // The client reaches the public address; it may have learnt it from the server's
        // check (peer-reflexive) before the trickled candidate arrived, which is the same
        // address (the core keeps the first type it saw).
        let remote = sc.remote.expect("remote end");
        assert_eq!(remote.addr, end.addr, "{who}: {sc:?}");
        assert!(
            remote.typ == end.typ || remote.typ == RTCIceCandidateType::Prflx,
            "{who}: {sc:?}"
        );
        assert_eq!(
            ss.local.addr.map(|a| a.port()),
            Some(announced.port()),
            "{ss:?}"
        );
        let sdp = s.local_description().await.unwrap().unwrap().sdp;
        let private_announced = sdp.contains(&format!(" {private} "));
        assert_eq!(
            private_announced,
            kind != RTCIceCandidateType::Host,
            "{sdp}"
        );
        assert!(
            sdp.contains(&format!(" {public} {} typ {kind}", announced.port())),
            "{sdp}"
        );
    }
    assert_eq!(mux.stats().unrouted, 0);
    for pc in [&c1, &c2, &s1, &s2] {
        pc.close().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_server_behind_1to1_nat_serves_clients_on_one_port() {
    bounded(cloud_server_case(RTCIceCandidateType::Host)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_server_announces_its_1to1_nat_address_as_srflx() {
    bounded(cloud_server_case(RTCIceCandidateType::Srflx)).await;
}

/// ICE-TCP: a client whose home drops all UDP (TCP leaves, masqueraded) and a public server,
/// both gathering UDP and TCP candidates and no ICE server: the UDP checks die at the home's
/// router, the client's active TCP candidate connects to the server's passive one, and
/// everything flows framed on that connection.
async fn ice_tcp_case() {
    use webrtc_streams::rtc::peer_connection::transport::{RTCIceProtocol, RTCIceTcpCandidateType};
    common::init_log();
    let net = Internet::new(Nat::UdpBlocked, Nat::EndpointIndependent);
    let (rt_pub, rt_a) = (NsRuntime::start(&net.public), NsRuntime::start(&net.a.host));
    let server = rt_pub
        .peer(|| {
            PeerConnection::builder()
                .bind([SocketAddr::new(PEER_IP.into(), 0)])
                .ice_tcp(true)
        })
        .await;
    let client = rt_a.peer(|| PeerConnection::builder().ice_tcp(true)).await;
    let dc = client
        .create_data_channel("setup", RTCDataChannelInit::default())
        .await
        .expect("channel");
    negotiate_trickle(&client, &server).await;
    tokio::join!(connected(&client), connected(&server));
    within("setup channel", dc.opened()).await.expect("open");
    exchange(&client, &server).await;
    let pair = client.selected_candidate_pair().await.unwrap().unwrap();
    assert_eq!(pair.local().protocol, RTCIceProtocol::Tcp, "client: {pair}");
    assert_eq!(
        pair.local().tcp_type,
        RTCIceTcpCandidateType::Active,
        "client: {pair}"
    );
    assert_eq!(pair.remote().address, PEER_IP.to_string(), "client: {pair}");
    let pair = server.selected_candidate_pair().await.unwrap().unwrap();
    assert_eq!(pair.local().protocol, RTCIceProtocol::Tcp, "server: {pair}");
    assert_eq!(
        pair.local().tcp_type,
        RTCIceTcpCandidateType::Passive,
        "server: {pair}"
    );
    // The server sees the client's router, not the client's private address.
    assert_eq!(
        pair.remote().address,
        net.a.wan_ip.to_string(),
        "server: {pair}"
    );
    client.close().await.ok();
    server.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_client_reaches_a_public_server_over_ice_tcp() {
    bounded(ice_tcp_case()).await;
}

/// A device moves to a new network address mid-call (a phone leaving Wi-Fi): an address
/// appears on the client's interface, and the path from the old one dies. An ICE restart
/// binds the new address (it did not exist when the connection was built), gathers it, and
/// the connection carries on over it; every message sent across the switch arrives.
async fn new_interface_case() {
    common::init_log();
    let net = Internet::new(Nat::EndpointIndependent, Nat::EndpointIndependent);
    let (rt_pub, rt_a) = (NsRuntime::start(&net.public), NsRuntime::start(&net.a.host));
    let server = rt_pub
        .peer(|| PeerConnection::builder().bind([SocketAddr::new(PEER_IP.into(), 0)]))
        .await;
    let client = rt_a.peer(PeerConnection::builder).await;
    let old_ip = net.a.host_ip.to_string();
    assert_eq!(client.local_addrs().len(), 1);
    let mut incoming = server.data_channels();
    let dc = client
        .create_data_channel("moving", RTCDataChannelInit::default())
        .await
        .expect("channel");
    negotiate_trickle(&client, &server).await;
    tokio::join!(connected(&client), connected(&server));
    within("open", dc.opened()).await.expect("open");
    let rx = within("server channel", incoming.next()).await.unwrap();
    let mut received = rx.messages();
    let send = |i: u32| dc.send(Bytes::from(format!("message {i}")));
    for i in 0..10 {
        within("send before", send(i)).await.unwrap();
    }

    // The new address appears; the old one's path dies at the router, both ways.
    let new_ip = "10.1.0.3";
    net.ip(&[
        "-n",
        &net.a.host,
        "addr",
        "add",
        &format!("{new_ip}/24"),
        "dev",
        "eth0",
    ])
    .unwrap();
    net.nft(
        &net.a.router,
        &format!(
            "insert rule ip filter forward ip saddr {old_ip} drop\n\
             insert rule ip filter forward ip daddr {old_ip} drop\n"
        ),
    )
    .unwrap();
    // Messages sent while the path is dead wait in SCTP and arrive after the restart.
    for i in 10..20 {
        within("send during", send(i)).await.unwrap();
    }

    let from_client = client.ice_candidates();
    let from_server = server.ice_candidates();
    client.restart_ice().await.expect("restart");
    let offer = client.create_offer().await.unwrap();
    client.set_local_description(offer.clone()).await.unwrap();
    server.set_remote_description(offer).await.unwrap();
    let answer = server.create_answer().await.unwrap();
    server.set_local_description(answer.clone()).await.unwrap();
    client.set_remote_description(answer).await.unwrap();
    let trickled = within(
        "trickling after the restart",
        futures::future::join(
            async {
                let mut from = from_client;
                let mut seen = Vec::new();
                while let Some(IceCandidateEvent::Candidate(c)) = from.next().await {
                    seen.push(c.candidate.clone());
                    server.add_ice_candidate(c).await.expect("add at server");
                }
                seen
            },
            forward(from_server, &client),
        ),
    )
    .await
    .0;
    let sdp = client.local_description().await.unwrap().unwrap().sdp;
    assert!(
        sdp.contains(&format!(" {new_ip} ")) || trickled.iter().any(|c| c.contains(new_ip)),
        "the new address was not gathered: {trickled:?}\n{sdp}"
    );
    for i in 20..30 {
        within("send after", send(i)).await.unwrap();
    }
    for i in 0..30 {
        let m = within("receive", received.next()).await.expect("messages");
        assert_eq!(m.data, format!("message {i}").as_bytes());
    }
    let pair = client.selected_candidate_pair().await.unwrap().unwrap();
    assert_eq!(pair.local().address, new_ip, "client: {pair}");
    client.close().await.ok();
    server.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_moves_the_call_to_an_address_that_appeared_after_build() {
    bounded(new_interface_case()).await;
}

/// A relay-only connection in `rt`'s namespace whose allocations are refreshed every second
/// (the minimum), so that a dead server is noticed by the TURN client within seconds too, not
/// only by ICE.
async fn quick_refresh_peer(rt: &NsRuntime, servers: Vec<RTCIceServer>) -> PeerConnection {
    rt.peer(move || {
        PeerConnection::builder()
            .configuration(ice_config(servers, RTCIceTransportPolicy::Relay))
            .setting_engine(
                webrtc_streams::PeerConnectionBuilder::default_settings()
                    .with_turn_allocation_refresh_interval_cap(Duration::from_secs(1))
                    .build(),
            )
    })
    .await
}

/// The TURN server of a relayed call vanishes (both peers behind symmetric NATs, relay only):
/// the TURN client reports it (an `IceCandidateError`, "allocation lost"), the connection
/// notices (`Disconnected`), both sides switch to another TURN server
/// (`set_configuration`) and one restarts ICE; the call resumes through the new relay and
/// every message, those sent while it was down included, arrives in order.
async fn turn_restart_case() {
    use webrtc_streams::rtc::peer_connection::state::RTCPeerConnectionState;
    common::init_log();
    let net = Internet::new(Nat::Symmetric, Nat::Symmetric);
    let turn1 = coturn_in_public(&net);
    let turn2 = Coturn::start(CoturnConfig {
        listen_ip: PEER_IP.into(),
        netns: Some(net.public.clone()),
        ..CoturnConfig::default()
    })
    .unwrap_or_else(|e| panic!("second coturn: {e}"));
    let (rt_a, rt_b) = (NsRuntime::start(&net.a.host), NsRuntime::start(&net.b.host));
    let relay = RTCIceTransportPolicy::Relay;
    let first = vec![turn1.ice_server(&[turn1.turn_udp_url()])];
    // Allocations refreshed every second (the minimum), so that a dead server is noticed by
    // the TURN client within seconds too, not only by ICE.
    let a = quick_refresh_peer(&rt_a, first.clone()).await;
    let b = quick_refresh_peer(&rt_b, first).await;
    let mut errors = a.ice_candidate_errors();
    let mut incoming = b.data_channels();
    let dc = a
        .create_data_channel("through-turn", RTCDataChannelInit::default())
        .await
        .expect("channel");
    negotiate_trickle(&a, &b).await;
    tokio::join!(connected(&a), connected(&b));
    within("open", dc.opened()).await.expect("open");
    let rx = within("b's channel", incoming.next()).await.unwrap();
    let mut received = rx.messages();
    let send = |i: u32| dc.send(Bytes::from(format!("relayed {i}")));
    for i in 0..10 {
        within("send before", send(i)).await.unwrap();
    }
    for i in 0..10 {
        let m = within("receive before", received.next()).await.unwrap();
        assert_eq!(m.data, format!("relayed {i}").as_bytes());
    }

    let mut states = a.connection_states();
    let turn1_url = turn1.turn_udp_url();
    drop(turn1); // killed: the relay path is gone
    for i in 10..20 {
        within("send during", send(i)).await.unwrap();
    }
    let error = within("the TURN client reports its server gone", errors.next())
        .await
        .expect("error event");
    assert_eq!(error.url, turn1_url, "{error:?}");
    assert_eq!(error.error_code, 701, "{error:?}");
    assert!(error.error_text.contains("allocation lost"), "{error:?}");
    within("a notices the dead relay", async {
        while let Some(s) = states.next().await {
            if matches!(
                s,
                RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed
            ) {
                return;
            }
        }
        panic!("state stream ended");
    })
    .await;

    let second = ice_config(vec![turn2.ice_server(&[turn2.turn_udp_url()])], relay);
    a.set_configuration(second.clone())
        .await
        .expect("a: new servers");
    b.set_configuration(second).await.expect("b: new servers");
    let (from_a, from_b) = (a.ice_candidates(), b.ice_candidates());
    a.restart_ice().await.expect("restart");
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer.clone()).await.unwrap();
    b.set_remote_description(offer).await.unwrap();
    let answer = b.create_answer().await.unwrap();
    b.set_local_description(answer.clone()).await.unwrap();
    a.set_remote_description(answer).await.unwrap();
    within(
        "trickling after the restart",
        futures::future::join(forward(from_a, &b), forward(from_b, &a)),
    )
    .await;
    tokio::join!(connected(&a), connected(&b));
    for i in 20..30 {
        within("send after", send(i)).await.unwrap();
    }
    for i in 10..30 {
        let m = within("receive across the switch", received.next())
            .await
            .unwrap();
        assert_eq!(m.data, format!("relayed {i}").as_bytes());
    }
    for (who, pc) in [("A", &a), ("B", &b)] {
        let s = selected(pc, who).await;
        assert_eq!(s.local.typ, RTCIceCandidateType::Relay, "{who}: {s:?}");
        assert_eq!(
            s.local.addr.map(|a| a.ip()),
            Some(IpAddr::from(PEER_IP)),
            "{who} relays through the second server: {s:?}\n{}",
            turn2.diagnostics()
        );
    }
    a.close().await.ok();
    b.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_call_moves_to_another_turn_server_after_a_restart() {
    bounded(turn_restart_case()).await;
}
