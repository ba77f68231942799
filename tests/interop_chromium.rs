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
// Linux only: drives the Debian Chromium the CI installs; its coturn and namespace cases use Linux calls.
#![cfg(target_os = "linux")]

/// The coturn launcher of the NAT tests (and the namespace helpers it uses).
#[path = "common/coturn.rs"]
mod coturn;
mod interop;
#[path = "common/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use interop::{PageServer, Script, TempDir, bounded, browser::Browser, loopback_only, step};
use serde_json::{Value, json};
use webrtc_streams::{
    PeerConnection,
    rtc::peer_connection::{sdp::RTCSessionDescription, transport::RTCIceTcpCandidateType},
};

/// The largest message: 256 KiB, both ways. Also what our side advertises as
/// `a=max-message-size` (Chromium refuses to send more than the remote advertises).
const BIG: usize = 256 * 1024;
/// Bound on one whole scenario (browser start to close).
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);
/// Bound on a single step (start-up, one signaling call, connecting).
const STEP_LIMIT: Duration = Duration::from_secs(45);
/// Bound on the message exchange.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_offers_we_answer() {
    run("chromium offers", Role::Offerer).await;
}

/// Chromium offers with `iceTransportPolicy: "relay"` and a coturn on 127.0.0.1 as its only
/// ICE server: it signals only its relayed candidate and reaches us through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_offers_through_a_turn_relay_only() {
    run("chromium offers, relay only", Role::OffererRelayOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_offer_chromium_answers() {
    run("chromium answers", Role::Answerer).await;
}

/// Chromium offers its (fake) camera and microphone; we answer and count the RTP packets of
/// each remote track.
/// ICE-TCP with a browser: our offer carries TCP candidates only, Chromium connects to the
/// passive one and every message of the exchange travels framed over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_offer_tcp_candidates_only_chromium_connects_over_tcp() {
    run("chromium answers over ICE-TCP", Role::AnswererOverTcp).await;
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    SimulcastSender,
    Offerer,
    OffererWithVideo,
    OffererRelayOnly,
    Answerer,
    /// We offer only ICE-TCP candidates (no UDP): Chromium's active TCP candidate connects
    /// to our passive one.
    AnswererOverTcp,
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
    let answer = interop::our_answer(&pc, offer, "chromium", STEP_LIMIT).await?;
    browser.call("acceptAnswer", json!([answer])).await?;
    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
    Ok((pc, tracks))
}

/// Packets we want on each remote track before the media scenario passes.
const MEDIA_PACKETS: usize = 100;

