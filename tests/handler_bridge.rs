//! The handler bridge: callbacks in order, a slow handler stalls nothing, callbacks may call
//! back into the connection, and the handler is dropped when the connection ends; attached
//! to a running connection with `HandlerBridge`, it sees what happens from then on, in
//! order, until it is detached.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use webrtc_streams::{
    DataChannel, DataChannelMessage, Error, HandlerBridge, PeerConnection, PeerConnectionEvent,
    PeerConnectionEventHandler, WeakPeerConnection,
    rtc::peer_connection::{
        sdp::RTCSessionDescription,
        state::{
            RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
        },
        transport::RTCIceCandidateInit,
    },
};

// ---- helpers ------------------------------------------------------------------------------

/// What the handlers saw, shared with the test; the test can wait for an entry.
#[derive(Clone)]
struct Log(Arc<watch::Sender<Vec<String>>>);

impl Log {
    fn new() -> Self {
        Self(Arc::new(watch::channel(Vec::new()).0))
    }

    fn push(&self, entry: impl Into<String>) {
        let entry = entry.into();
        self.0.send_modify(|v| v.push(entry));
    }

    fn entries(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    async fn wait_until(&self, what: &str, mut f: impl FnMut(&[String]) -> bool) {
        let mut rx = self.0.subscribe();
        let _ = within(what, rx.wait_for(|v| f(v)))
            .await
            .expect("the test holds the sender");
    }

    async fn wait_for(&self, entry: &str) {
        self.wait_until(entry, |v| v.iter().any(|e| e == entry))
            .await
    }

    /// Position of `entry`; fails the test if it is missing.
    fn pos(entries: &[String], entry: &str) -> usize {
        entries
            .iter()
            .position(|e| e == entry)
            .unwrap_or_else(|| panic!("{entry:?} missing from {entries:?}"))
    }
}

/// The log entry of a connection event, as [`Recorder`] writes it.
fn connection_entry(ev: &PeerConnectionEvent) -> String {
    match ev {
        PeerConnectionEvent::IceCandidate(Some(_)) => "cand".into(),
        PeerConnectionEvent::IceCandidate(None) => "cand:end".into(),
        PeerConnectionEvent::ConnectionStateChange(s) => format!("conn:{s:?}"),
        PeerConnectionEvent::SignalingStateChange(s) => format!("sig:{s:?}"),
        PeerConnectionEvent::IceConnectionStateChange(s) => format!("ice:{s:?}"),
        PeerConnectionEvent::IceGatheringStateChange(s) => format!("gather:{s:?}"),
        PeerConnectionEvent::NegotiationNeeded => "negotiation".into(),
        PeerConnectionEvent::DataChannel(dc) => format!("dc:{}", dc.label()),
        PeerConnectionEvent::Lagged { missed } => format!("lagged:{missed}"),
        other => panic!("unexpected event {other:?}"),
    }
}

fn is_connection_entry(e: &str) -> bool {
    [
        "cand",
        "conn:",
        "sig:",
        "ice:",
        "gather:",
        "negotiation",
        "dc:",
        "lagged:",
    ]
    .iter()
    .any(|p| e.starts_with(p))
}

/// Records every callback into a [`Log`]; counts its drop. With a gate, its first callback
/// waits until the gate opens.
struct Recorder {
    log: Log,
    drops: Arc<AtomicUsize>,
    gate: Option<oneshot::Receiver<()>>,
}

impl Recorder {
    fn new(log: &Log, drops: &Arc<AtomicUsize>) -> Self {
        Self {
            log: log.clone(),
            drops: drops.clone(),
            gate: None,
        }
    }

    async fn record(&mut self, entry: String) {
        if let Some(gate) = self.gate.take() {
            let _ = gate.await;
        }
        self.log.push(entry);
    }
}

impl PeerConnectionEventHandler for Recorder {
    async fn on_connection_state_change(&mut self, state: RTCPeerConnectionState) {
        self.record(format!("conn:{state:?}")).await
    }

    async fn on_signaling_state_change(&mut self, state: RTCSignalingState) {
        self.record(format!("sig:{state:?}")).await
    }

    async fn on_ice_connection_state_change(&mut self, state: RTCIceConnectionState) {
        self.record(format!("ice:{state:?}")).await
    }

