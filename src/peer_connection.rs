//! The peer connection handle and its builder.

use std::{
    fmt,
    future::Future,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    pin::Pin,
    sync::{Arc, Weak},
    time::Duration,
};

use futures::{Stream, StreamExt};
use rtc::peer_connection::{
    RTCPeerConnectionBuilder,
    certificate::RTCCertificate,
    configuration::{
        RTCAnswerOptions, RTCConfiguration, RTCConfigurationBuilder, RTCIceTransportPolicy,
        RTCOfferOptions,
        interceptor_registry::{Registry, register_default_interceptors},
        media_engine::MediaEngine,
        setting_engine::{SettingEngine, SettingEngineBuilder},
    },
    event::RTCPeerConnectionIceErrorEvent,
    sdp::RTCSessionDescription,
    state::{
        RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
    },
    transport::{RTCIceCandidateInit, RTCIceCandidatePair, RTCIceCandidateType},
};
use rtc::{
    ice::mdns::MulticastDnsMode, rtp_transceiver::RTCRtpTransceiverDirection,
    statistics::report::RTCStatsReport,
};

use crate::{
    IceCandidateEvent,
    data_channel::{
        ChannelRef, ChannelWatch, DEFAULT_HIGH_WATER_MARK, DEFAULT_RECEIVE_BUDGET, DataChannel,
        RTCDataChannelInit,
    },
    driver::{
        Driver, DriverConfig, Socket,
        bind::{BindSpec, expand_bind_addresses},
        media::DeliverRtcp,
        nat::{self, DEFAULT_SERVER_TIMEOUT, NatConfig},
        tcp,
    },
    error::{CoreError, Error, Result},
    event::{self, PeerConnectionEvent},
    media::{LocalTrack, RemoteTrack, RtpCodecKind, RtpSender, Transceiver},
    mux::UdpMux,
    runtime::{Runtime, default_runtime},
    shared::{
        ConnHandle, Shared, channel::ReceiveBudget, command::Command, counters::FilterStats,
        hub::Hub, queue::command_queue,
    },
    stats::StatsStream,
    stream::{DEFAULT_EVENT_CAPACITY, EventStream},
    sync::lock,
};

/// How many commands may wait for the driver before callers wait.
const COMMAND_CAPACITY: usize = 128;

/// A WebRTC peer connection; a cheap, cloneable handle.
///
/// All clones (and all [`DataChannel`]s of the connection) talk to one background driver task
/// that owns the protocol state, the sockets and the timer. Methods are async commands to that
/// task; the state getters read a snapshot and never wait.
///
/// Dropping the last handle closes the connection, as [`close`](Self::close) would.
///
/// # Example
///
/// ```no_run
/// use futures::StreamExt;
/// use webrtc_streams::{PeerConnection, PeerConnectionEvent};
///
/// # async fn run() -> webrtc_streams::Result<()> {
/// let pc = PeerConnection::builder().build().await?;
/// let mut events = pc.events();
/// let dc = pc.create_data_channel("chat", Default::default()).await?;
/// let offer = pc.create_offer().await?;
/// pc.set_local_description(offer).await?;
/// // ... send the offer, receive the answer and candidates ...
/// while let Some(ev) = events.next().await {
///     match ev {
///         PeerConnectionEvent::IceCandidate(c) => { /* signal it */ }
///         PeerConnectionEvent::ConnectionStateChange(s) => println!("{s}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PeerConnection {
    inner: Arc<ConnHandle>,
}

impl PeerConnection {
    /// Starts configuring a connection.
    pub fn builder() -> PeerConnectionBuilder {
        PeerConnectionBuilder::default()
    }

    /// Creates an SDP offer.
    pub async fn create_offer(&self) -> Result<RTCSessionDescription> {
        self.create_offer_with(None).await
    }

    /// Creates an SDP offer with options (for example an ICE restart).
    pub async fn create_offer_with(
        &self,
        options: Option<RTCOfferOptions>,
    ) -> Result<RTCSessionDescription> {
        self.inner
            .request(|reply| Command::CreateOffer {
                options: options.map(Box::new),
                reply,
            })
            .await
    }

    /// Restarts ICE (W3C `restartIce`): the next offer carries new ICE credentials, and
    /// [`negotiation_needed`](Self::negotiation_needed) fires. Once that offer and its answer
    /// are applied, both sides gather again — a host candidate per bound socket, a STUN
    /// request and, where no allocation is in use, a TURN allocation per server (those of
    /// [`set_configuration`](Self::set_configuration) if it was called) — trickle the new
    /// candidates, and check the new pairs; the connection goes back to `Connected`.
    ///
    /// Data channels and tracks live on through the restart (nothing is lost: SCTP
    /// retransmits what the old path dropped). This brings back a connection that went
    /// `Disconnected` or `Failed`, as long as it has not closed itself (see
    /// [`PeerConnectionBuilder::failed_timeout`]). The side that answers a restart offer needs
    /// nothing special: applying the offer restarts its side.
    /// [`create_offer_with`](Self::create_offer_with) with `ice_restart: true` does the same
    /// for one offer, without the negotiation-needed event.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection is closed.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn example(
    /// #     pc: webrtc_streams::PeerConnection,
    /// #     remote: webrtc_streams::PeerConnection,
    /// # ) -> webrtc_streams::Result<()> {
    /// pc.restart_ice().await?;
    /// let offer = pc.create_offer().await?;
    /// pc.set_local_description(offer.clone()).await?;
    /// remote.set_remote_description(offer).await?;
    /// let answer = remote.create_answer().await?;
    /// remote.set_local_description(answer.clone()).await?;
    /// pc.set_remote_description(answer).await?;
    /// // ...and the candidates of both sides go through signaling, as at the start.
    /// # Ok(())
    /// # }
    /// ```
    pub async fn restart_ice(&self) -> Result<()> {
        self.inner
            .request(|reply| Command::RestartIce { reply })
            .await
    }

    /// Changes the configuration (W3C `setConfiguration`): the ICE servers and the ICE
    /// transport policy given here are used from the next gathering on, that is after
    /// [`restart_ice`](Self::restart_ice) (an empty server list means no servers). The
    /// allocations of the former TURN servers stay in use until the connection closes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIceServer`] for a malformed ICE server URL, an unsupported scheme or a
    /// TURN server without credentials (checked as [`PeerConnectionBuilder::build`] does),
    /// [`Error::InvalidOperation`] for a change the W3C algorithm forbids (bundle policy,
    /// RTCP mux policy, certificates, peer identity), [`Error::Closed`] if the connection is
    /// closed. Nothing changes on an error.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn example(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// use webrtc_streams::rtc::peer_connection::{
    ///     configuration::RTCConfigurationBuilder, transport::RTCIceServer,
    /// };
    ///
    /// let configuration = RTCConfigurationBuilder::new()
    ///     .with_ice_servers(vec![RTCIceServer {
    ///         urls: vec!["stun:stun.example.org:3478".to_owned()],
    ///         ..Default::default()
    ///     }])
    ///     .build();
    /// pc.set_configuration(configuration).await?;
    /// pc.restart_ice().await?; // the next offer gathers through the new server
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_configuration(&self, configuration: RTCConfiguration) -> Result<()> {
        nat::ice_servers(configuration.ice_servers())?;
        self.inner
            .request(|reply| Command::SetConfiguration {
                configuration: Box::new(configuration),
                reply,
            })
            .await
    }

    /// Creates an SDP answer to the remote offer.
    pub async fn create_answer(&self) -> Result<RTCSessionDescription> {
        self.create_answer_with(None).await
    }

    /// Creates an SDP answer with options.
    pub async fn create_answer_with(
        &self,
        options: Option<RTCAnswerOptions>,
    ) -> Result<RTCSessionDescription> {
        self.inner
            .request(|reply| Command::CreateAnswer {
                options: options.map(Box::new),
                reply,
            })
            .await
    }

    /// Applies a local description. The first one starts ICE gathering: a host candidate per
    /// bound socket is announced on [`ice_candidates`](Self::ice_candidates), followed by the
    /// end-of-candidates marker. The first one with new ICE credentials (after an ICE
    /// restart, see [`restart_ice`](Self::restart_ice)) gathers again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSessionDescription`] if the core refuses it,
    /// [`Error::SessionDescriptionTooLarge`] beyond [`MAX_SESSION_DESCRIPTION_SIZE`].
    pub async fn set_local_description(&self, desc: RTCSessionDescription) -> Result<()> {
        check_size(&desc)?;
        self.inner
            .request(|reply| Command::SetLocalDescription {
                desc: Box::new(desc),
                reply,
            })
            .await
    }

