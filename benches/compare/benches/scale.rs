//! Server scale: many connections in one process, this crate and `webrtc` 0.21.1 in the same
//! run (issue 13). Every figure is measured in a fresh child process of this binary per library
//! and repetition (Tokio, 2 workers, both ends of every connection in the child), medians of
//! `REPS` (default 3), every message verified:
//!
//! - **idle**: RSS per idle connection and idle CPU (one core = 100%, getrusage over
//!   `IDLE_SECS`, default 10) at `CONNS` connections (default 2000, a comma list such as
//!   `100,1000,5000` for several rows); afterwards every pair round-trips one message.
//!   `IDLE_AFTER_KIB=1024` first has every pair carry that much (64 KiB messages) before it
//!   idles, as a server's connections have;
//! - **accept**: `CLIENTS` pairs (default 1000, comma list) set up at once: CPU per accepted
//!   connection (process CPU / clients, both ends counted) and the server ends' share of it,
//!   accept rate, and p50/p99 of each client's time from start to its channel open on both
//!   sides and one verified message. The "server" end of every pair (the answerer) runs on a
//!   runtime of its own (2 workers; its threads' CPU time is the server's share) and reuses one
//!   certificate generated before the burst, as a real server does
//!   (`PeerConnectionBuilder::certificate`; `webrtc` 0.21.1 the same through its
//!   configuration); every "client" end (the offerer) generates its own key and certificate, as
//!   a browser does, and that is counted in the process figure;
//! - **aggregate**: `PAIRS` pairs (default 100, comma list) each sending `MIB` MiB (default 4)
//!   in 64 KiB messages at once, count and checksum verified: aggregate Mbit/s, CPU s/GiB, and
//!   fairness (slowest pair's rate / fastest pair's rate);
//! - **latency**: one pair, `ROUND_TRIPS` (default 2000) 64-byte ping-pong round trips, each
//!   echo compared with what was sent: p50/p99, twice: with the pinging loop on the thread
//!   that called `block_on` (as the body of `#[tokio::main]` runs, outside the runtime's
//!   workers: every hop to and from it wakes another thread) and with it in a spawned task
//!   (as a server's per-connection tasks run, on the workers).
//!
//! `cargo bench -p webrtc-streams-compare --bench scale` (`ONLY=idle,latency` to run some
//! figures).

mod common;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use common::*;
use futures::{StreamExt, stream};
use tokio::runtime::Handle;
use webrtc_streams::{
    DataChannel, PeerConnection,
    rtc::{
        crypto::{self, SignatureScheme},
        peer_connection::certificate::{CertificateParams, RTCCertificate},
    },
};

type AnchorDc = Arc<dyn webrtc::data_channel::DataChannel>;
type AnchorPc = Arc<dyn webrtc::peer_connection::PeerConnection>;

/// Pairs set up concurrently while building the idle population.
const SETUP_CONCURRENCY: usize = 50;
/// Bound on any phase of a child (setup of thousands of pairs on 2 slow cores included).
const PHASE: Duration = Duration::from_secs(600);
/// Aggregate: message size.
const CHUNK: usize = 64 * 1024;
/// Latency: message size.
const PING: usize = 64;

#[derive(Clone, Copy, PartialEq)]
enum Lib {
    Ours,
    Anchor,
}

impl Lib {
    fn name(self) -> &'static str {
        match self {
            Lib::Ours => "ours",
            Lib::Anchor => "anchor",
        }
    }

    fn parse(s: &str) -> Lib {
        match s {
            "ours" => Lib::Ours,
            "anchor" => Lib::Anchor,
            other => panic!("unknown library {other}"),
        }
    }
}

/// One connected pair with its open channel, either library (the connections are held to keep
/// the pair alive).
#[allow(dead_code)]
enum Pair {
    Ours(PeerConnection, PeerConnection, DataChannel, DataChannel),
    Anchor(AnchorPc, AnchorPc, AnchorDc, AnchorDc),
}

async fn pair(lib: Lib) -> Pair {
    serving_pair_on(lib, None, None).await
}

