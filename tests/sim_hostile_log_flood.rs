//! Hostile traffic cannot flood the log. Before the inbound filter, `rtc` logged one or two
//! WARN lines per hostile datagram (228,686 lines for 200,000 datagrams); now refused datagrams
//! never reach it, and the filter itself logs the first refusal of each kind once per
//! connection, at debug level.
#![cfg(feature = "runtime-sim")]

#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/sim.rs"]
mod sim_common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use hostile::*;
use log::{Level, LevelFilter, Log, Metadata, Record};
use sim_common::*;
use webrtc_streams::runtime::sim::SimRuntime;

const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66)), 40000);

/// Counts log lines while armed: warnings and errors from anyone, debug lines from this crate.
struct Counter {
    armed: AtomicBool,
    warnings: AtomicUsize,
    ours: AtomicUsize,
}

static COUNTER: Counter = Counter {
    armed: AtomicBool::new(false),
    warnings: AtomicUsize::new(0),
    ours: AtomicUsize::new(0),
};

impl Log for Counter {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        if !self.armed.load(Ordering::Relaxed) {
            return;
        }
        if record.level() <= Level::Warn {
            self.warnings.fetch_add(1, Ordering::Relaxed);
            eprintln!("{}: {}", record.target(), record.args());
        }
        if record.target().starts_with("webrtc_streams") && record.level() <= Level::Debug {
            self.ours.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

#[test]
fn hostile_datagrams_do_not_flood_the_log() {
    log::set_logger(&COUNTER).unwrap();
    log::set_max_level(LevelFilter::Debug);
    let sim = SimRuntime::new(31);
    let h = sim.handle().clone();
    let sent = sim.block_on(async {
        let limit = Duration::from_secs(60);
        let (a, b, _dc_a, _dc_b) = pair_with_channel(&h, "x", Default::default(), limit).await;
        let (victim, peer) = (b.local_addrs()[0], a.local_addrs()[0]);
        COUNTER.armed.store(true, Ordering::Relaxed);
        let mut sent = 0;
        for from in [STRANGER, peer] {
            let n = 2_000u32;
            let kinds: [Box<dyn Fn(u32) -> Vec<u8>>; 7] = [
                Box::new(|i| empty_fragments(u64::from(i) + 100, 1000, 50)),
                Box::new(|i| dtls_record(1, u64::from(i) + 100, APPLICATION_DATA, &[i as u8; 64])),
                Box::new(|i| dtls_record(0, u64::from(i) + 100, ALERT, &[2, 40])),
                Box::new(|i| rtp(i, i as u16)),
                Box::new(rtcp_sender_report),
                Box::new(|i| role_flip_request(i, "x:y")),
                Box::new(|i| vec![(64 + i % 64) as u8; 60]),
            ];
            for kind in &kinds {
                sent += blast(&h, from, victim, (0..n).map(kind), 200).await;
            }
        }
        h.sleep(Duration::from_secs(1)).await;
        COUNTER.armed.store(false, Ordering::Relaxed);
        a.close().await.unwrap();
        b.close().await.unwrap();
        sent
    });
    let warnings = COUNTER.warnings.load(Ordering::Relaxed);
    let ours = COUNTER.ours.load(Ordering::Relaxed);
    eprintln!("{sent} hostile datagrams: {warnings} warnings, {ours} debug lines of this crate");
    assert!(
        warnings <= 10,
        "{warnings} warnings for {sent} hostile datagrams"
    );
    assert!(
        ours <= 20,
        "{ours} debug lines of this crate for {sent} hostile datagrams"
    );
}
