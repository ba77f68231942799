//! One UDP port for many connections: the machinery behind [`UdpMux`](crate::UdpMux).
//!
//! A mux owns one socket per local address. Every connection built on it gets a *member*
//! socket per real socket ([`MemberSocket`], an [`AsyncUdpSocket`] like any other, so the
//! driver needs no special case) and the mux routes each received datagram to one member:
//!
//! 1. a STUN Binding request goes to the member whose local ICE ufrag is the first half of
//!    its `USERNAME`, and only if its `MESSAGE-INTEGRITY` verifies with that member's
//!    password. Then (and only then) its source address becomes the member's: an attacker
//!    who knows a ufrag from an SDP but not the password cannot steer another connection's
//!    traffic;
//! 2. a STUN response goes to the member that sent the request (by transaction id), so
//!    every member can ask the same STUN server or peer;
//! 3. anything else goes to the member its source address belongs to. A member's own
//!    first send to an address that belongs to nobody claims it (the answers to its checks
//!    come from there); it never takes an address from another member.
//!
//! What belongs to nobody is dropped and counted ([`MuxStats::unrouted`]).
//!
//! There is no task of its own. Whichever member reads the shared socket (its driver polls it
//! like its own socket) keeps what is its own and moves the rest into the other members'
//! inboxes, waking them: the socket's reader waker is always some live member's, and a member
//! that leaves wakes another so that one reads next. Sending is shared the same way: one member
//! at a time may wait on a full socket; the others wait for it and are woken when it is done,
//! so no waker is ever lost to a socket that keeps only the last one.

use std::{
    collections::{HashMap, VecDeque},
    fmt, io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use rtc::{
    crypto::RTCCryptoProvider,
    stun::{
        attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_USERNAME},
        integrity::MessageIntegrity,
        message::Message,
    },
};

use crate::{
    runtime::{AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket},
    sync::lock,
};

/// Datagrams and bytes waiting in one member's inbox for one socket; beyond them the newest
/// are dropped (UDP semantics: the member's reader is not keeping up).
const INBOX_DATAGRAMS: usize = 512;
const INBOX_BYTES: usize = 1024 * 1024;
/// Transactions remembered for routing STUN responses (oldest forgotten first).
const TRANSACTIONS: usize = 8192;
/// Local ICE credentials kept per member (an ICE restart adds one; the newest are kept).
const CREDENTIALS_PER_MEMBER: usize = 4;
/// Reads of the shared socket per call that only find other members' datagrams, before the
/// reader lets its own driver run again.
const FOREIGN_READS: usize = 32;

/// Counters of a mux.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MuxStats {
    /// Connections currently on the mux.
    pub connections: usize,
    /// Datagrams that belonged to no connection (unknown source or ufrag, failed integrity,
    /// answers to no request), dropped.
    pub unrouted: u64,
    /// Datagrams dropped because their connection's inbox was full (its driver was not
    /// reading fast enough).
    pub overflowed: u64,
}

/// A socket and the address it is known by.
pub(crate) type BoundSocket = (Arc<dyn AsyncUdpSocket>, SocketAddr);

/// What a mux shares between its members.
pub(crate) struct MuxShared {
    sockets: Vec<BoundSocket>,
    crypto: Option<Arc<dyn RTCCryptoProvider>>,
    next_id: AtomicU64,
    state: Mutex<State>,
    /// The ICE-TCP listeners, if the mux has them (see [`MuxShared::set_tcp`]).
    tcp: Mutex<Option<TcpState>>,
}

/// Connections accepted on the mux's TCP listeners and not yet routed, at most.
const TCP_PENDING: usize = 64;
/// How long an accepted connection may take to send its first (STUN) frame.
const TCP_FIRST_FRAME_TIME: Duration = Duration::from_secs(10);

/// The shared ICE-TCP listeners: accepted connections wait here until their first frame, a
/// Binding request, names (and authenticates for) a member.
struct TcpState {
    listeners: Vec<Box<dyn AsyncTcpListener>>,
    pending: Vec<PendingConn>,
    /// The member whose waker the listeners and pending connections hold.
    reader: Option<u64>,
}

struct PendingConn {
    index: usize,
    stream: Box<dyn AsyncTcpStream>,
    peer: SocketAddr,
    buf: Vec<u8>,
    since: Instant,
}

