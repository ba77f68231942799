//! The connection driver: one task that owns the `rtc` core, the sockets and the timer.
//!
//! This file holds the poll loop and the drain order; each concern it drives has a file of
//! its own: [`sockets`] (receive, batched send), [`ingress`] (what the network may hand to the
//! core), [`ice`] (candidates), [`channels`] (data channels: creation, delivery into inboxes,
//! send accounting, close).
//!
//! # The sans-I/O rule
//!
//! After every input (a datagram, a timeout, a command) the driver drains every output of the
//! core — events, then received messages, then datagrams to send — before it takes the next
//! input, and re-arms its timer from `poll_timeout` before it sleeps. Work per wake-up is
//! bounded: after [`ITERATIONS_PER_POLL`] rounds it yields to the executor and asks to be
//! polled again.
//!
//! # Idle connections
//!
//! `rtc` 0.21.1's ICE agent asks for a timeout every 200 ms for the life of a connection
//! (`Agent::get_timeout_interval` can only lower its 200 ms start), although once connected it
//! has work only every 2 s (a consent check) and when the peer has been silent for 5 s
//! (`Disconnected`). At thousands of idle connections those ticks are most of the CPU. So the
//! driver lets an idle connection's agent run only every [`IDLE_ICE_TICK`]; see
//! [`Driver::idle_deadline`] for when a connection counts as idle and why no other deadline is
//! delayed.

pub(crate) mod bind;
mod channels;
mod ice;
pub(crate) mod ingress;
mod mdns;
pub(crate) mod media;
pub(crate) mod mux;
pub(crate) mod nat;
mod sdp;
mod sockets;
pub(crate) mod tcp;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::StreamExt;
use log::{debug, trace, warn};
use rtc::{
    peer_connection::{
        RTCPeerConnection,
        configuration::{RTCConfiguration, RTCIceTransportPolicy},
        event::RTCPeerConnectionEvent,
        message::RTCMessage,
        sdp::RTCSdpType,
        state::{
            RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
        },
        transport::{RTCDtlsTransportState, RTCSctpTransportState},
    },
    sansio::Protocol,
    statistics::StatsSelector,
};

pub(crate) use self::sockets::Socket;
use self::{
    channels::Channels,
    ice::Ice,
    ingress::{Credentials, Ingress, MediaGate},
    media::Media,
    nat::{Nat, NatEvent},
    sockets::Io,
};
use crate::{
    error::{CloseReason, CoreError, Error},
    runtime::{AsyncTimer, Runtime},
    shared::{Shared, command::Command, hub::Raw, queue::CommandReceiver},
    sync::{LIVE_DRIVERS, Live, lock},
};

/// Rounds of input + drain per wake-up before yielding to the executor.
const ITERATIONS_PER_POLL: usize = 16;

/// Commands taken per round.
const COMMANDS_PER_ROUND: usize = 64;

/// Minimum spacing of timeouts handled for deadlines that are already in the past, so a core
/// that keeps reporting an expired deadline cannot make the driver spin.
const MIN_IMMEDIATE_TIMEOUT_INTERVAL: Duration = Duration::from_millis(1);

/// The ICE agent's check interval (`rtc-ice` 0.21.1 `DEFAULT_CHECK_INTERVAL`): once it has
/// checked at `t`, its deadline is `t` + this.
const ICE_TICK: Duration = Duration::from_millis(200);

/// How often the ICE agent of an idle connected connection runs: its consent checks (due 2 s
/// after the last) leave every 2–3 s, and a peer that went silent is noticed at most this much
/// later than the agent's 5 s `Disconnected` timeout.
const IDLE_ICE_TICK: Duration = Duration::from_secs(1);

