//! Media: RTP forwarding through one middle peer — publisher → forwarder → subscriber — on
//! UDP loopback, for this crate and for `webrtc` 0.21.1, each in a fresh child process of this
//! binary, in the same run. The publisher writes `PACKETS` RTP packets of 1,000 bytes at the
//! offered rate (in bursts of 64); the forwarder writes every
//! packet it receives to its sender towards the subscriber; the subscriber counts them.
//! Printed: packets per second (first sent to last received), CPU time per million packets
//! (the whole process: three peers' worth of work), and packets lost.
//!
//! `cargo bench --bench media` (`PACKETS=n`, default 20,000; `REPS=n`, default 3;
//! `RATES=a,b,...` packets per second offered, default 4,000 and 40,000, 0 for as fast as the
//! senders accept).

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use webrtc_streams::rtc::{
    peer_connection::configuration::media_engine::MIME_TYPE_VP8,
    rtp,
    rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters},
};

const PAYLOAD: usize = 1_000;

/// Offered loads in packets per second (`RATES`, default "4000,40000": a load both libraries
/// sustain, to compare CPU per packet, and one to compare capacity); 0 sends as fast as the
/// sender accepts.
fn rates() -> Vec<usize> {
    std::env::var("RATES")
        .unwrap_or_else(|_| "4000,40000".to_owned())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect()
}

/// Paces a publisher: call after each packet.
struct Pacer {
    start: Instant,
    rate: usize,
}

impl Pacer {
    fn new(rate: usize) -> Self {
        Self {
            start: Instant::now(),
            rate,
        }
    }

    async fn sent(&self, n: u32) {
        if !(n as usize).is_multiple_of(BURST) {
            return;
        }
        if self.rate == 0 {
            tokio::task::yield_now().await;
            return;
        }
        let due = self.start + Duration::from_secs_f64(f64::from(n) / self.rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }
}
const BURST: usize = 64;
/// How long the subscriber waits for the last packets before counting the rest lost.
const DRAIN: Duration = Duration::from_secs(3);

fn packet(seq: u32) -> rtp::Packet {
    rtp::Packet {
        header: rtp::Header {
            version: 2,
            payload_type: 96,
            sequence_number: seq as u16,
            timestamp: seq.wrapping_mul(3000),
            ssrc: 0x1234_5678,
            ..Default::default()
        },
        payload: Bytes::from(vec![seq as u8; PAYLOAD]),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One run's figures: (packets per second, CPU seconds per million packets, lost).
type Figures = (f64, f64, u64);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let packets = env_usize("PACKETS", 20_000) as u32;
        let (lib, rate) = args[i + 1].split_once(':').expect("lib:rate");
        let rate: usize = rate.parse().expect("rate");
        let (rate, cpu, lost) = runtime().block_on(async {
            match lib {
                "ours" => ours(packets, rate).await,
                _ => anchor(packets, rate).await,
            }
        });
        println!("{rate} {cpu} {lost}");
        return;
    }
    let reps = env_usize("REPS", 3);
    let packets = env_usize("PACKETS", 20_000);
    println!(
        "media: RTP forwarding publisher -> forwarder -> subscriber, {packets} packets of \
         {PAYLOAD} bytes, median of {reps}"
    );
    for rate in rates() {
        match rate {
            0 => println!("offered: as fast as the senders accept"),
            r => println!("offered: {r} packets/s"),
        }
        let mut results = Vec::new();
        for lib in ["ours", "webrtc"] {
            let (mut rates, mut cpus, mut losses) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                let out = run_child(&format!("{lib}:{rate}"));
                let v: Vec<f64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
                rates.push(v[0]);
                cpus.push(v[1]);
                losses.push(v[2]);
            }
            let (got, _, _) = stats(rates);
            let (cpu, _, _) = stats(cpus);
            let (lost, _, lost_max) = stats(losses);
            println!(
                "{lib:>10}: {got:>9.0} packets/s  {cpu:>6.2} CPU s per million packets  \
                 lost {lost:.0} (max {lost_max:.0})"
            );
            results.push((got, cpu));
        }
        println!(
            "     ratio: {:.2}x packet rate, {:.2}x CPU per packet (webrtc-streams / webrtc \
             0.21.1; target >= 2x, <= 0.5x, 0 lost)",
            results[0].0 / results[1].0,
            results[0].1 / results[1].1
        );
    }
}

// ---- this crate ---------------------------------------------------------------------------