    /// Applies the remote peer's description.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSessionDescription`] if it cannot be parsed or applied, and
    /// [`Error::SessionDescriptionTooLarge`] beyond [`MAX_SESSION_DESCRIPTION_SIZE`]; the
    /// connection is unchanged.
    ///
    /// Candidates of the description at multicast, broadcast or unspecified addresses are
    /// left out of it (no connectivity check is sent there; see
    /// [`Error::UnusableCandidateAddress`]).
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection, sdp: String) {
    /// use webrtc_streams::{Error, rtc::peer_connection::sdp::RTCSessionDescription};
    /// let answer = RTCSessionDescription::answer(sdp).expect("parsed");
    /// match pc.set_remote_description(answer).await {
    ///     Ok(()) => {}
    ///     Err(Error::SessionDescriptionTooLarge { size, max }) => eprintln!("{size} > {max}"),
    ///     Err(e) => eprintln!("refused: {e}"),
    /// }
    /// # }
    /// ```
    pub async fn set_remote_description(&self, desc: RTCSessionDescription) -> Result<()> {
        check_size(&desc)?;
        self.inner
            .request(|reply| Command::SetRemoteDescription {
                desc: Box::new(desc),
                reply,
            })
            .await
    }

    /// Adds a remote ICE candidate. An empty candidate string marks the end of the remote
    /// candidates. Candidates that arrive before the remote description are kept and applied
    /// with it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCandidate`] for a malformed candidate, [`Error::UnknownMediaSection`] for
    /// one naming a media section the remote description does not have,
    /// [`Error::TooManyEarlyCandidates`] beyond 256 candidates added before the remote
    /// description, [`Error::UnusableCandidateAddress`] for one at a multicast, broadcast or
    /// unspecified address, [`Error::TooManyRemoteCandidates`] beyond 1,000 per remote
    /// description, [`Error::CandidateTooLarge`] beyond [`MAX_CANDIDATE_SIZE`] bytes.
    pub async fn add_ice_candidate(&self, candidate: RTCIceCandidateInit) -> Result<()> {
        let size = candidate.candidate.len() + candidate.sdp_mid.as_ref().map_or(0, String::len);
        if size > MAX_CANDIDATE_SIZE {
            return Err(Error::CandidateTooLarge {
                size,
                max: MAX_CANDIDATE_SIZE,
            });
        }
        self.inner
            .request(|reply| Command::AddIceCandidate {
                candidate: Box::new(candidate),
                reply,
            })
            .await
    }

    /// The local description, with the candidates gathered so far; `None` before
    /// [`set_local_description`](Self::set_local_description).
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// pc.gathering_complete().await?;
    /// if let Some(offer) = pc.local_description().await? {
    ///     println!("{}", offer.sdp);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed connection.
    pub async fn local_description(&self) -> Result<Option<RTCSessionDescription>> {
        self.inner
            .request(|reply| Command::LocalDescription { reply })
            .await
    }

    /// The remote description; `None` before
    /// [`set_remote_description`](Self::set_remote_description).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed connection.
    pub async fn remote_description(&self) -> Result<Option<RTCSessionDescription>> {
        self.inner
            .request(|reply| Command::RemoteDescription { reply })
            .await
    }

    /// Creates a data channel. It opens once the connection is up (or immediately after the
    /// connection is up, for a negotiated channel that the remote side created too).
    ///
    /// `init` selects ordered/unordered delivery, partial reliability (`max_retransmits` or
    /// `max_packet_life_time`), a sub-protocol and out-of-band negotiation (`negotiated: Some(id)`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOperation`] for invalid options (both reliability limits set, a label
    /// too long), [`Error::Closed`] on a closed connection.
    pub async fn create_data_channel(
        &self,
        label: &str,
        init: RTCDataChannelInit,
    ) -> Result<DataChannel> {
        let label = label.to_owned();
        let dc = self
            .inner
            .request(|reply| Command::CreateDataChannel {
                label,
                init: Box::new(init),
                reply,
            })
            .await?;
        Ok(DataChannel {
            conn: self.inner.clone(),
            dc,
        })
    }

    /// Closes the connection: sends the SCTP abort and DTLS close_notify to the peer, closes
    /// every data channel, ends every stream and stops the driver, releasing its sockets.
    /// Idempotent; returns once the driver has stopped.
    ///
    /// The peer notices at once: a connection whose peer closed it (its DTLS `close_notify`,
    /// or an SCTP ABORT or SHUTDOWN) closes as if `close` had been called here, and its calls
    /// fail with [`Error::Closed`]`(`[`CloseReason::Remote`](crate::CloseReason::Remote)`)`.
    pub async fn close(&self) -> Result<()> {
        match self.inner.request(|reply| Command::Close { reply }).await {
            Ok(()) | Err(Error::Closed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every event of the connection, in order, from now on.
    ///
    /// Remote data channels and tracks that arrived while nobody subscribed to this stream,
    /// [`data_channels`](Self::data_channels) or [`tracks`](Self::tracks) were held: this
    /// subscriber receives them first (and the others do not).
    ///
    /// If this subscriber falls behind by more than the event capacity, it receives
    /// [`PeerConnectionEvent::Lagged`] where events were skipped; nobody else is affected.
    pub fn events(&self) -> EventStream<PeerConnectionEvent> {
        event::events(
            &mut lock(&self.inner.shared.hub),
            Arc::downgrade(&self.inner),
        )
    }

    /// Local ICE candidates to signal to the remote peer:
    /// [`IceCandidateEvent::Candidate`], then [`IceCandidateEvent::Complete`] at the end of
    /// each gathering.
    ///
    /// Host candidates come first; server-reflexive (STUN) and relayed (TURN) candidates
    /// follow as the configured servers answer. The end of candidates comes once every server
    /// has answered or timed out ([`PeerConnectionBuilder::ice_server_timeout`]).
    ///
    /// As W3C's `icecandidate` events fire after `setLocalDescription` resolved, subscribing
    /// right after [`set_local_description`](Self::set_local_description) misses nothing:
    /// candidates gathered while nobody subscribed to this stream or
    /// [`events`](Self::events) are held for the next subscriber of either (until the
    /// connection is up or a new gathering starts).
    ///
    /// Nothing is lost silently: a subscriber that falls more than the event capacity
    /// ([`PeerConnectionBuilder::event_capacity`]) behind receives
    /// [`IceCandidateEvent::Lagged`] where candidates or end markers were dropped. Then the
    /// [local description](Self::local_description) still holds every candidate gathered.
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// use futures::StreamExt;
    /// use webrtc_streams::IceCandidateEvent;
    /// pc.set_local_description(pc.create_offer().await?).await?;
    /// let mut candidates = pc.ice_candidates();
    /// while let Some(event) = candidates.next().await {
    ///     match event {
    ///         IceCandidateEvent::Candidate(c) => println!("signal {}", c.candidate),
    ///         IceCandidateEvent::Complete => break,
    ///         _ => { /* Lagged: signal the full local description instead */ }
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn ice_candidates(&self) -> EventStream<IceCandidateEvent> {
        event::ice_candidates(&mut lock(&self.inner.shared.hub))
    }

    /// Failures of the configured STUN and TURN servers, one per server and local socket:
    /// no answer in time (`error_code` 701), a refusal (the server's STUN error code, such as
    /// 401 for wrong TURN credentials), or a server that cannot be used. Also delivered in
    /// [`events`](Self::events) as [`PeerConnectionEvent::IceCandidateError`]. A subscriber
    /// that falls more than the event capacity behind loses the oldest, counted in
    /// [`EventStream::missed`] or, with [`EventStream::with_lag`], marked in band.
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) {
    /// use futures::StreamExt;
    /// let mut errors = pc.ice_candidate_errors();
    /// while let Some(e) = errors.next().await {
    ///     eprintln!("{}: {} {}", e.url, e.error_code, e.error_text);
    /// }
    /// # }
    /// ```
    pub fn ice_candidate_errors(&self) -> EventStream<RTCPeerConnectionIceErrorEvent> {
        event::ice_candidate_errors(&lock(&self.inner.shared.hub))
    }

    /// The connection state: the current one first, then every change.
    ///
    /// State streams conflate: a subscriber that fell more than the event capacity
    /// ([`PeerConnectionBuilder::event_capacity`]) behind skips the changes it can no longer
    /// get and reads the current state next (the skipped ones are counted in
    /// [`EventStream::missed`]). So the last state a reader saw is never older than what it
    /// could have read, and a reader never misses the latest state. The same holds for
    /// [`signaling_states`](Self::signaling_states),
    /// [`ice_connection_states`](Self::ice_connection_states),
    /// [`ice_gathering_states`](Self::ice_gathering_states) and
    /// [`negotiation_needed`](Self::negotiation_needed).
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) {
    /// use futures::StreamExt;
    /// use webrtc_streams::rtc::peer_connection::state::RTCPeerConnectionState;
    /// let mut states = pc.connection_states();
    /// while let Some(state) = states.next().await {
    ///     if state == RTCPeerConnectionState::Connected {
    ///         break;
    ///     }
    /// }
    /// # }
    /// ```
    pub fn connection_states(&self) -> EventStream<RTCPeerConnectionState> {
        event::connection_states(&lock(&self.inner.shared.hub))
    }

    /// The signaling state: the current one first, then every change (conflating, as
    /// [`connection_states`](Self::connection_states)).
    pub fn signaling_states(&self) -> EventStream<RTCSignalingState> {
        event::signaling_states(&lock(&self.inner.shared.hub))
    }

    /// The ICE connection state: the current one first, then every change (conflating, as
    /// [`connection_states`](Self::connection_states)).
    pub fn ice_connection_states(&self) -> EventStream<RTCIceConnectionState> {
        event::ice_connection_states(&lock(&self.inner.shared.hub))
    }

    /// The ICE gathering state: the current one first, then every change (conflating, as
    /// [`connection_states`](Self::connection_states)).
    pub fn ice_gathering_states(&self) -> EventStream<RTCIceGatheringState> {
        event::ice_gathering_states(&lock(&self.inner.shared.hub))
    }

    /// Tracks the remote peer sends: one [`RemoteTrack`] per SSRC (or per RID of a simulcast
    /// sender), as its first packet arrives. Also delivered in [`events`](Self::events) as
    /// [`PeerConnectionEvent::Track`].
    ///
    /// A track that arrived while nobody subscribed to this stream or
    /// [`events`](Self::events) was held (as [`data_channels`](Self::data_channels) holds
    /// channels): this subscriber receives it first. Its packet queue keeps the newest packets
    /// meanwhile. A subscriber that falls more than the event capacity behind loses the
    /// oldest announcements, counted in [`EventStream::missed`] or, with
    /// [`EventStream::with_lag`], marked in band where they were lost.
    pub fn tracks(&self) -> EventStream<RemoteTrack> {
        event::tracks(
            &mut lock(&self.inner.shared.hub),
            Arc::downgrade(&self.inner),
        )
    }

    /// Adds a local audio or video track (on a free transceiver of its kind, or a new one) and
    /// returns its sender. Negotiate afterwards ([`negotiation_needed`](Self::negotiation_needed)
    /// fires); the sender's writes wait until the connection is up.
    ///
    /// The codec must be registered in the connection's media engine
    /// ([`PeerConnectionBuilder::default_codecs`]).
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{media::LocalTrack, rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS};
    /// let audio = pc
    ///     .add_track(LocalTrack::audio("mic", LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// For a simulcast track ([`LocalTrack::with_simulcast`]) the returned handle writes the
    /// first encoding; [`RtpSender::layer`] gives the others.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOperation`] if the core refuses the track, or for simulcast RIDs that
    /// are not valid (fewer than two, repeated, empty, longer than 16 bytes, other characters
    /// than letters, digits, `-` and `_`); [`Error::Closed`] on a closed connection.
    pub async fn add_track(&self, track: LocalTrack) -> Result<RtpSender> {
        let shared = self
            .inner
            .request(|reply| Command::AddTrack {
                track: Box::new(track.spec),
                reply,
            })
            .await?;
        Ok(RtpSender {
            conn: self.inner.clone(),
            shared,
            layer: 0,
        })
    }

    /// Adds a transceiver of `kind` without a track, in `direction`: typically
    /// [`Recvonly`](RTCRtpTransceiverDirection::Recvonly), to receive a track of that kind
    /// when this side makes the offer but sends nothing. Negotiate afterwards. The returned
    /// [`Transceiver`] sets codec preferences and stops it.
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{media::RtpCodecKind, rtc::rtp_transceiver::RTCRtpTransceiverDirection};
    /// let video = pc
    ///     .add_transceiver(RtpCodecKind::Video, RTCRtpTransceiverDirection::Recvonly)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOperation`] if the core refuses, [`Error::Closed`] on a closed
    /// connection.
    pub async fn add_transceiver(
        &self,
        kind: RtpCodecKind,
        direction: RTCRtpTransceiverDirection,
    ) -> Result<Transceiver> {
        let id = self
            .inner
            .request(|reply| Command::AddTransceiver {
                kind,
                direction,
                reply,
            })
            .await?;
        Ok(Transceiver::new(self.inner.clone(), id, kind))
    }

    /// Stops sending `sender`'s track. Its writes fail from now on; renegotiate
    /// ([`negotiation_needed`](Self::negotiation_needed) fires) to tell the remote peer, whose
    /// [`RemoteTrack`] then ends.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOperation`] if the core refuses, [`Error::Closed`] on a closed
    /// connection.
    pub async fn remove_track(&self, sender: &RtpSender) -> Result<()> {
        let id = sender.shared.id;
        self.inner
            .request(|reply| Command::RemoveTrack { sender: id, reply })
            .await
    }

    /// A statistics report of the whole connection (W3C `getStats()`): the transport and
    /// candidate pairs, inbound and outbound RTP streams, data channels, codecs.
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// let report = pc.stats().await?;
    /// for rtp in report.outbound_rtp_streams() {
    ///     println!("{} packets sent", rtp.sent_rtp_stream_stats.packets_sent);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed connection.
    pub async fn stats(&self) -> Result<RTCStatsReport> {
        self.inner.request(|reply| Command::Stats { reply }).await
    }

    /// The candidate pair ICE selected, with both ends (types, addresses, and for
    /// server-reflexive and relayed candidates the related address); `None` until ICE selects
    /// one. Unlike the statistics report, it also names a remote end that came in a
    /// description or was learnt from the checks (peer-reflexive).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed connection.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// if let Some(pair) = pc.selected_candidate_pair().await? {
    ///     println!("{} -> {}", pair.local(), pair.remote());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn selected_candidate_pair(&self) -> Result<Option<RTCIceCandidatePair>> {
        self.inner
            .request(|reply| Command::SelectedCandidatePair { reply })
            .await
            .map(|p| p.map(|p| *p))
    }

    /// A statistics report every `interval` (the first one `interval` from now), until the
    /// connection closes: for dashboards. Timed by the connection's runtime (so by the virtual
    /// clock on a simulated runtime).
    ///
    /// The stream does no work while nobody polls it and none once dropped; ticks missed
    /// while it was not read are skipped, not delivered in a burst. It does not keep the
    /// connection alive. An `interval` below 1 ms counts as 1 ms.
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) {
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// let mut reports = pc.stats_stream(Duration::from_secs(2));
    /// while let Some(report) = reports.next().await {
    ///     let sent: u64 = report
    ///         .outbound_rtp_streams()
    ///         .map(|s| s.sent_rtp_stream_stats.packets_sent)
    ///         .sum();
    ///     println!("{sent} RTP packets sent so far");
    /// }
    /// # }
    /// ```
    pub fn stats_stream(&self, interval: std::time::Duration) -> StatsStream {
        StatsStream::new(&self.inner, self.connection_states(), interval)
    }

    /// Data channels opened by the remote peer.
    ///
    /// Nothing is lost to a late subscriber: a channel that opened while nobody subscribed to
    /// this stream or [`events`](Self::events) was held, with the messages it received since,
    /// and this subscriber receives it first. At most the event capacity
    /// ([`PeerConnectionBuilder::event_capacity`]) of them are held; beyond it the oldest are
    /// dropped, counted in [`EventStream::missed`] and closed (so the remote peer sees
    /// them close rather than stay open with no reader); the same for a subscriber that
    /// falls more than the event capacity behind. [`EventStream::with_lag`] yields that loss
    /// in band, where it happened. While a held channel waits, its
    /// messages count against the [receive budget](PeerConnectionBuilder::receive_budget), so
    /// a connection that gets remote channels should subscribe and drop those it does not
    /// want.
    ///
    /// A connection keeps at most 4,096 data channels open at once (each costs some
    /// kilobytes, and SCTP would allow 65,535): a channel the remote peer opens beyond that
    /// is closed at once and not announced.
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) {
    /// use futures::StreamExt;
    /// let mut incoming = pc.data_channels();
    /// while let Some(dc) = incoming.next().await {
    ///     println!("remote channel {}", dc.label());
    /// }
    /// # }
    /// ```
    pub fn data_channels(&self) -> EventStream<DataChannel> {
        event::data_channels(
            &mut lock(&self.inner.shared.hub),
            Arc::downgrade(&self.inner),
        )
    }

    /// Fires each time a (re)negotiation is needed. A subscriber that fell behind gets one
    /// item for all it skipped (conflating, as [`connection_states`](Self::connection_states)):
    /// one new offer answers them all.
    pub fn negotiation_needed(&self) -> EventStream<()> {
        event::negotiation_needed(&lock(&self.inner.shared.hub))
    }

    /// Resolves once ICE gathering is complete: then
    /// [`local_description`](Self::local_description) holds every local candidate, for
    /// signaling without trickle ICE. Resolves at once if it is complete already.
    ///
    /// ```no_run
    /// # async fn f(pc: webrtc_streams::PeerConnection) -> webrtc_streams::Result<()> {
    /// let offer = pc.create_offer().await?;
    /// pc.set_local_description(offer).await?;
    /// pc.gathering_complete().await?;
    /// let offer = pc.local_description().await?.expect("set above");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection closes first (or is closed already), with the
    /// reason.
    pub async fn gathering_complete(&self) -> Result<()> {
        let mut states = self.ice_gathering_states();
        if self.inner.shared.is_closed() {
            return Err(self.inner.shared.closed());
        }
        while let Some(state) = states.next().await {
            if state == RTCIceGatheringState::Complete {
                return Ok(());
            }
        }
        Err(self.inner.shared.closed())
    }

    /// The current connection state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        lock(&self.inner.shared.hub).states.connection
    }

    /// The current signaling state.
    pub fn signaling_state(&self) -> RTCSignalingState {
        lock(&self.inner.shared.hub).states.signaling
    }

    /// The current ICE connection state.
    pub fn ice_connection_state(&self) -> RTCIceConnectionState {
        lock(&self.inner.shared.hub).states.ice_connection
    }

    /// The current ICE gathering state.
    pub fn ice_gathering_state(&self) -> RTCIceGatheringState {
        lock(&self.inner.shared.hub).states.ice_gathering
    }

    /// What the connection's inbound filter has passed to the protocol core and refused, by
    /// reason.
    ///
    /// The driver lets a datagram reach the core only if it could come from the negotiated
    /// peer: STUN checks must carry valid ICE credentials, DTLS must come from a source that
    /// passed such a check and fit the handshake, and RTP/RTCP is refused while no media is
    /// negotiated. See the crate's README, section "Security".
    ///
    /// ```no_run
    /// # fn f(pc: &webrtc_streams::PeerConnection) {
    /// let stats = pc.filter_stats();
    /// println!("{} passed, {} from strangers", stats.passed, stats.stranger);
    /// # }
    /// ```
    pub fn filter_stats(&self) -> FilterStats {
        self.inner.shared.filter.snapshot()
    }

    /// What the operating system reported on this connection's sockets: failed sends and
    /// receives, sockets given up; and the bytes its send path holds in buffers (see
    /// [`SocketStats`](crate::SocketStats)).
    ///
    /// ```no_run
    /// # fn f(pc: &webrtc_streams::PeerConnection) {
    /// let s = pc.socket_stats();
    /// println!("{} sends failed, {} receive errors", s.send_errors, s.receive_errors);
    /// # }
    /// ```
    pub fn socket_stats(&self) -> crate::SocketStats {
        self.inner.shared.sockets.snapshot()
    }

    /// Bytes of received messages waiting in the inboxes of all this connection's data
    /// channels for their readers. At most the
    /// [receive budget](PeerConnectionBuilder::receive_budget) plus one message.
    pub fn received_amount(&self) -> usize {
        self.inner.shared.budget.held()
    }

    /// The addresses of the connection's UDP sockets (its host candidates).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.inner.local_addrs
    }

    /// A handle that does not keep the connection alive, for places that must not own it —
    /// typically a [`PeerConnectionEventHandler`](crate::PeerConnectionEventHandler), which would otherwise keep its own
    /// connection alive until [`close`](Self::close).
    pub fn downgrade(&self) -> WeakPeerConnection {
        WeakPeerConnection::new(Arc::downgrade(&self.inner))
    }
}

