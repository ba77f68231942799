//! Glue for the reference implementation, `webrtc` 0.21.1 (handler-based), shared by the
//! interop tests and the benchmarks of this package.

use std::sync::Arc;

use webrtc::{
    data_channel::{DataChannel, DataChannelEvent},
    media_stream::track_remote::TrackRemote,
    peer_connection::{
        MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
        RTCIceGatheringState, RTCPeerConnectionState, Registry, register_default_interceptors,
    },
};

/// A `webrtc` 0.21.1 connection with its handler's events turned into channels.
pub struct AnchorPeer {
    pub pc: Arc<dyn PeerConnection>,
    pub channels: async_channel::Receiver<Arc<dyn DataChannel>>,
    pub tracks: async_channel::Receiver<Arc<dyn TrackRemote>>,
    gathered: async_channel::Receiver<()>,
    connected: async_channel::Receiver<()>,
}

struct Handler {
    channels: async_channel::Sender<Arc<dyn DataChannel>>,
    tracks: async_channel::Sender<Arc<dyn TrackRemote>>,
    gathered: async_channel::Sender<()>,
    connected: async_channel::Sender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.try_send(());
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.channels.try_send(dc);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.try_send(track);
    }
}

/// A `webrtc` 0.21.1 peer on 127.0.0.1 (Tokio runtime), with `send` blocking above
/// `send_buffer_limit` bytes in flight (its opt-in back-pressure; the default is unbounded).
pub async fn anchor_peer(send_buffer_limit: usize) -> AnchorPeer {
    build(PeerConnectionBuilder::new().with_data_channel_send_buffer_limit(send_buffer_limit)).await
}

/// [`anchor_peer`] with `certificate` as its DTLS certificate (a server reusing one for every
/// connection) instead of one generated for it.
pub async fn anchor_peer_with_certificate(
    send_buffer_limit: usize,
    certificate: webrtc_streams::rtc::peer_connection::certificate::RTCCertificate,
) -> AnchorPeer {
    let config = webrtc::peer_connection::RTCConfigurationBuilder::new()
        .with_certificates(vec![certificate])
        .build();
    build(
        PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_data_channel_send_buffer_limit(send_buffer_limit),
    )
    .await
}

/// A `webrtc` 0.21.1 peer on 127.0.0.1 that gathers relayed candidates only, from `servers`
/// (TURN), with `send` blocking above `send_buffer_limit` bytes in flight.
pub async fn anchor_relay_peer(
    servers: Vec<webrtc::peer_connection::RTCIceServer>,
    send_buffer_limit: usize,
) -> AnchorPeer {
    let config = webrtc::peer_connection::RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .with_ice_transport_policy(webrtc::peer_connection::RTCIceTransportPolicy::Relay)
        .build();
    build(
        PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_data_channel_send_buffer_limit(send_buffer_limit),
    )
    .await
}

/// A `webrtc` 0.21.1 peer on 127.0.0.1 (Tokio runtime) for audio and video: its default
/// codecs and default interceptors (NACK, RTCP reports).
pub async fn anchor_media_peer() -> AnchorPeer {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media_engine).unwrap();
    build(
        PeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry),
    )
    .await
}

async fn build(builder: PeerConnectionBuilder<String>) -> AnchorPeer {
    let (ch_tx, channels) = async_channel::unbounded();
    let (t_tx, tracks) = async_channel::unbounded();
    let (g_tx, gathered) = async_channel::bounded(1);
    let (c_tx, connected) = async_channel::bounded(1);
    let pc = builder
        .with_handler(Arc::new(Handler {
            channels: ch_tx,
            tracks: t_tx,
            gathered: g_tx,
            connected: c_tx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .expect("webrtc 0.21.1 peer");
    AnchorPeer {
        pc: Arc::new(pc),
        channels,
        tracks,
        gathered,
        connected,
    }
}

/// Offer from `a`, answer from `b`, each description sent once its gathering completed.
pub async fn negotiate(a: &AnchorPeer, b: &AnchorPeer) {
    let offer = a.pc.create_offer(None).await.unwrap();
    a.pc.set_local_description(offer).await.unwrap();
    a.gathering_complete().await;
    b.pc.set_remote_description(a.pc.local_description().await.unwrap())
        .await
        .unwrap();
    let answer = b.pc.create_answer(None).await.unwrap();
    b.pc.set_local_description(answer).await.unwrap();
    b.gathering_complete().await;
    a.pc.set_remote_description(b.pc.local_description().await.unwrap())
        .await
        .unwrap();
}

impl AnchorPeer {
    pub async fn gathering_complete(&self) {
        let _ = self.gathered.recv().await;
    }

    pub async fn connected(&self) {
        let _ = self.connected.recv().await;
    }
}

/// Waits for the channel's open event (events before it are skipped).
pub async fn wait_open(dc: &Arc<dyn DataChannel>) {
    while let Some(ev) = dc.poll().await {
        if matches!(ev, DataChannelEvent::OnOpen) {
            return;
        }
    }
    panic!("webrtc 0.21.1 channel closed before opening");
}

/// The next message on the channel, or `None` once it closed.
pub async fn next_message(
    dc: &Arc<dyn DataChannel>,
) -> Option<webrtc::data_channel::RTCDataChannelMessage> {
    while let Some(ev) = dc.poll().await {
        match ev {
            DataChannelEvent::OnMessage(m) => return Some(m),
            DataChannelEvent::OnClose => return None,
            _ => {}
        }
    }
    None
}
