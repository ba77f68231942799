//! What `axum-signaling` and `actix-signaling` share: the page, the signaling messages, the
//! chat room and the session loop. The web frameworks only turn their WebSocket into a
//! [`Stream`] of [`ClientMessage`]s and a [`Sink`] of [`ServerMessage`]s and call [`session`].
//!
//! # The protocol (JSON text frames on one WebSocket per connection)
//!
//! | direction | message |
//! |---|---|
//! | page → server | `{"type":"offer","sdp":"..."}` (once) |
//! | page → server | `{"type":"candidate","candidate":{...}}`, `{"type":"candidate","candidate":null}` at the end |
//! | server → page | `{"type":"answer","sdp":"..."}` |
//! | server → page | `{"type":"candidate","candidate":{...}}`, then `null` at the end of gathering |
//! | server → page | `{"type":"stats",...}`: what the server sees, at most once a second |
//! | server → page | `{"type":"error","message":"..."}` |
//!
//! Candidates go out as they are found, both ways (trickle ICE); a candidate that arrives
//! before the offer is applied is kept by the library and applied with it.
//!
//! # What the session does
//!
//! * **Chat**: the page opens a data channel `chat`. Every message a page sends on it is
//!   broadcast to the `chat` channel of every connected page, its sender included (so one page
//!   alone sees its messages come back), in the order the room got them.
//! * **Reflect**: every audio and video track the page sends comes back on a track of the
//!   server's own, packet by packet (as in the `reflect` example).
//! * **Stats**: the connection's statistics, sampled every [`STATS_SAMPLE`] and throttled to
//!   [`STATS_TO_PAGE`], go to the page.

#[path = "reflecting.rs"]
mod reflecting;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use futures::{Sink, SinkExt, Stream};
use reflecting::{codec, reflect, sent_kinds};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::{StreamExt, wrappers::BroadcastStream};
use webrtc_streams::{
    DataChannel, DataChannelMessage, PeerConnection, PeerConnectionEvent,
    media::{LocalTrack, RtpCodecKind, RtpSender},
    rtc::peer_connection::{
        sdp::RTCSessionDescription, state::RTCPeerConnectionState, transport::RTCIceCandidateInit,
    },
    stats::RTCStatsReport,
};

/// The page both servers serve at `/`.
pub const PAGE: &str = include_str!("signal.html");

/// How often the server samples the connection's statistics.
pub const STATS_SAMPLE: Duration = Duration::from_millis(250);
/// How often at most the page gets them.
pub const STATS_TO_PAGE: Duration = Duration::from_secs(1);
/// How many chat messages a slow page may fall behind before it misses some.
const ROOM_CAPACITY: usize = 256;
/// The largest WebSocket message the servers accept (an SDP offer is a few KiB).
pub const MAX_SIGNAL_MESSAGE: usize = 64 * 1024;

/// A message from the page.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMessage {
    /// The page's offer (the page always offers).
    Offer { sdp: String },
    /// One of the page's ICE candidates; `None` when it has no more.
    Candidate {
        candidate: Option<RTCIceCandidateInit>,
    },
}

/// A message to the page.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    /// The answer to the page's offer.
    Answer { sdp: String },
    /// One of the server's ICE candidates; `None` at the end of gathering.
    Candidate {
        candidate: Option<RTCIceCandidateInit>,
    },
    /// What the server sees of the connection.
    Stats(ServerStats),
    /// Something the page sent could not be used.
    Error { message: String },
}

/// The server's view of one connection, as the page gets it.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStats {
    /// The connection state, as the server sees it.
    pub state: String,
    /// RTP packets received from the page, all tracks.
    pub rtp_packets_received: u64,
    /// RTP packets sent back to the page, all tracks.
    pub rtp_packets_sent: u64,
    /// Bytes received on the selected transport.
    pub bytes_received: u64,
    /// Remote candidates the page trickled.
    pub remote_candidates: u32,
    /// Whether the page said it has no more candidates.
    pub remote_candidates_done: bool,
}

