//! The web-app examples, `axum-signaling` and `actix-signaling`, against headless Chromium
//! (driven over WebDriver, with a fake camera and microphone).
//!
//! Each test serves the example on an ephemeral loopback port and opens its page. The page
//! starts two sessions (two WebSockets, two peer connections) with trickle ICE both ways.
//! Then:
//! - chat: each session sends messages on its `chat` channel; both must receive every
//!   message of both senders, each sender's in order (the server broadcasts);
//! - media: each session's reflected video must be decoded (`framesDecoded`) and its audio
//!   received;
//! - signaling: both sides trickled candidates and their end; the server's throttled
//!   statistics reached the page and count the reflected packets.
//!
//! Missing `chromium` or `chromedriver` fails the tests with what to install
//! (`.ci/install-interop-deps`).
// Linux only: drives the Debian Chromium the CI installs.
#![cfg(target_os = "linux")]
// Both examples are compiled in whole, and each brings its own copy of
// `examples/common/signal.rs`, as a binary of its own does.
#![allow(clippy::duplicate_mod)]

mod interop;

#[allow(dead_code)]
#[path = "../examples/actix-signaling.rs"]
mod actix_signaling;
#[allow(dead_code)]
#[path = "../examples/axum-signaling.rs"]
mod axum_signaling;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use interop::{bounded, browser::Browser, step};
use serde_json::{Value, json};

/// Bound on one step: starting the browser, loading the page, connecting.
const STEP_LIMIT: Duration = Duration::from_secs(45);
/// Bound on chat messages and media arriving once connected.
const FLOW_LIMIT: Duration = Duration::from_secs(45);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Chat messages each session sends.
const MESSAGES: usize = 25;

/// Axum on a multi-threaded Tokio runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_signaling_example_chats_and_reflects_in_chromium() {
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0))
        .await
        .expect("bind the example's HTTP port");
    let addr = listener.local_addr().expect("the example's address");
    let server = tokio::spawn(axum_signaling::serve(listener, LOOPBACK));
    let outcome = in_browser(addr).await;
    server.abort();
    let report = outcome.unwrap_or_else(|e| panic!("axum-signaling: {e}"));
    eprintln!("axum-signaling: {report}");
}

/// Actix Web in its own system, two workers (each a current-thread Tokio runtime); the test
/// drives the browser from a runtime of its own.
#[test]
fn actix_signaling_example_chats_and_reflects_in_chromium() {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0)).expect("bind the example's port");
    let addr = listener.local_addr().expect("the example's address");
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let actix = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_signaling::server(listener, LOOPBACK, Some(2))
                .expect("the actix server starts");
            let _ = handle_tx.send(server.handle());
            server.await
        })
    });
    let handle = handle_rx
        .recv_timeout(STEP_LIMIT)
        .expect("the actix server started");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the test");
    let outcome = runtime.block_on(in_browser(addr));
    runtime.block_on(async {
        bounded("stopping actix", STEP_LIMIT, handle.stop(true))
            .await
            .expect("actix stops in time");
    });
    actix
        .join()
        .expect("the actix thread")
        .expect("the actix server ran");
    let report = outcome.unwrap_or_else(|e| panic!("actix-signaling: {e}"));
    eprintln!("actix-signaling: {report}");
}

