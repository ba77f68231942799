//! The inbound filter: what the network may hand to the protocol core.
//!
//! Once ICE has selected a pair, `rtc` passes every non-STUN datagram, from any source, on to
//! DTLS and SRTP, and several of their parsers keep state before anything is authenticated
//! (the STUN agent even resolves role conflicts before it checks credentials). So the driver
//! puts this filter in front of the core, and a datagram reaches the core only when it could
//! have come from the peer we negotiated with:
//!
//! * **STUN** (first byte 0–3): a Binding request must carry `USERNAME` = our ufrag (and the
//!   remote ufrag, once known) and a `MESSAGE-INTEGRITY` that verifies with our password; a
//!   Binding success response one that verifies with the remote password. A source that sends
//!   either becomes *authenticated*. Indications pass only from authenticated sources; other
//!   methods and classes, which the agent does not use, never pass.
//! * **DTLS** (20–63) passes only from authenticated sources, and only as records a genuine
//!   peer sends at that point of the handshake ([`DtlsGuard`]).
//! * **RTP/RTCP** (128–191) passes only when the remote description negotiates audio or
//!   video, from an authenticated source, and only for the SSRCs it signals plus a few
//!   unsignalled ones ([`MediaGate`]).
//! * Anything else is dropped.
//!
//! Every refusal is counted ([`FilterStats`]) and the first of each kind is logged once per
//! connection at debug level, so hostile traffic cannot flood the log.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use log::{debug, trace};

use super::sdp::media_sections;
use crate::shared::counters::{FilterCounters, Refusal};
use rtc::{
    crypto::RTCCryptoProvider,
    stun::{
        attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_USERNAME},
        message::{
            CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_BINDING, Message,
        },
    },
};

/// Sources remembered as authenticated; the oldest is forgotten beyond this.
const MAX_AUTHENTICATED: usize = 16;
/// Local credential sets honoured at once (the current one and, across an ICE restart, the
/// previous one).
const MAX_LOCAL_CREDENTIALS: usize = 2;
/// STUN magic cookie (RFC 5389).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// DTLS record header and handshake fragment header sizes (RFC 6347).
const RECORD_HEADER: usize = 13;
const FRAGMENT_HEADER: usize = 12;
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
/// A DTLS 1.2 handshake uses message sequence numbers below 16; anything above this is forged
/// (and, stored by the core, could overflow its 16-bit message counter).
const MAX_MESSAGE_SEQ: u16 = 32;
/// Handshake fragments accepted in one datagram (a flight of a genuine peer holds a handful).
const MAX_FRAGMENTS_PER_DATAGRAM: usize = 32;
/// Datagrams with epoch-0 handshake records passed before the handshake completes. A
/// handshake takes about ten, retransmissions included; beyond this the source is flooding.
const MAX_HANDSHAKE_DATAGRAMS: u32 = 256;
/// Records of the next epoch passed before the handshake completes (the core queues them).
const MAX_EARLY_EPOCH_RECORDS: u32 = 64;
/// Repeats of the peer's last flight passed after the handshake completed. The core answers
/// at most 7 of them (rtc-dtls `DEFAULT_MAXIMUM_RETRANSMIT_NUMBER`) and keeps every one.
const MAX_REPEATED_FLIGHTS: u32 = 16;
/// Bytes of the peer's handshake messages remembered, to recognise its repeats.
const MAX_TRANSCRIPT_BYTES: usize = 64 * 1024;

/// ICE credentials of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) ufrag: String,
    pub(crate) pwd: String,
}

impl Credentials {
    /// The first `a=ice-ufrag` / `a=ice-pwd` pair of an SDP (bundled sections share them).
    pub(crate) fn from_sdp(sdp: &str) -> Option<Self> {
        let attr = |name: &str| {
            sdp.lines()
                .find_map(|l| l.trim_end().strip_prefix(name))
                .map(str::to_owned)
        };
        Some(Self {
            ufrag: attr("a=ice-ufrag:")?,
            pwd: attr("a=ice-pwd:")?,
        })
    }
}

