//! ICE-TCP (RFC 6544): host candidates over TCP, for peers whose UDP is blocked.
//!
//! *Passive* candidates are listening sockets: the peer connects, and every ICE, DTLS and
//! SCTP packet travels framed on that connection (RFC 4571: a two-byte length before each
//! packet). *Active* candidates (announced with port 9, as RFC 6544 says) connect to the
//! peer's passive candidates when the core first sends a check there.
//!
//! A connection carries packets in both directions, keyed by the peer's address: what the
//! core sends to that address with the TCP transport goes down it, and every frame read
//! from it enters the core like a datagram from that address (through the inbound filter,
//! like any datagram). Everything is bounded: connections ([`MAX_CONNECTIONS`]; a
//! connection that has not been admitted by the filter within [`ADMISSION_TIME`] is closed,
//! and the oldest such one makes room for a newcomer), bytes waiting to be written per
//! connection ([`MAX_PENDING_WRITE`]; beyond it packets are dropped, as UDP would), and the
//! frame size (the two-byte length caps it).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use log::debug;

use crate::runtime::{AsyncTcpListener, AsyncTcpStream, ConnectTcp, Runtime};

/// TCP connections (open or opening) per peer connection.
const MAX_CONNECTIONS: usize = 16;
/// How long an accepted connection may carry nothing the inbound filter admits.
const ADMISSION_TIME: Duration = Duration::from_secs(10);
/// How long an active candidate waits for its connection to open.
const CONNECT_TIME: Duration = Duration::from_secs(10);
/// Bytes queued for one connection before further packets are dropped.
const MAX_PENDING_WRITE: usize = 1024 * 1024;
/// Frames read per connection per round.
const FRAMES_PER_ROUND: usize = 64;
/// The port active candidates announce (RFC 6544 §4.5).
pub(crate) const ACTIVE_PORT: u16 = 9;

/// A listening socket and the address its candidate announces.
pub(crate) struct Listener {
    pub(crate) listener: Box<dyn AsyncTcpListener>,
    /// The address of the passive candidate (the listener's, or a 1:1 NAT's public IP with
    /// its port).
    pub(crate) addr: SocketAddr,
}

struct Conn {
    stream: Box<dyn AsyncTcpStream>,
    /// The local candidate the core knows the connection by.
    local: SocketAddr,
    peer: SocketAddr,
    /// Bytes read and not yet framed.
    rbuf: Vec<u8>,
    /// Framed bytes not yet written, from `woff`.
    wbuf: Vec<u8>,
    woff: usize,
    /// When it was accepted, until the filter admits something from it.
    unadmitted_since: Option<Instant>,
}

struct Connecting {
    fut: ConnectTcp,
    local: SocketAddr,
    peer: SocketAddr,
    /// Framed packets to write once connected.
    queued: Vec<u8>,
    deadline: Instant,
}

/// The ICE-TCP candidates of one connection and their TCP connections.
pub(super) struct IceTcp {
    listeners: Vec<Listener>,
    /// The addresses of the active candidates (port [`ACTIVE_PORT`]).
    active: Vec<SocketAddr>,
    conns: Vec<Conn>,
    connecting: Vec<Connecting>,
    /// Frames read: `(local candidate, peer, packet)`.
    pub(super) inbound: VecDeque<(SocketAddr, SocketAddr, BytesMut)>,
}

impl IceTcp {
    pub(super) fn new(listeners: Vec<Listener>, active: Vec<SocketAddr>) -> Self {
        Self {
            listeners,
            active,
            conns: Vec::new(),
            connecting: Vec::new(),
            inbound: VecDeque::new(),
        }
    }

