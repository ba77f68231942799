//! Two peers in one process connect over UDP loopback, open a data channel, and push 64 MiB
//! through it; every byte is verified. Prints the setup time and the throughput.
//!
//! ```text
//! cargo run --release --example loopback [-- MIB]
//! ```

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{PeerConnection, Result};

const MESSAGE: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<()> {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let total = mib * 1024 * 1024;

    let started = Instant::now();
    let loopback = ["127.0.0.1:0".parse().unwrap()];
    let a = PeerConnection::builder().bind(loopback).build().await?;
    let b = PeerConnection::builder().bind(loopback).build().await?;
    let mut incoming = b.data_channels();
    let tx = a.create_data_channel("bulk", Default::default()).await?;

    // Signaling, without trickle: each side sends its description once gathering is done.
    let offer = a.create_offer().await?;
    a.set_local_description(offer).await?;
    a.gathering_complete().await.unwrap();
    b.set_remote_description(a.local_description().await.unwrap().expect("offer"))
        .await?;
    let answer = b.create_answer().await?;
    b.set_local_description(answer).await?;
    b.gathering_complete().await.unwrap();
    a.set_remote_description(b.local_description().await.unwrap().expect("answer"))
        .await?;

    let rx = incoming.next().await.expect("remote channel");
    tx.opened().await?;
    let setup = started.elapsed();
    println!(
        "setup: {:.1} ms (build -> channel open on both sides)",
        ms(setup)
    );

    // Receiver: count bytes and checksum them.
    let reader = tokio::spawn(async move {
        let mut msgs = rx.messages();
        let (mut bytes, mut sum) = (0usize, 0u64);
        while bytes < total {
            let Some(m) = msgs.next().await else { break };
            sum = m
                .data
                .iter()
                .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
            bytes += m.data.len();
        }
        (bytes, sum)
    });

    let started = Instant::now();
    let mut sent_sum = 0u64;
    let mut sent = 0usize;
    let mut seq = 0u8;
    while sent < total {
        let len = MESSAGE.min(total - sent);
        let chunk: Vec<u8> = (0..len).map(|i| seq.wrapping_add(i as u8)).collect();
        seq = seq.wrapping_add(1);
        sent_sum = chunk
            .iter()
            .fold(sent_sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
        sent += len;
        tx.send(Bytes::from(chunk)).await?;
    }
    let (received, sum) = reader.await.expect("reader");
    let elapsed = started.elapsed();
    assert_eq!(received, total, "byte count");
    assert_eq!(sum, sent_sum, "checksum");
    println!(
        "transfer: {mib} MiB in {:.1} ms = {:.0} Mbit/s, verified (count and checksum)",
        ms(elapsed),
        total as f64 * 8.0 / elapsed.as_secs_f64() / 1e6
    );
    a.close().await?;
    b.close().await?;
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
