//! The simulated UDP network: virtual hosts, sockets, and links with loss, delay, jitter,
//! reordering, duplication and a bandwidth limit.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, VecDeque},
    fmt, io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Weak},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;

use super::{Inner, rng::Rng};
use crate::{runtime::AsyncUdpSocket, sync::lock};

/// Bytes a socket's receive queue holds before arriving datagrams are dropped (like a kernel
/// socket buffer; the same size the OS sockets of this crate ask for).
pub const SOCKET_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// First port handed out for binds on port 0 (the IANA dynamic range).
const FIRST_EPHEMERAL_PORT: u16 = 49152;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// The conditions of one direction of a link between two virtual hosts.
///
/// A datagram sent over a link meets, in this order:
///
/// 1. **loss**: dropped with probability [`loss`](Self::loss);
/// 2. **bandwidth**: with a [`bandwidth`](Self::bandwidth) limit, it waits behind the
///    datagrams before it and takes `len / bandwidth` to serialize; if that queue already
///    holds more than [`queue_limit`](Self::queue_limit) bytes, it is dropped (tail drop);
/// 3. **duplication**: with probability [`duplicate`](Self::duplicate) a second copy
///    travels too (each copy gets its own delay);
/// 4. **delay**: [`delay`](Self::delay), plus a uniform random extra in
///    `[0, jitter]`, plus [`reorder_delay`](Self::reorder_delay) with probability
///    [`reorder`](Self::reorder), which lets the datagrams behind it overtake it.
///
/// Jitter alone also reorders datagrams sent closer together than the jitter.
///
/// The default is a perfect link: no loss, no delay, unlimited bandwidth.
///
/// ```
/// use std::time::Duration;
/// use webrtc_streams::runtime::sim::LinkConfig;
///
/// let lossy = LinkConfig::new()
///     .delay(Duration::from_millis(20))
///     .jitter(Duration::from_millis(5))
///     .loss(0.05)
///     .bandwidth(1_000_000); // bytes per second
/// assert_eq!(lossy.loss, 0.05);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LinkConfig {
    /// Probability in `[0, 1]` that a datagram is lost.
    pub loss: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Upper bound of a uniformly distributed extra delay.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a datagram is held back by [`reorder_delay`](Self::reorder_delay).
    pub reorder: f64,
    /// The extra delay of a reordered datagram.
    pub reorder_delay: Duration,
    /// Probability in `[0, 1]` that a datagram arrives twice.
    pub duplicate: f64,
    /// Bytes per second the link carries; `None` for unlimited.
    pub bandwidth: Option<u64>,
    /// Bytes that may wait for the link (with a bandwidth limit) before datagrams are
    /// dropped; `None` for unlimited.
    pub queue_limit: Option<usize>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkConfig {
    /// A perfect link: no loss, no delay, unlimited bandwidth.
    pub const fn new() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            duplicate: 0.0,
            bandwidth: None,
            queue_limit: None,
        }
    }

    /// A link that loses everything: a cut cable, a partition.
    pub const fn cut() -> Self {
        let mut c = Self::new();
        c.loss = 1.0;
        c
    }

    /// Sets the loss probability (clamped to `[0, 1]`).
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p.clamp(0.0, 1.0);
        self
    }

    /// Sets the fixed one-way delay.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Sets the bound of the uniform random extra delay.
    pub fn jitter(mut self, d: Duration) -> Self {
        self.jitter = d;
        self
    }

    /// Sets the probability that a datagram is held back by `extra`, letting later ones
    /// overtake it.
    pub fn reorder(mut self, p: f64, extra: Duration) -> Self {
        self.reorder = p.clamp(0.0, 1.0);
        self.reorder_delay = extra;
        self
    }

    /// Sets the duplication probability (clamped to `[0, 1]`).
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p.clamp(0.0, 1.0);
        self
    }

    /// Limits the link to `bytes_per_second` (at least 1).
    pub fn bandwidth(mut self, bytes_per_second: u64) -> Self {
        self.bandwidth = Some(bytes_per_second.max(1));
        self
    }

    /// Limits the bytes waiting for a bandwidth-limited link.
    pub fn queue_limit(mut self, bytes: usize) -> Self {
        self.queue_limit = Some(bytes);
        self
    }
}