/// Quiet (no command, no message or event from the core, no datagram but STUN) before a
/// connection counts as idle: longer than SCTP's delayed acknowledgement (200 ms), the only
/// timer a received datagram starts once the handshakes are over.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// How long the DTLS handshake may take once ICE has connected. `rtc` reports no DTLS
/// failure (a certificate that does not match the remote fingerprint, a peer that gave up):
/// its handshake just stops. Past this the connection is `Failed` and closes
/// ([`CloseReason::DtlsFailed`]); an ICE restart would not run the handshake again.
pub(crate) const DTLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct DriverConfig {
    pub(crate) event_capacity: usize,
    pub(crate) high_water_mark: usize,
    /// How long a `Failed` connection waits for an ICE restart before it closes itself.
    pub(crate) failed_timeout: Duration,
    /// STUN and TURN servers, and how to use them.
    pub(crate) nat: nat::NatConfig,
    /// Whether mDNS is on (the mode is not `Disabled`), and whether it hides a host address
    /// (gather mode: the mDNS socket opens at once to answer queries for the name).
    pub(crate) mdns: bool,
    pub(crate) mdns_gather: bool,
    /// The connection's place on a [`UdpMux`](crate::UdpMux), if its sockets are a mux's.
    pub(crate) mux: Option<Arc<mux::Membership>>,
    /// Public addresses of a 1:1 NAT announced as server-reflexive candidates, with their
    /// base (the local socket).
    pub(crate) mapped: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// ICE-TCP: the passive candidates' listeners and the active candidates' addresses.
    pub(crate) tcp_listeners: Vec<tcp::Listener>,
    pub(crate) tcp_active: Vec<std::net::SocketAddr>,
    /// Whether UDP host candidates are gathered.
    pub(crate) udp_host: bool,
    /// What to bind again at an ICE restart (interfaces that appeared since); `None` for
    /// a mux's sockets, simulated ones, or addresses rewritten for a 1:1 NAT.
    pub(crate) rebind: Option<bind::BindSpec>,
}

/// The driver future. Completes when the connection is closed.
#[must_use = "the driver does nothing unless spawned"]
pub(crate) struct Driver {
    core: RTCPeerConnection,
    runtime: Arc<dyn Runtime>,
    shared: Arc<Shared>,
    cmd_rx: CommandReceiver,
    timer: Pin<Box<dyn AsyncTimer>>,
    timer_deadline: Option<Instant>,
    last_immediate_timeout: Option<Instant>,
    /// The instant passed to the core's last `handle_timeout`.
    last_core_timeout: Option<Instant>,
    /// The last command, message or event from the core, or datagram other than STUN.
    last_activity: Instant,
    /// [`Ingress::passed_non_stun`] when `last_activity` was last brought up to date.
    non_stun_seen: u64,
    /// ICE is `Connected` or `Completed`.
    ice_up: bool,
    /// The connection state is `Connected` (DTLS is up).
    connected: bool,
    /// When the STUN/TURN jobs last handled a timeout (spaced like the core's).
    last_nat_timeout: Option<Instant>,
    /// Sockets, the inbound filter and batched sends.
    io: Io,
    /// Candidates.
    ice: Ice,
    /// Data channels.
    channels: Channels,
    /// Whether UDP host candidates are gathered.
    udp_host: bool,
    /// Audio and video tracks.
    media: Media,
    /// Run `handle_timeout` once more in this round (the DTLS client's first flight waits
    /// for one after ICE connects).
    kick_timeout: bool,
    /// See [`DriverConfig::failed_timeout`].
    failed_timeout: Duration,
    /// While the connection is `Failed`: when it closes itself.
    failed: Option<Instant>,
    /// While ICE is up and the DTLS handshake has not completed: when it is given up.
    handshake: Option<Instant>,
    /// The connection has been `Connected` (so a later ICE failure is lost consent).
    was_connected: bool,
    /// The SCTP association has been up (so its end is the peer's doing).
    sctp_was_up: bool,
    finished: bool,
    _live: Live,
}

