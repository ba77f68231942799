//! Helpers shared by the interop tests (`tests/interop_chromium.rs`, `tests/interop_aiortc.rs`).
//!
//! The message script here is implemented three times — in Rust (below), in the browser page
//! (`page.html`) and in the Python peer (`aiortc_peer.py`) — so that each side checks not only
//! the echoes it gets back but also every message the other side sends it. Keep them in step.
#![allow(dead_code)]

pub mod browser;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};
use webrtc_streams::{
    DataChannel, DataChannelMessage, EventStream, PeerConnection, PeerConnectionBuilder,
    rtc::peer_connection::{
        configuration::setting_engine::{SctpMaxMessageSize, SettingEngine},
        state::RTCPeerConnectionState,
    },
};

/// The script that installs every interop dependency.
pub const INSTALL_SCRIPT: &str = ".ci/install-interop-deps";

/// Number of ordinary messages each side sends on its own channel.
pub const COUNT: usize = 1000;

/// One message of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Text(String),
    Binary(Vec<u8>),
}

/// The messages one side sends: [`COUNT`] ordinary ones (even indices text, odd binary), then,
/// if `big > 0`, one binary message of exactly `big` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub big: usize,
}

impl Script {
    pub fn total(&self) -> usize {
        COUNT + usize::from(self.big > 0)
    }

    /// Message `i`; the same function as `message()` in `page.html` and `aiortc_peer.py`.
    pub fn message(&self, i: usize) -> Msg {
        if i >= COUNT {
            return Msg::Binary((0..self.big).map(|j| ((j * 13 + 7) % 251) as u8).collect());
        }
        if i.is_multiple_of(2) {
            let mut s = format!("msg {i} ");
            for _ in 0..i % 5 {
                s.push_str("\u{e9}\u{4e2d}\u{1F600}");
            }
            for _ in 0..i % 300 {
                s.push('x');
            }
            Msg::Text(s)
        } else {
            let len = (i * 7919) % 4096 + 1;
            Msg::Binary((0..len).map(|j| ((i + j * 31) % 251) as u8).collect())
        }
    }

    /// Checks that `m` is message `i`, with its type (text or binary) preserved.
    pub fn check(&self, i: usize, m: &DataChannelMessage) -> Result<(), String> {
        let ok = match self.message(i) {
            Msg::Text(s) => m.is_string && m.data.as_ref() == s.as_bytes(),
            Msg::Binary(b) => !m.is_string && m.data.as_ref() == b.as_slice(),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "message {i} differs: got {} {} bytes, expected {}",
                if m.is_string { "text" } else { "binary" },
                m.data.len(),
                match self.message(i) {
                    Msg::Text(s) => format!("text {} bytes", s.len()),
                    Msg::Binary(b) => format!("binary {} bytes", b.len()),
                }
            ))
        }
    }
}

/// Sends every message of `script` on `dc` while reading the echoes, and checks each echo.
pub async fn send_and_verify(dc: &DataChannel, script: Script) -> Result<(), String> {
    let mut incoming = dc.messages();
    let send_all = async {
        for i in 0..script.total() {
            let sent = match script.message(i) {
                Msg::Text(s) => dc.send_text(s).await,
                Msg::Binary(b) => dc.send(Bytes::from(b)).await,
            };
            sent.map_err(|e| format!("send of message {i} on {:?}: {e}", dc.label()))?;
        }
        Ok::<_, String>(())
    };
    let check_all = async {
        for i in 0..script.total() {
            let m = incoming.next().await.ok_or_else(|| {
                format!(
                    "channel {:?} ended after {i} of {} echoes",
                    dc.label(),
                    script.total()
                )
            })?;
            script.check(i, &m)?;
        }
        Ok(())
    };
    futures::try_join!(send_all, check_all)?;
    Ok(())
}