/// A handle to a [`PeerConnection`] that does not keep it alive.
///
/// Made by [`PeerConnection::downgrade`], or handed to the closure given to
/// [`PeerConnectionBuilder::handler_with`]. [`upgrade`](Self::upgrade) it to use the connection.
#[derive(Clone)]
pub struct WeakPeerConnection {
    inner: Weak<ConnHandle>,
}

impl WeakPeerConnection {
    pub(crate) fn new(inner: Weak<ConnHandle>) -> Self {
        Self { inner }
    }

    /// The connection, unless it has been shut down because every [`PeerConnection`] and
    /// [`DataChannel`] handle of it was dropped. A connection that was
    /// [closed](PeerConnection::close) but still has handles upgrades; its methods then
    /// return [`Error::Closed`].
    ///
    /// Hold the returned handle only as long as needed (for example, within one callback).
    pub fn upgrade(&self) -> Option<PeerConnection> {
        self.inner.upgrade().map(|inner| PeerConnection { inner })
    }

    /// A handle to `channel` that does not outlive the call it is made for: on the connection
    /// while it is alive, else on a detached stand-in whose commands fail with
    /// [`Error::Closed`].
    pub(crate) fn channel(&self, channel: &ChannelRef) -> DataChannel {
        let conn = self.inner.upgrade().unwrap_or_else(ConnHandle::detached);
        DataChannel {
            conn,
            dc: channel.0.clone(),
        }
    }
}

