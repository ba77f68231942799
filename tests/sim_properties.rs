//! Property-based protocol tests on the simulated network: for arbitrary messages and network
//! conditions (up to 20% loss, with delay, jitter, reordering, duplication and a bandwidth
//! limit), data channels keep their promises, connection states move only along legal
//! transitions, and `close()` ends every stream.
//!
//! The data-channel properties connect over the case's link without loss and duplication and
//! impair it once the channel is open: `rtc-dtls` 0.21.1 cannot recover from the loss of some
//! handshake flights (see `sim_dtls_handshake_loss.rs`), which would make many cases fail to
//! connect rather than test the channel. The state-machine property runs on the impaired link
//! from the start and accepts connections that never come up.
//!
//! Known upstream failure: with `rtc-sctp` 0.21.1 a reliable transfer can stall for good when
//! its last chunks (or their SACKs) are lost six times in a row (see
//! `sim_sctp_retransmission_stall.rs`). At up to 20% loss, a few cases in a thousand hit it.
//!
//! Cases per property: `PROPTEST_CASES` (default 16). The case generator is seeded with
//! `PROPTEST_RNG_SEED` (default [`DEFAULT_RNG_SEED`], so that a run is reproducible and the
//! suite does not flake on the upstream failure above); `PROPTEST_RNG_SEED=random` explores new
//! cases on every run. Failures are saved to `proptest-regressions/sim_properties.txt` and
//! replayed first on the next run.
#![cfg(feature = "runtime-sim")]

#[path = "common/sim.rs"]
mod sim_common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{StreamExt, stream::BoxStream};
use proptest::{
    prelude::*,
    test_runner::{Config as ProptestConfig, FileFailurePersistence, RngSeed},
};
use sim_common::*;
use webrtc_streams::{
    DataChannel, DataChannelMessage, EventStream, PeerConnection,
    rtc::{
        data_channel::{RTCDataChannelInit, RTCDataChannelState},
        peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState},
    },
    runtime::sim::{LinkConfig, SimHandle, SimRuntime},
};

/// Virtual time for connecting and opening the channel on a bad network.
const SETUP: Duration = Duration::from_secs(300);
/// Virtual time for a transfer.
const TRANSFER: Duration = Duration::from_secs(1200);
/// Virtual time for streams to end after close.
const CLOSE: Duration = Duration::from_secs(5);
/// Virtual time after which a case is considered stuck.
const HORIZON: Duration = Duration::from_secs(3600);

/// The case generator's seed unless `PROPTEST_RNG_SEED` says otherwise.
const DEFAULT_RNG_SEED: u64 = 20_251_125;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let rng_seed = match std::env::var("PROPTEST_RNG_SEED").as_deref() {
        Err(_) => RngSeed::Fixed(DEFAULT_RNG_SEED),
        Ok("random") => RngSeed::Random,
        Ok(_) => ProptestConfig::default().rng_seed, // proptest parses it
    };
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/sim_properties.txt"
        )))),
        rng_seed,
        ..ProptestConfig::with_cases(cases)
    }
}

// ---- inputs -------------------------------------------------------------------------------

/// Network conditions: up to 20% loss, up to 50 ms delay with up to 20 ms jitter, up to 10%
/// reordering (held back up to 50 ms), up to 5% duplication, and half of the time a bandwidth
/// limit between 200 kB/s and 20 MB/s with a 256 KiB queue.
fn link() -> impl Strategy<Value = LinkConfig> {
    (
        0.0..=0.2f64,
        0u64..=50,
        0u64..=20,
        (0.0..=0.1f64, 1u64..=50),
        0.0..=0.05f64,
        prop::option::of(200_000u64..=20_000_000),
    )
        .prop_map(|(loss, delay, jitter, (reorder, held), dup, bandwidth)| {
            let ms = Duration::from_millis;
            let mut l = LinkConfig::new()
                .loss(loss)
                .delay(ms(delay))
                .jitter(ms(jitter))
                .reorder(reorder, ms(held))
                .duplicate(dup);
            if let Some(bw) = bandwidth {
                l = l.bandwidth(bw).queue_limit(256 * 1024);
            }
            l
        })
}

/// Up to 40 messages of up to 16 KiB, each text or binary.
fn messages() -> impl Strategy<Value = Vec<(usize, bool)>> {
    prop::collection::vec((0usize..=16 * 1024, any::<bool>()), 1..=40)
}

