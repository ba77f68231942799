//! Connection events and the hub that fans them out.

use std::sync::{Arc, Weak};

use rtc::peer_connection::{
    state::{
        RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
    },
    transport::RTCIceCandidateInit,
};

use crate::{
    data_channel::{DataChannel, DcShared},
    handler::ChannelWatch,
    peer_connection::ConnHandle,
    stream::{EventStream, Multicast},
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
    /// This subscriber fell behind and missed `missed` events at this point of the stream.
    Lagged {
        /// How many events were skipped.
        missed: u64,
    },
}

/// An event as the driver publishes it. Data channels travel as their shared state, so an
/// event sitting unread in a queue does not keep the connection alive; subscribers turn it
/// into a handle when they read it.
#[derive(Clone)]
pub(crate) enum Raw {
    IceCandidate(Option<RTCIceCandidateInit>),
    Connection(RTCPeerConnectionState),
    Signaling(RTCSignalingState),
    IceConnection(RTCIceConnectionState),
    IceGathering(RTCIceGatheringState),
    NegotiationNeeded,
    DataChannel(Arc<DcShared>),
}

/// The states the synchronous getters read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct States {
    pub(crate) connection: RTCPeerConnectionState,
    pub(crate) signaling: RTCSignalingState,
    pub(crate) ice_connection: RTCIceConnectionState,
    pub(crate) ice_gathering: RTCIceGatheringState,
}

/// Current states plus one multicast per event kind. Publishing and subscribing happen under
/// one lock, so a new state subscriber sees the current state and then exactly the changes
/// after it.
pub(crate) struct Hub {
    pub(crate) states: States,
    all: Multicast<Raw>,
    candidates: Multicast<Raw>,
    connection: Multicast<Raw>,
    signaling: Multicast<Raw>,
    ice_connection: Multicast<Raw>,
    ice_gathering: Multicast<Raw>,
    data_channels: Multicast<Raw>,
    negotiation: Multicast<Raw>,
    /// Locally created channels, for the handler bridge only (it must see every channel; the
    /// events announce remote ones). Lossless: one entry per channel created.
    local_channels: Option<async_channel::Sender<ChannelWatch>>,
}