/// Counters of everything the simulated network did, for assertions and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkStats {
    /// Datagrams handed to the network by sockets.
    pub sent: u64,
    /// Datagrams (copies included) put into a receiving socket's queue.
    pub delivered: u64,
    /// Datagrams lost to [`LinkConfig::loss`].
    pub lost: u64,
    /// Extra copies made by [`LinkConfig::duplicate`].
    pub duplicated: u64,
    /// Datagrams held back by [`LinkConfig::reorder`].
    pub reordered: u64,
    /// Datagrams dropped because a link's queue was full ([`LinkConfig::queue_limit`]).
    pub queue_drops: u64,
    /// Datagrams dropped because the receiving socket's queue was full.
    pub receive_overflows: u64,
    /// Datagrams that arrived where no socket was bound.
    pub unreachable: u64,
    /// Datagrams dropped by the drop filter ([`SimHandle::set_drop_filter`](super::SimHandle::set_drop_filter)).
    pub filtered: u64,
}

/// Decides which datagrams to drop, given source, destination and payload; see
/// [`SimHandle::set_drop_filter`](super::SimHandle::set_drop_filter).
pub type DropFilter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool + Send>;

/// A datagram on the wire, ordered by arrival time, then by the order it was sent in.
struct InFlight {
    at: Duration,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    data: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Slot {
    id: u64,
    queue: VecDeque<(SocketAddr, Bytes)>,
    queued_bytes: usize,
    waker: Option<Waker>,
    /// Injected faults: errors the next receives / sends report instead of working.
    faults: Faults,
}

/// Errors a socket reports instead of working, injected by
/// [`SimHandle::fail_receives`](super::SimHandle::fail_receives) and
/// [`fail_sends`](super::SimHandle::fail_sends).
#[derive(Default)]
pub(super) struct Faults {
    /// `(kind, how many more; None = every one from now on)`.
    pub(super) recv: Option<(io::ErrorKind, Option<u32>)>,
    pub(super) send: Option<(io::ErrorKind, Option<u32>)>,
}

/// Takes one error of `fault`, if any is left.
fn take_fault(fault: &mut Option<(io::ErrorKind, Option<u32>)>) -> Option<io::ErrorKind> {
    let (kind, left) = (*fault)?;
    match left {
        None => Some(kind),
        Some(0) => {
            *fault = None;
            None
        }
        Some(n) => {
            *fault = Some((kind, Some(n - 1)));
            Some(kind)
        }
    }
}

/// The network's state; lives in the simulation's world lock.
pub(super) struct Network {
    seed: u64,
    /// One generator per directed link, so that what happens on one link does not depend on
    /// how its datagrams interleave with other links' datagrams.
    rngs: BTreeMap<(IpAddr, IpAddr), Rng>,
    default_link: LinkConfig,
    links: BTreeMap<(IpAddr, IpAddr), LinkConfig>,
    /// When each bandwidth-limited link finishes serializing what it holds.
    busy_until: BTreeMap<(IpAddr, IpAddr), Duration>,
    sockets: BTreeMap<SocketAddr, Slot>,
    next_port: BTreeMap<IpAddr, u16>,
    next_socket_id: u64,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    pub(super) filter: Option<DropFilter>,
    pub(super) stats: NetworkStats,
}

impl Network {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            seed,
            rngs: BTreeMap::new(),
            default_link: LinkConfig::new(),
            links: BTreeMap::new(),
            busy_until: BTreeMap::new(),
            sockets: BTreeMap::new(),
            next_port: BTreeMap::new(),
            next_socket_id: 0,
            in_flight: BinaryHeap::new(),
            filter: None,
            stats: NetworkStats::default(),
        }
    }

    pub(super) fn set_default_link(&mut self, config: LinkConfig) {
        self.default_link = config;
    }

    pub(super) fn set_link(&mut self, from: IpAddr, to: IpAddr, config: Option<LinkConfig>) {
        match config {
            Some(c) => self.links.insert((from, to), c),
            None => self.links.remove(&(from, to)),
        };
    }

    pub(super) fn link(&self, from: IpAddr, to: IpAddr) -> &LinkConfig {
        self.links.get(&(from, to)).unwrap_or(&self.default_link)
    }

    pub(super) fn bound(&self) -> Vec<SocketAddr> {
        self.sockets.keys().copied().collect()
    }

    fn bind(&mut self, addr: SocketAddr) -> io::Result<(SocketAddr, u64)> {
        if addr.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "the simulated network has no interfaces to expand {addr} to: \
                     bind a virtual host address such as 10.0.0.1:0"
                ),
            ));
        }
        let addr = if addr.port() == 0 {
            let next = self
                .next_port
                .entry(addr.ip())
                .or_insert(FIRST_EPHEMERAL_PORT);
            let range = u32::from(u16::MAX - FIRST_EPHEMERAL_PORT) + 1;
            let free = (0..range).find_map(|_| {
                let candidate = SocketAddr::new(addr.ip(), *next);
                *next = if *next == u16::MAX {
                    FIRST_EPHEMERAL_PORT
                } else {
                    *next + 1
                };
                (!self.sockets.contains_key(&candidate)).then_some(candidate)
            });
            free.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("no free port left on virtual host {}", addr.ip()),
                )
            })?
        } else if self.sockets.contains_key(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already bound on the simulated network"),
            ));
        } else {
            addr
        };
        let id = self.next_socket_id;
        self.next_socket_id += 1;
        self.sockets.insert(
            addr,
            Slot {
                id,
                queue: VecDeque::new(),
                queued_bytes: 0,
                waker: None,
                faults: Faults::default(),
            },
        );
        Ok((addr, id))
    }

    /// The faults of the socket bound at `addr`, if there is one; and its waker (a receive
    /// fault must be noticed by a reader waiting for data).
    pub(super) fn faults(&mut self, addr: SocketAddr) -> Option<(&mut Faults, Option<Waker>)> {
        self.sockets
            .get_mut(&addr)
            .map(|s| (&mut s.faults, s.waker.take()))
    }

    fn unbind(&mut self, addr: SocketAddr, id: u64) -> Option<Waker> {
        if self.sockets.get(&addr).is_some_and(|s| s.id == id) {
            self.sockets.remove(&addr).and_then(|s| s.waker)
        } else {
            None
        }
    }

    /// Puts a datagram on the link from `from` to `to` at time `now`.
    pub(super) fn transmit(
        &mut self,
        now: Duration,
        seq: &mut dyn FnMut() -> u64,
        from: SocketAddr,
        to: SocketAddr,
        data: Bytes,
    ) {
        self.stats.sent += 1;
        if let Some(filter) = &mut self.filter
            && filter(from, to, &data)
        {
            self.stats.filtered += 1;
            return;
        }
        let key = (from.ip(), to.ip());
        let cfg = self.links.get(&key).unwrap_or(&self.default_link).clone();
        let seed = self.seed;
        let rng = self
            .rngs
            .entry(key)
            .or_insert_with(|| Rng::for_link(seed, key.0, key.1));
        if rng.chance(cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut depart = now;
        if let Some(bw) = cfg.bandwidth {
            let busy = self.busy_until.get(&key).copied().unwrap_or(now).max(now);
            let backlog = (busy - now).as_nanos() * u128::from(bw) / 1_000_000_000;
            if let Some(limit) = cfg.queue_limit
                && backlog + data.len() as u128 > limit as u128
            {
                self.stats.queue_drops += 1;
                return;
            }
            let nanos = data.len() as u128 * 1_000_000_000 / u128::from(bw);
            depart = busy + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            self.busy_until.insert(key, depart);
        }
        let copies = if rng.chance(cfg.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = cfg.jitter.as_nanos().min(u128::from(u64::MAX)) as u64;
            let mut delay = cfg.delay + Duration::from_nanos(rng.up_to(jitter));
            if rng.chance(cfg.reorder) {
                self.stats.reordered += 1;
                delay += cfg.reorder_delay;
            }
            self.in_flight.push(Reverse(InFlight {
                at: depart + delay,
                seq: seq(),
                from,
                to,
                data: data.clone(),
            }));
        }
    }

    /// `(arrival, seq)` of the next datagram on the wire.
    pub(super) fn peek(&self) -> Option<(Duration, u64)> {
        self.in_flight.peek().map(|Reverse(d)| (d.at, d.seq))
    }

    /// Delivers the next datagram on the wire; returns the receiver's waker.
    pub(super) fn deliver_next(&mut self) -> Option<Waker> {
        let Reverse(d) = self.in_flight.pop()?;
        let Some(slot) = self.sockets.get_mut(&d.to) else {
            self.stats.unreachable += 1;
            return None;
        };
        if slot.queued_bytes + d.data.len() > SOCKET_RECEIVE_BUFFER {
            self.stats.receive_overflows += 1;
            return None;
        }
        self.stats.delivered += 1;
        slot.queued_bytes += d.data.len();
        slot.queue.push_back((d.from, d.data));
        slot.waker.take()
    }

    /// Forgets every datagram on the wire and the filter, and returns every socket's waker.
    pub(super) fn clear(&mut self) -> Vec<Waker> {
        self.in_flight.clear();
        self.filter = None;
        self.sockets
            .values_mut()
            .filter_map(|s| s.waker.take())
            .collect()
    }
}

