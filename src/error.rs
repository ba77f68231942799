//! The crate's error type.

use std::io;

/// An error from the `rtc` protocol core, kept as its message.
///
/// The core's own error enum is not `Sync`, so it cannot travel inside a `Send + Sync` error;
/// its text is preserved verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CoreError(pub(crate) String);

impl CoreError {
    /// The core's message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<rtc::shared::error::Error> for CoreError {
    fn from(e: rtc::shared::error::Error) -> Self {
        CoreError(e.to_string())
    }
}

/// Why a connection is closed (carried by [`Error::Closed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application closed it: [`PeerConnection::close`](crate::PeerConnection::close), or
    /// the last handle was dropped.
    #[error("closed locally")]
    Local,
    /// The connection's driver stopped without closing it, typically because the runtime it
    /// ran on shut down.
    #[error("driver is gone")]
    DriverGone,
    /// ICE found no working path to the peer, and no ICE restart found one within the
    /// [failed timeout](crate::PeerConnectionBuilder::failed_timeout).
    #[error("ICE failed")]
    IceFailed,
    /// The peer stopped answering consent checks (RFC 7675) on a connection that was up, and
    /// no ICE restart brought it back within the
    /// [failed timeout](crate::PeerConnectionBuilder::failed_timeout).
    #[error("ICE consent expired")]
    ConsentExpired,
    /// The remote peer closed the connection: its DTLS `close_notify`, or an SCTP ABORT or
    /// SHUTDOWN of the association, arrived (what a peer's `close()` sends).
    #[error("closed by the remote peer")]
    Remote,
    /// The DTLS handshake failed, or had not completed 30 s after ICE connected (for example,
    /// a certificate that does not match the fingerprint of the remote description, or a
    /// peer that gave up): the connection went `Failed` and closed at once (an ICE restart
    /// would not run the handshake again).
    #[error("DTLS handshake failed")]
    DtlsFailed,
}

