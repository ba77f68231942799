//! Data-channel throughput on loopback, one pair, reliable ordered channel, honouring
//! back-pressure, every byte verified (count and checksum): this crate, `webrtc` 0.21.1, and
//! the bare `rtc` core driven by a minimal hand-written loop (the ceiling for any async layer
//! over `rtc`). Prints Mbit/s and CPU seconds per GiB (getrusage, whole process).
//!
//! `cargo bench --bench throughput` (`MIB=n` per run, default 256; `REPS=n`, default 3;
//! `ONLY=name` to run one library, e.g. for a profile).

mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use common::*;
use futures::StreamExt;
use webrtc_streams::rtc::{
    peer_connection::{
        RTCPeerConnection, RTCPeerConnectionBuilder,
        event::{RTCDataChannelEvent, RTCPeerConnectionEvent},
        message::RTCMessage,
        transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate},
    },
    sansio::Protocol,
    shared::{TaggedBytesMut, TransportContext, TransportProtocol},
};

/// Send-buffer limit used by all three (1 MiB, our default high-water mark).
const HIGH_WATER: usize = 1024 * 1024;

/// Message `i` of `len` bytes: a fixed pattern with the index in the first 8 bytes.
fn fill(buf: &mut [u8], i: u64) {
    for (j, b) in buf.iter_mut().enumerate() {
        *b = (j as u8).wrapping_mul(31);
    }
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&i.to_le_bytes()[..n]);
}

/// Cheap checksum: wrapping sum of 8-byte words, position-mixed.
fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc = acc.rotate_left(5) ^ u64::from_le_bytes(c.try_into().unwrap());
    }
    for &b in chunks.remainder() {
        acc = acc.rotate_left(5) ^ b as u64;
    }
    acc
}

fn expected_sum(total: usize, msg: usize) -> u64 {
    let mut buf = vec![0u8; msg];
    let (mut acc, mut sent, mut i) = (0u64, 0usize, 0u64);
    while sent < total {
        let len = msg.min(total - sent);
        fill(&mut buf[..len], i);
        acc = sum(acc, &buf[..len]);
        sent += len;
        i += 1;
    }
    acc
}

struct Run {
    wall: Duration,
    cpu: Duration,
}

async fn ours(total: usize, msg: usize) -> (Run, u64) {
    let (a, b, tx, rx) = ours_pair().await;
    let reader = tokio::spawn(async move {
        let mut msgs = rx.messages();
        let (mut n, mut acc) = (0usize, 0u64);
        while n < total {
            let m = msgs.next().await.expect("stream ended");
            acc = sum(acc, &m.data);
            n += m.data.len();
        }
        acc
    });
    let (t, c) = (Instant::now(), cpu_time());
    let mut buf = vec![0u8; msg];
    let (mut sent, mut i) = (0usize, 0u64);
    while sent < total {
        let len = msg.min(total - sent);
        fill(&mut buf[..len], i);
        tx.send(Bytes::copy_from_slice(&buf[..len])).await.unwrap();
        sent += len;
        i += 1;
    }
    let acc = reader.await.unwrap();
    let run = Run {
        wall: t.elapsed(),
        cpu: cpu_time() - c,
    };
    a.close().await.unwrap();
    b.close().await.unwrap();
    (run, acc)
}

async fn anchor(total: usize, msg: usize) -> (Run, u64) {
    let (a, b, tx, rx) = anchor_pair(HIGH_WATER).await;
    let reader = tokio::spawn(async move {
        let (mut n, mut acc) = (0usize, 0u64);
        while n < total {
            let m = anchor::next_message(&rx).await.expect("closed");
            acc = sum(acc, &m.data);
            n += m.data.len();
        }
        acc
    });
    let (t, c) = (Instant::now(), cpu_time());
    let mut buf = vec![0u8; msg];
    let (mut sent, mut i) = (0usize, 0u64);
    while sent < total {
        let len = msg.min(total - sent);
        fill(&mut buf[..len], i);
        tx.send(BytesMut::from(&buf[..len])).await.unwrap();
        sent += len;
        i += 1;
    }
    let acc = reader.await.unwrap();
    let run = Run {
        wall: t.elapsed(),
        cpu: cpu_time() - c,
    };
    let _ = a.pc.close().await;
    let _ = b.pc.close().await;
    (run, acc)
}

// ---- the bare core --------------------------------------------------------------------------

fn host_candidate(pc: &mut RTCPeerConnection, addr: SocketAddr) {
    let c = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .unwrap();
    pc.add_local_candidate(RTCIceCandidate::from(&c).to_json().unwrap())
        .unwrap();
}

