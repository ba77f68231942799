//! The crate's event multicast (`src/stream.rs`) side by side with `async-broadcast` 0.7 used
//! the way the crate would have to use it (overflow mode, an `InactiveReceiver` keeping each
//! queue alive with no subscriber, capacity grown on demand from 1 up to the event capacity,
//! since `broadcast(cap)` allocates the whole capacity up front).
//!
//! Measured: heap bytes per idle queue (no subscriber) and per idle subscriber, per idle
//! connection (the 10 queues of a connection's hub, 2 of them with a subscriber), what a
//! queue keeps after a burst of 1,024 events all read; and events/s through one queue with 1
//! and with 8 subscribers (events published in batches of 32, every subscriber reading all of
//! each batch; one thread, so the figure is the data structure's cost, not scheduling).
//!
//! Run: `cargo bench --bench multicast`.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    pin::Pin,
    sync::atomic::{AtomicIsize, Ordering},
    task::{Context, Poll},
    time::Instant,
};

use async_broadcast::{InactiveReceiver, RecvError, Sender};
use futures::task::noop_waker_ref;
use webrtc_streams::__bench::{Multicast, Receiver};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The event capacity of a connection (`DEFAULT_EVENT_CAPACITY`).
const CAPACITY: usize = 1024;

/// An event about the size of the crate's internal one (cloned and moved, never read).
#[derive(Clone)]
#[allow(dead_code)]
struct Ev([u64; 8]);

/// `async-broadcast` as the crate would use it.
struct Broadcast {
    tx: Sender<Ev>,
    _keep: InactiveReceiver<Ev>,
}

impl Broadcast {
    fn new() -> Self {
        let (mut tx, rx) = async_broadcast::broadcast(1);
        tx.set_overflow(true);
        tx.set_await_active(false);
        Self {
            tx,
            _keep: rx.deactivate(),
        }
    }

    fn publish(&mut self, ev: Ev) {
        if self.tx.is_full() && self.tx.capacity() < CAPACITY {
            let cap = (self.tx.capacity() * 2).min(CAPACITY);
            self.tx.set_capacity(cap);
        }
        // `Inactive` (nobody listens) drops the event, as the ring does.
        let _ = self.tx.try_broadcast(ev);
    }

    fn subscribe(&self) -> async_broadcast::Receiver<Ev> {
        self.tx.new_receiver()
    }
}

/// Bytes per item of `make`, over `n` items kept alive.
fn bytes_per<T>(n: usize, mut make: impl FnMut() -> T) -> f64 {
    let before = live();
    let kept: Vec<T> = (0..n).map(|_| make()).collect();
    let vec_bytes = (kept.capacity() * std::mem::size_of::<T>()) as isize;
    let after = live();
    drop(black_box(kept));
    (after - before - vec_bytes) as f64 / n as f64 + std::mem::size_of::<T>() as f64 // the handle itself, held by its owner
}

fn drain_ring(rx: &mut Receiver<Ev>, cx: &mut Context<'_>) -> u64 {
    let mut n = 0;
    while let Poll::Ready(Some(r)) = rx.poll_recv(cx) {
        if let Ok(ev) = r {
            black_box(ev);
            n += 1;
        }
    }
    n
}

fn drain_broadcast(rx: &mut async_broadcast::Receiver<Ev>, cx: &mut Context<'_>) -> u64 {
    let mut n = 0;
    loop {
        match Pin::new(&mut *rx).poll_recv(cx) {
            Poll::Ready(Some(Ok(ev))) => {
                black_box(ev);
                n += 1;
            }
            Poll::Ready(Some(Err(RecvError::Overflowed(_)))) => {}
            _ => return n,
        }
    }
}

const EVENTS: u64 = 2_000_000;
const BATCH: u64 = 32;