    async fn on_ice_gathering_state_change(&mut self, state: RTCIceGatheringState) {
        self.record(format!("gather:{state:?}")).await
    }

    async fn on_ice_candidate(&mut self, candidate: Option<RTCIceCandidateInit>) {
        let entry = if candidate.is_some() {
            "cand"
        } else {
            "cand:end"
        };
        self.record(entry.into()).await
    }

    async fn on_negotiation_needed(&mut self) {
        self.record("negotiation".into()).await
    }

    async fn on_data_channel(&mut self, dc: DataChannel) {
        self.record(format!("dc:{}", dc.label())).await
    }

    async fn on_data_channel_open(&mut self, dc: &DataChannel) {
        self.record(format!("open:{}", dc.label())).await
    }

    async fn on_message(&mut self, dc: &DataChannel, msg: DataChannelMessage) {
        let text = msg.text().unwrap_or("<binary>").to_owned();
        self.record(format!("msg:{}:{text}", dc.label())).await
    }

    async fn on_data_channel_close(&mut self, dc: &DataChannel) {
        self.record(format!("close:{}", dc.label())).await
    }

    async fn on_buffered_amount_low(&mut self, dc: &DataChannel) {
        self.record(format!("low:{}", dc.label())).await
    }

    async fn on_lagged(&mut self, missed: u64) {
        self.record(format!("lagged:{missed}")).await
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        self.log.push("dropped");
    }
}

/// A loopback connection with `handler`.
async fn loopback_peer_with(handler: impl PeerConnectionEventHandler) -> PeerConnection {
    PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .handler(handler)
        .build()
        .await
        .expect("build")
}

/// Fails unless `states` (the connection states after `New`) is a legal W3C sequence.
fn assert_legal_connection_states(states: &[&str]) {
    let mut prev = "New";
    for &s in states {
        let legal = matches!(
            (prev, s),
            (_, "Closed")
                | ("New", "Connecting")
                | ("Connecting", "Connected" | "Failed" | "Disconnected")
                | ("Connected", "Disconnected" | "Failed")
                | ("Disconnected", "Connecting" | "Connected" | "Failed")
                | ("Failed", "Connecting")
        ) && prev != "Closed";
        assert!(legal, "illegal transition {prev} -> {s} in {states:?}");
        prev = s;
    }
}

/// The entries of `entries` starting with `prefix`, without it.
fn with_prefix<'a>(entries: &'a [String], prefix: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter_map(|e| e.strip_prefix(prefix))
        .collect()
}

// ---- tests --------------------------------------------------------------------------------

/// The handler sees the connection's events in the order the event stream has them, and each
/// channel's open, then its messages in order, then its close; for a remote and a local
/// channel. Runs on a multi-thread runtime: the bridge is `Send`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_arrive_in_order() {
    init_log();
    const N: usize = 500;
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let a = loopback_peer().await;
    let b = loopback_peer_with(Recorder::new(&log, &drops)).await;
    let mut events_b = b.events();

    let dc_a = a
        .create_data_channel("chat", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    log.wait_for("open:chat").await;

    // A channel the handler's side creates gets callbacks too.
    let mut incoming_a = a.data_channels();
    let local_b = b
        .create_data_channel("local", Default::default())
        .await
        .unwrap();
    let local_a = within("local channel at a", incoming_a.next())
        .await
        .unwrap();
    within("local open", local_a.opened()).await.unwrap();
    for i in 0..10 {
        local_a.send_text(format!("l{i}")).await.unwrap();
    }

    for i in 0..N {
        within("send", dc_a.send_text(i.to_string())).await.unwrap();
    }
    within("close chat", dc_a.close()).await.unwrap();
    log.wait_for("close:chat").await;
    log.wait_for("msg:local:l9").await;

    within("close a", a.close()).await.unwrap();
    within("close b", b.close()).await.unwrap();
    log.wait_for("dropped").await;
    drop(local_b);
    let entries = log.entries();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(entries.last().map(String::as_str), Some("dropped"));

    // Connection events: exactly what the event stream saw, in the same order.
    let mut seen = Vec::new();
    while let Some(ev) = within("events end", events_b.next()).await {
        seen.push(connection_entry(&ev));
    }
    let bridged: Vec<String> = entries
        .iter()
        .filter(|e| is_connection_entry(e))
        .cloned()
        .collect();
    assert_eq!(bridged, seen);
    let states = with_prefix(&entries, "conn:");
    assert_legal_connection_states(&states);
    assert!(states.contains(&"Connected"), "{states:?}");
    assert_eq!(states.last(), Some(&"Closed"));

    // The remote channel: announced, open, every message in order, close.
    let dc = Log::pos(&entries, "dc:chat");
    let open = Log::pos(&entries, "open:chat");
    let first = Log::pos(&entries, "msg:chat:0");
    let last = Log::pos(&entries, &format!("msg:chat:{}", N - 1));
    let close = Log::pos(&entries, "close:chat");
    assert!(dc < open && open < first && first < last && last < close);
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(with_prefix(&entries, "msg:chat:"), expected);

    // The local channel: no `on_data_channel`, but open, messages, close.
    assert!(!entries.iter().any(|e| e == "dc:local"));
    let open = Log::pos(&entries, "open:local");
    let first = Log::pos(&entries, "msg:local:l0");
    let close = Log::pos(&entries, "close:local");
    assert!(open < first && first < close);
    let expected: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
    assert_eq!(with_prefix(&entries, "msg:local:"), expected);
}

