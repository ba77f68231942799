//! Hostile datagrams for the security tests: forged DTLS records, STUN checks, RTP and RTCP,
//! and a blaster that injects them into the simulated network (with any source address).
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use webrtc_streams::runtime::sim::SimHandle;

/// DTLS content types (RFC 6347).
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// A DTLS 1.2 record.
pub fn dtls_record(epoch: u16, seq: u64, content_type: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 0xfe, 0xfd];
    r.extend_from_slice(&epoch.to_be_bytes());
    r.extend_from_slice(&seq.to_be_bytes()[2..]);
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// A handshake fragment header and body.
pub fn handshake_fragment(
    msg_type: u8,
    length: u32,
    message_seq: u16,
    offset: u32,
    data: &[u8],
) -> Vec<u8> {
    let mut f = vec![msg_type];
    f.extend_from_slice(&length.to_be_bytes()[1..]);
    f.extend_from_slice(&message_seq.to_be_bytes());
    f.extend_from_slice(&offset.to_be_bytes()[1..]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

/// One epoch-0 handshake record holding `n` zero-length messages with sequence numbers
/// `first_seq, first_seq + 1, ...` (wrapping): what rtc-dtls stores without counting it.
pub fn empty_fragments(record_seq: u64, first_seq: u16, n: u16) -> Vec<u8> {
    let body: Vec<u8> = (0..n)
        .flat_map(|i| handshake_fragment(14, 0, first_seq.wrapping_add(i), 0, &[]))
        .collect();
    dtls_record(0, record_seq, HANDSHAKE, &body)
}

/// An RTP packet (version 2, payload type 96) with a 20-byte payload and a fake SRTP tag.
pub fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x5a; 30]);
    p
}

/// An RTCP sender report from `ssrc`, with a fake SRTCP index and tag.
pub fn rtcp_sender_report(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0; 20]); // NTP, RTP timestamp, counts
    p.extend_from_slice(&[0x80, 0, 0, 1]); // E flag + index
    p.extend_from_slice(&[0xa5; 10]);
    p
}

/// STUN attribute types (RFC 5389, RFC 8445).
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const PRIORITY: u16 = 0x0024;
pub const USE_CANDIDATE: u16 = 0x0025;
pub const FINGERPRINT: u16 = 0x8028;
pub const ICE_CONTROLLED: u16 = 0x8029;
pub const ICE_CONTROLLING: u16 = 0x802a;
/// STUN message types.
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_INDICATION: u16 = 0x0011;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const BINDING_ERROR: u16 = 0x0111;

/// A STUN message with the given attributes (values padded to 4 bytes).
pub fn stun(msg_type: u16, transaction: [u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut m = msg_type.to_be_bytes().to_vec();
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&transaction);
    m.extend(body);
    m
}

/// A Binding request claiming the ICE-CONTROLLED role with tiebreaker 0, with a username and a
/// MESSAGE-INTEGRITY that cannot verify: what made answerers switch roles before the fix.
pub fn role_flip_request(n: u32, username: &str) -> Vec<u8> {
    let mut tid = [7u8; 12];
    tid[..4].copy_from_slice(&n.to_be_bytes());
    stun(
        BINDING_REQUEST,
        tid,
        &[
            (USERNAME, username.as_bytes().to_vec()),
            (ICE_CONTROLLED, 0u64.to_be_bytes().to_vec()),
            (PRIORITY, 1_853_824_767u32.to_be_bytes().to_vec()),
            (MESSAGE_INTEGRITY, vec![0xee; 20]),
        ],
    )
}

/// Injects `datagrams` from `from` to `to`, `per_ms` every millisecond of virtual time, so
/// that the victim's socket queue never overflows and its driver sees every one.
pub async fn blast(
    sim: &SimHandle,
    from: SocketAddr,
    to: SocketAddr,
    datagrams: impl IntoIterator<Item = Vec<u8>>,
    per_ms: usize,
) -> usize {
    let mut sent = 0;
    for d in datagrams {
        sim.inject(from, to, &d);
        sent += 1;
        if sent % per_ms == 0 {
            sim.sleep(Duration::from_millis(1)).await;
        }
    }
    sim.sleep(Duration::from_millis(10)).await;
    sent
}