impl Driver {
    pub(crate) fn new(
        core: RTCPeerConnection,
        runtime: Arc<dyn Runtime>,
        shared: Arc<Shared>,
        cmd_rx: CommandReceiver,
        sockets: Vec<Socket>,
        crypto: Option<Arc<dyn rtc::crypto::RTCCryptoProvider>>,
        config: DriverConfig,
    ) -> Self {
        let timer = runtime.new_timer(runtime.now() + Duration::from_secs(3600));
        let last_activity = runtime.now();
        let media = Media::new(shared.clone(), crypto.clone());
        let mut nat = Nat::new(config.nat, runtime.uses_os_network(), crypto.clone());
        if config.mux.is_some() {
            nat.set_shared_sockets(sockets.iter().map(|s| s.addr).collect());
        }
        let ingress = Ingress::new(crypto, shared.filter.clone());
        let mdns = mdns::Mdns::new(runtime.clone(), config.mdns, config.mdns_gather);
        let channels = Channels::new(
            shared.clone(),
            config.high_water_mark,
            config.event_capacity,
        );
        let io = Io::new(
            sockets,
            ingress,
            nat,
            mdns,
            config.mux,
            tcp::IceTcp::new(config.tcp_listeners, config.tcp_active),
            runtime.clone(),
            config.rebind,
            shared.sockets.clone(),
        );
        Self {
            core,
            runtime,
            shared,
            cmd_rx,
            timer,
            timer_deadline: None,
            last_immediate_timeout: None,
            last_core_timeout: None,
            last_activity,
            non_stun_seen: 0,
            ice_up: false,
            connected: false,
            last_nat_timeout: None,
            io,
            udp_host: config.udp_host,
            ice: Ice::new(config.mapped),
            channels,
            media,
            kick_timeout: false,
            failed_timeout: config.failed_timeout,
            failed: None,
            handshake: None,
            was_connected: false,
            sctp_was_up: false,
            finished: false,
            _live: Live::new(&LIVE_DRIVERS),
        }
    }

    fn publish(&self, raw: Raw) {
        lock(&self.shared.hub).publish(raw);
    }

    /// Takes up to a batch of commands. Returns whether any was taken; starts the shutdown when
    /// every handle is gone.
    fn poll_commands(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        for _ in 0..COMMANDS_PER_ROUND {
            match self.cmd_rx.poll_next_unpin(cx) {
                Poll::Ready(Some(cmd)) => {
                    any = true;
                    self.handle_command(cmd, cx);
                    if self.finished {
                        break;
                    }
                }
                Poll::Ready(None) => {
                    debug!("last handle dropped: closing");
                    self.shutdown(cx, CloseReason::Local);
                    return true;
                }
                Poll::Pending => break,
            }
        }
        any
    }