/// The filter state of one connection.
pub(crate) struct Ingress {
    crypto: Option<Arc<dyn RTCCryptoProvider>>,
    /// Newest last.
    local: Vec<Credentials>,
    remote: Option<Credentials>,
    /// Most recently authenticated first.
    authenticated: Vec<SocketAddr>,
    dtls: DtlsGuard,
    media: MediaGate,
    counters: Arc<FilterCounters>,
    /// Refusals already logged (bit per [`Refusal`]).
    logged: u8,
    /// Datagrams passed that are not STUN (DTLS, RTP, RTCP): what may start a timer of the
    /// core other than the ICE agent's (the driver's idle test, `Driver::idle_deadline`).
    passed_non_stun: u64,
}

impl Ingress {
    pub(crate) fn new(
        crypto: Option<Arc<dyn RTCCryptoProvider>>,
        counters: Arc<FilterCounters>,
    ) -> Self {
        Self {
            crypto,
            local: Vec::new(),
            remote: None,
            authenticated: Vec::new(),
            dtls: DtlsGuard::default(),
            media: MediaGate::default(),
            counters,
            logged: 0,
            passed_non_stun: 0,
        }
    }

    /// Sets the local credentials (after each local description).
    pub(crate) fn set_local(&mut self, creds: Credentials) {
        if self.local.last() == Some(&creds) {
            return;
        }
        self.local.push(creds);
        if self.local.len() > MAX_LOCAL_CREDENTIALS {
            self.local.remove(0);
        }
    }

    /// Sets the remote credentials (after each remote description).
    pub(crate) fn set_remote(&mut self, creds: Credentials) {
        self.remote = Some(creds);
    }

    /// What the remote description allows of RTP and RTCP (after each remote description).
    pub(crate) fn set_media(&mut self, gate: MediaGate) {
        let unsignalled = std::mem::take(&mut self.media.unsignalled);
        self.media = gate;
        self.media.unsignalled = unsignalled;
    }

    /// The DTLS handshake has completed: from now on only repeats of the peer's last flight
    /// may carry old-epoch handshake records.
    pub(crate) fn dtls_complete(&mut self) {
        self.dtls.complete = true;
    }

    /// Whether this side has seen the DTLS handshake complete.
    pub(crate) fn dtls_done(&self) -> bool {
        self.dtls.complete
    }

    /// Decides whether `datagram`, received from `peer`, may reach the core; counts it.
    pub(crate) fn admit(&mut self, peer: SocketAddr, datagram: &[u8]) -> bool {
        let verdict = match datagram.first() {
            Some(0..=3) => self.stun(peer, datagram),
            Some(20..=63) => {
                if self.is_authenticated(peer) {
                    self.dtls.check(datagram)
                } else {
                    Err(Refusal::Stranger)
                }
            }
            Some(128..=191) => {
                if self.is_authenticated(peer) {
                    self.media.admit(datagram)
                } else {
                    Err(Refusal::Media)
                }
            }
            _ => Err(Refusal::Malformed),
        };
        match verdict {
            Ok(()) => {
                self.counters.count_passed();
                if datagram[0] > 3 {
                    self.passed_non_stun += 1;
                }
                true
            }
            Err(why) => {
                self.counters.count_refused(why);
                let bit = 1 << why as u8;
                if self.logged & bit == 0 {
                    self.logged |= bit;
                    debug!("inbound filter: refusing {why:?} datagrams (first from {peer})");
                } else {
                    trace!("inbound filter: {why:?} datagram from {peer} refused");
                }
                false
            }
        }
    }

    /// How many datagrams other than STUN have passed so far.
    pub(crate) fn passed_non_stun(&self) -> u64 {
        self.passed_non_stun
    }

    /// Whether the DTLS records of `datagram` may be kept for replay before ICE connects: only
    /// what [`admit`](Self::admit) passed.
    pub(crate) fn is_authenticated(&self, peer: SocketAddr) -> bool {
        self.authenticated.contains(&peer)
    }

