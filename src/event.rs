//! Connection events, and the typed streams of them that subscribers read from the hub.

use std::sync::Weak;

use rtc::peer_connection::{
    event::RTCPeerConnectionIceErrorEvent,
    state::{
        RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
    },
    transport::RTCIceCandidateInit,
};

use crate::{
    data_channel::DataChannel,
    media::RemoteTrack,
    shared::{
        ConnHandle,
        hub::{Hub, Kind, Raw},
    },
    stream::EventStream,
};

/// Something that happened on a [`PeerConnection`](crate::PeerConnection).
///
/// Delivered, in the order it happened, by [`PeerConnection::events`](crate::PeerConnection::events).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PeerConnectionEvent {
    /// A local ICE candidate to send to the remote peer. `None` marks the end of candidates
    /// (gathering is complete).
    IceCandidate(Option<RTCIceCandidateInit>),
    /// A STUN or TURN server of the configuration failed for one local socket: it did not
    /// answer in time (`error_code` 701), refused the request (its STUN error code, e.g. 401
    /// for wrong credentials), or cannot be used. Gathering goes on without it.
    IceCandidateError(RTCPeerConnectionIceErrorEvent),
    /// The aggregate connection state changed.
    ConnectionStateChange(RTCPeerConnectionState),
    /// The signaling (offer/answer) state changed.
    SignalingStateChange(RTCSignalingState),
    /// The ICE connection state changed.
    IceConnectionStateChange(RTCIceConnectionState),
    /// The ICE gathering state changed.
    IceGatheringStateChange(RTCIceGatheringState),
    /// A (re)negotiation is needed: create an offer and signal it.
    NegotiationNeeded,
    /// The remote peer opened a data channel.
    DataChannel(DataChannel),
    /// The remote peer sends a track (one event per SSRC, or per RID of a simulcast sender).
    Track(RemoteTrack),
    /// This subscriber fell behind and missed `missed` events at this point of the stream.
    Lagged {
        /// How many events were skipped.
        missed: u64,
    },
}

/// What [`PeerConnection::ice_candidates`](crate::PeerConnection::ice_candidates) yields: a
/// local candidate to signal, the end of a gathering, or the sign that this subscriber fell
/// behind and lost some of them.
///
/// ```no_run
/// # async fn f(pc: webrtc_streams::PeerConnection) {
/// use futures::StreamExt;
/// use webrtc_streams::IceCandidateEvent;
/// let mut candidates = pc.ice_candidates();
/// while let Some(event) = candidates.next().await {
///     match event {
///         IceCandidateEvent::Candidate(c) => println!("signal {}", c.candidate),
///         IceCandidateEvent::Complete => println!("signal end-of-candidates"),
///         IceCandidateEvent::Lagged { missed } => {
///             // Candidates (or an end marker) were lost: fall back to the full local
///             // description, which holds every candidate gathered so far.
///             eprintln!("lost {missed} candidate events");
///         }
///         _ => {}
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum IceCandidateEvent {
    /// A local ICE candidate to send to the remote peer.
    Candidate(RTCIceCandidateInit),
    /// The current gathering is complete: no more candidates until an ICE restart (signal
    /// end-of-candidates to the peer).
    Complete,
    /// This subscriber fell more than the event capacity behind and lost `missed` items
    /// (candidates or end markers) at this point of the stream. The local description
    /// ([`PeerConnection::local_description`](crate::PeerConnection::local_description))
    /// still holds every candidate gathered so far.
    Lagged {
        /// How many items were lost.
        missed: u64,
    },
}

impl IceCandidateEvent {
    /// The candidate, if this is one.
    pub fn candidate(&self) -> Option<&RTCIceCandidateInit> {
        match self {
            IceCandidateEvent::Candidate(c) => Some(c),
            _ => None,
        }
    }
}

impl From<Option<RTCIceCandidateInit>> for IceCandidateEvent {
    /// `Some` is a candidate, `None` the end of candidates (as in
    /// [`PeerConnectionEvent::IceCandidate`]).
    fn from(c: Option<RTCIceCandidateInit>) -> Self {
        match c {
            Some(c) => IceCandidateEvent::Candidate(c),
            None => IceCandidateEvent::Complete,
        }
    }
}

pub(crate) fn events(hub: &mut Hub, conn: Weak<ConnHandle>) -> EventStream<PeerConnectionEvent> {
    let (held, rx) = hub.subscribe_taking(None, |h| &h.all);
    EventStream::with_held(
        held,
        rx,
        move |raw| to_event(raw, &conn),
        Some(|missed| PeerConnectionEvent::Lagged { missed }),
    )
}