/// Starts the handler bridge of a connection being built (see
/// [`PeerConnectionBuilder::handler`]).
pub(crate) type Starter = Box<dyn FnOnce(BridgeInputs) -> BoxFuture + Send>;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the handler bridge needs from its connection, taken before `build` returns so that no
/// event is missed.
pub(crate) struct BridgeInputs {
    pub(crate) events: EventStream<PeerConnectionEvent>,
    /// Channels created locally (the events announce only remote ones).
    pub(crate) local_channels: Pin<Box<dyn Stream<Item = ChannelWatch> + Send>>,
    pub(crate) conn: WeakPeerConnection,
}

impl BridgeInputs {
    /// Subscribes a new bridge to the connection's events and locally created channels.
    fn subscribe(inner: &Arc<ConnHandle>) -> Self {
        let (events, local_channels) = {
            let mut hub = lock(&inner.shared.hub);
            let events = event::events(&mut hub, Arc::downgrade(inner));
            (events, hub.local_channels())
        };
        // Made outside the lock: the caller runs the application's `make` closure next.
        BridgeInputs {
            events,
            local_channels: Box::pin(local_channels.map(ChannelWatch::announced)),
            conn: WeakPeerConnection::new(Arc::downgrade(inner)),
        }
    }
}

impl PeerConnection {
    /// What a handler bridge attached to this running connection needs, and the runtime to
    /// run it on.
    pub(crate) fn bridge_inputs(&self) -> Result<(BridgeInputs, Arc<dyn Runtime>)> {
        let shared = &self.inner.shared;
        match &self.inner.runtime {
            Some(runtime) if !shared.is_closed() => {
                Ok((BridgeInputs::subscribe(&self.inner), runtime.clone()))
            }
            _ => Err(shared.closed()),
        }
    }
}

impl fmt::Debug for WeakPeerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakPeerConnection")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

impl fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConnection")
            .field("local_addrs", &self.inner.local_addrs)
            .field("state", &self.connection_state())
            .finish_non_exhaustive()
    }
}

