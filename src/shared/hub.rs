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
/// Remote data channels, remote tracks and local ICE candidates are not lost when nobody
/// listens: one published while neither its typed stream (`data_channels()`, `tracks()`,
/// `ice_candidates()`) nor `events()` has a subscriber is held, in order, and the next
/// subscriber of either takes it. (So the candidates gathered by `set_local_description`
/// reach a subscriber that subscribes after the call returned, as W3C's `icecandidate`
/// events fire after it.) Held candidates are dropped when a new gathering starts and when
/// the connection is up. At most the event capacity of each kind is held; beyond it the oldest is dropped
/// and the taker learns how many it missed (as for any subscriber that falls behind); the
/// driver closes a remote channel dropped so ([`Hub::publish`] returns it).
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
    /// Locally created channels, for the handler bridges only (one feed per bridge: a bridge
    /// must see every channel; the events announce remote ones). Lossless: one entry per
    /// channel created.
    local_channels: Vec<async_channel::Sender<Announced>>,
    /// What was published while nobody listened, oldest first.
    held: VecDeque<Raw>,
    /// Held items dropped because the hold was full, not yet reported, per [`Kind`].
    held_lost: [u64; 3],
    capacity: usize,
}

/// The kinds of events held for the next subscriber.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    DataChannel = 0,
    Track = 1,
    Candidate = 2,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::DataChannel, Kind::Track, Kind::Candidate];

    fn of(raw: &Raw) -> Option<Kind> {
        match raw {
            Raw::DataChannel(_) => Some(Kind::DataChannel),
            Raw::Track(_) => Some(Kind::Track),
            Raw::IceCandidate(_) => Some(Kind::Candidate),
            _ => None,
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
            local_channels: Vec::new(),
            held: VecDeque::new(),
            held_lost: [0; 3],
            capacity: capacity.max(1),
        }
    }

    /// Subscribes to `multicast` (one of this hub's), taking the held items of `kind` (of
    /// every kind if `None`): a new subscriber receives them first.
    pub(crate) fn subscribe_taking(
        &mut self,
        kind: Option<Kind>,
        multicast: fn(&Hub) -> &Multicast<Raw>,
    ) -> (Held<Raw>, Receiver<Raw>) {
        let wants = |k: Kind| kind.is_none_or(|want| want == k);
        let mut held = Held::default();
        for k in Kind::ALL {
            if wants(k) {
                held.lost += std::mem::take(&mut self.held_lost[k as usize]);
            }
        }
        if !self.held.is_empty() {
            let (taken, kept) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|raw| Kind::of(raw).is_some_and(wants));
            held.items = taken;
            self.held = kept;
        }
        (held, multicast(self).subscribe())
    }

    /// Holds an item of a held kind that nobody listens for. Returns `None` if somebody does
    /// (or it is not of a held kind), else what the hold dropped to make room, if anything.
    fn hold(&mut self, raw: &Raw) -> Option<Option<Raw>> {
        let kind = Kind::of(raw)?;
        let typed = match kind {
            Kind::DataChannel => &self.data_channels,
            Kind::Track => &self.tracks,
            Kind::Candidate => &self.candidates,
        };
        if self.all.has_subscribers() || typed.has_subscribers() {
            return None;
        }
        let mut dropped = None;
        if self
            .held
            .iter()
            .filter(|r| Kind::of(r) == Some(kind))
            .count()
            >= self.capacity
            && let Some(i) = self.held.iter().position(|r| Kind::of(r) == Some(kind))
        {
            dropped = self.held.remove(i);
            self.held_lost[kind as usize] += 1;
        }
        self.held.push_back(raw.clone());
        Some(dropped)
    }

    /// Records and fans out one event. State events that do not change the state are dropped.
    /// Returns the item the hold dropped for this one, if it was full: nobody will ever
    /// receive it (the caller closes a remote channel dropped so).
    pub(crate) fn publish(&mut self, raw: Raw) -> Option<Raw> {
        if let Some(dropped) = self.hold(&raw) {
            return dropped;
        }
        let s = &mut self.states;
        let typed = match &raw {
            Raw::IceCandidate(_) => &self.candidates,
            Raw::IceCandidateError(_) => &self.candidate_errors,
            Raw::Connection(v) => {
                if std::mem::replace(&mut s.connection, *v) == *v {
                    return None;
                }
                if *v == RTCPeerConnectionState::Connected {
                    // Connected: the peer had what it needed; nobody asked for these.
                    self.held.retain(|r| !matches!(r, Raw::IceCandidate(_)));
                    self.held_lost[Kind::Candidate as usize] = 0;
                }
                &self.connection
            }
            Raw::Signaling(v) => {
                if std::mem::replace(&mut s.signaling, *v) == *v {
                    return None;
                }
                &self.signaling
            }
            Raw::IceConnection(v) => {
                if std::mem::replace(&mut s.ice_connection, *v) == *v {
                    return None;
                }
                &self.ice_connection
            }
            Raw::IceGathering(v) => {
                if std::mem::replace(&mut s.ice_gathering, *v) == *v {
                    return None;
                }
                if *v == RTCIceGatheringState::Gathering {
                    // A new gathering: candidates of the previous one nobody took are stale.
                    self.held.retain(|r| !matches!(r, Raw::IceCandidate(_)));
                    self.held_lost[Kind::Candidate as usize] = 0;
                }
                &self.ice_gathering
            }
            Raw::NegotiationNeeded => &self.negotiation,
            Raw::DataChannel(_) => &self.data_channels,
            Raw::Track(_) => &self.tracks,
        };
        typed.publish(raw.clone());
        self.all.publish(raw);
        None
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
        for tx in &self.local_channels {
            tx.close();
        }
    }

    /// Starts a feed of locally created channels for a new handler bridge; it ends at once
    /// if the hub is closed.
    pub(crate) fn local_channels(&mut self) -> async_channel::Receiver<Announced> {
        let (tx, rx) = async_channel::unbounded();
        // Feeds of bridges that ended (detached handlers) are forgotten here.
        self.local_channels.retain(|tx| !tx.is_closed());
        if self.all.is_closed() {
            tx.close();
        } else {
            self.local_channels.push(tx);
        }
        rx
    }

    /// Tells the handler bridges, if there are any, about a channel created locally.
    pub(crate) fn announce_local_channel(&self, dc: &Arc<DcShared>) {
        for tx in &self.local_channels {
            // Fails only once the bridge is gone: then nobody needs it.
            let _ = tx.try_send(Announced::new(dc.clone(), false));
        }
    }
}
