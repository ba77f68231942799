//! Interop with the reference Rust stack, `webrtc` 0.21.1: data-channel echo with the
//! reference as answerer and as offerer, a channel opened from each side, binary and text.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::*;
use futures::StreamExt;
use webrtc::data_channel::DataChannel as AnchorChannel;
use webrtc_streams::DataChannel;
use webrtc_streams_compare::anchor::*;

const MESSAGES: usize = 1000;

fn payload(i: usize) -> Vec<u8> {
    (0..(i * 53) % 3000 + 1)
        .map(|j| (i * 7 + j) as u8)
        .collect()
}

/// The reference echoes everything it receives on `dc`, text as text.
fn spawn_anchor_echo(dc: Arc<dyn AnchorChannel>) {
    tokio::spawn(async move {
        while let Some(m) = next_message(&dc).await {
            let r = if m.is_string {
                dc.send_text(std::str::from_utf8(&m.data).unwrap()).await
            } else {
                dc.send(m.data).await
            };
            if r.is_err() {
                break;
            }
        }
    });
}

/// Sends `MESSAGES` messages (every 4th as text) on `ours` and checks every echo.
async fn echo_through(ours: &DataChannel) {
    let mut replies = ours.messages();
    within("1,000 echoes", async {
        for i in 0..MESSAGES {
            if i % 4 == 0 {
                let text = format!("message {i} ✓");
                ours.send_text(text.clone()).await.unwrap();
                let m = replies.next().await.expect("replies ended");
                assert_eq!(m.text(), Some(text.as_str()), "text {i}");
            } else {
                let body = payload(i);
                ours.send(Bytes::from(body.clone())).await.unwrap();
                let m = replies.next().await.expect("replies ended");
                assert!(!m.is_string);
                assert_eq!(&m.data[..], &body[..], "binary {i}");
            }
        }
    })
    .await;
}

/// We send on a channel the reference opened; the reference checks our echo.
async fn echo_from_anchor(theirs: &Arc<dyn AnchorChannel>, ours: DataChannel) {
    tokio::spawn(async move {
        let mut msgs = ours.messages();
        while let Some(m) = msgs.next().await {
            let r = if m.is_string {
                ours.send_text(m.text().unwrap().to_owned()).await
            } else {
                ours.send(m.data).await
            };
            if r.is_err() {
                break;
            }
        }
    });
    within("reference side echoes", async {
        for i in 0..100 {
            let body = payload(i);
            theirs.send(BytesMut::from(&body[..])).await.unwrap();
            let m = next_message(theirs).await.expect("closed");
            assert_eq!(&m.data[..], &body[..], "message {i}");
        }
    })
    .await;
}

#[tokio::test]
async fn we_offer_webrtc021_answers() {
    init_log();
    let ours = loopback_peer().await;
    let theirs = anchor_peer(1024 * 1024).await;
    let dc = ours
        .create_data_channel("ours", Default::default())
        .await
        .unwrap();
    let mut incoming = ours.data_channels();

    let offer = ours.create_offer().await.unwrap();
    ours.set_local_description(offer).await.unwrap();
    ours.gathering_complete().await.unwrap();
    theirs
        .pc
        .set_remote_description(ours.local_description().await.unwrap().unwrap())
        .await
        .unwrap();
    let answer = theirs.pc.create_answer(None).await.unwrap();
    theirs.pc.set_local_description(answer).await.unwrap();
    within("reference gathering", theirs.gathering_complete()).await;
    ours.set_remote_description(theirs.pc.local_description().await.unwrap())
        .await
        .unwrap();

    let remote = within("reference gets our channel", theirs.channels.recv())
        .await
        .unwrap();
    spawn_anchor_echo(remote);
    within("open", dc.opened()).await.unwrap();
    echo_through(&dc).await;

    // A channel the reference opens reaches us too.
    let theirs_dc = theirs.pc.create_data_channel("theirs", None).await.unwrap();
    let ours_dc = within("their channel", incoming.next()).await.unwrap();
    assert_eq!(ours_dc.label(), "theirs");
    within("their open", wait_open(&theirs_dc)).await;
    echo_from_anchor(&theirs_dc, ours_dc).await;

    ours.close().await.unwrap();
    let _ = theirs.pc.close().await;
}

#[tokio::test]
async fn webrtc021_offers_we_answer() {
    init_log();
    let ours = loopback_peer().await;
    let theirs = anchor_peer(1024 * 1024).await;
    let mut incoming = ours.data_channels();
    let theirs_dc = theirs.pc.create_data_channel("theirs", None).await.unwrap();

    let offer = theirs.pc.create_offer(None).await.unwrap();
    theirs.pc.set_local_description(offer).await.unwrap();
    within("reference gathering", theirs.gathering_complete()).await;
    ours.set_remote_description(theirs.pc.local_description().await.unwrap())
        .await
        .unwrap();
    let answer = ours.create_answer().await.unwrap();
    ours.set_local_description(answer).await.unwrap();
    ours.gathering_complete().await.unwrap();
    theirs
        .pc
        .set_remote_description(ours.local_description().await.unwrap().unwrap())
        .await
        .unwrap();

    let ours_dc = within("their channel", incoming.next()).await.unwrap();
    within("their open", wait_open(&theirs_dc)).await;
    echo_from_anchor(&theirs_dc, ours_dc).await;

    // And a channel we open once connected.
    let dc = ours
        .create_data_channel("ours", Default::default())
        .await
        .unwrap();
    let remote = within("reference gets our channel", theirs.channels.recv())
        .await
        .unwrap();
    spawn_anchor_echo(remote);
    within("open", dc.opened()).await.unwrap();
    echo_through(&dc).await;

    ours.close().await.unwrap();
    let _ = theirs.pc.close().await;
}
