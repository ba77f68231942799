//! The coturn launcher (tests/common/coturn.rs) starts a real server that speaks STUN and TURN.
// Linux only: starts coturn and manages it through Linux process calls (prctl, /proc).
#![cfg(target_os = "linux")]

mod common;

use std::{net::UdpSocket, time::Duration};

use common::coturn::{Coturn, CoturnConfig, binding, binding_tcp, unauthenticated_allocate};

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn binding_request_gets_xor_mapped_address() {
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mapped = binding(&sock, turn.addr, WAIT)
        .unwrap_or_else(|e| panic!("binding: {e}\n{}", turn.diagnostics()));
    assert_eq!(
        mapped,
        sock.local_addr().unwrap(),
        "on loopback nothing rewrites the source"
    );
}

#[test]
fn the_tcp_listener_answers_stun_too() {
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(turn.turn_tcp_url().ends_with("?transport=tcp"));
    let mut stream = std::net::TcpStream::connect(turn.addr).expect("connect");
    let mapped = binding_tcp(&mut stream, WAIT)
        .unwrap_or_else(|e| panic!("binding over TCP: {e}\n{}", turn.diagnostics()));
    assert_eq!(mapped, stream.local_addr().unwrap());
}

#[test]
fn unauthenticated_allocate_gets_401_with_realm_and_nonce() {
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (code, realm, nonce) = unauthenticated_allocate(&sock, turn.addr, WAIT)
        .unwrap_or_else(|e| panic!("allocate: {e}\n{}", turn.diagnostics()));
    assert_eq!(code, 401);
    assert_eq!(realm, turn.config.realm);
    assert!(nonce, "a 401 carries a NONCE");
}

#[test]
fn tls_listener_presents_a_certificate_signed_by_the_test_ca() {
    let turn = Coturn::start(CoturnConfig {
        tls: true,
        ..CoturnConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ca = turn.ca_pem.clone().expect("CA PEM with TLS on");
    let tls = turn.tls_addr.expect("TLS address");
    assert!(turn.turns_url().unwrap().starts_with("turns:127.0.0.1:"));
    // openssl verifies the chain against our CA and the IP in the certificate.
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &tls.to_string(), "-CAfile"])
        .arg(&ca)
        .args(["-verify_ip", "127.0.0.1", "-verify_return_error", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Verification: OK"),
        "TLS verification failed:\n{text}\n{}",
        turn.diagnostics()
    );
}

#[test]
fn dropping_the_guard_kills_the_server() {
    let turn = Coturn::start(CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let pid = turn.pid();
    let addr = turn.addr;
    drop(turn);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "turnserver {pid} still alive"
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(binding(&sock, addr, Duration::from_millis(500)).is_err());
}
