//! The browser examples, run against headless Chromium (driven over WebDriver, with a fake
//! camera and microphone): each example serves its page on an ephemeral loopback port, the
//! browser opens it and connects, and the page's `getStats()` must show media that went
//! through our library.
//!
//! - `reflect`: Chromium sends its camera and microphone; the example sends the RTP back; the
//!   reflected video must be decoded.
//! - `play-from-disk`: ffmpeg makes a VP8 IVF file and an Opus Ogg file at test time; the
//!   example plays them; Chromium must decode video frames and receive audio packets. The
//!   example's file readers must reject truncated and garbage files with typed errors.
//!
//! Missing `chromium`, `chromedriver` or `ffmpeg` fails the tests with what to install
//! (`.ci/install-interop-deps`).
// Linux only: drives the Debian Chromium (and ffmpeg) the CI installs.
#![cfg(target_os = "linux")]
// Both examples are compiled in whole, and each brings its own copy of
// `examples/common/http.rs`, as a binary of its own does.
#![allow(clippy::duplicate_mod)]

mod interop;

#[allow(dead_code)]
#[path = "../examples/play-from-disk.rs"]
mod play_from_disk;
#[allow(dead_code)]
#[path = "../examples/reflect.rs"]
mod reflect;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use interop::{TempDir, bounded, browser::Browser, step};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

/// Bound on one step: starting the browser, loading the page, connecting.
const STEP_LIMIT: Duration = Duration::from_secs(45);
/// Bound on media showing up in the page's statistics once connected.
const MEDIA_LIMIT: Duration = Duration::from_secs(45);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Chromium's camera and microphone come back through the `reflect` example; Chromium must
/// decode the reflected video and receive the reflected audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflect_example_sends_chromium_its_own_media() {
    let (addr, server) = start_server(|l| reflect::serve(l, LOOPBACK)).await;
    let stats = in_browser(addr, |stats| {
        frames_decoded(stats) >= 10 && packets_received(stats, "audio") >= 10
    })
    .await;
    server.abort();
    let stats = stats.unwrap_or_else(|e| panic!("reflect: {e}"));
    eprintln!("reflect: {stats}");
}

/// The `play-from-disk` example plays a VP8 IVF file and an Opus Ogg file that ffmpeg made;
/// Chromium must decode video frames and receive audio packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_from_disk_example_plays_to_chromium() {
    let dir = TempDir::new("webrtc-streams-play-from-disk");
    let ivf = interop::encode_vp8(dir.path(), 3).expect("encoding VP8");
    let ogg = interop::encode_opus(dir.path(), 3).expect("encoding Opus");
    let media = play_from_disk::Media::open(Some(&ivf), Some(&ogg)).expect("reading the files");
    let (addr, server) = start_server(|l| play_from_disk::serve(l, LOOPBACK, media)).await;
    let stats = in_browser(addr, |stats| {
        frames_decoded(stats) >= 10 && packets_received(stats, "audio") >= 10
    })
    .await;
    server.abort();
    let stats = stats.unwrap_or_else(|e| panic!("play-from-disk: {e}"));
    eprintln!("play-from-disk: {stats}");
}

