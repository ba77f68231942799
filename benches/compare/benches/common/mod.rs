//! Helpers shared by the benchmarks: pair setup for both libraries, CPU time, statistics.
#![allow(dead_code)]

pub use webrtc_streams_compare::anchor;

// For benches that drive Firefox in a namespace (tests/interop/firefox.rs needs these).
#[path = "../../../../tests/common/coturn.rs"]
pub mod coturn;
#[path = "../../../../tests/common/netns.rs"]
pub mod netns;
#[path = "../../../../tests/common/process.rs"]
pub mod process;

pub use process::env_usize;

use std::time::Duration;

use futures::StreamExt;
use webrtc_streams::{
    DataChannel, PeerConnection, rtc::peer_connection::certificate::RTCCertificate,
};

/// User + system CPU time of the whole process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time so far of this process's threads whose name starts with `prefix` (Linux: the
/// run time in `/proc/self/task/*/schedstat`, nanoseconds).
pub fn threads_cpu_time(prefix: &str) -> Duration {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with(prefix));
        if !named {
            continue;
        }
        // A thread may end between the listing and the read: it counts as nothing.
        if let Ok(stat) = std::fs::read_to_string(path.join("schedstat"))
            && let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse().ok())
        {
            total += Duration::from_nanos(ns);
        }
    }
    total
}

/// Resident set size of this process in bytes (Linux).
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm resident");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

/// Median, minimum and maximum.
pub fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (mid, v[0], v[v.len() - 1])
}

/// FNV-1a over a stream of chunks.
pub fn checksum(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

pub const CHECKSUM_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Two of our connections on 127.0.0.1 with one open channel; returns (a, b, a's, b's).
pub async fn ours_pair() -> (PeerConnection, PeerConnection, DataChannel, DataChannel) {
    ours_pair_on(None, None).await
}

/// [`ours_pair`], the answering end `b` using `certificate` if given (a server reusing one for
/// every connection) instead of generating its own, and built on the runtime behind `server` if
/// given (its driver, sockets and timers live there); the rest on the calling task's runtime.
pub async fn ours_pair_on(
    certificate: Option<RTCCertificate>,
    server: Option<tokio::runtime::Handle>,
) -> (PeerConnection, PeerConnection, DataChannel, DataChannel) {
    let loopback = ["127.0.0.1:0".parse().unwrap()];
    let a = PeerConnection::builder()
        .bind(loopback)
        .build()
        .await
        .unwrap();
    let build_b = async move {
        let mut b = PeerConnection::builder().bind(loopback);
        if let Some(certificate) = certificate {
            b = b.certificate(certificate);
        }
        b.build().await.unwrap()
    };
    let b = on_server(server, build_b).await;
    let mut incoming = b.data_channels();
    let tx = a
        .create_data_channel("bench", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    let rx = incoming.next().await.unwrap();
    tx.opened().await.unwrap();
    rx.opened().await.unwrap();
    (a, b, tx, rx)
}

/// Runs `f` on the runtime behind `server` if given, else in place.
async fn on_server<F>(server: Option<tokio::runtime::Handle>, f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match server {
        Some(server) => server.spawn(f).await.expect("server task"),
        None => f.await,
    }
}

/// Offer from `a`, answer from `b`, each description sent once its gathering completed.
pub async fn negotiate(a: &PeerConnection, b: &PeerConnection) {
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    a.gathering_complete().await.unwrap();
    b.set_remote_description(a.local_description().await.unwrap().unwrap())
        .await
        .unwrap();
    let answer = b.create_answer().await.unwrap();
    b.set_local_description(answer).await.unwrap();
    b.gathering_complete().await.unwrap();
    a.set_remote_description(b.local_description().await.unwrap().unwrap())
        .await
        .unwrap();
}

/// Two `webrtc` 0.21.1 connections on 127.0.0.1 with one open channel.
pub async fn anchor_pair(send_buffer_limit: usize) -> AnchorPair {
    anchor_pair_on(send_buffer_limit, None, None).await
}

/// [`anchor_pair`], the answering end using `certificate` if given and built on the runtime
/// behind `server` if given.
pub async fn anchor_pair_on(
    send_buffer_limit: usize,
    certificate: Option<RTCCertificate>,
    server: Option<tokio::runtime::Handle>,
) -> AnchorPair {
    let a = anchor::anchor_peer(send_buffer_limit).await;
    let build_b = async move {
        match certificate {
            Some(c) => anchor::anchor_peer_with_certificate(send_buffer_limit, c).await,
            None => anchor::anchor_peer(send_buffer_limit).await,
        }
    };
    let b = on_server(server, build_b).await;
    let tx = a.pc.create_data_channel("bench", None).await.unwrap();
    anchor::negotiate(&a, &b).await;
    let rx = b.channels.recv().await.unwrap();
    anchor::wait_open(&tx).await;
    (a, b, tx, rx)
}

/// Two `webrtc` 0.21.1 peers with one open channel: (a, b, a's, b's).
pub type AnchorPair = (
    anchor::AnchorPeer,
    anchor::AnchorPeer,
    std::sync::Arc<dyn webrtc::data_channel::DataChannel>,
    std::sync::Arc<dyn webrtc::data_channel::DataChannel>,
);

/// Runs the given child mode of this bench binary in a fresh process and returns its stdout.
pub fn run_child(mode: &str) -> String {
    let exe = std::env::current_exe().expect("current exe");
    let out = std::process::Command::new(exe)
        .arg("--child")
        .arg(mode)
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "child {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}