/// A socket on the simulated network ([`Runtime::bind_udp`]).
///
/// [`Runtime::bind_udp`]: crate::runtime::Runtime::bind_udp
pub(super) struct SimSocket {
    sim: Weak<Inner>,
    addr: SocketAddr,
    id: u64,
}

impl SimSocket {
    pub(super) fn bind(inner: &Arc<Inner>, addr: SocketAddr) -> io::Result<Self> {
        let (addr, id) = lock(&inner.world).net.bind(addr)?;
        Ok(Self {
            sim: Arc::downgrade(inner),
            addr,
            id,
        })
    }

    fn sim(&self) -> io::Result<Arc<Inner>> {
        self.sim
            .upgrade()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the simulation is gone"))
    }
}

impl AsyncUdpSocket for SimSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let inner = match self.sim() {
            Ok(i) => i,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let mut world = lock(&inner.world);
        let Some(slot) = world
            .net
            .sockets
            .get_mut(&self.addr)
            .filter(|s| s.id == self.id)
        else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        if let Some(kind) = take_fault(&mut slot.faults.recv) {
            return Poll::Ready(Err(io::Error::new(kind, "injected receive fault")));
        }
        match slot.queue.pop_front() {
            Some((from, data)) => {
                slot.queued_bytes -= data.len();
                // Like UDP: a datagram longer than the buffer is truncated.
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Poll::Ready(Ok((n, from)))
            }
            None => {
                match &mut slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    fn poll_send_to(
        &self,
        _cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        if buf.len() > MAX_DATAGRAM {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram larger than 65507 bytes",
            )));
        }
        let inner = match self.sim() {
            Ok(i) => i,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let mut world = lock(&inner.world);
        let world = &mut *world;
        let fault = world
            .net
            .sockets
            .get_mut(&self.addr)
            .filter(|s| s.id == self.id)
            .and_then(|s| take_fault(&mut s.faults.send));
        if let Some(kind) = fault {
            return Poll::Ready(Err(io::Error::new(kind, "injected send fault")));
        }
        let now = world.now;
        let seq = &mut world.seq;
        let mut next_seq = || {
            *seq += 1;
            *seq
        };
        let data = Bytes::copy_from_slice(buf);
        world
            .net
            .transmit(now, &mut next_seq, self.addr, target, data);
        Poll::Ready(Ok(buf.len()))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl Drop for SimSocket {
    fn drop(&mut self) {
        if let Some(inner) = self.sim.upgrade() {
            let waker = lock(&inner.world).net.unbind(self.addr, self.id);
            drop(waker); // outside the lock
        }
    }
}

impl fmt::Debug for SimSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSocket")
            .field("addr", &self.addr)
            .finish()
    }
}