async fn ours(packets: u32, rate: usize) -> Figures {
    use webrtc_streams::{PeerConnection, media::LocalTrack};

    async fn peer() -> PeerConnection {
        PeerConnection::builder()
            .bind(["127.0.0.1:0".parse().unwrap()])
            .default_codecs()
            .build()
            .await
            .unwrap()
    }
    let vp8 = || LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0);
    let (publisher, ingest, output, subscriber) =
        (peer().await, peer().await, peer().await, peer().await);
    let camera = publisher
        .add_track(LocalTrack::video("camera", vp8()))
        .await
        .unwrap();
    let forward = output
        .add_track(LocalTrack::video("forward", vp8()))
        .await
        .unwrap();
    let (mut incoming, mut delivered) = (ingest.tracks(), subscriber.tracks());
    negotiate(&publisher, &ingest).await;
    negotiate(&output, &subscriber).await;
    // Up before timing: one packet through the whole chain.
    camera.write_rtp(packet(0)).await.unwrap();
    let track = incoming.next().await.unwrap();
    let mut rtp_in = track.rtp();
    forward
        .write_rtp(rtp_in.next().await.unwrap())
        .await
        .unwrap();
    let out_track = delivered.next().await.unwrap();
    let mut rtp_out = out_track.rtp();
    rtp_out.next().await.unwrap();

    let forwarder = tokio::spawn(async move {
        while let Some(p) = rtp_in.next().await {
            if forward.write_rtp(p).await.is_err() {
                break;
            }
        }
    });
    let cpu0 = cpu_time();
    let start = Instant::now();
    let publish = tokio::spawn(async move {
        let pacer = Pacer::new(rate);
        for seq in 1..=packets {
            camera.write_rtp(packet(seq)).await.unwrap();
            pacer.sent(seq).await;
        }
    });
    let mut received = 0u32;
    let mut last = start;
    while received < packets {
        match tokio::time::timeout(DRAIN, rtp_out.next()).await {
            Ok(Some(_)) => {
                received += 1;
                last = Instant::now();
            }
            _ => break,
        }
    }
    let cpu = cpu_time() - cpu0;
    publish.await.unwrap();
    forwarder.abort();
    for pc in [&publisher, &ingest, &output, &subscriber] {
        pc.close().await.unwrap();
    }
    figures(received, packets, last - start, cpu)
}

fn figures(received: u32, packets: u32, elapsed: Duration, cpu: Duration) -> Figures {
    (
        f64::from(received) / elapsed.as_secs_f64(),
        cpu.as_secs_f64() / f64::from(received.max(1)) * 1e6,
        u64::from(packets - received),
    )
}

// ---- webrtc 0.21.1 -----------------------------------------------------------------------

async fn anchor(packets: u32, rate: usize) -> Figures {
    use anchor::{anchor_media_peer as peer, negotiate};
    use webrtc::media_stream::{
        MediaStreamTrack,
        track_local::{TrackLocal, static_rtp::TrackLocalStaticRTP},
        track_remote::{TrackRemote, TrackRemoteEvent},
    };
    use webrtc_streams::media::RtpCodecKind;

    fn local_track(id: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
        let codec = webrtc_streams::media::LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0);
        Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            id.to_owned(),
            id.to_owned(),
            id.to_owned(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec,
                ..Default::default()
            }],
        )))
    }
    async fn next_rtp(track: &Arc<dyn TrackRemote>) -> Option<rtp::Packet> {
        while let Some(ev) = track.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                return Some(p);
            }
        }
        None
    }

    let (publisher, ingest, output, subscriber) =
        (peer().await, peer().await, peer().await, peer().await);
    let camera = local_track("camera", 0x1234_5678);
    let forward = local_track("forward", 0x0bad_cafe);
    publisher.pc.add_track(camera.clone()).await.unwrap();
    output.pc.add_track(forward.clone()).await.unwrap();
    negotiate(&publisher, &ingest).await;
    negotiate(&output, &subscriber).await;
    let with_ssrc = |mut p: rtp::Packet, ssrc: u32| {
        p.header.ssrc = ssrc;
        p
    };
    // webrtc 0.21.1 drops RTP written before the connection is up: wait, then send until
    // the first packet is through.
    publisher.connected().await;
    output.connected().await;
    let track = loop {
        camera.write_rtp(packet(0)).await.unwrap();
        if let Ok(Ok(t)) =
            tokio::time::timeout(Duration::from_millis(50), ingest.tracks.recv()).await
        {
            break t;
        }
    };
    let first = next_rtp(&track).await.unwrap();
    let out_track = loop {
        forward
            .write_rtp(with_ssrc(first.clone(), 0x0bad_cafe))
            .await
            .unwrap();
        if let Ok(Ok(t)) =
            tokio::time::timeout(Duration::from_millis(50), subscriber.tracks.recv()).await
        {
            break t;
        }
    };
    next_rtp(&out_track).await.unwrap();

    let fwd = forward.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(p) = next_rtp(&track).await {
            if fwd.write_rtp(with_ssrc(p, 0x0bad_cafe)).await.is_err() {
                break;
            }
        }
    });
    let cpu0 = cpu_time();
    let start = Instant::now();
    let cam = camera.clone();
    let publish = tokio::spawn(async move {
        let pacer = Pacer::new(rate);
        for seq in 1..=packets {
            cam.write_rtp(packet(seq)).await.unwrap();
            pacer.sent(seq).await;
        }
    });
    let mut received = 0u32;
    let mut last = start;
    while received < packets {
        match tokio::time::timeout(DRAIN, next_rtp(&out_track)).await {
            Ok(Some(_)) => {
                received += 1;
                last = Instant::now();
            }
            _ => break,
        }
    }
    let cpu = cpu_time() - cpu0;
    publish.await.unwrap();
    forwarder.abort();
    for p in [&publisher, &ingest, &output, &subscriber] {
        let _ = p.pc.close().await;
    }
    figures(received, packets, last - start, cpu)
}
