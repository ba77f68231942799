//! # webrtc-streams
//!
//! Async, runtime-agnostic, **stream-first** WebRTC for Rust, built over the sans-I/O protocol
//! core [`rtc`].
//!
//! ## WebRTC in three paragraphs
//!
//! Two peers that want to talk directly first exchange *session descriptions* (SDP) through a
//! channel of your choosing (HTTP, WebSocket, copy and paste): one creates an **offer**, the
//! other replies with an **answer**. The descriptions say what the peers want to exchange
//! (data channels, audio, video) and carry their cryptographic fingerprints.
//!
//! Each peer also announces **ICE candidates**, addresses where it might be reachable. ICE
//! tries the candidate pairs and settles on one that works; DTLS then secures the path, and
//! SCTP over DTLS carries **data channels**: message-oriented, reliable or not, ordered or not.
//!
//! Audio and video travel as RTP over the same secured path: each **track** is a stream of
//! packets ([`media`]).
//!
//! This crate does the networking: it binds UDP sockets, gathers candidates, runs the timers
//! and moves packets between the sockets and the protocol core. You do the signaling.
//!
//! ## Everything is a stream
//!
//! A [`PeerConnection`] is a cheap, cloneable handle. Every event of the connection is a
//! [`Stream`](futures::Stream): [`PeerConnection::events`] yields them all in order as
//! [`PeerConnectionEvent`]s, and typed views ([`PeerConnection::ice_candidates`],
//! [`PeerConnection::connection_states`], [`PeerConnection::data_channels`], ...) yield one
//! kind each. Any number of subscribers may listen; each sees every event from the moment it
//! subscribed; state streams start with the current state. A subscriber that stops reading
//! slows nobody down: it misses the oldest events and is told how many
//! ([`EventStream::missed`], [`PeerConnectionEvent::Lagged`]).
//!
//! Remote data channels, remote tracks and local ICE candidates are never lost for want of a
//! listener: one that arrives while nobody subscribes to [`PeerConnection::data_channels`]
//! (resp. [`PeerConnection::tracks`], [`PeerConnection::ice_candidates`]) or
//! [`PeerConnection::events`] waits (a channel with the messages it receives) for the next
//! subscriber of either, which gets it first. (Up to the event
//! capacity of them wait; beyond it the oldest is dropped and the next subscriber is told how
//! many it missed.) Drop a channel you do not want: its messages are then discarded.
//!
//! Payloads that must not be lost are not multicast: each [`DataChannel`] has its own inbox,
//! read with [`DataChannel::messages`], and all inboxes of a connection share one bound (the
//! [receive budget](PeerConnectionBuilder::receive_budget)). A reader that stops reading slows
//! the remote sender down through SCTP flow control; nothing is dropped. On the sending side,
//! [`DataChannel::send`] waits while the channel's send buffer is above its high-water mark.
//!
//! ```no_run
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use webrtc_streams::{PeerConnection, PeerConnectionEvent};
//!
//! # async fn run() -> webrtc_streams::Result<()> {
//! let pc = PeerConnection::builder().build().await?; // Tokio runtime by default
//! let mut events = pc.events();
//! let dc = pc.create_data_channel("chat", Default::default()).await?;
//! let offer = pc.create_offer().await?;
//! pc.set_local_description(offer).await?;
//! // ... send the offer to the remote peer; apply its answer and candidates:
//! # let answer = todo!();
//! pc.set_remote_description(answer).await?;
//!
//! tokio::spawn(async move {
//!     while let Some(ev) = events.next().await {
//!         match ev {
//!             PeerConnectionEvent::IceCandidate(Some(c)) => { /* signal it */ }
//!             PeerConnectionEvent::ConnectionStateChange(s) => println!("connection {s}"),
//!             _ => {}
//!         }
//!     }
//! });
//!
//! dc.send(Bytes::from_static(b"hi")).await?; // waits until open, and while the buffer is full
//! let mut msgs = dc.messages();
//! while let Some(m) = msgs.next().await {
//!     println!("got {} bytes", m.data.len());
//! }
//! # Ok(()) }
//! ```
//!
//! `build()` binds `0.0.0.0:0`, which expands to one socket per interface address *except
//! loopback and link-local*: two peers on one machine without a network find each other only
//! with [`include_loopback(true)`](PeerConnectionBuilder::include_loopback) (or by binding
//! `127.0.0.1:0`, as the examples do).
//!
//! Without trickle ICE, wait for [`PeerConnection::gathering_complete`] after
//! `set_local_description` and send [`PeerConnection::local_description`], which then holds
//! every local candidate.
//!
//! ## The `rtc` types you need
//!
//! The types a program passes to or gets from this crate's API are `rtc`'s own, and the ones
//! every program touches are re-exported here at the crate root, so that one `use` line is
//! enough:
//!
//! | what | types |
//! |---|---|
//! | signaling | [`RTCSessionDescription`], [`RTCSdpType`], [`RTCIceCandidateInit`], [`RTCIceCandidateType`] |
//! | configuration | [`RTCConfiguration`], [`RTCConfigurationBuilder`], [`RTCIceServer`], [`RTCIceTransportPolicy`], [`RTCOfferOptions`], [`RTCAnswerOptions`] |
//! | engines | [`SettingEngine`], [`SettingEngineBuilder`], [`SctpMaxMessageSize`], [`MediaEngine`], [`MulticastDnsMode`] |
//! | states | [`RTCPeerConnectionState`], [`RTCSignalingState`], [`RTCIceConnectionState`], [`RTCIceGatheringState`] |
//! | data channels | [`RTCDataChannelInit`] |
//!
//! Everything else of `rtc` (codecs, RTP and RTCP packets, statistics) stays under
//! [`rtc`], re-exported whole, at the version this crate is built with.
//!
//! ```
//! use webrtc_streams::{
//!     PeerConnection, RTCConfigurationBuilder, RTCIceServer, RTCSdpType, RTCSessionDescription,
//! };
//!
//! let config = RTCConfigurationBuilder::new()
//!     .with_ice_servers(vec![RTCIceServer {
//!         urls: vec!["stun:stun.l.google.com:19302".to_owned()],
//!         ..Default::default()
//!     }])
//!     .build();
//! let builder = PeerConnection::builder().configuration(config);
//! # let _ = builder;
//! # fn answer_of(desc: &RTCSessionDescription) -> bool { desc.sdp_type == RTCSdpType::Answer }
//! ```
//!
//! ## The driver and time
//!
//! Each connection has one background task, the *driver*, which exclusively owns the `rtc`
//! core, the connection's UDP sockets and its timer. Handle methods are commands sent to it;
//! there is no lock around the protocol state. The driver follows the sans-I/O rule: after
//! every input (datagram, timeout, command) it drains every output of the core before taking
//! the next input, and re-arms its timer from the core's next deadline. It reads the time only
//! from [`Runtime::now`](runtime::Runtime::now), so a runtime with a virtual clock drives the
//! whole stack on virtual time. Work per wake-up is bounded, so one busy connection cannot
//! starve other tasks.
//!
//! Dropping the last handle (every [`PeerConnection`] clone and every [`DataChannel`]) closes
//! the connection and stops the driver, releasing its sockets; [`PeerConnection::close`] does
//! the same explicitly and ends every stream.
//!
//! ## Runtimes and features
//!
//! | feature | runtime |
//! |---|---|
//! | `runtime-tokio` (default) | `runtime::TokioRuntime` |
//! | `runtime-smol` | `runtime::SmolRuntime` |
//! | `runtime-async-std` | `runtime::AsyncStdRuntime` (async-std is discontinued upstream) |
//! | `runtime-embassy` | `runtime::EmbassyRuntime` (experimental; hosted only) |
//! | `runtime-sim` | `runtime::sim::SimRuntime`: deterministic simulation for tests |
//!
//! The runtime is chosen per connection ([`PeerConnectionBuilder::runtime`]); any type that
//! implements [`runtime::Runtime`] works. The features are additive. `docs/runtimes.md` in the
//! repository says which to choose and how to set each up.
//!
//! ## Coming from `webrtc`
//!
//! The repository's `docs/migrating-from-webrtc-0.21.md` and `docs/migrating-from-webrtc-0.17.md`
//! map every handler method and callback of those versions to the stream (or handler) that
//! replaces it here, and explain the differences in runtime selection, back-pressure, closing
//! and errors. Their code is compiled by `cargo test --doc`.
//!
//! An optional push API sits on top of the same streams: implement
//! [`PeerConnectionEventHandler`] and pass it to [`PeerConnectionBuilder::handler`], or attach
//! it to a running connection with [`HandlerBridge::attach`].
//!
//! ## Errors and panics
//!
//! Every fallible call returns [`Error`]. Bad input from the application (a malformed
//! description, a candidate for an unknown media section, a send on a closed channel) fails
//! that call and changes nothing else. Input from the network never panics and never stops the
//! driver. The crate does not `unwrap` anything that comes from the network.
//!
//! ## Hostile networks
//!
//! Anyone who can send UDP to a connection's port can send it anything, and the `rtc` core
//! keeps state for some packets before it authenticates them. So the driver filters every
//! datagram before the core sees it: STUN checks must carry the connection's ICE credentials
//! (`USERNAME` and a verifying `MESSAGE-INTEGRITY`), DTLS is accepted only from addresses that
//! passed such a check and only as records a genuine peer sends at that point of the handshake,
//! and RTP/RTCP is refused while no media is negotiated. [`PeerConnection::filter_stats`]
//! counts what was refused; refusals are logged once per kind and connection, at debug level.
//! The README's "Security" section lists what remains up to the core.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod channel_io;
pub mod data_channel;
mod driver;
pub mod error;
pub mod event;
pub mod media;
mod mux;
mod peer_connection;
pub mod runtime;
mod shared;
pub mod stats;
pub mod stream;
mod sync;