/// Configures and builds a [`PeerConnection`].
///
/// # Defaults
///
/// What `PeerConnection::builder().build()` gives without further settings:
///
/// - **sockets**: one UDP socket per interface address, from binding `0.0.0.0:0`
///   ([`bind`](Self::bind)); loopback and link-local addresses are left out unless
///   [`include_loopback(true)`](Self::include_loopback), so two peers on a machine without a
///   network need it (or bind `127.0.0.1:0`);
/// - **mDNS**: [`MulticastDnsMode::QueryOnly`] ([`mdns`](Self::mdns)): remote `.local`
///   candidates (what browsers signal) are resolved; our own candidates carry plain
///   addresses;
/// - **data channels**: a largest message of 64 KiB (`rtc`'s default, advertised to the peer
///   as `a=max-message-size:65536`; raise it with the setting engine, see
///   [`DataChannel`]'s "Message size"), a send high-water mark of 1 MiB, a receive budget of
///   2 MiB per connection;
/// - **ICE**: no STUN or TURN server ([`configuration`](Self::configuration)), UDP only
///   ([`ice_tcp`](Self::ice_tcp)), the pair waits of [`default_settings`](Self::default_settings);
/// - **runtime**: Tokio with `runtime-tokio` ([`runtime`](Self::runtime)).
///
/// ```no_run
/// # async fn f() -> webrtc_streams::Result<()> {
/// use webrtc_streams::PeerConnection;
/// let pc = PeerConnection::builder()
///     .bind(["127.0.0.1:0".parse().unwrap()])
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct PeerConnectionBuilder {
    configuration: RTCConfiguration,
    /// `None`: [`PeerConnectionBuilder::default_settings`].
    setting_engine: Option<SettingEngine>,
    /// Set by [`PeerConnectionBuilder::mdns`].
    mdns: Option<MulticastDnsMode>,
    media_engine: MediaEngine,
    default_codecs: bool,
    interceptor_registry: Option<Registry>,
    runtime: Option<Arc<dyn Runtime>>,
    bind: Vec<SocketAddr>,
    include_loopback: bool,
    port_range: Option<RangeInclusive<u16>>,
    event_capacity: usize,
    high_water_mark: usize,
    receive_budget: usize,
    ice_server_timeout: Duration,
    failed_timeout: Duration,
    tls_roots: Option<Vec<u8>>,
    udp_mux: Option<UdpMux>,
    nat_1to1: Option<(Vec<IpAddr>, RTCIceCandidateType)>,
    ice_tcp: bool,
    ice_udp: bool,
    certificate: Option<RTCCertificate>,
    bridge: Option<Starter>,
}

/// The largest session description [`PeerConnection::set_remote_description`] and
/// [`PeerConnection::set_local_description`] accept: 1 MiB, some ten times a description with
/// a hundred media sections. A larger one is refused unread with
/// [`Error::SessionDescriptionTooLarge`], so a hostile signaling peer cannot make the
/// connection parse (and allocate for) an unbounded text.
///
/// ```
/// assert_eq!(webrtc_streams::MAX_SESSION_DESCRIPTION_SIZE, 1 << 20);
/// ```
pub const MAX_SESSION_DESCRIPTION_SIZE: usize = 1 << 20;

/// The longest remote ICE candidate [`PeerConnection::add_ice_candidate`] accepts, in bytes
/// (its `candidate` and `sdpMid` strings together): 4 KiB, ten times a long real one. A
/// longer one is refused unread with [`Error::CandidateTooLarge`].
///
/// ```
/// assert_eq!(webrtc_streams::MAX_CANDIDATE_SIZE, 4096);
/// ```
pub const MAX_CANDIDATE_SIZE: usize = 4096;

/// `configuration` with `certificate` as its only certificate (the core's configuration has
/// no setter: rebuilt field by field).
fn with_certificate(
    configuration: &RTCConfiguration,
    certificate: RTCCertificate,
) -> RTCConfiguration {
    RTCConfigurationBuilder::new()
        .with_ice_servers(configuration.ice_servers().to_vec())
        .with_ice_transport_policy(configuration.ice_transport_policy())
        .with_bundle_policy(configuration.bundle_policy())
        .with_rtcp_mux_policy(configuration.rtcp_mux_policy())
        .with_peer_identitys(configuration.peer_identity().to_owned())
        .with_ice_candidate_pool_size(configuration.ice_candidate_pool_size())
        .with_certificates(vec![certificate])
        .build()
}

fn check_size(desc: &RTCSessionDescription) -> Result<()> {
    if desc.sdp.len() > MAX_SESSION_DESCRIPTION_SIZE {
        return Err(Error::SessionDescriptionTooLarge {
            size: desc.sdp.len(),
            max: MAX_SESSION_DESCRIPTION_SIZE,
        });
    }
    Ok(())
}

/// How long a `Failed` connection waits for an ICE restart before it closes (see
/// [`PeerConnectionBuilder::failed_timeout`]).
pub const DEFAULT_FAILED_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for PeerConnectionBuilder {
    fn default() -> Self {
        Self {
            configuration: RTCConfiguration::default(),
            setting_engine: None,
            mdns: None,
            media_engine: MediaEngine::default(),
            default_codecs: false,
            interceptor_registry: None,
            runtime: None,
            bind: Vec::new(),
            include_loopback: false,
            port_range: None,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            high_water_mark: DEFAULT_HIGH_WATER_MARK,
            receive_budget: DEFAULT_RECEIVE_BUDGET,
            ice_server_timeout: DEFAULT_SERVER_TIMEOUT,
            failed_timeout: DEFAULT_FAILED_TIMEOUT,
            tls_roots: None,
            udp_mux: None,
            nat_1to1: None,
            ice_tcp: false,
            ice_udp: true,
            certificate: None,
            bridge: None,
        }
    }
}

impl fmt::Debug for PeerConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConnectionBuilder")
            .field("runtime", &self.runtime)
            .field("bind", &self.bind)
            .field("include_loopback", &self.include_loopback)
            .field("port_range", &self.port_range)
            .field("udp_mux", &self.udp_mux)
            .field("nat_1to1", &self.nat_1to1)
            .field("ice_tcp", &self.ice_tcp)
            .field("ice_udp", &self.ice_udp)
            .field("certificate", &self.certificate.is_some())
            .field("handler", &self.bridge.is_some())
            .finish_non_exhaustive()
    }
}