    fn handle_command(&mut self, cmd: Command, cx: &mut Context<'_>) {
        let now = self.runtime.now();
        match cmd {
            Command::CreateOffer { options, reply } => {
                let r = self
                    .core
                    .create_offer(options.map(|o| *o))
                    .map(|d| self.media.created(&mut self.core, d))
                    .map(|d| self.ice.created(d, None))
                    .map_err(invalid_op);
                let _ = reply.send(r);
            }
            Command::CreateAnswer { options, reply } => {
                let r = self
                    .core
                    .create_answer(options.map(|o| *o))
                    .map(|d| self.media.created(&mut self.core, d))
                    .map(|d| self.ice.created(d, self.core.remote_description()))
                    .map_err(invalid_op);
                let _ = reply.send(r);
            }
            Command::SetLocalDescription { desc, reply } => {
                // The core wants back exactly what it created, not the fixed version.
                let desc = self.media.as_created(self.ice.as_created(*desc));
                let ufrag_before = self.local_ufrag();
                let r = self
                    .core
                    .set_local_description(now, desc)
                    .map_err(|e| Error::InvalidSessionDescription(e.into()));
                // New local credentials after the first: an ICE restart (ours, applied here,
                // or the peer's, applied with its offer). Gather again.
                if r.is_ok() && ufrag_before.is_some() && self.local_ufrag() != ufrag_before {
                    debug!("ICE restart: gathering again");
                    self.ice.restarted();
                    self.io.bind_new_interfaces();
                }
                if r.is_ok()
                    && let Some(local) = self.core.local_description()
                    && local.sdp_type == RTCSdpType::Answer
                {
                    let sdp = local.sdp.clone();
                    self.ice.local_answer_set(&sdp);
                }
                if r.is_ok()
                    && let Some(creds) = self
                        .core
                        .local_description()
                        .and_then(|d| Credentials::from_sdp(&d.sdp))
                {
                    self.io.set_local_credentials(creds);
                }
                if r.is_ok() {
                    self.media.refresh(&mut self.core);
                    self.media.reconcile(&mut self.core);
                }
                if r.is_ok() && self.ice.needs_gathering() {
                    self.drain_events(); // the signaling change comes before gathering
                    self.publish(Raw::IceGathering(RTCIceGatheringState::Gathering));
                    let addrs = self.io.addrs();
                    let host: &[_] = if self.io.nat.gathers_host() && self.udp_host {
                        &addrs
                    } else {
                        &[]
                    };
                    self.ice.gather(&mut self.core, host);
                    if self.io.nat.gathers_host() {
                        let passive = self.io.tcp.passive();
                        self.ice
                            .gather_tcp(&mut self.core, &passive, self.io.tcp.active());
                    }
                    self.io.nat.restart(now, &addrs);
                    self.drain_nat();
                }
                // Replied after gathering: the local description now holds the candidates.
                let _ = reply.send(r);
            }
            Command::SetRemoteDescription { desc, reply } => {
                let (desc, candidates) = ice::filter_remote(*desc);
                let r = self
                    .core
                    .set_remote_description(now, desc)
                    .map_err(|e| Error::InvalidSessionDescription(e.into()));
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok && let Some(remote) = self.core.remote_description() {
                    for line in remote.sdp.lines() {
                        if let Some(addr) = line.strip_prefix("a=").and_then(nat::candidate_addr) {
                            self.io.nat.add_peer(now, addr);
                        }
                    }
                    if let Some(creds) = Credentials::from_sdp(&remote.sdp) {
                        self.io.ingress.set_remote(creds);
                    }
                    if remote.sdp_type == RTCSdpType::Answer {
                        self.ice.remote_answer_set(&remote.sdp);
                    }
                    self.io.ingress.set_media(MediaGate::from_sdp(&remote.sdp));
                    let sdp = remote.sdp.clone();
                    self.media.remote_rejections(&mut self.core, &sdp);
                }
                if ok {
                    self.ice.remote_description_set(&mut self.core, candidates);
                    self.media.refresh(&mut self.core);
                    self.media.reconcile(&mut self.core);
                }
            }
            Command::AddIceCandidate { candidate, reply } => {
                if let Some(address) = ice::unusable_address(&candidate.candidate) {
                    let _ = reply.send(Err(Error::UnusableCandidateAddress { address }));
                    return;
                }
                if let Some(addr) = nat::candidate_addr(&candidate.candidate) {
                    // A relay forwards only what its permissions allow.
                    self.io.nat.add_peer(now, addr);
                }
                let r = self.ice.add_remote(&mut self.core, *candidate);
                let _ = reply.send(r);
            }
            Command::LocalDescription { reply } => {
                let desc = self
                    .core
                    .local_description()
                    .map(|d| self.media.rejecting_stopped(&mut self.core, d));
                let remote = self.core.remote_description();
                let desc = desc.map(|d| self.ice.fixed(d, remote));
                let _ = reply.send(Ok(desc));
            }
            Command::RemoteDescription { reply } => {
                let _ = reply.send(Ok(self.core.remote_description().cloned()));
            }
            Command::CreateDataChannel { label, init, reply } => {
                let r = self.channels.create(&mut self.core, &label, *init);
                let _ = reply.send(r);
            }
            Command::Send { id, payload } => self.channels.send(&mut self.core, now, id, payload),
            Command::CloseChannel { id, reply } => {
                self.channels.close(id, now);
                let _ = reply.send(Ok(()));
            }
            Command::Close { reply } => {
                self.shutdown(cx, CloseReason::Local);
                let _ = reply.send(Ok(()));
            }
            Command::AddTrack { track, reply } => {
                let r = self.media.add_track(&mut self.core, *track);
                let _ = reply.send(r);
            }
            Command::WriteRtp { sender, packet } => {
                self.media.write_rtp(&mut self.core, now, sender, *packet)
            }
            Command::RequestKeyframe {
                receiver,
                media_ssrc,
            } => self
                .media
                .request_keyframe(&mut self.core, now, receiver, media_ssrc),
            Command::AddTransceiver {
                kind,
                direction,
                reply,
            } => {
                let r = self.media.add_transceiver(&mut self.core, kind, direction);
                let _ = reply.send(r);
            }
            Command::ReplaceTrack {
                sender,
                track,
                reply,
            } => {
                let r = self.media.replace_track(&mut self.core, sender, *track);
                let _ = reply.send(r);
            }
            Command::SetCodecPreferences {
                transceiver,
                kind,
                codecs,
                reply,
            } => {
                let r = self
                    .media
                    .set_codec_preferences(&mut self.core, transceiver, kind, codecs);
                let _ = reply.send(r);
            }
            Command::StopTransceiver { transceiver, reply } => {
                let r = self.media.stop(&mut self.core, transceiver);
                let _ = reply.send(r);
            }
            Command::SetDirection {
                sender,
                direction,
                reply,
            } => {
                let r = self.media.set_direction(&mut self.core, sender, direction);
                let _ = reply.send(r);
            }
            Command::RemoveTrack { sender, reply } => {
                let r = self.media.remove_track(&mut self.core, sender);
                let _ = reply.send(r);
            }
            Command::RestartIce { reply } => {
                // The core only marks the next offer; `restartIce` also fires
                // negotiationneeded.
                self.core.restart_ice();
                self.publish(Raw::NegotiationNeeded);
                let _ = reply.send(Ok(()));
            }
            Command::SetConfiguration {
                configuration,
                reply,
            } => {
                let r = self.set_configuration(*configuration);
                let _ = reply.send(r);
            }
            Command::Stats { reply } => {
                let report = self.core.get_stats(now, StatsSelector::None);
                let _ = reply.send(Ok(report));
            }
            Command::SelectedCandidatePair { reply } => {
                // Every transport of the connection is the one bundled ICE transport.
                let mut pair = self
                    .core
                    .sctp()
                    .map(|s| s.transport().ice_transport().get_selected_candidate_pair());
                if pair.is_none() {
                    let senders: Vec<_> = self.core.get_senders().collect();
                    pair = senders.into_iter().find_map(|id| {
                        let sender = self.core.rtp_sender(id)?;
                        let transport = sender.transport()?;
                        Some(transport.ice_transport().get_selected_candidate_pair())
                    });
                }
                let pair = pair.flatten();
                let _ = reply.send(Ok(pair.map(Box::new)));
            }
        }
    }

