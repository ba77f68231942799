//! Slow consumers, on virtual time: an event subscriber that never reads, a channel reader
//! that never reads, a remote-track reader that never reads and a handler that sleeps, each
//! facing 100,000 events, messages or packets. Memory stays bounded (the live heap of the
//! simulation thread is printed and checked against a budget) and everyone else keeps going.
//!
//! `SLOW_N` sets the count (default 10,000 so the suite stays fast in debug on a small
//! machine); the full figure:
//! `SLOW_N=100000 cargo test --release --all-features --test sim_slow_consumers -- --nocapture`.
#![cfg(feature = "runtime-sim")]

#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/media.rs"]
mod media_common;
#[path = "common/sim.rs"]
mod sim_common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use sim_common::*;
use webrtc_streams::{
    DataChannel, DataChannelEvent, DataChannelMessage, PeerConnection, PeerConnectionEventHandler,
    media::LocalTrack,
    rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS,
    runtime::sim::{SimHandle, SimRuntime},
};

/// Growth of the live heap allowed while the count goes from a tenth to all of it: what a
/// bounded queue costs is reached within the first tenth.
const BUDGET: isize = 4 << 20;

fn count() -> usize {
    std::env::var("SLOW_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Live heap at a tenth of the run, then at its end: prints both and checks the growth.
struct Heap {
    what: &'static str,
    start: isize,
    tenth: Option<isize>,
    wall: Instant,
}

impl Heap {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            start: alloc::live_bytes(),
            tenth: None,
            wall: Instant::now(),
        }
    }

    fn at(&mut self, i: usize, n: usize) {
        if i == n / 10 {
            self.tenth = Some(alloc::live_bytes());
        }
    }

    fn check(self, n: usize, h: &SimHandle) {
        self.check_within(n, h, BUDGET)
    }

    fn check_within(self, n: usize, h: &SimHandle, budget: isize) {
        let (tenth, end) = (self.tenth.expect("tenth reached"), alloc::live_bytes());
        println!(
            "{}: {n} items; live heap +{:.2} MiB after {} , +{:.2} MiB after {n} \
             (growth over the last 90%: {:+.2} MiB); {:?} virtual, {:?} wall",
            self.what,
            alloc::mib(tenth - self.start),
            n / 10,
            alloc::mib(end - self.start),
            alloc::mib(end - tenth),
            h.elapsed(),
            self.wall.elapsed()
        );
        assert!(
            end - tenth < budget,
            "{}: the heap grew by {:.2} MiB",
            self.what,
            alloc::mib(end - tenth)
        );
    }
}

/// Sends messages `0..n` on `a`, each read at `b` before the next is sent, noting the heap at a
/// tenth of the run.
async fn exchange(h: &SimHandle, a: &DataChannel, b: &DataChannel, n: usize, heap: &mut Heap) {
    let mut at_b = b.messages();
    for i in 0..n {
        heap.at(i, n);
        a.send(Bytes::from(i.to_le_bytes().to_vec())).await.unwrap();
        let m = within(h, "message", LIMIT, at_b.next()).await.unwrap();
        assert_eq!(m.data[..], i.to_le_bytes());
    }
}

