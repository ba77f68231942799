//! Server-reflexive and relayed candidates: STUN Binding requests (RFC 8489) and TURN
//! allocations (RFC 8656) sent from the connection's own UDP sockets.
//!
//! Each configured server gets one *job* per local socket: a STUN job asks for the socket's
//! public address and ends; a TURN job allocates a relayed address and then keeps the
//! allocation (refreshes, permissions, channel bindings) until the connection closes, when it
//! releases it. Both are `rtc`'s sans-I/O TURN client, which retransmits its requests on the
//! RFC schedule (RTO 500 ms, doubling).
//!
//! Server replies share the sockets with the ICE peer's traffic. [`Nat::claim`] takes a
//! datagram *before* the inbound filter sees it, and only if it belongs to a job: it arrived
//! on the socket the job sends from, from the job's server address, and — for a STUN Binding
//! response — carries the transaction id of a request the job still waits for. A forged
//! "response" from any other address, or with an unknown transaction id, is not claimed: it
//! goes to the inbound filter, which refuses it like any other stranger, so it can create no
//! candidate.
//!
//! A TURN server reached over TCP (`turn:…?transport=tcp`) or TLS (`turns:`) gets one job per
//! IP family, not per socket: its messages travel on a [`Link`] (one connection to the
//! server) instead of a socket, and only the relay behind it is UDP. Relayed data enters the
//! core exactly as over UDP, with the relayed address as local address. A `turns:` server's
//! certificate is verified against the webpki roots, or the roots given to
//! `PeerConnectionBuilder::tls_root_certificates`; a certificate error, like a connection
//! that fails or is lost, is an error event (701) with a text saying what happened.
//!
//! A server that never answers holds gathering back only until the job's deadline
//! ([`DEFAULT_SERVER_TIMEOUT`], or the builder's setting); then the job ends with a 701 error
//! (the W3C code for "server not reachable") and gathering completes without it.

use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    ops::Range,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use futures::channel::oneshot;
use log::{debug, trace, warn};
use rtc::{
    crypto::RTCCryptoProvider,
    ice::url::{ProtoType, SchemeType, Url},
    peer_connection::{
        event::RTCPeerConnectionIceErrorEvent,
        transport::{
            CandidateConfig, CandidateRelayConfig, CandidateServerReflexiveConfig, RTCIceCandidate,
            RTCIceCandidateInit, RTCIceServer,
        },
    },
    sansio::Protocol,
    shared::{TaggedBytesMut, TransportContext, TransportProtocol},
    stun::message::{CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, Message},
    turn::client::{Client, ClientConfig, Event},
};

use crate::{
    error::{Error, IceServerError, Result},
    runtime::Runtime,
};

mod link;

use link::{Link, TlsSettings};

/// How long gathering waits for a STUN or TURN server that does not answer.
pub(crate) const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(5);

/// W3C `errorCode` for a server that could not be reached (outside the STUN code range).
const UNREACHABLE: u16 = 701;

/// One URL of the configured ICE servers, checked.
#[derive(Debug, Clone)]
pub(crate) struct IceServer {
    /// The URL as configured, for error events and candidates.
    url: String,
    kind: ServerKind,
    host: String,
    port: u16,
    username: String,
    credential: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    Stun,
    /// TURN over UDP.
    Turn,
    /// TURN over TCP (`turn:…?transport=tcp`).
    TurnTcp,
    /// TURN over TLS over TCP (`turns:`).
    TurnTls,
}

impl ServerKind {
    fn is_stream(self) -> bool {
        matches!(self, Self::TurnTcp | Self::TurnTls)
    }
}

/// Checks the configured ICE servers: every URL must parse, have a `stun:`, `turn:` or
/// `turns:` scheme, and TURN servers need a username and a credential.
impl IceServer {
    /// Whether this is a STUN server (server-reflexive candidates only).
    pub(crate) fn is_stun(&self) -> bool {
        self.kind == ServerKind::Stun
    }
}

