//! `PeerConnection::stats_stream`: one report per interval of the runtime's clock (virtual
//! here), counters growing as media flows, the stream ending when the connection closes.
#![cfg(feature = "runtime-sim")]

#[path = "common/media.rs"]
mod media_common;
#[path = "common/sim.rs"]
mod sim_common;

use std::time::Duration;

use futures::StreamExt;
use media_common::*;
use sim_common::*;
use webrtc_streams::{
    media::LocalTrack, rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8,
    runtime::sim::SimRuntime,
};

fn sent(report: &webrtc_streams::stats::RTCStatsReport) -> u64 {
    report
        .outbound_rtp_streams()
        .map(|s| s.sent_rtp_stream_stats.packets_sent)
        .sum()
}

fn received(report: &webrtc_streams::stats::RTCStatsReport) -> u64 {
    report
        .inbound_rtp_streams()
        .map(|s| s.received_rtp_stream_stats.packets_received)
        .sum()
}

/// Media flows at 50 packets per (virtual) second; a 1 s stats stream on each side yields
/// one report per second, at one-second steps of the virtual clock, with counters that grow.
#[test]
fn n_ticks_give_n_reports_with_growing_counters() {
    init_log();
    let sim = SimRuntime::new(7);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let video = a
            .add_track(LocalTrack::video(
                "cam",
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ))
            .await
            .unwrap();
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        connected(&h, &b, LIMIT).await;
        let sender = {
            let h = h.clone();
            h.clone().spawn(async move {
                for seq in 0..u16::MAX {
                    if video.write_rtp(packet(seq, 300)).await.is_err() {
                        return;
                    }
                    h.sleep(Duration::from_millis(20)).await;
                }
            })
        };

        const N: usize = 5;
        const INTERVAL: Duration = Duration::from_secs(1);
        let mut reports_a = a.stats_stream(INTERVAL);
        let mut reports_b = b.stats_stream(INTERVAL);
        assert_eq!(reports_a.interval(), INTERVAL);
        let start = h.elapsed();
        let mut last = (0, 0);
        for tick in 1..=N {
            let ra = within(&h, "report a", LIMIT, reports_a.next())
                .await
                .expect("stats stream of a ended");
            // The report is taken at the tick: the virtual clock moved exactly one interval.
            assert_eq!(h.elapsed() - start, INTERVAL * tick as u32, "tick {tick}");
            let rb = within(&h, "report b", LIMIT, reports_b.next())
                .await
                .expect("stats stream of b ended");
            let (s, r) = (sent(&ra), received(&rb));
            assert!(s > last.0, "tick {tick}: sent {s} after {}", last.0);
            assert!(r > last.1, "tick {tick}: received {r} after {}", last.1);
            // 50 packets a second: about 50 more per tick (a little slack for the report of
            // `b` being taken a few packets later).
            assert!(
                (40..=60).contains(&(s - last.0)),
                "tick {tick}: {s} after {}",
                last.0
            );
            assert!(ra.transport().is_some());
            last = (s, r);
        }
        // Closing ends the streams without another tick.
        let before = h.elapsed();
        a.close().await.unwrap();
        assert!(
            within(&h, "a's stream ends", LIMIT, reports_a.next())
                .await
                .is_none()
        );
        assert!(
            h.elapsed() - before < INTERVAL,
            "ended at the close, not at a tick"
        );
        assert!(reports_a.next().await.is_none(), "stays ended");
        drop(sender);
        b.close().await.unwrap();
        assert!(
            within(&h, "b's stream ends", LIMIT, reports_b.next())
                .await
                .is_none()
        );
    });
}

/// A stream that is not read skips the ticks it missed: the next report comes at the next
/// tick, not as a burst of stale ones. Dropping every handle ends it (it does not keep the
/// connection alive).
#[test]
fn missed_ticks_are_skipped_and_dropping_the_connection_ends_the_stream() {
    init_log();
    let sim = SimRuntime::new(8);
    let h = sim.handle().clone();
    sim.block_on(async {
        let a = media_peer(&h, HOST_A).await;
        let b = media_peer(&h, HOST_B).await;
        let dc = a
            .create_data_channel("x", Default::default())
            .await
            .unwrap();
        negotiate(&a, &b).await;
        connected(&h, &a, LIMIT).await;
        let mut reports = a.stats_stream(Duration::from_millis(500));
        let start = h.elapsed();
        h.sleep(Duration::from_millis(2_200)).await;
        // Overdue: the first report comes at once...
        within(&h, "overdue report", LIMIT, reports.next())
            .await
            .unwrap();
        assert_eq!(h.elapsed() - start, Duration::from_millis(2_200));
        // ... and the next one a whole interval later, not immediately.
        within(&h, "next report", LIMIT, reports.next())
            .await
            .unwrap();
        assert_eq!(h.elapsed() - start, Duration::from_millis(2_700));
        drop((a, dc));
        assert!(
            within(&h, "stream ends", LIMIT, reports.next())
                .await
                .is_none()
        );
        b.close().await.unwrap();
    });
}