/// A pair whose answering ("server") end uses `cert` if given instead of generating its own,
/// and is built on the runtime behind `server` if given.
async fn serving_pair_on(lib: Lib, cert: Option<RTCCertificate>, server: Option<Handle>) -> Pair {
    match lib {
        Lib::Ours => {
            let (a, b, tx, rx) = ours_pair_on(cert, server).await;
            Pair::Ours(a, b, tx, rx)
        }
        Lib::Anchor => {
            let (a, b, tx, rx) = anchor_pair_on(1 << 20, cert, server).await;
            Pair::Anchor(a.pc, b.pc, tx, rx)
        }
    }
}

/// Sends `payload` from the first channel and waits for exactly it on the second.
async fn one_message(p: &Pair, payload: &[u8]) {
    match p {
        Pair::Ours(_, _, tx, rx) => {
            let mut msgs = rx.messages();
            tx.send(Bytes::copy_from_slice(payload)).await.unwrap();
            let m = msgs.next().await.expect("channel ended");
            assert_eq!(&m.data[..], payload, "message corrupted");
        }
        Pair::Anchor(_, _, tx, rx) => {
            tx.send(BytesMut::from(payload)).await.unwrap();
            let m = anchor::next_message(rx).await.expect("channel closed");
            assert_eq!(&m.data[..], payload, "message corrupted");
        }
    }
}

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(PHASE, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: timed out after {PHASE:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Name of the accept figure's server runtime threads (at most 15 bytes: a Linux thread name).
const SERVER_THREADS: &str = "scale-server";

/// The accept figure's server ends run here: 2 workers of their own, so that their CPU time can
/// be told from the clients'.
fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()
        .unwrap()
}

/// Raises the soft open-files limit to the hard one (thousands of sockets per process).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---- children: each prints one line of space-separated figures --------------------------------

/// `rss_bytes_per_connection idle_cpu_percent`
async fn idle(lib: Lib, conns: usize) -> Vec<f64> {
    let pairs = conns.div_ceil(2);
    // Warm up: code paths, runtime threads, allocator arenas.
    let warm = bounded("warm-up", pair(lib)).await;
    one_message(&warm, b"warm").await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes();
    let keep: Vec<Pair> = bounded(
        "idle setup",
        stream::iter(0..pairs)
            .map(|_| tokio::spawn(pair(lib)))
            .buffer_unordered(SETUP_CONCURRENCY)
            .map(|r| r.expect("setup task"))
            .collect(),
    )
    .await;
    // A server's connections have carried data before they idle: `IDLE_AFTER_KIB` per pair,
    // in 64 KiB messages, each verified (default none).
    let carried = env_usize("IDLE_AFTER_KIB", 0);
    if carried > 0 {
        let chunk = vec![7u8; 64 * 1024];
        for p in &keep {
            for _ in 0..carried.div_ceil(64) {
                one_message(p, &chunk).await;
            }
        }
    }
    // Let setup's transients (handshake retransmissions, gathering) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_bytes().saturating_sub(before) as f64 / (pairs * 2) as f64;
    let secs = env_usize("IDLE_SECS", 10) as u64;
    let (t, c) = (Instant::now(), cpu_time());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = (cpu_time() - c).as_secs_f64() / t.elapsed().as_secs_f64() * 100.0;
    // Every connection is still alive: one verified message per pair.
    let keep = Arc::new(keep);
    bounded(
        "idle check",
        stream::iter(0..keep.len())
            .map(|i| {
                let keep = keep.clone();
                tokio::spawn(async move {
                    one_message(&keep[i], format!("alive {i}").as_bytes()).await;
                })
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .for_each(|r| async { r.expect("check task") }),
    )
    .await;
    vec![rss, cpu]
}

/// The accepting end's certificate, generated once per process (a server's).
fn server_certificate() -> RTCCertificate {
    let provider = crypto::default_provider().expect("crypto provider");
    RTCCertificate::generate(
        provider.crypto(),
        SignatureScheme::EcdsaP256Sha256,
        CertificateParams::new(vec!["server".to_owned()]).expect("params"),
    )
    .expect("certificate")
}

/// `cpu_ms_per_connection accept_per_s p50_ms p99_ms server_cpu_ms_per_connection`
async fn accept(lib: Lib, clients: usize, server: Handle) -> Vec<f64> {
    let cert = server_certificate();
    let warm = bounded(
        "warm-up",
        serving_pair_on(lib, Some(cert.clone()), Some(server.clone())),
    )
    .await;
    one_message(&warm, b"warm").await;
    drop(warm);
    let (t, c, s) = (Instant::now(), cpu_time(), threads_cpu_time(SERVER_THREADS));
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let cert = cert.clone();
            let server = server.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let p = serving_pair_on(lib, Some(cert), Some(server)).await;
                one_message(&p, format!("client {i}").as_bytes()).await;
                (start.elapsed(), p)
            })
        })
        .collect();
    let mut setup = Vec::with_capacity(clients);
    let mut keep = Vec::with_capacity(clients);
    for task in tasks {
        let (d, p) = bounded("accept burst", task).await.expect("client task");
        setup.push(d.as_secs_f64() * 1e3);
        keep.push(p);
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = (cpu_time() - c).as_secs_f64();
    let server_cpu = (threads_cpu_time(SERVER_THREADS) - s).as_secs_f64();
    setup.sort_by(|a, b| a.partial_cmp(b).unwrap());
    vec![
        cpu * 1e3 / clients as f64,
        clients as f64 / wall,
        percentile(&setup, 0.5),
        percentile(&setup, 0.99),
        server_cpu * 1e3 / clients as f64,
    ]
}

