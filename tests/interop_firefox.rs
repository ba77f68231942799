//! Interop with Firefox (Debian's `firefox-esr`), headless, driven over its built-in WebDriver
//! BiDi — no geckodriver (see `tests/interop/firefox.rs`).
//!
//! Each test creates a network namespace whose only link is `lo` (plus the `8.8.8.8` route
//! through `lo` Firefox needs to find its default address), and runs everything inside it:
//! Firefox (in a process group of its own, killed with everything it started when the test
//! ends, panics included), the page server, the BiDi connection and our peer. So the peers
//! meet on 127.0.0.1 and nothing can reach the machine's other interfaces. Signaling is the
//! page's functions in `tests/interop/page.html` (shared with the Chromium tests): complete
//! descriptions, no trickle.
//!
//! Data channels: in both directions of offering, both sides create a channel and send 1,000
//! messages (text and binary) plus one binary message of 256 KiB on it; the other side checks
//! each message and echoes it; the sender checks each echo.
//!
//! Media: Firefox sends its fake camera and microphone and we count RTP on each remote track;
//! we send VP8 (encoded by `ffmpeg` at test time) and Firefox must decode frames of it.
//!
//! Missing `firefox-esr` (or `ip`, or root) fails the tests: run `.ci/install-interop-deps`.
// Linux only: drives Debian's firefox-esr as the CI installs it.
#![cfg(target_os = "linux")]

mod common;
#[path = "interop/firefox.rs"]
mod firefox;
mod interop;

use std::time::{Duration, Instant};

use firefox::{Firefox, LoopbackNetns, PageServer};
use interop::{Script, TempDir, bounded, step};
use serde_json::{Value, json};
use webrtc_streams::{
    EventStream, PeerConnection,
    media::{LocalTrack, RemoteTrack},
    rtc::peer_connection::{
        configuration::media_engine::MIME_TYPE_VP8, sdp::RTCSessionDescription,
    },
};

/// The largest message: 256 KiB, both ways; also what our side advertises as
/// `a=max-message-size` (Firefox offers 1073741823 and honours our smaller value).
const BIG: usize = 256 * 1024;
/// Bound on one whole scenario (after Firefox is up).
const SCENARIO_LIMIT: Duration = Duration::from_secs(150);
/// Bound on a single step (start-up, one signaling call, connecting).
const STEP_LIMIT: Duration = Duration::from_secs(60);
/// Bound on the message exchange.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(90);
/// RTP packets we want on each of Firefox's tracks.
const MEDIA_PACKETS: usize = 100;

const PAGE: &str = include_str!("interop/page.html");

#[test]
fn firefox_offers_we_answer() {
    run("firefox offers", Role::Offerer);
}

#[test]
fn we_offer_firefox_answers() {
    run("firefox answers", Role::Answerer);
}

/// Firefox offers its fake camera and microphone; we answer and count the RTP packets of each
/// remote track.
#[test]
fn firefox_sends_audio_and_video() {
    run("firefox sends media", Role::MediaSender);
}

/// We offer VP8 that `ffmpeg` encodes at test time; Firefox must decode frames of it.
#[test]
fn we_send_video_firefox_decodes() {
    run("firefox decodes our video", Role::MediaReceiver);
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Offerer,
    Answerer,
    MediaSender,
    MediaReceiver,
}

fn run(name: &str, role: Role) {
    let _ = env_logger::builder().is_test(true).try_init();
    // Before the namespace: a missing browser is the first thing to report.
    firefox::find_firefox();
    let ns = LoopbackNetns::new();
    let (name, netns) = (name.to_owned(), ns.name.clone());
    firefox::run_in(&ns, async move {
        let name = name.as_str();
        let started = Instant::now();
        let page = PageServer::start(PAGE)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let browser = match bounded(
            "starting firefox",
            STEP_LIMIT,
            Firefox::start(&netns, STEP_LIMIT),
        )
        .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(e)) | Err(e) => panic!("{name}: cannot start firefox: {e}"),
        };
        let outcome = async {
            step(
                "loading the page",
                STEP_LIMIT,
                browser.navigate(&page.url()),
            )
            .await?;
            bounded(name, SCENARIO_LIMIT, scenario(&browser, role))
                .await
                .and_then(|r| r)
        }
        .await;
        match outcome {
            Ok(summary) => eprintln!("{name}: OK in {:?}: {summary}", started.elapsed()),
            Err(e) => {
                browser.dump_logs().await;
                panic!("{name}: {e}");
            }
        }
    });
}

async fn scenario(browser: &Firefox, role: Role) -> Result<String, String> {
    match role {
        Role::Offerer | Role::Answerer => data_scenario(browser, role).await,
        Role::MediaSender => media_scenario(browser).await,
        Role::MediaReceiver => send_media_scenario(browser).await,
    }
}

