//! The connection's sockets, as the driver drives them: receiving (STUN/TURN server traffic to
//! its [`Nat`] jobs, every other datagram through the inbound filter), keeping early DTLS for
//! replay, and batched sending (through a TURN relay where the core sends from a relayed
//! address).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::BytesMut;
use log::{debug, warn};
use rtc::{
    peer_connection::RTCPeerConnection,
    sansio::Protocol,
    shared::{TaggedBytesMut, TransportContext, TransportProtocol},
};

use super::{
    bind::{BindSpec, expand_bind_addresses},
    ingress::{Credentials, Ingress},
    mdns::{self, Mdns},
    mux::Membership,
    nat::Nat,
    tcp::IceTcp,
};
use crate::{
    runtime::{AsyncUdpSocket, Runtime},
    shared::counters::SocketCounters,
};

/// The largest UDP payload (IPv4: 65,535 − 8 − 20): the receive buffer is never smaller.
const MAX_DATAGRAM: usize = 65_507;
/// Datagrams read per socket per round.
const DATAGRAMS_PER_ROUND: usize = 64;
/// DTLS datagrams kept for replay while ICE is not connected yet, and their total size.
const EARLY_DTLS_MAX: usize = 16;
const EARLY_DTLS_MAX_BYTES: usize = 32 * 1024;
/// RTP/RTCP datagrams kept for replay until the DTLS handshake completes, and their size.
const EARLY_MEDIA_MAX: usize = 256;
const EARLY_MEDIA_MAX_BYTES: usize = 384 * 1024;
/// Upper bound of one send batch (segmentation offload takes at most 64 KiB).
const MAX_BATCH_BYTES: usize = 60 * 1024;
/// Datagrams for STUN/TURN servers waiting for a socket; beyond this the newest are dropped
/// (relayed traffic is as lossy as UDP).
const MAX_SERVER_OUTBOX: usize = 1024;

/// A bound socket and the exact address the core knows it by.
pub(crate) struct Socket {
    pub(crate) sock: Arc<dyn AsyncUdpSocket>,
    pub(crate) addr: SocketAddr,
}

/// Receives in a row that failed with an error other than a transient network one before
/// a socket is given up (no longer read: reading it would only spin).
const FAILED_RECEIVES_IN_A_ROW: u32 = 16;
/// Send-path capacity an idle connection keeps (bytes of batch buffer, queued datagrams):
/// enough for its consent checks.
const KEEP_TX_BUF: usize = 2048;
const KEEP_TX_QUEUE: usize = 8;

/// What the driver keeps per socket about its errors.
#[derive(Debug, Default, Clone, Copy)]
struct SocketHealth {
    /// Receives in a row that failed (non-transient errors).
    failures: u32,
    /// Given up: no longer read.
    failed: bool,
    /// Segmented sends failed: send one datagram at a time from now on.
    no_segments: bool,
}

/// Receive errors that say something about the network or a peer, not the socket: ICMP
/// errors reported on the next receive (RFC 1122), an interrupted call.
fn is_transient(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | TimedOut
            | Interrupted
    )
}

/// The sockets and what travels through them.
pub(super) struct Io {
    sockets: Vec<Socket>,
    /// Receive buffer size the sockets need.
    recv_buffer: usize,
    /// The batch in `tx_buf`, waiting for the socket.
    tx_batch: Option<TxBatch>,
    tx_buf: Vec<u8>,
    /// Datagrams taken from the core and not sent yet, STUN first (see [`Io::next_write`]).
    tx_queue: VecDeque<TaggedBytesMut>,
    /// What may reach the core from the network.
    pub(super) ingress: Ingress,
    /// STUN bindings and TURN allocations on these sockets.
    pub(super) nat: Nat,
    /// The multicast DNS socket (resolving `.local` candidates, answering for our own name).
    mdns: Mdns,
    /// DTLS records that arrived before ICE selected a pair (the core drops those); replayed
    /// once ICE connects instead of waiting a second for the peer's retransmission. Only from
    /// sources the inbound filter authenticated, and bounded. `None` once ICE has connected.
    early_dtls: Option<Vec<TaggedBytesMut>>,
    early_dtls_bytes: usize,
    /// RTP and RTCP that arrived before this side saw the DTLS handshake complete: the core
    /// installs the SRTP keys only when its events are drained, so packets in the same batch
    /// as the handshake's last flight would be dropped. Replayed once it completes; bounded.
    /// `None` once it has.
    early_media: Option<Vec<TaggedBytesMut>>,
    early_media_bytes: usize,
    /// The connection's place on a mux, when the sockets are a mux's.
    mux: Option<Arc<Membership>>,
    /// ICE-TCP candidates and their connections.
    pub(super) tcp: IceTcp,
    runtime: Arc<dyn Runtime>,
    /// What to bind again at an ICE restart.
    rebind: Option<BindSpec>,
    /// Error state per socket (same order as `sockets`).
    health: Vec<SocketHealth>,
    /// What the sockets reported, for `PeerConnection::socket_stats`.
    counters: Arc<SocketCounters>,
    /// Error kinds already logged at `warn` (once per connection and kind).
    logged: Vec<std::io::ErrorKind>,
}