    fn authenticate(&mut self, peer: SocketAddr) {
        if let Some(i) = self.authenticated.iter().position(|a| *a == peer) {
            self.authenticated[..=i].rotate_right(1);
            return;
        }
        self.authenticated.insert(0, peer);
        self.authenticated.truncate(MAX_AUTHENTICATED);
    }

    fn stun(&mut self, peer: SocketAddr, datagram: &[u8]) -> Result<(), Refusal> {
        // RFC 5389 framing: header, magic cookie, a length that covers the rest exactly.
        if datagram.len() < 20
            || datagram[4..8] != MAGIC_COOKIE
            || usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) + 20 != datagram.len()
            || !datagram.len().is_multiple_of(4)
        {
            return Err(Refusal::Malformed);
        }
        let mut m = Message::new();
        if m.unmarshal_binary(datagram).is_err() {
            return Err(Refusal::Malformed);
        }
        if m.typ.method != METHOD_BINDING {
            return Err(Refusal::UnauthenticatedStun);
        }
        let ok = if m.typ.class == CLASS_REQUEST {
            self.request_is_authentic(&mut m)
        } else if m.typ.class == CLASS_SUCCESS_RESPONSE {
            let remote = self.remote.as_ref();
            remote.is_some_and(|r| self.integrity_ok(&mut m, r.pwd.as_bytes()))
        } else if m.typ.class == CLASS_INDICATION {
            // Not authenticated by design (RFC 8445 keepalives); harmless from the peer.
            return if self.is_authenticated(peer) {
                Ok(())
            } else {
                Err(Refusal::UnauthenticatedStun)
            };
        } else {
            false // error responses: the agent ignores them
        };
        if !ok {
            return Err(Refusal::UnauthenticatedStun);
        }
        self.authenticate(peer);
        Ok(())
    }

    /// `USERNAME` is `<our ufrag>:<remote ufrag>` and `MESSAGE-INTEGRITY` verifies with our
    /// password (RFC 8445 §7.3: authenticate before acting on a request).
    fn request_is_authentic(&self, m: &mut Message) -> bool {
        let Ok(username) = m.get(ATTR_USERNAME) else {
            return false;
        };
        let Ok(username) = std::str::from_utf8(&username) else {
            return false;
        };
        let Some((ours, theirs)) = username.split_once(':') else {
            return false;
        };
        if let Some(remote) = &self.remote
            && remote.ufrag != theirs
        {
            return false;
        }
        let Some(local) = self.local.iter().rev().find(|c| c.ufrag == ours) else {
            return false;
        };
        self.integrity_ok(m, local.pwd.as_bytes())
    }

    fn integrity_ok(&self, m: &mut Message, key: &[u8]) -> bool {
        let Some(crypto) = &self.crypto else {
            return false; // cannot verify: fail closed
        };
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return false;
        }
        // The same check the agent makes later, made first.
        rtc::stun::integrity::MessageIntegrity::check(m, key, crypto.crypto()).is_ok()
    }
}

/// SSRCs seen without being signalled that may still pass (simulcast layers announced by RID
/// only, RTX, the RTCP of a peer that only receives).
const MAX_UNSIGNALLED_SSRCS: usize = 16;

/// What RTP and RTCP may pass: nothing unless the remote description negotiates audio or
/// video; then, from an authenticated source, packets of the SSRCs the remote
/// description signals, and of a few more first seen ([`MAX_UNSIGNALLED_SSRCS`]). SRTP keeps
/// state per SSRC before it authenticates a packet, so this bounds what forged packets cost.
#[derive(Debug, Default)]
pub(crate) struct MediaGate {
    enabled: bool,
    signalled: Vec<u32>,
    unsignalled: Vec<u32>,
}