pub(crate) fn ice_candidates(hub: &mut Hub) -> EventStream<IceCandidateEvent> {
    let (held, rx) = hub.subscribe_taking(Some(Kind::Candidate), |h| &h.candidates);
    let convert = |raw| match raw {
        Raw::IceCandidate(c) => Some(IceCandidateEvent::from(c)),
        _ => None,
    };
    EventStream::with_held(
        held,
        rx,
        convert,
        Some(|missed| IceCandidateEvent::Lagged { missed }),
    )
}

pub(crate) fn ice_candidate_errors(hub: &Hub) -> EventStream<RTCPeerConnectionIceErrorEvent> {
    EventStream::new(None, hub.candidate_errors.subscribe(), |raw| match raw {
        Raw::IceCandidateError(e) => Some(e),
        _ => None,
    })
}

pub(crate) fn connection_states(hub: &Hub) -> EventStream<RTCPeerConnectionState> {
    EventStream::conflating(
        Some(hub.states.connection),
        hub.connection.subscribe(),
        |raw| match raw {
            Raw::Connection(s) => Some(s),
            _ => None,
        },
    )
}

pub(crate) fn signaling_states(hub: &Hub) -> EventStream<RTCSignalingState> {
    EventStream::conflating(
        Some(hub.states.signaling),
        hub.signaling.subscribe(),
        |raw| match raw {
            Raw::Signaling(s) => Some(s),
            _ => None,
        },
    )
}

pub(crate) fn ice_connection_states(hub: &Hub) -> EventStream<RTCIceConnectionState> {
    EventStream::conflating(
        Some(hub.states.ice_connection),
        hub.ice_connection.subscribe(),
        |raw| match raw {
            Raw::IceConnection(s) => Some(s),
            _ => None,
        },
    )
}

pub(crate) fn ice_gathering_states(hub: &Hub) -> EventStream<RTCIceGatheringState> {
    EventStream::conflating(
        Some(hub.states.ice_gathering),
        hub.ice_gathering.subscribe(),
        |raw| match raw {
            Raw::IceGathering(s) => Some(s),
            _ => None,
        },
    )
}

pub(crate) fn data_channels(hub: &mut Hub, conn: Weak<ConnHandle>) -> EventStream<DataChannel> {
    let (held, rx) = hub.subscribe_taking(Some(Kind::DataChannel), |h| &h.data_channels);
    let convert = move |raw| match raw {
        Raw::DataChannel(dc) => Some(DataChannel {
            conn: conn.upgrade()?,
            dc,
        }),
        _ => None,
    };
    EventStream::with_held(held, rx, convert, None)
}

pub(crate) fn tracks(hub: &mut Hub, conn: Weak<ConnHandle>) -> EventStream<RemoteTrack> {
    let (held, rx) = hub.subscribe_taking(Some(Kind::Track), |h| &h.tracks);
    let convert = move |raw| match raw {
        Raw::Track(shared) => Some(RemoteTrack {
            conn: conn.upgrade()?,
            shared,
        }),
        _ => None,
    };
    EventStream::with_held(held, rx, convert, None)
}

pub(crate) fn negotiation_needed(hub: &Hub) -> EventStream<()> {
    EventStream::conflating(None, hub.negotiation.subscribe(), |raw| match raw {
        Raw::NegotiationNeeded => Some(()),
        _ => None,
    })
}

fn to_event(raw: Raw, conn: &Weak<ConnHandle>) -> Option<PeerConnectionEvent> {
    Some(match raw {
        Raw::IceCandidate(c) => PeerConnectionEvent::IceCandidate(c),
        Raw::IceCandidateError(e) => PeerConnectionEvent::IceCandidateError(e),
        Raw::Connection(s) => PeerConnectionEvent::ConnectionStateChange(s),
        Raw::Signaling(s) => PeerConnectionEvent::SignalingStateChange(s),
        Raw::IceConnection(s) => PeerConnectionEvent::IceConnectionStateChange(s),
        Raw::IceGathering(s) => PeerConnectionEvent::IceGatheringStateChange(s),
        Raw::NegotiationNeeded => PeerConnectionEvent::NegotiationNeeded,
        Raw::DataChannel(dc) => PeerConnectionEvent::DataChannel(DataChannel {
            conn: conn.upgrade()?,
            dc,
        }),
        Raw::Track(shared) => PeerConnectionEvent::Track(RemoteTrack {
            conn: conn.upgrade()?,
            shared,
        }),
    })
}