    /// The ICE username fragment of the current local description.
    fn local_ufrag(&self) -> Option<String> {
        let desc = self.core.local_description()?;
        desc.sdp
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
            .map(str::to_owned)
    }

    /// New ICE servers and policy, checked like the builder's, for the next gathering (an ICE
    /// restart); what the core keeps of the configuration is updated too.
    fn set_configuration(&mut self, configuration: RTCConfiguration) -> crate::error::Result<()> {
        let servers = nat::ice_servers(configuration.ice_servers())?;
        let tls = if nat::needs_tls(&servers) {
            Some(nat::tls_config(None)?)
        } else {
            None
        };
        let relay_only = configuration.ice_transport_policy() == RTCIceTransportPolicy::Relay;
        self.core
            .set_configuration(configuration)
            .map_err(invalid_op)?;
        self.io.nat.reconfigure(nat::NatConfig {
            servers,
            timeout: self.io.nat.server_timeout(),
            relay_only,
            refresh_cap: None,
            tls,
        });
        Ok(())
    }

    /// Adds what the STUN and TURN jobs gathered, publishes their errors, and ends gathering
    /// once every job has finished. Returns whether anything happened.
    fn drain_nat(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.io.nat.poll_event() {
            any = true;
            match ev {
                NatEvent::Candidate(init) => self.ice.add_local(&mut self.core, init),
                NatEvent::Error(e) => self.publish(Raw::IceCandidateError(e)),
            }
        }
        if self.io.nat.gathering_done() {
            self.ice.end_of_candidates(&mut self.core);
        }
        any
    }

    /// Drains core events, then received messages. Returns whether anything happened.
    fn drain_core(&mut self) -> bool {
        let mut any = self.drain_nat();
        any |= self.drain_events();
        if self.kick_timeout {
            self.kick_timeout = false;
            let now = self.runtime.now();
            self.last_core_timeout = Some(now);
            if let Err(e) = self.core.handle_timeout(now) {
                debug!("handle_timeout: {e}");
            }
            any |= self.drain_events();
        }
        any |= self.drain_reads();
        any
    }