/// Sleeps 2 s in its first `on_message` of channel "slow".
struct Sleepy {
    log: Log,
    sleeping: Arc<AtomicBool>,
    slept: bool,
}

impl PeerConnectionEventHandler for Sleepy {
    async fn on_data_channel_open(&mut self, dc: &DataChannel) {
        self.log.push(format!("open:{}", dc.label()));
    }

    async fn on_message(&mut self, dc: &DataChannel, msg: DataChannelMessage) {
        self.log
            .push(format!("msg:{}:{}", dc.label(), msg.text().unwrap_or("")));
        if dc.label() == "slow" && !self.slept {
            self.slept = true;
            self.sleeping.store(true, Ordering::SeqCst);
            self.log.push("sleep");
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.sleeping.store(false, Ordering::SeqCst);
            self.log.push("awake");
        }
    }
}

/// While the handler sleeps 2 s in `on_message`, the connection keeps working: a new channel
/// opens (DCEP round trip through the sleeping side's driver), the test's own subscriber on
/// that side receives it, and messages flow from that side. The messages that arrived for the
/// sleeping handler are then all delivered, in order.
#[tokio::test]
async fn slow_handler_does_not_stall_the_connection() {
    init_log();
    let log = Log::new();
    let sleeping = Arc::new(AtomicBool::new(false));
    let a = loopback_peer().await;
    let b = loopback_peer_with(Sleepy {
        log: log.clone(),
        sleeping: sleeping.clone(),
        slept: false,
    })
    .await;
    let slow_a = a
        .create_data_channel("slow", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    log.wait_for("open:slow").await;
    // Another subscriber on the handler's side, for the channel opened during the sleep.
    let mut incoming_b = b.data_channels();

    slow_a.send_text("m0").await.unwrap();
    log.wait_for("sleep").await;
    let asleep_at = Instant::now();
    for i in 1..=100 {
        slow_a.send_text(format!("m{i}")).await.unwrap();
    }

    // The handler sleeps; the connection does not.
    let during_a = a
        .create_data_channel("during", Default::default())
        .await
        .unwrap();
    let during_b = within("other subscriber", incoming_b.next()).await.unwrap();
    within("opened while the handler sleeps", during_a.opened())
        .await
        .unwrap();
    let mut from_b = during_a.messages();
    for i in 0..100 {
        during_b.send_text(format!("d{i}")).await.unwrap();
    }
    for i in 0..100 {
        let m = within("message from b", from_b.next()).await.unwrap();
        assert_eq!(m.text(), Some(format!("d{i}").as_str()));
    }
    assert!(
        sleeping.load(Ordering::SeqCst),
        "all of this should fit in the handler's 2 s sleep; took {:?}",
        asleep_at.elapsed()
    );
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);

    // After the sleep, the handler gets everything, in order.
    log.wait_for("msg:slow:m100").await;
    log.wait_for("open:during").await;
    let entries = log.entries();
    assert!(asleep_at.elapsed() >= Duration::from_millis(1900));
    let expected: Vec<String> = (0..=100).map(|i| format!("m{i}")).collect();
    assert_eq!(with_prefix(&entries, "msg:slow:"), expected);
    let awake = Log::pos(&entries, "awake");
    assert!(Log::pos(&entries, "msg:slow:m0") < awake);
    assert!(awake < Log::pos(&entries, "msg:slow:m1"));
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);

    within("close a", a.close()).await.unwrap();
    within("close b", b.close()).await.unwrap();
}