fn throughput_ring(subscribers: usize) -> f64 {
    let mut cx = Context::from_waker(noop_waker_ref());
    let q = Multicast::new(CAPACITY);
    let mut rxs: Vec<_> = (0..subscribers).map(|_| q.subscribe()).collect();
    let start = Instant::now();
    let mut got = 0;
    for _ in 0..EVENTS / BATCH {
        for i in 0..BATCH {
            q.publish(Ev([i; 8]));
        }
        for rx in &mut rxs {
            got += drain_ring(rx, &mut cx);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(
        got,
        EVENTS * subscribers as u64,
        "every event to every subscriber"
    );
    EVENTS as f64 / secs
}

fn throughput_broadcast(subscribers: usize) -> f64 {
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut q = Broadcast::new();
    let mut rxs: Vec<_> = (0..subscribers).map(|_| q.subscribe()).collect();
    let start = Instant::now();
    let mut got = 0;
    for _ in 0..EVENTS / BATCH {
        for i in 0..BATCH {
            q.publish(Ev([i; 8]));
        }
        for rx in &mut rxs {
            got += drain_broadcast(rx, &mut cx);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(
        got,
        EVENTS * subscribers as u64,
        "every event to every subscriber"
    );
    EVENTS as f64 / secs
}

fn main() {
    const N: usize = 10_000;
    println!("multicast: the crate's ring vs async-broadcast 0.7 (overflow, grown on demand)");
    println!("{:<48} {:>12} {:>16}", "", "ring", "async-broadcast");

    let ring_queue = bytes_per(N, || Multicast::<Ev>::new(CAPACITY));
    let bc_queue = bytes_per(N, Broadcast::new);
    println!(
        "{:<48} {:>10.0} B {:>14.0} B",
        "idle queue, no subscriber", ring_queue, bc_queue
    );

    let q = Multicast::<Ev>::new(CAPACITY);
    let ring_sub = bytes_per(N, || q.subscribe());
    let b = Broadcast::new();
    let bc_sub = bytes_per(N, || b.subscribe());
    println!(
        "{:<48} {:>10.0} B {:>14.0} B",
        "idle subscriber", ring_sub, bc_sub
    );

    // A connection: 10 queues, subscribers on 2 of them (say events() and one state view).
    let ring_conn = bytes_per(1_000, || {
        let qs: Vec<_> = (0..10).map(|_| Multicast::<Ev>::new(CAPACITY)).collect();
        let subs = (qs[0].subscribe(), qs[1].subscribe());
        (qs, subs)
    });
    let bc_conn = bytes_per(1_000, || {
        let qs: Vec<_> = (0..10).map(|_| Broadcast::new()).collect();
        let subs = (qs[0].subscribe(), qs[1].subscribe());
        (qs, subs)
    });
    println!(
        "{:<48} {:>10.0} B {:>14.0} B",
        "idle connection (10 queues, 2 subscribers)", ring_conn, bc_conn
    );

    // What a queue keeps after a burst of CAPACITY events, all read.
    let mut cx = Context::from_waker(noop_waker_ref());
    let before = live();
    let q = Multicast::<Ev>::new(CAPACITY);
    let mut rx = q.subscribe();
    for i in 0..CAPACITY as u64 {
        q.publish(Ev([i; 8]));
    }
    drain_ring(&mut rx, &mut cx);
    let ring_after = live() - before;
    drop((rx, q));
    let before = live();
    let mut b = Broadcast::new();
    let mut rx = b.subscribe();
    for i in 0..CAPACITY as u64 {
        b.publish(Ev([i; 8]));
    }
    drain_broadcast(&mut rx, &mut cx);
    let bc_after = live() - before;
    drop((rx, b));
    println!(
        "{:<48} {:>10} B {:>14} B",
        "queue + 1 subscriber after 1,024 events read", ring_after, bc_after
    );

    for subs in [1, 8] {
        // Warm up, then the better of three runs each.
        throughput_ring(subs);
        throughput_broadcast(subs);
        let ring = (0..3).map(|_| throughput_ring(subs)).fold(0.0, f64::max);
        let bc = (0..3)
            .map(|_| throughput_broadcast(subs))
            .fold(0.0, f64::max);
        println!(
            "{:<48} {:>10.2} M {:>14.2} M",
            format!("events/s, {subs} subscriber(s)"),
            ring / 1e6,
            bc / 1e6
        );
    }
}