    /// Moves what the core received to its readers: data-channel messages into inboxes
    /// (until the receive budget is spent: then SCTP's window closes and the remote sender
    /// slows down), RTP into track queues (which never hold reading back).
    fn drain_reads(&mut self) -> bool {
        let mut any = false;
        if self.channels.retry_parked(&mut self.core) {
            while let Some(m) = self.core.poll_read() {
                any = true;
                match m.message {
                    RTCMessage::DataChannelMessage(id, msg) => {
                        if !self.channels.deliver_read(&mut self.core, id, msg) {
                            break;
                        }
                    }
                    RTCMessage::RtpPacket(track_id, packet) => {
                        self.media.deliver(&track_id, packet)
                    }
                    RTCMessage::RtcpPacket(track_id, packets) => {
                        self.media.deliver_rtcp(&track_id, packets)
                    }
                    other => trace!("message ignored: {other:?}"),
                }
            }
        }
        // Data is held back; media is not (real-time: its queues drop their oldest instead).
        while let Some(m) = self.core.poll_media_read() {
            any = true;
            match m.message {
                RTCMessage::RtpPacket(track_id, packet) => self.media.deliver(&track_id, packet),
                RTCMessage::RtcpPacket(track_id, packets) => {
                    self.media.deliver_rtcp(&track_id, packets)
                }
                _ => {}
            }
        }
        self.channels.finish_closed();
        any
    }