/// Message `i` of a pair: a pattern keyed by pair and index.
fn fill(buf: &mut [u8], pair: usize, i: usize) {
    let key = (pair as u64) << 32 | i as u64;
    for (j, chunk) in buf.chunks_mut(8).enumerate() {
        let w = (key ^ (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

fn expected(pair: usize, total: usize) -> u64 {
    let mut buf = vec![0u8; CHUNK];
    let (mut h, mut i, mut sent) = (CHECKSUM_SEED, 0, 0);
    while sent < total {
        let len = CHUNK.min(total - sent);
        fill(&mut buf[..len], pair, i);
        h = checksum(h, &buf[..len]);
        sent += len;
        i += 1;
    }
    h
}

/// `mbit_per_s cpu_s_per_gib fairness`
async fn aggregate(lib: Lib, pairs: usize) -> Vec<f64> {
    let total = env_usize("MIB", 4) << 20;
    let keep: Vec<Pair> = bounded(
        "aggregate setup",
        stream::iter(0..pairs)
            .map(|_| tokio::spawn(pair(lib)))
            .buffer_unordered(SETUP_CONCURRENCY)
            .map(|r| r.expect("setup task"))
            .collect(),
    )
    .await;
    let sums: Vec<u64> = (0..pairs).map(|p| expected(p, total)).collect();
    let (t, c) = (Instant::now(), cpu_time());
    let mut readers = Vec::new();
    for (p, pair) in keep.iter().enumerate() {
        let reader = match pair {
            Pair::Ours(_, _, tx, rx) => {
                let (tx, rx) = (tx.clone(), rx.clone());
                tokio::spawn(async move {
                    let mut msgs = rx.messages();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; CHUNK];
                        let (mut sent, mut i) = (0, 0);
                        while sent < total {
                            let len = CHUNK.min(total - sent);
                            fill(&mut buf[..len], p, i);
                            tx.send(Bytes::copy_from_slice(&buf[..len])).await.unwrap();
                            sent += len;
                            i += 1;
                        }
                    });
                    let (mut n, mut h) = (0, CHECKSUM_SEED);
                    while n < total {
                        let m = msgs.next().await.expect("channel ended");
                        h = checksum(h, &m.data);
                        n += m.data.len();
                    }
                    (n, h, t.elapsed())
                })
            }
            Pair::Anchor(_, _, tx, rx) => {
                let (tx, rx) = (tx.clone(), rx.clone());
                tokio::spawn(async move {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; CHUNK];
                        let (mut sent, mut i) = (0, 0);
                        while sent < total {
                            let len = CHUNK.min(total - sent);
                            fill(&mut buf[..len], p, i);
                            tx.send(BytesMut::from(&buf[..len])).await.unwrap();
                            sent += len;
                            i += 1;
                        }
                    });
                    let (mut n, mut h) = (0, CHECKSUM_SEED);
                    while n < total {
                        let m = anchor::next_message(&rx).await.expect("channel closed");
                        h = checksum(h, &m.data);
                        n += m.data.len();
                    }
                    (n, h, t.elapsed())
                })
            }
        };
        readers.push(reader);
    }
    let mut rates = Vec::new();
    for (p, r) in readers.into_iter().enumerate() {
        let (n, h, d) = bounded("aggregate transfer", r).await.expect("reader");
        assert_eq!(n, total, "pair {p}: byte count");
        assert_eq!(h, sums[p], "pair {p}: checksum");
        rates.push(n as f64 / d.as_secs_f64());
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = (cpu_time() - c).as_secs_f64();
    let bytes = (total * pairs) as f64;
    let fastest = rates.iter().cloned().fold(0.0, f64::max);
    let slowest = rates.iter().cloned().fold(f64::INFINITY, f64::min);
    vec![
        bytes * 8.0 / wall / 1e6,
        cpu / (bytes / (1u64 << 30) as f64),
        slowest / fastest,
    ]
}

