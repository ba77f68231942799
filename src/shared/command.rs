//! What handles ask of the driver.

use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;
use rtc::{
    data_channel::{RTCDataChannelId, RTCDataChannelInit},
    peer_connection::{
        configuration::{RTCAnswerOptions, RTCConfiguration, RTCOfferOptions},
        sdp::RTCSessionDescription,
        transport::{RTCIceCandidateInit, RTCIceCandidatePair},
    },
    rtp,
    rtp_transceiver::{
        RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverId,
        rtp_sender::{RTCRtpCodec, RtpCodecKind},
    },
    statistics::report::RTCStatsReport,
};

use super::{
    channel::{DataChannelMessage, DcShared},
    media::SenderShared,
};
use crate::error::{Error, Result};

/// The answer to a command.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// What handles ask of the driver.
pub(crate) enum Command {
    CreateOffer {
        options: Option<Box<RTCOfferOptions>>,
        reply: Reply<RTCSessionDescription>,
    },
    CreateAnswer {
        options: Option<Box<RTCAnswerOptions>>,
        reply: Reply<RTCSessionDescription>,
    },
    SetLocalDescription {
        desc: Box<RTCSessionDescription>,
        reply: Reply<()>,
    },
    SetRemoteDescription {
        desc: Box<RTCSessionDescription>,
        reply: Reply<()>,
    },
    AddIceCandidate {
        candidate: Box<RTCIceCandidateInit>,
        reply: Reply<()>,
    },
    LocalDescription {
        reply: Reply<Option<RTCSessionDescription>>,
    },
    RemoteDescription {
        reply: Reply<Option<RTCSessionDescription>>,
    },
    SelectedCandidatePair {
        reply: Reply<Option<Box<RTCIceCandidatePair>>>,
    },
    CreateDataChannel {
        label: String,
        init: Box<RTCDataChannelInit>,
        reply: Reply<Arc<DcShared>>,
    },
    Send {
        id: RTCDataChannelId,
        payload: Payload,
    },
    CloseChannel {
        id: RTCDataChannelId,
        reply: Reply<()>,
    },
    Close {
        reply: Reply<()>,
    },
    AddTrack {
        track: Box<TrackSpec>,
        reply: Reply<Arc<SenderShared>>,
    },
    WriteRtp {
        sender: RTCRtpSenderId,
        packet: Box<rtp::Packet>,
    },
    RequestKeyframe {
        receiver: RTCRtpReceiverId,
        media_ssrc: u32,
    },
    Stats {
        reply: Reply<RTCStatsReport>,
    },
    RemoveTrack {
        sender: RTCRtpSenderId,
        reply: Reply<()>,
    },
    AddTransceiver {
        kind: RtpCodecKind,
        direction: RTCRtpTransceiverDirection,
        reply: Reply<RTCRtpTransceiverId>,
    },
    SetCodecPreferences {
        transceiver: RTCRtpTransceiverId,
        kind: RtpCodecKind,
        codecs: Vec<RTCRtpCodec>,
        reply: Reply<()>,
    },
    StopTransceiver {
        transceiver: RTCRtpTransceiverId,
        reply: Reply<()>,
    },
    ReplaceTrack {
        sender: RTCRtpSenderId,
        track: Box<TrackSpec>,
        reply: Reply<()>,
    },
    SetDirection {
        sender: RTCRtpSenderId,
        direction: RTCRtpTransceiverDirection,
        reply: Reply<()>,
    },
    /// The next offer restarts ICE (W3C `restartIce`).
    RestartIce {
        reply: Reply<()>,
    },
    /// New ICE servers and policy for the next gathering (W3C `setConfiguration`).
    SetConfiguration {
        configuration: Box<RTCConfiguration>,
        reply: Reply<()>,
    },
}

/// A local track to add: what [`LocalTrack`](crate::media::LocalTrack) describes.
#[derive(Debug, Clone)]
pub(crate) struct TrackSpec {
    pub(crate) kind: RtpCodecKind,
    pub(crate) track_id: String,
    pub(crate) stream_id: String,
    pub(crate) codec: RTCRtpCodec,
    /// The RIDs of a simulcast track's encodings; empty for one encoding.
    pub(crate) rids: Vec<String>,
}

/// A message on its way to the core.
#[derive(Debug)]
pub(crate) enum Payload {
    Binary(Bytes),
    Text(String),
}

impl Payload {
    /// The payload that sends `msg` as it is: its buffer is reused for text when it is the
    /// only reference (`Vec::from(Bytes)` moves it), after the UTF-8 check a `String` needs.
    pub(crate) fn of(msg: DataChannelMessage) -> Result<Self> {
        if msg.is_string {
            String::from_utf8(Vec::from(msg.data))
                .map(Payload::Text)
                .map_err(|_| Error::InvalidUtf8)
        } else {
            Ok(Payload::Binary(msg.data))
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Payload::Binary(b) => b.len(),
            Payload::Text(s) => s.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::Payload;
    use crate::{data_channel::DataChannelMessage, error::Error};

    /// A received text message (frozen from the core's `BytesMut`, the only reference) is
    /// sent on in its own buffer; binary keeps its `Bytes`.
    #[test]
    fn payload_of_a_message_reuses_its_buffer() {
        let data = BytesMut::from("echo \u{e9}\u{e9}").freeze();
        let ptr = data.as_ptr();
        let Payload::Text(s) = Payload::of(DataChannelMessage {
            is_string: true,
            data,
        })
        .unwrap() else {
            panic!("text expected")
        };
        assert_eq!(s, "echo \u{e9}\u{e9}");
        assert_eq!(s.as_ptr(), ptr, "no copy");

        let data = BytesMut::from(&[1u8, 2, 3][..]).freeze();
        let ptr = data.as_ptr();
        let Payload::Binary(b) = Payload::of(DataChannelMessage {
            is_string: false,
            data,
        })
        .unwrap() else {
            panic!("binary expected")
        };
        assert_eq!(b.as_ptr(), ptr);

        let bad = DataChannelMessage {
            is_string: true,
            data: Bytes::from_static(b"\xc3("),
        };
        assert!(matches!(Payload::of(bad), Err(Error::InvalidUtf8)));
    }

    /// Every slot of the bounded command queue is allocated up front: keep commands small.
    #[test]
    fn commands_are_small() {
        assert!(std::mem::size_of::<super::Command>() <= 64);
    }
}
