//! Counters the driver keeps and handles read.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the datagrams a connection's inbound filter passed and refused.
///
/// Returned by [`PeerConnection::filter_stats`](crate::PeerConnection::filter_stats). Every
/// datagram received on the connection's sockets is counted exactly once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterStats {
    /// Datagrams handed to the protocol core.
    pub passed: u64,
    /// STUN messages without valid ICE credentials (wrong or missing `USERNAME`, a
    /// `MESSAGE-INTEGRITY` that does not verify), indications from unauthenticated sources,
    /// and STUN methods or classes ICE does not use.
    pub unauthenticated_stun: u64,
    /// DTLS datagrams from sources that never authenticated with a STUN check.
    pub stranger: u64,
    /// DTLS datagrams from an authenticated source refused by the handshake guard: records a
    /// genuine peer never sends at that point (forged handshake fragments, old-epoch records
    /// after the handshake, unknown epochs) or beyond a budget.
    pub dtls: u64,
    /// RTP and RTCP datagrams (no media is negotiated).
    pub media: u64,
    /// Datagrams that are none of STUN, DTLS, RTP or RTCP, or are truncated.
    pub malformed: u64,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    UnauthenticatedStun,
    Stranger,
    Dtls,
    Media,
    Malformed,
}

/// The counters behind [`FilterStats`], shared by the driver and the handles.
#[derive(Debug, Default)]
pub(crate) struct FilterCounters {
    passed: AtomicU64,
    refused: [AtomicU64; 5],
}

impl FilterCounters {
    pub(crate) fn snapshot(&self) -> FilterStats {
        let r = |i: usize| self.refused[i].load(Ordering::Relaxed);
        FilterStats {
            passed: self.passed.load(Ordering::Relaxed),
            unauthenticated_stun: r(Refusal::UnauthenticatedStun as usize),
            stranger: r(Refusal::Stranger as usize),
            dtls: r(Refusal::Dtls as usize),
            media: r(Refusal::Media as usize),
            malformed: r(Refusal::Malformed as usize),
        }
    }
}

impl FilterCounters {
    pub(crate) fn count_passed(&self) {
        self.passed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of what the operating system reported on a connection's sockets, and what its
/// send path holds.
///
/// Returned by [`PeerConnection::socket_stats`](crate::PeerConnection::socket_stats). Every
/// error is handled where it happens (a datagram that could not be sent is lost, as UDP loses
/// datagrams, and the protocols above retransmit); these counters make it visible. The first
/// error of each kind on a connection is also logged at `warn` level, the rest at `debug`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketStats {
    /// Sends that failed (`ENOBUFS`, `EMSGSIZE`, unreachable networks, ...): their datagrams
    /// were not sent.
    pub send_errors: u64,
    /// Receives that reported an error instead of a datagram (e.g. `ECONNREFUSED` for an ICMP
    /// port unreachable).
    pub receive_errors: u64,
    /// Sockets given up because every receive kept failing: they are no longer read (the
    /// connection goes on over its other sockets, or fails through ICE).
    pub failed_sockets: u64,
    /// Bytes the connection's send path holds in buffers, by capacity: the batch it hands the
    /// kernel for segmentation offload (up to 60 KiB) and the datagrams taken from the core
    /// and not sent yet. What a burst grew is given back once the connection has been quiet
    /// for about a second.
    pub send_buffer_bytes: u64,
}

/// The counters behind [`SocketStats`].
#[derive(Debug, Default)]
pub(crate) struct SocketCounters {
    send_errors: AtomicU64,
    receive_errors: AtomicU64,
    failed_sockets: AtomicU64,
    send_buffer_bytes: AtomicU64,
}

impl SocketCounters {
    pub(crate) fn snapshot(&self) -> SocketStats {
        SocketStats {
            send_errors: self.send_errors.load(Ordering::Relaxed),
            receive_errors: self.receive_errors.load(Ordering::Relaxed),
            failed_sockets: self.failed_sockets.load(Ordering::Relaxed),
            send_buffer_bytes: self.send_buffer_bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_send_buffer_bytes(&self, bytes: usize) {
        self.send_buffer_bytes
            .store(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_send_error(&self) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_receive_error(&self) {
        self.receive_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_failed_socket(&self) {
        self.failed_sockets.fetch_add(1, Ordering::Relaxed);
    }
}
