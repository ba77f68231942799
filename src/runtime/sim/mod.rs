//! A deterministic simulation runtime (feature `runtime-sim`): a single-threaded executor, a
//! virtual clock and a simulated UDP network, all driven from one seed.
//!
//! # The model
//!
//! * **Executor.** [`SimRuntime::block_on`] runs a main future and every task spawned on the
//!   simulation (by you, or by connections as their drivers) on the calling thread. Runnable
//!   tasks wait in one FIFO queue; a wake-up puts a task at the back unless it is queued
//!   already. Nothing runs anywhere else: there are no threads and no OS timers or sockets.
//! * **Virtual clock.** [`Runtime::now`] returns the simulation's start instant plus the
//!   virtual time elapsed. Virtual time stands still while any task can run; when none can,
//!   the clock jumps straight to the next event (the earliest timer somebody waits on, or the
//!   arrival of the next datagram), fires everything due then, and the tasks go on. A run that
//!   sits through 30 seconds of ICE consent checks finishes in milliseconds of wall time.
//! * **Network.** Virtual hosts are just IP addresses: [`Runtime::bind_udp`] on
//!   `10.0.0.1:0` creates a socket on host `10.0.0.1` with the next free port (counting up
//!   from 49152, so the same binds give the same ports). Datagrams travel over links, one per
//!   direction between two hosts, with the conditions of a [`LinkConfig`] (loss, delay, jitter,
//!   reordering, duplication, bandwidth limit and queue limit); set a default for all links with
//!   [`SimHandle::set_default_link`] and override single directions or host pairs with
//!   [`SimHandle::set_link`] / [`SimHandle::set_path`]. Dropping a socket frees its address.
//! * **Randomness.** Every random decision of the network comes from a generator seeded with
//!   [`SimRuntime::new`]'s seed: one stream per directed link, drawn in the order that link's
//!   datagrams are sent, so traffic on one link does not change the fate of another's.
//!
//! # Determinism
//!
//! Given the same seed, the same link conditions and the same program, the executor polls the
//! same tasks in the same order, the clock shows the same times, and the network loses, delays,
//! duplicates and reorders the same datagrams. What is *not* reproduced is what the protocol
//! core draws from the operating system's randomness: ICE credentials, DTLS keys and
//! randoms, SCTP tags and initial sequence numbers. Those change the *bytes* of a run but not
//! its *course*: which datagrams exist, when they are sent, which of them are lost, and so when
//! connection states change and messages arrive. So determinism holds at the level of an event
//! trace (virtual timestamps, state changes, message payloads), not of raw packets.
//!
//! One exception: DTLS handshake messages carry ECDSA signatures whose DER encoding varies by a
//! byte or two with the key. With a [`LinkConfig::bandwidth`] limit, serialization delay depends
//! on datagram size, so every timestamp from the handshake on may shift by some nanoseconds
//! between runs (and, rarely, when such a shift swaps two events, the course of the run too).
//! Without a bandwidth limit, sizes do not matter and runs repeat exactly.
//!
//! A simulation must be self-contained: if a task waits for something outside it (another
//! thread, an OS socket), the simulation cannot see it coming and reports a deadlock.
//!
//! # Safety nets
//!
//! * If the main future is pending, no task can run, and no timer or datagram is pending,
//!   nothing can ever happen again: `block_on` panics with "simulation deadlocked".
//! * A run whose clock would pass the *horizon* ([`DEFAULT_HORIZON`], or
//!   [`SimRuntime::with_horizon`]) panics, so a bug that keeps a connection idling (its
//!   keep-alive timers never stop) cannot run forever. Use [`SimHandle::timeout`] to bound
//!   individual waits.
//! * A million polls without the clock moving is reported as a livelock.
//!
//! # Example
//!
//! Two peers on a lossy, jittery network exchange a message:
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use webrtc_streams::{PeerConnection, runtime::sim::{LinkConfig, SimRuntime}};
//!
//! let sim = SimRuntime::new(42);
//! sim.set_default_link(
//!     LinkConfig::new()
//!         .delay(Duration::from_millis(30))
//!         .jitter(Duration::from_millis(10))
//!         .loss(0.05),
//! );
//! sim.block_on(async {
//!     let a = PeerConnection::builder()
//!         .runtime(sim.runtime())
//!         .bind(["10.0.0.1:0".parse().unwrap()])
//!         .build()
//!         .await?;
//!     let b = PeerConnection::builder()
//!         .runtime(sim.runtime())
//!         .bind(["10.0.0.2:0".parse().unwrap()])
//!         .build()
//!         .await?;
//!     let mut incoming = b.data_channels();
//!     let dc = a.create_data_channel("chat", Default::default()).await?;
//!
//!     // Signaling without trickle ICE: full descriptions once gathering is complete.
//!     a.set_local_description(a.create_offer().await?).await?;
//!     a.gathering_complete().await?;
//!     b.set_remote_description(a.local_description().await?.unwrap()).await?;
//!     b.set_local_description(b.create_answer().await?).await?;
//!     b.gathering_complete().await?;
//!     a.set_remote_description(b.local_description().await?.unwrap()).await?;
//!
//!     dc.send(Bytes::from_static(b"hello")).await?;
//!     let remote = sim
//!         .timeout(Duration::from_secs(60), incoming.next())
//!         .await
//!         .expect("no channel within a minute")
//!         .unwrap();
//!     let msg = remote.messages().next().await.unwrap();
//!     assert_eq!(&msg.data[..], b"hello");
//!     println!("delivered after {:?} of virtual time", sim.elapsed());
//!
//!     a.close().await?;
//!     b.close().await?;
//!     Ok::<_, webrtc_streams::Error>(())
//! })?;
//! # Ok::<_, webrtc_streams::Error>(())
//! ```
//!
//! [`Runtime::now`]: crate::runtime::Runtime::now
//! [`Runtime::bind_udp`]: crate::runtime::Runtime::bind_udp