/// Message `i` of `len` bytes (at least 12): index, body, checksum of index and body. Text
/// messages are ASCII.
fn payload(seed: u64, i: usize, len: usize, text: bool) -> Bytes {
    let len = len.max(12);
    let mut m = BytesMut::with_capacity(len);
    if text {
        m.put_slice(format!("{i:08}").as_bytes());
    } else {
        m.put_u64(i as u64);
    }
    let mut x = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    while m.len() < len - 4 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let b = (x >> 56) as u8;
        m.put_u8(if text { b'a' + b % 26 } else { b });
    }
    let sum = checksum(&m);
    if text {
        m.put_slice(format!("{:04x}", sum & 0xffff).as_bytes());
    } else {
        m.put_u32(sum);
    }
    m.freeze()
}

fn expected(seed: u64, msgs: &[(usize, bool)]) -> Vec<DataChannelMessage> {
    msgs.iter()
        .enumerate()
        .map(|(i, &(len, text))| DataChannelMessage {
            is_string: text,
            data: payload(seed, i, len, text),
        })
        .collect()
}

/// The index a received message claims to be.
fn index_of(m: &DataChannelMessage) -> Option<usize> {
    if m.data.len() < 8 {
        return None;
    }
    if m.is_string {
        std::str::from_utf8(&m.data[..8]).ok()?.parse().ok()
    } else {
        usize::try_from(u64::from_be_bytes(m.data[..8].try_into().ok()?)).ok()
    }
}

// ---- connection-state legality ------------------------------------------------------------

/// Legal moves of `RTCPeerConnectionState` (W3C webrtc-pc §4.4.3), without ICE restarts:
/// the aggregate of the ICE and DTLS transport states, where `failed` is terminal until an
/// ICE restart and `closed` is terminal.
fn legal_connection(from: RTCPeerConnectionState, to: RTCPeerConnectionState) -> bool {
    use RTCPeerConnectionState::*;
    matches!(
        (from, to),
        (New, Connecting | Closed)
            | (Connecting, Connected | Disconnected | Failed | Closed)
            | (Connected, Disconnected | Failed | Closed)
            | (Disconnected, Connected | Connecting | Failed | Closed)
            | (Failed, Closed)
    )
}

/// Legal moves of `RTCIceConnectionState` (W3C webrtc-pc §4.4.4, RTCIceTransportState),
/// without ICE restarts.
fn legal_ice(from: RTCIceConnectionState, to: RTCIceConnectionState) -> bool {
    use RTCIceConnectionState::*;
    matches!(
        (from, to),
        (New, Checking | Closed)
            | (
                Checking,
                Connected | Completed | Disconnected | Failed | Closed
            )
            | (Connected, Completed | Disconnected | Failed | Closed)
            | (Completed, Connected | Disconnected | Failed | Closed)
            | (
                Disconnected,
                Connected | Completed | Checking | Failed | Closed
            )
            | (Failed, Closed)
    )
}

/// Every connection and ICE state each peer went through, from its first state on.
#[derive(Clone, Default)]
struct StateLog {
    connection: Arc<Mutex<BTreeMap<&'static str, Vec<RTCPeerConnectionState>>>>,
    ice: Arc<Mutex<BTreeMap<&'static str, Vec<RTCIceConnectionState>>>>,
}

impl StateLog {
    fn watch(&self, sim: &SimHandle, who: &'static str, pc: &PeerConnection) {
        let (mut conn, mut ice) = (pc.connection_states(), pc.ice_connection_states());
        let log = self.connection.clone();
        drop(sim.spawn(async move {
            while let Some(s) = conn.next().await {
                log.lock().unwrap().entry(who).or_default().push(s);
            }
        }));
        let log = self.ice.clone();
        drop(sim.spawn(async move {
            while let Some(s) = ice.next().await {
                log.lock().unwrap().entry(who).or_default().push(s);
            }
        }));
    }

    /// Checks every recorded path: it starts at `New`, moves only along legal transitions and
    /// ends `Closed` (the peers are closed at the end of each case).
    fn check(&self) -> Result<(), TestCaseError> {
        for (who, path) in self.connection.lock().unwrap().iter() {
            check_path(
                who,
                "connection",
                path,
                legal_connection,
                |s| *s == RTCPeerConnectionState::New,
                |s| *s == RTCPeerConnectionState::Closed,
            )?;
        }
        for (who, path) in self.ice.lock().unwrap().iter() {
            check_path(
                who,
                "ICE",
                path,
                legal_ice,
                |s| *s == RTCIceConnectionState::New,
                |s| *s == RTCIceConnectionState::Closed,
            )?;
        }
        Ok(())
    }
}