    /// The passive candidates' addresses.
    pub(super) fn passive(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// The active candidates' addresses.
    pub(super) fn active(&self) -> &[SocketAddr] {
        &self.active
    }

    /// A frame from `peer` passed the inbound filter: its connection is a peer's.
    pub(super) fn admitted(&mut self, peer: SocketAddr) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.peer == peer) {
            c.unadmitted_since = None;
        }
    }

    /// Sends `packet` from local candidate `local` to `peer`: on the connection to `peer`,
    /// or on a new one if `local` is an active candidate. Dropped otherwise (a passive
    /// candidate cannot reach a peer that has not connected) or when too much is queued.
    pub(super) fn send(
        &mut self,
        runtime: &dyn Runtime,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        packet: &[u8],
    ) {
        let Ok(len) = u16::try_from(packet.len()) else {
            debug!("ICE-TCP: {} byte packet too large to frame", packet.len());
            return;
        };
        let frame = |buf: &mut Vec<u8>, pending: usize| {
            if pending + packet.len() + 2 > MAX_PENDING_WRITE {
                debug!("ICE-TCP: write queue to {peer} full, packet dropped");
                return;
            }
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(packet);
        };
        if let Some(c) = self.conns.iter_mut().find(|c| c.peer == peer) {
            let pending = c.wbuf.len() - c.woff;
            frame(&mut c.wbuf, pending);
            return;
        }
        if let Some(c) = self.connecting.iter_mut().find(|c| c.peer == peer) {
            let pending = c.queued.len();
            frame(&mut c.queued, pending);
            return;
        }
        let is_active =
            local.port() == ACTIVE_PORT && self.active.iter().any(|a| a.ip() == local.ip());
        if !is_active {
            return;
        }
        if self.conns.len() + self.connecting.len() >= MAX_CONNECTIONS {
            debug!("ICE-TCP: {MAX_CONNECTIONS} connections open, not connecting to {peer}");
            return;
        }
        let mut queued = Vec::new();
        frame(&mut queued, 0);
        self.connecting.push(Connecting {
            fut: runtime.connect_tcp(peer),
            local,
            peer,
            queued,
            deadline: now + CONNECT_TIME,
        });
    }

    /// Accepts, connects, writes and reads what it can. Returns whether anything happened.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut any = false;
        // Accept.
        for l in &mut self.listeners {
            loop {
                let (stream, peer) = match l.listener.poll_accept(cx) {
                    Poll::Ready(Ok(s)) => s,
                    Poll::Ready(Err(e)) => {
                        debug!("ICE-TCP accept on {}: {e}", l.addr);
                        any = true;
                        break;
                    }
                    Poll::Pending => break,
                };
                any = true;
                if self.conns.len() + self.connecting.len() >= MAX_CONNECTIONS {
                    // Room for the newcomer: the oldest connection nobody was admitted on.
                    let oldest = self
                        .conns
                        .iter()
                        .enumerate()
                        .filter_map(|(i, c)| c.unadmitted_since.map(|t| (t, i)))
                        .min();
                    match oldest {
                        Some((_, i)) => {
                            self.conns.swap_remove(i);
                        }
                        None => {
                            debug!("ICE-TCP: {MAX_CONNECTIONS} connections open, {peer} refused");
                            continue;
                        }
                    }
                }
                self.conns.push(Conn {
                    stream,
                    local: l.addr,
                    peer,
                    rbuf: Vec::new(),
                    wbuf: Vec::new(),
                    woff: 0,
                    unadmitted_since: Some(now),
                });
            }
        }
        // Connect.
        let mut i = 0;
        while i < self.connecting.len() {
            let c = &mut self.connecting[i];
            match c.fut.as_mut().poll(cx) {
                Poll::Pending if now < c.deadline => {
                    i += 1;
                    continue;
                }
                Poll::Pending => debug!("ICE-TCP: connecting to {} timed out", c.peer),
                Poll::Ready(Err(e)) => debug!("ICE-TCP: connecting to {}: {e}", c.peer),
                Poll::Ready(Ok(stream)) => {
                    let c = self.connecting.swap_remove(i);
                    self.conns.push(Conn {
                        stream,
                        local: c.local,
                        peer: c.peer,
                        rbuf: Vec::new(),
                        wbuf: c.queued,
                        woff: 0,
                        // We opened it to a candidate the peer announced.
                        unadmitted_since: None,
                    });
                    any = true;
                    continue;
                }
            }
            self.connecting.swap_remove(i);
            any = true;
        }
        // Write and read; drop what failed, ended, or was never admitted.
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            let alive = c.flush(cx, &mut any)
                && c.read(cx, &mut self.inbound, &mut any)
                && c.unadmitted_since.is_none_or(|t| now < t + ADMISSION_TIME);
            if alive {
                i += 1;
            } else {
                debug!("ICE-TCP: connection with {} closed", c.peer);
                self.conns.swap_remove(i);
                any = true;
            }
        }
        any
    }

    /// The earliest time a connection may have to be given up.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let admission = self
            .conns
            .iter()
            .filter_map(|c| c.unadmitted_since.map(|t| t + ADMISSION_TIME));
        let connecting = self.connecting.iter().map(|c| c.deadline);
        admission.chain(connecting).min()
    }

    /// Writes what is queued (best effort, without waiting) and closes everything.
    pub(super) fn close(&mut self, cx: &mut Context<'_>) {
        let mut any = false;
        for c in &mut self.conns {
            c.flush(cx, &mut any);
            let _ = c.stream.poll_shutdown(cx);
        }
        self.conns.clear();
        self.connecting.clear();
        self.listeners.clear();
    }
}