impl PeerConnectionBuilder {
    /// The W3C configuration (ICE servers, policies, certificates).
    ///
    /// Every `stun:` server yields a server-reflexive candidate per local socket, every
    /// `turn:` server over UDP a relayed candidate per socket; with
    /// `ice_transport_policy: Relay` only relayed candidates are gathered. A `turn:` server
    /// over TCP (`?transport=tcp`) or a `turns:` server (TLS, its certificate verified, see
    /// [`tls_root_certificates`](Self::tls_root_certificates)) is reached over one connection
    /// per IP family and yields one relayed candidate for it: the way out of networks that
    /// block UDP. A server that cannot be used is reported as an
    /// [`IceCandidateError`](crate::PeerConnectionEvent::IceCandidateError).
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{
    ///     PeerConnection,
    ///     rtc::peer_connection::{configuration::RTCConfigurationBuilder, transport::RTCIceServer},
    /// };
    /// let config = RTCConfigurationBuilder::new()
    ///     .with_ice_servers(vec![
    ///         RTCIceServer {
    ///             urls: vec!["stun:stun.example.org:3478".to_owned()],
    ///             ..Default::default()
    ///         },
    ///         RTCIceServer {
    ///             urls: vec!["turn:turn.example.org:3478?transport=udp".to_owned()],
    ///             username: "user".to_owned(),
    ///             credential: "secret".to_owned(),
    ///         },
    ///     ])
    ///     .build();
    /// let pc = PeerConnection::builder().configuration(config).build().await?;
    /// # Ok(()) }
    /// ```
    pub fn configuration(mut self, configuration: RTCConfiguration) -> Self {
        self.configuration = configuration;
        self
    }

    /// The `rtc` setting engine (timeouts, DTLS role, SCTP limits, ...). It replaces the
    /// whole default, [`default_settings`](Self::default_settings): start from that builder
    /// to keep the defaults this crate picks and change only what you need.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{PeerConnection, PeerConnectionBuilder};
    /// let settings = PeerConnectionBuilder::default_settings()
    ///     .with_dcep_handshake_timeout(None)
    ///     .build();
    /// let pc = PeerConnection::builder().setting_engine(settings).build().await?;
    /// # Ok(()) }
    /// ```
    pub fn setting_engine(mut self, setting_engine: SettingEngine) -> Self {
        self.setting_engine = Some(setting_engine);
        self
    }

    /// The setting engine a connection gets unless [`setting_engine`](Self::setting_engine)
    /// gives one: `rtc`'s defaults, except for how long ICE waits before it accepts (as the
    /// controlling agent, nominates) a working candidate pair of each type. `rtc` waits 0 ms
    /// for host pairs, 500 ms for server-reflexive, 1,000 ms for peer-reflexive and 2,000 ms
    /// for relayed ones, so that a better pair still being checked can win. Browsers do not
    /// wait, and they often reach us from a peer-reflexive address (Chromium signals no
    /// candidate on loopback; a browser hiding its host address behind an mDNS name is
    /// reached before the name resolves): with `rtc`'s waits every such connection loses a
    /// second. This crate waits [`HOST_WAIT`](Self::HOST_WAIT),
    /// [`REFLEXIVE_WAIT`](Self::REFLEXIVE_WAIT) for server- and peer-reflexive pairs and
    /// [`RELAY_WAIT`](Self::RELAY_WAIT) for relayed ones: the order of preference stays,
    /// and a better pair checked in the same rounds (checks go out every 200 ms) still wins.
    /// `rtc` never nominates a second pair: once one is selected, a better pair that
    /// appears later is not used (an ICE restart gathers and chooses again).
    ///
    /// ```
    /// use webrtc_streams::PeerConnectionBuilder;
    /// use std::time::Duration;
    /// // Our defaults, but wait as long as `rtc` does before using a TURN relay.
    /// let settings = PeerConnectionBuilder::default_settings()
    ///     .with_relay_acceptance_min_wait(Some(Duration::from_secs(2)))
    ///     .build();
    /// # let _ = settings;
    /// ```
    pub fn default_settings() -> SettingEngineBuilder {
        SettingEngineBuilder::new()
            .with_host_acceptance_min_wait(Some(Self::HOST_WAIT))
            .with_srflx_acceptance_min_wait(Some(Self::REFLEXIVE_WAIT))
            .with_prflx_acceptance_min_wait(Some(Self::REFLEXIVE_WAIT))
            .with_relay_acceptance_min_wait(Some(Self::RELAY_WAIT))
    }

    /// Multicast DNS (RFC 6762) for ICE candidates, as browsers use it:
    ///
    /// - `QueryOnly` (the default): remote `.local` candidates — what browsers signal unless
    ///   told otherwise — are resolved, and our host candidates carry plain addresses.
    /// - `QueryAndGather`: as a browser does, our first IPv4 host address is signalled as a
    ///   random `<uuid>.local` name, and queries for it are answered (`rtc` hides one IPv4
    ///   address; other host candidates keep theirs).
    /// - `Disabled`: remote `.local` candidates are ignored.
    ///
    /// The multicast socket (224.0.0.251:5353, shared with other mDNS sockets on the host) is
    /// opened when the first `.local` name is looked up, or at once in gather mode. Where it
    /// cannot be opened (no multicast route), `.local` candidates stay unresolved and a warning
    /// is logged; a peer-reflexive pair can still connect. The simulation runtime has no
    /// multicast: there, `.local` candidates do not resolve.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{PeerConnection, rtc::ice::mdns::MulticastDnsMode};
    /// let pc = PeerConnection::builder()
    ///     .mdns(MulticastDnsMode::QueryAndGather)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// With a [setting engine](Self::setting_engine), set the mode there
    /// (`with_multicast_dns_mode`, and `with_multicast_dns_local_ip` for the address to hide);
    /// [`build`](Self::build) fails with [`Error::InvalidOperation`] if this option asks for a
    /// different mode than that engine.
    pub fn mdns(mut self, mode: MulticastDnsMode) -> Self {
        self.mdns = Some(mode);
        self
    }

    /// How long ICE waits before accepting a host pair by default (`rtc`: the same).
    pub const HOST_WAIT: Duration = Duration::ZERO;
    /// How long ICE waits before accepting a server- or peer-reflexive pair by default
    /// (`rtc`: 500 ms and 1,000 ms).
    pub const REFLEXIVE_WAIT: Duration = Duration::from_millis(100);
    /// How long ICE waits before accepting a relayed pair by default (`rtc`: 2,000 ms).
    pub const RELAY_WAIT: Duration = Duration::from_millis(500);

    /// The media engine (codecs and header extensions). The default is empty, which suits
    /// data-channel-only connections.
    pub fn media_engine(mut self, media_engine: MediaEngine) -> Self {
        self.media_engine = media_engine;
        self.default_codecs = false;
        self
    }

    /// Registers `rtc`'s default codecs (Opus, G.722, PCMU, PCMA, VP8, VP9, H.264, AV1, H.265,
    /// with RTX for video) in the media engine, and — unless an
    /// [interceptor registry](Self::interceptor_registry) is set — the default interceptors:
    /// NACK (retransmission of lost video packets), RTCP sender and receiver reports,
    /// transport-wide congestion-control feedback. What audio and video need. Replaces a media
    /// engine set before.
    pub fn default_codecs(mut self) -> Self {
        self.media_engine = MediaEngine::default();
        self.default_codecs = true;
        self
    }

    /// The interceptor chain of the media pipeline (NACK, RTCP reports, congestion control,
    /// your own): `rtc`'s [`Registry`], built with the `configure_*` functions of
    /// `rtc::peer_connection::configuration::interceptor_registry`. Without it, connections
    /// built with [`default_codecs`](Self::default_codecs) get the default chain and others an
    /// empty one.
    pub fn interceptor_registry(mut self, registry: Registry) -> Self {
        self.interceptor_registry = Some(registry);
        self
    }

    /// The runtime that runs this connection's driver. Defaults to the first enabled built-in
    /// runtime usable from the calling context (Tokio with `runtime-tokio`).
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The local addresses to bind UDP sockets on; each becomes a host candidate. An
    /// unspecified address (`0.0.0.0:0`, `[::]:0`) expands to one socket per interface
    /// address of that family (loopback and link-local excluded unless
    /// [`include_loopback`](Self::include_loopback)). Default: `0.0.0.0:0`.
    pub fn bind(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.bind = addrs.into_iter().collect();
        self
    }

    /// Binds every socket whose [bind address](Self::bind) has port 0 to a free port of
    /// `ports` instead of an ephemeral one, as servers behind a firewall that opens a fixed
    /// range need. Ports are tried from a varying start, so connections built one after the
    /// other spread over the range.
    ///
    /// [`build`](Self::build) fails with [`Error::PortRangeExhausted`] when no port of the
    /// range is free (or the range is empty, or holds only port 0).
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// let pc = webrtc_streams::PeerConnection::builder()
    ///     .bind(["0.0.0.0:0".parse().unwrap()])
    ///     .port_range(50_000..=50_099)
    ///     .build()
    ///     .await?;
    /// assert!(pc.local_addrs().iter().all(|a| (50_000..=50_099).contains(&a.port())));
    /// # Ok(()) }
    /// ```
    pub fn port_range(mut self, ports: RangeInclusive<u16>) -> Self {
        self.port_range = Some(ports);
        self
    }

    /// Uses the sockets of `mux` (one UDP port shared by many connections) instead of
    /// binding sockets of its own: [`bind`](Self::bind) and [`port_range`](Self::port_range)
    /// are then not used. Without a [`runtime`](Self::runtime), the connection runs on the
    /// mux's. See [`UdpMux`] for how datagrams find their connection.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{PeerConnection, UdpMux};
    ///
    /// let mux = UdpMux::bind("0.0.0.0:50000".parse().unwrap())?;
    /// let a = PeerConnection::builder().udp_mux(&mux).build().await?;
    /// let b = PeerConnection::builder().udp_mux(&mux).build().await?;
    /// assert_eq!(a.local_addrs(), b.local_addrs());
    /// assert_eq!(mux.stats().connections, 2);
    /// # Ok(()) }
    /// ```
    pub fn udp_mux(mut self, mux: &UdpMux) -> Self {
        self.udp_mux = Some(mux.clone());
        self
    }

    /// Advertises `ips` — the public addresses of a 1:1 NAT in front of this host, as cloud
    /// servers have — instead of (`Host`) or beside (`Srflx`) the local addresses: each
    /// socket whose address family matches one of `ips` is announced at that IP and the
    /// socket's port (the NAT maps ports 1:1).
    ///
    /// - [`RTCIceCandidateType::Host`]: the host candidate carries the public IP; the local
    ///   address is not revealed. For a server that only the public internet reaches.
    /// - [`RTCIceCandidateType::Srflx`]: the local host candidate stays, and a
    ///   server-reflexive candidate with the public IP is added (its base is the local
    ///   address), without asking a STUN server. Peers inside the same network still reach
    ///   the local address.
    ///
    /// [`build`](Self::build) fails with [`Error::InvalidNat1To1`] for another candidate
    /// type or an unspecified, multicast or broadcast IP.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use webrtc_streams::{PeerConnection, rtc::peer_connection::transport::RTCIceCandidateType};
    ///
    /// let pc = PeerConnection::builder()
    ///     .bind(["10.0.0.5:0".parse().unwrap()])
    ///     .nat_1to1_ips(["203.0.113.7".parse().unwrap()], RTCIceCandidateType::Host)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn nat_1to1_ips(
        mut self,
        ips: impl IntoIterator<Item = IpAddr>,
        candidate_type: RTCIceCandidateType,
    ) -> Self {
        self.nat_1to1 = Some((ips.into_iter().collect(), candidate_type));
        self
    }