fn check_path<S: Copy + std::fmt::Debug>(
    who: &str,
    kind: &str,
    path: &[S],
    legal: fn(S, S) -> bool,
    is_first: impl Fn(&S) -> bool,
    is_last: impl Fn(&S) -> bool,
) -> Result<(), TestCaseError> {
    prop_assert!(
        path.first().is_some_and(&is_first),
        "{who}: {kind} states start wrong: {path:?}"
    );
    prop_assert!(
        path.last().is_some_and(&is_last),
        "{who}: {kind} states end wrong: {path:?}"
    );
    for w in path.windows(2) {
        prop_assert!(
            legal(w[0], w[1]),
            "{who}: illegal {kind} transition {:?} -> {:?} in {path:?}",
            w[0],
            w[1]
        );
    }
    Ok(())
}

// ---- harness ------------------------------------------------------------------------------

/// One simulated case: two peers on `link`, their states logged.
struct Case {
    sim: SimRuntime,
    link: LinkConfig,
    states: StateLog,
}

impl Case {
    fn new(seed: u64, link: LinkConfig) -> Self {
        let sim = SimRuntime::new(seed).with_horizon(HORIZON);
        sim.set_default_link(link.clone());
        Self {
            sim,
            link,
            states: StateLog::default(),
        }
    }

    /// Connects two peers with one channel `init` (created by `a`), open on both sides, over
    /// the case's link without loss and duplication; then impairs the link fully.
    async fn connect(
        &self,
        init: RTCDataChannelInit,
    ) -> (PeerConnection, PeerConnection, DataChannel, DataChannel) {
        let h = self.sim.handle();
        h.set_default_link(self.link.clone().loss(0.0).duplicate(0.0));
        let (a, b, dc_a, mut incoming) = self.start(init).await;
        let dc_b = within(h, "remote channel", SETUP, incoming.next())
            .await
            .expect("data channel stream ended");
        within(h, "open a", SETUP, dc_a.opened())
            .await
            .expect("open a");
        within(h, "open b", SETUP, dc_b.opened())
            .await
            .expect("open b");
        h.set_default_link(self.link.clone());
        (a, b, dc_a, dc_b)
    }

    /// Creates two peers with state watchers and a channel on `a`, and negotiates; returns
    /// `b`'s stream of incoming channels.
    async fn start(
        &self,
        init: RTCDataChannelInit,
    ) -> (
        PeerConnection,
        PeerConnection,
        DataChannel,
        EventStream<DataChannel>,
    ) {
        let h = self.sim.handle();
        let a = peer(h, HOST_A).await;
        let b = peer(h, HOST_B).await;
        self.states.watch(h, "a", &a);
        self.states.watch(h, "b", &b);
        let incoming = b.data_channels();
        let dc_a = a.create_data_channel("prop", init).await.expect("create");
        negotiate(&a, &b).await;
        (a, b, dc_a, incoming)
    }

    /// Sends `msgs` from `dc_a` (in a task) while `b` reads `count` messages; returns them.
    async fn transfer(
        &self,
        dc_a: &DataChannel,
        dc_b: &DataChannel,
        sent: &[DataChannelMessage],
        count: usize,
    ) -> Vec<DataChannelMessage> {
        let h = self.sim.handle();
        let sender = {
            let (dc, sent) = (dc_a.clone(), sent.to_vec());
            h.spawn(async move {
                for m in sent {
                    let r = if m.is_string {
                        dc.send_text(String::from_utf8(m.data.to_vec()).unwrap())
                            .await
                    } else {
                        dc.send(m.data).await
                    };
                    r.expect("send");
                }
            })
        };
        let mut msgs = dc_b.messages();
        let mut got = Vec::with_capacity(count);
        let read = async {
            while got.len() < count {
                match msgs.next().await {
                    Some(m) => got.push(m),
                    None => break,
                }
            }
        };
        if h.timeout(TRANSFER, read).await.is_err() {
            panic!(
                "transfer stalled: {} of {count} messages after {:?}, sender buffered {} bytes, \
                 network {:?} (a buffered amount stuck above 0 with no progress is the rtc-sctp \
                 0.21.1 T3-rtx give-up: see sim_sctp_retransmission_stall.rs)",
                got.len(),
                h.elapsed(),
                dc_a.buffered_amount(),
                h.network_stats()
            );
        }
        within(h, "sender", TRANSFER, sender).await;
        got
    }

