//! Interop with Chromium (Debian's `chromium` + `chromium-driver`), driven over WebDriver.
//!
//! Each test starts its own `chromedriver` on a free loopback port (in a process group of its
//! own, killed with everything it started when the test ends, panics included), opens a fresh
//! headless Chromium profile, serves `tests/interop/page.html` on 127.0.0.1 and calls the page's
//! functions with WebDriver's "execute async script". Signaling is those calls: complete
//! descriptions, no trickle. Our peer binds one socket on 127.0.0.1 and signals it. Chromium's
//! candidates on other interfaces are dropped from its description, so everything is addressed
//! to 127.0.0.1: as on a loopback-only machine, where Chromium signals no candidate at all, it
//! reaches us from an unsignaled, peer-reflexive address that our side must accept.
//!
//! In each scenario both sides create a data channel and send 1,000 messages (text and binary)
//! plus one binary message of 256 KiB on it; the other side checks each message and echoes it;
//! the sender checks each echo.
//!
//! Missing `chromium`/`chromedriver` fails the tests: run `.ci/install-interop-deps`.
//! See `tests/interop/README.md` for running by hand and watching the browser.
//!
//! The WebDriver client is about a hundred lines of HTTP/1.1 + JSON over a Tokio `TcpStream`:
//! the four commands used here do not justify a WebDriver crate and its dependency tree.

mod interop;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use interop::{ProcessGroupGuard, Script, TempDir, bounded, missing, step};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use webrtc_streams::rtc::peer_connection::sdp::RTCSessionDescription;

/// The largest message: 256 KiB, both ways. Also what our side advertises as
/// `a=max-message-size` (Chromium refuses to send more than the remote advertises).
const BIG: usize = 256 * 1024;
/// Bound on one whole scenario (browser start to close).
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);
/// Bound on a single step (start-up, one signaling call, connecting).
const STEP_LIMIT: Duration = Duration::from_secs(45);
/// Bound on the message exchange.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);

const PAGE: &str = include_str!("interop/page.html");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_offers_we_answer() {
    run("chromium offers", Role::Offerer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_offer_chromium_answers() {
    run("chromium answers", Role::Answerer).await;
}

/// Chromium offers its (fake) camera and microphone; we answer and count the RTP packets of
/// each remote track.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sends_audio_and_video() {
    run("chromium sends media", Role::MediaSender).await;
}

/// We send VP8 that Debian's `ffmpeg` encodes at test time; Chromium must decode frames of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_send_video_chromium_decodes() {
    run("chromium decodes our video", Role::MediaReceiver).await;
}

/// Chromium offers its camera first and a data channel; we have no codecs, reject the video
/// and must still connect the data channel. (`rtc` put our candidates into the rejected video
/// section; Chromium still connected, finding us through our own checks, so this case passed
/// before the description fix too: it guards the fixed description, which moves them into the
/// kept section and gives the rejected one credentials, setup, rtcp-mux and the offered
/// formats, as browsers do.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_offers_video_and_a_channel_to_a_data_only_peer() {
    run("chromium offers video + channel", Role::OffererWithVideo).await;
}

/// Chromium sends simulcast (two RIDs of its fake camera); each layer arrives as a remote
/// track of its own, with its RID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sends_simulcast() {
    run("chromium sends simulcast", Role::SimulcastSender).await;
}

#[derive(Clone, Copy, Debug)]
enum Role {
    SimulcastSender,
    Offerer,
    OffererWithVideo,
    Answerer,
    MediaSender,
    MediaReceiver,
}