impl MediaGate {
    /// Reads the remote description: any audio or video section not rejected (port 0)
    /// enables media; `a=ssrc:` lines name the signalled SSRCs.
    pub(crate) fn from_sdp(sdp: &str) -> Self {
        let mut gate = Self {
            enabled: media_sections(sdp)
                .iter()
                .any(|s| !s.rejected && matches!(s.kind(), "audio" | "video")),
            ..Self::default()
        };
        for line in sdp.lines().map(str::trim_end) {
            if let Some(rest) = line.strip_prefix("a=ssrc:")
                && let Some(ssrc) = rest.split(' ').next().and_then(|v| v.parse().ok())
                && !gate.signalled.contains(&ssrc)
            {
                gate.signalled.push(ssrc);
            }
        }
        gate
    }

    fn admit(&mut self, datagram: &[u8]) -> Result<(), Refusal> {
        if !self.enabled || datagram.len() < 12 {
            return Err(Refusal::Media);
        }
        // RFC 5761: RTCP packet types 192..=223 sit where RTP has marker + payload type; the
        // sender's SSRC follows the 4-byte RTCP header, the RTP SSRC the 8-byte RTP header.
        let at = if (192..=223).contains(&datagram[1]) {
            4
        } else {
            8
        };
        let ssrc = u32::from_be_bytes([
            datagram[at],
            datagram[at + 1],
            datagram[at + 2],
            datagram[at + 3],
        ]);
        if self.signalled.contains(&ssrc) || self.unsignalled.contains(&ssrc) {
            return Ok(());
        }
        if self.unsignalled.len() < MAX_UNSIGNALLED_SSRCS {
            self.unsignalled.push(ssrc);
            return Ok(());
        }
        Err(Refusal::Media)
    }
}

/// What DTLS may pass from an authenticated source, given where the handshake is.
///
/// rtc-dtls buffers handshake fragments before it authenticates them, does not count
/// zero-length fragments toward its buffer cap, never frees fragments of messages it has
/// already processed, and walks all of them for every later record. So, from an
/// authenticated source:
///
/// * before the handshake completes, epoch-0 handshake records pass if their fragments are
///   well-formed (in bounds, no empty fragment of a non-empty message, sequence numbers a
///   handshake uses, a handful per datagram), within a datagram budget; their messages are
///   remembered;
/// * after it completes, epoch-0 handshake records pass only if every fragment repeats a
///   message the peer sent during the handshake, byte for byte — a genuine repeat of its last
///   flight, which tells the core that our last flight was lost (RFC 6347 §4.2.4) — and only
///   [`MAX_REPEATED_FLIGHTS`] times; other epoch-0 records (which the core discards then
///   anyway) and records of unknown epochs never pass.
#[derive(Default)]
struct DtlsGuard {
    complete: bool,
    handshake_datagrams: u32,
    early_epoch_records: u32,
    repeated_flights: u32,
    transcript: Transcript,
}

/// One handshake fragment, as parsed from a record.
struct Fragment<'a> {
    msg_type: u8,
    length: u32,
    seq: u16,
    offset: u32,
    body: &'a [u8],
}

