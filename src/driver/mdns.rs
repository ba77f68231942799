//! The multicast DNS socket: the core resolves remote `.local` candidates (and, in gather mode,
//! answers for the name hiding our host address), but opens no socket. This one is bound to
//! 224.0.0.251:5353 (address and port shared with other mDNS sockets on the host) and joined to
//! the mDNS group; it is opened when the core first sends a query, or at once when our host
//! address is hidden behind a name (queries for it may come before we send anything).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::BytesMut;
use log::{debug, trace, warn};
use rtc::{
    mdns::{MDNS_PORT, MulticastSocket},
    peer_connection::RTCPeerConnection,
    sansio::Protocol,
    shared::{TaggedBytesMut, TransportContext, TransportProtocol},
};

use crate::runtime::{AsyncUdpSocket, Runtime};

/// Datagrams read from the mDNS socket per round.
const DATAGRAMS_PER_ROUND: usize = 16;
/// The largest mDNS message read (RFC 6762 allows up to 9000 bytes).
const MAX_MESSAGE: usize = 9000;

/// The address the core knows mDNS traffic by (its reads are told apart by the peer's port).
const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), MDNS_PORT);

/// Whether a datagram the core sends goes to the mDNS socket.
pub(super) fn is_mdns(peer: SocketAddr) -> bool {
    peer.port() == MDNS_PORT
}

/// The mDNS socket of one connection.
pub(super) struct Mdns {
    runtime: Arc<dyn Runtime>,
    /// Whether the connection uses mDNS at all (mode not `Disabled`, real network).
    enabled: bool,
    sock: Option<Arc<dyn AsyncUdpSocket>>,
    /// Opening failed once (no multicast route, say): not tried again.
    failed: bool,
    buf: Vec<u8>,
}

impl Mdns {
    /// `enabled`: the connection's mDNS mode is not `Disabled`; `open_now`: the mode hides a
    /// host address, so queries for it must be answered from the start.
    pub(super) fn new(runtime: Arc<dyn Runtime>, enabled: bool, open_now: bool) -> Self {
        let enabled = enabled && runtime.uses_os_network();
        let mut mdns = Self {
            runtime,
            enabled,
            sock: None,
            failed: false,
            buf: Vec::new(),
        };
        if open_now {
            mdns.socket();
        }
        mdns
    }

    fn socket(&mut self) -> Option<&Arc<dyn AsyncUdpSocket>> {
        if self.sock.is_none() && self.enabled && !self.failed {
            match MulticastSocket::new()
                .into_std()
                .and_then(|s| self.runtime.wrap_udp_socket(s))
            {
                Ok(sock) => {
                    debug!("mDNS socket open");
                    self.sock = Some(sock);
                }
                Err(e) => {
                    warn!("mDNS socket: {e}; .local candidates will not resolve");
                    self.failed = true;
                }
            }
        }
        self.sock.as_ref()
    }

    /// Sends one mDNS message of the core (best effort, like the multicast it is).
    pub(super) fn send(&mut self, cx: &mut Context<'_>, tx: &TaggedBytesMut) {
        let peer = tx.transport.peer_addr;
        let Some(sock) = self.socket() else {
            trace!("mDNS message to {peer} dropped: no mDNS socket");
            return;
        };
        match sock.poll_send_to(cx, &tx.message, peer) {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => debug!("mDNS send to {peer}: {e}"),
            Poll::Pending => debug!("mDNS send to {peer}: socket busy, message dropped"),
        }
    }

    /// Hands what the socket received to the core. Returns whether anything was received.
    pub(super) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        core: &mut RTCPeerConnection,
        now: Instant,
    ) -> bool {
        let Some(sock) = self.sock.clone() else {
            return false;
        };
        if self.buf.len() < MAX_MESSAGE {
            self.buf.resize(MAX_MESSAGE, 0);
        }
        let mut any = false;
        for _ in 0..DATAGRAMS_PER_ROUND {
            let (len, peer) = match sock.poll_recv_from(cx, &mut self.buf) {
                Poll::Ready(Ok(r)) => r,
                Poll::Ready(Err(e)) => {
                    trace!("mDNS receive: {e}");
                    any = true;
                    continue;
                }
                Poll::Pending => break,
            };
            any = true;
            // The core tells mDNS from ICE traffic by the peer's port; a responder always
            // sends from 5353, anything else is not for the resolver.
            if peer.port() != MDNS_PORT {
                continue;
            }
            let _ = core.handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: LOCAL,
                    peer_addr: peer,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                },
                message: BytesMut::from(&self.buf[..len.min(self.buf.len())]),
            });
        }
        any
    }

    pub(super) fn close(&mut self) {
        self.sock = None;
    }
}
