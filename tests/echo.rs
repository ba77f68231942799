//! 10,000 messages echoed in order (with `send_message`), every one verified by sequence number
//! and checksum.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use futures::StreamExt;
use webrtc_streams::{DataChannelMessage, Error};

const COUNT: u32 = 10_000;

fn checksum(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Message `i`: sequence number, body of a varying size, checksum of the body.
fn message(i: u32) -> Bytes {
    let len = (i as usize * 7919) % 3000;
    let mut m = BytesMut::with_capacity(len + 8);
    m.put_u32(i);
    let body: Vec<u8> = (0..len).map(|j| (i as usize + j * 31) as u8).collect();
    m.put_slice(&body);
    m.put_u32(checksum(&body));
    m.freeze()
}

#[tokio::test]
async fn ten_thousand_messages_echo_in_order() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("echo", Default::default()).await;

    // b echoes everything back as it came, text as text and binary as binary.
    let echo = tokio::spawn(async move {
        let mut msgs = dc_b.messages();
        while let Some(m) = msgs.next().await {
            if dc_b.send_message(m).await.is_err() {
                break;
            }
        }
    });

    let mut replies = dc_a.messages();
    let sender = {
        let dc_a = dc_a.clone();
        tokio::spawn(async move {
            for i in 0..COUNT {
                if i % 10 == 0 {
                    dc_a.send_text(format!("text {i}")).await.unwrap();
                } else {
                    dc_a.send(message(i)).await.unwrap();
                }
            }
        })
    };
    within("all echoes", async {
        for i in 0..COUNT {
            let m = replies.next().await.expect("reply stream ended");
            if i % 10 == 0 {
                assert_eq!(m.text(), Some(format!("text {i}").as_str()));
                continue;
            }
            assert!(!m.is_string);
            let d = &m.data[..];
            assert_eq!(u32::from_be_bytes(d[..4].try_into().unwrap()), i, "order");
            let body = &d[4..d.len() - 4];
            let sum = u32::from_be_bytes(d[d.len() - 4..].try_into().unwrap());
            assert_eq!(checksum(body), sum, "checksum of message {i}");
            assert_eq!(m.data, message(i));
        }
    })
    .await;
    sender.await.unwrap();
    a.close().await.unwrap();
    within("echo task ends", echo).await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn send_message_refuses_text_that_is_not_utf8_and_the_channel_goes_on() {
    init_log();
    let (a, b, dc_a, dc_b) = pair_with_channel("utf8", Default::default()).await;
    let bad = DataChannelMessage {
        is_string: true,
        data: Bytes::from_static(&[b'o', b'k', 0xff, 0xfe]),
    };
    let r = within("refused send", dc_a.send_message(bad)).await;
    assert!(matches!(r, Err(Error::InvalidUtf8)), "{r:?}");
    assert_eq!(dc_a.buffered_amount(), 0, "nothing was queued");

    let text = DataChannelMessage {
        is_string: true,
        data: Bytes::from("h\u{e9}llo \u{1f600}"),
    };
    let binary = DataChannelMessage {
        is_string: false,
        data: Bytes::from_static(&[0xff, 0, 1]),
    };
    within("sends", async {
        dc_a.send_message(text).await.unwrap();
        dc_a.send_message(binary).await.unwrap();
    })
    .await;
    let mut msgs = dc_b.messages();
    let first = within("text", msgs.next()).await.unwrap();
    assert_eq!(first.text(), Some("h\u{e9}llo \u{1f600}"));
    let second = within("binary", msgs.next()).await.unwrap();
    assert!(!second.is_string);
    assert_eq!(&second.data[..], &[0xff, 0, 1]);
    a.close().await.unwrap();
    b.close().await.unwrap();
}