    /// Gathers ICE-TCP host candidates (RFC 6544) beside the UDP ones (default: off): per
    /// local address a *passive* candidate (a TCP listener on an ephemeral port, which peers
    /// whose UDP is blocked connect to — browsers do) and an *active* one (this side connects
    /// to the peer's passive candidates). ICE still prefers UDP pairs when both work.
    ///
    /// Needs a runtime with TCP ([`Runtime::bind_tcp_listener`] and
    /// [`Runtime::connect_tcp`]); the built-in OS runtimes have it.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// let pc = webrtc_streams::PeerConnection::builder()
    ///     .ice_tcp(true)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`Runtime::bind_tcp_listener`]: crate::runtime::Runtime::bind_tcp_listener
    /// [`Runtime::connect_tcp`]: crate::runtime::Runtime::connect_tcp
    pub fn ice_tcp(mut self, yes: bool) -> Self {
        self.ice_tcp = yes;
        self
    }

    /// Whether UDP host and server-reflexive candidates are gathered (default: on). Off,
    /// with [`ice_tcp`](Self::ice_tcp) on, a connection offers only TCP candidates (and relayed
    /// ones from TURN servers): for networks where UDP is known not to pass.
    pub fn ice_udp(mut self, yes: bool) -> Self {
        self.ice_udp = yes;
        self
    }