mod net;
mod rng;
mod time;

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    fmt,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    ops::Deref,
    pin::{Pin, pin},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::{Duration, Instant},
};

use self::{net::Network, time::Timers};
pub use self::{
    net::{DropFilter, LinkConfig, NetworkStats, SOCKET_RECEIVE_BUFFER},
    time::{Elapsed, Sleep, Timeout},
};
use super::{AsyncTimer, AsyncUdpSocket, Runtime};
use crate::sync::lock;

/// How far virtual time may go before a run is considered stuck, unless changed with
/// [`SimRuntime::with_horizon`].
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(3600);

/// Polls without the clock moving after which a run is reported as a livelock.
const MAX_POLLS_PER_INSTANT: u64 = 1_000_000;

/// The task id of the future given to `block_on`.
const MAIN: u64 = 0;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A deterministic simulation: executor, virtual clock and network.
///
/// The owner of a simulation. It runs it ([`block_on`](Self::block_on)) and, when dropped,
/// drops every task still pending (connection drivers included, which frees their sockets).
/// Everything else — spawning, time, network conditions — is on the cheap, cloneable
/// [`SimHandle`], which this type dereferences to and which implements
/// [`Runtime`] for connections.
///
/// ```
/// use std::time::Duration;
/// use webrtc_streams::runtime::sim::SimRuntime;
///
/// let sim = SimRuntime::new(1);
/// let handle = sim.handle().clone();
/// let n = sim.block_on(async {
///     let task = sim.spawn(async move {
///         handle.sleep(Duration::from_secs(10)).await;
///         7
///     });
///     task.await * 6
/// });
/// assert_eq!(n, 42);
/// assert_eq!(sim.elapsed(), Duration::from_secs(10)); // no wall-clock time was spent waiting
/// ```
pub struct SimRuntime {
    handle: SimHandle,
}

