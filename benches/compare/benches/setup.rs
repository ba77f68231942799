//! Connection setup on loopback: build → data channel open on both sides, 20 fresh pairs per
//! library, this crate and `webrtc` 0.21.1 in the same run. Then with Chromium (headless,
//! driven like the interop tests; `.ci/install-interop-deps` installs it): the time from
//! applying the answer to our data channel being open, Chromium answering and Chromium
//! offering, with this crate's default ICE acceptance waits and with `rtc`'s. All of
//! Chromium's candidates are dropped: on a loopback-only machine it signals none (and a
//! browser hiding its address behind an mDNS name signals none we can use at once), so it
//! reaches us from a peer-reflexive address.
//!
//! `cargo bench --bench setup` (`PAIRS=n` to change the count, `BROWSER_PAIRS=n` for the
//! Chromium rows, `BROWSER_PAIRS=0` to leave them out).

mod common;
#[path = "../../../tests/interop/mod.rs"]
mod interop;

use std::time::{Duration, Instant};

use common::*;
use interop::{PageServer, browser::Browser};
use serde_json::json;
use webrtc_streams::{
    PeerConnection, PeerConnectionBuilder,
    rtc::peer_connection::{
        configuration::setting_engine::SettingEngineBuilder, sdp::RTCSessionDescription,
    },
};

/// Bound on every step with the browser.
const STEP: Duration = Duration::from_secs(30);

fn main() {
    let pairs = env_usize("PAIRS", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm up both (certificate generation code paths, allocator).
        let _ = ours_pair().await;
        let _ = anchor_pair(1 << 20).await;

        let mut ours = Vec::new();
        for _ in 0..pairs {
            let t = Instant::now();
            let (a, b, _, _) = ours_pair().await;
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            a.close().await.unwrap();
            b.close().await.unwrap();
        }
        let mut theirs = Vec::new();
        for _ in 0..pairs {
            let t = Instant::now();
            let (a, b, _, _) = anchor_pair(1 << 20).await;
            theirs.push(t.elapsed().as_secs_f64() * 1e3);
            let _ = a.pc.close().await;
            let _ = b.pc.close().await;
        }
        let (om, omin, omax) = stats(ours);
        let (tm, tmin, tmax) = stats(theirs);
        println!("setup: build -> channel open on both sides, {pairs} pairs each, loopback");
        println!(
            "{:<16} {:>10} {:>10} {:>10}",
            "library", "median ms", "min ms", "max ms"
        );
        println!(
            "{:<16} {om:>10.2} {omin:>10.2} {omax:>10.2}",
            "webrtc-streams"
        );
        println!(
            "{:<16} {tm:>10.2} {tmin:>10.2} {tmax:>10.2}",
            "webrtc 0.21.1"
        );
        println!(
            "ratio (ours / webrtc 0.21.1, median): {:.3}  (target <= 0.8)",
            om / tm
        );

        let browser_pairs = env_usize("BROWSER_PAIRS", 10);
        if browser_pairs > 0 {
            chromium_rows(browser_pairs).await;
        }
    });
}

/// Chromium rows: answer applied -> our channel open, `n` connections per row, one browser.
async fn chromium_rows(n: usize) {
    let page = PageServer::start().await;
    let browser = interop::step("starting chromium", STEP, Browser::start())
        .await
        .expect("start chromium");
    interop::step("loading the page", STEP, browser.navigate(&page.url()))
        .await
        .expect("load the page");
    let ours = || PeerConnectionBuilder::default_settings().build();
    let rtcs = || SettingEngineBuilder::new().build();
    let mut rows = Vec::new();
    for (name, offer, settings) in [
        ("chromium answers, our waits", false, ours as fn() -> _),
        ("chromium answers, rtc waits", false, rtcs),
        ("chromium offers, our waits", true, ours),
        ("chromium offers, rtc waits", true, rtcs),
    ] {
        let _ = chromium_setup(&browser, offer, settings()).await; // warm-up
        let mut times = Vec::new();
        for _ in 0..n {
            times.push(chromium_setup(&browser, offer, settings()).await);
        }
        rows.push((name, stats(times)));
    }
    browser.quit().await;
    println!("setup with chromium: answer applied -> our channel open, {n} connections each");
    println!(
        "{:<30} {:>10} {:>10} {:>10}",
        "case", "median ms", "min ms", "max ms"
    );
    for (name, (med, min, max)) in rows {
        println!("{name:<30} {med:>10.2} {min:>10.2} {max:>10.2}");
    }
}

/// One connection with Chromium on 127.0.0.1; returns milliseconds from applying the answer
/// (ours to Chromium's offer, or Chromium's to ours) to our channel being open.
async fn chromium_setup(
    browser: &Browser,
    chromium_offers: bool,
    settings: webrtc_streams::rtc::peer_connection::configuration::setting_engine::SettingEngine,
) -> f64 {
    let pc = PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .setting_engine(settings)
        .build()
        .await
        .expect("build");
    let dc = pc
        .create_data_channel("from-rust", Default::default())
        .await
        .expect("channel");
    let started;
    if chromium_offers {
        let offer = interop::step("chromium's offer", STEP, browser.call("offer", json!([0])))
            .await
            .expect("offer");
        let offer = RTCSessionDescription::offer(no_candidates(offer.as_str().unwrap())).unwrap();
        pc.set_remote_description(offer).await.expect("srd");
        let answer = pc.create_answer().await.expect("answer");
        pc.set_local_description(answer).await.expect("sld");
        let answer = interop::local_sdp_after_gathering(&pc).await;
        started = Instant::now();
        interop::step(
            "chromium applying our answer",
            STEP,
            browser.call("acceptAnswer", json!([answer])),
        )
        .await
        .expect("accept answer");
    } else {
        let offer = pc.create_offer().await.expect("offer");
        pc.set_local_description(offer).await.expect("sld");
        let offer = interop::local_sdp_after_gathering(&pc).await;
        let answer = interop::step(
            "chromium's answer",
            STEP,
            browser.call("answer", json!([offer, 0])),
        )
        .await
        .expect("answer");
        started = Instant::now();
        let answer =
            RTCSessionDescription::answer(no_candidates(answer.as_str().unwrap())).unwrap();
        pc.set_remote_description(answer).await.expect("srd");
    }
    interop::step("our channel opening", STEP, async {
        dc.opened().await.map_err(|e| e.to_string())
    })
    .await
    .expect("open");
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let _ = browser.call("close", json!([])).await;
    let _ = pc.close().await;
    ms
}

/// `sdp` without its candidate lines (see the module documentation).
fn no_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate:"))
        .collect()
}