/// Datagrams gathered for one segmented send.
struct TxBatch {
    socket: usize,
    peer: SocketAddr,
    segment_size: usize,
}

impl Io {
    #[allow(clippy::too_many_arguments)] // each is one part of the connection's I/O
    pub(super) fn new(
        sockets: Vec<Socket>,
        ingress: Ingress,
        nat: Nat,
        mdns: Mdns,
        mux: Option<Arc<Membership>>,
        tcp: IceTcp,
        runtime: Arc<dyn Runtime>,
        rebind: Option<BindSpec>,
        counters: Arc<SocketCounters>,
    ) -> Self {
        // Never smaller than the largest UDP datagram: one that does not fit would be
        // truncated without notice (loopback and jumbo-frame links carry more than 2 KiB).
        let recv_buffer = sockets
            .iter()
            .map(|s| s.sock.recv_buffer_size())
            .max()
            .unwrap_or(0)
            .max(MAX_DATAGRAM);
        let health = vec![SocketHealth::default(); sockets.len()];
        Self {
            sockets,
            recv_buffer,
            tx_batch: None,
            tx_buf: Vec::new(),
            tx_queue: VecDeque::new(),
            ingress,
            nat,
            mdns,
            early_dtls: Some(Vec::new()),
            early_dtls_bytes: 0,
            early_media: Some(Vec::new()),
            early_media_bytes: 0,
            mux,
            tcp,
            runtime,
            rebind,
            health,
            counters,
            logged: Vec::new(),
        }
    }

    /// Counts and logs a socket error: `warn` the first time for each kind, `debug` after.
    fn socket_error(&mut self, what: &str, local: SocketAddr, e: &std::io::Error) {
        if self.logged.contains(&e.kind()) {
            debug!("{what} on {local}: {e}");
        } else {
            self.logged.push(e.kind());
            warn!("{what} on {local}: {e} (counted in socket_stats; further ones logged at debug)");
        }
    }

    /// At an ICE restart: binds a socket on every interface address that appeared since the
    /// sockets were bound (the unspecified bind addresses are expanded again), so that the
    /// new gathering offers it. Sockets of addresses that went away stay (they just carry
    /// nothing). Failures are logged: the restart goes on with what is bound.
    pub(super) fn bind_new_interfaces(&mut self) {
        let Some(spec) = &self.rebind else {
            return;
        };
        let addrs = match expand_bind_addresses(&spec.addrs, spec.include_loopback) {
            Ok(a) => a,
            Err(e) => {
                warn!("ICE restart: listing interfaces: {e}");
                return;
            }
        };
        for addr in addrs {
            let known = self.sockets.iter().any(|s| {
                s.addr.ip() == addr.ip() && (addr.port() == 0 || s.addr.port() == addr.port())
            });
            if known {
                continue;
            }
            match spec.bind_one(&*self.runtime, addr).and_then(|sock| {
                let addr = sock.local_addr()?;
                Ok(Socket { sock, addr })
            }) {
                Ok(s) => {
                    debug!("ICE restart: new interface address {}", s.addr);
                    self.recv_buffer = self.recv_buffer.max(s.sock.recv_buffer_size());
                    self.sockets.push(s);
                    self.health.push(SocketHealth::default());
                }
                Err(e) => warn!("ICE restart: binding {addr}: {e}"),
            }
        }
    }