impl SimRuntime {
    /// A new simulation whose network draws its random decisions from `seed`. All links are
    /// perfect until configured otherwise.
    pub fn new(seed: u64) -> Self {
        let inner = Arc::new(Inner {
            base: Instant::now(),
            seed,
            sched: Mutex::new(Sched::default()),
            tasks: Mutex::new(Tasks {
                map: BTreeMap::new(),
                next_id: MAIN + 1,
                shut_down: false,
            }),
            world: Mutex::new(World {
                now: Duration::ZERO,
                horizon: DEFAULT_HORIZON,
                seq: 0,
                timers: Timers::default(),
                net: Network::new(seed),
            }),
            running: AtomicBool::new(false),
        });
        Self {
            handle: SimHandle { inner },
        }
    }

    /// Sets how far virtual time may go before the run panics as stuck (default
    /// [`DEFAULT_HORIZON`]).
    pub fn with_horizon(self, horizon: Duration) -> Self {
        lock(&self.handle.inner.world).horizon = horizon;
        self
    }

    /// The handle: spawn tasks, read the clock, configure the network.
    pub fn handle(&self) -> &SimHandle {
        &self.handle
    }

    /// Runs `future` to completion, together with every spawned task, on this thread and on
    /// virtual time. Tasks still pending when `future` completes stay in the simulation and run
    /// again in the next `block_on`.
    ///
    /// # Panics
    ///
    /// When called from inside the simulation; when the run deadlocks (the main future is
    /// pending and nothing can ever wake it); when virtual time passes the horizon; when a
    /// spawned task panics (the panic propagates).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let inner = &self.handle.inner;
        assert!(
            !inner.running.swap(true, Ordering::AcqRel),
            "SimRuntime::block_on called while the simulation is already running"
        );
        struct Running<'a>(&'a AtomicBool);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _running = Running(&inner.running);

        let mut future = pin!(future);
        let waker = Waker::from(Arc::new(TaskWaker {
            id: MAIN,
            sim: Arc::downgrade(inner),
        }));
        let mut cx = Context::from_waker(&waker);
        inner.schedule(MAIN);
        let mut polls = 0u64;
        loop {
            let next = lock(&inner.sched).pop();
            match next {
                Some(MAIN) => {
                    if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                        return v;
                    }
                }
                Some(id) => inner.poll_task(id),
                None => {
                    if inner.advance() {
                        polls = 0;
                    }
                    continue;
                }
            }
            polls += 1;
            if polls > MAX_POLLS_PER_INSTANT {
                panic!(
                    "simulation livelock: {polls} polls at {:?} of virtual time without the \
                     clock advancing",
                    self.handle.elapsed()
                );
            }
        }
    }
}

impl Deref for SimRuntime {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl Drop for SimRuntime {
    fn drop(&mut self) {
        let inner = &self.handle.inner;
        // Tasks hold handles to the simulation: drop them (outside every lock) to break the
        // cycle. Their sockets and timers unregister themselves.
        let tasks = {
            let mut t = lock(&inner.tasks);
            t.shut_down = true;
            std::mem::take(&mut t.map)
        };
        drop(tasks);
        let wakers = {
            let mut w = lock(&inner.world);
            let mut wakers = w.timers.clear_wakers();
            wakers.extend(w.net.clear());
            wakers
        };
        drop(wakers);
        let mut s = lock(&inner.sched);
        s.queue.clear();
        s.queued.clear();
    }
}

impl fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.handle.fmt(f)
    }
}

