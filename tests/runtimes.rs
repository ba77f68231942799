//! The same integration suite on every built-in runtime: offer/answer, data-channel echo with
//! checksums, close and drop. Plus two connections on two different runtimes talking to each
//! other.
//!
//! The test bodies only use the library and `futures`; timeouts come from `async-io`'s timer,
//! which works under any executor. Each runtime runs the connection drivers; the body itself
//! is driven by that runtime's `block_on` (or, for embassy, a plain `futures` executor while
//! the drivers run on the embassy thread).

use std::{
    future::Future,
    net::{SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, future::Either};
use webrtc_streams::{PeerConnection, rtc::data_channel::RTCDataChannelInit, runtime::Runtime};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match futures::future::select(Box::pin(f), async_io::Timer::after(TIMEOUT)).await {
        Either::Left((v, _)) => v,
        Either::Right(_) => panic!("timed out: {what}"),
    }
}

async fn peer(rt: &Arc<dyn Runtime>, bind: SocketAddr) -> PeerConnection {
    PeerConnection::builder()
        .runtime(rt.clone())
        .bind([bind])
        .build()
        .await
        .expect("build")
}

async fn negotiate(a: &PeerConnection, b: &PeerConnection) {
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    a.gathering_complete().await.unwrap();
    b.set_remote_description(a.local_description().await.unwrap().unwrap())
        .await
        .unwrap();
    let answer = b.create_answer().await.unwrap();
    b.set_local_description(answer).await.unwrap();
    b.gathering_complete().await.unwrap();
    a.set_remote_description(b.local_description().await.unwrap().unwrap())
        .await
        .unwrap();
}

fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn free_port_addr() -> SocketAddr {
    UdpSocket::bind(loopback()).unwrap().local_addr().unwrap()
}

/// Offer/answer, then 1,000 messages echoed and verified (order, size, checksum), then close.
async fn echo_suite(rt_a: Arc<dyn Runtime>, rt_b: Arc<dyn Runtime>) {
    let a = peer(&rt_a, loopback()).await;
    let b = peer(&rt_b, loopback()).await;
    let mut incoming = b.data_channels();
    let dc_a = a
        .create_data_channel("echo", RTCDataChannelInit::default())
        .await
        .unwrap();
    within("negotiate", negotiate(&a, &b)).await;
    let dc_b = within("incoming", incoming.next()).await.unwrap();
    within("open", dc_a.opened()).await.unwrap();

    let echo = {
        let dc_b = dc_b.clone();
        async move {
            let mut msgs = dc_b.messages();
            for _ in 0..1000 {
                let m = msgs.next().await.expect("echo input ended");
                dc_b.send(m.data).await.unwrap();
            }
        }
    };
    let check = async {
        let mut replies = dc_a.messages();
        for i in 0..1000usize {
            let body: Vec<u8> = (0..(i * 37) % 4000).map(|j| (i ^ j) as u8).collect();
            let want = checksum(&body);
            dc_a.send(Bytes::from(body)).await.unwrap();
            let got = replies.next().await.expect("replies ended");
            assert_eq!(got.data.len(), (i * 37) % 4000, "size of {i}");
            assert_eq!(checksum(&got.data), want, "checksum of {i}");
        }
    };
    within("echo", futures::future::join(echo, check)).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    assert!(within("stream end", incoming.next()).await.is_none());
}

/// `close()` ends the streams and frees the port; dropping the last handle does the same.
async fn close_drop_suite(rt: Arc<dyn Runtime>) {
    let addr = free_port_addr();
    let pc = peer(&rt, addr).await;
    let mut events = pc.events();
    pc.close().await.unwrap();
    while within("events end", events.next()).await.is_some() {}
    UdpSocket::bind(addr).expect("port free after close");

    let addr = free_port_addr();
    let pc = peer(&rt, addr).await;
    let dc = pc
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    let mut states = pc.connection_states();
    drop(pc);
    drop(dc);
    while within("states end", states.next()).await.is_some() {}
    within("port released", async {
        while UdpSocket::bind(addr).is_err() {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
    })
    .await;
}

macro_rules! suite {
    ($module:ident, $runtime:expr, $block_on:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn offer_answer_echo() {
                let rt: Arc<dyn Runtime> = $runtime;
                $block_on(echo_suite(rt.clone(), rt));
            }

            #[test]
            fn close_and_drop() {
                let rt: Arc<dyn Runtime> = $runtime;
                $block_on(close_drop_suite(rt));
            }
        }
    };
}

#[cfg(feature = "runtime-tokio")]
fn tokio_block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[cfg(feature = "runtime-tokio")]
fn tokio_runtime() -> Arc<dyn Runtime> {
    // The driver tasks go to a runtime that lives as long as the test process.
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    });
    Arc::new(webrtc_streams::runtime::TokioRuntime::new(
        rt.handle().clone(),
    ))
}

#[cfg(feature = "runtime-tokio")]
suite!(tokio_rt, tokio_runtime(), tokio_block_on);

#[cfg(feature = "runtime-smol")]
suite!(
    smol_rt,
    Arc::new(webrtc_streams::runtime::SmolRuntime),
    smol::block_on
);

#[cfg(feature = "runtime-async-std")]
suite!(
    async_std_rt,
    Arc::new(webrtc_streams::runtime::AsyncStdRuntime),
    async_std::task::block_on
);

#[cfg(feature = "runtime-embassy")]
fn embassy_runtime() -> Arc<dyn Runtime> {
    static RT: std::sync::OnceLock<webrtc_streams::runtime::EmbassyRuntime> =
        std::sync::OnceLock::new();
    Arc::new(
        RT.get_or_init(|| webrtc_streams::runtime::EmbassyRuntime::start().unwrap())
            .clone(),
    )
}

#[cfg(feature = "runtime-embassy")]
suite!(embassy_rt, embassy_runtime(), futures::executor::block_on);

/// A connection on Tokio and one on smol, in one process, talk to each other.
#[cfg(all(feature = "runtime-tokio", feature = "runtime-smol"))]
#[test]
fn tokio_and_smol_interoperate() {
    smol::block_on(echo_suite(
        tokio_runtime(),
        Arc::new(webrtc_streams::runtime::SmolRuntime),
    ));
}

/// A connection on async-std and one on embassy, in one process, talk to each other.
#[cfg(all(feature = "runtime-async-std", feature = "runtime-embassy"))]
#[test]
fn async_std_and_embassy_interoperate() {
    futures::executor::block_on(echo_suite(
        Arc::new(webrtc_streams::runtime::AsyncStdRuntime),
        embassy_runtime(),
    ));
}
