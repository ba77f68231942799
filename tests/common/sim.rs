//! Helpers for the tests on the simulation runtime (feature `runtime-sim`): virtual hosts,
//! signaling, bounds in virtual time and an event trace. No Tokio here: everything runs on
//! the simulation's executor.
//!
//! Included by the `sim_*` tests with `#[path = "common/sim.rs"] mod sim_common;`.
#![allow(dead_code)]

use std::{
    fmt::Write as _,
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use webrtc_streams::{
    DataChannel, PeerConnection, PeerConnectionEvent,
    rtc::{data_channel::RTCDataChannelInit, peer_connection::state::RTCPeerConnectionState},
    runtime::sim::{JoinHandle, SimHandle},
};

/// The offerer's virtual host.
pub const HOST_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
/// The answerer's virtual host.
pub const HOST_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Awaits `f`, failing the test if it takes more than `limit` of virtual time.
pub async fn within<F: Future>(sim: &SimHandle, what: &str, limit: Duration, f: F) -> F::Output {
    match sim.timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!(
            "{what}: not done after {limit:?} of virtual time (now {:?})",
            sim.elapsed()
        ),
    }
}

/// A connection with one socket on the virtual host `host`.
pub async fn peer(sim: &SimHandle, host: IpAddr) -> PeerConnection {
    PeerConnection::builder()
        .runtime(sim.runtime())
        .bind([SocketAddr::new(host, 0)])
        .build()
        .await
        .expect("build")
}

/// Offer/answer without trickle: each side waits for gathering and sends its full description.
pub async fn negotiate(offerer: &PeerConnection, answerer: &PeerConnection) {
    let offer = offerer.create_offer().await.expect("offer");
    offerer
        .set_local_description(offer)
        .await
        .expect("sld offer");
    offerer.gathering_complete().await.unwrap();
    let offer = offerer
        .local_description()
        .await
        .unwrap()
        .expect("local offer");
    answerer
        .set_remote_description(offer)
        .await
        .expect("srd offer");
    let answer = answerer.create_answer().await.expect("answer");
    answerer
        .set_local_description(answer)
        .await
        .expect("sld answer");
    answerer.gathering_complete().await.unwrap();
    let answer = answerer
        .local_description()
        .await
        .unwrap()
        .expect("local answer");
    offerer
        .set_remote_description(answer)
        .await
        .expect("srd answer");
}

/// Waits until `pc` reports `Connected`.
pub async fn connected(sim: &SimHandle, pc: &PeerConnection, limit: Duration) {
    let mut states = pc.connection_states();
    within(sim, "connected", limit, async {
        while let Some(s) = states.next().await {
            match s {
                RTCPeerConnectionState::Connected => return,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    panic!("connection ended: {s}")
                }
                _ => {}
            }
        }
        panic!("state stream ended")
    })
    .await
}

/// Two peers on [`HOST_A`] and [`HOST_B`] with one channel created by the first and received
/// by the second, open on both sides; fails if that takes more than `limit`.
pub async fn pair_with_channel(
    sim: &SimHandle,
    label: &str,
    init: RTCDataChannelInit,
    limit: Duration,
) -> (PeerConnection, PeerConnection, DataChannel, DataChannel) {
    let a = peer(sim, HOST_A).await;
    let b = peer(sim, HOST_B).await;
    let mut incoming = b.data_channels();
    let dc_a = a.create_data_channel(label, init).await.expect("create");
    negotiate(&a, &b).await;
    let dc_b = within(sim, "remote channel", limit, incoming.next())
        .await
        .expect("data channel stream ended");
    within(sim, "open a", limit, dc_a.opened())
        .await
        .expect("open a");
    within(sim, "open b", limit, dc_b.opened())
        .await
        .expect("open b");
    (a, b, dc_a, dc_b)
}

/// FNV-1a, to identify payloads in traces.
pub fn checksum(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// A log of what happened, each line stamped with the virtual time in nanoseconds.
#[derive(Clone)]
pub struct Trace {
    sim: SimHandle,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Trace {
    pub fn new(sim: &SimHandle) -> Self {
        Self {
            sim: sim.clone(),
            lines: Arc::default(),
        }
    }

    pub fn record(&self, who: &str, what: impl std::fmt::Display) {
        let line = format!("{:>14} {who} {what}", self.sim.elapsed().as_nanos());
        self.lines.lock().unwrap().push(line);
    }

    /// Records every event of `pc` until its event stream ends; the returned task completes
    /// then.
    pub fn watch(&self, who: &'static str, pc: &PeerConnection) -> JoinHandle<()> {
        let mut events = pc.events();
        let trace = self.clone();
        self.sim.spawn(async move {
            while let Some(ev) = events.next().await {
                let what = match ev {
                    // Candidates carry random credentials: record only their address part.
                    PeerConnectionEvent::IceCandidate(Some(c)) => {
                        let addr: Vec<&str> = c.candidate.split(' ').skip(4).take(2).collect();
                        format!("candidate {}", addr.join(":"))
                    }
                    PeerConnectionEvent::IceCandidate(None) => "end-of-candidates".to_owned(),
                    PeerConnectionEvent::DataChannel(dc) => format!("data-channel {}", dc.label()),
                    other => format!("{other:?}"),
                };
                trace.record(who, what);
            }
            trace.record(who, "events ended");
        })
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The whole trace as one string, for diffs in failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for l in self.lines.lock().unwrap().iter() {
            let _ = writeln!(s, "{l}");
        }
        s
    }
}