/// A handle to a simulation: cheap to clone, `Send + Sync`, and the [`Runtime`] that
/// connections use.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use webrtc_streams::runtime::{Runtime, sim::SimRuntime};
///
/// let sim = SimRuntime::new(7);
/// let rt: Arc<dyn Runtime> = sim.runtime(); // for PeerConnectionBuilder::runtime
/// let start = rt.now();
/// sim.block_on(sim.sleep(Duration::from_millis(1500)));
/// assert_eq!(rt.now() - start, Duration::from_millis(1500));
/// ```
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl SimHandle {
    /// The simulation as the [`Runtime`] of a connection
    /// ([`PeerConnectionBuilder::runtime`](crate::PeerConnectionBuilder::runtime)).
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(self.clone())
    }

    /// The current virtual time, as an [`Instant`] (the simulation's start plus
    /// [`elapsed`](Self::elapsed)).
    pub fn now(&self) -> Instant {
        self.inner.base + self.elapsed()
    }

    /// Virtual time elapsed since the simulation was created.
    pub fn elapsed(&self) -> Duration {
        lock(&self.inner.world).now
    }

    /// The seed the simulation was created with.
    pub fn seed(&self) -> u64 {
        self.inner.seed
    }

    /// Spawns a task on the simulation. It runs during [`SimRuntime::block_on`]; dropping the
    /// returned handle detaches it.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let state = Arc::new(Mutex::new(JoinState {
            result: None,
            waker: None,
        }));
        let shared = state.clone();
        self.inner.spawn(Box::pin(async move {
            let v = future.await;
            let waker = {
                let mut st = lock(&shared);
                st.result = Some(v);
                st.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }));
        JoinHandle { state }
    }

    /// Completes after `duration` of virtual time.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.now() + duration)
    }

    /// Completes once the virtual clock reaches `deadline`.
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep::new(self, deadline)
    }

    /// Runs `future`, giving up with [`Elapsed`] after `limit` of virtual time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webrtc_streams::runtime::sim::SimRuntime;
    ///
    /// let sim = SimRuntime::new(0);
    /// let r = sim.block_on(sim.timeout(Duration::from_secs(5), futures::future::pending::<()>()));
    /// assert!(r.is_err());
    /// assert_eq!(sim.elapsed(), Duration::from_secs(5));
    /// ```
    pub fn timeout<F: Future>(&self, limit: Duration, future: F) -> Timeout<F> {
        Timeout::new(future, self.sleep(limit), limit)
    }

    /// Sets the conditions of every link not configured with [`set_link`](Self::set_link).
    pub fn set_default_link(&self, config: LinkConfig) {
        lock(&self.inner.world).net.set_default_link(config);
    }

    /// Sets the conditions of the link from host `from` to host `to` (one direction).
    pub fn set_link(&self, from: IpAddr, to: IpAddr, config: LinkConfig) {
        lock(&self.inner.world).net.set_link(from, to, Some(config));
    }

    /// Sets the conditions of both directions between hosts `a` and `b`.
    ///
    /// ```
    /// use webrtc_streams::runtime::sim::{LinkConfig, SimRuntime};
    ///
    /// let sim = SimRuntime::new(0);
    /// let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    /// sim.set_path(a, b, LinkConfig::cut()); // a network partition
    /// assert_eq!(sim.link(b, a).loss, 1.0);
    /// ```
    pub fn set_path(&self, a: IpAddr, b: IpAddr, config: LinkConfig) {
        let mut world = lock(&self.inner.world);
        world.net.set_link(a, b, Some(config.clone()));
        world.net.set_link(b, a, Some(config));
    }

    /// Makes the link from `from` to `to` follow the default again.
    pub fn clear_link(&self, from: IpAddr, to: IpAddr) {
        lock(&self.inner.world).net.set_link(from, to, None);
    }

    /// The conditions of the link from `from` to `to`.
    pub fn link(&self, from: IpAddr, to: IpAddr) -> LinkConfig {
        lock(&self.inner.world).net.link(from, to).clone()
    }

    /// Drops every datagram for which `filter(from, to, payload)` returns `true`, before the
    /// link conditions apply: for tests that need one particular datagram lost. Replaces any
    /// previous filter; [`clear_drop_filter`](Self::clear_drop_filter) removes it.
    ///
    /// The filter runs inside the simulation's network and must not call back into the
    /// simulation (its handle, sockets or timers).
    ///
    /// ```
    /// use webrtc_streams::runtime::sim::SimRuntime;
    ///
    /// let sim = SimRuntime::new(0);
    /// // Lose the first DTLS handshake record sent from 10.0.0.1, and nothing else.
    /// let mut dropped = false;
    /// sim.set_drop_filter(move |from, _to, payload| {
    ///     let hit = !dropped && from.ip().to_string() == "10.0.0.1" && payload.first() == Some(&22);
    ///     dropped |= hit;
    ///     hit
    /// });
    /// ```
    pub fn set_drop_filter(
        &self,
        filter: impl FnMut(SocketAddr, SocketAddr, &[u8]) -> bool + Send + 'static,
    ) {
        let old = lock(&self.inner.world).net.filter.replace(Box::new(filter));
        drop(old); // outside the lock
    }

    /// Removes the drop filter.
    pub fn clear_drop_filter(&self) {
        let old = lock(&self.inner.world).net.filter.take();
        drop(old);
    }

    /// Puts a datagram on the network as if a socket bound on `from` had sent it to `to`:
    /// `from` need not be bound, and may be the address of another host's socket. This is
    /// what an attacker who forges source addresses can do on a real network, for tests of
    /// hostile traffic. The datagram meets the same drop filter and link conditions as any
    /// other (those of the link from `from`'s host to `to`'s host).
    ///
    /// ```
    /// use webrtc_streams::runtime::sim::SimRuntime;
    ///
    /// let sim = SimRuntime::new(0);
    /// let victim = "10.0.0.2:50000".parse().unwrap();
    /// let spoofed = "10.0.0.1:49152".parse().unwrap(); // the victim's peer, say
    /// sim.inject(spoofed, victim, &[0x16, 0xfe, 0xfd]);
    /// assert_eq!(sim.network_stats().sent, 1);
    /// ```
    pub fn inject(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        let mut world = lock(&self.inner.world);
        let world = &mut *world;
        let now = world.now;
        let seq = &mut world.seq;
        let mut next_seq = || {
            *seq += 1;
            *seq
        };
        let data = bytes::Bytes::copy_from_slice(payload);
        world.net.transmit(now, &mut next_seq, from, to, data);
    }

    /// Makes the socket bound at `addr` fail its next `count` receives with `kind` (every
    /// receive from now on with `None`), as an OS reports ICMP errors (`ConnectionRefused`)
    /// or a socket that broke for good. Returns whether a socket is bound there.
    ///
    /// ```
    /// # #[cfg(feature = "runtime-sim")] {
    /// use webrtc_streams::runtime::sim::SimRuntime;
    /// let sim = SimRuntime::new(1);
    /// let addr = "10.0.0.1:5000".parse().unwrap();
    /// assert!(!sim.fail_receives(addr, std::io::ErrorKind::ConnectionRefused, Some(3)));
    /// # }
    /// ```
    pub fn fail_receives(&self, addr: SocketAddr, kind: io::ErrorKind, count: Option<u32>) -> bool {
        let waker = {
            let mut world = lock(&self.inner.world);
            match world.net.faults(addr) {
                Some((faults, waker)) => {
                    faults.recv = Some((kind, count));
                    waker
                }
                None => return false,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Makes the socket bound at `addr` fail its next `count` sends with `kind` (every send
    /// from now on with `None`), e.g. `ENOBUFS` (`io::ErrorKind::OutOfMemory`) or
    /// `EMSGSIZE`; the datagrams are not sent. Returns whether a socket is bound there.
    pub fn fail_sends(&self, addr: SocketAddr, kind: io::ErrorKind, count: Option<u32>) -> bool {
        let mut world = lock(&self.inner.world);
        match world.net.faults(addr) {
            Some((faults, waker)) => {
                faults.send = Some((kind, count));
                drop(world);
                if let Some(w) = waker {
                    w.wake();
                }
                true
            }
            None => false,
        }
    }

    /// What the network has done so far.
    pub fn network_stats(&self) -> NetworkStats {
        lock(&self.inner.world).net.stats
    }

    /// The addresses of every socket currently bound on the simulated network, in order.
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.inner.world).net.bound()
    }

    /// Whether a socket is bound on `addr`.
    pub fn is_bound(&self, addr: SocketAddr) -> bool {
        self.bound_addrs().contains(&addr)
    }
}

impl Runtime for SimHandle {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.inner.spawn(future);
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(time::SimTimer::new(self, deadline))
    }

    /// The simulation has no OS sockets: always fails with [`io::ErrorKind::Unsupported`].
    fn wrap_udp_socket(&self, _socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the simulation runtime has no OS sockets; connections bind on the simulated network",
        ))
    }

    /// Binds a socket on the simulated network. Port 0 picks the host's next free port;
    /// an address already bound fails with [`io::ErrorKind::AddrInUse`]; an unspecified
    /// address fails with [`io::ErrorKind::AddrNotAvailable`].
    fn bind_udp(&self, addr: SocketAddr) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(net::SimSocket::bind(&self.inner, addr)?))
    }

    fn uses_os_network(&self) -> bool {
        false
    }

    fn now(&self) -> Instant {
        SimHandle::now(self)
    }
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("seed", &self.inner.seed)
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