impl DtlsGuard {
    fn check(&mut self, datagram: &[u8]) -> Result<(), Refusal> {
        let mut fragments = Vec::new();
        let mut next_epoch_records = 0;
        let mut change_cipher_spec = false;
        let mut rest = datagram;
        while !rest.is_empty() {
            if rest.len() < RECORD_HEADER {
                return Err(Refusal::Malformed);
            }
            let content_type = rest[0];
            let epoch = u16::from_be_bytes([rest[3], rest[4]]);
            let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
            let Some(body) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
                return Err(Refusal::Malformed);
            };
            rest = &rest[RECORD_HEADER + len..];
            match (epoch, content_type) {
                (0, HANDSHAKE) => parse_fragments(body, &mut fragments)?,
                (0, ALERT) if !self.complete => {}
                // A repeated last flight carries it too; on its own it is refused below.
                (0, CHANGE_CIPHER_SPEC) => change_cipher_spec = true,
                // rtc-dtls "decrypts" a change-cipher-spec record by passing it through, so
                // one of epoch 1 would move the peer's epoch to 2 without any key, and every
                // genuine record after it would be discarded. A DTLS 1.2 peer only ever sends it
                // at epoch 0.
                (1.., CHANGE_CIPHER_SPEC) => return Err(Refusal::Dtls),
                (1, _) if self.complete => {}
                (1, _) => next_epoch_records += 1,
                // Application data at epoch 0 (the core answers it with a fatal alert), old
                // epochs after the handshake, and epochs no handshake reaches.
                _ => return Err(Refusal::Dtls),
            }
        }
        if !self.complete {
            if self.early_epoch_records + next_epoch_records > MAX_EARLY_EPOCH_RECORDS {
                return Err(Refusal::Dtls);
            }
            if !fragments.is_empty() {
                if self.handshake_datagrams >= MAX_HANDSHAKE_DATAGRAMS {
                    return Err(Refusal::Dtls);
                }
                self.handshake_datagrams += 1;
            }
            self.early_epoch_records += next_epoch_records;
            for f in &fragments {
                self.transcript.record(f);
            }
            return Ok(());
        }
        if fragments.is_empty() {
            return if change_cipher_spec {
                Err(Refusal::Dtls)
            } else {
                Ok(())
            };
        }
        if self.repeated_flights >= MAX_REPEATED_FLIGHTS
            || !fragments.iter().all(|f| self.transcript.repeats(f))
        {
            return Err(Refusal::Dtls);
        }
        self.repeated_flights += 1;
        Ok(())
    }
}

/// Splits the body of an epoch-0 handshake record into fragments; refuses malformed ones.
fn parse_fragments<'a>(mut body: &'a [u8], out: &mut Vec<Fragment<'a>>) -> Result<(), Refusal> {
    if body.is_empty() {
        return Err(Refusal::Dtls);
    }
    let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
    while !body.is_empty() {
        if body.len() < FRAGMENT_HEADER {
            return Err(Refusal::Dtls);
        }
        let msg_type = body[0];
        let length = u24(&body[1..4]);
        let seq = u16::from_be_bytes([body[4], body[5]]);
        let offset = u24(&body[6..9]);
        let fragment_length = u24(&body[9..12]);
        let end = u64::from(offset) + u64::from(fragment_length);
        let Some(data) = body.get(FRAGMENT_HEADER..FRAGMENT_HEADER + fragment_length as usize)
        else {
            return Err(Refusal::Dtls);
        };
        if seq > MAX_MESSAGE_SEQ
            || end > u64::from(length)
            || (fragment_length == 0 && length != 0)
            || out.len() >= MAX_FRAGMENTS_PER_DATAGRAM
        {
            return Err(Refusal::Dtls);
        }
        out.push(Fragment {
            msg_type,
            length,
            seq,
            offset,
            body: data,
        });
        body = &body[FRAGMENT_HEADER + fragment_length as usize..];
    }
    Ok(())
}

/// The handshake messages the peer sent, as far as they arrived, by message sequence number.
#[derive(Default)]
struct Transcript {
    messages: BTreeMap<u16, Recorded>,
    bytes: usize,
}

struct Recorded {
    msg_type: u8,
    body: Vec<u8>,
    /// Byte ranges of `body` received so far, sorted and disjoint.
    filled: Vec<(u32, u32)>,
}