/// Chromium sends audio and video; every remote track must deliver [`MEDIA_PACKETS`] RTP
/// packets of its SSRC, in sequence-number order modulo loss (none on loopback).
async fn media_scenario(browser: &Browser) -> Result<String, String> {
    let (pc, mut tracks) = answer_media_offer(browser, "offerMedia").await?;

    let started = Instant::now();
    let counted = interop::count_audio_and_video(&mut tracks, MEDIA_PACKETS, STEP_LIMIT).await?;
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
    let offer = interop::our_offer(&pc, STEP_LIMIT).await?;
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
        Role::Offerer
        | Role::OffererWithVideo
        | Role::OffererRelayOnly
        | Role::Answerer
        | Role::AnswererOverTcp => {}
    }
    // Chromium's only ICE server in the relay-only case; killed (by PID) when dropped.
    let turn = match role {
        Role::OffererRelayOnly => Some(
            coturn::Coturn::start(coturn::CoturnConfig::default())
                .map_err(|e| format!("starting coturn: {e}"))?,
        ),
        _ => None,
    };
    let script = Script { big: BIG };
    let signaling_started = Instant::now();
    let pc = match role {
        Role::AnswererOverTcp => PeerConnection::builder()
            .bind(["127.0.0.1:0".parse().unwrap()])
            .setting_engine(interop::setting_engine(BIG as u32))
            .ice_tcp(true)
            .ice_udp(false)
            .build()
            .await
            .map_err(|e| e.to_string())?,
        _ => interop::our_peer(BIG as u32).await,
    };
    let mut incoming = pc.data_channels();
    let ours;
    let browser_sdp;
    match role {
        Role::Offerer | Role::OffererWithVideo | Role::OffererRelayOnly => {
            let offer = match &turn {
                Some(turn) => {
                    let server = json!([{
                        "urls": [turn.turn_udp_url()],
                        "username": turn.config.user,
                        "credential": turn.config.password,
                    }]);
                    browser.call("offerRelay", json!([BIG, server])).await?
                }
                None if matches!(role, Role::OffererWithVideo) => {
                    browser.call("offerWithVideo", json!([BIG])).await?
                }
                None => browser.call("offer", json!([BIG])).await?,
            };
            let offer = loopback_only(offer.as_str().ok_or("offer is not a string")?);
            browser_sdp = offer.clone();
            let answer = interop::our_answer(&pc, offer, "chromium", STEP_LIMIT).await?;
            ours = pc
                .create_data_channel("from-rust", Default::default())
                .await
                .map_err(|e| e.to_string())?;
            browser.call("acceptAnswer", json!([answer])).await?;
        }
        Role::Answerer | Role::AnswererOverTcp => {
            ours = pc
                .create_data_channel("from-rust", Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let offer = interop::our_offer(&pc, STEP_LIMIT).await?;
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

    let interop::PageExchange {
        report,
        connected_after,
        elapsed,
    } = Box::pin(interop::page_exchange(
        &pc,
        &mut incoming,
        &ours,
        browser.call("results", json!([EXCHANGE_LIMIT.as_millis() as u64])),
        script,
        "chromium",
        signaling_started,
        (STEP_LIMIT, EXCHANGE_LIMIT),
    ))
    .await?;
    let total = script.total() as u64;
    let sender = &report["sender"];
    if turn.is_some() {
        let relayed = report["pair"]
            .as_str()
            .is_some_and(|p| p.starts_with("relay "));
        let only_relay = browser_sdp
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .all(|l| l.contains(" typ relay"));
        if !relayed || !only_relay {
            return Err(format!(
                "relay only, but chromium's pair is {} and its candidates {:?}",
                report["pair"],
                browser_sdp
                    .lines()
                    .filter(|l| l.starts_with("a=candidate"))
                    .collect::<Vec<_>>()
            ));
        }
    }

    if role == Role::AnswererOverTcp {
        let pair = report["pair"].as_str().unwrap_or_default();
        let over_tcp = pair.split(" -> ").all(|end| end.ends_with(" tcp"));
        if !over_tcp {
            return Err(format!("ICE-TCP only, but chromium's pair is {pair:?}"));
        }
        let ours = pc
            .selected_candidate_pair()
            .await
            .map_err(|e| e.to_string())?;
        let ours = ours.ok_or("no selected pair on our side")?;
        if ours.local().tcp_type != RTCIceTcpCandidateType::Passive {
            return Err(format!("our end is not the passive candidate: {ours}"));
        }
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

// ---- Chromium with mDNS host candidates ---------------------------------------------------

/// Our peer's address in the mDNS namespace (Chromium gathers on both of `d0`'s).
const OUR_MDNS_ADDR: &str = "10.77.0.2:0";

/// A namespace with `lo` and a veth pair whose both ends it holds (`d0` with two 10.77.0.0/24
/// addresses, multicast on and routed through it; nothing leaves the namespace).
/// Chromium hides private addresses behind `.local` names (not loopback ones) and answers
/// mDNS queries on multicast-capable interfaces. Deleted on drop.
struct MdnsNamespace(String);

impl MdnsNamespace {
    fn new() -> Result<Self, String> {
        use std::process::{Command, Stdio};
        const PREFIX: &str = "wrs-chr-mdns-";
        let name = format!("{PREFIX}{}", std::process::id());
        // Ours from an earlier run, and those of test processes that died without their
        // `Drop` (an abort): the PID in the name no longer runs.
        let stale = std::fs::read_dir("/var/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_prefix(PREFIX).is_some_and(|pid| {
                    pid.parse::<u32>().is_ok()
                        && (*n == name || !std::path::Path::new("/proc").join(pid).exists())
                })
            });
        for old in stale {
            let _ = Command::new("ip")
                .args(["netns", "del", &old])
                .stderr(Stdio::null())
                .status();
        }
        let ns = Self(name.clone());
        for args in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
            vec![
                "-n", &name, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
            ],
            vec!["-n", &name, "link", "set", "d1", "up"],
            vec!["-n", &name, "addr", "add", "10.77.0.1/24", "dev", "d0"],
            vec!["-n", &name, "addr", "add", "10.77.0.2/24", "dev", "d0"],
            vec!["-n", &name, "link", "set", "d0", "multicast", "on"],
            vec!["-n", &name, "link", "set", "d0", "up"],
            vec!["-n", &name, "route", "add", "224.0.0.0/4", "dev", "d0"],
            // Without media permission Chromium gathers only on the interface of its default
            // route (found by connecting a UDP socket towards a public address); that route
            // ends at `d1`, which has no address and no further link.
            vec![
                "-n",
                &name,
                "route",
                "add",
                "default",
                "dev",
                "d0",
                "src",
                "10.77.0.1",
            ],
        ] {
            let out = std::process::Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| format!("`ip` not runnable ({e}); this test needs iproute2"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip {}: {} (this test needs root)",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(ns)
    }
}

impl Drop for MdnsNamespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Chromium with its mDNS host candidates on (its default) offers to our peer, inside a
/// namespace of its own. Our answer reaches Chromium without candidates, so Chromium cannot
/// contact us first: the connection comes up only if we resolve Chromium's `.local` name and
/// check the address behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_mdns_candidates_are_resolved() {
    let _ = env_logger::builder().is_test(true).try_init();
    let ns = MdnsNamespace::new().unwrap_or_else(|e| panic!("{e}"));
    let rt = netns::NsRuntime::start(&ns.0);
    // Everything runs on the namespace's thread: the page server, chromedriver and Chromium
    // (children inherit the namespace), the WebDriver client and our peer.
    let outcome = rt
        .run(|| async {
            bounded("chromium mDNS scenario", SCENARIO_LIMIT, mdns_scenario())
                .await
                .and_then(|r| r)
        })
        .await;
    drop(rt);
    drop(ns);
    match outcome {
        Ok(summary) => eprintln!("chromium mDNS: OK: {summary}"),
        Err(e) => panic!("chromium mDNS: {e}"),
    }
}

async fn mdns_scenario() -> Result<String, String> {
    use futures::StreamExt;
    let page = PageServer::start().await;
    let browser = step("starting chromium", STEP_LIMIT, Browser::start_with(true)).await?;
    let result = async {
        step(
            "loading the page",
            STEP_LIMIT,
            browser.navigate(&page.url()),
        )
        .await?;
        let offer = step(
            "chromium's offer",
            STEP_LIMIT,
            browser.call("offer", json!([0])),
        )
        .await?;
        let offer = offer.as_str().ok_or("offer is not a string")?.to_owned();
        let candidates: Vec<&str> = offer
            .lines()
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        eprintln!("chromium's candidates: {candidates:?}");
        if !candidates.iter().any(|l| l.contains(".local ")) {
            return Err(format!(
                "chromium signalled no .local candidate: {candidates:?}"
            ));
        }
        let pc = webrtc_streams::PeerConnection::builder()
            .bind([OUR_MDNS_ADDR.parse().unwrap()])
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let mut incoming = pc.data_channels();
        let answer = interop::our_answer(&pc, offer, "chromium", STEP_LIMIT).await?;
        let answer: String = answer
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("a=candidate:"))
            .collect();
        step(
            "chromium applying our answer",
            STEP_LIMIT,
            browser.call("acceptAnswer", json!([answer])),
        )
        .await?;
        let started = Instant::now();
        step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
        let connected_after = started.elapsed();
        let theirs = bounded("chromium's data channel", STEP_LIMIT, incoming.next())
            .await?
            .ok_or("data channel stream ended")?;
        let mut messages = theirs.messages();
        let first = bounded("chromium's first message", STEP_LIMIT, messages.next())
            .await?
            .ok_or("chromium's channel ended")?;
        let _ = browser.call("close", json!([])).await;
        pc.close().await.map_err(|e| e.to_string())?;
        Ok(format!(
            "connected {connected_after:?} after chromium applied our candidate-less answer; \
             first message from chromium {} bytes",
            first.data.len()
        ))
    }
    .await;
    browser.quit().await;
    result
}