/// The result of a task spawned with [`SimHandle::spawn`]; a future of its output.
///
/// Dropping it detaches the task. If the simulation is dropped before the task completes,
/// the handle never completes.
#[must_use = "dropping a JoinHandle detaches the task"]
pub struct JoinHandle<T> {
    state: Arc<Mutex<JoinState<T>>>,
}

struct JoinState<T> {
    result: Option<T>,
    waker: Option<Waker>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has completed (and its output not been taken yet).
    pub fn is_finished(&self) -> bool {
        lock(&self.state).result.is_some()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut st = lock(&self.state);
        match st.result.take() {
            Some(v) => Poll::Ready(v),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

// ---- internals ------------------------------------------------------------------------------

struct Inner {
    base: Instant,
    seed: u64,
    sched: Mutex<Sched>,
    tasks: Mutex<Tasks>,
    world: Mutex<World>,
    running: AtomicBool,
}

/// The run queue. Wakers touch only this lock, so waking from anywhere is safe.
#[derive(Default)]
struct Sched {
    queue: VecDeque<u64>,
    queued: HashSet<u64>,
}

impl Sched {
    fn pop(&mut self) -> Option<u64> {
        let id = self.queue.pop_front()?;
        self.queued.remove(&id);
        Some(id)
    }
}

struct Tasks {
    /// A task's future is taken out while it is polled.
    map: BTreeMap<u64, Option<Task>>,
    next_id: u64,
    shut_down: bool,
}

struct Task {
    future: BoxFuture,
    waker: Waker,
}

/// Clock, timers and network: everything that changes with virtual time.
struct World {
    now: Duration,
    horizon: Duration,
    /// Orders events that fall on the same instant.
    seq: u64,
    timers: Timers,
    net: Network,
}

impl World {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Fires every timer and delivers every datagram due at `now`, in the order of their
    /// times, then of their sequence numbers.
    fn fire_due(&mut self, wakers: &mut Vec<Waker>) {
        loop {
            let timer = self.timers.peek();
            let datagram = self.net.peek();
            let (at, is_timer) = match (timer, datagram) {
                (Some(t), Some(d)) if t <= d => (t.0, true),
                (_, Some(d)) => (d.0, false),
                (Some(t), None) => (t.0, true),
                (None, None) => return,
            };
            if at > self.now {
                return;
            }
            let waker = if is_timer {
                self.timers.fire()
            } else {
                self.net.deliver_next()
            };
            wakers.extend(waker);
        }
    }

    /// The time of the next event.
    fn next_event(&mut self) -> Option<Duration> {
        let timer = self.timers.peek().map(|t| t.0);
        let datagram = self.net.peek().map(|d| d.0);
        match (timer, datagram) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        }
    }
}

impl Inner {
    /// `t` as an offset from the simulation's start (instants before it count as the start).
    fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.base)
    }