/// A page's message as its WebSocket delivered it: parsed, or why not.
pub type Incoming = Result<ClientMessage, String>;

/// Parses one WebSocket text frame.
pub fn parse(text: &str) -> Incoming {
    serde_json::from_str(text).map_err(|e| format!("not a signaling message: {e}"))
}

/// Serializes one message as a WebSocket text frame.
pub fn to_text(message: &ServerMessage) -> String {
    // Plain data: serializing to a string cannot fail.
    serde_json::to_string(message).unwrap_or_default()
}

/// The chat room all sessions of a server share: a broadcast channel of messages.
#[derive(Clone)]
pub struct Room(broadcast::Sender<DataChannelMessage>);

impl Room {
    pub fn new() -> Self {
        Self(broadcast::channel(ROOM_CAPACITY).0)
    }
}

/// What the session loop reacts to: its three streams merged into one.
enum Input {
    /// A message from the page's WebSocket.
    Page(Incoming),
    /// The WebSocket closed.
    PageGone,
    /// Something happened on the peer connection.
    Peer(PeerConnectionEvent),
    /// A statistics report (already throttled).
    Stats(Box<RTCStatsReport>),
}

/// Runs one page's connection until the page goes away or the connection fails: a new
/// [`PeerConnection`] on `ice_ip`, driven by the page's messages from `page` while the
/// connection's events, ICE candidates and statistics go back through `to_page`.
///
/// Neither stream needs to be `Send`, so this runs as well on Actix's per-worker
/// current-thread runtime (with `spawn_local`) as on a multi-threaded Tokio under Axum.
pub async fn session<S, K>(page: S, mut to_page: K, room: Room, ice_ip: IpAddr)
where
    S: Stream<Item = Incoming> + Unpin,
    K: Sink<ServerMessage> + Unpin,
{
    let pc = match PeerConnection::builder()
        .bind([SocketAddr::new(ice_ip, 0)])
        .default_codecs()
        .build()
        .await
    {
        Ok(pc) => pc,
        Err(e) => {
            let _ = to_page
                .send(ServerMessage::Error {
                    message: format!("cannot create a connection: {e}"),
                })
                .await;
            return;
        }
    };

    // One loop over everything that can happen, as one stream:
    // - the page's messages, then one `PageGone` when its socket closes (`chain`);
    // - every event of the connection (candidates, states, channels, tracks), subscribed
    //   before anything is negotiated, so nothing is missed;
    // - statistics: sampled every STATS_SAMPLE, at most one per STATS_TO_PAGE reaches the
    //   page. The stats stream is lazy (a report is taken when the stream is polled), so the
    //   throttle slows the sampling too: nothing piles up.
    let page = page
        .map(Input::Page)
        .chain(tokio_stream::once(Input::PageGone));
    let events = pc.events().map(Input::Peer);
    let stats = pc
        .stats_stream(STATS_SAMPLE)
        .throttle(STATS_TO_PAGE)
        .map(|report| Input::Stats(Box::new(report)));
    let inputs = page.merge(events).merge(stats);
    tokio::pin!(inputs);

    let mut senders: HashMap<RtpCodecKind, Vec<RtpSender>> = HashMap::new();
    let mut remote_candidates = 0u32;
    let mut remote_candidates_done = false;
    while let Some(input) = inputs.next().await {
        let reply = match input {
            Input::Page(Ok(ClientMessage::Offer { sdp })) => match answer(&pc, sdp).await {
                Ok((answer, made)) => {
                    senders = made;
                    Some(ServerMessage::Answer { sdp: answer })
                }
                Err(message) => Some(ServerMessage::Error { message }),
            },
            Input::Page(Ok(ClientMessage::Candidate { candidate })) => {
                // An empty candidate marks the end of the page's candidates.
                let candidate = candidate.unwrap_or_default();
                if candidate.candidate.is_empty() {
                    remote_candidates_done = true;
                } else {
                    remote_candidates += 1;
                }
                match pc.add_ice_candidate(candidate).await {
                    Ok(()) => None,
                    Err(e) => Some(ServerMessage::Error {
                        message: format!("candidate: {e}"),
                    }),
                }
            }
            Input::Page(Err(message)) => Some(ServerMessage::Error { message }),
            Input::PageGone => break,
            Input::Peer(PeerConnectionEvent::IceCandidate(candidate)) => {
                Some(ServerMessage::Candidate { candidate })
            }
            Input::Peer(PeerConnectionEvent::DataChannel(dc)) if dc.label() == "chat" => {
                join_room(dc, &room);
                None
            }
            Input::Peer(PeerConnectionEvent::Track(track)) => {
                match senders.get_mut(&track.kind()).and_then(Vec::pop) {
                    Some(sender) => {
                        tokio::spawn(reflect(track, sender));
                    }
                    None => eprintln!("no sender left for a {} track", track.kind()),
                }
                None
            }
            Input::Peer(PeerConnectionEvent::ConnectionStateChange(
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed,
            )) => break,
            Input::Peer(_) => None,
            Input::Stats(report) => Some(ServerMessage::Stats(summary(
                &pc,
                &report,
                remote_candidates,
                remote_candidates_done,
            ))),
        };
        if let Some(reply) = reply
            && to_page.send(reply).await.is_err()
        {
            break;
        }
    }
    let _ = pc.close().await;
    let _ = to_page.close().await;
}

