//! [`UdpMux`]: one UDP port shared by many connections, as a server needs.

use std::{fmt, net::SocketAddr, sync::Arc};

use crate::{
    driver::{
        bind::expand_bind_addresses,
        mux::{BoundSocket, Membership, MuxShared},
    },
    error::{Error, Result},
    runtime::{Runtime, default_runtime},
};

pub use crate::driver::mux::MuxStats;

/// One UDP port shared by many connections: give it to
/// [`PeerConnectionBuilder::udp_mux`](crate::PeerConnectionBuilder::udp_mux) and every
/// connection built with it uses the mux's socket (and advertises its address as host
/// candidate) instead of binding sockets of its own. A server then needs one open port
/// for all its clients.
///
/// Datagrams are routed to connections by the ICE username of each peer's connectivity
/// checks (verified with the connection's ICE password before the peer's address is
/// trusted), then by that address; see [`MuxStats`] for what was dropped. A connection
/// that closes leaves the mux; the others are not disturbed. The mux's socket closes when
/// the last clone of the `UdpMux` and the last connection on it are gone.
///
/// Connections on a mux gather server-reflexive candidates and TURN relays over TCP or TLS
/// as usual. TURN over UDP needs a socket of its own per connection (the server tells
/// allocations apart by the client's address and port) and is reported as an
/// [`IceCandidateError`](crate::PeerConnectionEvent::IceCandidateError) instead.
///
/// ```no_run
/// # async fn f() -> webrtc_streams::Result<()> {
/// use webrtc_streams::{PeerConnection, UdpMux};
///
/// let mux = UdpMux::bind("0.0.0.0:3478".parse().unwrap())?;
/// // One connection per client, all on port 3478.
/// let pc = PeerConnection::builder().udp_mux(&mux).build().await?;
/// assert!(pc.local_addrs().iter().all(|a| a.port() == 3478));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UdpMux {
    pub(crate) shared: Arc<MuxShared>,
    pub(crate) runtime: Arc<dyn Runtime>,
}

impl fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpMux")
            .field("local_addrs", &self.local_addrs())
            .field("stats", &self.stats())
            .finish()
    }
}

impl UdpMux {
    /// Binds the shared socket on `addr` with the default runtime (see
    /// [`bind_with_runtime`](Self::bind_with_runtime)).
    ///
    /// # Errors
    ///
    /// As [`bind_with_runtime`](Self::bind_with_runtime), and [`Error::NoRuntime`] without
    /// a usable runtime.
    pub fn bind(addr: SocketAddr) -> Result<Self> {
        Self::bind_with_runtime(addr, default_runtime()?)
    }

    /// Binds the shared socket on `addr` with `runtime`, which then also drives the
    /// connections built on the mux (unless their builder names another).
    ///
    /// An unspecified address (`0.0.0.0`, `[::]`) binds one socket per interface address of
    /// that family (loopback and link-local excluded), all on the same port: each is a host
    /// candidate, and answers leave from the address they came to. Port 0 picks a free port.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a socket cannot be bound (e.g. the port is taken on one of the
    /// addresses), [`Error::NoLocalAddress`] if the address expands to nothing.
    pub fn bind_with_runtime(addr: SocketAddr, runtime: Arc<dyn Runtime>) -> Result<Self> {
        let addrs = if runtime.uses_os_network() {
            expand_bind_addresses(&[addr], false)?
        } else {
            vec![addr]
        };
        let mut port = addr.port();
        let mut sockets: Vec<BoundSocket> = Vec::new();
        for a in addrs {
            let sock = runtime.bind_udp(SocketAddr::new(a.ip(), port))?;
            let bound = sock.local_addr()?;
            port = bound.port();
            sockets.push((sock, bound));
        }
        if sockets.is_empty() {
            return Err(Error::NoLocalAddress);
        }
        let crypto = rtc::crypto::default_provider().ok();
        Ok(Self {
            shared: MuxShared::new(sockets, crypto),
            runtime,
        })
    }

    /// Also listens for ICE-TCP on the same addresses and port (TCP), for the connections on
    /// the mux that gather TCP candidates
    /// ([`PeerConnectionBuilder::ice_tcp`](crate::PeerConnectionBuilder::ice_tcp)): their
    /// passive candidates all share these listeners. An accepted connection goes to the
    /// connection its first frame names — a Binding request whose `USERNAME` and
    /// `MESSAGE-INTEGRITY` verify with that connection's ICE credentials — and is closed if it
    /// sends no such frame within 10 s. (Without this, each connection gathering TCP
    /// candidates listens on a port of its own.)
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{PeerConnection, UdpMux};
    ///
    /// // UDP and TCP on port 3478, for every client.
    /// let mux = UdpMux::bind("0.0.0.0:3478".parse().unwrap())?.with_ice_tcp()?;
    /// let pc = PeerConnection::builder().udp_mux(&mux).ice_tcp(true).build().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a TCP port cannot be bound (e.g. it is taken), including
    /// `Unsupported` for a runtime without TCP listeners.
    pub fn with_ice_tcp(self) -> Result<Self> {
        let listeners = self
            .shared
            .addrs()
            .into_iter()
            .map(|a| self.runtime.bind_tcp_listener(a))
            .collect::<std::io::Result<Vec<_>>>()?;
        self.shared.set_tcp(listeners);
        Ok(self)
    }

    /// The addresses of the shared sockets (the host candidates of its connections).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.addrs()
    }

    /// How many connections use the mux, and what it dropped.
    pub fn stats(&self) -> MuxStats {
        self.shared.stats()
    }

    /// A new connection's sockets on the mux.
    pub(crate) fn join(&self) -> (Arc<Membership>, Vec<BoundSocket>) {
        self.shared.join()
    }
}