    fn schedule(&self, id: u64) {
        let mut s = lock(&self.sched);
        if s.queued.insert(id) {
            s.queue.push_back(id);
        }
    }

    fn spawn(self: &Arc<Self>, future: BoxFuture) {
        let mut tasks = lock(&self.tasks);
        if tasks.shut_down {
            drop(tasks);
            drop(future);
            return;
        }
        let id = tasks.next_id;
        tasks.next_id += 1;
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            sim: Arc::downgrade(self),
        }));
        tasks.map.insert(id, Some(Task { future, waker }));
        drop(tasks);
        self.schedule(id);
    }

    fn poll_task(&self, id: u64) {
        let task = lock(&self.tasks).map.get_mut(&id).and_then(Option::take);
        let Some(mut task) = task else {
            return; // completed, or a stale wake-up
        };
        let done = task
            .future
            .as_mut()
            .poll(&mut Context::from_waker(&task.waker))
            .is_ready();
        let finished = {
            let mut tasks = lock(&self.tasks);
            match tasks.map.get_mut(&id) {
                Some(slot) if !done => {
                    *slot = Some(task);
                    None
                }
                _ => {
                    tasks.map.remove(&id);
                    Some(task)
                }
            }
        };
        drop(finished); // outside the lock: dropping a future may touch the simulation
    }

    /// Runs the clock: fires what is due now or, if that wakes nobody, jumps to the next event
    /// and fires what is due then. Returns whether the clock moved.
    fn advance(&self) -> bool {
        let mut wakers = Vec::new();
        let moved = {
            let mut world = lock(&self.world);
            world.fire_due(&mut wakers);
            if wakers.is_empty() {
                let Some(next) = world.next_event() else {
                    let now = world.now;
                    drop(world);
                    let pending = lock(&self.tasks).map.len();
                    panic!(
                        "simulation deadlocked at {now:?} of virtual time: the main future is \
                         pending, no task can run, and no timer or datagram is pending \
                         ({pending} spawned tasks are still pending)"
                    );
                };
                if next > world.horizon {
                    let (now, horizon) = (world.now, world.horizon);
                    drop(world);
                    panic!(
                        "simulation passed its horizon of {horizon:?} of virtual time (now \
                         {now:?}, next event at {next:?}): the main future seems stuck; use \
                         SimRuntime::with_horizon if the run is meant to be this long"
                    );
                }
                world.now = next;
                world.fire_due(&mut wakers);
                true
            } else {
                false
            }
        };
        for w in wakers {
            w.wake();
        }
        moved
    }
}