    /// Whether an unspecified bind address also expands to loopback interfaces (default:
    /// no). Without it, the default `0.0.0.0:0` gives no loopback candidate, and two peers on
    /// a host without a network (a container, CI) cannot connect.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// let pc = webrtc_streams::PeerConnection::builder()
    ///     .include_loopback(true)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn include_loopback(mut self, yes: bool) -> Self {
        self.include_loopback = yes;
        self
    }

    /// How long a connection that went `Failed` waits for an ICE restart to bring it back
    /// (default 30 s, [`DEFAULT_FAILED_TIMEOUT`]) before it closes itself.
    ///
    /// While it waits, data channels stay open (a restart resumes them, nothing lost) and
    /// their sends are buffered. Then it closes as [`close`](PeerConnection::close) would:
    /// every channel closes, every stream ends (a reader never waits forever on a dead
    /// connection), and calls fail with [`Error::Closed`] carrying
    /// [`CloseReason::IceFailed`](crate::CloseReason::IceFailed),
    /// [`ConsentExpired`](crate::CloseReason::ConsentExpired) or
    /// [`DtlsFailed`](crate::CloseReason::DtlsFailed).
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use std::time::Duration;
    /// let pc = webrtc_streams::PeerConnection::builder()
    ///     .failed_timeout(Duration::from_secs(10))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn failed_timeout(mut self, timeout: Duration) -> Self {
        self.failed_timeout = timeout;
        self
    }

    /// The DTLS certificate of this connection, in place of a new one generated for it (and
    /// in place of the [`configuration`](Self::configuration)'s certificates).
    ///
    /// A certificate generated once, saved as PEM and given to every connection keeps the
    /// `a=fingerprint` of their descriptions the same: a server whose peers pin its
    /// fingerprint, or that signs it, needs that. The certificate carries its expiry; the
    /// connection refuses an expired one ([`Error::InvalidOperation`] from
    /// [`build`](Self::build)).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use webrtc_streams::{
    ///     PeerConnection,
    ///     rtc::{
    ///         crypto::{self, SignatureScheme},
    ///         peer_connection::certificate::{CertificateParams, RTCCertificate},
    ///     },
    /// };
    /// let provider = crypto::default_provider()?;
    /// // Once: generate it and keep the PEM (private key included) somewhere safe.
    /// let generated = RTCCertificate::generate(
    ///     provider.crypto(),
    ///     SignatureScheme::EcdsaP256Sha256,
    ///     CertificateParams::new(vec!["webrtc".to_owned()])?,
    /// )?;
    /// let pem = generated.serialize_pem()?;
    /// // At every start: read it back and give it to each connection.
    /// let certificate = RTCCertificate::from_pem(&pem, provider.crypto())?;
    /// let pc = PeerConnection::builder()
    ///     .certificate(certificate)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn certificate(mut self, certificate: RTCCertificate) -> Self {
        self.certificate = Some(certificate);
        self
    }

    /// How many events a subscriber may fall behind before it misses some (default 1024).
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events.max(1);
        self
    }

    /// The default high-water mark of this connection's data channels
    /// (see [`DataChannel::set_high_water_mark`]).
    pub fn data_channel_high_water_mark(mut self, bytes: usize) -> Self {
        self.high_water_mark = bytes;
        self
    }

    /// How many bytes of received, unread messages the connection holds for the readers of
    /// all its data channels together (default 2 MiB, [`DEFAULT_RECEIVE_BUDGET`]).
    ///
    /// Memory for unread messages stays within this budget however many channels the remote
    /// peer opens. While the budget lasts, a channel whose reader is slow or absent does not
    /// hold back the others: their messages keep flowing. Once its unread messages have spent
    /// the budget, the connection stops reading from SCTP, and since SCTP's receive window
    /// belongs to the whole association, the remote peer then slows down on *every* channel
    /// of the connection until that reader catches up. Nothing is dropped. A single message
    /// larger than the budget is still delivered, alone.
    ///
    /// [`DEFAULT_RECEIVE_BUDGET`]: crate::data_channel::DEFAULT_RECEIVE_BUDGET
    pub fn receive_budget(mut self, bytes: usize) -> Self {
        self.receive_budget = bytes.max(1);
        self
    }

    /// How long ICE gathering waits for a STUN or TURN server that does not answer (default
    /// 5 s). Its requests are retransmitted on the RFC 8489 schedule (500 ms, doubling) until
    /// then; afterwards the server is reported as an
    /// [`IceCandidateError`](crate::PeerConnectionEvent::IceCandidateError) with code 701 and
    /// gathering completes without it.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// use std::time::Duration;
    /// let pc = webrtc_streams::PeerConnection::builder()
    ///     .ice_server_timeout(Duration::from_secs(2))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn ice_server_timeout(mut self, timeout: Duration) -> Self {
        self.ice_server_timeout = timeout;
        self
    }

    /// Trusts the certificates in `pem` (one or more PEM `CERTIFICATE` blocks) as the roots
    /// for `turns:` ICE servers, instead of the built-in webpki roots (Mozilla's root
    /// program). For a TURN server whose certificate comes from a private CA.
    ///
    /// A `turns:` server whose certificate does not chain to a trusted root is not used: it is
    /// reported as an [`IceCandidateError`](crate::PeerConnectionEvent::IceCandidateError)
    /// (code 701) whose text names the certificate error, and the other candidates are
    /// gathered as usual. There is no way to skip verification.
    ///
    /// ```no_run
    /// # async fn f() -> webrtc_streams::Result<()> {
    /// let ca = std::fs::read("turn-ca.pem")?;
    /// let pc = webrtc_streams::PeerConnection::builder()
    ///     .tls_root_certificates(ca)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_roots = Some(pem.into());
        self
    }

    /// Sets the hook that starts a handler bridge for the built connection
    /// (see [`handler`](Self::handler)).
    pub(crate) fn set_bridge(mut self, start: Starter) -> Self {
        self.bridge = Some(start);
        self
    }

    /// Binds the sockets, builds the protocol core and starts the driver (and the handler's
    /// task, if there is a handler).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIceServer`] for a malformed ICE server URL, an unsupported scheme or
    /// a TURN server without credentials, [`Error::InvalidTlsRoots`] if the
    /// [`tls_root_certificates`](Self::tls_root_certificates) hold no certificate,
    /// [`Error::NoRuntime`] without a usable runtime,
    /// [`Error::Io`] if a socket cannot be bound, [`Error::NoLocalAddress`] if nothing could
    /// be bound, and [`Error::InvalidOperation`] for a configuration the core rejects.
    pub async fn build(self) -> Result<PeerConnection> {
        let mut ice_servers = nat::ice_servers(self.configuration.ice_servers())?;
        if !self.ice_udp {
            ice_servers.retain(|s| !s.is_stun());
        }
        let tls = match &self.tls_roots {
            Some(pem) => Some(nat::tls_config(Some(pem))?),
            None if nat::needs_tls(&ice_servers) => Some(nat::tls_config(None)?),
            None => None,
        };
        let relay_only = self.configuration.ice_transport_policy() == RTCIceTransportPolicy::Relay;
        let nat_1to1 = match &self.nat_1to1 {
            None => None,
            Some((ips, kind)) => Some(check_nat_1to1(ips, *kind)?),
        };
        let runtime = match (self.runtime, &self.udp_mux) {
            (Some(rt), _) => rt,
            (None, Some(mux)) => mux.runtime.clone(),
            (None, None) => default_runtime()?,
        };
        let bind = if self.bind.is_empty() {
            vec![SocketAddr::from(([0, 0, 0, 0], 0))]
        } else {
            self.bind
        };
        let spec = BindSpec {
            addrs: bind,
            include_loopback: self.include_loopback,
            port_range: self.port_range.clone(),
        };
        let mut sockets = Vec::new();
        let mut membership = None;
        let addrs = if self.udp_mux.is_some() {
            Vec::new()
        } else if runtime.uses_os_network() {
            expand_bind_addresses(&spec.addrs, spec.include_loopback)?
        } else {
            spec.addrs.clone()
        };
        // Interfaces that appear later are bound at the next ICE restart: only for OS
        // sockets of our own, whose addresses are not rewritten for a 1:1 NAT.
        let rebind = (self.udp_mux.is_none() && runtime.uses_os_network() && nat_1to1.is_none())
            .then(|| spec.clone());
        if let Some(mux) = &self.udp_mux {
            let (member, member_sockets) = mux.join();
            membership = Some(member);
            for (sock, addr) in member_sockets {
                sockets.push(Socket { sock, addr });
            }
        }
        for addr in addrs {
            let sock = spec.bind_one(&*runtime, addr)?;
            let addr = sock.local_addr()?;
            sockets.push(Socket { sock, addr });
        }
        if sockets.is_empty() {
            return Err(Error::NoLocalAddress);
        }
        // The 1:1 NAT's public addresses: announced instead of the local ones (the core
        // then knows each socket by its public address), or beside them.
        let mut mapped = Vec::new();
        if let Some((ips, kind)) = &nat_1to1 {
            for s in &mut sockets {
                let Some(ip) = ips.iter().find(|ip| ip.is_ipv4() == s.addr.is_ipv4()) else {
                    continue;
                };
                let public = SocketAddr::new(*ip, s.addr.port());
                if *kind == RTCIceCandidateType::Host {
                    s.addr = public;
                } else {
                    mapped.push((public, s.addr));
                }
            }
        }
        // ICE-TCP: per socket a listener on its interface (the passive candidate: the IP the
        // core knows the socket by, the listener's port) and an active candidate.
        let mut tcp_listeners = Vec::new();
        let mut tcp_active = Vec::new();
        let mux_tcp = match (&membership, self.ice_tcp) {
            (Some(m), true) => m.tcp_listeners(),
            _ => None,
        };
        if let Some(shared) = mux_tcp {
            // The mux's listeners, shared with every connection on it.
            for ((listener, real), s) in shared.into_iter().zip(&sockets) {
                tcp_listeners.push(tcp::Listener {
                    listener,
                    addr: SocketAddr::new(s.addr.ip(), real.port()),
                });
                tcp_active.push(SocketAddr::new(s.addr.ip(), tcp::ACTIVE_PORT));
            }
        } else if self.ice_tcp {
            for s in &sockets {
                let real = s.sock.local_addr()?;
                let listener = runtime.bind_tcp_listener(SocketAddr::new(real.ip(), 0))?;
                let port = listener.local_addr()?.port();
                tcp_listeners.push(tcp::Listener {
                    listener,
                    addr: SocketAddr::new(s.addr.ip(), port),
                });
                tcp_active.push(SocketAddr::new(s.addr.ip(), tcp::ACTIVE_PORT));
            }
        }
        let setting_engine = match self.setting_engine {
            Some(engine) => {
                if let Some(mode) = self.mdns
                    && mode != engine.multicast_dns().mode
                {
                    return Err(Error::InvalidOperation(CoreError::from(
                        rtc::shared::error::Error::Other(format!(
                            "mDNS mode {mode:?} asked for, but the setting engine given has {:?}",
                            engine.multicast_dns().mode
                        )),
                    )));
                }
                engine
            }
            None => {
                let mode = self.mdns.unwrap_or_default();
                let hidden = sockets
                    .iter()
                    .map(|s| s.addr.ip())
                    .find(|ip| ip.is_ipv4() && !ip.is_unspecified());
                let mut engine = Self::default_settings().with_multicast_dns_mode(mode);
                if mode == MulticastDnsMode::QueryAndGather {
                    engine = engine.with_multicast_dns_local_ip(hidden);
                }
                engine.build()
            }
        };
        let mdns_mode = setting_engine.multicast_dns().mode;
        // Stored by the core but read only here: the TURN client runs in the driver.
        let refresh_cap = setting_engine.turn_allocation_refresh_interval_cap();
        // The inbound filter verifies STUN integrity with the core's own crypto provider.
        let crypto = setting_engine
            .crypto_provider()
            .cloned()
            .or_else(|| rtc::crypto::default_provider().ok());
        let mut media_engine = self.media_engine;
        let mut interceptors = self.interceptor_registry;
        if self.default_codecs {
            let invalid = |e| Error::InvalidOperation(CoreError::from(e));
            media_engine.register_default_codecs().map_err(invalid)?;
            if interceptors.is_none() {
                interceptors = Some(
                    register_default_interceptors(Registry::new(), &mut media_engine)
                        .map_err(invalid)?,
                );
            }
        }
        let configuration = match self.certificate {
            Some(certificate) => with_certificate(&self.configuration, certificate),
            None => self.configuration,
        };
        let core = RTCPeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(setting_engine)
            .with_media_engine(media_engine)
            .with_interceptor_registry(DeliverRtcp::install(interceptors.unwrap_or_default()))
            .build(runtime.now())
            .map_err(|e| Error::InvalidOperation(CoreError::from(e)))?;

        let shared = Arc::new(Shared::new(
            Hub::new(self.event_capacity),
            Arc::default(),
            Arc::new(ReceiveBudget::new(self.receive_budget)),
        ));
        let (cmd_tx, cmd_rx) = command_queue(COMMAND_CAPACITY);
        let local_addrs = sockets.iter().map(|s| s.addr).collect();
        let driver = Driver::new(
            core,
            runtime.clone(),
            shared.clone(),
            cmd_rx,
            sockets,
            crypto,
            DriverConfig {
                event_capacity: self.event_capacity,
                high_water_mark: self.high_water_mark,
                failed_timeout: self.failed_timeout,
                nat: NatConfig {
                    servers: ice_servers,
                    timeout: self.ice_server_timeout,
                    relay_only,
                    refresh_cap,
                    tls,
                },
                mdns: mdns_mode != MulticastDnsMode::Disabled,
                mdns_gather: mdns_mode == MulticastDnsMode::QueryAndGather,
                mux: membership,
                mapped,
                tcp_listeners,
                tcp_active,
                udp_host: self.ice_udp,
                rebind,
            },
        );
        let inner = Arc::new(ConnHandle {
            cmd: cmd_tx,
            shared: shared.clone(),
            local_addrs,
            runtime: Some(runtime.clone()),
        });
        // Subscribed before the driver runs: the handler misses nothing.
        let bridge = self
            .bridge
            .map(|start| start(BridgeInputs::subscribe(&inner)));
        runtime.spawn(Box::pin(driver));
        if let Some(bridge) = bridge {
            runtime.spawn(bridge);
        }
        Ok(PeerConnection { inner })
    }
}

/// Checks the arguments of [`PeerConnectionBuilder::nat_1to1_ips`].
fn check_nat_1to1(
    ips: &[IpAddr],
    kind: RTCIceCandidateType,
) -> Result<(Vec<IpAddr>, RTCIceCandidateType)> {
    if !matches!(kind, RTCIceCandidateType::Host | RTCIceCandidateType::Srflx) {
        return Err(Error::InvalidNat1To1(format!(
            "candidate type {kind} (only host or srflx)"
        )));
    }
    for ip in ips {
        let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if ip.is_unspecified() || ip.is_multicast() || broadcast {
            return Err(Error::InvalidNat1To1(format!(
                "{ip} is not a unicast address"
            )));
        }
    }
    Ok((ips.to_vec(), kind))
}