    /// Closes both peers and checks that their state paths were legal.
    async fn close(&self, a: &PeerConnection, b: &PeerConnection) {
        within(self.sim.handle(), "close a", CLOSE, a.close())
            .await
            .unwrap();
        within(self.sim.handle(), "close b", CLOSE, b.close())
            .await
            .unwrap();
        // Let the state watchers read the final states.
        self.sim.sleep(Duration::from_millis(1)).await;
    }
}

/// Every stream of `pc` and of its channel `dc`, as streams of nothing.
fn all_streams(
    pc: &PeerConnection,
    dc: &DataChannel,
) -> Vec<(&'static str, BoxStream<'static, ()>)> {
    fn unit<S: futures::Stream + Send + 'static>(s: S) -> BoxStream<'static, ()> {
        s.map(|_| ()).boxed()
    }
    vec![
        ("events", unit(pc.events())),
        ("ice_candidates", unit(pc.ice_candidates())),
        ("connection_states", unit(pc.connection_states())),
        ("signaling_states", unit(pc.signaling_states())),
        ("ice_connection_states", unit(pc.ice_connection_states())),
        ("ice_gathering_states", unit(pc.ice_gathering_states())),
        ("data_channels", unit(pc.data_channels())),
        ("negotiation_needed", unit(pc.negotiation_needed())),
        ("channel messages", unit(dc.messages())),
        ("channel events", unit(dc.events())),
        ("channel ready_states", unit(dc.ready_states())),
    ]
}

/// Fails unless every stream ends within [`CLOSE`] of virtual time.
async fn all_end(sim: &SimHandle, who: &str, streams: Vec<(&'static str, BoxStream<'static, ()>)>) {
    for (name, s) in streams {
        let what = format!("{who}: {name} ends after close");
        within(sim, &what, CLOSE, s.for_each(|()| async {})).await;
    }
}