pub(crate) fn ice_servers(servers: &[RTCIceServer]) -> Result<Vec<IceServer>> {
    let mut out = Vec::new();
    for server in servers {
        for url in &server.urls {
            let invalid = |reason| Error::InvalidIceServer {
                url: url.clone(),
                reason,
            };
            let scheme = url.split(':').next().unwrap_or_default();
            if !matches!(scheme, "stun" | "turn" | "turns") {
                return Err(invalid(IceServerError::UnsupportedScheme(
                    scheme.to_owned(),
                )));
            }
            let parsed =
                Url::parse_url(url).map_err(|e| invalid(IceServerError::Malformed(e.into())))?;
            let kind = match (parsed.scheme, parsed.proto) {
                (SchemeType::Stun, _) => ServerKind::Stun,
                (SchemeType::Turn, ProtoType::Udp) => ServerKind::Turn,
                (SchemeType::Turn, _) => ServerKind::TurnTcp,
                (SchemeType::Turns, _) => ServerKind::TurnTls,
                (other, _) => {
                    return Err(invalid(IceServerError::UnsupportedScheme(
                        other.to_string(),
                    )));
                }
            };
            if kind != ServerKind::Stun
                && (server.username.is_empty() || server.credential.is_empty())
            {
                return Err(invalid(IceServerError::MissingCredentials));
            }
            out.push(IceServer {
                url: url.clone(),
                kind,
                host: parsed.host,
                port: parsed.port,
                username: server.username.clone(),
                credential: server.credential.clone(),
            });
        }
    }
    Ok(out)
}