async fn run(name: &str, role: Role) {
    let _ = env_logger::builder().is_test(true).try_init();
    let started = Instant::now();
    let page = PageServer::start().await;
    let browser = match bounded("starting chromium", STEP_LIMIT, Browser::start()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) | Err(e) => panic!("{name}: cannot start chromium: {e}"),
    };
    let outcome = async {
        step(
            "loading the page",
            STEP_LIMIT,
            browser.navigate(&page.url()),
        )
        .await?;
        bounded(name, SCENARIO_LIMIT + linger(), scenario(&browser, role))
            .await
            .and_then(|r| r)
    }
    .await;
    match outcome {
        Ok(summary) => {
            eprintln!("{name}: OK in {:?}: {summary}", started.elapsed());
            browser.quit().await;
        }
        Err(e) => {
            // Show what the browser saw before failing; the guards clean up while unwinding.
            let log = bounded("reading the browser log", Duration::from_secs(10), async {
                browser.call("log", json!([])).await
            })
            .await;
            eprintln!("---- browser log ----");
            match log {
                Ok(Ok(Value::Array(lines))) => {
                    for l in lines {
                        eprintln!("{}", l.as_str().unwrap_or_default());
                    }
                }
                other => eprintln!("(unavailable: {other:?})"),
            }
            eprintln!(
                "---- chromedriver log (tail) ----\n{}",
                browser.driver_log_tail()
            );
            panic!("{name}: {e}");
        }
    }
}

/// Our media peer answering the offer the page function `call` makes; returns it connected,
/// with its remote-track stream (subscribed before anything arrived).
async fn answer_media_offer(
    browser: &Browser,
    call: &str,
) -> Result<
    (
        webrtc_streams::PeerConnection,
        webrtc_streams::EventStream<webrtc_streams::media::RemoteTrack>,
    ),
    String,
> {
    let pc = webrtc_streams::PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(interop::setting_engine(BIG as u32))
        .default_codecs()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let tracks = pc.tracks();
    let offer = browser.call(call, json!([])).await?;
    let offer = loopback_only(offer.as_str().ok_or("offer is not a string")?);
    let offer = RTCSessionDescription::offer(offer).map_err(|e| e.to_string())?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| format!("applying chromium's offer: {e}"))?;
    let answer = pc.create_answer().await.map_err(|e| e.to_string())?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| e.to_string())?;
    let answer = bounded(
        "our ICE gathering",
        STEP_LIMIT,
        interop::local_sdp_after_gathering(&pc),
    )
    .await?;
    browser.call("acceptAnswer", json!([answer])).await?;
    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
    Ok((pc, tracks))
}

/// Packets we want on each remote track before the media scenario passes.
const MEDIA_PACKETS: usize = 100;