/// Opens the page at `addr`, starts two sessions, chats and waits for the reflected media.
async fn in_browser(addr: SocketAddr) -> Result<Value, String> {
    let _ = env_logger::builder().is_test(true).try_init();
    let browser = bounded("starting chromium", STEP_LIMIT, Browser::start()).await??;
    let outcome = async {
        step(
            "loading the page",
            STEP_LIMIT,
            browser.navigate(&format!("http://{addr}/")),
        )
        .await?;
        let started = step(
            "two sessions connecting",
            STEP_LIMIT,
            browser.eval(
                "return [await demo.start(), await demo.start()];",
                json!([]),
            ),
        )
        .await?;
        if started != json!([0, 1]) {
            return Err(format!("sessions started: {started}"));
        }

        // Interleaved: 0 says a-0, 1 says b-0, 0 says a-1...
        step(
            "sending chat messages",
            STEP_LIMIT,
            browser.eval(
                "for (let k = 0; k < arguments[0]; k++) { \
                   demo.send(0, 'a-' + k); demo.send(1, 'b-' + k); \
                 } return true;",
                json!([MESSAGES]),
            ),
        )
        .await?;
        let mut received = Value::Null;
        let chat = bounded(
            "chat messages broadcast to both sessions",
            FLOW_LIMIT,
            async {
                loop {
                    received = browser
                        .eval("return [demo.received(0), demo.received(1)];", json!([]))
                        .await?;
                    let done = (0..2).all(|i| {
                        received[i]
                            .as_array()
                            .is_some_and(|m| m.len() >= 2 * MESSAGES)
                    });
                    if done {
                        return Ok::<_, String>(());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        )
        .await;
        match chat {
            Ok(r) => r?,
            Err(e) => return Err(format!("{e}; received: {received}")),
        }
        for i in 0..2 {
            check_chat(&received[i]).map_err(|e| format!("session {i}: {e}"))?;
        }

        let mut stats = Value::Null;
        let media = bounded("reflected media in both sessions", FLOW_LIMIT, async {
            loop {
                stats = browser
                    .eval(
                        "return [await demo.stats(0), await demo.stats(1)];",
                        json!([]),
                    )
                    .await?;
                if (0..2).all(|i| media_done(&stats[i])) {
                    return Ok::<_, String>(());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        match media {
            Ok(r) => r?,
            Err(e) => return Err(format!("{e}; last stats: {stats}")),
        }
        for i in 0..2 {
            check_signaling(&stats[i]).map_err(|e| format!("session {i}: {e}; {stats}"))?;
        }
        Ok(stats)
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

/// Every message of both senders, exactly once, each sender's in the order sent.
fn check_chat(received: &Value) -> Result<(), String> {
    let received: Vec<&str> = received
        .as_array()
        .ok_or("no message list")?
        .iter()
        .map(|m| m.as_str().unwrap_or("<not text>"))
        .collect();
    for sender in ["a", "b"] {
        let got: Vec<&str> = received
            .iter()
            .copied()
            .filter(|m| m.starts_with(&format!("{sender}-")))
            .collect();
        let want: Vec<String> = (0..MESSAGES).map(|k| format!("{sender}-{k}")).collect();
        if got != want {
            return Err(format!("from {sender}: got {got:?}"));
        }
    }
    if received.len() != 2 * MESSAGES {
        return Err(format!("unexpected messages: {received:?}"));
    }
    Ok(())
}

/// The reflected video decodes, the reflected audio arrives, and the server's statistics
/// (throttled to the page) count packets both ways.
fn media_done(stats: &Value) -> bool {
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    count(&stats["video"]["framesDecoded"]) >= 10
        && count(&stats["audio"]["packetsReceived"]) >= 10
        && count(&stats["server"]["rtpPacketsReceived"]) > 0
        && count(&stats["server"]["rtpPacketsSent"]) > 0
}

/// Trickle ICE happened both ways, with the end of candidates, and nothing failed.
fn check_signaling(stats: &Value) -> Result<(), String> {
    let errors = stats["errors"].as_array().map_or(0, Vec::len);
    if errors > 0 {
        return Err(format!("errors: {}", stats["errors"]));
    }
    if stats["connectionState"] != "connected" || stats["server"]["state"] != "connected" {
        return Err("not connected on both sides".into());
    }
    if stats["candidatesReceived"].as_u64().unwrap_or(0) == 0
        || stats["endOfCandidatesReceived"] != true
    {
        return Err("the server's candidates did not trickle to the page".into());
    }
    if stats["server"]["remoteCandidates"].as_u64().unwrap_or(0) == 0
        || stats["server"]["remoteCandidatesDone"] != true
    {
        return Err("the page's candidates did not trickle to the server".into());
    }
    Ok(())
}