/// The answering side, entirely in callbacks: answers the offer, trickles its candidates to
/// the offerer, replies on the channel the offerer opened, and closes its own connection
/// from inside `on_message`.
struct Answerer {
    pc: WeakPeerConnection,
    offerer: PeerConnection,
    answers: mpsc::UnboundedSender<RTCSessionDescription>,
    log: Log,
    drops: Arc<AtomicUsize>,
}

impl PeerConnectionEventHandler for Answerer {
    async fn on_signaling_state_change(&mut self, state: RTCSignalingState) {
        if state != RTCSignalingState::HaveRemoteOffer {
            return;
        }
        let Some(pc) = self.pc.upgrade() else { return };
        let answer = pc.create_answer().await.expect("answer");
        pc.set_local_description(answer.clone())
            .await
            .expect("set answer");
        self.answers.send(answer).expect("test listens");
        self.log.push("answered");
    }

    async fn on_ice_candidate(&mut self, candidate: Option<RTCIceCandidateInit>) {
        let end = candidate.is_none();
        let r = self
            .offerer
            .add_ice_candidate(candidate.unwrap_or_default())
            .await;
        self.log.push(match (r, end) {
            (Ok(()), false) => "forwarded".to_owned(),
            (Ok(()), true) => "forwarded:end".to_owned(),
            (Err(e), _) => format!("forward failed: {e}"),
        });
    }

    async fn on_data_channel(&mut self, dc: DataChannel) {
        self.log.push(match dc.send_text("hello from b").await {
            Ok(()) => "replied".to_owned(),
            Err(e) => format!("reply failed: {e}"),
        });
    }

    async fn on_message(&mut self, _dc: &DataChannel, msg: DataChannelMessage) {
        if msg.text() == Some("bye") {
            let pc = self.pc.upgrade().expect("connection alive");
            self.log.push(match pc.close().await {
                Ok(()) => "closed".to_owned(),
                Err(e) => format!("close failed: {e}"),
            });
        }
    }

    async fn on_data_channel_close(&mut self, dc: &DataChannel) {
        self.log.push(format!("close:{}", dc.label()));
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        self.log.push("dropped");
    }
}

/// Callbacks call methods of their own and of another connection without deadlock, and a
/// handler that closes its connection from inside a callback ends its bridge.
#[tokio::test]
async fn handler_calls_back_into_the_connection() {
    init_log();
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let a = loopback_peer().await;
    let dc_a = a
        .create_data_channel("chat", Default::default())
        .await
        .unwrap();
    let offer = a.create_offer().await.unwrap();
    a.set_local_description(offer).await.unwrap();
    within("gathering", a.gathering_complete()).await.unwrap();
    let offer = a.local_description().await.unwrap().expect("offer");

    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let b = PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .handler_with({
            let (offerer, log, drops) = (a.clone(), log.clone(), drops.clone());
            move |pc| Answerer {
                pc,
                offerer,
                answers: answers_tx,
                log,
                drops,
            }
        })
        .build()
        .await
        .unwrap();
    b.set_remote_description(offer).await.unwrap();
    let answer = within("answer from the handler", answers.recv())
        .await
        .expect("answer");
    a.set_remote_description(answer).await.unwrap();

    let mut msgs_a = dc_a.messages();
    let m = within("reply", msgs_a.next()).await.expect("reply");
    assert_eq!(m.text(), Some("hello from b"));
    dc_a.send_text("bye").await.unwrap();
    log.wait_for("dropped").await;

    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Closed);
    let entries = log.entries();
    let answered = Log::pos(&entries, "answered");
    let forwarded = Log::pos(&entries, "forwarded");
    let replied = Log::pos(&entries, "replied");
    let closed = Log::pos(&entries, "closed");
    let channel_closed = Log::pos(&entries, "close:chat");
    assert!(answered < forwarded && forwarded < replied && replied < closed);
    assert!(closed < channel_closed);
    assert!(!entries.iter().any(|e| e.contains("failed")), "{entries:?}");
    within("close a", a.close()).await.unwrap();
}