/// Chromium sends audio and video; every remote track must deliver [`MEDIA_PACKETS`] RTP
/// packets of its SSRC, in sequence-number order modulo loss (none on loopback).
async fn media_scenario(browser: &Browser) -> Result<String, String> {
    use futures::StreamExt;
    use webrtc_streams::media::RtpCodecKind;

    let (pc, mut tracks) = answer_media_offer(browser, "offerMedia").await?;

    let started = Instant::now();
    let mut counted = Vec::new();
    let mut kinds = Vec::new();
    let mut readers = Vec::new();
    while kinds.len() < 2 {
        let track = bounded("a remote track", STEP_LIMIT, tracks.next())
            .await?
            .ok_or("track stream ended")?;
        kinds.push(track.kind());
        let mut rtp = track.rtp();
        readers.push(tokio::spawn(async move {
            let mut n = 0;
            while n < MEDIA_PACKETS {
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
    for r in readers {
        let got = bounded("media packets", STEP_LIMIT, r)
            .await?
            .map_err(|e| e.to_string())??;
        counted.push(got);
    }
    let sent = browser.call("mediaSent", json!([])).await?;
    browser.call("close", json!([])).await?;
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "{MEDIA_PACKETS} RTP packets on each track {counted:?} in {:?}; chromium reports sent {sent}",
        started.elapsed()
    ))
}

/// Chromium offers simulcast video; every layer must arrive as its own track, with its RID,
/// carrying packets.
async fn simulcast_scenario(browser: &Browser) -> Result<String, String> {
    use futures::StreamExt;

    let (pc, mut tracks) = answer_media_offer(browser, "offerSimulcast").await?;

    let mut layers = Vec::new();
    let mut readers = Vec::new();
    while layers.len() < 2 {
        let track = bounded("a simulcast layer", STEP_LIMIT, tracks.next())
            .await?
            .ok_or("track stream ended")?;
        let rid = track.rid().map(str::to_owned);
        if layers.contains(&rid) {
            return Err(format!("two tracks for RID {rid:?}"));
        }
        layers.push(rid);
        let mut rtp = track.rtp();
        readers.push(tokio::spawn(async move {
            for _ in 0..30 {
                if rtp.next().await.is_none() {
                    return Err(format!("layer {:?} ended", track.rid()));
                }
            }
            Ok((track.rid().map(str::to_owned), track.ssrc()))
        }));
    }
    let mut got = Vec::new();
    for r in readers {
        got.push(
            bounded("layer packets", STEP_LIMIT, r)
                .await?
                .map_err(|e| e.to_string())??,
        );
    }
    layers.sort();
    if layers != [Some("f".to_owned()), Some("q".to_owned())] {
        return Err(format!("layers {layers:?}, expected RIDs f and q"));
    }
    browser.call("close", json!([])).await?;
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "30 RTP packets on each simulcast layer (rid, ssrc): {got:?}"
    ))
}

/// We offer a VP8 track and send real encoded frames (paced at their frame rate); Chromium
/// answers and must decode some.
async fn send_media_scenario(browser: &Browser) -> Result<String, String> {
    use webrtc_streams::{
        PeerConnection, media::LocalTrack,
        rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8,
    };

    let dir = TempDir::new("webrtc-streams-media");
    let ivf = interop::encode_vp8(dir.path(), 4)?;

    let pc = PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(interop::setting_engine(BIG as u32))
        .default_codecs()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let video = pc
        .add_track(LocalTrack::video(
            "testsrc",
            LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let offer = pc.create_offer().await.map_err(|e| e.to_string())?;
    pc.set_local_description(offer)
        .await
        .map_err(|e| e.to_string())?;
    let offer = bounded(
        "our ICE gathering",
        STEP_LIMIT,
        interop::local_sdp_after_gathering(&pc),
    )
    .await?;
    let answer = browser.call("answerMedia", json!([offer])).await?;
    let answer = loopback_only(answer.as_str().ok_or("answer is not a string")?);
    let answer = RTCSessionDescription::answer(answer).map_err(|e| e.to_string())?;
    pc.set_remote_description(answer)
        .await
        .map_err(|e| format!("applying chromium's answer: {e}"))?;
    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;

    let started = Instant::now();
    let frames = interop::play_vp8(&video, &ivf).await?;
    let mut received = Value::Null;
    let decoded = bounded("chromium decoding", STEP_LIMIT, async {
        loop {
            received = browser.call("mediaReceived", json!([])).await?;
            let decoded = received["video"]["framesDecoded"].as_u64().unwrap_or(0);
            if decoded > 0 {
                return Ok::<_, String>(decoded);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await??;
    browser.call("close", json!([])).await?;
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "sent {frames} VP8 frames in {:?}; chromium decoded {decoded}: {received}",
        started.elapsed()
    ))
}

/// One offer/answer exchange and the echo in both directions. Returns a summary line.
async fn scenario(browser: &Browser, role: Role) -> Result<String, String> {
    match role {
        Role::SimulcastSender => return simulcast_scenario(browser).await,
        Role::MediaSender => return media_scenario(browser).await,
        Role::MediaReceiver => return send_media_scenario(browser).await,
        Role::Offerer | Role::OffererWithVideo | Role::Answerer => {}
    }
    let script = Script { big: BIG };
    let signaling_started = Instant::now();
    let pc = interop::our_peer(BIG as u32).await;
    let mut incoming = pc.data_channels();
    let ours;
    let browser_sdp;
    match role {
        Role::Offerer | Role::OffererWithVideo => {
            let call = match role {
                Role::OffererWithVideo => "offerWithVideo",
                _ => "offer",
            };
            let offer = browser.call(call, json!([BIG])).await?;
            let offer = loopback_only(offer.as_str().ok_or("offer is not a string")?);
            browser_sdp = offer.clone();
            let offer = RTCSessionDescription::offer(offer).map_err(|e| e.to_string())?;
            pc.set_remote_description(offer)
                .await
                .map_err(|e| format!("applying chromium's offer: {e}"))?;
            let answer = pc.create_answer().await.map_err(|e| e.to_string())?;
            pc.set_local_description(answer)
                .await
                .map_err(|e| e.to_string())?;
            ours = pc
                .create_data_channel("from-rust", Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let answer = bounded(
                "our ICE gathering",
                STEP_LIMIT,
                interop::local_sdp_after_gathering(&pc),
            )
            .await?;
            browser.call("acceptAnswer", json!([answer])).await?;
        }
        Role::Answerer => {
            ours = pc
                .create_data_channel("from-rust", Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let offer = pc.create_offer().await.map_err(|e| e.to_string())?;
            pc.set_local_description(offer)
                .await
                .map_err(|e| e.to_string())?;
            let offer = bounded(
                "our ICE gathering",
                STEP_LIMIT,
                interop::local_sdp_after_gathering(&pc),
            )
            .await?;
            let answer = browser.call("answer", json!([offer, BIG])).await?;
            let answer = loopback_only(answer.as_str().ok_or("answer is not a string")?);
            browser_sdp = answer.clone();
            let answer = RTCSessionDescription::answer(answer).map_err(|e| e.to_string())?;
            pc.set_remote_description(answer)
                .await
                .map_err(|e| format!("applying chromium's answer: {e}"))?;
        }
        Role::MediaSender | Role::MediaReceiver | Role::SimulcastSender => {
            unreachable!("the media scenarios run these")
        }
    }
    let lines: Vec<&str> = browser_sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate") || l.starts_with("a=max-message-size"))
        .collect();
    eprintln!("chromium's description, as applied: {lines:?}");

    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
    let connected_after = signaling_started.elapsed();
    let theirs =
        interop::channels_ready(&pc, &mut incoming, &ours, "from-browser", BIG, STEP_LIMIT).await?;

    let exchange_started = Instant::now();
    // The first failure ends the exchange; a missing message shows as the timeout.
    let ((), (), report) = bounded("message exchange", EXCHANGE_LIMIT, async {
        futures::try_join!(
            async {
                interop::echo_and_verify(&theirs, script)
                    .await
                    .map_err(|e| format!("chromium -> us: {e}"))
            },
            async {
                interop::send_and_verify(&ours, script)
                    .await
                    .map_err(|e| format!("us -> chromium: {e}"))
            },
            browser.call("results", json!([EXCHANGE_LIMIT.as_millis() as u64])),
        )
    })
    .await??;
    let elapsed = exchange_started.elapsed();
    let total = script.total() as u64;
    let sender = &report["sender"];
    let echo = &report["echo"];
    let no_errors = |v: &Value| v["errors"].as_array().is_some_and(|a| a.is_empty());
    if sender["echoed"].as_u64() != Some(total) || !no_errors(sender) {
        return Err(format!("chromium's own channel: {sender}"));
    }
    if echo["received"].as_u64() != Some(total) || !no_errors(echo) {
        return Err(format!("chromium echoing our channel: {echo}"));
    }

    if !linger().is_zero() {
        eprintln!("lingering {:?} before closing (INTEROP_LINGER)", linger());
        tokio::time::sleep(linger()).await;
    }
    browser.call("close", json!([])).await?;
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "{total} messages each way on each of 2 channels (last one {BIG} bytes), \
         verified on both sides in {elapsed:?}; connected {connected_after:?} after \
         signaling started; chromium's pair {}, \
         chromium's maxMessageSize {}",
        report["pair"], sender["maxMessageSize"]
    ))
}

/// `INTEROP_LINGER=<seconds>` keeps both peers connected that long after the exchange, for
/// a look at the browser (see the README).
fn linger() -> Duration {
    std::env::var("INTEROP_LINGER")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// Chromium's description without its non-loopback candidates. On a loopback-only machine
/// Chromium signals none; where it has other interfaces it signals those, and we drop them so
/// that our side sends only to 127.0.0.1 — the same peer-reflexive path either way.
fn loopback_only(sdp: &str) -> String {
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

// ---- the page server ----------------------------------------------------------------------

/// Serves [`PAGE`] to every GET on 127.0.0.1; stops on drop.
struct PageServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PageServer {
    async fn start() -> Self {
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

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- a minimal WebDriver client -------------------------------------------------------------

/// A Chromium session behind its own chromedriver. Dropping it kills chromedriver and the
/// browser (the whole process group) and removes the profile directory.
struct Browser {
    driver_addr: SocketAddr,
    session: String,
    // Field order matters: the processes die before their profile directory is removed.
    _driver: ProcessGroupGuard,
    profile: TempDir,
}

fn find_binary(env: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        if !interop::is_executable(&p) {
            missing(&format!("{env}={} is not an executable file.", p.display()));
        }
        return p;
    }
    names
        .iter()
        .find_map(|n| interop::which(n))
        .unwrap_or_else(|| {
            missing(&format!(
                "`{}` not found on PATH (or set {env}); the Chromium interop test needs it.",
                names[0]
            ))
        })
}

impl Browser {
    async fn start() -> Result<Self, String> {
        let chromium = find_binary("CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = find_binary("CHROMEDRIVER", &["chromedriver"]);
        let profile = TempDir::new("webrtc-streams-chromium");
        let log_path = profile.path().join("chromedriver.log");
        let user_data = profile.path().join("profile");

        // A free port: bind, note, release. If another process takes it in between,
        // chromedriver fails to start and we try again with a new one.
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let mut cmd = Command::new(&chromedriver);
            // Chromium's crash handler puts its database under $XDG_CONFIG_HOME/chromium:
            // keep it in our directory, which also marks the handler as ours (it leaves our
            // process group with setsid; the guard finds it by that path).
            cmd.env("XDG_CONFIG_HOME", profile.path().join("config"))
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log_path.display()));
            let mut driver = ProcessGroupGuard::spawn("chromedriver", cmd, Some(profile.path()))
                .map_err(|e| format!("cannot run {}: {e}", chromedriver.display()))?;
            let driver_addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_ready(driver_addr, &mut driver).await {
                Ok(()) => {}
                Err(e) => {
                    last_err = e;
                    continue;
                }
            }
            let mut args = vec![
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                // A synthetic camera and microphone, granted without a prompt.
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
            // INTEROP_HEADFUL=1 shows the window (needs a display); see the README.
            if std::env::var_os("INTEROP_HEADFUL").is_none_or(|v| v.is_empty() || v == "0") {
                args.insert(0, "--headless".into());
            }
            args.push(format!("--user-data-dir={}", user_data.display()));
            if let Ok(extra) = std::env::var("INTEROP_CHROMIUM_ARGS") {
                args.extend(extra.split_whitespace().map(String::from));
            }
            let caps = json!({
                "capabilities": {
                    "alwaysMatch": {
                        "browserName": "chrome",
                        "timeouts": { "script": 120_000, "pageLoad": 30_000 },
                        "goog:chromeOptions": {
                            "binary": chromium.to_string_lossy(),
                            "args": args,
                        },
                    }
                }
            });
            let v = webdriver(driver_addr, "POST", "/session", Some(&caps)).await?;
            let session = v["sessionId"]
                .as_str()
                .ok_or_else(|| format!("no session id in {v}"))?
                .to_owned();
            eprintln!(
                "chromium {} via chromedriver on {driver_addr}; DevTools on {}",
                v["capabilities"]["browserVersion"],
                v["capabilities"]["goog:chromeOptions"]["debuggerAddress"]
            );
            return Ok(Self {
                driver_addr,
                session,
                _driver: driver,
                profile,
            });
        }
        Err(format!("chromedriver did not start: {last_err}"))
    }

    async fn navigate(&self, url: &str) -> Result<(), String> {
        let path = format!("/session/{}/url", self.session);
        webdriver(
            self.driver_addr,
            "POST",
            &path,
            Some(&json!({ "url": url })),
        )
        .await?;
        Ok(())
    }

    /// Calls `T[name](...args)` in the page and returns what its promise resolves to.
    async fn call(&self, name: &str, args: Value) -> Result<Value, String> {
        const SCRIPT: &str = "
            const done = arguments[arguments.length - 1];
            const name = arguments[0], args = arguments[1];
            Promise.resolve()
              .then(() => T[name](...args))
              .then((v) => done({ ok: v === undefined ? null : v }),
                    (e) => done({ err: String(e && e.stack ? e.stack : e) }));";
        let path = format!("/session/{}/execute/async", self.session);
        let body = json!({ "script": SCRIPT, "args": [name, args] });
        let v = webdriver(self.driver_addr, "POST", &path, Some(&body)).await?;
        match (v.get("ok"), v.get("err")) {
            (Some(ok), _) => Ok(ok.clone()),
            (None, Some(err)) => Err(format!("browser: T.{name} failed: {err}")),
            _ => Err(format!("browser: T.{name}: unexpected result {v}")),
        }
    }

    /// Ends the session (Chromium exits); the guard kills whatever is left.
    async fn quit(&self) {
        let path = format!("/session/{}", self.session);
        let _ = bounded(
            "deleting the session",
            Duration::from_secs(10),
            webdriver(self.driver_addr, "DELETE", &path, None),
        )
        .await;
    }

    fn driver_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.profile.path().join("chromedriver.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Waits until chromedriver answers `/status` with `ready: true`.
async fn wait_ready(addr: SocketAddr, driver: &mut ProcessGroupGuard) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = driver.try_wait() {
            return Err(format!("chromedriver exited: {status}"));
        }
        if let Ok(v) = webdriver(addr, "GET", "/status", None).await
            && v["ready"].as_bool() == Some(true)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("chromedriver not ready after 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One WebDriver command: HTTP/1.1 with a JSON body; returns the response's `value`.
async fn webdriver(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to chromedriver at {addr}: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    // chromedriver answers `Connection: close` but keeps the socket open: read by length.
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut read_more = async |response: &mut Vec<u8>| -> Result<bool, String> {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        response.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    };
    let head_end = loop {
        if let Some(pos) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if !read_more(&mut response).await? {
            return Err(format!(
                "{method} {path}: connection closed before the response"
            ));
        }
    };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: malformed status line"))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let content_length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let body_start = head_end + 4;
    let body = if chunked {
        loop {
            if let Some(body) = dechunk(&response[body_start..]) {
                break body;
            }
            if !read_more(&mut response).await? {
                return Err(format!("{method} {path}: truncated chunked body"));
            }
        }
    } else if let Some(len) = content_length {
        while response.len() < body_start + len {
            if !read_more(&mut response).await? {
                return Err(format!("{method} {path}: truncated body"));
            }
        }
        response[body_start..body_start + len].to_vec()
    } else {
        while read_more(&mut response).await? {}
        response[body_start..].to_vec()
    };
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{method} {path}: HTTP {status}, body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if status >= 400 {
        return Err(format!(
            "{method} {path}: HTTP {status}: {} {}",
            value["error"], value["message"]
        ));
    }
    Ok(value)
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