    fn drain_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.core.poll_event() {
            any = true;
            self.handle_event(ev);
        }
        any
    }

    fn handle_event(&mut self, ev: RTCPeerConnectionEvent) {
        trace!("core event {ev:?}");
        match ev {
            RTCPeerConnectionEvent::OnNegotiationNeededEvent => {
                self.publish(Raw::NegotiationNeeded)
            }
            RTCPeerConnectionEvent::OnIceCandidateEvent(e) => match e.candidate.to_json() {
                Ok(mut init) => {
                    // `rtc` names no section; name the one the candidates belong to.
                    if let Some((mid, index)) = self
                        .core
                        .local_description()
                        .and_then(|d| ice::candidate_section(&d.sdp))
                    {
                        init.sdp_mid = Some(mid);
                        init.sdp_mline_index = Some(index);
                    }
                    if let Some(addr) = nat::candidate_addr(&init.candidate) {
                        init.url = self.io.nat.url_of(addr);
                    }
                    self.publish(Raw::IceCandidate(Some(init)))
                }
                Err(e) => warn!("local candidate not serializable: {e}"),
            },
            RTCPeerConnectionEvent::OnSignalingStateChangeEvent(s) => {
                self.publish(Raw::Signaling(s))
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(s) => {
                let up = matches!(
                    s,
                    RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
                );
                self.ice_up = up;
                if up && !self.was_connected && self.handshake.is_none() {
                    self.handshake = Some(self.runtime.now() + DTLS_HANDSHAKE_TIMEOUT);
                }
                if up {
                    self.kick_timeout = true;
                    self.io.ice_connected(&mut self.core);
                }
                self.publish(Raw::IceConnection(s))
            }
            RTCPeerConnectionEvent::OnIceGatheringStateChangeEvent(s) => {
                if s == RTCIceGatheringState::Complete {
                    self.publish(Raw::IceCandidate(None));
                }
                self.publish(Raw::IceGathering(s))
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => {
                self.failed = (s == RTCPeerConnectionState::Failed)
                    .then(|| self.runtime.now() + self.failed_timeout);
                self.connected = s == RTCPeerConnectionState::Connected;
                if s != RTCPeerConnectionState::Connecting {
                    self.handshake = None;
                }
                if s == RTCPeerConnectionState::Connected {
                    self.was_connected = true;
                    // Connected means the DTLS handshake has completed.
                    self.io.dtls_complete(&mut self.core);
                    self.media.connected(&mut self.core);
                }
                self.publish(Raw::Connection(s))
            }
            RTCPeerConnectionEvent::OnDataChannel(e) => {
                self.channels.handle_event(&mut self.core, e)
            }
            RTCPeerConnectionEvent::OnTrack(e) => self.media.handle_event(&mut self.core, e),
            other => trace!("core event ignored: {other:?}"),
        }
    }

    /// Handles an expired deadline. Returns whether a timeout was handled.
    fn poll_deadline(&mut self, now: Instant) -> bool {
        let mut any = false;
        let throttled = self
            .last_nat_timeout
            .is_some_and(|last| now < last + MIN_IMMEDIATE_TIMEOUT_INTERVAL);
        if !throttled && self.io.nat.poll_timeout().is_some_and(|d| d <= now) {
            self.last_nat_timeout = Some(now);
            self.io.nat.handle_timeout(now);
            any = true;
        }
        any | self.poll_core_deadline(now)
    }

    /// Handles an expired deadline of the core. Returns whether a timeout was handled.
    fn poll_core_deadline(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.core_deadline(now) else {
            return false;
        };
        if deadline > now {
            return false;
        }
        if let Some(last) = self.last_immediate_timeout
            && now < last + MIN_IMMEDIATE_TIMEOUT_INTERVAL
        {
            return false;
        }
        self.last_immediate_timeout = Some(now);
        self.last_core_timeout = Some(now);
        if let Err(e) = self.core.handle_timeout(now) {
            // e.g. a handshake gave up; the state events tell the application
            debug!("handle_timeout: {e}");
        }
        // Timers fire a few times a second: often enough to notice inboxes that lost their
        // last reader.
        self.channels.discard_unreadable_inboxes();
        if now >= self.last_activity + IDLE_AFTER {
            self.io.release_send_buffers();
        }
        true
    }

    /// The core's next deadline as the driver honours it: the core's own, or for an idle
    /// connection the later one of [`idle_deadline`](Self::idle_deadline).
    fn core_deadline(&mut self, now: Instant) -> Option<Instant> {
        let deadline = self.core.poll_timeout()?;
        Some(self.idle_deadline(deadline, now).unwrap_or(deadline))
    }

    /// When an idle connection handles the core's `deadline`: [`IDLE_ICE_TICK`] after the last
    /// timeout instead of the ICE agent's [`ICE_TICK`]; `None` if the connection is not idle
    /// or the deadline may not be the agent's tick.
    ///
    /// The core reports only the minimum of its timers, so this holds back only a deadline
    /// that is exactly the agent's tick after the last timeout (no other timer is due
    /// sooner), and only when no other timer can be running at all:
    ///
    /// * ICE is connected and the connection state is `Connected`: the DTLS handshake is over,
    ///   and with it DTLS's only timer (flight retransmission);
    /// * SCTP (if there is one) is established (no INIT, COOKIE or SHUTDOWN timer) and every
    ///   data channel is open and [idle](Channels::idle): everything sent has been
    ///   acknowledged (no retransmission timer), no stream reset or opening handshake waits;
    /// * no media transceiver: the interceptors' timers (RTCP reports, NACK) run on their own;
    /// * for [`IDLE_AFTER`] nothing happened but ICE's own STUN: no command (a send, a close,
    ///   an ICE restart), no message or event from the core, no datagram that is not STUN
    ///   (the only one that could have started SCTP's delayed acknowledgement);
    /// * no timeout is forced (`kick_timeout`) and the connection has not failed.
    ///
    /// Anything that changes one of these ends the stretch at once: a command or a datagram
    /// wakes the driver, which then handles the agent's (overdue) deadline right away.
    fn idle_deadline(&mut self, deadline: Instant, now: Instant) -> Option<Instant> {
        let last = self.last_core_timeout?;
        if deadline != last + ICE_TICK {
            return None;
        }
        let non_stun = self.io.ingress.passed_non_stun();
        if non_stun != self.non_stun_seen {
            self.non_stun_seen = non_stun;
            self.last_activity = now;
        }
        let idle = now >= self.last_activity + IDLE_AFTER
            && self.ice_up
            && self.connected
            && !self.kick_timeout
            && self.failed.is_none()
            && self.channels.idle()
            && self
                .core
                .sctp()
                .is_none_or(|s| s.state() == RTCSctpTransportState::Connected)
            && self.core.get_transceivers().next().is_none();
        idle.then_some(last + IDLE_ICE_TICK)
    }

    /// Arms the timer for the core's next deadline. Returns true if it has already fired.
    fn arm_timer(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let core = self.core_deadline(now);
        let nat = self.io.nat.poll_timeout();
        let closing = self.channels.poll_timeout();
        let tcp = self.io.tcp.poll_timeout();
        let failed = self.failed;
        let handshake = self.handshake;
        let Some(mut deadline) = core
            .into_iter()
            .chain(nat)
            .chain(closing)
            .chain(tcp)
            .chain(failed)
            .chain(handshake)
            .min()
        else {
            self.timer_deadline = None;
            return false;
        };
        if deadline <= now {
            let last = self.last_immediate_timeout.unwrap_or(now);
            deadline = deadline.max(last + MIN_IMMEDIATE_TIMEOUT_INTERVAL);
        }
        if self.timer_deadline != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.timer_deadline = Some(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// Whether the peer closed the connection: `rtc` reports its DTLS close_notify only as a
    /// closed DTLS transport (the connection state stays `Connected`), and an SCTP ABORT or
    /// SHUTDOWN as a closed association.
    fn closed_by_peer(&mut self) -> bool {
        if !self.was_connected {
            return false;
        }
        let Some(sctp) = self.core.sctp() else {
            return false;
        };
        if sctp.transport().state() == RTCDtlsTransportState::Closed {
            return true;
        }
        let sctp_up = sctp.state() == RTCSctpTransportState::Connected;
        self.sctp_was_up |= sctp_up;
        // Only while ICE is up: a dead path also ends the association, and that is a failure.
        let ice_up = matches!(
            lock(&self.shared.hub).states.ice_connection,
            RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
        );
        self.sctp_was_up && !sctp_up && ice_up
    }

    /// Why the connection failed: no ICE path, lost consent, or a DTLS failure.
    fn failure(&self) -> CloseReason {
        let ice_failed = matches!(
            lock(&self.shared.hub).states.ice_connection,
            RTCIceConnectionState::Failed | RTCIceConnectionState::Disconnected
        );
        match (ice_failed, self.was_connected) {
            (true, true) => CloseReason::ConsentExpired,
            (true, false) => CloseReason::IceFailed,
            (false, _) => CloseReason::DtlsFailed,
        }
    }

    /// Closes the core, sends its last datagrams, ends every stream and stops.
    fn shutdown(&mut self, cx: &mut Context<'_>, reason: CloseReason) {
        if self.finished {
            return;
        }
        self.finished = true;
        // Recorded first: every call that fails from here on says why.
        self.shared.set_close_reason(reason);
        if let Err(e) = self.core.close() {
            debug!("close: {e}");
        }
        self.drain_events();
        // The close_notify and SCTP ABORT go out; the ports are released: `close()` returns
        // after this.
        let now = self.runtime.now();
        self.io.shutdown(cx, &mut self.core, now);
        let mut hub = lock(&self.shared.hub);
        hub.publish(Raw::Signaling(RTCSignalingState::Closed));
        hub.publish(Raw::IceConnection(RTCIceConnectionState::Closed));
        hub.publish(Raw::Connection(RTCPeerConnectionState::Closed));
        hub.close();
        drop(hub);
        self.channels.shutdown();
        self.media.shutdown();
        self.cmd_rx.close();
        // Commands still queued get no reply: their callers see `Error::Closed`.
        while let Some(cmd) = self.cmd_rx.try_recv() {
            if let Command::Close { reply } = cmd {
                let _ = reply.send(Ok(()));
            }
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.shared.driver_waker.register(cx.waker());
        for _ in 0..ITERATIONS_PER_POLL {
            let commands = this.poll_commands(cx);
            if this.finished {
                return Poll::Ready(());
            }
            let mut progress = commands;
            progress |= this.io.poll_sockets(cx, &mut this.core, &*this.runtime);
            let now = this.runtime.now();
            if commands {
                this.last_activity = now;
            }
            if this.failed.is_some_and(|deadline| now >= deadline) {
                let reason = this.failure();
                debug!("failed for too long: closing ({reason})");
                this.shutdown(cx, reason);
                return Poll::Ready(());
            }
            if this.handshake.is_some_and(|deadline| now >= deadline) {
                debug!("DTLS handshake not done {DTLS_HANDSHAKE_TIMEOUT:?} after ICE: failed");
                this.publish(Raw::Connection(RTCPeerConnectionState::Failed));
                this.shutdown(cx, CloseReason::DtlsFailed);
                return Poll::Ready(());
            }
            progress |= this.io.nat.poll_lookups(cx, now);
            progress |= this.poll_deadline(now);
            if this.drain_core() {
                progress = true;
                this.last_activity = now;
            }
            if progress && this.closed_by_peer() {
                debug!("closed by the remote peer");
                this.shutdown(cx, CloseReason::Remote);
                return Poll::Ready(());
            }
            progress |= this.io.drain_writes(cx, &mut this.core);
            this.channels.refresh_buffered(&mut this.core);
            this.channels.close_drained(&mut this.core, now);
            if !progress {
                if this.arm_timer(cx, now) {
                    continue;
                }
                return Poll::Pending;
            }
        }
        // Bounded work per wake-up: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn invalid_op(e: rtc::shared::error::Error) -> Error {
    Error::InvalidOperation(CoreError::from(e))
}