/// Counts of live objects in this process, for leak tests. Not a stable API.
#[doc(hidden)]
pub mod __live {
    use std::sync::atomic::Ordering;

    use crate::sync::{LIVE_CHANNELS, LIVE_CONNECTIONS, LIVE_DRIVERS, LIVE_SUBSCRIPTIONS};

    /// Driver futures not yet dropped.
    pub fn drivers() -> usize {
        LIVE_DRIVERS.load(Ordering::Relaxed)
    }

    /// Connections' shared states (alive while a handle, a driver or a stream holds one).
    pub fn connections() -> usize {
        LIVE_CONNECTIONS.load(Ordering::Relaxed)
    }

    /// Data channels' shared states.
    pub fn channels() -> usize {
        LIVE_CHANNELS.load(Ordering::Relaxed)
    }

    /// Subscriptions to event sources (one per stream of events, states, messages, ...).
    pub fn subscriptions() -> usize {
        LIVE_SUBSCRIPTIONS.load(Ordering::Relaxed)
    }
}

/// The multicast ring of [`stream`], for `benches/multicast.rs`. Not a stable API.
#[doc(hidden)]
pub mod __bench {
    use std::task::{Context, Poll};

    /// A multicast queue (see [`EventStream`](crate::EventStream)).
    pub struct Multicast<T>(crate::stream::Multicast<T>);