/// Applies the page's offer, adds one sending track for each kind the page sends (each takes
/// the page's transceiver of its kind, which becomes send-and-receive), and answers.
async fn answer(
    pc: &PeerConnection,
    sdp: String,
) -> Result<(String, HashMap<RtpCodecKind, Vec<RtpSender>>), String> {
    let offer = RTCSessionDescription::offer(sdp).map_err(|e| e.to_string())?;
    let kinds = sent_kinds(&offer.sdp);
    pc.set_remote_description(offer)
        .await
        .map_err(|e| e.to_string())?;
    let mut senders: HashMap<RtpCodecKind, Vec<RtpSender>> = HashMap::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let track = LocalTrack::new(kind, format!("reflect-{i}"), "reflect", codec(kind));
        let sender = pc.add_track(track).await.map_err(|e| e.to_string())?;
        senders.entry(kind).or_default().push(sender);
    }
    let answer = pc.create_answer().await.map_err(|e| e.to_string())?;
    let sdp = answer.sdp.clone();
    // No waiting for gathering: the candidates follow as `IceCandidate` events.
    pc.set_local_description(answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok((sdp, senders))
}

/// Puts a page's `chat` channel in the room: what it receives goes to everyone, what anyone
/// sends comes out of it. Both directions are one stream combinator each and end with the
/// channel.
fn join_room(dc: DataChannel, room: &Room) {
    let (to_channel, from_channel) = dc.split();
    let publish = room.0.clone();
    tokio::spawn(async move {
        let mut from_channel = from_channel;
        while let Some(message) = from_channel.next().await {
            // No subscriber is not an error: the sender has left meanwhile.
            let _ = publish.send(message);
        }
    });
    // A page that falls more than ROOM_CAPACITY messages behind misses the oldest
    // (`Lagged`), which is skipped here; the room never waits for a slow page.
    let everyone = BroadcastStream::new(room.0.subscribe()).filter_map(Result::ok);
    tokio::spawn(async move {
        let _ = futures::StreamExt::forward(everyone.map(Ok), to_channel).await;
    });
}

/// The connection's numbers for the page.
fn summary(
    pc: &PeerConnection,
    report: &RTCStatsReport,
    remote_candidates: u32,
    remote_candidates_done: bool,
) -> ServerStats {
    ServerStats {
        state: pc.connection_state().to_string(),
        rtp_packets_received: report
            .inbound_rtp_streams()
            .map(|s| s.received_rtp_stream_stats.packets_received)
            .sum(),
        rtp_packets_sent: report
            .outbound_rtp_streams()
            .map(|s| s.sent_rtp_stream_stats.packets_sent)
            .sum(),
        bytes_received: report.transport().map_or(0, |t| t.bytes_received),
        remote_candidates,
        remote_candidates_done,
    }
}
