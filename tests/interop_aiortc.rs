//! Interop with aiortc (PyPI `aiortc`, a pure-Python WebRTC stack).
//!
//! Each test runs `tests/interop/aiortc_peer.py` with the virtualenv's Python and drives it with
//! one JSON command per line on its stdin; it answers one JSON line per command on stdout.
//! Signaling is complete descriptions (aiortc does not trickle). Both peers use only 127.0.0.1:
//! ours binds one socket there, and the Python peer restricts aiortc's ICE agent to a single
//! 127.0.0.1 host candidate with no ICE servers (see the script's docstring).
//!
//! In each scenario both sides create a data channel and send 1,000 messages (text and binary)
//! plus one binary message of 256 KiB on it; the other side checks each message and echoes it;
//! the sender checks each echo.
//!
//! Python is `$AIORTC_PYTHON` or `target/interop-venv/bin/python`; if it is missing or cannot
//! import aiortc the tests fail: run `.ci/install-interop-deps`.
// Linux only: runs aiortc from the venv `.ci/install-interop-deps` builds on Linux.
#![cfg(target_os = "linux")]

mod interop;

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use interop::{Script, bounded, missing, step};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};
use webrtc_streams::rtc::peer_connection::sdp::RTCSessionDescription;

/// The largest message, both ways (aiortc accepts and advertises 256 KiB).
const BIG: usize = 256 * 1024;
/// Bound on one whole scenario.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);
/// Bound on a single step (start-up, one command, connecting).
const STEP_LIMIT: Duration = Duration::from_secs(45);
/// Bound on the message exchange (aiortc is pure Python: slower than a browser).
const EXCHANGE_LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_offers_we_answer() {
    run("aiortc offers", Role::Offerer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_offer_aiortc_answers() {
    run("aiortc answers", Role::Answerer).await;
}

/// aiortc offers a camera and a data channel; our peer has no video codecs, so it rejects the
/// video section (the first of the BUNDLE group) and keeps the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_offers_video_and_channel_to_a_data_only_peer() {
    run("aiortc offers video + channel", Role::OffererWithVideo).await;
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Offerer,
    OffererWithVideo,
    Answerer,
    MediaSender,
    MediaReceiver,
}

/// aiortc sends synthetic audio and video (Opus, VP8); every remote track delivers RTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_sends_audio_and_video() {
    run("aiortc sends media", Role::MediaSender).await;
}

/// We send VP8 that ffmpeg encodes at test time; aiortc decodes frames of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_send_video_aiortc_decodes() {
    run("aiortc decodes our video", Role::MediaReceiver).await;
}

async fn run(name: &str, role: Role) {
    let _ = env_logger::builder().is_test(true).try_init();
    let started = Instant::now();
    let mut peer = match bounded("starting the aiortc peer", STEP_LIMIT, AiortcPeer::start()).await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) | Err(e) => panic!("{name}: cannot start the aiortc peer: {e}"),
    };
    let outcome = bounded(name, SCENARIO_LIMIT, scenario(&mut peer, role))
        .await
        .and_then(|r| r);
    match outcome {
        Ok(summary) => {
            eprintln!("{name}: OK in {:?}: {summary}", started.elapsed());
            peer.quit().await;
        }
        Err(e) => {
            eprintln!("---- aiortc peer log ----\n{}", peer.log());
            panic!("{name}: {e}");
        }
    }
}

async fn media_peer() -> Result<webrtc_streams::PeerConnection, String> {
    webrtc_streams::PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(interop::setting_engine(BIG as u32))
        .default_codecs()
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// aiortc offers audio and video; we answer and count RTP on both tracks.
async fn receive_media(peer: &mut AiortcPeer) -> Result<String, String> {
    use futures::StreamExt;

    let pc = media_peer().await?;
    let mut tracks = pc.tracks();
    let offer = peer.request(json!({ "cmd": "offer_media" })).await?;
    let offer = offer.as_str().ok_or("offer is not a string")?.to_owned();
    let answer = interop::our_answer(&pc, offer, "aiortc", STEP_LIMIT).await?;
    peer.request(json!({ "cmd": "accept_answer", "sdp": answer }))
        .await?;
    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
    let mut counted = Vec::new();
    for _ in 0..2 {
        let track = bounded("a remote track", STEP_LIMIT, tracks.next())
            .await?
            .ok_or("track stream ended")?;
        let mut rtp = track.rtp();
        for _ in 0..30 {
            bounded("RTP", STEP_LIMIT, rtp.next())
                .await?
                .ok_or("track ended")?;
        }
        counted.push((track.kind(), track.codec().map(|c| c.mime_type.clone())));
    }
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!("30 RTP packets on each of {counted:?}"))
}