/// Checks each message the peer sends on `dc` against `script` and sends it straight back;
/// returns after the last one.
pub async fn echo_and_verify(dc: &DataChannel, script: Script) -> Result<(), String> {
    let mut incoming = dc.messages();
    for i in 0..script.total() {
        let m = incoming.next().await.ok_or_else(|| {
            format!(
                "channel {:?} ended after {i} of {} messages",
                dc.label(),
                script.total()
            )
        })?;
        script.check(i, &m)?;
        let sent = match m.text() {
            Some(text) => dc.send_text(text.to_owned()).await,
            None => dc.send(m.data).await,
        };
        sent.map_err(|e| format!("echo of message {i} on {:?}: {e}", dc.label()))?;
    }
    Ok(())
}

/// Settings for our side: the crate's defaults (which accept the peer-reflexive pair both
/// remote stacks reach us from without rtc's extra second) and the largest SCTP message we
/// accept (and advertise in the SDP as `a=max-message-size`).
pub fn setting_engine(max_message_size: u32) -> SettingEngine {
    PeerConnectionBuilder::default_settings()
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(max_message_size))
        .build()
}

/// Our peer: one UDP socket on 127.0.0.1.
pub async fn our_peer(max_message_size: u32) -> PeerConnection {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(setting_engine(max_message_size))
        .build()
        .await
        .expect("build our peer connection")
}

/// Our complete local description (all candidates) after applying `desc`.
pub async fn local_sdp_after_gathering(pc: &PeerConnection) -> String {
    pc.gathering_complete().await.unwrap();
    pc.local_description()
        .await
        .expect("connection open")
        .expect("local description after gathering")
        .sdp
}

/// Resolves once `pc` is connected; fails if it fails or closes first.
pub async fn connected(pc: &PeerConnection) -> Result<(), String> {
    let mut states = pc.connection_states();
    while let Some(s) = states.next().await {
        match s {
            RTCPeerConnectionState::Connected => return Ok(()),
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                return Err(format!("our connection ended: {s}"));
            }
            _ => {}
        }
    }
    Err("connection state stream ended".into())
}

/// Waits, each step within `limit`, until `pc` is connected, the peer's channel labelled
/// `their_label` has arrived on `incoming` and `ours` is open with a negotiated maximum message
/// size of `max_message_size`. Returns the peer's channel.
pub async fn channels_ready(
    pc: &PeerConnection,
    incoming: &mut EventStream<DataChannel>,
    ours: &DataChannel,
    their_label: &str,
    max_message_size: usize,
    limit: Duration,
) -> Result<DataChannel, String> {
    step("connecting", limit, connected(pc)).await?;
    let theirs = bounded("the peer's data channel", limit, incoming.next())
        .await?
        .ok_or("data channel stream ended")?;
    if theirs.label() != their_label {
        return Err(format!("unexpected channel {:?}", theirs.label()));
    }
    step("our channel opening", limit, async {
        ours.opened().await.map_err(|e| e.to_string())
    })
    .await?;
    let max = ours.max_message_size();
    if max != Some(max_message_size) {
        return Err(format!(
            "negotiated max message size {max:?}, expected {max_message_size}"
        ));
    }
    Ok(theirs)
}

/// Runs `f` with a time limit; the error names `what`.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    f: impl Future<Output = T>,
) -> Result<T, String> {
    let start = Instant::now();
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("timed out after {:?}: {what}", start.elapsed()))
}

/// Like [`bounded`] for a fallible future.
pub async fn step<T>(
    what: &str,
    limit: Duration,
    f: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    bounded(what, limit, f)
        .await?
        .map_err(|e| format!("{what}: {e}"))
}

/// The crate root (where `Cargo.toml` is).
pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Finds `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails the test: a dependency is missing.
pub fn missing(what: &str) -> ! {
    panic!(
        "\n\n{what}\nInstall the interop test dependencies with `{INSTALL_SCRIPT}` \
         (as root; see tests/interop/README.md).\n\n"
    )
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<temp>/<prefix>-<pid>-<nanos>`. Also removes directories of the same prefix left
    /// by test processes that no longer exist (killed before they could clean up).
    pub fn new(prefix: &str) -> Self {
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
                    continue;
                };
                let pid = rest.trim_start_matches('-').split('-').next().unwrap_or("");
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Chromium may still be writing for a moment after it was killed; retry briefly.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: could not remove {}", self.0.display());
    }
}