/// Two connected peers, `b` with a [`Recorder`]; the channel "chat" is open on `b`'s
/// handler. Returns `a` and `a`'s end of the channel; the test owns `b`.
async fn pair_with_recorder(
    log: &Log,
    drops: &Arc<AtomicUsize>,
) -> (PeerConnection, PeerConnection, DataChannel) {
    let a = loopback_peer().await;
    let b = loopback_peer_with(Recorder::new(log, drops)).await;
    let dc_a = a
        .create_data_channel("chat", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    log.wait_for("open:chat").await;
    (a, b, dc_a)
}

/// Waits until the drop counter reaches 1 (bounded polling: the drop happens on another
/// task with nothing to wait on).
async fn dropped_once(drops: &AtomicUsize) {
    within("handler dropped", async {
        while drops.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

/// `close()` ends the bridge: the handler gets the last callbacks, then is dropped.
#[tokio::test]
async fn handler_is_dropped_after_close() {
    init_log();
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (a, b, _dc_a) = pair_with_recorder(&log, &drops).await;
    within("close b", b.close()).await.unwrap();
    dropped_once(&drops).await;
    let entries = log.entries();
    assert!(Log::pos(&entries, "conn:Closed") < Log::pos(&entries, "dropped"));
    assert!(Log::pos(&entries, "close:chat") < Log::pos(&entries, "dropped"));
    // The connection handle outlives the bridge.
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Closed);
    within("close a", a.close()).await.unwrap();
}

/// Dropping the last handle without `close()` also ends the bridge: the bridge does not keep
/// the connection alive, and the handler still gets the channel's close.
#[tokio::test]
async fn handler_is_dropped_when_the_last_handle_is() {
    init_log();
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (a, b, _dc_a) = pair_with_recorder(&log, &drops).await;
    let weak = b.downgrade();
    drop(b);
    dropped_once(&drops).await;
    assert!(weak.upgrade().is_none());
    let entries = log.entries();
    assert!(Log::pos(&entries, "conn:Closed") < Log::pos(&entries, "dropped"));
    assert!(Log::pos(&entries, "close:chat") < Log::pos(&entries, "dropped"));
    within("close a", a.close()).await.unwrap();
}

/// Takes a strong handle to its own connection on the first message.
struct Holder {
    weak: WeakPeerConnection,
    strong: Option<PeerConnection>,
    log: Log,
    drops: Arc<AtomicUsize>,
}

impl PeerConnectionEventHandler for Holder {
    async fn on_message(&mut self, _dc: &DataChannel, msg: DataChannelMessage) {
        if self.strong.is_none() {
            self.strong = self.weak.upgrade();
        }
        self.log.push(format!("msg:{}", msg.text().unwrap_or("")));
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// A handler holding its own connection keeps it alive after the application dropped its
/// handles (as documented); `close()` through a weak handle still ends it.
#[tokio::test]
async fn handler_holding_its_connection_ends_on_close() {
    init_log();
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let a = loopback_peer().await;
    let b = PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .handler_with({
            let (log, drops) = (log.clone(), drops.clone());
            |weak: WeakPeerConnection| {
                // The connection is usable from the closure already.
                let pc = weak.upgrade().expect("alive while built");
                assert_eq!(pc.connection_state(), RTCPeerConnectionState::New);
                Holder {
                    weak,
                    strong: None,
                    log,
                    drops,
                }
            }
        })
        .build()
        .await
        .unwrap();
    let dc_a = a
        .create_data_channel("chat", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    within("open", dc_a.opened()).await.unwrap();
    dc_a.send_text("first").await.unwrap();
    log.wait_for("msg:first").await;

    let weak = b.downgrade();
    drop(b);
    // Still alive: it receives, and upgrades.
    dc_a.send_text("second").await.unwrap();
    log.wait_for("msg:second").await;
    let b = weak.upgrade().expect("kept alive by its handler");
    assert_eq!(b.connection_state(), RTCPeerConnectionState::Connected);
    within("close b", b.close()).await.unwrap();
    drop(b);
    dropped_once(&drops).await;
    assert!(weak.upgrade().is_none());
    within("close a", a.close()).await.unwrap();
}

/// A handler blocked while more events than the event capacity happen is told how many it
/// missed, then continues with the newest.
#[tokio::test]
async fn slow_handler_is_told_what_it_missed() {
    init_log();
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (open_gate, gate) = oneshot::channel();
    let mut recorder = Recorder::new(&log, &drops);
    recorder.gate = Some(gate);
    let a = loopback_peer().await;
    let b = PeerConnection::builder()
        .bind(["127.0.0.1:0".parse().unwrap()])
        .event_capacity(2)
        .handler(recorder)
        .build()
        .await
        .unwrap();
    let _dc_a = a
        .create_data_channel("chat", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    connected(&b).await;
    open_gate.send(()).unwrap();
    log.wait_until("lagged", |v| v.iter().any(|e| e.starts_with("lagged:")))
        .await;
    let entries = log.entries();
    let missed: u64 = with_prefix(&entries, "lagged:")
        .iter()
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(missed > 0, "{entries:?}");
    within("close a", a.close()).await.unwrap();
    within("close b", b.close()).await.unwrap();
    log.wait_for("dropped").await;
    // It kept receiving after it lagged.
    let entries = log.entries();
    let lagged = entries
        .iter()
        .position(|e| e.starts_with("lagged:"))
        .unwrap();
    assert!(
        entries[lagged + 1..]
            .iter()
            .any(|e| is_connection_entry(e) && !e.starts_with("lagged:")),
        "{entries:?}"
    );
}

// ---- HandlerBridge::attach ----------------------------------------------------------------

/// Sends `count` text messages `<prefix><i>` on `dc`.
async fn send_numbered(dc: &DataChannel, prefix: &str, count: usize) {
    for i in 0..count {
        within("send", dc.send_text(format!("{prefix}{i}")))
            .await
            .unwrap();
    }
}

/// Attached after the connection is up, the handler gets the channels announced from then
/// on (a remote one and one created locally), each open, messages in order, close; the
/// connection's state changes from then on in legal order; nothing of the channel that
/// existed before, whose messages stay with its own reader. The bridge ends when the
/// connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_after_connect_sees_what_follows_in_order() {
    init_log();
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (a, b, before_a, before_b) = pair_with_channel("before", Default::default()).await;
    let mut a_incoming = a.data_channels();
    let bridge = HandlerBridge::attach(&b, Recorder::new(&log, &drops)).expect("attach");
    assert!(!bridge.is_finished());

    let remote = a
        .create_data_channel("remote", Default::default())
        .await
        .unwrap();
    let _local = b
        .create_data_channel("local", Default::default())
        .await
        .unwrap();
    let local_on_a = within("local channel on a", a_incoming.next())
        .await
        .expect("channel");
    within("remote open", remote.opened()).await.unwrap();
    within("local open", local_on_a.opened()).await.unwrap();
    send_numbered(&remote, "r", 50).await;
    send_numbered(&local_on_a, "l", 50).await;
    send_numbered(&before_a, "b", 3).await;
    log.wait_for("msg:remote:r49").await;
    log.wait_for("msg:local:l49").await;

    // The channel from before is not the handler's: its reader gets its messages.
    let mut before_msgs = before_b.messages();
    for i in 0..3 {
        let m = within("before message", before_msgs.next()).await.unwrap();
        assert_eq!(m.text(), Some(format!("b{i}").as_str()));
    }

    within("close a", a.close()).await.unwrap();
    within("bridge ends with the connection", bridge.finished()).await;
    assert!(bridge.is_finished());
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    let entries = log.entries();
    assert!(
        !entries.iter().any(|e| e.contains("before")),
        "the channel from before reached the handler: {entries:?}"
    );
    for label in ["remote", "local"] {
        let mine: Vec<&str> = entries
            .iter()
            .map(String::as_str)
            .filter(|e| e.ends_with(&format!(":{label}")) || e.contains(&format!(":{label}:")))
            .collect();
        let prefix = if label == "remote" { "r" } else { "l" };
        let mut expected = Vec::new();
        if label == "remote" {
            expected.push("dc:remote".to_owned());
        }
        expected.push(format!("open:{label}"));
        expected.extend((0..50).map(|i| format!("msg:{label}:{prefix}{i}")));
        expected.push(format!("close:{label}"));
        assert_eq!(mine, expected, "{label}");
    }
    // Attached while Connected: state callbacks are changes from there, in legal order.
    let states = with_prefix(&entries, "conn:");
    assert_eq!(states.last(), Some(&"Closed"), "{entries:?}");
    assert!(!states.contains(&"New") && !states.contains(&"Connecting"));
    let mut prev = "Connected";
    for &s in &states {
        assert!(
            matches!(
                (prev, s),
                (_, "Closed")
                    | ("Connected", "Disconnected" | "Failed")
                    | ("Disconnected", "Failed")
            ),
            "{prev} -> {s} in {states:?}"
        );
        prev = s;
    }
    assert_eq!(entries.last().map(String::as_str), Some("dropped"));
    within("close b", b.close()).await.unwrap();
}

/// `detach().await` returns once the handler is dropped; nothing reaches it after that;
/// messages it did not take wait in the inbox for another reader. A second handler attached
/// later sees the channels created after it.
#[tokio::test]
async fn detach_stops_delivery() {
    init_log();
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (a, b, _before_a, _before_b) = pair_with_channel("before", Default::default()).await;
    let mut b_incoming = b.data_channels();
    let bridge = HandlerBridge::attach(&b, Recorder::new(&log, &drops)).expect("attach");

    let x = a
        .create_data_channel("x", Default::default())
        .await
        .unwrap();
    let x_on_b = within("x on b", b_incoming.next()).await.expect("channel");
    x.send_text("m0").await.unwrap();
    log.wait_for("msg:x:m0").await;

    within("detach", bridge.detach()).await;
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "dropped when detach returns"
    );
    let seen = log.entries().len();
    assert_eq!(log.entries().last().map(String::as_str), Some("dropped"));

    x.send_text("m1").await.unwrap();
    let mut x_msgs = x_on_b.messages();
    let m = within("m1 for the stream reader", x_msgs.next())
        .await
        .unwrap();
    assert_eq!(m.text(), Some("m1"), "m0 went to the handler, m1 stays");

    // A second handler, attached after the first left, gets a channel created now.
    let log2 = Log::new();
    let drops2 = Arc::new(AtomicUsize::new(0));
    let second = HandlerBridge::attach(&b, Recorder::new(&log2, &drops2)).expect("attach again");
    let _y = b
        .create_data_channel("y", Default::default())
        .await
        .unwrap();
    log2.wait_for("open:y").await;
    drop(second);
    dropped_once(&drops2).await;

    within("close b", b.close()).await.unwrap();
    within("close a", a.close()).await.unwrap();
    // Give a stray callback the time it would need to show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(log.entries().len(), seen, "{:?}", log.entries());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

/// `run_until_closed` keeps the handler attached without a guard until the connection
/// closes; a closed connection refuses a new handler.
#[tokio::test]
async fn run_until_closed_and_attach_to_a_closed_connection() {
    init_log();
    let log = Log::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (a, b, _dc_a, _dc_b) = pair_with_channel("chat", Default::default()).await;
    HandlerBridge::attach(&b, Recorder::new(&log, &drops))
        .expect("attach")
        .run_until_closed();
    let z = a
        .create_data_channel("z", Default::default())
        .await
        .unwrap();
    log.wait_for("open:z").await;
    z.send_text("still here").await.unwrap();
    log.wait_for("msg:z:still here").await;
    assert_eq!(drops.load(Ordering::SeqCst), 0);

    within("close b", b.close()).await.unwrap();
    dropped_once(&drops).await;
    let entries = log.entries();
    assert!(Log::pos(&entries, "conn:Closed") < Log::pos(&entries, "dropped"));

    let made = Arc::new(AtomicBool::new(false));
    let r = HandlerBridge::attach_with(&b, |_| {
        made.store(true, Ordering::SeqCst);
        Recorder::new(&log, &drops)
    });
    assert!(matches!(r, Err(Error::Closed(_))), "{r:?}");
    assert!(!made.load(Ordering::SeqCst), "make is not called");
    within("close a", a.close()).await.unwrap();
}