/// Subscribers of every event stream that never read, while 100,000 messages flow and each
/// send fires a `BufferedAmountLow` event: the messages all arrive and the events stay within
/// the subscribers' capacity.
#[test]
fn event_subscribers_that_never_read() {
    init_log();
    let n = count();
    let sim = SimRuntime::new(21);
    let h = sim.handle().clone();
    sim.block_on(async {
        let (a, b, dc_a, dc_b) = pair_with_channel(&h, "events", Default::default(), LIMIT).await;
        // Fires whenever what is buffered falls back to 0.
        dc_a.set_buffered_amount_low_threshold(0);
        let never = (
            a.events(),
            b.events(),
            dc_a.events(),
            dc_b.events(),
            a.connection_states(),
            a.ice_candidates(),
        );
        // One reader that does read, to count the events the others miss.
        let fired = Arc::new(AtomicUsize::new(0));
        let mut counted = dc_a.events();
        let f = fired.clone();
        drop(h.spawn(async move {
            while let Some(e) = counted.next().await {
                if e == DataChannelEvent::BufferedAmountLow {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let mut heap = Heap::new("event subscribers that never read");
        exchange(&h, &dc_a, &dc_b, n, &mut heap).await;
        let fired = fired.load(Ordering::Relaxed);
        println!("  {fired} BufferedAmountLow events, none read by the idle subscribers");
        assert!(fired >= n / 2, "only {fired} events fired");
        heap.check(n, &h);
        drop(never);
    });
}

/// A channel whose reader never reads: its sender is held back once the receive budget is
/// spent (and, as documented on `receive_budget`, so is the rest of that connection), while
/// another pair in the same process carries 100,000 messages. Once read, every held message
/// arrives, in order.
#[test]
fn a_channel_reader_that_never_reads() {
    init_log();
    let n = count();
    let sim = SimRuntime::new(22);
    let h = sim.handle().clone();
    sim.block_on(async {
        let (a, b, _, _) = pair_with_channel(&h, "first", Default::default(), LIMIT).await;
        let (_c, _d, dc_a, dc_b) = pair_with_channel(&h, "busy", Default::default(), LIMIT).await;
        let mut incoming = b.data_channels();
        let stuck_a = a
            .create_data_channel("stuck", Default::default())
            .await
            .unwrap();
        let stuck_b = within(&h, "stuck channel", LIMIT, incoming.next())
            .await
            .unwrap();
        within(&h, "open", LIMIT, stuck_a.opened()).await.unwrap();
        let stuck_reader = stuck_b.messages(); // never read until the end
        let sent = Arc::new(AtomicUsize::new(0));
        let s = sent.clone();
        let sender = h.spawn(async move {
            for i in 0..n {
                stuck_a
                    .send(Bytes::from(vec![(i % 251) as u8; 1000]))
                    .await
                    .unwrap();
                s.store(i + 1, Ordering::Relaxed);
            }
        });
        let mut heap = Heap::new("a channel reader that never reads (while another pair carries)");
        exchange(&h, &dc_a, &dc_b, n, &mut heap).await;
        let held = sent.load(Ordering::Relaxed);
        println!("  the stuck channel's sender got {held} of {n} messages out, then waited");
        assert!(held < n, "the sender was never held back");
        heap.check(n, &h);
        // Now read: everything arrives, in order.
        let mut reader = stuck_reader;
        within(&h, "drain", Duration::from_secs(3600), async {
            for i in 0..n {
                let m: DataChannelMessage = reader.next().await.unwrap();
                assert_eq!(m.data.len(), 1000);
                assert_eq!(m.data[0], (i % 251) as u8, "message {i}");
            }
        })
        .await;
        within(&h, "sender", LIMIT, sender).await;
        drop((a, b));
    });
}

/// A remote track whose reader never reads, while 100,000 packets arrive: it keeps the
/// newest up to its queue's capacity and counts what it dropped; a data channel on the same
/// connection keeps working.
#[test]
fn a_track_reader_that_never_reads() {
    init_log();
    let n = count();
    let sim = SimRuntime::new(23);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_common::media_peer(&h, HOST_A).await;
        let b = media_common::media_peer(&h, HOST_B).await;
        let audio = a
            .add_track(LocalTrack::audio(
                "a-audio",
                LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2),
            ))
            .await
            .unwrap();
        let mut tracks = b.tracks();
        let mut channels = b.data_channels();
        let dc_a = a
            .create_data_channel("side", Default::default())
            .await
            .unwrap();
        negotiate(&a, &b).await;
        audio.write_rtp(media_common::packet(0, 100)).await.unwrap();
        let track = media_common::take_tracks(&h, &mut tracks, 1)
            .await
            .remove(0);
        let stuck = track.rtp(); // never read
        let dc_b = within(&h, "channel", LIMIT, channels.next()).await.unwrap();
        within(&h, "open", LIMIT, dc_a.opened()).await.unwrap();
        let mut at_b = dc_b.messages();
        let mut heap = Heap::new("a track reader that never reads");
        for i in 1..n {
            heap.at(i, n);
            audio
                .write_rtp(media_common::packet(i as u16, 100))
                .await
                .unwrap();
            if i.is_multiple_of(100) {
                // 20 ms of audio per packet, and the channel keeps going alongside.
                h.sleep(Duration::from_millis(20)).await;
                dc_a.send(Bytes::from(i.to_le_bytes().to_vec()))
                    .await
                    .unwrap();
                let m = within(&h, "message", LIMIT, at_b.next()).await.unwrap();
                assert_eq!(m.data[..], i.to_le_bytes());
            }
        }
        h.sleep(Duration::from_secs(1)).await;
        println!(
            "  received {}, queued {}, dropped {} (oldest)",
            track.received(),
            stuck.queued(),
            track.dropped()
        );
        assert_eq!(
            track.received(),
            stuck.queued() as u64 + track.dropped(),
            "every packet is queued or counted as dropped"
        );
        assert!(
            track.received() > (n as u64) * 9 / 10,
            "packets lost on the way"
        );
        heap.check(n, &h);
    });
}

/// A handler that sleeps 5 s on every 1,000th message, for 100,000 messages of 1,000 bytes:
/// it gets them all in order, its sender is held back meanwhile, and another pair in the same
/// process keeps exchanging.
#[test]
fn a_handler_that_sleeps() {
    handler_that_sleeps(1000, BUDGET);
}

/// The same with 8-byte messages. Memory stays bounded, but tiny messages cost far more than
/// their bytes: 10,000 → +7.2 MiB, 40,000 → +10.6 MiB, 100,000 → +15.1 MiB of live heap
/// (before the sender counted messages against its high-water mark: +8.9, +22.4 and +40.4).
/// What remains is `rtc`'s: its read pipeline passes a burst of thousands of messages
/// through queues that keep their capacity (about 7 MiB after 10,000), plus ~100 bytes per
/// message waiting in the inbox (the receive budget counts payload bytes: charging more per
/// message would only leave them in `rtc`'s reassembly queue, which costs more per message).
#[test]
fn a_handler_that_sleeps_tiny_messages() {
    handler_that_sleeps(8, 3 * BUDGET);
}

fn handler_that_sleeps(size: usize, budget: isize) {
    struct Sleepy {
        sim: SimHandle,
        next: Arc<AtomicUsize>,
        size: usize,
    }
    impl PeerConnectionEventHandler for Sleepy {
        async fn on_message(&mut self, _dc: &DataChannel, msg: DataChannelMessage) {
            let i = self.next.load(Ordering::Relaxed);
            assert_eq!(msg.data[..8], i.to_le_bytes(), "out of order");
            assert_eq!(msg.data.len(), self.size);
            self.next.store(i + 1, Ordering::Relaxed);
            if i.is_multiple_of(1000) {
                self.sim.sleep(Duration::from_secs(5)).await;
            }
        }
    }

    init_log();
    let n = count();
    let sim = SimRuntime::new(24);
    let h = sim.handle().clone();
    sim.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let handled = next.clone();
        let hs = h.clone();
        let a = peer(&h, HOST_A).await;
        let b = PeerConnection::builder()
            .runtime(h.runtime())
            .bind([std::net::SocketAddr::new(HOST_B, 0)])
            .handler(Sleepy {
                sim: hs,
                next: handled,
                size,
            })
            .build()
            .await
            .unwrap();
        let dc_a = a
            .create_data_channel("to-handler", Default::default())
            .await
            .unwrap();
        negotiate(&a, &b).await;
        within(&h, "open", LIMIT, dc_a.opened()).await.unwrap();
        // Another pair, busy all along.
        let (_c, _d, dc_c, dc_d) = pair_with_channel(&h, "other", Default::default(), LIMIT).await;
        let other = h.spawn(async move {
            let mut at_d = dc_d.messages();
            let mut done = 0;
            for i in 0..1000usize {
                dc_c.send(Bytes::from(i.to_le_bytes().to_vec()))
                    .await
                    .unwrap();
                assert_eq!(at_d.next().await.unwrap().data[..], i.to_le_bytes());
                done += 1;
            }
            done
        });
        let mut heap = Heap::new("a handler that sleeps");
        for i in 0..n {
            heap.at(i, n);
            let mut m = vec![0u8; size];
            m[..8].copy_from_slice(&i.to_le_bytes());
            within(&h, "send", LIMIT, dc_a.send(Bytes::from(m)))
                .await
                .unwrap();
        }
        within(&h, "handled", Duration::from_secs(3600), async {
            while next.load(Ordering::Relaxed) < n {
                h.sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert_eq!(within(&h, "other pair", LIMIT, other).await, 1000);
        heap.check_within(n, &h, budget);
    });
}

use media_common::LIMIT;

/// A sender of 8-byte messages that nobody acknowledges (the path to the receiver drops
/// everything) is held back by the number of messages, not only their bytes: each buffered
/// message counts its length plus some 256 bytes against the 1 MiB high-water mark, so at most
/// ~4,000 of them wait in the core (as bytes alone, 131,072 would, holding ~28 MiB). Once the
/// path heals, every one arrives, in order.
#[test]
fn a_sender_of_tiny_messages_is_held_back_by_count() {
    init_log();
    let sim = SimRuntime::new(25);
    let h = sim.handle().clone();
    sim.block_on(async {
        let (_a, _b, dc_a, dc_b) = pair_with_channel(&h, "tiny", Default::default(), LIMIT).await;
        let heap = alloc::live_bytes();
        h.set_drop_filter(|from, _, _| from.ip() == HOST_A);
        let mut accepted = 0usize;
        loop {
            let msg = Bytes::from(accepted.to_le_bytes().to_vec());
            match h.timeout(Duration::from_secs(5), dc_a.send(msg)).await {
                Ok(r) => r.unwrap(),
                Err(_) => break, // held back: nothing is acknowledged
            }
            accepted += 1;
            assert!(accepted <= 100_000, "never held back");
        }
        let held = alloc::live_bytes() - heap;
        println!(
            "held back after {accepted} messages of 8 bytes ({} bytes buffered); heap +{:.2} MiB",
            dc_a.buffered_amount(),
            alloc::mib(held)
        );
        let mark = webrtc_streams::data_channel::DEFAULT_HIGH_WATER_MARK;
        assert!(
            accepted <= mark / (8 + 200) + 1,
            "{accepted} tiny messages were buffered under a {mark}-byte mark"
        );
        assert!(
            accepted >= mark / (8 + 512),
            "held back too early: {accepted}"
        );
        h.clear_drop_filter();
        let mut at_b = dc_b.messages();
        for i in 0..accepted {
            let m = within(&h, "delivery after the path heals", LIMIT * 3, at_b.next())
                .await
                .unwrap();
            assert_eq!(m.data[..], i.to_le_bytes(), "message {i}");
        }
    });
}
