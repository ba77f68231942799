//! Channel options (ordering, partial reliability, sub-protocol) reach the remote side.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::{Error, rtc::data_channel::RTCDataChannelInit};

#[tokio::test]
async fn unordered_unreliable_options_are_negotiated() {
    init_log();
    let a = loopback_peer().await;
    let b = loopback_peer().await;
    let mut incoming = b.data_channels();
    let specs = [
        (
            "unordered",
            RTCDataChannelInit {
                ordered: false,
                ..Default::default()
            },
        ),
        (
            "retransmits",
            RTCDataChannelInit {
                ordered: false,
                max_retransmits: Some(0),
                ..Default::default()
            },
        ),
        (
            "lifetime",
            RTCDataChannelInit {
                max_packet_life_time: Some(150),
                ..Default::default()
            },
        ),
        (
            "proto",
            RTCDataChannelInit {
                protocol: "chat.v2".to_owned(),
                ..Default::default()
            },
        ),
    ];
    let mut local = Vec::new();
    for (label, init) in &specs {
        local.push(a.create_data_channel(label, init.clone()).await.unwrap());
    }
    assert!(!local[0].ordered());
    assert_eq!(local[1].max_retransmits(), Some(0));
    assert_eq!(local[2].max_packet_life_time(), Some(150));
    negotiate(&a, &b).await;

    let mut remote = Vec::new();
    for _ in 0..specs.len() {
        remote.push(within("remote channel", incoming.next()).await.unwrap());
    }
    for (label, init) in &specs {
        let dc = remote.iter().find(|d| d.label() == *label).expect(label);
        assert_eq!(dc.ordered(), init.ordered, "{label} ordered");
        // rtc 0.21.1 builds remote channels with both reliability limits `None` (it reads the
        // DCEP channel type's ordering but not its reliability parameter), so the remote
        // handle cannot report them; the channel type still reaches the remote, as the
        // unordered flag shows. The local handles report them (asserted above).
        if init.max_retransmits.is_some() || init.max_packet_life_time.is_some() {
            assert!(!dc.ordered() || init.ordered, "{label} channel type");
        }
        assert_eq!(dc.protocol(), init.protocol, "{label} protocol");
        assert!(!dc.negotiated());
        assert!(dc.stream_id().is_some());
        // Messages flow on every kind of channel (loopback loses nothing).
        let peer = local.iter().find(|d| d.label() == *label).unwrap();
        let mut msgs = dc.messages();
        peer.send(Bytes::from_static(b"hello")).await.unwrap();
        let m = within("message", msgs.next()).await.unwrap();
        assert_eq!(&m.data[..], b"hello");
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn both_reliability_limits_is_an_error() {
    init_log();
    let a = loopback_peer().await;
    let init = RTCDataChannelInit {
        max_retransmits: Some(1),
        max_packet_life_time: Some(1),
        ..Default::default()
    };
    let err = a.create_data_channel("bad", init).await.unwrap_err();
    assert!(matches!(err, Error::InvalidOperation(_)), "{err:?}");
    // The connection is still usable.
    a.create_data_channel("good", Default::default())
        .await
        .unwrap();
    a.close().await.unwrap();
}