impl Transcript {
    fn record(&mut self, f: &Fragment<'_>) {
        let bytes = self.bytes;
        let msg = match self.messages.get_mut(&f.seq) {
            Some(m) => m,
            None => {
                let len = f.length as usize;
                if bytes + len > MAX_TRANSCRIPT_BYTES {
                    return; // not remembered: its repeats will not pass
                }
                self.bytes += len;
                self.messages.entry(f.seq).or_insert(Recorded {
                    msg_type: f.msg_type,
                    body: vec![0; len],
                    filled: Vec::new(),
                })
            }
        };
        if msg.msg_type != f.msg_type || msg.body.len() != f.length as usize {
            return;
        }
        let (start, end) = (f.offset, f.offset + f.body.len() as u32);
        if msg.filled.iter().any(|&(s, e)| start < e && s < end) {
            return; // a repeat, or a rival version: the first bytes received stand
        }
        msg.body[start as usize..end as usize].copy_from_slice(f.body);
        if start < end {
            msg.filled.push((start, end));
            msg.filled.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::with_capacity(msg.filled.len());
            for &(s, e) in &msg.filled {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            msg.filled = merged;
        }
    }

    /// Whether `f` is a byte-for-byte repeat of part of a message recorded earlier.
    fn repeats(&self, f: &Fragment<'_>) -> bool {
        let Some(msg) = self.messages.get(&f.seq) else {
            return false;
        };
        if msg.msg_type != f.msg_type || msg.body.len() != f.length as usize {
            return false;
        }
        if f.length == 0 {
            return true; // an empty message, e.g. ServerHelloDone
        }
        let (start, end) = (f.offset, f.offset + f.body.len() as u32);
        msg.filled.iter().any(|&(s, e)| s <= start && end <= e)
            && msg.body[start as usize..end as usize] == *f.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u16, content_type: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn fragment(msg_type: u8, length: u32, seq: u16, offset: u32, data: &[u8]) -> Vec<u8> {
        let mut f = vec![msg_type];
        f.extend_from_slice(&length.to_be_bytes()[1..]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&offset.to_be_bytes()[1..]);
        f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn handshake_records_pass_before_completion_and_only_repeats_after() {
        let mut g = DtlsGuard::default();
        let cert = fragment(11, 4, 2, 0, b"cert");
        let kx = fragment(16, 2, 3, 0, b"kx");
        let mut flight = record(0, HANDSHAKE, &cert);
        flight.extend(record(0, HANDSHAKE, &kx));
        flight.extend(record(0, CHANGE_CIPHER_SPEC, &[1]));
        flight.extend(record(1, HANDSHAKE, &[9; 40]));
        assert_eq!(g.check(&flight), Ok(()));
        g.complete = true;
        // The genuine repeat (the core needs it to resend its lost last flight).
        assert_eq!(g.check(&record(0, HANDSHAKE, &cert)), Ok(()));
        // Part of a recorded message.
        assert_eq!(
            g.check(&record(0, HANDSHAKE, &fragment(11, 4, 2, 1, b"er"))),
            Ok(())
        );
        // Forged: other bytes, other sequence numbers, zero-length fragments.
        for forged in [
            fragment(11, 4, 2, 0, b"evil"),
            fragment(11, 4, 9, 0, b"cert"),
            fragment(11, 4, 2, 0, b""),
        ] {
            assert_eq!(g.check(&record(0, HANDSHAKE, &forged)), Err(Refusal::Dtls));
        }
        // Old-epoch alerts and change-cipher-spec after completion; unknown epochs.
        assert_eq!(g.check(&record(0, ALERT, &[2, 40])), Err(Refusal::Dtls));
        assert_eq!(g.check(&record(2, 23, &[0; 32])), Err(Refusal::Dtls));
        // A change-cipher-spec record of epoch 1 (unauthenticated in rtc-dtls).
        assert_eq!(
            g.check(&record(1, CHANGE_CIPHER_SPEC, &[1])),
            Err(Refusal::Dtls)
        );
        // Application data of the current epoch passes untouched.
        assert_eq!(g.check(&record(1, 23, &[0; 32])), Ok(()));
    }

    #[test]
    fn the_first_version_of_a_message_stands() {
        let mut g = DtlsGuard::default();
        g.check(&record(0, HANDSHAKE, &fragment(11, 4, 2, 0, b"cert")))
            .unwrap();
        // A forged rival arriving during the handshake cannot replace what was recorded.
        g.check(&record(0, HANDSHAKE, &fragment(11, 4, 2, 0, b"evil")))
            .unwrap();
        g.complete = true;
        let repeat = record(0, HANDSHAKE, &fragment(11, 4, 2, 0, b"cert"));
        assert_eq!(g.check(&repeat), Ok(()));
        let rival = record(0, HANDSHAKE, &fragment(11, 4, 2, 0, b"evil"));
        assert_eq!(g.check(&rival), Err(Refusal::Dtls));
    }

    #[test]
    fn repeats_are_budgeted() {
        let mut g = DtlsGuard::default();
        let cert = record(0, HANDSHAKE, &fragment(11, 4, 2, 0, b"cert"));
        g.check(&cert).unwrap();
        g.complete = true;
        for _ in 0..MAX_REPEATED_FLIGHTS {
            assert_eq!(g.check(&cert), Ok(()));
        }
        assert_eq!(g.check(&cert), Err(Refusal::Dtls));
    }

    #[test]
    fn malformed_fragments_never_pass() {
        let mut g = DtlsGuard::default();
        let cases = [
            fragment(1, 10, 0, 8, b"abcd"), // beyond the message
            fragment(1, 10, 0, 0, b""),     // empty piece of a non-empty message
            fragment(1, 4, MAX_MESSAGE_SEQ + 1, 0, b"abcd"),
        ];
        for c in cases {
            assert_eq!(g.check(&record(0, HANDSHAKE, &c)), Err(Refusal::Dtls));
        }
        let many: Vec<u8> = (0..40).flat_map(|_| fragment(14, 0, 1, 0, b"")).collect();
        assert_eq!(g.check(&record(0, HANDSHAKE, &many)), Err(Refusal::Dtls));
        // Truncated record.
        let mut r = record(0, HANDSHAKE, &fragment(1, 4, 0, 0, b"abcd"));
        r.pop();
        assert_eq!(g.check(&r), Err(Refusal::Malformed));
        // A zero-length message (ServerHelloDone) is fine.
        assert_eq!(
            g.check(&record(0, HANDSHAKE, &fragment(14, 0, 1, 0, b""))),
            Ok(())
        );
    }

    #[test]
    fn epoch_zero_application_data_never_passes() {
        let mut g = DtlsGuard::default();
        assert_eq!(g.check(&record(0, 23, b"hello")), Err(Refusal::Dtls));
    }

    #[test]
    fn credentials_from_sdp() {
        let sdp = "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secretsecretsecretsecret\r\n";
        let c = Credentials::from_sdp(sdp).unwrap();
        assert_eq!(c.ufrag, "abcd");
        assert_eq!(c.pwd, "secretsecretsecretsecret");
        assert_eq!(Credentials::from_sdp("v=0\r\n"), None);
    }

    #[test]
    fn media_gate_from_sdp() {
        let data_only = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n";
        assert!(!MediaGate::from_sdp(data_only).enabled);
        let rejected = "v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=ssrc:7 cname:x\r\n";
        let gate = MediaGate::from_sdp(rejected);
        assert!(!gate.enabled);
        assert_eq!(gate.signalled, [7]);
        let video = "v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ssrc:5 cname:x\r\na=ssrc:5 msid:a b\r\n\
            a=ssrc:6 cname:x\r\n";
        let gate = MediaGate::from_sdp(video);
        assert!(gate.enabled);
        assert_eq!(gate.signalled, [5, 6]);
    }

    #[test]
    fn strangers_media_and_noise_are_refused() {
        let mut i = Ingress::new(
            rtc::crypto::default_provider().ok(),
            Arc::new(FilterCounters::default()),
        );
        let peer: SocketAddr = "10.0.0.9:1000".parse().unwrap();
        assert!(!i.admit(peer, &record(0, HANDSHAKE, &fragment(1, 4, 0, 0, b"abcd"))));
        assert!(!i.admit(peer, &[0x80, 0x60, 0, 1]));
        assert!(!i.admit(peer, &[0x42; 30]));
        assert!(!i.admit(peer, &[]));
        // STUN without the magic cookie / with a wrong length.
        assert!(!i.admit(
            peer,
            &[0, 1, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        ));
        let s = i.counters.snapshot();
        assert_eq!(
            (s.passed, s.stranger, s.media, s.malformed),
            (0, 1, 1, 3),
            "{s:?}"
        );
    }
}
