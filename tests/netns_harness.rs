//! The simulated internet (tests/common/netns.rs): real namespaces, real NAT, and connections
//! and coturn running inside them. Needs root, `ip` and `nft` (CI: `.ci/run`).
// Linux only: network namespaces (setns, ip netns, nftables).
#![cfg(target_os = "linux")]

mod common;

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use common::{
    coturn::{Coturn, CoturnConfig, binding},
    netns::{
        Internet, Nat, NsRuntime, PEER_IP, SERVER_IP, UdpEcho, in_netns, mapped_by_echo,
        netns_exists,
    },
};

const WAIT: Duration = Duration::from_secs(5);

/// A UDP socket on the home host (any local port).
fn host_socket(ns: &str) -> UdpSocket {
    in_netns(ns, || UdpSocket::bind("0.0.0.0:0"))
        .and_then(|r| r)
        .expect("bind in home")
}

#[test]
fn endpoint_independent_nat_rewrites_the_source_to_the_routers_address_and_keeps_the_port() {
    let net = Internet::new(Nat::EndpointIndependent, Nat::EndpointIndependent);
    let echo1 = UdpEcho::start(&net.public, SocketAddr::new(PEER_IP.into(), 7000));
    let echo2 = UdpEcho::start(&net.public, SocketAddr::new(SERVER_IP.into(), 7001));
    let sock = host_socket(&net.a.host);
    let local = sock.local_addr().unwrap().port();
    let seen1 = mapped_by_echo(&sock, echo1.addr, WAIT).expect("echo 1 answered");
    let seen2 = mapped_by_echo(&sock, echo2.addr, WAIT).expect("echo 2 answered");
    assert_eq!(
        seen1.ip(),
        IpAddr::from(net.a.wan_ip),
        "source rewritten to router A"
    );
    assert_eq!(
        seen1.port(),
        local,
        "masquerade keeps the port when it is free"
    );
    assert_eq!(seen1, seen2, "one mapping whatever the destination");
    // Home B goes out through its own router.
    let sock_b = host_socket(&net.b.host);
    let seen_b = mapped_by_echo(&sock_b, echo1.addr, WAIT).expect("echo answered B");
    assert_eq!(seen_b.ip(), IpAddr::from(net.b.wan_ip));
}

#[test]
fn symmetric_nat_maps_each_destination_to_its_own_port() {
    let net = Internet::new(Nat::Symmetric, Nat::Symmetric);
    let echos: Vec<UdpEcho> = [(PEER_IP, 7000), (PEER_IP, 7001), (SERVER_IP, 7002)]
        .into_iter()
        .map(|(ip, port)| UdpEcho::start(&net.public, SocketAddr::new(ip.into(), port)))
        .collect();
    let sock = host_socket(&net.a.host);
    let seen: Vec<SocketAddr> = echos
        .iter()
        .map(|e| mapped_by_echo(&sock, e.addr, WAIT).expect("echo answered"))
        .collect();
    assert!(seen.iter().all(|s| s.ip() == IpAddr::from(net.a.wan_ip)));
    // fully-random ports: three equal ones would mean one mapping for all (odds ~1e-9 else).
    let ports: HashSet<u16> = seen.iter().map(|s| s.port()).collect();
    assert!(
        ports.len() > 1,
        "one mapping for all destinations: {seen:?}"
    );
    // The same destination keeps its mapping.
    assert_eq!(
        mapped_by_echo(&sock, echos[0].addr, WAIT).expect("echo answered again"),
        seen[0]
    );
}

#[test]
fn udp_blocked_home_sends_no_udp_but_tcp_still_works() {
    let net = Internet::new(Nat::UdpBlocked, Nat::EndpointIndependent);
    let echo = UdpEcho::start(&net.public, SocketAddr::new(PEER_IP.into(), 7000));
    let sock = host_socket(&net.a.host);
    assert_eq!(
        mapped_by_echo(&sock, echo.addr, Duration::from_secs(1)),
        None
    );
    assert_eq!(echo.received(), 0, "a UDP datagram left the home");
    // The other home is not blocked: the echo works, so the silence above is the block.
    let sock_b = host_socket(&net.b.host);
    assert!(mapped_by_echo(&sock_b, echo.addr, WAIT).is_some());
    // TCP leaves home A, masqueraded.
    let listener = in_netns(&net.public, || TcpListener::bind((PEER_IP, 7443)))
        .and_then(|r| r)
        .expect("listener");
    let target = listener.local_addr().unwrap();
    let _conn = in_netns(&net.a.host, move || {
        TcpStream::connect_timeout(&target, WAIT)
    })
    .and_then(|r| r)
    .expect("TCP from the UDP-blocked home");
    let (_, from) = listener.accept().expect("accept");
    assert_eq!(from.ip(), IpAddr::from(net.a.wan_ip));
}