/// ICE restart with a browser, both ways, in the middle of a data-channel exchange: we restart
/// (new offer on the same connection, Chromium answers with new credentials), then Chromium
/// restarts (`restartIce()`, we answer). All 1,000 scripted messages on our channel come back
/// echoed in order across both restarts, and Chromium's own 1,000 come through ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restarts_both_ways_with_chromium_lose_nothing() {
    let _ = env_logger::builder().is_test(true).try_init();
    let page = PageServer::start().await;
    let browser = match bounded("starting chromium", STEP_LIMIT, Browser::start()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) | Err(e) => panic!("cannot start chromium: {e}"),
    };
    let outcome = async {
        step(
            "loading the page",
            STEP_LIMIT,
            browser.navigate(&page.url()),
        )
        .await?;
        bounded("restarts", SCENARIO_LIMIT, restart_scenario(&browser))
            .await
            .and_then(|r| r)
    }
    .await;
    match outcome {
        Ok(summary) => {
            eprintln!("ICE restarts with chromium: OK: {summary}");
            browser.quit().await;
        }
        Err(e) => {
            let log = browser.call("log", json!([])).await;
            eprintln!("---- browser log ----\n{log:?}");
            panic!("ICE restarts with chromium: {e}");
        }
    }
}

fn ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}