/// Everything that can go wrong in this crate.
///
/// Errors caused by bad input from the application (a malformed session description, an ICE
/// candidate for an unknown media section, a send on a closed channel) leave the connection
/// working: the call fails, nothing else changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer connection is closed, or its driver has stopped; the [`CloseReason`] says why.
    ///
    /// ```
    /// use webrtc_streams::{CloseReason, Error};
    /// let e = Error::Closed(CloseReason::Local);
    /// assert_eq!(e.to_string(), "peer connection is closed: closed locally");
    /// ```
    #[error("peer connection is closed: {0}")]
    Closed(CloseReason),
    /// The data channel is closing or closed.
    #[error("data channel is closed")]
    DataChannelClosed,
    /// A message is larger than the maximum message size negotiated with the remote peer.
    #[error("message of {size} bytes exceeds the negotiated maximum of {max} bytes")]
    MessageTooLarge {
        /// The size of the rejected message.
        size: usize,
        /// The largest message the remote peer accepts.
        max: usize,
    },
    /// A message to be sent as text is not valid UTF-8
    /// ([`DataChannel::send_message`](crate::DataChannel::send_message) of a text message the
    /// remote peer sent with invalid bytes). Nothing was sent.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A session description could not be parsed or applied.
    #[error("invalid session description: {0}")]
    InvalidSessionDescription(#[source] CoreError),
    /// An ICE candidate could not be parsed or applied.
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(#[source] CoreError),
    /// An ICE candidate names a media section that the remote description does not have.
    #[error(
        "ICE candidate names unknown media section (mid {mid:?}, m-line index {mline_index:?})"
    )]
    UnknownMediaSection {
        /// The `sdpMid` the candidate carried.
        mid: Option<String>,
        /// The `sdpMLineIndex` the candidate carried.
        mline_index: Option<u16>,
    },
    /// More remote ICE candidates arrived before the remote description than are kept for it
    /// (the candidate is refused; set the remote description first).
    #[error("more than {max} remote ICE candidates before the remote description")]
    TooManyEarlyCandidates {
        /// How many are kept.
        max: usize,
    },
    /// A session description is larger than
    /// [`MAX_SESSION_DESCRIPTION_SIZE`](crate::MAX_SESSION_DESCRIPTION_SIZE) (it is refused
    /// unread; the connection is unchanged).
    #[error("session description of {size} bytes exceeds the maximum of {max} bytes")]
    SessionDescriptionTooLarge {
        /// The size of the refused description.
        size: usize,
        /// The largest description accepted.
        max: usize,
    },
    /// A remote ICE candidate points at an address no connectivity check may be sent to: a
    /// multicast, broadcast or unspecified address. It is refused (one in a remote
    /// description is left out of it).
    #[error("ICE candidate address {address} is multicast, broadcast or unspecified")]
    UnusableCandidateAddress {
        /// The candidate's address.
        address: std::net::SocketAddr,
    },
    /// More remote ICE candidates than are kept for one remote description (1,000; a real
    /// peer sends a few dozen). The candidate is refused; candidates beyond the bound in a
    /// remote description are left out of it.
    #[error("more than {max} remote ICE candidates")]
    TooManyRemoteCandidates {
        /// How many are kept.
        max: usize,
    },
    /// A remote ICE candidate is longer than
    /// [`MAX_CANDIDATE_SIZE`](crate::MAX_CANDIDATE_SIZE) bytes; it is refused unread.
    #[error("ICE candidate of {size} bytes exceeds the maximum of {max} bytes")]
    CandidateTooLarge {
        /// The size of the refused candidate (its `candidate` string).
        size: usize,
        /// The largest candidate accepted.
        max: usize,
    },
    /// The operation is not valid in the current signaling state, or its arguments are invalid.
    #[error("invalid operation: {0}")]
    InvalidOperation(#[source] CoreError),
    /// The transceiver of a track was stopped (by this side, or rejected by the remote peer in
    /// a negotiation): it sends and receives nothing any more.
    #[error("transceiver is stopped")]
    TransceiverStopped,
    /// A codec that the connection's media engine does not have for that kind of media.
    #[error("codec {mime_type} is not supported here")]
    UnsupportedCodec {
        /// The MIME type of the codec asked for.
        mime_type: String,
    },
    /// No runtime was configured and none could be found (for example, no Tokio runtime is
    /// running on the current thread).
    #[error("no async runtime available: {0}")]
    NoRuntime(&'static str),
    /// A byte stream was asked of a data channel that may lose or reorder messages
    /// (unordered, or with `max_retransmits` / `max_packet_life_time`).
    #[error("data channel is not reliable and ordered: it cannot carry a byte stream")]
    NotAByteStream,
    /// No port of the range given to
    /// [`PeerConnectionBuilder::port_range`](crate::PeerConnectionBuilder::port_range) was
    /// free (or the range holds none).
    #[error("no free UDP port in {start}..={end}")]
    PortRangeExhausted {
        /// The first port of the range.
        start: u16,
        /// The last port of the range.
        end: u16,
    },
    /// [`PeerConnectionBuilder::nat_1to1_ips`](crate::PeerConnectionBuilder::nat_1to1_ips)
    /// was given a candidate type other than host or srflx, or an address that is not
    /// unicast.
    #[error("invalid 1:1 NAT mapping: {0}")]
    InvalidNat1To1(String),
    /// No local address could be bound for ICE.
    #[error("no usable local address to bind")]
    NoLocalAddress,
    /// An ICE server of the configuration cannot be used: see [`IceServerError`] for why.
    #[error("invalid ICE server URL {url:?}: {reason}")]
    InvalidIceServer {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: IceServerError,
    },
    /// The PEM given to `PeerConnectionBuilder::tls_root_certificates` holds no usable
    /// certificate.
    #[error("invalid TLS root certificates: {0}")]
    InvalidTlsRoots(String),
    /// An I/O error, such as a failure to bind a UDP socket.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Why an ICE server of the configuration was refused (see [`Error::InvalidIceServer`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IceServerError {
    /// The URL does not parse as a STUN or TURN URL (RFC 7064 / RFC 7065).
    #[error("malformed URL: {0}")]
    Malformed(#[source] CoreError),
    /// The scheme is not `stun:`, `turn:` or `turns:`.
    #[error("unsupported scheme {0:?}")]
    UnsupportedScheme(String),
    /// A `turn:` or `turns:` URL without a username or a credential.
    #[error("TURN server without username or credential")]
    MissingCredentials,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