// ---- properties ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// (1) A reliable ordered channel delivers every message exactly once, in order, intact.
    #[test]
    fn reliable_ordered_delivers_everything_in_order(
        seed in any::<u64>(),
        link in link(),
        msgs in messages(),
    ) {
        let case = Case::new(seed, link);
        let sent = expected(seed, &msgs);
        let got = case.sim.block_on(async {
            let (a, b, dc_a, dc_b) = case.connect(Default::default()).await;
            let got = case.transfer(&dc_a, &dc_b, &sent, sent.len()).await;
            case.close(&a, &b).await;
            got
        });
        prop_assert_eq!(got.len(), sent.len());
        for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
            prop_assert!(g == s, "message {} differs: got index {:?}, {:?}", i, index_of(g), g);
        }
        case.states.check()?;
    }

    /// (2) A reliable unordered channel delivers every message exactly once, intact.
    #[test]
    fn reliable_unordered_delivers_everything_once(
        seed in any::<u64>(),
        link in link(),
        msgs in messages(),
    ) {
        let case = Case::new(seed, link);
        let sent = expected(seed, &msgs);
        let init = RTCDataChannelInit { ordered: false, ..Default::default() };
        let got = case.sim.block_on(async {
            let (a, b, dc_a, dc_b) = case.connect(init).await;
            let got = case.transfer(&dc_a, &dc_b, &sent, sent.len()).await;
            case.close(&a, &b).await;
            got
        });
        let mut seen = vec![0u32; sent.len()];
        for g in &got {
            let i = index_of(g).filter(|&i| i < sent.len());
            prop_assert!(i.is_some(), "unknown message {:?}", g);
            let i = i.unwrap();
            prop_assert!(*g == sent[i], "message {} corrupted", i);
            seen[i] += 1;
        }
        prop_assert!(seen.iter().all(|&n| n == 1), "delivery counts {:?}", seen);
        case.states.check()?;
    }

    /// (3) An unreliable channel (unordered, no retransmissions) may lose messages but never
    /// duplicates or corrupts one.
    #[test]
    fn unreliable_never_duplicates_or_corrupts(
        seed in any::<u64>(),
        link in link(),
        msgs in messages(),
    ) {
        let case = Case::new(seed, link);
        let sent = expected(seed, &msgs);
        let init = RTCDataChannelInit {
            ordered: false,
            max_retransmits: Some(0),
            ..Default::default()
        };
        let got = case.sim.block_on(async {
            let h = case.sim.handle();
            let (a, b, dc_a, dc_b) = case.connect(init).await;
            let mut msgs = dc_b.messages();
            for m in &sent {
                let r = if m.is_string {
                    dc_a.send_text(String::from_utf8(m.data.to_vec()).unwrap()).await
                } else {
                    dc_a.send(m.data.clone()).await
                };
                r.expect("send");
            }
            // Whatever is coming arrives within a few seconds (the path delay is < 150 ms).
            let mut got = Vec::new();
            let _ = h.timeout(Duration::from_secs(10), async {
                while let Some(m) = msgs.next().await {
                    got.push(m);
                }
            }).await;
            case.close(&a, &b).await;
            got
        });
        let mut seen = vec![0u32; sent.len()];
        for g in &got {
            let i = index_of(g).filter(|&i| i < sent.len());
            prop_assert!(i.is_some(), "unknown message {:?}", g);
            let i = i.unwrap();
            prop_assert!(*g == sent[i], "message {} corrupted", i);
            seen[i] += 1;
        }
        prop_assert!(seen.iter().all(|&n| n <= 1), "delivery counts {:?}", seen);
        case.states.check()?;
    }

    /// (4) Connection and ICE states move only along legal transitions, also through an
    /// outage of up to 45 s (long enough for `Disconnected` and `Failed`) and its end.
    #[test]
    fn states_move_only_along_legal_transitions(
        seed in any::<u64>(),
        link in link(),
        idle_before in 0u64..=5_000,
        outage in prop::option::of(0u64..=45_000),
        idle_after in 0u64..=40_000,
    ) {
        let case = Case::new(seed, link.clone());
        case.sim.block_on(async {
            let h = case.sim.handle();
            // On the impaired link from the start: the connection may never come up.
            let (a, b, dc_a, mut incoming) = case.start(Default::default()).await;
            let dc_b = h.timeout(Duration::from_secs(60), incoming.next()).await.ok().flatten();
            let ms = Duration::from_millis;
            h.sleep(ms(idle_before)).await;
            if let Some(outage) = outage {
                h.set_path(HOST_A, HOST_B, LinkConfig::cut());
                h.sleep(ms(outage)).await;
                h.set_path(HOST_A, HOST_B, link);
            }
            // Traffic after the outage, if the channel is (still) open.
            for dc in [Some(&dc_a), dc_b.as_ref()].into_iter().flatten() {
                if dc.ready_state() == RTCDataChannelState::Open {
                    let _ = h.timeout(ms(100), dc.send(Bytes::from_static(b"after"))).await;
                }
            }
            h.sleep(ms(idle_after)).await;
            case.close(&a, &b).await;
        });
        case.states.check()?;
    }

    /// (5) `close()` ends every stream of the connection and its channels, whenever it is
    /// called (before, during or after a transfer) and in either order.
    #[test]
    fn close_ends_every_stream(
        seed in any::<u64>(),
        link in link(),
        msgs in messages(),
        close_after in 0u64..=3_000,
        b_first in any::<bool>(),
    ) {
        let case = Case::new(seed, link);
        let sent = expected(seed, &msgs);
        case.sim.block_on(async {
            let h = case.sim.handle();
            let (a, b, dc_a, dc_b) = case.connect(Default::default()).await;
            let (streams_a, streams_b) = (all_streams(&a, &dc_a), all_streams(&b, &dc_b));
            // A transfer in both directions, cut short by the close.
            for (dc, sent) in [(dc_a.clone(), sent.clone()), (dc_b.clone(), sent.clone())] {
                drop(h.spawn(async move {
                    for m in sent {
                        if dc.send(m.data).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            h.sleep(Duration::from_millis(close_after)).await;
            let (first, second, s1, s2) = if b_first {
                (&b, &a, streams_b, streams_a)
            } else {
                (&a, &b, streams_a, streams_b)
            };
            within(h, "first close", CLOSE, first.close()).await.unwrap();
            all_end(h, "first", s1).await;
            // Streams subscribed after the close end too.
            let (dc1, dc2) = if b_first { (&dc_b, &dc_a) } else { (&dc_a, &dc_b) };
            all_end(h, "first, late subscriber", all_streams(first, dc1)).await;
            within(h, "second close", CLOSE, second.close()).await.unwrap();
            all_end(h, "second", s2).await;
            all_end(h, "second, late subscriber", all_streams(second, dc2)).await;
        });
    }
}