async fn restart_scenario(browser: &Browser) -> Result<String, String> {
    use futures::StreamExt;
    let script = Script { big: 0 };
    let pc = interop::our_peer(64 * 1024).await;
    let mut incoming = pc.data_channels();
    let ours = pc
        .create_data_channel("from-rust", Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let offer = interop::our_offer(&pc, STEP_LIMIT).await?;
    let answer = browser.call("answer", json!([offer, 0])).await?;
    let answer = loopback_only(answer.as_str().ok_or("answer is not a string")?);
    let first_ufrag = ufrag(&answer).ok_or("no ufrag in chromium's answer")?;
    pc.set_remote_description(RTCSessionDescription::answer(answer).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    let theirs = step("chromium's channel", STEP_LIMIT, async {
        incoming
            .next()
            .await
            .ok_or_else(|| "no channel".to_string())
    })
    .await?;
    let echo_theirs = tokio::spawn(async move { interop::echo_and_verify(&theirs, script).await });
    step("our channel open", STEP_LIMIT, async {
        ours.opened().await.map_err(|e| e.to_string())
    })
    .await?;

    let mut echoes = ours.messages();
    let check = async {
        for i in 0..script.total() {
            let m = echoes
                .next()
                .await
                .ok_or_else(|| format!("echoes ended after {i}"))?;
            script.check(i, &m)?;
        }
        Ok::<_, String>(())
    };
    let send = async {
        let send_range = |range: std::ops::Range<usize>| {
            let ours = &ours;
            async move {
                for i in range {
                    let r = match script.message(i) {
                        interop::Msg::Text(s) => ours.send_text(s).await,
                        interop::Msg::Binary(b) => ours.send(bytes::Bytes::from(b)).await,
                    };
                    r.map_err(|e| format!("send {i}: {e}"))?;
                }
                Ok::<_, String>(())
            }
        };
        send_range(0..300).await?;
        // We restart: a new offer on the same connection; Chromium answers.
        pc.restart_ice().await.map_err(|e| e.to_string())?;
        let offer = interop::our_offer(&pc, STEP_LIMIT).await?;
        let answer = browser.call("reanswer", json!([offer])).await?;
        let answer = loopback_only(answer.as_str().ok_or("answer is not a string")?);
        let second_ufrag = ufrag(&answer).ok_or("no ufrag")?;
        if second_ufrag == first_ufrag {
            return Err("chromium kept its credentials across our restart".into());
        }
        pc.set_remote_description(
            RTCSessionDescription::answer(answer).map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| format!("applying the restart answer: {e}"))?;
        send_range(300..600).await?;
        // Chromium restarts: its new offer, our answer.
        let offer = browser.call("restartOffer", json!([])).await?;
        let offer = loopback_only(offer.as_str().ok_or("offer is not a string")?);
        if ufrag(&offer).as_deref() == Some(second_ufrag.as_str()) {
            return Err("chromium's restart offer kept its credentials".into());
        }
        let answer = interop::our_answer(&pc, offer, "chromium", STEP_LIMIT).await?;
        browser.call("acceptAnswer", json!([answer])).await?;
        send_range(600..script.total()).await
    };
    let (sent, checked) = futures::join!(send, check);
    sent?;
    checked?;
    step("chromium's messages echoed", EXCHANGE_LIMIT, async {
        echo_theirs.await.map_err(|e| e.to_string())?
    })
    .await?;
    let state = pc.connection_state();
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "{} messages each way across two ICE restarts (ours, then chromium's); state {state}",
        script.total()
    ))
}