    /// The local ICE credentials of the new local description: the filter checks requests
    /// with them, and a mux routes requests for them here.
    pub(super) fn set_local_credentials(&mut self, creds: Credentials) {
        if let Some(mux) = &self.mux {
            mux.set_credentials(&creds.ufrag, &creds.pwd);
        }
        self.ingress.set_local(creds);
    }

    /// The addresses the sockets are bound to (the host candidates).
    pub(super) fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|s| s.addr).collect()
    }

    /// Gives back what a burst grew in the send path (a batch buffer of up to
    /// [`MAX_BATCH_BYTES`], the queue of datagrams taken from the core) when nothing waits in
    /// it: the driver calls this once the connection has been quiet for a while, so that a
    /// connection that once sent a file does not keep ~50 KiB while it idles.
    pub(super) fn release_send_buffers(&mut self) {
        if self.tx_batch.is_none() && self.tx_buf.capacity() > KEEP_TX_BUF {
            self.tx_buf = Vec::new();
        }
        if self.tx_queue.is_empty() && self.tx_queue.capacity() > KEEP_TX_QUEUE {
            self.tx_queue = VecDeque::new();
        }
        self.note_send_buffers();
    }

    /// ICE has connected: the DTLS records kept until now go to the core.
    pub(super) fn ice_connected(&mut self, core: &mut RTCPeerConnection) {
        for early in self.early_dtls.take().unwrap_or_default() {
            let _ = core.handle_read(early);
        }
        self.early_dtls_bytes = 0;
    }

    /// The DTLS handshake has completed and the SRTP keys are in place: RTP and RTCP that
    /// arrived before go to the core.
    pub(super) fn dtls_complete(&mut self, core: &mut RTCPeerConnection) {
        self.ingress.dtls_complete();
        for early in self.early_media.take().unwrap_or_default() {
            let _ = core.handle_read(early);
        }
        self.early_media_bytes = 0;
    }

    /// Sends what the core has to send. Returns whether anything was sent.
    ///
    /// Consecutive datagrams for the same socket and peer, all of the first one's size (the
    /// last may be shorter), go out as one batch where the socket supports segmentation
    /// offload: one system call instead of dozens.
    pub(super) fn drain_writes(
        &mut self,
        cx: &mut Context<'_>,
        core: &mut RTCPeerConnection,
    ) -> bool {
        let mut any = self.drain_server_outbox(cx);
        loop {
            if self.tx_batch.is_none() {
                let Some(first) = self.next_write(core) else {
                    return any | self.drain_server_outbox(cx);
                };
                if first.transport.transport_protocol == TransportProtocol::TCP {
                    let (local, peer) = (first.transport.local_addr, first.transport.peer_addr);
                    self.tcp
                        .send(&*self.runtime, first.now, local, peer, &first.message);
                    any = true;
                    continue;
                }
                if mdns::is_mdns(first.transport.peer_addr) {
                    self.mdns.send(cx, &first);
                    any = true;
                    continue;
                }
                let local = first.transport.local_addr;
                if self.nat.is_relayed(local) {
                    let peer = first.transport.peer_addr;
                    self.nat
                        .send_relayed(first.now, local, peer, &first.message);
                    any = true;
                    if self.nat.outbox.len() >= DATAGRAMS_PER_ROUND {
                        self.drain_server_outbox(cx);
                    }
                    continue;
                }
                let Some(socket) = self.socket_index(first.transport.local_addr) else {
                    debug!(
                        "no socket for {}: datagram dropped",
                        first.transport.local_addr
                    );
                    continue;
                };
                self.fill_batch(core, socket, first);
            }
            let Some(batch) = &self.tx_batch else {
                continue;
            };
            let (index, peer, segment_size) = (batch.socket, batch.peer, batch.segment_size);
            let sock = &self.sockets[index].sock;
            match sock.poll_send_segments(cx, &self.tx_buf, segment_size, peer) {
                Poll::Ready(r) => {
                    if let Err(e) = r {
                        // The batch is lost, as UDP loses datagrams; the protocols above
                        // retransmit. A segmented send that failed is not tried again.
                        self.counters.count_send_error();
                        let local = self.sockets[index].addr;
                        self.socket_error(&format!("send to {peer}"), local, &e);
                        if self.tx_buf.len() > segment_size {
                            self.health[index].no_segments = true;
                        }
                    }
                    any = true;
                    self.tx_batch = None;
                }
                Poll::Pending => return any,
            }
        }
    }

    /// The next datagram to send. Takes up to a round's worth from the core at a time and
    /// puts the STUN messages among them first, in their order: the core queues the answer
    /// to a nominating check behind the DTLS ClientHello that the nomination started, and
    /// Firefox discards DTLS that arrives before its ICE layer saw that answer (then waits a
    /// second for the retransmission). Bulk data stays in order, so batching is unaffected.
    fn next_write(&mut self, core: &mut RTCPeerConnection) -> Option<TaggedBytesMut> {
        if self.tx_queue.is_empty() {
            while self.tx_queue.len() < DATAGRAMS_PER_ROUND {
                let Some(tx) = core.poll_write() else {
                    break;
                };
                self.tx_queue.push_back(tx);
            }
            stun_first(&mut self.tx_queue);
        }
        self.tx_queue.pop_front()
    }

    /// Starts a batch with `first` and adds the core's next datagrams while they fit.
    fn fill_batch(&mut self, core: &mut RTCPeerConnection, socket: usize, first: TaggedBytesMut) {
        let peer = first.transport.peer_addr;
        let segment_size = first.message.len().max(1);
        let max_segments = if self.health[socket].no_segments {
            1
        } else {
            self.sockets[socket]
                .sock
                .max_send_segments()
                .min(MAX_BATCH_BYTES / segment_size)
                .max(1)
        };
        self.tx_buf.clear();
        self.tx_buf.extend_from_slice(&first.message);
        let mut segments = 1;
        while segments < max_segments {
            let Some(next) = self.next_write(core) else {
                break;
            };
            let fits = next.transport.peer_addr == peer
                && next.transport.transport_protocol == TransportProtocol::UDP
                && !mdns::is_mdns(peer)
                && !self.nat.is_relayed(next.transport.local_addr)
                && self.socket_index(next.transport.local_addr) == Some(socket)
                && !next.message.is_empty()
                && next.message.len() <= segment_size;
            if !fits {
                self.tx_queue.push_front(next);
                break;
            }
            self.tx_buf.extend_from_slice(&next.message);
            segments += 1;
            if next.message.len() < segment_size {
                break; // only the last segment may be short
            }
        }
        self.tx_batch = Some(TxBatch {
            socket,
            peer,
            segment_size,
        });
        self.note_send_buffers();
    }

    /// Publishes what the send path holds ([`SocketStats::send_buffer_bytes`]).
    ///
    /// [`SocketStats::send_buffer_bytes`]: crate::SocketStats::send_buffer_bytes
    fn note_send_buffers(&self) {
        let queue = self.tx_queue.capacity() * std::mem::size_of::<TaggedBytesMut>();
        self.counters
            .set_send_buffer_bytes(self.tx_buf.capacity() + queue);
    }

    /// Sends the datagrams of the STUN/TURN jobs (requests, relayed data). Returns whether
    /// anything was sent.
    fn drain_server_outbox(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = self.nat.flush_links(cx);
        if self.nat.outbox.len() > MAX_SERVER_OUTBOX {
            debug!(
                "server outbox full: {} datagrams dropped",
                self.nat.outbox.len() - MAX_SERVER_OUTBOX
            );
            self.nat.outbox.truncate(MAX_SERVER_OUTBOX);
        }
        while let Some(tx) = self.nat.outbox.front() {
            let Some(socket) = self.socket_index(tx.transport.local_addr) else {
                self.nat.outbox.pop_front();
                continue;
            };
            let sock = &self.sockets[socket].sock;
            let len = tx.message.len().max(1);
            match sock.poll_send_segments(cx, &tx.message, len, tx.transport.peer_addr) {
                Poll::Ready(r) => {
                    if let Err(e) = r {
                        self.counters.count_send_error();
                        let (local, peer) = (tx.transport.local_addr, tx.transport.peer_addr);
                        self.socket_error(&format!("send to {peer}"), local, &e);
                    }
                    any = true;
                    self.nat.outbox.pop_front();
                }
                Poll::Pending => break,
            }
        }
        any
    }

    fn socket_index(&self, local: SocketAddr) -> Option<usize> {
        self.sockets
            .iter()
            .position(|s| s.addr == local)
            .or_else(|| {
                self.sockets
                    .iter()
                    .position(|s| s.addr.is_ipv4() == local.is_ipv4())
            })
    }

    /// Reads what the sockets have (a bounded batch) and hands what the filter admits to the
    /// core. Returns whether anything was received.
    pub(super) fn poll_sockets(
        &mut self,
        cx: &mut Context<'_>,
        core: &mut RTCPeerConnection,
        runtime: &dyn Runtime,
    ) -> bool {
        // One receive buffer per thread, not per connection: it only lives within this call,
        // and with receive coalescing it is 64 KiB.
        thread_local! {
            static RECV_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut links = self.poll_server_links(cx, core, runtime);
        if self.tcp.poll(cx, runtime.now()) {
            links = true;
            let now = runtime.now();
            while let Some((local, peer, packet)) = self.tcp.inbound.pop_front() {
                self.handle_packet(core, now, local, peer, &packet, TransportProtocol::TCP);
            }
        }
        links
            | RECV_BUF.with(|cell| {
                let mut buf = cell.borrow_mut();
                if buf.len() < self.recv_buffer {
                    buf.resize(self.recv_buffer, 0);
                }
                let mut any = self.mdns.poll_recv(cx, core, runtime.now());
                for i in 0..self.sockets.len() {
                    let local = self.sockets[i].addr;
                    if self.health[i].failed {
                        continue;
                    }
                    let mut rounds = 0;
                    while rounds < DATAGRAMS_PER_ROUND {
                        rounds += 1;
                        let (len, stride, peer) =
                            match self.sockets[i].sock.poll_recv_segments(cx, &mut buf) {
                                Poll::Ready(Ok(r)) => r,
                                Poll::Ready(Err(e)) => {
                                    // e.g. ICMP port unreachable reported on the next
                                    // receive: counted, not progress (a socket that only
                                    // fails must not keep the driver spinning).
                                    self.counters.count_receive_error();
                                    self.socket_error("receive", local, &e);
                                    if is_transient(e.kind()) {
                                        continue;
                                    }
                                    let health = &mut self.health[i];
                                    health.failures += 1;
                                    if health.failures >= FAILED_RECEIVES_IN_A_ROW {
                                        health.failed = true;
                                        self.counters.count_failed_socket();
                                        warn!(
                                            "socket {local} failed {} times in a row ({e}): \
                                             no longer read",
                                            FAILED_RECEIVES_IN_A_ROW
                                        );
                                        break;
                                    }
                                    continue;
                                }
                                Poll::Pending => break,
                            };
                        self.health[i].failures = 0;
                        any = true;
                        let now = runtime.now();
                        for datagram in buf[..len.min(buf.len())].chunks(stride.max(1)) {
                            self.handle_datagram(core, now, local, peer, datagram);
                        }
                    }
                }
                any
            })
    }

    /// Polls the TCP and TLS connections to TURN servers; data their relays received enters
    /// like a datagram received on the relayed address. Returns whether anything happened.
    fn poll_server_links(
        &mut self,
        cx: &mut Context<'_>,
        core: &mut RTCPeerConnection,
        runtime: &dyn Runtime,
    ) -> bool {
        let now = runtime.now();
        let any = self.nat.poll_links(cx, now, runtime);
        while let Some((relayed, from, data)) = self.nat.relayed_in.pop_front() {
            self.handle_datagram(core, now, relayed, from, &data);
        }
        any
    }

    fn handle_datagram(
        &mut self,
        core: &mut RTCPeerConnection,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
    ) {
        self.handle_packet(core, now, local, peer, datagram, TransportProtocol::UDP);
    }

    /// A datagram, or a packet framed on an ICE-TCP connection (`protocol` TCP: never a
    /// STUN or TURN server's).
    fn handle_packet(
        &mut self,
        core: &mut RTCPeerConnection,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
        protocol: TransportProtocol,
    ) {
        let packet = || TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: peer,
                transport_protocol: protocol,
                ecn: None,
            },
            message: BytesMut::from(datagram),
        };
        if protocol == TransportProtocol::UDP && self.nat.claim(now, local, peer, datagram) {
            // Data a relay received from peers enters as if the relayed address had received
            // it, through the filter like any other datagram.
            while let Some((relayed, from, data)) = self.nat.relayed_in.pop_front() {
                self.handle_datagram(core, now, relayed, from, &data);
            }
            return;
        }
        if !self.ingress.admit(peer, datagram) {
            return;
        }
        if protocol == TransportProtocol::TCP {
            self.tcp.admitted(peer);
        }
        // RFC 7983: first byte 128..=191 is RTP or RTCP, 20..=63 DTLS.
        if matches!(datagram.first(), Some(128..=191)) && !self.ingress.dtls_done() {
            if let Some(early) = &mut self.early_media
                && early.len() < EARLY_MEDIA_MAX
                && self.early_media_bytes + datagram.len() <= EARLY_MEDIA_MAX_BYTES
            {
                self.early_media_bytes += datagram.len();
                early.push(packet());
            }
            return;
        }
        let is_dtls = matches!(datagram.first(), Some(20..=63));
        if let Some(early) = &mut self.early_dtls
            && is_dtls
            && early.len() < EARLY_DTLS_MAX
            && self.early_dtls_bytes + datagram.len() <= EARLY_DTLS_MAX_BYTES
        {
            self.early_dtls_bytes += datagram.len();
            early.push(packet());
        }
        let _ = core.handle_read(packet());
    }

    /// Sends the core's last datagrams and releases the TURN allocations (best effort: now or
    /// not at all), then releases the ports.
    pub(super) fn shutdown(
        &mut self,
        cx: &mut Context<'_>,
        core: &mut RTCPeerConnection,
        now: Instant,
    ) {
        self.tx_batch = None;
        self.tx_queue.clear();
        self.drain_writes(cx, core);
        self.nat.close(now);
        self.drain_server_outbox(cx);
        self.mdns.close();
        self.nat.close_links(cx);
        self.tcp.close(cx);
        self.sockets.clear();
        self.mux = None;
    }
}

