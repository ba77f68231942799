//! Helpers for the media tests on the simulation runtime: peers with the default codecs, RTP
//! packets, waiting for remote tracks.
//!
//! Included with `#[path = "common/media.rs"] mod media_common;` next to `common/sim.rs`.
#![allow(dead_code)]

use std::{net::IpAddr, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{
    EventStream, PeerConnection, media::RemoteTrack, rtc::rtp, runtime::sim::SimHandle,
};

use super::sim_common::within;

/// Bound on every wait, in virtual time.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A connection on `host` with the default codecs and interceptors.
pub async fn media_peer(sim: &SimHandle, host: IpAddr) -> PeerConnection {
    PeerConnection::builder()
        .runtime(sim.runtime())
        .bind([std::net::SocketAddr::new(host, 0)])
        .default_codecs()
        .build()
        .await
        .expect("build")
}

/// An RTP packet with sequence number `seq` and `len` bytes of payload.
pub fn packet(seq: u16, len: usize) -> rtp::Packet {
    rtp::Packet {
        header: rtp::Header {
            version: 2,
            sequence_number: seq,
            timestamp: u32::from(seq) * 3000,
            ..Default::default()
        },
        payload: Bytes::from(vec![seq as u8; len]),
    }
}

/// Waits for `n` remote tracks.
pub async fn take_tracks(
    sim: &SimHandle,
    tracks: &mut EventStream<RemoteTrack>,
    n: usize,
) -> Vec<RemoteTrack> {
    within(sim, "remote tracks", LIMIT, async {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(tracks.next().await.expect("track stream ended"));
        }
        out
    })
    .await
}

/// Reads `n` packets of `track`; returns their sequence numbers.
pub async fn read_seqs(sim: &SimHandle, track: &RemoteTrack, n: usize) -> Vec<u16> {
    let mut rtp = track.rtp();
    within(sim, "packets", LIMIT, async {
        let mut got = Vec::new();
        while got.len() < n {
            got.push(rtp.next().await.expect("rtp ended").header.sequence_number);
        }
        got
    })
    .await
}