/// We offer VP8 from ffmpeg; aiortc answers and must decode frames of it.
async fn send_media(peer: &mut AiortcPeer) -> Result<String, String> {
    use webrtc_streams::{
        media::LocalTrack, rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8,
    };

    let dir = interop::TempDir::new("webrtc-streams-aiortc-media");
    let ivf = interop::encode_vp8(dir.path(), 3)?;
    let pc = media_peer().await?;
    let video = pc
        .add_track(LocalTrack::video(
            "testsrc",
            LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let offer = interop::our_offer(&pc, STEP_LIMIT).await?;
    let answer = peer
        .request(json!({ "cmd": "answer_media", "sdp": offer }))
        .await?;
    let answer = answer.as_str().ok_or("answer is not a string")?.to_owned();
    let answer = RTCSessionDescription::answer(answer).map_err(|e| e.to_string())?;
    pc.set_remote_description(answer)
        .await
        .map_err(|e| format!("applying aiortc's answer: {e}"))?;
    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
    let frames = interop::play_vp8(&video, &ivf).await?;
    let decoded = bounded("aiortc decoding", STEP_LIMIT, async {
        loop {
            let d = peer.request(json!({ "cmd": "decoded" })).await?;
            if let Some(n) = d["video"].as_u64().filter(|&n| n > 0) {
                return Ok::<_, String>(n);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await??;
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "sent {frames} VP8 frames; aiortc decoded {decoded}"
    ))
}

async fn scenario(peer: &mut AiortcPeer, role: Role) -> Result<String, String> {
    match role {
        Role::MediaSender => return receive_media(peer).await,
        Role::MediaReceiver => return send_media(peer).await,
        Role::Offerer | Role::OffererWithVideo | Role::Answerer => {}
    }
    let script = Script { big: BIG };
    let signaling_started = Instant::now();
    let pc = interop::our_peer(BIG as u32).await;
    let mut incoming = pc.data_channels();
    let ours;
    let their_sdp;
    match role {
        Role::Offerer | Role::OffererWithVideo => {
            let video = matches!(role, Role::OffererWithVideo);
            let offer = peer
                .request(json!({ "cmd": "offer", "big": BIG, "video": video }))
                .await?;
            let offer = offer.as_str().ok_or("offer is not a string")?.to_owned();
            their_sdp = offer.clone();
            let answer = interop::our_answer(&pc, offer, "aiortc", STEP_LIMIT).await?;
            ours = pc
                .create_data_channel("from-rust", Default::default())
                .await
                .map_err(|e| e.to_string())?;
            if video && !answer.contains("m=video 0 ") {
                return Err(format!(
                    "our data-only peer did not reject the video:\n{answer}"
                ));
            }
            peer.request(json!({ "cmd": "accept_answer", "sdp": answer }))
                .await?;
        }
        Role::Answerer => {
            ours = pc
                .create_data_channel("from-rust", Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let offer = interop::our_offer(&pc, STEP_LIMIT).await?;
            let answer = peer
                .request(json!({ "cmd": "answer", "sdp": offer, "big": BIG }))
                .await?;
            let answer = answer.as_str().ok_or("answer is not a string")?.to_owned();
            their_sdp = answer.clone();
            let answer = RTCSessionDescription::answer(answer).map_err(|e| e.to_string())?;
            pc.set_remote_description(answer)
                .await
                .map_err(|e| format!("applying aiortc's answer: {e}"))?;
        }
        Role::MediaSender | Role::MediaReceiver => {
            unreachable!("the media scenarios run these")
        }
    }
    let lines: Vec<&str> = their_sdp
        .lines()
        .filter(|l| {
            l.starts_with("a=candidate")
                || l.starts_with("a=max-message-size")
                || l.starts_with("a=setup")
        })
        .collect();
    eprintln!("aiortc's description: {lines:?}");
    if let Some(c) = lines
        .iter()
        .find(|l| l.starts_with("a=candidate") && !l.split_whitespace().any(|w| w == "127.0.0.1"))
    {
        return Err(format!("aiortc offered a non-loopback candidate: {c}"));
    }

    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
    let connected_after = signaling_started.elapsed();
    let theirs =
        interop::channels_ready(&pc, &mut incoming, &ours, "from-aiortc", BIG, STEP_LIMIT).await?;

    let exchange_started = Instant::now();
    let results = json!({ "cmd": "results", "timeout": EXCHANGE_LIMIT.as_secs() });
    // The first failure ends the exchange; a missing message shows as the timeout.
    let ((), (), report) = bounded("message exchange", EXCHANGE_LIMIT, async {
        futures::try_join!(
            async {
                interop::echo_and_verify(&theirs, script)
                    .await
                    .map_err(|e| format!("aiortc -> us: {e}"))
            },
            async {
                interop::send_and_verify(&ours, script)
                    .await
                    .map_err(|e| format!("us -> aiortc: {e}"))
            },
            peer.request(results),
        )
    })
    .await??;
    let elapsed = exchange_started.elapsed();
    let total = script.total() as u64;
    let sender = &report["sender"];
    let echo = &report["echo"];
    let no_errors = |v: &Value| v["errors"].as_array().is_some_and(|a| a.is_empty());
    if sender["echoed"].as_u64() != Some(total) || !no_errors(sender) {
        return Err(format!("aiortc's own channel: {sender}"));
    }
    if echo["received"].as_u64() != Some(total) || !no_errors(echo) {
        return Err(format!("aiortc echoing our channel: {echo}"));
    }

    pc.close().await.map_err(|e| e.to_string())?;
    peer.request(json!({ "cmd": "close" })).await?;
    Ok(format!(
        "{total} messages each way on each of 2 channels (last one {BIG} bytes), \
         verified on both sides in {elapsed:?}; connected {connected_after:?} after \
         signaling started; aiortc's pair {}",
        report["pair"]
    ))
}

/// The Python peer. Killed on drop (and it exits by itself when its stdin closes).
struct AiortcPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    log: Arc<Mutex<Vec<String>>>,
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AIORTC_PYTHON") {
        let p = PathBuf::from(p);
        if !interop::is_executable(&p) {
            missing(&format!(
                "AIORTC_PYTHON={} is not an executable file.",
                p.display()
            ));
        }
        return p;
    }
    let p = interop::crate_root().join("target/interop-venv/bin/python");
    if !interop::is_executable(&p) {
        missing(&format!(
            "No Python with aiortc: {} does not exist (or set AIORTC_PYTHON).",
            p.display()
        ));
    }
    p
}

impl AiortcPeer {
    async fn start() -> Result<Self, String> {
        let python = python();
        let script = interop::crate_root().join("tests/interop/aiortc_peer.py");
        let mut child = Command::new(&python)
            .arg("-u")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut stderr = BufReader::new(child.stderr.take().ok_or("no stderr")?).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut peer = Self {
            child,
            stdin,
            stdout,
            log,
        };
        match peer.read_reply().await {
            Ok(v) if v["ready"] == json!(true) => {
                eprintln!(
                    "aiortc {} (aioice {}) via {}",
                    v["aiortc"],
                    v["aioice"],
                    python.display()
                );
                Ok(peer)
            }
            other => {
                // Give stderr a moment to arrive, then show it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let status = peer.child.try_wait().ok().flatten();
                let log = peer.log();
                if status.is_some_and(|s| s.code() == Some(3)) {
                    missing(&format!(
                        "{} cannot import aiortc:\n{log}",
                        python.display()
                    ));
                }
                Err(format!(
                    "the peer did not start ({other:?}, exit status {status:?}):\n{log}"
                ))
            }
        }
    }

    async fn read_reply(&mut self) -> Result<Value, String> {
        let line = self
            .stdout
            .next_line()
            .await
            .map_err(|e| format!("reading from the aiortc peer: {e}"))?
            .ok_or("the aiortc peer exited")?;
        serde_json::from_str(&line).map_err(|e| format!("bad reply {line:?}: {e}"))
    }

    /// Sends one command and returns its `ok` value.
    async fn request(&mut self, cmd: Value) -> Result<Value, String> {
        let name = cmd["cmd"].as_str().unwrap_or("?").to_owned();
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("writing to the aiortc peer: {e}"))?;
        self.stdin.flush().await.map_err(|e| e.to_string())?;
        let reply = self.read_reply().await?;
        match (reply.get("ok"), reply.get("error")) {
            (Some(ok), _) => Ok(ok.clone()),
            (None, Some(err)) => Err(format!("aiortc: {name} failed: {err}")),
            _ => Err(format!("aiortc: {name}: unexpected reply {reply}")),
        }
    }

    /// Waits (briefly) for the peer to exit after `close`; kills it otherwise.
    async fn quit(mut self) {
        drop(self.stdin);
        if bounded(
            "aiortc peer exit",
            Duration::from_secs(10),
            self.child.wait(),
        )
        .await
        .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}
