//! A chat between two peers in one process, written with callbacks: peer A sends three lines
//! over a data channel, peer B answers each one, both print what they receive, then both
//! close. `examples/streams.rs` does the same with streams.
//!
//! ```text
//! cargo run --example handler
//! ```

use futures::StreamExt;
use webrtc_streams::{
    DataChannel, DataChannelMessage, PeerConnection, PeerConnectionEventHandler, Result,
    WeakPeerConnection, rtc::peer_connection::state::RTCPeerConnectionState,
};

const LINES: [&str; 3] = ["hello", "how are you?", "bye"];

/// A: sends a line when the channel opens and after each answer; closes after the last.
struct Alice {
    pc: WeakPeerConnection,
    lines: std::slice::Iter<'static, &'static str>,
}

impl Alice {
    async fn send_next(&mut self, chat: &DataChannel) {
        match self.lines.next() {
            Some(line) => {
                if let Err(e) = chat.send_text(*line).await {
                    eprintln!("A: send failed: {e}");
                }
            }
            None => {
                if let Some(pc) = self.pc.upgrade() {
                    let _ = pc.close().await;
                }
            }
        }
    }
}

impl PeerConnectionEventHandler for Alice {
    async fn on_data_channel_open(&mut self, chat: &DataChannel) {
        self.send_next(chat).await;
    }

    async fn on_message(&mut self, chat: &DataChannel, msg: DataChannelMessage) {
        println!("A got: {}", msg.text().unwrap_or_default());
        self.send_next(chat).await;
    }
}

/// B: answers every line.
struct Bob;

impl PeerConnectionEventHandler for Bob {
    async fn on_message(&mut self, chat: &DataChannel, msg: DataChannelMessage) {
        let line = msg.text().unwrap_or_default();
        println!("B got: {line}");
        if let Err(e) = chat.send_text(format!("you said {line:?}")).await {
            eprintln!("B: send failed: {e}");
        }
    }
}

#[tokio::main]
pub async fn main() -> Result<()> {
    let loopback = ["127.0.0.1:0".parse().unwrap()];
    let a = PeerConnection::builder()
        .bind(loopback)
        .handler_with(|pc| Alice {
            pc,
            lines: LINES.iter(),
        })
        .build()
        .await?;
    let b = PeerConnection::builder()
        .bind(loopback)
        .handler(Bob)
        .build()
        .await?;
    a.create_data_channel("chat", Default::default()).await?;
    signal(&a, &b).await?;

    // Alice closes her connection after the last answer.
    let mut states = a.connection_states();
    while let Some(state) = states.next().await {
        if state == RTCPeerConnectionState::Closed {
            break;
        }
    }
    b.close().await
}

/// Offer/answer in-process, without trickle ICE: each side waits for its candidates and
/// hands over its whole description.
async fn signal(a: &PeerConnection, b: &PeerConnection) -> Result<()> {
    let offer = a.create_offer().await?;
    a.set_local_description(offer).await?;
    a.gathering_complete().await.unwrap();
    let offer = a.local_description().await.unwrap().expect("offer");
    b.set_remote_description(offer).await?;
    let answer = b.create_answer().await?;
    b.set_local_description(answer).await?;
    b.gathering_complete().await.unwrap();
    let answer = b.local_description().await.unwrap().expect("answer");
    a.set_remote_description(answer).await
}
