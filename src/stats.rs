//! Statistics: a periodic stream of reports, for dashboards.
//!
//! [`PeerConnection::stats`](crate::PeerConnection::stats) takes one report (W3C
//! `getStats()`); [`PeerConnection::stats_stream`](crate::PeerConnection::stats_stream) takes
//! one per interval, on the connection's runtime timer, for as long as the stream is read.
//!
//! ```no_run
//! use std::time::Duration;
//! use futures::StreamExt;
//!
//! # async fn f(pc: webrtc_streams::PeerConnection) {
//! let mut reports = pc.stats_stream(Duration::from_secs(1));
//! while let Some(report) = reports.next().await {
//!     for rtp in report.inbound_rtp_streams() {
//!         println!("{} packets received", rtp.received_rtp_stream_stats.packets_received);
//!     }
//! }
//! // The connection closed.
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::Stream;
use rtc::peer_connection::state::RTCPeerConnectionState;
pub use rtc::statistics::report::RTCStatsReport;

use crate::{
    error::Result,
    runtime::{AsyncTimer, Runtime},
    shared::{ConnHandle, command::Command},
    stream::EventStream,
};

type Request = Pin<Box<dyn Future<Output = Result<RTCStatsReport>> + Send>>;

/// A statistics report every interval; see
/// [`PeerConnection::stats_stream`](crate::PeerConnection::stats_stream).
///
/// The stream owns one timer of the connection's runtime and nothing else: it does no work
/// while it is not polled, and none at all once dropped. It does not keep the connection
/// alive, and it ends when the connection closes.
#[must_use = "streams do nothing unless polled"]
pub struct StatsStream {
    conn: Weak<ConnHandle>,
    runtime: Option<Arc<dyn Runtime>>,
    timer: Option<Pin<Box<dyn AsyncTimer>>>,
    interval: Duration,
    next: Instant,
    /// The connection's state: the stream ends as soon as it closes.
    states: EventStream<RTCPeerConnectionState>,
    request: Option<Request>,
    done: bool,
}

impl StatsStream {
    pub(crate) fn new(
        conn: &Arc<ConnHandle>,
        states: EventStream<RTCPeerConnectionState>,
        interval: Duration,
    ) -> Self {
        // A zero interval would ask for reports in a loop.
        let interval = interval.max(Duration::from_millis(1));
        let runtime = conn.runtime.clone();
        let next = runtime
            .as_ref()
            .map_or_else(Instant::now, |rt| rt.now() + interval);
        let timer = runtime.as_ref().map(|rt| rt.new_timer(next));
        Self {
            conn: Arc::downgrade(conn),
            done: runtime.is_none(),
            runtime,
            timer,
            interval,
            next,
            states,
            request: None,
        }
    }

    /// The interval between reports.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the connection is closing or gone.
    fn closed(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            match Pin::new(&mut self.states).poll_next(cx) {
                Poll::Ready(Some(RTCPeerConnectionState::Closed)) | Poll::Ready(None) => {
                    return true;
                }
                Poll::Ready(Some(_)) => {}
                Poll::Pending => return false,
            }
        }
    }
}

impl Stream for StatsStream {
    type Item = RTCStatsReport;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RTCStatsReport>> {
        let this = self.get_mut();
        if this.done || this.closed(cx) {
            this.done = true;
            this.request = None;
            return Poll::Ready(None);
        }
        if this.request.is_none() {
            let (Some(timer), Some(rt)) = (this.timer.as_mut(), this.runtime.as_ref()) else {
                return Poll::Ready(None);
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The next tick; ticks missed while nobody read are skipped, not bunched up.
            let now = rt.now();
            this.next += this.interval;
            if this.next <= now {
                this.next = now + this.interval;
            }
            timer.as_mut().reset(this.next);
            let Some(conn) = this.conn.upgrade() else {
                this.done = true;
                return Poll::Ready(None);
            };
            this.request = Some(Box::pin(async move {
                conn.request(|reply| Command::Stats { reply }).await
            }));
        }
        let Some(request) = this.request.as_mut() else {
            return Poll::Pending;
        };
        match request.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                this.request = None;
                match r {
                    Ok(report) => Poll::Ready(Some(report)),
                    Err(_) => {
                        this.done = true;
                        Poll::Ready(None)
                    }
                }
            }
        }
    }
}

impl fmt::Debug for StatsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsStream")
            .field("interval", &self.interval)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
