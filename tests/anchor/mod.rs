//! Glue for the reference implementation, `webrtc` 0.21.1 (handler-based), shared by the
//! interop tests and the benchmarks (`#[path]`-included there).
#![allow(dead_code)]

use std::sync::Arc;

use webrtc::{
    data_channel::{DataChannel, DataChannelEvent},
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
        RTCPeerConnectionState,
    },
};

/// A `webrtc` 0.21.1 connection with its handler's events turned into channels.
pub struct AnchorPeer {
    pub pc: Arc<dyn PeerConnection>,
    pub channels: async_channel::Receiver<Arc<dyn DataChannel>>,
    gathered: async_channel::Receiver<()>,
    connected: async_channel::Receiver<()>,
}

struct Handler {
    channels: async_channel::Sender<Arc<dyn DataChannel>>,
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
}

/// A `webrtc` 0.21.1 peer on 127.0.0.1 (Tokio runtime), with `send` blocking above
/// `send_buffer_limit` bytes in flight (its opt-in back-pressure; the default is unbounded).
pub async fn anchor_peer(send_buffer_limit: usize) -> AnchorPeer {
    let (ch_tx, channels) = async_channel::unbounded();
    let (g_tx, gathered) = async_channel::bounded(1);
    let (c_tx, connected) = async_channel::bounded(1);
    let pc = PeerConnectionBuilder::new()
        .with_handler(Arc::new(Handler {
            channels: ch_tx,
            gathered: g_tx,
            connected: c_tx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .with_data_channel_send_buffer_limit(send_buffer_limit)
        .build()
        .await
        .expect("webrtc 0.21.1 peer");
    AnchorPeer {
        pc: Arc::new(pc),
        channels,
        gathered,
        connected,
    }
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