impl Hub {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            states: States {
                connection: RTCPeerConnectionState::New,
                signaling: RTCSignalingState::Stable,
                ice_connection: RTCIceConnectionState::New,
                ice_gathering: RTCIceGatheringState::New,
            },
            all: Multicast::new(capacity),
            candidates: Multicast::new(capacity),
            connection: Multicast::new(capacity),
            signaling: Multicast::new(capacity),
            ice_connection: Multicast::new(capacity),
            ice_gathering: Multicast::new(capacity),
            data_channels: Multicast::new(capacity),
            negotiation: Multicast::new(capacity),
            local_channels: None,
        }
    }

    /// Records and fans out one event. State events that do not change the state are dropped.
    pub(crate) fn publish(&mut self, raw: Raw) {
        let s = &mut self.states;
        let typed = match &raw {
            Raw::IceCandidate(_) => &self.candidates,
            Raw::Connection(v) => {
                if std::mem::replace(&mut s.connection, *v) == *v {
                    return;
                }
                &self.connection
            }
            Raw::Signaling(v) => {
                if std::mem::replace(&mut s.signaling, *v) == *v {
                    return;
                }
                &self.signaling
            }
            Raw::IceConnection(v) => {
                if std::mem::replace(&mut s.ice_connection, *v) == *v {
                    return;
                }
                &self.ice_connection
            }
            Raw::IceGathering(v) => {
                if std::mem::replace(&mut s.ice_gathering, *v) == *v {
                    return;
                }
                &self.ice_gathering
            }
            Raw::NegotiationNeeded => &self.negotiation,
            Raw::DataChannel(_) => &self.data_channels,
        };
        typed.publish(raw.clone());
        self.all.publish(raw);
    }

    /// Ends every stream (after what is already queued).
    pub(crate) fn close(&self) {
        for m in [
            &self.all,
            &self.candidates,
            &self.connection,
            &self.signaling,
            &self.ice_connection,
            &self.ice_gathering,
            &self.data_channels,
            &self.negotiation,
        ] {
            m.close();
        }
        if let Some(tx) = &self.local_channels {
            tx.close();
        }
    }

    /// Starts the feed of locally created channels for the handler bridge.
    pub(crate) fn local_channels(&mut self) -> async_channel::Receiver<ChannelWatch> {
        let (tx, rx) = async_channel::unbounded();
        self.local_channels = Some(tx);
        rx
    }

    /// Tells the handler bridge, if there is one, about a channel created locally.
    pub(crate) fn announce_local_channel(&self, dc: &Arc<DcShared>) {
        if let Some(tx) = &self.local_channels {
            // Fails only once the bridge is gone: then nobody needs it.
            let _ = tx.try_send(ChannelWatch::new(dc.clone(), false));
        }
    }

    pub(crate) fn events(&self, conn: Weak<ConnHandle>) -> EventStream<PeerConnectionEvent> {
        EventStream::with_lag(
            None,
            self.all.subscribe(),
            move |raw| to_event(raw, &conn),
            |missed| PeerConnectionEvent::Lagged { missed },
        )
    }

    pub(crate) fn ice_candidates(&self) -> EventStream<Option<RTCIceCandidateInit>> {
        EventStream::new(None, self.candidates.subscribe(), |raw| match raw {
            Raw::IceCandidate(c) => Some(c),
            _ => None,
        })
    }

    pub(crate) fn connection_states(&self) -> EventStream<RTCPeerConnectionState> {
        EventStream::new(
            Some(self.states.connection),
            self.connection.subscribe(),
            |raw| match raw {
                Raw::Connection(s) => Some(s),
                _ => None,
            },
        )
    }

    pub(crate) fn signaling_states(&self) -> EventStream<RTCSignalingState> {
        EventStream::new(
            Some(self.states.signaling),
            self.signaling.subscribe(),
            |raw| match raw {
                Raw::Signaling(s) => Some(s),
                _ => None,
            },
        )
    }

    pub(crate) fn ice_connection_states(&self) -> EventStream<RTCIceConnectionState> {
        EventStream::new(
            Some(self.states.ice_connection),
            self.ice_connection.subscribe(),
            |raw| match raw {
                Raw::IceConnection(s) => Some(s),
                _ => None,
            },
        )
    }

    pub(crate) fn ice_gathering_states(&self) -> EventStream<RTCIceGatheringState> {
        EventStream::new(
            Some(self.states.ice_gathering),
            self.ice_gathering.subscribe(),
            |raw| match raw {
                Raw::IceGathering(s) => Some(s),
                _ => None,
            },
        )
    }

    pub(crate) fn data_channels(&self, conn: Weak<ConnHandle>) -> EventStream<DataChannel> {
        EventStream::new(None, self.data_channels.subscribe(), move |raw| match raw {
            Raw::DataChannel(dc) => Some(DataChannel {
                conn: conn.upgrade()?,
                dc,
            }),
            _ => None,
        })
    }

    pub(crate) fn negotiation_needed(&self) -> EventStream<()> {
        EventStream::new(None, self.negotiation.subscribe(), |raw| match raw {
            Raw::NegotiationNeeded => Some(()),
            _ => None,
        })
    }
}

fn to_event(raw: Raw, conn: &Weak<ConnHandle>) -> Option<PeerConnectionEvent> {
    Some(match raw {
        Raw::IceCandidate(c) => PeerConnectionEvent::IceCandidate(c),
        Raw::Connection(s) => PeerConnectionEvent::ConnectionStateChange(s),
        Raw::Signaling(s) => PeerConnectionEvent::SignalingStateChange(s),
        Raw::IceConnection(s) => PeerConnectionEvent::IceConnectionStateChange(s),
        Raw::IceGathering(s) => PeerConnectionEvent::IceGatheringStateChange(s),
        Raw::NegotiationNeeded => PeerConnectionEvent::NegotiationNeeded,
        Raw::DataChannel(dc) => PeerConnectionEvent::DataChannel(DataChannel {
            conn: conn.upgrade()?,
            dc,
        }),
    })
}