impl fmt::Debug for MuxShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxShared")
            .field("addrs", &self.addrs())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Member>,
    by_ufrag: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    by_transaction: HashMap<[u8; 12], u64>,
    transactions: VecDeque<[u8; 12]>,
    /// Per socket: the member whose waker the socket holds for reading.
    readers: Vec<Option<u64>>,
    /// Per socket: the member waiting on a full send buffer, and who waits behind it.
    senders: Vec<SendSlot>,
    unrouted: u64,
    overflowed: u64,
}

#[derive(Default)]
struct SendSlot {
    holder: Option<u64>,
    waiters: Vec<Waker>,
}

struct Member {
    inboxes: Vec<Inbox>,
    /// TCP connections routed to this member, per listener, and its accept waker.
    tcp_inbox: Vec<VecDeque<(Box<dyn AsyncTcpStream>, SocketAddr)>>,
    tcp_waker: Option<Waker>,
    /// `(ufrag, pwd)`, newest last.
    credentials: Vec<(String, String)>,
    addrs: Vec<SocketAddr>,
}

#[derive(Default)]
struct Inbox {
    datagrams: VecDeque<(SocketAddr, Vec<u8>)>,
    bytes: usize,
    waker: Option<Waker>,
}

impl MuxShared {
    pub(crate) fn new(
        sockets: Vec<BoundSocket>,
        crypto: Option<Arc<dyn RTCCryptoProvider>>,
    ) -> Arc<Self> {
        let n = sockets.len();
        Arc::new(Self {
            sockets,
            crypto,
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                readers: vec![None; n],
                senders: (0..n).map(|_| SendSlot::default()).collect(),
                ..State::default()
            }),
            tcp: Mutex::new(None),
        })
    }

    /// Gives the mux one TCP listener per socket (same order), for the passive ICE-TCP
    /// candidates of its members.
    pub(crate) fn set_tcp(&self, listeners: Vec<Box<dyn AsyncTcpListener>>) {
        *lock(&self.tcp) = Some(TcpState {
            listeners,
            pending: Vec::new(),
            reader: None,
        });
    }

    /// Whether the mux has TCP listeners.
    pub(crate) fn has_tcp(&self) -> bool {
        lock(&self.tcp).is_some()
    }

    /// The addresses of the mux's sockets.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(_, a)| *a).collect()
    }

    pub(crate) fn stats(&self) -> MuxStats {
        let st = lock(&self.state);
        MuxStats {
            connections: st.members.len(),
            unrouted: st.unrouted,
            overflowed: st.overflowed,
        }
    }

    /// A new member: one socket per mux socket, and the membership that registers its
    /// credentials and leaves the mux when dropped.
    pub(crate) fn join(self: &Arc<Self>) -> (Arc<Membership>, Vec<BoundSocket>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.state).members.insert(
            id,
            Member {
                inboxes: (0..self.sockets.len()).map(|_| Inbox::default()).collect(),
                tcp_inbox: (0..self.sockets.len()).map(|_| VecDeque::new()).collect(),
                tcp_waker: None,
                credentials: Vec::new(),
                addrs: Vec::new(),
            },
        );
        let membership = Arc::new(Membership {
            shared: self.clone(),
            id,
        });
        let sockets = (0..self.sockets.len())
            .map(|index| {
                let sock: Arc<dyn AsyncUdpSocket> = Arc::new(MemberSocket {
                    membership: membership.clone(),
                    index,
                });
                (sock, self.sockets[index].1)
            })
            .collect();
        (membership, sockets)
    }
}

impl Membership {
    /// The member's view of the mux's TCP listeners (one per socket), if the mux has them.
    pub(crate) fn tcp_listeners(
        self: &Arc<Self>,
    ) -> Option<Vec<(Box<dyn AsyncTcpListener>, SocketAddr)>> {
        if !self.shared.has_tcp() {
            return None;
        }
        Some(
            self.shared
                .sockets
                .iter()
                .enumerate()
                .map(|(index, (_, addr))| {
                    let l: Box<dyn AsyncTcpListener> = Box::new(MemberTcpListener {
                        membership: self.clone(),
                        index,
                    });
                    (l, *addr)
                })
                .collect(),
        )
    }
}