/// The address of a candidate line (`candidate:<foundation> <component> <transport>
/// <priority> <address> <port> typ ...`), if it is a UDP candidate with an IP address.
pub(super) fn candidate_addr(candidate: &str) -> Option<SocketAddr> {
    let mut fields = candidate
        .trim_start_matches("candidate:")
        .split_whitespace();
    let transport = fields.nth(2)?;
    if !transport.eq_ignore_ascii_case("udp") {
        return None;
    }
    let ip: IpAddr = fields.nth(1)?.parse().ok()?;
    let port: u16 = fields.next()?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// What gathering through servers produced, for the driver to hand to the core and the
/// application.
pub(super) enum NatEvent {
    /// A candidate to add to the core (it trickles it).
    Candidate(RTCIceCandidateInit),
    /// A server failed for one local socket.
    Error(RTCPeerConnectionIceErrorEvent),
}

/// What the application configured for gathering through servers.
pub(crate) struct NatConfig {
    /// The checked STUN and TURN servers.
    pub(crate) servers: Vec<IceServer>,
    /// How long gathering waits for a server.
    pub(crate) timeout: Duration,
    /// `ice_transport_policy: Relay`: relayed candidates only.
    pub(crate) relay_only: bool,
    /// `SettingEngine::turn_allocation_refresh_interval_cap`.
    pub(crate) refresh_cap: Option<Duration>,
    /// TLS client settings for `turns:` servers (`None` when there is none).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// Whether any of `servers` is a `turns:` server (which needs [`tls_config`]).
pub(crate) fn needs_tls(servers: &[IceServer]) -> bool {
    servers.iter().any(|s| s.kind == ServerKind::TurnTls)
}

/// The TLS client settings for `turns:` servers: their certificates are verified against the
/// roots in `roots_pem` (PEM certificates) if given, else against the webpki roots (Mozilla's
/// root program).
pub(crate) fn tls_config(roots_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match roots_pem {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::InvalidTlsRoots(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::InvalidTlsRoots(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(Error::InvalidTlsRoots(
                    "no certificate in the PEM".to_owned(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidTlsRoots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The STUN and TURN jobs of one connection.
pub(super) struct Nat {
    servers: Vec<IceServer>,
    timeout: Duration,
    /// Whether host names may be resolved (the OS network is in use).
    resolve_names: bool,
    crypto: Option<Arc<dyn RTCCryptoProvider>>,
    /// Only relayed candidates (`ice_transport_policy: Relay`).
    relay_only: bool,
    /// Upper bound of the interval between allocation refreshes (the setting engine's).
    refresh_cap: Option<Duration>,
    /// TLS client settings for `turns:` servers.
    tls: Option<Arc<rustls::ClientConfig>>,
    jobs: Vec<Job>,
    /// Connections of released allocations, to end once their last messages are written.
    closing: Vec<Link>,
    /// Relayed addresses whose allocation was lost: what the core still sends from them is
    /// dropped, never sent from a host socket instead (which would reveal it).
    lost: Vec<SocketAddr>,
    /// Host names being resolved, with the local socket each one is for.
    lookups: Vec<Lookup>,
    /// Datagrams for the servers, to send from the socket named by `local_addr`.
    pub(super) outbox: VecDeque<TaggedBytesMut>,
    /// Data the relays received from peers: `(relayed address, peer, data)`.
    pub(super) relayed_in: VecDeque<(SocketAddr, SocketAddr, BytesMut)>,
    events: VecDeque<NatEvent>,
    /// Remote candidates' addresses: every allocation gets a permission for each.
    peers: Vec<SocketAddr>,
    /// Candidates added, as `(address, base)`, to drop redundant ones (RFC 8445 §5.1.3).
    added: Vec<(SocketAddr, SocketAddr)>,
    /// The server URL of each candidate gathered through one (the core's candidate events
    /// do not carry it).
    urls: Vec<(SocketAddr, String)>,
    /// The servers the next gathering uses (`servers` keeps the replaced ones while their
    /// jobs run: jobs name their server by index).
    current: Range<usize>,
    started: bool,
    closed: bool,
    /// Sockets shared with other connections (a mux): no TURN over UDP from them.
    shared: Vec<SocketAddr>,
}

struct Job {
    server: usize,
    local: SocketAddr,
    addr: SocketAddr,
    client: Client,
    state: JobState,
    /// The connection to a TURN server over TCP or TLS; `None` over UDP.
    link: Option<Link>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    /// Waiting for the server until the deadline.
    Waiting(Instant),
    /// A TURN allocation in use.
    Allocated(SocketAddr),
    /// Finished (a STUN answer, an error); removed at the next sweep.
    Done,
}

struct Lookup {
    server: usize,
    local: SocketAddr,
    deadline: Instant,
    rx: oneshot::Receiver<Option<SocketAddr>>,
}

impl Nat {
    pub(super) fn new(
        config: NatConfig,
        resolve_names: bool,
        crypto: Option<Arc<dyn RTCCryptoProvider>>,
    ) -> Self {
        Self {
            current: 0..config.servers.len(),
            servers: config.servers,
            timeout: config.timeout,
            resolve_names,
            crypto,
            relay_only: config.relay_only,
            refresh_cap: config.refresh_cap,
            tls: config.tls,
            jobs: Vec::new(),
            closing: Vec::new(),
            lost: Vec::new(),
            lookups: Vec::new(),
            outbox: VecDeque::new(),
            relayed_in: VecDeque::new(),
            events: VecDeque::new(),
            peers: Vec::new(),
            added: Vec::new(),
            urls: Vec::new(),
            started: false,
            closed: false,
            shared: Vec::new(),
        }
    }

    /// The sockets are shared with other connections (a mux): a TURN server tells
    /// allocations apart by the client's address, so TURN over UDP cannot run from them.
    pub(super) fn set_shared_sockets(&mut self, addrs: Vec<SocketAddr>) {
        self.shared = addrs;
    }

    /// Whether host candidates are gathered (not with the relay-only policy).
    pub(super) fn gathers_host(&self) -> bool {
        !self.relay_only
    }

    /// Starts a job per server and local socket.
    pub(super) fn start(&mut self, now: Instant, sockets: &[SocketAddr]) {
        if self.started {
            return;
        }
        self.started = true;
        for s in sockets {
            if !self.added.contains(&(*s, *s)) {
                self.added.push((*s, *s));
            }
        }
        for server in self.current.clone() {
            let s = self.servers[server].clone();
            if s.kind == ServerKind::Stun && self.relay_only {
                continue;
            }
            let mut families = Vec::new();
            for &local in sockets {
                // A job of this server for this socket still runs (an allocation in use is
                // kept across an ICE restart).
                if self
                    .jobs
                    .iter()
                    .any(|j| j.server == server && j.local == local && j.state != JobState::Done)
                {
                    continue;
                }
                if s.kind == ServerKind::Turn && self.shared.contains(&local) {
                    let text = "TURN over UDP needs a socket of its own; this connection shares \
                                a UdpMux socket (use TURN over TCP or TLS)"
                        .to_owned();
                    self.error(server, local, UNREACHABLE, text);
                    continue;
                }
                // Over TCP or TLS one connection per IP family serves every socket.
                if s.kind.is_stream() {
                    if families.contains(&local.is_ipv4()) {
                        continue;
                    }
                    families.push(local.is_ipv4());
                }
                match s.host.parse::<IpAddr>() {
                    Ok(ip) => self.start_job(now, server, local, SocketAddr::new(ip, s.port)),
                    Err(_) if self.resolve_names => self.lookup(now, server, local),
                    Err(_) => {
                        let text = format!("cannot resolve {}", s.host);
                        self.error(server, local, UNREACHABLE, text);
                    }
                }
            }
        }
    }

    /// Uses `config`'s servers and policy from the next gathering on; running jobs go on
    /// (their allocations are released on close). The TLS settings are kept if there are
    /// some (they may hold the builder's roots).
    pub(super) fn reconfigure(&mut self, config: NatConfig) {
        let first = self.servers.len();
        self.servers.extend(config.servers);
        self.current = first..self.servers.len();
        self.relay_only = config.relay_only;
        if self.tls.is_none() {
            self.tls = config.tls;
        }
    }

    /// How long gathering waits for a server.
    pub(super) fn server_timeout(&self) -> Duration {
        self.timeout
    }

    /// Gathers again after an ICE restart: a STUN request per server and socket (a mapping
    /// may have changed), a TURN allocation where none is in use; the relayed candidates of
    /// allocations in use are announced again (the restarted core may have dropped them).
    pub(super) fn restart(&mut self, now: Instant, sockets: &[SocketAddr]) {
        if self.closed {
            return;
        }
        self.started = false;
        self.added.clear();
        let allocated: Vec<(usize, SocketAddr, SocketAddr)> = self
            .jobs
            .iter()
            .filter(|j| self.current.contains(&j.server))
            .filter_map(|j| match j.state {
                JobState::Allocated(relayed) => Some((j.server, j.local, relayed)),
                _ => None,
            })
            .collect();
        for (server, local, relayed) in allocated {
            self.candidate(server, local, relayed, true);
        }
        self.start(now, sockets);
    }

    /// Whether every job has answered or given up (gathering may complete).
    pub(super) fn gathering_done(&self) -> bool {
        self.started
            && self.lookups.is_empty()
            && !self
                .jobs
                .iter()
                .any(|j| matches!(j.state, JobState::Waiting(_)))
    }

    /// The URL of the server a local candidate at `addr` was gathered through.
    pub(super) fn url_of(&self, addr: SocketAddr) -> Option<String> {
        self.urls
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, url)| url.clone())
    }

    /// The next candidate or error.
    pub(super) fn poll_event(&mut self) -> Option<NatEvent> {
        self.events.pop_front()
    }

    /// Whether `local` is one of the relayed addresses (a datagram the core sends "from" it
    /// goes through the relay).
    pub(super) fn is_relayed(&self, local: SocketAddr) -> bool {
        self.lost.contains(&local)
            || self
                .jobs
                .iter()
                .any(|j| j.state == JobState::Allocated(local))
    }

    /// Sends `data` to `peer` through the relay at `relayed`.
    pub(super) fn send_relayed(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
    ) {
        let Some(i) = self
            .jobs
            .iter()
            .position(|j| j.state == JobState::Allocated(relayed))
        else {
            return;
        };
        let job = &mut self.jobs[i];
        let mut unknown_peer = false;
        match job.client.relay(relayed) {
            Ok(mut relay) => {
                // Without a permission yet (it is being created), the datagram is dropped:
                // ICE retransmits its checks.
                if let Err(e) = relay.send_to(now, data, peer) {
                    trace!("relay {relayed} to {peer}: {e}");
                    unknown_peer = e == rtc::shared::error::Error::ErrNoPermission
                        && !self.peers.contains(&peer);
                }
            }
            Err(e) => debug!("relay {relayed}: {e}"),
        }
        self.collect(now, i);
        if unknown_peer {
            // A peer-reflexive address learnt from the checks (a peer behind a symmetric NAT
            // answers from a mapping it never signalled). The client keeps permissions per
            // address, not per IP as the server does, so this one needs its own.
            self.add_peer(now, peer);
        }
    }

    /// Takes a datagram that belongs to a job (see the module docs). Returns whether it did.
    pub(super) fn claim(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        let Some(i) = self.jobs.iter().position(|j| {
            j.link.is_none()
                && j.local == local
                && j.addr == peer
                && j.state != JobState::Done
                && j.owns(datagram)
        }) else {
            return false;
        };
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: peer,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: BytesMut::from(datagram),
        };
        // A TURN server's Allocate success also says where the request came from (RFC 8656
        // §7.3: XOR-MAPPED-ADDRESS): a server-reflexive candidate, as browsers gather it,
        // without a STUN server.
        let server = self.jobs[i].server;
        let mapped = (self.servers[server].kind == ServerKind::Turn && !self.relay_only)
            .then(|| allocate_mapped_address(datagram))
            .flatten();
        if let Err(e) = self.jobs[i].client.handle_read(msg) {
            debug!("from {peer}: {e}");
        }
        self.collect(now, i);
        if let Some(mapped) = mapped
            && matches!(self.jobs[i].state, JobState::Allocated(_))
            && mapped.is_ipv4() == local.is_ipv4()
        {
            self.candidate(server, local, mapped, false);
        }
        self.sweep();
        true
    }

    /// A remote candidate at `peer`: every allocation permits it.
    pub(super) fn add_peer(&mut self, now: Instant, peer: SocketAddr) {
        if self.peers.contains(&peer) {
            return;
        }
        self.peers.push(peer);
        for i in 0..self.jobs.len() {
            self.permit(now, i, peer);
        }
    }

    /// The earliest instant a job needs [`handle_timeout`](Self::handle_timeout).
    pub(super) fn poll_timeout(&mut self) -> Option<Instant> {
        let jobs = self.jobs.iter_mut().flat_map(|j| {
            let deadline = match j.state {
                JobState::Waiting(d) => Some(d),
                _ => None,
            };
            [deadline, j.client.poll_timeout()]
        });
        let lookups = self.lookups.iter().map(|l| Some(l.deadline));
        jobs.chain(lookups).flatten().min()
    }

    /// Retransmits, refreshes, and gives up on servers past their deadline.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.jobs.len() {
            if let Err(e) = self.jobs[i].client.handle_timeout(now) {
                debug!("turn client: {e}");
            }
            self.collect(now, i);
            if let JobState::Waiting(deadline) = self.jobs[i].state
                && now >= deadline
            {
                let (server, local) = (self.jobs[i].server, self.jobs[i].local);
                self.jobs[i].state = JobState::Done;
                let text = format!(
                    "no answer from {} within {:?}",
                    self.jobs[i].addr, self.timeout
                );
                self.error(server, local, UNREACHABLE, text);
            }
        }
        for i in (0..self.lookups.len()).rev() {
            if now >= self.lookups[i].deadline {
                let l = self.lookups.swap_remove(i);
                let text = format!("cannot resolve {}", self.servers[l.server].host);
                self.error(l.server, l.local, UNREACHABLE, text);
            }
        }
        self.sweep();
    }

    /// Picks up finished host-name lookups. Returns whether any finished.
    pub(super) fn poll_lookups(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < self.lookups.len() {
            let resolved = match std::pin::Pin::new(&mut self.lookups[i].rx).poll(cx) {
                Poll::Ready(r) => r.ok().flatten(),
                Poll::Pending => {
                    i += 1;
                    continue;
                }
            };
            any = true;
            let l = self.lookups.swap_remove(i);
            match resolved {
                Some(addr) => self.start_job(now, l.server, l.local, addr),
                None => {
                    let text = format!("cannot resolve {}", self.servers[l.server].host);
                    self.error(l.server, l.local, UNREACHABLE, text);
                }
            }
        }
        any
    }

    /// Polls the connections to TURN servers over TCP or TLS: connects them, writes what the
    /// clients sent and hands the clients what the servers answered. A connection that fails
    /// ends its job with an error event. Returns whether anything happened.
    pub(super) fn poll_links(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
        runtime: &dyn Runtime,
    ) -> bool {
        let mut any = false;
        let mut messages = Vec::new();
        for i in 0..self.jobs.len() {
            let Some(link) = &mut self.jobs[i].link else {
                continue;
            };
            let polled = link.poll(cx, runtime, &mut messages);
            let (local, addr) = (self.jobs[i].local, self.jobs[i].addr);
            for message in messages.drain(..) {
                let msg = TaggedBytesMut {
                    now,
                    transport: TransportContext {
                        local_addr: local,
                        peer_addr: addr,
                        transport_protocol: TransportProtocol::TCP,
                        ecn: None,
                    },
                    message: BytesMut::from(&message[..]),
                };
                if let Err(e) = self.jobs[i].client.handle_read(msg) {
                    debug!("from {addr}: {e}");
                }
                self.collect(now, i);
            }
            match polled {
                Ok(progress) => any |= progress,
                Err(text) => {
                    any = true;
                    self.link_failed(i, text);
                }
            }
        }
        self.sweep();
        any
    }

    /// Writes what the clients sent onto their connections. Returns whether anything was
    /// written.
    pub(super) fn flush_links(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        for link in self.jobs.iter_mut().filter_map(|j| j.link.as_mut()) {
            any |= link.flush(cx);
        }
        any
    }

    /// Ends the connections of released allocations, after writing (best effort) the release.
    pub(super) fn close_links(&mut self, cx: &mut Context<'_>) {
        for mut link in self.closing.drain(..) {
            link.close(cx);
        }
    }

    /// The server of job `i` is gone (its connection failed, or it stopped answering): while
    /// gathering, the server is unreachable; with an allocation in use, the relayed candidate
    /// is gone (its pairs fail by consent freshness) and an error event says so.
    fn link_failed(&mut self, i: usize, text: String) {
        let (server, local) = (self.jobs[i].server, self.jobs[i].local);
        match self.jobs[i].state {
            JobState::Waiting(_) => self.error(server, local, UNREACHABLE, text),
            JobState::Allocated(relayed) => {
                warn!("TURN allocation {relayed} lost: {text}");
                self.lost.push(relayed);
                self.error(
                    server,
                    local,
                    UNREACHABLE,
                    format!("allocation lost: {text}"),
                );
            }
            JobState::Done => {}
        }
        self.jobs[i].state = JobState::Done;
    }

    /// Releases the allocations (a Refresh with lifetime 0 each; sent best effort) and stops
    /// every job.
    pub(super) fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        for i in 0..self.jobs.len() {
            if let JobState::Allocated(relayed) = self.jobs[i].state
                && let Ok(mut relay) = self.jobs[i].client.relay(relayed)
                && let Err(e) = relay.close(now)
            {
                debug!("release {relayed}: {e}");
            }
            self.collect(now, i);
        }
        self.closing
            .extend(self.jobs.drain(..).filter_map(|j| j.link));
        self.lookups.clear();
    }

    fn start_job(&mut self, now: Instant, server: usize, local: SocketAddr, addr: SocketAddr) {
        if addr.is_ipv4() != local.is_ipv4() {
            return; // a server of the other family is not reachable from this socket
        }
        let s = &self.servers[server];
        let Some(crypto) = self.crypto.clone() else {
            self.error(server, local, UNREACHABLE, "no crypto provider".to_owned());
            return;
        };
        let turn = s.kind != ServerKind::Stun;
        let link = match s.kind {
            ServerKind::TurnTcp => Some(Link::new(addr, None)),
            ServerKind::TurnTls => {
                let host = s.host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_owned());
                match (self.tls.clone(), name) {
                    (Some(config), Ok(name)) => {
                        Some(Link::new(addr, Some(TlsSettings { config, name })))
                    }
                    (None, _) => {
                        self.error(server, local, UNREACHABLE, "no TLS settings".to_owned());
                        return;
                    }
                    (_, Err(e)) => {
                        let text = format!("TLS: invalid server name {host:?}: {e}");
                        self.error(server, local, UNREACHABLE, text);
                        return;
                    }
                }
            }
            ServerKind::Stun | ServerKind::Turn => None,
        };
        let config = ClientConfig {
            stun_serv_addr: if turn {
                String::new()
            } else {
                addr.to_string()
            },
            turn_serv_addr: if turn {
                addr.to_string()
            } else {
                String::new()
            },
            local_addr: local,
            transport_protocol: if link.is_some() {
                TransportProtocol::TCP
            } else {
                TransportProtocol::UDP
            },
            username: s.username.clone(),
            password: s.credential.clone(),
            allocation_refresh_interval_cap: self.refresh_cap,
            ..Default::default()
        };
        let mut client = match Client::new(config, crypto) {
            Ok(c) => c,
            Err(e) => {
                self.error(server, local, UNREACHABLE, e.to_string());
                return;
            }
        };
        let sent = if turn {
            client.allocate(now).map(drop)
        } else {
            client.send_binding_request(now).map(drop)
        };
        if let Err(e) = sent {
            self.error(server, local, UNREACHABLE, e.to_string());
            return;
        }
        self.jobs.push(Job {
            server,
            local,
            addr,
            client,
            state: JobState::Waiting(now + self.timeout),
            link,
        });
        self.collect(now, self.jobs.len() - 1);
    }

    fn lookup(&mut self, now: Instant, server: usize, local: SocketAddr) {
        let (tx, rx) = oneshot::channel();
        let (host, port) = (self.servers[server].host.clone(), self.servers[server].port);
        let want_v4 = local.is_ipv4();
        // Name resolution blocks: it gets a thread of its own, not the driver's.
        let spawned = std::thread::Builder::new()
            .name("webrtc-streams-dns".to_owned())
            .spawn(move || {
                let found = (host.as_str(), port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.find(|a| a.is_ipv4() == want_v4));
                let _ = tx.send(found);
            });
        match spawned {
            Ok(_) => self.lookups.push(Lookup {
                server,
                local,
                deadline: now + self.timeout,
                rx,
            }),
            Err(e) => self.error(server, local, UNREACHABLE, e.to_string()),
        }
    }

    /// Takes the client's datagrams and events of job `i`.
    fn collect(&mut self, now: Instant, i: usize) {
        self.collect_writes(i);
        while let Some(ev) = self.jobs[i].client.poll_event() {
            self.handle_event(now, i, ev);
        }
        self.collect_writes(i);
    }

    /// Takes the client's messages of job `i`: onto its connection, or to the socket outbox.
    fn collect_writes(&mut self, i: usize) {
        let job = &mut self.jobs[i];
        while let Some(tx) = job.client.poll_write() {
            match &mut job.link {
                Some(link) => link.send(&tx.message),
                None => self.outbox.push_back(tx),
            }
        }
    }

    fn handle_event(&mut self, now: Instant, i: usize, ev: Event) {
        let (server, local) = (self.jobs[i].server, self.jobs[i].local);
        let waiting = matches!(self.jobs[i].state, JobState::Waiting(_));
        match ev {
            Event::BindingResponse(_, mapped) if waiting => {
                self.jobs[i].state = JobState::Done;
                self.candidate(server, local, mapped, false);
            }
            Event::AllocateResponse(_, relayed) if waiting => {
                self.jobs[i].state = JobState::Allocated(relayed);
                self.candidate(server, local, relayed, true);
                for peer in self.peers.clone() {
                    self.permit(now, i, peer);
                }
            }
            Event::BindingError(_, e) | Event::AllocateError(_, e) if waiting => {
                self.jobs[i].state = JobState::Done;
                let text = e.to_string();
                self.error(
                    server,
                    local,
                    error_code(&text).unwrap_or(UNREACHABLE),
                    text,
                );
            }
            Event::TransactionTimeout(_) if waiting => {
                self.jobs[i].state = JobState::Done;
                let text = format!("no answer from {}", self.jobs[i].addr);
                self.error(server, local, UNREACHABLE, text);
            }
            Event::TransactionTimeout(_)
                if matches!(self.jobs[i].state, JobState::Allocated(_)) =>
            {
                // A refresh, permission or channel binding went unanswered through every
                // retransmission (about 8 s): the server is gone, and the allocation with it.
                let text = format!("{} stopped answering", self.jobs[i].addr);
                self.link_failed(i, text);
            }
            Event::DataIndicationOrChannelData(_, peer, data) => {
                if let JobState::Allocated(relayed) = self.jobs[i].state {
                    self.relayed_in.push_back((relayed, peer, data));
                }
            }
            Event::CreatePermissionError(_, e) => debug!("permission refused: {e}"),
            other => trace!("turn client event {other:?}"),
        }
    }

    fn permit(&mut self, now: Instant, i: usize, peer: SocketAddr) {
        let JobState::Allocated(relayed) = self.jobs[i].state else {
            return;
        };
        if peer.is_ipv4() != relayed.is_ipv4() {
            return;
        }
        if let Ok(mut relay) = self.jobs[i].client.relay(relayed)
            && let Err(e) = relay.create_permission(now, peer)
        {
            debug!("permission for {peer} on {relayed}: {e}");
        }
        self.collect(now, i);
    }

    /// Adds a server-reflexive or relayed candidate unless it is redundant.
    fn candidate(&mut self, server: usize, local: SocketAddr, addr: SocketAddr, relay: bool) {
        let base = if relay { addr } else { local };
        if self.added.contains(&(addr, base)) {
            return;
        }
        self.added.push((addr, base));
        let url = self.servers[server].url.clone();
        let base_config = CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        };
        // With the relay-only policy the host address stays private (as browsers do).
        let (rel_addr, rel_port) = if self.relay_only {
            (IpAddr::from([0, 0, 0, 0]).to_string(), 0)
        } else {
            (local.ip().to_string(), local.port())
        };
        let candidate = if relay {
            CandidateRelayConfig {
                base_config,
                rel_addr,
                rel_port,
                url: Some(url.clone()),
            }
            .new_candidate_relay()
        } else {
            CandidateServerReflexiveConfig {
                base_config,
                rel_addr,
                rel_port,
                url: Some(url.clone()),
            }
            .new_candidate_server_reflexive()
        };
        match candidate.and_then(|c| RTCIceCandidate::from(&c).to_json()) {
            Ok(mut init) => {
                self.urls.push((addr, url.clone()));
                init.url = Some(url);
                self.events.push_back(NatEvent::Candidate(init));
            }
            Err(e) => warn!("candidate {addr} not made: {e}"),
        }
    }

    fn error(&mut self, server: usize, local: SocketAddr, code: u16, text: String) {
        debug!("{}: {code} {text}", self.servers[server].url);
        self.events
            .push_back(NatEvent::Error(RTCPeerConnectionIceErrorEvent {
                address: if self.relay_only {
                    String::new()
                } else {
                    local.ip().to_string()
                },
                port: local.port(),
                url: self.servers[server].url.clone(),
                error_code: code,
                error_text: text,
            }));
    }

    /// Drops finished jobs.
    fn sweep(&mut self) {
        self.jobs.retain(|j| j.state != JobState::Done);
    }
}

impl Job {
    /// Whether a datagram from this job's server is for it: a STUN response only if it
    /// answers a request of this job still in flight (a STUN and a TURN job may share a
    /// server and a socket); anything else (ChannelData, Data indications) only on an
    /// allocation.
    fn owns(&self, datagram: &[u8]) -> bool {
        let mut msg = Message::new();
        msg.raw = datagram.to_vec();
        if msg.decode().is_ok() {
            let class = msg.typ.class;
            if class == CLASS_SUCCESS_RESPONSE || class == CLASS_ERROR_RESPONSE {
                return self.client.has_transaction(&msg.transaction_id);
            }
        }
        matches!(self.state, JobState::Allocated(_))
    }
}

/// The XOR-MAPPED-ADDRESS of an Allocate success response, if `datagram` is one.
fn allocate_mapped_address(datagram: &[u8]) -> Option<SocketAddr> {
    // Allocate (0x003), success class: message type 0x0103.
    if datagram.len() < 20 || datagram[..2] != [0x01, 0x03] {
        return None;
    }
    let mut m = Message::new();
    m.raw = datagram.to_vec();
    m.decode().ok()?;
    use rtc::stun::message::Getter;
    let mut mapped = rtc::stun::xoraddr::XorMappedAddress::default();
    mapped.get_from(&m).ok()?;
    Some(SocketAddr::new(mapped.ip, mapped.port))
}

/// The STUN error code in the TURN client's error text ("... (error 401: Unauthorized)").
fn error_code(text: &str) -> Option<u16> {
    let rest = &text[text.find("(error ")? + "(error ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|c| (300..700).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(urls: &[&str], username: &str, credential: &str) -> RTCIceServer {
        RTCIceServer {
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            username: username.to_owned(),
            credential: credential.to_owned(),
        }
    }

    #[test]
    fn urls_are_checked() {
        let ok = ice_servers(&[
            server(&["stun:127.0.0.1:3478", "stun:stun.example.org"], "", ""),
            server(&["turn:127.0.0.1:3478?transport=udp"], "u", "p"),
        ])
        .expect("valid");
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[1].port, 3478);
        assert_eq!(ok[2].kind, ServerKind::Turn);
        let reason = |urls: &[&str], u: &str, p: &str| match ice_servers(&[server(urls, u, p)]) {
            Err(Error::InvalidIceServer { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(&["http://example.org"], "", ""),
            IceServerError::UnsupportedScheme("http".to_owned())
        );
        assert!(matches!(
            reason(&["stun:"], "", ""),
            IceServerError::Malformed(_)
        ));
        assert!(matches!(
            reason(&["turn:127.0.0.1?transport=sctp"], "u", "p"),
            IceServerError::Malformed(_)
        ));
        assert_eq!(
            reason(&["turn:127.0.0.1"], "u", ""),
            IceServerError::MissingCredentials
        );
    }

    #[test]
    fn tcp_and_tls_urls_are_stream_servers() {
        let ok = ice_servers(&[server(
            &[
                "turn:127.0.0.1:3478?transport=tcp",
                "turns:turn.example.org:5349?transport=tcp",
                "turns:turn.example.org",
            ],
            "u",
            "p",
        )])
        .expect("valid");
        let kinds: Vec<_> = ok.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                ServerKind::TurnTcp,
                ServerKind::TurnTls,
                ServerKind::TurnTls
            ]
        );
        assert_eq!(ok[2].port, 5349, "turns: defaults to 5349");
        assert!(needs_tls(&ok));
        assert!(!needs_tls(&ok[..1]));
    }

    #[test]
    fn tls_roots_are_checked() {
        assert!(tls_config(None).is_ok(), "webpki roots");
        for bad in [
            &b""[..],
            b"not a certificate",
            b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(tls_config(Some(bad)), Err(Error::InvalidTlsRoots(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn candidate_addresses_are_read() {
        let c = "candidate:1 1 udp 2130706431 127.0.0.1 50993 typ host";
        assert_eq!(candidate_addr(c), Some("127.0.0.1:50993".parse().unwrap()));
        assert_eq!(
            candidate_addr("candidate:1 1 tcp 1 127.0.0.1 9 typ host"),
            None
        );
        assert_eq!(
            candidate_addr("candidate:1 1 udp 1 x.local 9 typ host"),
            None
        );
        assert_eq!(candidate_addr(""), None);
    }

    #[test]
    fn error_codes_are_read_from_the_client_text() {
        assert_eq!(
            error_code("Allocate error response (error 401: Unauthorized)"),
            Some(401)
        );
        assert_eq!(error_code("no code"), None);
        assert_eq!(error_code("(error 99999"), None);
    }
}