/// One offer/answer exchange and the echo in both directions. Returns a summary line.
async fn data_scenario(browser: &Firefox, role: Role) -> Result<String, String> {
    let script = Script { big: BIG };
    let signaling_started = Instant::now();
    let pc = interop::our_peer(BIG as u32).await;
    let mut incoming = pc.data_channels();
    let ours;
    let browser_sdp;
    if let Role::Offerer = role {
        let offer = browser.call("offer", json!([BIG])).await?;
        let offer = offer.as_str().ok_or("offer is not a string")?.to_owned();
        browser_sdp = offer.clone();
        let answer = interop::our_answer(&pc, offer, "firefox", STEP_LIMIT).await?;
        ours = pc
            .create_data_channel("from-rust", Default::default())
            .await
            .map_err(|e| e.to_string())?;
        browser.call("acceptAnswer", json!([answer])).await?;
    } else {
        ours = pc
            .create_data_channel("from-rust", Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let offer = interop::our_offer(&pc, STEP_LIMIT).await?;
        let answer = browser.call("answer", json!([offer, BIG])).await?;
        let answer = answer.as_str().ok_or("answer is not a string")?.to_owned();
        browser_sdp = answer.clone();
        let answer = RTCSessionDescription::answer(answer).map_err(|e| e.to_string())?;
        pc.set_remote_description(answer)
            .await
            .map_err(|e| format!("applying firefox's answer: {e}"))?;
    }
    let lines: Vec<&str> = browser_sdp
        .lines()
        .filter(|l| {
            l.starts_with("a=candidate")
                || l.starts_with("a=max-message-size")
                || l.starts_with("a=setup")
        })
        .collect();
    eprintln!("firefox's description: {lines:?}");

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
        "firefox",
        signaling_started,
        (STEP_LIMIT, EXCHANGE_LIMIT),
    ))
    .await?;
    let total = script.total() as u64;
    let sender = &report["sender"];
    browser.call("close", json!([])).await?;
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "{total} messages each way on each of 2 channels (last one {BIG} bytes), verified on \
         both sides in {elapsed:?}; connected {connected_after:?} after signaling started; \
         firefox's pair {}, firefox's maxMessageSize {}",
        report["pair"], sender["maxMessageSize"]
    ))
}

/// Our media peer (default codecs) in this namespace.
async fn media_peer() -> Result<PeerConnection, String> {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(interop::setting_engine(BIG as u32))
        .default_codecs()
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// Firefox sends audio and video; every remote track must deliver [`MEDIA_PACKETS`] RTP
/// packets of its SSRC.
async fn media_scenario(browser: &Firefox) -> Result<String, String> {
    let signaling_started = Instant::now();
    let pc = media_peer().await?;
    let mut tracks: EventStream<RemoteTrack> = pc.tracks();
    let offer = browser.call("offerMedia", json!([])).await?;
    let offer = offer.as_str().ok_or("offer is not a string")?.to_owned();
    let answer = interop::our_answer(&pc, offer, "firefox", STEP_LIMIT).await?;
    browser.call("acceptAnswer", json!([answer])).await?;
    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
    let connected_after = signaling_started.elapsed();

    let started = Instant::now();
    let counted = interop::count_audio_and_video(&mut tracks, MEDIA_PACKETS, STEP_LIMIT).await?;
    let sent = browser.call("mediaSent", json!([])).await?;
    browser.call("close", json!([])).await?;
    pc.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "{MEDIA_PACKETS} RTP packets on each track (kind, codec, dropped) {counted:?} in {:?}; \
         connected {connected_after:?} after signaling started; firefox reports sent {sent}",
        started.elapsed()
    ))
}

/// We offer a VP8 track and send real encoded frames (paced at their frame rate); Firefox
/// answers and must decode some.
async fn send_media_scenario(browser: &Firefox) -> Result<String, String> {
    let dir = TempDir::new("webrtc-streams-ffmedia");
    let ivf = interop::encode_vp8(dir.path(), 4)?;

    let signaling_started = Instant::now();
    let pc = media_peer().await?;
    let video = pc
        .add_track(LocalTrack::video(
            "testsrc",
            LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let offer = interop::our_offer(&pc, STEP_LIMIT).await?;
    let answer = browser.call("answerMedia", json!([offer])).await?;
    let answer = answer.as_str().ok_or("answer is not a string")?.to_owned();
    let answer = RTCSessionDescription::answer(answer).map_err(|e| e.to_string())?;
    pc.set_remote_description(answer)
        .await
        .map_err(|e| format!("applying firefox's answer: {e}"))?;
    step("connecting", STEP_LIMIT, interop::connected(&pc)).await?;
    let connected_after = signaling_started.elapsed();

    let started = Instant::now();
    let frames = interop::play_vp8(&video, &ivf).await?;
    let mut received = Value::Null;
    let decoded = bounded("firefox decoding", STEP_LIMIT, async {
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
        "sent {frames} VP8 frames in {:?}; firefox decoded {decoded}: {received}; connected \
         {connected_after:?} after signaling started",
        started.elapsed()
    ))
}
