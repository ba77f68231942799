//! A chat between two peers in one process, written with streams: peer A sends three lines
//! over a data channel, peer B answers each one, both print what they receive, then both
//! close. `examples/handler.rs` does the same with callbacks.
//!
//! ```text
//! cargo run --example streams
//! ```

use futures::StreamExt;
use webrtc_streams::{PeerConnection, Result};

const LINES: [&str; 3] = ["hello", "how are you?", "bye"];

#[tokio::main]
pub async fn main() -> Result<()> {
    let loopback = ["127.0.0.1:0".parse().unwrap()];
    let a = PeerConnection::builder().bind(loopback).build().await?;
    let b = PeerConnection::builder().bind(loopback).build().await?;
    let mut incoming = b.data_channels();
    let chat_a = a.create_data_channel("chat", Default::default()).await?;
    signal(&a, &b).await?;

    // B answers every line until its channel ends.
    let chat_b = incoming.next().await.expect("channel from A");
    let b_task = tokio::spawn(async move {
        let mut lines = chat_b.messages();
        while let Some(msg) = lines.next().await {
            let line = msg.text().unwrap_or_default();
            println!("B got: {line}");
            chat_b.send_text(format!("you said {line:?}")).await?;
        }
        Result::Ok(())
    });

    // A sends each line and waits for its answer.
    chat_a.opened().await?;
    let mut answers = chat_a.messages();
    for line in LINES {
        chat_a.send_text(line).await?;
        let answer = answers.next().await.expect("answer");
        println!("A got: {}", answer.text().unwrap_or_default());
    }

    a.close().await?;
    b.close().await?; // ends B's message stream
    b_task.await.expect("B's task panicked")
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