    /// One subscriber of a [`Multicast`].
    pub struct Receiver<T>(crate::stream::Receiver<T>);

    impl<T: Clone> Multicast<T> {
        /// A queue holding at most `capacity` unread items.
        pub fn new(capacity: usize) -> Self {
            Self(crate::stream::Multicast::new(capacity))
        }

        /// Publishes to every subscriber; never waits.
        pub fn publish(&self, item: T) {
            self.0.publish(item)
        }

        /// A new subscriber.
        pub fn subscribe(&self) -> Receiver<T> {
            Receiver(self.0.subscribe())
        }
    }

    impl<T: Clone> Receiver<T> {
        /// The next item, `Err(missed)` after an overflow, `None` once closed.
        pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, u64>>> {
            self.0.poll_recv(cx)
        }
    }
}

pub use channel_io::{ByteReader, ByteStream, ByteWriter, MessageSink};
pub use data_channel::{DataChannel, DataChannelEvent, DataChannelMessage, MessageStream};
pub use error::{CloseReason, Error, IceServerError, Result};
pub use event::{IceCandidateEvent, PeerConnectionEvent};
pub use mux::{MuxStats, UdpMux};
pub use peer_connection::{
    DEFAULT_FAILED_TIMEOUT, MAX_CANDIDATE_SIZE, MAX_SESSION_DESCRIPTION_SIZE, PeerConnection,
    PeerConnectionBuilder,
};
pub use rtc;
// The `rtc` types every program touches, at the crate root (see "The `rtc` types you need").
pub use data_channel::RTCDataChannelInit;
pub use rtc::{
    ice::mdns::MulticastDnsMode,
    peer_connection::{
        configuration::{
            RTCAnswerOptions, RTCConfiguration, RTCConfigurationBuilder, RTCIceTransportPolicy,
            RTCOfferOptions,
            media_engine::MediaEngine,
            setting_engine::{SctpMaxMessageSize, SettingEngine, SettingEngineBuilder},
        },
        sdp::{RTCSdpType, RTCSessionDescription},
        state::{
            RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSignalingState,
        },
        transport::{RTCIceCandidateInit, RTCIceCandidateType, RTCIceServer},
    },
};
pub use shared::counters::{FilterStats, SocketStats};
pub use stream::{EventStream, LagStream, WithLag};

mod handler;
pub use handler::{HandlerBridge, PeerConnectionEventHandler};
pub use peer_connection::WeakPeerConnection;

/// The guides under `docs/`, included so that `cargo test --doc` compiles their code.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../docs/migrating-from-webrtc-0.17.md")]
    mod migrating_from_webrtc_0_17 {}

    #[doc = include_str!("../docs/runtimes.md")]
    mod runtimes {}
}