impl State {
    /// The member a datagram from `peer` belongs to, learning from authentic requests.
    fn route(
        &mut self,
        crypto: Option<&Arc<dyn RTCCryptoProvider>>,
        peer: SocketAddr,
        datagram: &[u8],
    ) -> Option<u64> {
        match stun_class(datagram) {
            Some(StunClass::BindingRequest) => {
                let id = self.authentic_requester(crypto, datagram)?;
                if self.by_addr.insert(peer, id) != Some(id) {
                    // The address moved (or is new): it is this member's now.
                    if let Some(m) = self.members.get_mut(&id)
                        && !m.addrs.contains(&peer)
                    {
                        m.addrs.push(peer);
                    }
                }
                Some(id)
            }
            Some(StunClass::Response) => {
                let mut tid = [0u8; 12];
                tid.copy_from_slice(&datagram[8..20]);
                self.by_transaction.get(&tid).copied()
            }
            _ => self.by_addr.get(&peer).copied(),
        }
    }

    /// The member a Binding request is for, if its integrity verifies with its password.
    fn authentic_requester(
        &self,
        crypto: Option<&Arc<dyn RTCCryptoProvider>>,
        datagram: &[u8],
    ) -> Option<u64> {
        let crypto = crypto?;
        let mut m = Message::new();
        m.raw = datagram.to_vec();
        m.decode().ok()?;
        let username = m.get(ATTR_USERNAME).ok()?;
        let ufrag = std::str::from_utf8(&username).ok()?.split_once(':')?.0;
        let id = *self.by_ufrag.get(ufrag)?;
        let (_, pwd) = self
            .members
            .get(&id)?
            .credentials
            .iter()
            .rev()
            .find(|(u, _)| u == ufrag)?;
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return None;
        }
        MessageIntegrity::check(&mut m, pwd.as_bytes(), crypto.crypto())
            .ok()
            .map(|_| id)
    }

    /// Member `id` sends to `peer`: what comes back from there is its own, unless the
    /// address belongs to another member already.
    fn note_peer(&mut self, id: u64, peer: SocketAddr) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.by_addr.entry(peer) {
            e.insert(id);
            if let Some(m) = self.members.get_mut(&id) {
                m.addrs.push(peer);
            }
        }
    }

    /// Member `id` sends `datagram`: if it is a STUN request, the response is its own.
    fn note_transaction(&mut self, id: u64, datagram: &[u8]) {
        if datagram.first().is_none_or(|b| b & 0xc0 != 0) {
            return; // not STUN: the common case, decided by the first byte
        }
        if matches!(
            stun_class(datagram),
            Some(StunClass::BindingRequest | StunClass::OtherRequest)
        ) {
            let mut tid = [0u8; 12];
            tid.copy_from_slice(&datagram[8..20]);
            if self.by_transaction.insert(tid, id).is_none() {
                self.transactions.push_back(tid);
                if self.transactions.len() > TRANSACTIONS
                    && let Some(old) = self.transactions.pop_front()
                {
                    self.by_transaction.remove(&old);
                }
            }
        }
    }

    /// Puts a datagram into a member's inbox; returns the waker to wake.
    fn deliver(
        &mut self,
        id: u64,
        index: usize,
        peer: SocketAddr,
        datagram: &[u8],
    ) -> Option<Waker> {
        let Some(inbox) = self.members.get_mut(&id).map(|m| &mut m.inboxes[index]) else {
            self.unrouted += 1;
            return None;
        };
        if inbox.datagrams.len() >= INBOX_DATAGRAMS || inbox.bytes + datagram.len() > INBOX_BYTES {
            self.overflowed += 1;
            return None;
        }
        inbox.bytes += datagram.len();
        inbox.datagrams.push_back((peer, datagram.to_vec()));
        inbox.waker.take()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StunClass {
    BindingRequest,
    OtherRequest,
    Response,
    Indication,
}

/// The class of a STUN message (RFC 8489 §5: two zero bits, the magic cookie), if `d` is one.
fn stun_class(d: &[u8]) -> Option<StunClass> {
    if d.len() < 20 || d[0] & 0xc0 != 0 || d[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let t = u16::from_be_bytes([d[0], d[1]]);
    let class = ((t >> 7) & 0b10) | ((t >> 4) & 0b01);
    let method = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    Some(match class {
        0 if method == 1 => StunClass::BindingRequest,
        0 => StunClass::OtherRequest,
        1 => StunClass::Indication,
        _ => StunClass::Response,
    })
}

/// One connection's place on a mux. Registers the connection's ICE credentials; dropping it
/// (with the connection's sockets) takes the connection off the mux.
pub(crate) struct Membership {
    shared: Arc<MuxShared>,
    id: u64,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership").field("id", &self.id).finish()
    }
}

impl Membership {
    /// The connection's local ICE credentials (after each local description): requests
    /// for this ufrag are routed to it from now on.
    pub(crate) fn set_credentials(&self, ufrag: &str, pwd: &str) {
        let mut st = lock(&self.shared.state);
        let st = &mut *st;
        if let Some(&owner) = st.by_ufrag.get(ufrag)
            && owner != self.id
        {
            // Another live connection has this ufrag (the core draws 16 random characters,
            // so only a caller who set them both can do this): keep the first.
            log::warn!("ICE ufrag {ufrag} is in use by another connection on this mux");
            return;
        }
        let Some(m) = st.members.get_mut(&self.id) else {
            return;
        };
        if m.credentials.iter().any(|(u, p)| u == ufrag && p == pwd) {
            return;
        }
        m.credentials.push((ufrag.to_owned(), pwd.to_owned()));
        st.by_ufrag.insert(ufrag.to_owned(), self.id);
        if m.credentials.len() > CREDENTIALS_PER_MEMBER {
            let (old, _) = m.credentials.remove(0);
            if !m.credentials.iter().any(|(u, _)| *u == old) {
                st.by_ufrag.remove(&old);
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut wake = Vec::new();
        {
            let mut st = lock(&self.shared.state);
            let st = &mut *st;
            let Some(m) = st.members.remove(&self.id) else {
                return;
            };
            for (ufrag, _) in &m.credentials {
                if st.by_ufrag.get(ufrag) == Some(&self.id) {
                    st.by_ufrag.remove(ufrag);
                }
            }
            for a in &m.addrs {
                if st.by_addr.get(a) == Some(&self.id) {
                    st.by_addr.remove(a);
                }
            }
            let id = self.id;
            st.by_transaction.retain(|_, owner| *owner != id);
            st.transactions
                .retain(|t| st.by_transaction.contains_key(t));
            for index in 0..st.readers.len() {
                // The socket holds this member's waker: another member must read next.
                if st.readers[index] == Some(id) {
                    st.readers[index] = None;
                    if let Some(w) = st
                        .members
                        .values_mut()
                        .find_map(|m| m.inboxes[index].waker.take())
                    {
                        wake.push(w);
                    }
                }
                let slot = &mut st.senders[index];
                if slot.holder == Some(id) {
                    slot.holder = None;
                    wake.append(&mut slot.waiters);
                }
            }
        }
        // The TCP listeners may hold this member's waker: another member must accept next.
        if let Some(tcp) = lock(&self.shared.tcp).as_mut()
            && tcp.reader == Some(self.id)
        {
            tcp.reader = None;
            let mut st = lock(&self.shared.state);
            if let Some(w) = st.members.values_mut().find_map(|m| m.tcp_waker.take()) {
                wake.push(w);
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }
}

/// A connection's view of one mux TCP listener: yields the connections whose first frame is
/// an authentic Binding request for this connection's ufrag.
struct MemberTcpListener {
    membership: Arc<Membership>,
    index: usize,
}

impl fmt::Debug for MemberTcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberTcpListener")
            .field("member", &self.membership.id)
            .field("index", &self.index)
            .finish()
    }
}

impl AsyncTcpListener for MemberTcpListener {
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn AsyncTcpStream>, SocketAddr)>> {
        let shared = &self.membership.shared;
        let id = self.membership.id;
        let index = self.index;
        let take_own = |waker: &Waker| {
            let mut st = lock(&shared.state);
            let m = st.members.get_mut(&id)?;
            match m.tcp_inbox[index].pop_front() {
                Some(c) => Some(c),
                None => {
                    m.tcp_waker = Some(waker.clone());
                    None
                }
            }
        };
        if let Some(c) = take_own(cx.waker()) {
            return Poll::Ready(Ok(c));
        }
        let mut wake = Vec::new();
        {
            let mut tcp = lock(&shared.tcp);
            let Some(tcp) = tcp.as_mut() else {
                return Poll::Pending;
            };
            tcp.reader = Some(id);
            // Accept what waits, on every listener.
            for (index, l) in tcp.listeners.iter_mut().enumerate() {
                while let Poll::Ready(r) = l.poll_accept(cx) {
                    let Ok((stream, peer)) = r else {
                        break;
                    };
                    if tcp.pending.len() >= TCP_PENDING {
                        tcp.pending.remove(0); // the oldest makes room
                    }
                    tcp.pending.push(PendingConn {
                        index,
                        stream,
                        peer,
                        buf: Vec::new(),
                        since: Instant::now(),
                    });
                }
            }
            // Read first frames; route the complete ones.
            let now = Instant::now();
            let mut i = 0;
            while i < tcp.pending.len() {
                let p = &mut tcp.pending[i];
                match read_first_frame(cx, p) {
                    FirstFrame::Waiting if now < p.since + TCP_FIRST_FRAME_TIME => {
                        i += 1;
                        continue;
                    }
                    FirstFrame::Waiting | FirstFrame::Failed => {
                        tcp.pending.swap_remove(i);
                    }
                    FirstFrame::Complete(len) => {
                        let p = tcp.pending.swap_remove(i);
                        let mut st = lock(&shared.state);
                        let owner =
                            st.authentic_requester(shared.crypto.as_ref(), &p.buf[2..2 + len]);
                        match owner.and_then(|o| st.members.get_mut(&o).map(|m| (o, m))) {
                            Some((_, m)) => {
                                let stream: Box<dyn AsyncTcpStream> = Box::new(Prefixed {
                                    prefix: p.buf,
                                    off: 0,
                                    inner: p.stream,
                                });
                                m.tcp_inbox[p.index].push_back((stream, p.peer));
                                wake.extend(m.tcp_waker.take());
                            }
                            None => st.unrouted += 1,
                        }
                    }
                }
            }
        }
        wake.into_iter().for_each(Waker::wake);
        match take_own(cx.waker()) {
            Some(c) => Poll::Ready(Ok(c)),
            None => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.membership.shared.sockets[self.index].1)
    }
}

enum FirstFrame {
    Waiting,
    Failed,
    /// The first frame's length (the frame is `buf[2..2 + len]`).
    Complete(usize),
}

/// Reads an accepted connection's first RFC 4571 frame into its buffer.
fn read_first_frame(cx: &mut Context<'_>, p: &mut PendingConn) -> FirstFrame {
    loop {
        if p.buf.len() >= 2 {
            let len = u16::from_be_bytes([p.buf[0], p.buf[1]]) as usize;
            if stun_class(&p.buf[2..p.buf.len().min(2 + len)]).is_none() && p.buf.len() >= 22 {
                return FirstFrame::Failed; // not STUN: not ICE
            }
            if p.buf.len() >= 2 + len {
                return FirstFrame::Complete(len);
            }
        }
        let have = p.buf.len();
        p.buf.resize(have + 2048, 0);
        match p.stream.poll_read(cx, &mut p.buf[have..]) {
            Poll::Ready(Ok(n)) if n > 0 => p.buf.truncate(have + n),
            Poll::Ready(_) => return FirstFrame::Failed,
            Poll::Pending => {
                p.buf.truncate(have);
                return FirstFrame::Waiting;
            }
        }
    }
}

/// A stream whose first bytes were already read (the first frame): they are read again first.
#[derive(Debug)]
struct Prefixed {
    prefix: Vec<u8>,
    off: usize,
    inner: Box<dyn AsyncTcpStream>,
}

impl AsyncTcpStream for Prefixed {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.off < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.off);
            buf[..n].copy_from_slice(&self.prefix[self.off..self.off + n]);
            self.off += n;
            if self.off == self.prefix.len() {
                self.prefix = Vec::new();
                self.off = 0;
            }
            return Poll::Ready(Ok(n));
        }
        self.inner.poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.inner.poll_write(cx, buf)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_shutdown(cx)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// A connection's view of one mux socket.
pub(crate) struct MemberSocket {
    membership: Arc<Membership>,
    index: usize,
}

impl fmt::Debug for MemberSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberSocket")
            .field("member", &self.membership.id)
            .field("addr", &self.shared().sockets[self.index].1)
            .finish()
    }
}

