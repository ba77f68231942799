//! Out-of-band negotiated channels: both sides create the channel with the same id.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::rtc::data_channel::RTCDataChannelInit;

#[tokio::test]
async fn negotiated_channels_open_without_announcement() {
    init_log();
    let a = loopback_peer().await;
    let b = loopback_peer().await;
    let mut announced = b.data_channels();
    let init = |id| RTCDataChannelInit {
        negotiated: Some(id),
        ..Default::default()
    };
    let a1 = a.create_data_channel("one", init(1)).await.unwrap();
    let b1 = b.create_data_channel("one", init(1)).await.unwrap();
    let a7 = a.create_data_channel("seven", init(7)).await.unwrap();
    let b7 = b.create_data_channel("seven", init(7)).await.unwrap();
    // An in-band channel too, so the remote side has something to announce.
    let _inband = a
        .create_data_channel("inband", Default::default())
        .await
        .unwrap();
    negotiate(&a, &b).await;
    for dc in [&a1, &b1, &a7, &b7] {
        within("negotiated open", dc.opened()).await.unwrap();
        assert!(dc.negotiated());
    }
    assert_eq!(a1.stream_id(), Some(1));
    assert_eq!(b7.stream_id(), Some(7));

    let mut m_b1 = b1.messages();
    let mut m_a7 = a7.messages();
    a1.send(Bytes::from_static(b"on one")).await.unwrap();
    b7.send_text("on seven").await.unwrap();
    assert_eq!(
        &within("one", m_b1.next()).await.unwrap().data[..],
        b"on one"
    );
    assert_eq!(
        within("seven", m_a7.next()).await.unwrap().text(),
        Some("on seven")
    );

    // Only the in-band channel is announced; negotiated ones never are.
    let first = within("announcement", announced.next()).await.unwrap();
    assert_eq!(first.label(), "inband");
    a.close().await.unwrap();
    b.close().await.unwrap();
    assert!(within("stream end", announced.next()).await.is_none());
}