struct TaskWaker {
    id: u64,
    sim: Weak<Inner>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(inner) = self.sim.upgrade() {
            inner.schedule(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn time_jumps_to_timers_in_order() {
        let sim = SimRuntime::new(0);
        let log = Arc::new(Mutex::new(Vec::new()));
        for ms in [30u64, 10, 20, 10] {
            let (h, log) = (sim.handle().clone(), log.clone());
            drop(sim.spawn(async move {
                h.sleep(Duration::from_millis(ms)).await;
                lock(&log).push((ms, h.elapsed()));
            }));
        }
        sim.block_on(sim.sleep(Duration::from_millis(40)));
        let got = lock(&log).clone();
        let ms = Duration::from_millis;
        assert_eq!(
            got,
            vec![(10, ms(10)), (10, ms(10)), (20, ms(20)), (30, ms(30))]
        );
        assert_eq!(sim.elapsed(), ms(40));
    }

    #[test]
    #[should_panic(expected = "simulation deadlocked")]
    fn deadlock_is_reported() {
        let sim = SimRuntime::new(0);
        sim.block_on(futures::future::pending::<()>());
    }

    #[test]
    #[should_panic(expected = "horizon")]
    fn horizon_is_enforced() {
        let sim = SimRuntime::new(0).with_horizon(Duration::from_secs(10));
        sim.block_on(sim.sleep(Duration::from_secs(11)));
    }

    #[test]
    fn resettable_timer_and_spawn_from_tasks() {
        let sim = SimRuntime::new(0);
        let h = sim.handle().clone();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        sim.block_on(async {
            let mut t = h.new_timer(h.now() + Duration::from_secs(100));
            t.as_mut().reset(h.now() + Duration::from_secs(2));
            futures::future::poll_fn(|cx| t.as_mut().poll(cx)).await;
            assert_eq!(h.elapsed(), Duration::from_secs(2));
            let h2 = h.clone();
            h.spawn(async move {
                h2.spawn(async move {
                    c.fetch_add(1, Ordering::SeqCst);
                })
                .await;
            })
            .await;
        });
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn sockets_deliver_with_delay_and_free_their_address() {
        let sim = SimRuntime::new(0);
        let h = sim.handle().clone();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        sim.set_link(a, b, LinkConfig::new().delay(Duration::from_millis(25)));
        sim.block_on(async {
            let sa = h.bind_udp(SocketAddr::new(a, 0)).unwrap();
            let sb = h.bind_udp(SocketAddr::new(b, 0)).unwrap();
            let addr_b = sb.local_addr().unwrap();
            assert_eq!(addr_b.port(), 49152);
            assert_eq!(
                h.bind_udp(addr_b).unwrap_err().kind(),
                io::ErrorKind::AddrInUse
            );
            futures::future::poll_fn(|cx| sa.poll_send_to(cx, b"ping", addr_b))
                .await
                .unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = futures::future::poll_fn(|cx| sb.poll_recv_from(cx, &mut buf))
                .await
                .unwrap();
            assert_eq!((&buf[..n], from), (&b"ping"[..], sa.local_addr().unwrap()));
            assert_eq!(h.elapsed(), Duration::from_millis(25));
            drop(sb);
            assert!(!h.is_bound(addr_b));
            assert!(h.bind_udp(addr_b).is_ok());
        });
    }

    #[test]
    fn bandwidth_serializes_and_queue_limit_drops() {
        let sim = SimRuntime::new(0);
        let h = sim.handle().clone();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        // 1000 bytes/s: a 100-byte datagram takes 100 ms; the link holds 300 bytes, the
        // datagram being serialized included.
        sim.set_link(a, b, LinkConfig::new().bandwidth(1000).queue_limit(300));
        let arrivals = sim.block_on(async {
            let sa = h.bind_udp(SocketAddr::new(a, 0)).unwrap();
            let sb = h.bind_udp(SocketAddr::new(b, 0)).unwrap();
            let to = sb.local_addr().unwrap();
            for _ in 0..5 {
                futures::future::poll_fn(|cx| sa.poll_send_to(cx, &[0; 100], to))
                    .await
                    .unwrap();
            }
            let mut arrivals = Vec::new();
            let mut buf = [0u8; 200];
            while let Ok(r) = h
                .timeout(
                    Duration::from_secs(1),
                    futures::future::poll_fn(|cx| sb.poll_recv_from(cx, &mut buf)),
                )
                .await
            {
                r.unwrap();
                arrivals.push(h.elapsed().as_millis());
            }
            arrivals
        });
        assert_eq!(arrivals, vec![100, 200, 300]);
        assert_eq!(sim.network_stats().queue_drops, 2);
    }

    #[test]
    fn dropping_the_simulation_drops_pending_tasks() {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let weak = {
            let sim = SimRuntime::new(0);
            let flag = Flag(dropped.clone());
            let h = sim.handle().clone();
            drop(sim.spawn(async move {
                let _flag = flag;
                let _h = h; // a cycle: task -> handle -> simulation -> task
                futures::future::pending::<()>().await;
            }));
            sim.block_on(async {});
            Arc::downgrade(&sim.handle().inner)
        };
        assert!(dropped.load(Ordering::SeqCst));
        assert!(weak.upgrade().is_none(), "the simulation leaked");
    }
}
