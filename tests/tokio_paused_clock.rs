//! Under Tokio's paused test clock (`start_paused`), connections run on Tokio's virtual time:
//! the runtime's `now()` is the clock its timers use, so the driver neither spins on deadlines
//! its timers consider due nor waits for wall-clock time to catch up.
#![cfg(feature = "runtime-tokio")]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::{
    rtc::peer_connection::state::RTCPeerConnectionState,
    runtime::{Runtime, TokioRuntime},
};

#[tokio::test(start_paused = true)]
async fn runtime_now_follows_the_paused_clock() {
    let rt = TokioRuntime::current();
    let t0 = rt.now();
    tokio::time::advance(Duration::from_secs(10)).await;
    let elapsed = rt.now() - t0;
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(11),
        "runtime clock moved {elapsed:?} while Tokio's moved 10 s"
    );
}

/// A connected pair idles through a minute of consent checks on the paused clock, then still
/// exchanges a message. Before the fix the driver spun on the real clock for the whole minute.
#[tokio::test(start_paused = true)]
async fn idle_minute_on_the_paused_clock_takes_no_wall_time() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("paused", Default::default()).await;
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let spent = wall.elapsed();
    assert_eq!(a.connection_state(), RTCPeerConnectionState::Connected);
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);
    let mut rx = dc_b.messages();
    dc_a.send(Bytes::from_static(b"still here")).await.unwrap();
    let msg = within("message after the idle minute", rx.next())
        .await
        .unwrap();
    assert_eq!(&msg.data[..], b"still here");
    // Generous: the fixed driver needs milliseconds; the spinning one needed the full minute.
    assert!(
        spent < Duration::from_secs(30),
        "a minute of paused-clock idling took {spent:?} of wall time"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}