/// A child process started in a process group of its own, under a small `sh` watchdog that
/// leads the group.
///
/// Dropping the guard (also while unwinding from a panic) kills the whole group — the child and
/// everything it started — and reaps it; with a `marker` path, it also kills every process
/// whose command line contains that (unique) path: descendants that left the group. If the
/// test process dies without unwinding (SIGKILL; Ctrl-C, which does not reach a background
/// process group), the watchdog's stdin — a pipe only the test process holds — reaches EOF and
/// the watchdog kills the group. When the child exits by itself, the watchdog kills the rest
/// of the group and exits too.
///
/// The child's standard streams are `/dev/null`.
pub struct ProcessGroupGuard {
    child: Child,
    name: &'static str,
    marker: Option<PathBuf>,
}

/// `sh -c WATCHDOG sh <program> <args>...`, stdin a pipe from the test process. (`<&3` is
/// explicit because a background job's stdin is otherwise `/dev/null`.)
const WATCHDOG: &str = r#"exec 3<&0
{ read -r _ <&3; kill -KILL 0; } &
"$@" </dev/null 3<&-
kill -KILL 0"#;

impl ProcessGroupGuard {
    pub fn spawn(name: &'static str, cmd: Command, marker: Option<&Path>) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            sh.current_dir(dir);
        }
        let child = sh.spawn()?;
        Ok(Self {
            child,
            name,
            marker: marker.map(Path::to_path_buf),
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` if the child has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        let pgid = self.child.id();
        drop(self.child.stdin.take()); // tells the watchdog, in case `kill` fails below
        // The group id is the child's pid (process_group(0)); kill the group first so that
        // grandchildren (the browser) go too, then the child itself.
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(std::process::Stdio::null())
            .status();
        if !killed.is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(marker) = &self.marker {
            for pid in processes_mentioning(marker) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        // Wait (briefly) until no process of the group is left (zombies aside: their new
        // parent reaps them).
        for _ in 0..100 {
            if live_group_members(pgid).is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "warning: processes of {} (group {pgid}) still alive: {:?}",
            self.name,
            live_group_members(pgid)
        );
    }
}

/// Pids of the live processes whose command line contains `marker`.
pub fn processes_mentioning(marker: &Path) -> Vec<u32> {
    let needle = marker.as_os_str().as_encoded_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (pid != me && cmdline.windows(needle.len()).any(|w| w == needle)).then_some(pid)
    })
    .collect()
}

/// Pids of the processes in process group `pgid` that are not zombies (from `/proc`).
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
        let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
        let state = rest.next()?;
        let pgrp: u32 = rest.nth(1)?.parse().ok()?;
        (pgrp == pgid && state != "Z" && state != "X").then_some(pid)
    })
    .collect()
}

/// Encodes `seconds` of ffmpeg's test pattern as VP8 in an IVF file under `dir`.
pub fn encode_vp8(dir: &std::path::Path, seconds: u32) -> Result<PathBuf, String> {
    let ffmpeg = which("ffmpeg").unwrap_or_else(|| missing("ffmpeg (Debian's `ffmpeg` package)"));
    let out = dir.join("testsrc.ivf");
    let status = Command::new(ffmpeg)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc=size=320x240:rate=30:duration={seconds}"))
        .args(["-c:v", "libvpx", "-b:v", "300k", "-g", "30", "-f", "ivf"])
        .arg(&out)
        .status()
        .map_err(|e| format!("running ffmpeg: {e}"))?;
    if !status.success() {
        return Err(format!("ffmpeg failed: {status}"));
    }
    Ok(out)
}

/// Writes the VP8 frames of the IVF file `ivf` to `video` as samples, one per frame time (the
/// file's timebase), as a camera would; returns how many it wrote.
pub async fn play_vp8(video: &webrtc_streams::media::RtpSender, ivf: &Path) -> Result<u32, String> {
    use webrtc_streams::{media::Sample, rtc::media::io::ivf_reader::IVFReader};

    let file = std::fs::File::open(ivf).map_err(|e| e.to_string())?;
    let (mut reader, header) =
        IVFReader::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let frame_time = Duration::from_secs_f64(
        f64::from(header.timebase_numerator) / f64::from(header.timebase_denominator),
    );
    let mut ticker = tokio::time::interval(frame_time);
    let mut frames = 0;
    while let Ok((frame, _)) = reader.parse_next_frame() {
        ticker.tick().await;
        video
            .write_sample(Sample::new(frame.freeze(), frame_time))
            .await
            .map_err(|e| e.to_string())?;
        frames += 1;
    }
    Ok(frames)
}

/// Encodes `seconds` of ffmpeg's sine test tone as Opus in an Ogg file under `dir`: 20 ms
/// frames, one per Ogg page (`-page_duration`), as a player that sends a page per packet wants.
pub fn encode_opus(dir: &Path, seconds: u32) -> Result<PathBuf, String> {
    let ffmpeg = which("ffmpeg").unwrap_or_else(|| missing("ffmpeg (Debian's `ffmpeg` package)"));
    let out = dir.join("sine.ogg");
    let status = Command::new(ffmpeg)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args([
            "-c:a",
            "libopus",
            "-b:a",
            "48k",
            "-frame_duration",
            "20",
            "-page_duration",
            "20000",
            "-f",
            "ogg",
        ])
        .arg(&out)
        .status()
        .map_err(|e| format!("running ffmpeg: {e}"))?;
    if !status.success() {
        return Err(format!("ffmpeg failed: {status}"));
    }
    Ok(out)
}

// ---- the page server ----------------------------------------------------------------------

/// The page the browsers load: its functions are the browser side of every scenario.
pub const PAGE: &str = include_str!("page.html");

/// Serves [`PAGE`] to every GET on 127.0.0.1; stops on drop.
pub struct PageServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PageServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind page server");
        let addr = listener.local_addr().expect("page server address");
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // Read the request head (the page needs nothing else), then answer.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (status, body) = if head.starts_with(b"GET / ") {
                        ("200 OK", PAGE)
                    } else {
                        ("404 Not Found", "not found")
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Chromium's description without its non-loopback candidates. On a loopback-only machine
/// Chromium signals none; where it has other interfaces it signals those, and we drop them so
/// that our side sends only to 127.0.0.1 — the same peer-reflexive path either way.
pub fn loopback_only(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if let Some(c) = line.trim_end().strip_prefix("a=candidate:") {
            // foundation component transport priority address port "typ" type ...
            let address = c.split_whitespace().nth(4).unwrap_or_default();
            let loopback = address
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                eprintln!(
                    "ignoring chromium's non-loopback candidate: {}",
                    line.trim_end()
                );
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// Reads the next two remote tracks from `tracks` (one must be audio, one video) and
/// `packets` RTP packets from each, every one with its track's SSRC. Returns each track's
/// (kind, codec, dropped packets).
pub async fn count_audio_and_video(
    tracks: &mut webrtc_streams::EventStream<webrtc_streams::media::RemoteTrack>,
    packets: usize,
    limit: Duration,
) -> Result<Vec<(webrtc_streams::media::RtpCodecKind, Option<String>, u64)>, String> {
    use futures::StreamExt;
    use webrtc_streams::media::RtpCodecKind;

    let mut kinds = Vec::new();
    let mut readers = Vec::new();
    while kinds.len() < 2 {
        let track = bounded("a remote track", limit, tracks.next())
            .await?
            .ok_or("track stream ended")?;
        kinds.push(track.kind());
        let mut rtp = track.rtp();
        readers.push(tokio::spawn(async move {
            let mut n = 0;
            while n < packets {
                let Some(p) = rtp.next().await else {
                    return Err(format!("{:?} track ended after {n} packets", track.kind()));
                };
                if p.header.ssrc != track.ssrc() {
                    return Err(format!("packet of SSRC {} on {track:?}", p.header.ssrc));
                }
                n += 1;
            }
            Ok((
                track.kind(),
                track.codec().map(|c| c.mime_type.clone()),
                track.dropped(),
            ))
        }));
    }
    if !kinds.contains(&RtpCodecKind::Audio) || !kinds.contains(&RtpCodecKind::Video) {
        return Err(format!(
            "expected an audio and a video track, got {kinds:?}"
        ));
    }
    let mut counted = Vec::new();
    for r in readers {
        counted.push(
            bounded("media packets", limit, r)
                .await?
                .map_err(|e| e.to_string())??,
        );
    }
    Ok(counted)
}

/// What a page's data-channel exchange showed: its `results` report, how long after
/// signaling started the connection was up, and how long the exchange took.
pub struct PageExchange {
    pub report: serde_json::Value,
    pub connected_after: Duration,
    pub elapsed: Duration,
}

/// The data-channel part of a browser case, once signaling is done: waits until `pc` is
/// connected and both channels are open (ours, `ours`, and the page's, "from-browser"), then
/// runs `script` both ways — the page echoes ours and we echo its own, every message checked —
/// while `results` (the page's `results` call) waits for the page's side, and checks the
/// page's report: every message echoed, none wrong. `who` names the browser in errors.
/// The future is large: box it (`Box::pin`) in a test's own future, or the test thread's
/// stack overflows in a debug build.
#[allow(clippy::too_many_arguments)]
pub async fn page_exchange(
    pc: &PeerConnection,
    incoming: &mut EventStream<DataChannel>,
    ours: &DataChannel,
    results: impl Future<Output = Result<serde_json::Value, String>>,
    script: Script,
    who: &str,
    signaling_started: Instant,
    (step_limit, exchange_limit): (Duration, Duration),
) -> Result<PageExchange, String> {
    step("connecting", step_limit, connected(pc)).await?;
    let connected_after = signaling_started.elapsed();
    let theirs = channels_ready(pc, incoming, ours, "from-browser", script.big, step_limit).await?;
    let started = Instant::now();
    // The first failure ends the exchange; a missing message shows as the timeout.
    let ((), (), report) = bounded("message exchange", exchange_limit, async {
        futures::try_join!(
            async {
                echo_and_verify(&theirs, script)
                    .await
                    .map_err(|e| format!("{who} -> us: {e}"))
            },
            async {
                send_and_verify(ours, script)
                    .await
                    .map_err(|e| format!("us -> {who}: {e}"))
            },
            results,
        )
    })
    .await??;
    let elapsed = started.elapsed();
    let total = script.total() as u64;
    let no_errors = |v: &serde_json::Value| v["errors"].as_array().is_some_and(|a| a.is_empty());
    let (sender, echo) = (&report["sender"], &report["echo"]);
    if sender["echoed"].as_u64() != Some(total) || !no_errors(sender) {
        return Err(format!("{who}'s own channel: {sender}"));
    }
    if echo["received"].as_u64() != Some(total) || !no_errors(echo) {
        return Err(format!("{who} echoing our channel: {echo}"));
    }
    Ok(PageExchange {
        report,
        connected_after,
        elapsed,
    })
}

/// Our offer: created, set as the local description, and returned once every local candidate
/// is in it (gathering bounded by `limit`).
pub async fn our_offer(pc: &PeerConnection, limit: Duration) -> Result<String, String> {
    let offer = pc.create_offer().await.map_err(|e| e.to_string())?;
    pc.set_local_description(offer)
        .await
        .map_err(|e| e.to_string())?;
    bounded("our ICE gathering", limit, local_sdp_after_gathering(pc)).await
}

/// Applies `offer`, the SDP text of the peer `who`, and returns our answer: created, set as
/// the local description, with every local candidate (gathering bounded by `limit`).
pub async fn our_answer(
    pc: &PeerConnection,
    offer: String,
    who: &str,
    limit: Duration,
) -> Result<String, String> {
    let offer = webrtc_streams::rtc::peer_connection::sdp::RTCSessionDescription::offer(offer)
        .map_err(|e| e.to_string())?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| format!("applying {who}'s offer: {e}"))?;
    let answer = pc.create_answer().await.map_err(|e| e.to_string())?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| e.to_string())?;
    bounded("our ICE gathering", limit, local_sdp_after_gathering(pc)).await
}