/// `p50_us p99_us`
async fn latency(lib: Lib) -> Vec<f64> {
    let trips = env_usize("ROUND_TRIPS", 2000);
    let p = bounded("latency setup", pair(lib)).await;
    let mut rtt = Vec::with_capacity(trips);
    let mut ping = [0u8; PING];
    bounded("ping-pong", async {
        match &p {
            Pair::Ours(_, _, tx, rx) => {
                let echo = rx.clone();
                let mut inbound = rx.messages();
                let echoer = tokio::spawn(async move {
                    while let Some(m) = inbound.next().await {
                        if echo.send(m.data).await.is_err() {
                            break;
                        }
                    }
                });
                let mut back = tx.messages();
                for i in 0..trips + 100 {
                    ping.fill(i as u8);
                    ping[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    let t = Instant::now();
                    tx.send(Bytes::copy_from_slice(&ping)).await.unwrap();
                    let m = back.next().await.expect("channel ended");
                    let d = t.elapsed();
                    assert_eq!(&m.data[..], &ping[..], "echo corrupted");
                    if i >= 100 {
                        rtt.push(d.as_secs_f64() * 1e6);
                    }
                }
                echoer.abort();
            }
            Pair::Anchor(_, _, tx, rx) => {
                let echo = rx.clone();
                let echoer = tokio::spawn(async move {
                    while let Some(m) = anchor::next_message(&echo).await {
                        if echo.send(m.data).await.is_err() {
                            break;
                        }
                    }
                });
                for i in 0..trips + 100 {
                    ping.fill(i as u8);
                    ping[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    let t = Instant::now();
                    tx.send(BytesMut::from(&ping[..])).await.unwrap();
                    let m = anchor::next_message(tx).await.expect("channel closed");
                    let d = t.elapsed();
                    assert_eq!(&m.data[..], &ping[..], "echo corrupted");
                    if i >= 100 {
                        rtt.push(d.as_secs_f64() * 1e6);
                    }
                }
                echoer.abort();
            }
        }
    })
    .await;
    rtt.sort_by(|a, b| a.partial_cmp(b).unwrap());
    vec![percentile(&rtt, 0.5), percentile(&rtt, 0.99)]
}

fn child(args: &[String]) {
    let (figure, lib, n) = (
        args[0].as_str(),
        Lib::parse(&args[1]),
        args[2].parse::<usize>().expect("size"),
    );
    let server = (figure == "accept").then(server_runtime);
    let out = runtime().block_on(async {
        match figure {
            "idle" => idle(lib, n).await,
            "accept" => {
                let server = server.as_ref().expect("server runtime").handle().clone();
                accept(lib, n, server).await
            }
            "aggregate" => aggregate(lib, n).await,
            "latency" => latency(lib).await,
            // The same loop in a task on the runtime's workers.
            "latency-task" => tokio::spawn(latency(lib)).await.expect("latency task"),
            other => panic!("unknown figure {other}"),
        }
    });
    let line: Vec<String> = out.iter().map(|v| v.to_string()).collect();
    println!("{}", line.join(" "));
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // Thousands of connections: leave without closing them one by one.
    std::process::exit(0);
}

// ---- parent: runs the children, prints medians and ratios -------------------------------------

/// Medians over `reps` fresh children of each column, for each library (ours, anchor).
fn measure(figure: &str, n: usize, reps: usize) -> [Vec<f64>; 2] {
    let mut runs: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..reps {
        for (k, lib) in [Lib::Ours, Lib::Anchor].into_iter().enumerate() {
            let exe = std::env::current_exe().expect("current exe");
            let out = std::process::Command::new(exe)
                .args(["--child", figure, lib.name(), &n.to_string()])
                .output()
                .expect("spawn child");
            assert!(
                out.status.success(),
                "child {figure} {} {n} failed: {}",
                lib.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8(out.stdout).expect("utf-8");
            let row: Vec<f64> = line
                .split_whitespace()
                .map(|v| v.parse().expect("child figure"))
                .collect();
            runs[k].push(row);
        }
    }
    runs.map(|rows| {
        (0..rows[0].len())
            .map(|col| stats(rows.iter().map(|r| r[col]).collect()).0)
            .collect()
    })
}

fn list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|v| v.trim().parse().expect("comma-separated counts"))
        .collect()
}

fn row(figure: &str, ours: f64, anchor: f64, unit: &str, target: &str) {
    println!(
        "{figure:<44} {ours:>12.2} {anchor:>14.2} {:>7.2}  {unit:<12} {target}",
        ours / anchor
    );
}

fn main() {
    raise_nofile();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    let reps = env_usize("REPS", 3).max(1);
    let only = std::env::var("ONLY").unwrap_or_default();
    let run = |f: &str| only.is_empty() || only.split(',').any(|o| o == f);
    println!(
        "scale: both ends of every connection in one child process (Tokio, 2 workers; accept: \
         the server ends on 2 more), medians of {reps}"
    );
    println!(
        "{:<44} {:>12} {:>14} {:>7}  {:<12} target",
        "figure", "ours", "webrtc 0.21.1", "ratio", "unit"
    );
    if run("idle") {
        for n in list("CONNS", "2000") {
            let [o, a] = measure("idle", n, reps);
            let carried = match env_usize("IDLE_AFTER_KIB", 0) {
                0 => String::new(),
                kib => format!(", {kib} KiB carried"),
            };
            let f = format!("RSS per idle connection, {n} conns{carried}");
            row(
                &f,
                o[0] / 1024.0,
                a[0] / 1024.0,
                "KiB",
                "<= 100 KiB, <= 0.3x",
            );
            let f = format!("idle CPU, {n} conns (core = 100%)");
            row(&f, o[1], a[1], "%", "<= 0.2x");
        }
    }
    if run("accept") {
        for n in list("CLIENTS", "1000") {
            let [o, a] = measure("accept", n, reps);
            let f = format!("CPU per accepted connection, {n} at once");
            row(&f, o[0], a[0], "ms", "<= 0.5x");
            let f = format!("  of it the server ends', {n} at once");
            row(&f, o[4], a[4], "ms", "<= 0.5x");
            let f = format!("accept rate, {n} at once");
            row(&f, o[1], a[1], "conn/s", ">= 3x");
            let f = format!("setup time p50, {n} at once");
            row(&f, o[2], a[2], "ms", "");
            let f = format!("setup time p99, {n} at once");
            row(&f, o[3], a[3], "ms", "");
        }
    }
    if run("aggregate") {
        let mib = env_usize("MIB", 4);
        for n in list("PAIRS", "100") {
            let [o, a] = measure("aggregate", n, reps);
            let f = format!("aggregate, {n} pairs x {mib} MiB / 64 KiB");
            row(&f, o[0], a[0], "Mbit/s", ">= 3x");
            let f = format!("CPU per GiB, {n} pairs");
            row(&f, o[1], a[1], "CPU s/GiB", "<= 0.3x");
            let f = format!("fairness (slowest / fastest), {n} pairs");
            row(&f, o[2], a[2], "", ">= 0.9");
        }
    }
    if run("latency") {
        let trips = env_usize("ROUND_TRIPS", 2000);
        for (figure, wherein) in [("latency", "block_on"), ("latency-task", "a task")] {
            let [o, a] = measure(figure, 1, reps);
            let f = format!("latency p50, {trips} x 64 B, loop in {wherein}");
            row(&f, o[0], a[0], "us", "<= 0.7x");
            let f = format!("latency p99, {trips} x 64 B, loop in {wherein}");
            row(&f, o[1], a[1], "us", "<= 0.7x");
        }
    }
}