#[test]
fn unsolicited_traffic_does_not_enter_a_home() {
    let net = Internet::new(Nat::EndpointIndependent, Nat::EndpointIndependent);
    let sock = host_socket(&net.a.host);
    let port = sock.local_addr().unwrap().port();
    // A public host sends to router A's address at the host's port before the host sent
    // anything: no mapping, nothing arrives.
    let outsider = in_netns(&net.public, || UdpSocket::bind((PEER_IP, 0)))
        .and_then(|r| r)
        .unwrap();
    outsider
        .send_to(b"knock", SocketAddr::new(net.a.wan_ip.into(), port))
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "unsolicited datagram got in"
    );
    // The private address is not routable from the public network: a datagram sent there
    // leaves by the public side's default route and is dropped on the way, as on the
    // internet (the send itself succeeds: no error a relay would take for a broken socket).
    outsider
        .send_to(b"x", SocketAddr::new(net.a.host_ip.into(), port))
        .expect("sent into the void");
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "the public network has a route into home A"
    );
}

#[test]
fn coturn_in_the_public_namespace_reflects_the_nat_mapping() {
    let net = Internet::new(Nat::EndpointIndependent, Nat::Symmetric);
    let turn = Coturn::start(CoturnConfig {
        listen_ip: SERVER_IP.into(),
        netns: Some(net.public.clone()),
        ..CoturnConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let sock = host_socket(&net.a.host);
    let mapped = binding(&sock, turn.addr, WAIT)
        .unwrap_or_else(|e| panic!("binding through NAT: {e}\n{}", turn.diagnostics()));
    assert_eq!(
        mapped,
        SocketAddr::new(net.a.wan_ip.into(), sock.local_addr().unwrap().port())
    );
    let pid = turn.pid();
    drop(turn);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_connection_built_in_a_namespace_binds_there() {
    let net = Internet::new(Nat::EndpointIndependent, Nat::EndpointIndependent);
    let rt = NsRuntime::start(&net.a.host);
    // The default bind (0.0.0.0:0) expands to the namespace's interfaces: only eth0.
    let pc = rt.peer(webrtc_streams::PeerConnection::builder).await;
    let addrs = pc.local_addrs().to_vec();
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().all(|a| a.ip() == IpAddr::from(net.a.host_ip)),
        "bound outside the home: {addrs:?}"
    );
    // Its socket really is in the home: the port is taken there, free on the host machine's
    // own namespace would not tell us anything, so check inside.
    let port = addrs[0].port();
    let taken = in_netns(&net.a.host, move || {
        UdpSocket::bind(SocketAddr::new(IpAddr::from([10, 1, 0, 2]), port)).is_err()
    })
    .unwrap();
    assert!(taken, "port {port} is free in the home namespace");
    pc.close().await.ok();
    drop(pc);
    drop(rt);
}

#[test]
fn namespaces_are_deleted_on_drop_and_on_panic() {
    let net = Internet::new(Nat::EndpointIndependent, Nat::UdpBlocked);
    let names = net.namespaces();
    assert_eq!(names.len(), 5);
    assert!(names.iter().all(|n| netns_exists(n)));
    drop(net);
    for n in &names {
        assert!(!netns_exists(n), "{n} still exists");
    }
    let names = std::sync::Mutex::new(Vec::new());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let net = Internet::new(Nat::Symmetric, Nat::Symmetric);
        *names.lock().unwrap() = net.namespaces();
        panic!("test failure while the internet exists");
    }));
    assert!(r.is_err());
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 5);
    for n in &names {
        assert!(!netns_exists(n), "{n} survived a panic");
    }
}