impl Conn {
    /// Writes what it can. Returns false if the connection failed.
    fn flush(&mut self, cx: &mut Context<'_>, any: &mut bool) -> bool {
        while self.woff < self.wbuf.len() {
            match self.stream.poll_write(cx, &self.wbuf[self.woff..]) {
                Poll::Ready(Ok(0)) => return false,
                Poll::Ready(Ok(n)) => {
                    self.woff += n;
                    *any = true;
                }
                Poll::Ready(Err(e)) => {
                    debug!("ICE-TCP write to {}: {e}", self.peer);
                    return false;
                }
                Poll::Pending => break,
            }
        }
        if self.woff == self.wbuf.len() {
            self.wbuf.clear();
            self.woff = 0;
        } else if self.woff > 64 * 1024 {
            self.wbuf.drain(..self.woff);
            self.woff = 0;
        }
        true
    }

    /// Reads and frames what it can (a bounded number of frames). Returns false if the
    /// connection failed or ended.
    fn read(
        &mut self,
        cx: &mut Context<'_>,
        inbound: &mut VecDeque<(SocketAddr, SocketAddr, BytesMut)>,
        any: &mut bool,
    ) -> bool {
        let mut frames = 0;
        loop {
            // Whole frames first.
            while self.rbuf.len() >= 2 {
                let len = u16::from_be_bytes([self.rbuf[0], self.rbuf[1]]) as usize;
                if self.rbuf.len() < 2 + len {
                    break;
                }
                let packet = BytesMut::from(&self.rbuf[2..2 + len]);
                self.rbuf.drain(..2 + len);
                inbound.push_back((self.local, self.peer, packet));
                frames += 1;
                *any = true;
            }
            if frames >= FRAMES_PER_ROUND {
                cx.waker().wake_by_ref(); // more may be waiting: come back
                return true;
            }
            let have = self.rbuf.len();
            // At most one frame's worth (2 + 65535) is ever buffered.
            self.rbuf.resize(have + 16 * 1024, 0);
            match self.stream.poll_read(cx, &mut self.rbuf[have..]) {
                Poll::Ready(Ok(0)) => {
                    self.rbuf.truncate(have);
                    return false;
                }
                Poll::Ready(Ok(n)) => {
                    self.rbuf.truncate(have + n);
                    *any = true;
                }
                Poll::Ready(Err(e)) => {
                    debug!("ICE-TCP read from {}: {e}", self.peer);
                    self.rbuf.truncate(have);
                    return false;
                }
                Poll::Pending => {
                    self.rbuf.truncate(have);
                    return true;
                }
            }
        }
    }
}