/// Truncated and garbage files get typed errors, before anything is served.
#[test]
fn play_from_disk_rejects_bad_files() {
    use play_from_disk::{Media, MediaError};

    let dir = TempDir::new("webrtc-streams-bad-media");
    let ivf = interop::encode_vp8(dir.path(), 1).expect("encoding VP8");
    let ogg = interop::encode_opus(dir.path(), 1).expect("encoding Opus");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("writing a test file");
        p
    };
    let ivf_bytes = std::fs::read(&ivf).expect("reading the IVF file");
    let ogg_bytes = std::fs::read(&ogg).expect("reading the Ogg file");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();

    // The good files are accepted, with every frame and packet.
    let good = Media::open(Some(&ivf), Some(&ogg)).expect("good files");
    assert_eq!(good.video_frames(), 30, "1 s of 30 fps video");
    // 1 s of 20 ms packets, plus one for the encoder's priming samples (pre-skip).
    let packets = good.audio_packets();
    assert!((50..=51).contains(&packets), "{packets} audio packets");

    let cut_ivf = write("cut.ivf", &ivf_bytes[..ivf_bytes.len() - 100]);
    match Media::open(Some(&cut_ivf), None) {
        Err(MediaError::Truncated { .. }) => {}
        other => panic!("truncated IVF: {other:?}"),
    }
    let bad_ivf = write("garbage.ivf", &garbage);
    match Media::open(Some(&bad_ivf), None) {
        Err(MediaError::NotIvf { .. }) => {}
        other => panic!("garbage IVF: {other:?}"),
    }
    // A valid header announcing a frame far larger than the file: no huge allocation.
    let mut huge = ivf_bytes[..32].to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&[0; 8]);
    let huge = write("huge.ivf", &huge);
    match Media::open(Some(&huge), None) {
        Err(MediaError::Truncated { .. }) => {}
        other => panic!("IVF with a huge frame size: {other:?}"),
    }
    let mut zero_rate = ivf_bytes.clone();
    zero_rate[16..20].copy_from_slice(&[0; 4]);
    let zero_rate = write("zero-rate.ivf", &zero_rate);
    match Media::open(Some(&zero_rate), None) {
        Err(MediaError::BadFrameRate { .. }) => {}
        other => panic!("IVF with a zero time base: {other:?}"),
    }

    let cut_ogg = write("cut.ogg", &ogg_bytes[..ogg_bytes.len() - 100]);
    match Media::open(None, Some(&cut_ogg)) {
        Err(MediaError::Truncated { .. }) => {}
        other => panic!("truncated Ogg: {other:?}"),
    }
    let bad_ogg = write("garbage.ogg", &garbage);
    match Media::open(None, Some(&bad_ogg)) {
        Err(MediaError::NotOggOpus { .. }) => {}
        other => panic!("garbage Ogg: {other:?}"),
    }
    // ffmpeg's default layout: a second of packets per page, which cannot be split.
    let pages = dir.path().join("pages.ogg");
    let ffmpeg = interop::which("ffmpeg").expect("ffmpeg (found above)");
    let made = std::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&ogg)
        .args(["-c", "copy", "-page_duration", "1000000"])
        .arg(&pages)
        .status()
        .expect("running ffmpeg");
    assert!(made.success(), "ffmpeg: {made}");
    match Media::open(None, Some(&pages)) {
        Err(MediaError::NotOggOpus { reason, .. }) if reason.contains("more than one packet") => {}
        other => panic!("Ogg with several packets per page: {other:?}"),
    }
    // Swapped: an IVF file as audio, an Ogg file as video.
    assert!(matches!(
        Media::open(None, Some(&ivf)),
        Err(MediaError::NotOggOpus { .. })
    ));
    assert!(matches!(
        Media::open(Some(&ogg), None),
        Err(MediaError::NotIvf { .. })
    ));
    match Media::open(Some(&dir.path().join("missing.ivf")), None) {
        Err(MediaError::Io { .. }) => {}
        other => panic!("missing file: {other:?}"),
    }
    assert!(matches!(Media::open(None, None), Err(MediaError::Nothing)));
}

/// Serves an example on an ephemeral loopback port; returns its address and task.
async fn start_server<F: Future<Output = ()> + Send + 'static>(
    serve: impl FnOnce(TcpListener) -> F,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((LOOPBACK, 0))
        .await
        .expect("bind the example's HTTP port");
    let addr = listener.local_addr().expect("the example's address");
    (addr, tokio::spawn(serve(listener)))
}

/// Opens the example's page at `addr` in a fresh Chromium, starts it and polls its stats
/// until `done` holds; returns the last stats.
async fn in_browser(addr: SocketAddr, done: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let _ = env_logger::builder().is_test(true).try_init();
    let browser = bounded("starting chromium", STEP_LIMIT, Browser::start()).await??;
    let outcome = async {
        step(
            "loading the page",
            STEP_LIMIT,
            browser.navigate(&format!("http://{addr}/")),
        )
        .await?;
        step(
            "connecting",
            STEP_LIMIT,
            browser.eval("return await demo.start();", json!([])),
        )
        .await?;
        let started = Instant::now();
        let mut stats = Value::Null;
        let polled = bounded("media in the page's stats", MEDIA_LIMIT, async {
            loop {
                stats = browser
                    .eval("return await demo.stats();", json!([]))
                    .await?;
                if done(&stats) {
                    return Ok::<_, String>(());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        match polled {
            Ok(Ok(())) => {
                Ok(json!({ "after": format!("{:?}", started.elapsed()), "stats": stats }))
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("{e}; last stats: {stats}")),
        }
    }
    .await;
    match &outcome {
        Ok(_) => browser.quit().await,
        Err(_) => eprintln!(
            "---- chromedriver log (tail) ----\n{}",
            browser.driver_log_tail()
        ),
    }
    outcome
}

fn frames_decoded(stats: &Value) -> u64 {
    stats["video"]["framesDecoded"].as_u64().unwrap_or(0)
}

fn packets_received(stats: &Value, kind: &str) -> u64 {
    stats[kind]["packetsReceived"].as_u64().unwrap_or(0)
}
