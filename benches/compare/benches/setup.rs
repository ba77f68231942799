//! Connection setup on loopback: build → data channel open on both sides, 20 fresh pairs per
//! library, this crate and `webrtc` 0.21.1 in the same run. Then with Chromium (headless,
//! driven like the interop tests; `.ci/install-interop-deps` installs it): the time from
//! applying the answer to our data channel being open, Chromium answering and Chromium
//! offering, with this crate's default ICE acceptance waits and with `rtc`'s. All of
//! Chromium's candidates are dropped: on a loopback-only machine it signals none (and a
//! browser hiding its address behind an mDNS name signals none we can use at once), so it
//! reaches us from a peer-reflexive address.
//!
//! The same with Firefox (`firefox-esr`, headless, over WebDriver BiDi, inside a network
//! namespace whose only link is loopback, as `tests/interop_firefox.rs` runs it; needs root).
//!
//! `cargo bench -p webrtc-streams-compare --bench setup` (`PAIRS=n` to change the count,
//! `BROWSER_PAIRS=n` for the browser rows, `BROWSER_PAIRS=0` to leave them out,
//! `FIREFOX=0` to leave Firefox out).

mod common;
#[path = "../../../tests/interop/firefox.rs"]
mod firefox;
#[path = "../../../tests/interop/mod.rs"]
mod interop;

use std::time::{Duration, Instant};

use common::*;
use interop::{PageServer, browser::Browser};
use serde_json::json;
use webrtc_streams::{
    PeerConnection, PeerConnectionBuilder,
    rtc::peer_connection::{
        configuration::setting_engine::{SettingEngine, SettingEngineBuilder},
        sdp::RTCSessionDescription,
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
    drop(rt);
    let browser_pairs = env_usize("BROWSER_PAIRS", 10);
    if browser_pairs > 0 && env_usize("FIREFOX", 1) > 0 {
        firefox_rows(browser_pairs);
    }
}

/// The four cases of a browser row: name, whether the browser offers, the setting engine.
type Case = (&'static str, bool, fn() -> SettingEngine);

fn cases(browser: &'static str) -> [Case; 4] {
    let ours = || PeerConnectionBuilder::default_settings().build();
    let rtcs = || SettingEngineBuilder::new().build();
    let name =
        |s: &'static str| -> &'static str { Box::leak(format!("{browser} {s}").into_boxed_str()) };
    [
        (name("answers, our waits"), false, ours),
        (name("answers, rtc waits"), false, rtcs),
        (name("offers, our waits"), true, ours),
        (name("offers, rtc waits"), true, rtcs),
    ]
}

fn print_rows(browser: &str, n: usize, rows: Vec<(&str, (f64, f64, f64))>) {
    println!("setup with {browser}: answer applied -> our channel open, {n} connections each");
    println!(
        "{:<30} {:>10} {:>10} {:>10}",
        "case", "median ms", "min ms", "max ms"
    );
    for (name, (med, min, max)) in rows {
        println!("{name:<30} {med:>10.2} {min:>10.2} {max:>10.2}");
    }
}

/// Firefox rows, like the Chromium ones, all inside a loopback-only namespace.
fn firefox_rows(n: usize) {
    const PAGE: &str = include_str!("../../../tests/interop/page.html");
    firefox::find_firefox();
    let ns = firefox::LoopbackNetns::new();
    let netns = ns.name.clone();
    let rows = firefox::run_in(&ns, async move {
        let page = firefox::PageServer::start(PAGE).await.expect("page server");
        let browser = interop::step(
            "starting firefox",
            STEP,
            firefox::Firefox::start(&netns, STEP),
        )
        .await
        .expect("start firefox");
        interop::step("loading the page", STEP, browser.navigate(&page.url()))
            .await
            .expect("load the page");
        let mut rows = Vec::new();
        for (name, offer, settings) in cases("firefox") {
            let call = |f: &'static str, args| browser.call(f, args);
            let _ = browser_setup(call, offer, settings()).await; // warm-up
            let mut times = Vec::new();
            for _ in 0..n {
                times.push(browser_setup(call, offer, settings()).await);
            }
            rows.push((name, stats(times)));
        }
        rows
    });
    print_rows("firefox", n, rows);
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
    let mut rows = Vec::new();
    for (name, offer, settings) in cases("chromium") {
        let call = |f: &'static str, args| browser.call(f, args);
        let _ = browser_setup(call, offer, settings()).await; // warm-up
        let mut times = Vec::new();
        for _ in 0..n {
            times.push(browser_setup(call, offer, settings()).await);
        }
        rows.push((name, stats(times)));
    }
    browser.quit().await;
    print_rows("chromium", n, rows);
}

/// One connection with a browser on 127.0.0.1 (its page functions reached through `call`);
/// returns milliseconds from applying the answer (ours to the browser's offer, or the
/// browser's to ours) to our channel being open.
async fn browser_setup<F, Fut>(call: F, browser_offers: bool, settings: SettingEngine) -> f64
where
    F: Fn(&'static str, serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, String>>,
{
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
    if browser_offers {
        let offer = interop::step("the browser's offer", STEP, call("offer", json!([0])))
            .await
            .expect("offer");
        let offer = RTCSessionDescription::offer(no_candidates(offer.as_str().unwrap())).unwrap();
        pc.set_remote_description(offer).await.expect("srd");
        let answer = pc.create_answer().await.expect("answer");
        pc.set_local_description(answer).await.expect("sld");
        let answer = interop::local_sdp_after_gathering(&pc).await;
        started = Instant::now();
        interop::step(
            "the browser applying our answer",
            STEP,
            call("acceptAnswer", json!([answer])),
        )
        .await
        .expect("accept answer");
    } else {
        let offer = pc.create_offer().await.expect("offer");
        pc.set_local_description(offer).await.expect("sld");
        let offer = interop::local_sdp_after_gathering(&pc).await;
        let answer = interop::step(
            "the browser's answer",
            STEP,
            call("answer", json!([offer, 0])),
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
    let _ = call("close", json!([])).await;
    let _ = pc.close().await;
    ms
}

/// `sdp` without its candidate lines (see the module documentation).
fn no_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate:"))
        .collect()
}
