//! The hub: current states plus one multicast per event kind, fed by the driver.

use std::{collections::VecDeque, sync::Arc};

use rtc::peer_connection::{
    event::RTCPeerConnectionIceErrorEvent,
    state::{
        RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
    },
    transport::RTCIceCandidateInit,
};

use super::{
    channel::{Announced, DcShared},
    media::TrackShared,
};
use crate::stream::{Held, Multicast, Receiver};

/// An event as the driver publishes it. Data channels travel as their shared state, so an
/// event sitting unread in a queue does not keep the connection alive; subscribers turn it
/// into a handle when they read it.
#[derive(Clone)]
pub(crate) enum Raw {
    IceCandidate(Option<RTCIceCandidateInit>),
    IceCandidateError(RTCPeerConnectionIceErrorEvent),
    Connection(RTCPeerConnectionState),
    Signaling(RTCSignalingState),
    IceConnection(RTCIceConnectionState),
    IceGathering(RTCIceGatheringState),
    NegotiationNeeded,
    DataChannel(Arc<DcShared>),
    Track(Arc<TrackShared>),
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
///
/// Remote data channels and remote tracks are not lost when nobody listens: one announced
/// while neither its typed stream (`data_channels()` / `tracks()`) nor `events()` has a
/// subscriber is held, in order, and the next subscriber of either takes it. At most the
/// event capacity of them are held; beyond it the oldest is dropped and the taker learns how
/// many it missed (as for any subscriber that falls behind).
pub(crate) struct Hub {
    pub(crate) states: States,
    pub(crate) all: Multicast<Raw>,
    pub(crate) candidates: Multicast<Raw>,
    pub(crate) candidate_errors: Multicast<Raw>,
    pub(crate) connection: Multicast<Raw>,
    pub(crate) signaling: Multicast<Raw>,
    pub(crate) ice_connection: Multicast<Raw>,
    pub(crate) ice_gathering: Multicast<Raw>,
    pub(crate) data_channels: Multicast<Raw>,
    pub(crate) negotiation: Multicast<Raw>,
    pub(crate) tracks: Multicast<Raw>,
    /// Locally created channels, for the handler bridge only (it must see every channel; the
    /// events announce remote ones). Lossless: one entry per channel created.
    local_channels: Option<async_channel::Sender<Announced>>,
    /// Remote channels and tracks announced while nobody listened, oldest first.
    held: VecDeque<Raw>,
    /// Held channels and tracks dropped because the hold was full, not yet reported.
    held_lost_channels: u64,
    held_lost_tracks: u64,
    capacity: usize,
}

/// Which held announcements a new subscriber takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    DataChannels,
    Tracks,
    All,
}

impl Take {
    fn wants(self, raw: &Raw) -> bool {
        match raw {
            Raw::DataChannel(_) => self != Take::Tracks,
            Raw::Track(_) => self != Take::DataChannels,
            _ => false,
        }
    }
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
            candidate_errors: Multicast::new(capacity),
            connection: Multicast::new(capacity),
            signaling: Multicast::new(capacity),
            ice_connection: Multicast::new(capacity),
            ice_gathering: Multicast::new(capacity),
            data_channels: Multicast::new(capacity),
            negotiation: Multicast::new(capacity),
            tracks: Multicast::new(capacity),
            local_channels: None,
            held: VecDeque::new(),
            held_lost_channels: 0,
            held_lost_tracks: 0,
            capacity: capacity.max(1),
        }
    }

    /// Subscribes to `multicast` (one of this hub's), taking the held announcements `take`
    /// names: a new subscriber receives them first.
    pub(crate) fn subscribe_taking(
        &mut self,
        take: Take,
        multicast: fn(&Hub) -> &Multicast<Raw>,
    ) -> (Held<Raw>, Receiver<Raw>) {
        let mut held = Held::default();
        if take != Take::Tracks {
            held.lost += std::mem::take(&mut self.held_lost_channels);
        }
        if take != Take::DataChannels {
            held.lost += std::mem::take(&mut self.held_lost_tracks);
        }
        if !self.held.is_empty() {
            let (taken, kept) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|raw| take.wants(raw));
            held.items = taken;
            self.held = kept;
        }
        (held, multicast(self).subscribe())
    }

    /// Holds a remote channel or track nobody listens for. Returns false if somebody does.
    fn hold(&mut self, raw: &Raw) -> bool {
        let listened = self.all.has_subscribers()
            || match raw {
                Raw::DataChannel(_) => self.data_channels.has_subscribers(),
                Raw::Track(_) => self.tracks.has_subscribers(),
                _ => return false,
            };
        if listened {
            return false;
        }
        if self.held.len() >= self.capacity
            && let Some(old) = self.held.pop_front()
        {
            match old {
                Raw::Track(_) => self.held_lost_tracks += 1,
                _ => self.held_lost_channels += 1,
            }
        }
        self.held.push_back(raw.clone());
        true
    }

    /// Records and fans out one event. State events that do not change the state are dropped.
    pub(crate) fn publish(&mut self, raw: Raw) {
        if self.hold(&raw) {
            return;
        }
        let s = &mut self.states;
        let typed = match &raw {
            Raw::IceCandidate(_) => &self.candidates,
            Raw::IceCandidateError(_) => &self.candidate_errors,
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
            Raw::Track(_) => &self.tracks,
        };
        typed.publish(raw.clone());
        self.all.publish(raw);
    }

    /// Ends every stream (after what is already queued).
    pub(crate) fn close(&self) {
        for m in [
            &self.all,
            &self.candidates,
            &self.candidate_errors,
            &self.connection,
            &self.signaling,
            &self.ice_connection,
            &self.ice_gathering,
            &self.data_channels,
            &self.negotiation,
            &self.tracks,
        ] {
            m.close();
        }
        if let Some(tx) = &self.local_channels {
            tx.close();
        }
    }

    /// Starts the feed of locally created channels for the handler bridge.
    pub(crate) fn local_channels(&mut self) -> async_channel::Receiver<Announced> {
        let (tx, rx) = async_channel::unbounded();
        self.local_channels = Some(tx);
        rx
    }

    /// Tells the handler bridge, if there is one, about a channel created locally.
    pub(crate) fn announce_local_channel(&self, dc: &Arc<DcShared>) {
        if let Some(tx) = &self.local_channels {
            // Fails only once the bridge is gone: then nobody needs it.
            let _ = tx.try_send(Announced::new(dc.clone(), false));
        }
    }
}