/// Whether `datagram` is a STUN message (RFC 7983: first byte 0..=3; RFC 5389 magic cookie).
fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] < 4 && datagram[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// Moves the STUN messages of `queue` to its front, keeping the order within both parts.
fn stun_first(queue: &mut VecDeque<TaggedBytesMut>) {
    if !queue.iter().skip(1).any(|tx| is_stun(&tx.message)) {
        return;
    }
    let (stun, rest): (VecDeque<_>, VecDeque<_>) =
        queue.drain(..).partition(|tx| is_stun(&tx.message));
    queue.extend(stun);
    queue.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(message: &[u8]) -> TaggedBytesMut {
        TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: BytesMut::from(message),
        }
    }

    fn stun(n: u8) -> Vec<u8> {
        let mut m = vec![0x01, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        m.extend([n; 12]);
        m
    }

    #[test]
    fn stun_goes_first_and_both_parts_keep_their_order() {
        let dtls = |n: u8| vec![22, 0xfe, 0xfd, n];
        let mut q: VecDeque<_> = [dtls(1), stun(1), dtls(2), dtls(3), stun(2)]
            .iter()
            .map(|m| tagged(m))
            .collect();
        stun_first(&mut q);
        let order: Vec<Vec<u8>> = q.iter().map(|t| t.message.to_vec()).collect();
        assert_eq!(order, vec![stun(1), stun(2), dtls(1), dtls(2), dtls(3)]);
    }

    #[test]
    fn short_or_cookieless_datagrams_are_not_stun() {
        assert!(is_stun(&stun(0)));
        assert!(!is_stun(&stun(0)[..19]));
        let mut no_cookie = stun(0);
        no_cookie[4] = 0;
        assert!(!is_stun(&no_cookie));
        let mut dtls = stun(0);
        dtls[0] = 22;
        assert!(!is_stun(&dtls));
    }
}