impl MemberSocket {
    fn shared(&self) -> &MuxShared {
        &self.membership.shared
    }

    fn socket(&self) -> &Arc<dyn AsyncUdpSocket> {
        &self.shared().sockets[self.index].0
    }
}

impl AsyncUdpSocket for MemberSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.poll_recv_segments(cx, buf)
            .map_ok(|(len, _, peer)| (len, peer))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.poll_send_segments(cx, buf, buf.len().max(1), target)
            .map_ok(|()| buf.len())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared().sockets[self.index].1)
    }

    fn max_send_segments(&self) -> usize {
        self.socket().max_send_segments()
    }

    fn recv_buffer_size(&self) -> usize {
        self.socket().recv_buffer_size()
    }

    fn poll_send_segments(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        segment_size: usize,
        target: SocketAddr,
    ) -> Poll<io::Result<()>> {
        let id = self.membership.id;
        {
            let mut st = lock(&self.shared().state);
            st.note_peer(id, target);
            // Every segment: one batch may carry several checks to the same peer.
            for d in buf.chunks(segment_size.max(1)) {
                st.note_transaction(id, d);
            }
            let slot = &mut st.senders[self.index];
            match slot.holder {
                Some(holder) if holder != id => {
                    if !slot.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        slot.waiters.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                _ => slot.holder = Some(id),
            }
        }
        let r = self
            .socket()
            .poll_send_segments(cx, buf, segment_size, target);
        if r.is_ready() {
            let waiters = {
                let mut st = lock(&self.shared().state);
                let slot = &mut st.senders[self.index];
                slot.holder = None;
                std::mem::take(&mut slot.waiters)
            };
            waiters.into_iter().for_each(Waker::wake);
        }
        r
    }

    fn poll_recv_segments(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, usize, SocketAddr)>> {
        let shared = self.shared();
        let id = self.membership.id;
        for _ in 0..FOREIGN_READS {
            {
                let mut st = lock(&shared.state);
                let Some(inbox) = st.members.get_mut(&id).map(|m| &mut m.inboxes[self.index])
                else {
                    return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
                };
                if let Some((peer, d)) = inbox.datagrams.pop_front() {
                    inbox.bytes -= d.len();
                    let len = d.len().min(buf.len());
                    buf[..len].copy_from_slice(&d[..len]);
                    return Poll::Ready(Ok((len, len, peer)));
                }
                inbox.waker = Some(cx.waker().clone());
                st.readers[self.index] = Some(id);
            }
            let (len, stride, peer) = match self.socket().poll_recv_segments(cx, buf) {
                Poll::Ready(Ok(r)) => r,
                other => return other,
            };
            let stride = stride.max(1);
            let mut wake = Vec::new();
            {
                let mut st = lock(&shared.state);
                let st = &mut *st;
                let owners: Vec<Option<u64>> = buf[..len]
                    .chunks(stride)
                    .map(|d| st.route(shared.crypto.as_ref(), peer, d))
                    .collect();
                if owners.iter().all(|o| *o == Some(id)) {
                    return Poll::Ready(Ok((len, stride, peer)));
                }
                for (d, owner) in buf[..len].chunks(stride).zip(owners) {
                    match owner {
                        Some(owner) => wake.extend(st.deliver(owner, self.index, peer, d)),
                        None => {
                            log::debug!(
                                "mux {}: {} bytes from {peer} belong to no connection ({:?})",
                                shared.sockets[self.index].1,
                                d.len(),
                                stun_class(d)
                            );
                            st.unrouted += 1;
                        }
                    }
                }
            }
            // Our own datagrams among them are in our inbox now (taken first next round).
            wake.into_iter().for_each(Waker::wake);
        }
        // Reading for others only: let this driver run; it is polled again at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_classes() {
        let mut d = vec![0u8; 20];
        d[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        d[1] = 0x01; // Binding request
        assert_eq!(stun_class(&d), Some(StunClass::BindingRequest));
        d[0] = 0x01; // 0x0101: Binding success response
        assert_eq!(stun_class(&d), Some(StunClass::Response));
        d[1] = 0x11; // 0x0111: Binding error response
        assert_eq!(stun_class(&d), Some(StunClass::Response));
        d[0] = 0x00; // 0x0011: Binding indication
        assert_eq!(stun_class(&d), Some(StunClass::Indication));
        d[1] = 0x03; // 0x0003: Allocate request
        assert_eq!(stun_class(&d), Some(StunClass::OtherRequest));
        d[4] = 0; // no magic cookie
        assert_eq!(stun_class(&d), None);
        assert_eq!(stun_class(&[0x80; 40]), None); // RTP
        assert_eq!(stun_class(&[0x16; 40]), None); // DTLS
    }
}