/// One peer's loop: blocking receive with the core's deadline as timeout, then drain every
/// output; the sender keeps `HIGH_WATER` bytes outstanding.
/// `send`: `Some((total, message size))` for the sender; the receiver returns once it has
/// `expect` bytes, the sender once `done` is set.
fn bare_peer(
    mut pc: RTCPeerConnection,
    sock: UdpSocket,
    send: Option<(usize, usize)>,
    expect: usize,
    done: Arc<AtomicBool>,
) -> u64 {
    let local = sock.local_addr().unwrap();
    let mut buf = vec![0u8; 2048];
    let mut msg_buf = vec![0u8; send.map_or(0, |s| s.1)];
    let (mut dc, mut received, mut acc, mut sent, mut i) = (None, 0usize, 0u64, 0usize, 0u64);
    loop {
        let now = Instant::now();
        while let Some(ev) = pc.poll_event() {
            if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) = ev {
                dc = Some(id);
            }
        }
        while let Some(m) = pc.poll_read() {
            if let RTCMessage::DataChannelMessage(_, m) = m.message {
                acc = sum(acc, &m.data);
                received += m.data.len();
            }
        }
        if let (Some((total, msg)), Some(id)) = (send, dc) {
            let mut ch = pc.data_channel(id).unwrap();
            while sent < total && ch.outstanding_bytes() < HIGH_WATER {
                let len = msg.min(total - sent);
                fill(&mut msg_buf[..len], i);
                ch.send(now, BytesMut::from(&msg_buf[..len])).unwrap();
                sent += len;
                i += 1;
            }
        }
        while let Some(tx) = pc.poll_write() {
            let _ = sock.send_to(&tx.message, tx.transport.peer_addr);
        }
        if (send.is_none() && received >= expect) || done.load(Ordering::Acquire) {
            return acc;
        }
        let wait = pc
            .poll_timeout()
            .map_or(Duration::from_millis(50), |d| {
                d.saturating_duration_since(now)
            })
            .clamp(Duration::from_micros(50), Duration::from_millis(50));
        sock.set_read_timeout(Some(wait)).unwrap();
        let mut n_read = 0;
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = pc.handle_read(TaggedBytesMut {
                now: Instant::now(),
                transport: TransportContext {
                    local_addr: local,
                    peer_addr: from,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                },
                message: BytesMut::from(&buf[..n]),
            });
            n_read += 1;
            if n_read == 1 {
                sock.set_nonblocking(true).unwrap();
            }
            if n_read == 64 {
                break;
            }
        }
        if n_read > 0 {
            sock.set_nonblocking(false).unwrap();
        }
        let now = Instant::now();
        if pc.poll_timeout().is_some_and(|d| d <= now) {
            let _ = pc.handle_timeout(now);
        }
    }
}

fn bare(total: usize, msg: usize) -> (Run, u64) {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sa: UdpSocket = webrtc_streams::runtime::bind_std_udp(loopback).unwrap();
    let sb: UdpSocket = webrtc_streams::runtime::bind_std_udp(loopback).unwrap();
    sa.set_nonblocking(false).unwrap();
    sb.set_nonblocking(false).unwrap();
    let now = Instant::now();
    let mut pa = RTCPeerConnectionBuilder::new().build(now).unwrap();
    let mut pb = RTCPeerConnectionBuilder::new().build(now).unwrap();
    pa.create_data_channel("bench", None).unwrap();
    host_candidate(&mut pa, sa.local_addr().unwrap());
    let offer = pa.create_offer(None).unwrap();
    pa.set_local_description(now, offer).unwrap();
    pb.set_remote_description(now, pa.local_description().unwrap())
        .unwrap();
    host_candidate(&mut pb, sb.local_addr().unwrap());
    let answer = pb.create_answer(None).unwrap();
    pb.set_local_description(now, answer).unwrap();
    pa.set_remote_description(now, pb.local_description().unwrap())
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (t, c) = (Instant::now(), cpu_time());
    let sender = {
        let done = done.clone();
        std::thread::spawn(move || bare_peer(pa, sa, Some((total, msg)), 0, done))
    };
    let acc = bare_peer(pb, sb, None, total, done.clone());
    let run = Run {
        wall: t.elapsed(),
        cpu: cpu_time() - c,
    };
    done.store(true, Ordering::Release);
    sender.join().unwrap();
    (run, acc)
}

fn main() {
    let mib = env_usize("MIB", 256);
    let reps = env_usize("REPS", 3);
    let total = mib * 1024 * 1024;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "throughput: one pair on UDP loopback, {mib} MiB per run, {reps} runs, every byte verified"
    );
    println!(
        "{:<16} {:>6} {:>12} {:>18} {:>12}",
        "library", "msg", "Mbit/s med", "min..max", "CPU s/GiB"
    );
    for msg in [64 * 1024, 16 * 1024] {
        let want = expected_sum(total, msg);
        let mut rows = Vec::new();
        let only = std::env::var("ONLY").unwrap_or_default();
        for name in ["webrtc-streams", "webrtc 0.21.1", "bare rtc loop"] {
            if !name.contains(only.as_str()) {
                rows.push((f64::NAN, f64::NAN));
                continue;
            }
            let mut mbps = Vec::new();
            let mut cpu = Vec::new();
            for _ in 0..reps {
                let (run, acc) = match name {
                    "webrtc-streams" => rt.block_on(ours(total, msg)),
                    "webrtc 0.21.1" => rt.block_on(anchor(total, msg)),
                    _ => bare(total, msg),
                };
                assert_eq!(acc, want, "{name}: checksum mismatch");
                mbps.push(total as f64 * 8.0 / run.wall.as_secs_f64() / 1e6);
                cpu.push(run.cpu.as_secs_f64() / (total as f64 / (1u64 << 30) as f64));
            }
            let (m, lo, hi) = stats(mbps);
            let (c, _, _) = stats(cpu);
            println!(
                "{name:<16} {:>5}K {m:>12.0} {:>18} {c:>12.2}",
                msg / 1024,
                format!("{lo:.0}..{hi:.0}")
            );
            rows.push((m, c));
        }
        println!(
            "  {}K ratios: throughput ours/webrtc {:.2} (target >= 2), CPU/GiB ours/webrtc {:.2} (target <= 0.5), ours/bare-rtc {:.0}% (target >= 90%)",
            msg / 1024,
            rows[0].0 / rows[1].0,
            rows[0].1 / rows[1].1,
            100.0 * rows[0].0 / rows[2].0
        );
    }
}
