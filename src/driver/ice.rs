//! ICE, as the driver drives it: local candidates (gathering) and remote candidates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use log::{debug, warn};
use rtc::ice::tcp_type::TcpType;
use rtc::peer_connection::{
    RTCPeerConnection,
    sdp::{RTCSdpType, RTCSessionDescription},
    transport::{
        CandidateConfig, CandidateHostConfig, CandidateServerReflexiveConfig, RTCIceCandidate,
        RTCIceCandidateInit,
    },
};

use super::sdp::{Section, format_list, media_sections};
use crate::error::{Error, Result};

/// Remote candidates kept while the remote description is not set yet (a real peer sends a
/// few dozen at most).
pub(crate) const MAX_EARLY_CANDIDATES: usize = 256;

/// Remote candidates kept per remote description (a real peer sends a few dozen; the core's
/// cost per candidate grows with the number it has, so thousands would take seconds each
/// round). Beyond it, [`Error::TooManyRemoteCandidates`]; in a description, the rest are
/// left out.
pub(crate) const MAX_REMOTE_CANDIDATES: usize = 1_000;

/// ICE state the driver keeps beside the core: remote candidates that came before the remote
/// description, and whether local candidates were gathered.
#[derive(Default)]
pub(super) struct Ice {
    early_candidates: Vec<RTCIceCandidateInit>,
    gathered: bool,
    /// Gathering started and the end of candidates is still to be added.
    end_pending: bool,
    /// The last offer or answer the core created, and the fixed text handed out for it.
    created: Option<(String, RTCSessionDescription)>,
    /// A 1:1 NAT's public addresses with their base, announced as server-reflexive
    /// candidates with the host candidates.
    mapped: Vec<(SocketAddr, SocketAddr)>,
    /// Our DTLS role as the first offer/answer settled it (`a=setup:` value, `active` or
    /// `passive`): every later answer must keep it (RFC 8842 §5.5), and `rtc` 0.21.1 picks
    /// `active` for every answer, which a browser that is the DTLS client refuses ("Failed to
    /// set SSL role").
    setup: Option<&'static str>,
    /// The media sections of the remote description, read once per description (not once
    /// per candidate: a remote candidate costs the same whatever the description's size).
    remote_sections: Option<RemoteSections>,
    /// Remote candidates given to the core since the last remote description (its own
    /// included).
    remote_candidates: usize,
}

/// What [`check_media_section`] needs of a remote description: the `a=mid` of each media
/// section, in order. `key` tells the description it was read from.
struct RemoteSections {
    key: (RTCSdpType, usize),
    mids: Vec<Option<String>>,
}

impl RemoteSections {
    fn key(remote: &RTCSessionDescription) -> (RTCSdpType, usize) {
        (remote.sdp_type, remote.sdp.len())
    }

    /// Reads the mids of `remote`'s media sections (the first `a=mid` of each, as the core
    /// reads them).
    fn read(remote: &RTCSessionDescription) -> Self {
        let mut mids: Vec<Option<String>> = Vec::new();
        for line in remote.sdp.lines().map(str::trim_end) {
            if line.starts_with("m=") {
                mids.push(None);
            } else if let Some(mid) = line.strip_prefix("a=mid:")
                && let Some(slot @ None) = mids.last_mut()
            {
                *slot = Some(mid.trim().to_owned());
            }
        }
        Self {
            key: Self::key(remote),
            mids,
        }
    }
}

impl Ice {
    pub(super) fn new(mapped: Vec<(SocketAddr, SocketAddr)>) -> Self {
        Self {
            mapped,
            ..Self::default()
        }
    }

    /// An offer or answer the core created: returns it fixed ([`fix_local_sdp`]) and
    /// remembers the original for [`as_created`](Self::as_created).
    /// The remote answer to our offer is set: our DTLS role is the other end of its
    /// `a=setup` (the first time).
    pub(super) fn remote_answer_set(&mut self, sdp: &str) {
        if self.setup.is_none() {
            self.setup = match setup_of(sdp) {
                Some("active") => Some("passive"),
                Some("passive") => Some("active"),
                _ => None,
            };
        }
    }

    /// Our answer is set: its `a=setup` is our DTLS role (the first time).
    pub(super) fn local_answer_set(&mut self, sdp: &str) {
        if self.setup.is_none() {
            self.setup = match setup_of(sdp) {
                Some("active") => Some("active"),
                Some("passive") => Some("passive"),
                _ => None,
            };
        }
    }

    pub(super) fn created(
        &mut self,
        desc: RTCSessionDescription,
        remote: Option<&RTCSessionDescription>,
    ) -> RTCSessionDescription {
        let fixed = self.fixed(desc.clone(), remote);
        self.created = (fixed.sdp != desc.sdp).then(|| (fixed.sdp.clone(), desc));
        fixed
    }

    /// `desc` (ours, from the core) as the peer must see it: [`fixed_description`], and an
    /// answer keeps the DTLS role the first negotiation settled.
    pub(super) fn fixed(
        &self,
        desc: RTCSessionDescription,
        remote: Option<&RTCSessionDescription>,
    ) -> RTCSessionDescription {
        let mut fixed = fixed_description(desc, remote);
        if fixed.sdp_type == RTCSdpType::Answer
            && let Some(role) = self.setup
            && setup_of(&fixed.sdp).is_some_and(|s| s != role)
        {
            fixed.sdp = with_setup(&fixed.sdp, role);
        }
        fixed
    }

    /// The description to give the core for `desc`: the original if `desc` is the fixed text
    /// of what it created (it refuses anything else than what it created).
    pub(super) fn as_created(&mut self, desc: RTCSessionDescription) -> RTCSessionDescription {
        match &self.created {
            Some((fixed, original)) if *fixed == desc.sdp && original.sdp_type == desc.sdp_type => {
                original.clone()
            }
            _ => desc,
        }
    }

    /// Adds a remote candidate, or keeps it until the remote description is set (the core
    /// refuses candidates before; at most [`MAX_EARLY_CANDIDATES`] are kept).
    pub(super) fn add_remote(
        &mut self,
        core: &mut RTCPeerConnection,
        candidate: RTCIceCandidateInit,
    ) -> Result<()> {
        let Some(remote) = core.remote_description() else {
            if self.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                return Err(Error::TooManyEarlyCandidates {
                    max: MAX_EARLY_CANDIDATES,
                });
            }
            self.early_candidates.push(candidate);
            return Ok(());
        };
        if self
            .remote_sections
            .as_ref()
            .is_none_or(|s| s.key != RemoteSections::key(remote))
        {
            self.remote_sections = Some(RemoteSections::read(remote));
        }
        if let Some(sections) = &self.remote_sections {
            check_media_section(&candidate, sections)?;
        }
        if self.remote_candidates >= MAX_REMOTE_CANDIDATES {
            return Err(Error::TooManyRemoteCandidates {
                max: MAX_REMOTE_CANDIDATES,
            });
        }
        core.add_remote_candidate(candidate)
            .map_err(|e| Error::InvalidCandidate(e.into()))?;
        self.remote_candidates += 1;
        Ok(())
    }

    /// The remote description is set, with `candidates` candidates (see
    /// [`filter_remote`](Self::filter_remote)): adds the candidates that came before it.
    pub(super) fn remote_description_set(
        &mut self,
        core: &mut RTCPeerConnection,
        candidates: usize,
    ) {
        self.remote_sections = None; // read again, from the new one
        self.remote_candidates = candidates;
        for c in std::mem::take(&mut self.early_candidates) {
            if let Err(e) = self.add_remote(core, c) {
                warn!("early remote candidate rejected: {e}");
            }
        }
    }

    /// Whether local candidates still have to be gathered (the first local description, or
    /// the first after an ICE restart).
    pub(super) fn needs_gathering(&self) -> bool {
        !self.gathered
    }

    /// ICE restarted (new local credentials): the next local description gathers again.
    pub(super) fn restarted(&mut self) {
        self.gathered = false;
    }

    /// Adds one host candidate per socket address. The end of candidates follows with
    /// [`end_of_candidates`](Self::end_of_candidates), once the servers have answered.
    pub(super) fn gather(&mut self, core: &mut RTCPeerConnection, addrs: &[SocketAddr]) {
        self.gathered = true;
        self.end_pending = true;
        for addr in addrs {
            let host = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "udp".to_owned(),
                    address: addr.ip().to_string(),
                    port: addr.port(),
                    component: 1,
                    ..Default::default()
                },
                ..Default::default()
            }
            .new_candidate_host()
            .and_then(|c| RTCIceCandidate::from(&c).to_json())
            .and_then(|init| core.add_local_candidate(init));
            if let Err(e) = host {
                warn!("host candidate {addr} not added: {e}");
            }
        }
        for (public, base) in &self.mapped {
            if !addrs.contains(base) {
                continue;
            }
            let srflx = CandidateServerReflexiveConfig {
                base_config: CandidateConfig {
                    network: "udp".to_owned(),
                    address: public.ip().to_string(),
                    port: public.port(),
                    component: 1,
                    ..Default::default()
                },
                rel_addr: base.ip().to_string(),
                rel_port: base.port(),
                ..Default::default()
            }
            .new_candidate_server_reflexive()
            .and_then(|c| RTCIceCandidate::from(&c).to_json())
            .and_then(|init| core.add_local_candidate(init));
            if let Err(e) = srflx {
                warn!("1:1 NAT candidate {public} not added: {e}");
            }
        }
    }

    /// Adds the ICE-TCP host candidates: a passive one per listener, an active one (port 9)
    /// per address in `active`.
    pub(super) fn gather_tcp(
        &mut self,
        core: &mut RTCPeerConnection,
        passive: &[SocketAddr],
        active: &[SocketAddr],
    ) {
        let candidates = passive
            .iter()
            .map(|a| (a, TcpType::Passive))
            .chain(active.iter().map(|a| (a, TcpType::Active)));
        for (addr, tcp_type) in candidates {
            let host = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "tcp".to_owned(),
                    address: addr.ip().to_string(),
                    port: addr.port(),
                    component: 1,
                    ..Default::default()
                },
                tcp_type,
            }
            .new_candidate_host()
            .and_then(|c| RTCIceCandidate::from(&c).to_json())
            .and_then(|init| core.add_local_candidate(init));
            if let Err(e) = host {
                warn!("TCP {tcp_type} candidate {addr} not added: {e}");
            }
        }
    }

    /// Adds a candidate gathered through a STUN or TURN server.
    pub(super) fn add_local(&mut self, core: &mut RTCPeerConnection, init: RTCIceCandidateInit) {
        let candidate = init.candidate.clone();
        if let Err(e) = core.add_local_candidate(init) {
            warn!("candidate {candidate} not added: {e}");
        }
    }

    /// Adds the end of candidates, once (the core then reports gathering `Complete`).
    pub(super) fn end_of_candidates(&mut self, core: &mut RTCPeerConnection) {
        if !std::mem::take(&mut self.end_pending) {
            return;
        }
        if let Err(e) = core.add_local_candidate(RTCIceCandidateInit::default()) {
            warn!("end of candidates not accepted: {e}");
        }
    }
}

/// The first `a=setup:` value of a description.
fn setup_of(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=setup:"))
}

/// `sdp` with every `a=setup:` line saying `role`.
fn with_setup(sdp: &str, role: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| {
            if line.starts_with("a=setup:") {
                let end = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
                format!("a=setup:{role}{end}")
            } else {
                line.to_owned()
            }
        })
        .collect()
}

/// Rejects a candidate whose `sdpMid` / `sdpMLineIndex` names no media section of the
/// remote description (read into `sections`).
fn check_media_section(c: &RTCIceCandidateInit, sections: &RemoteSections) -> Result<()> {
    if c.candidate.trim_start_matches("candidate:").is_empty() {
        return Ok(());
    }
    let unknown = || Error::UnknownMediaSection {
        mid: c.sdp_mid.clone(),
        mline_index: c.sdp_mline_index,
    };
    if let Some(mid) = c.sdp_mid.as_deref().filter(|m| !m.is_empty()) {
        if !sections.mids.iter().flatten().any(|m| m == mid) {
            return Err(unknown());
        }
    } else if let Some(i) = c.sdp_mline_index
        && usize::from(i) >= sections.mids.len()
    {
        return Err(unknown());
    }
    Ok(())
}

/// The address of `candidate` (with or without `candidate:`) if no connectivity check may
/// be sent to it: multicast, broadcast or unspecified (IPv4-mapped IPv6 ones included). A
/// hostname (mDNS) or a malformed candidate is not this function's concern.
pub(super) fn unusable_address(candidate: &str) -> Option<SocketAddr> {
    let mut fields = candidate
        .trim_start_matches("candidate:")
        .split_whitespace();
    let ip: IpAddr = fields.nth(4)?.parse().ok()?;
    let port: u16 = fields.next()?.parse().ok()?;
    let v4 = match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    let unusable = ip.is_multicast()
        || ip.is_unspecified()
        || v4.is_some_and(|v4| {
            v4.is_multicast() || v4.is_unspecified() || v4 == Ipv4Addr::BROADCAST
        });
    unusable.then_some(SocketAddr::new(ip, port))
}

/// A remote description without its candidates at [unusable addresses](unusable_address)
/// and those beyond [`MAX_REMOTE_CANDIDATES`] (unchanged, and not copied, if it has none),
/// and how many candidates it keeps.
pub(super) fn filter_remote(mut desc: RTCSessionDescription) -> (RTCSessionDescription, usize) {
    let candidate = |line: &str| line.trim_end().strip_prefix("a=candidate:").is_some();
    let unusable = |line: &str| {
        line.trim_end()
            .strip_prefix("a=")
            .filter(|c| c.starts_with("candidate:"))
            .and_then(unusable_address)
    };
    let (mut count, mut dropped) = (0, false);
    for line in desc.sdp.lines().filter(|l| candidate(l)) {
        if unusable(line).is_some() || count == MAX_REMOTE_CANDIDATES {
            dropped = true;
        } else {
            count += 1;
        }
    }
    if !dropped {
        return (desc, count);
    }
    let (mut kept, mut count) = (String::with_capacity(desc.sdp.len()), 0);
    for line in desc.sdp.split_inclusive('\n') {
        if candidate(line) {
            if let Some(addr) = unusable(line) {
                debug!("remote candidate at {addr} left out: unusable address");
                continue;
            }
            if count == MAX_REMOTE_CANDIDATES {
                debug!("remote candidate left out: more than {MAX_REMOTE_CANDIDATES}");
                continue;
            }
            count += 1;
        }
        kept.push_str(line);
    }
    desc.sdp = kept;
    (desc, count)
}

/// `desc` with [`fix_local_sdp`] applied (unchanged if there is nothing to fix).
pub(super) fn fixed_description(
    desc: RTCSessionDescription,
    remote: Option<&RTCSessionDescription>,
) -> RTCSessionDescription {
    let Some(sdp) = fix_local_sdp(&desc.sdp, remote.map(|r| r.sdp.as_str())) else {
        return desc;
    };
    let fixed = match desc.sdp_type {
        RTCSdpType::Offer => RTCSessionDescription::offer(sdp),
        RTCSdpType::Answer => RTCSessionDescription::answer(sdp),
        RTCSdpType::Pranswer => RTCSessionDescription::pranswer(sdp),
        _ => return desc,
    };
    fixed.unwrap_or(desc)
}

/// Where a description's candidates belong: the first media section of its BUNDLE group that
/// is not rejected (port 0), else the first section that is not: `(mid, m-line index)`.
pub(super) fn candidate_section(sdp: &str) -> Option<(String, u16)> {
    let bundle: Vec<&str> = sdp
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("a=group:BUNDLE "))
        .map(|g| g.split_whitespace().collect())
        .unwrap_or_default();
    let sections = media_sections(sdp);
    let kept = |s: &&Section<'_>| !s.rejected;
    sections
        .iter()
        .filter(kept)
        .find(|s| s.mid.is_some_and(|m| bundle.contains(&m)))
        .or_else(|| sections.iter().find(kept))
        .map(|s| (s.mid.unwrap_or_default().to_owned(), s.index))
}

/// Makes a local description every peer can use. `rtc` 0.21 writes its candidates and
/// `end-of-candidates` into the *first* media section and its ICE credentials only into the
/// sections it accepts; when the first section is rejected (a browser offering video to a
/// peer without codecs), the bundled section that is kept has no candidates, and the rejected
/// one no ICE credentials and DTLS role (aiortc refuses such a description; browsers must then
/// find us through our own checks). This moves the candidates into the section they belong to
/// ([`candidate_section`]) and gives every section the credentials and `a=setup` (and RTP
/// sections `a=rtcp-mux`), as browsers do. Unchanged when nothing is wrong.
pub(super) fn fix_local_sdp(sdp: &str, remote: Option<&str>) -> Option<String> {
    let sections = media_sections(sdp);
    let remote_sections = remote.map(media_sections).unwrap_or_default();
    let offered = |s: &Section<'_>| {
        remote_sections
            .iter()
            .find(|r| r.mid.is_some() && r.mid == s.mid && !r.rejected)
    };
    // A rejected section lists the offer's formats (RFC 3264 §6) with their rtpmap lines, and
    // says it is inactive: `rtc` lists format 0 (PCMU), whatever the kind, which aiortc
    // cannot match.
    let misformatted = |s: &Section<'_>| {
        s.rejected && offered(s).is_some_and(|r| format_list(r.lines[0]) != format_list(s.lines[0]))
    };
    let (_, target_index) = candidate_section(sdp)?;
    let attr = |name: &str| {
        sdp.lines()
            .map(str::trim_end)
            .find(|l| l.starts_with(name))
            .map(str::to_owned)
    };
    let (ufrag, pwd) = (attr("a=ice-ufrag:")?, attr("a=ice-pwd:")?);
    let setup = attr("a=setup:");
    let is_candidate = |l: &str| l.starts_with("a=candidate:") || l == "a=end-of-candidates";
    let misplaced: Vec<&str> = sections
        .iter()
        .filter(|s| s.index != target_index)
        .flat_map(|s| s.lines.iter().copied().filter(|l| is_candidate(l)))
        .collect();
    let lacks = |s: &Section<'_>, name: &str| !s.lines.iter().any(|l| l.starts_with(name));
    let is_rtp = |s: &Section<'_>| s.lines[0].contains("RTP/");
    let lacks_credentials = sections.iter().any(|s| {
        lacks(s, "a=ice-ufrag:")
            || (setup.is_some() && lacks(s, "a=setup:"))
            || (is_rtp(s) && lacks(s, "a=rtcp-mux"))
            || misformatted(s)
    });
    if misplaced.is_empty() && !lacks_credentials {
        return None;
    }
    let mut out: Vec<String> = sdp
        .lines()
        .map(str::trim_end)
        .take_while(|l| !l.starts_with("m="))
        .map(str::to_owned)
        .collect();
    for s in &sections {
        let mut lines: Vec<String> = s
            .lines
            .iter()
            .filter(|l| s.index == target_index || !is_candidate(l))
            .map(|l| (*l).to_owned())
            .collect();
        // After the m= line and its c= line, where transport attributes usually sit.
        let at = lines
            .iter()
            .position(|l| l.starts_with("a="))
            .unwrap_or(lines.len());
        if let Some(setup) = &setup
            && lacks(s, "a=setup:")
        {
            lines.insert(at, setup.clone());
        }
        if lacks(s, "a=ice-ufrag:") {
            lines.insert(at, pwd.clone());
            lines.insert(at, ufrag.clone());
        }
        if is_rtp(s) && lacks(s, "a=rtcp-mux") {
            lines.push("a=rtcp-mux".to_owned());
        }
        if misformatted(s)
            && let Some(r) = offered(s)
        {
            let (m, _) = s.lines[0].split_at(s.lines[0].len() - format_list(s.lines[0]).len());
            lines[0] = format!("{m}{}", format_list(r.lines[0]));
            lines.retain(|l| !l.starts_with("a=rtpmap:") && !l.starts_with("a=fmtp:"));
            lines.extend(
                r.lines
                    .iter()
                    .filter(|l| l.starts_with("a=rtpmap:") || l.starts_with("a=fmtp:"))
                    .map(|l| (*l).to_owned()),
            );
            let directions = ["a=inactive", "a=sendonly", "a=recvonly", "a=sendrecv"];
            if !lines.iter().any(|l| directions.contains(&l.as_str())) {
                lines.push("a=inactive".to_owned());
            }
        }
        if s.index == target_index {
            let has = |c: &str| s.lines.contains(&c);
            let mut end = false;
            for l in &misplaced {
                if *l == "a=end-of-candidates" {
                    end = true;
                } else if !has(l) {
                    lines.push((*l).to_owned());
                }
            }
            if end && !has("a=end-of-candidates") {
                lines.push("a=end-of-candidates".to_owned());
            }
        }
        out.extend(lines);
    }
    let mut fixed = out.join("\r\n");
    fixed.push_str("\r\n");
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `rtc` 0.21 answers to an offer of video + data channel without video codecs.
    const BROKEN: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=fingerprint:sha-256 AA\r\na=group:BUNDLE 1\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
        a=candidate:1 1 udp 2130706431 127.0.0.1 50993 typ host\r\na=end-of-candidates\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
        a=setup:active\r\na=mid:1\r\na=ice-ufrag:uf\r\na=ice-pwd:pw\r\n";

    /// The offer it answers.
    const OFFER: &str = "v=0\r\na=group:BUNDLE 0 1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n";

    #[test]
    fn candidates_move_to_the_kept_bundled_section_and_every_section_gets_credentials() {
        assert_eq!(candidate_section(BROKEN), Some(("1".to_owned(), 1)));
        let fixed = fix_local_sdp(BROKEN, Some(OFFER)).expect("needs fixing");
        let sections = media_sections(&fixed);
        assert_eq!(sections.len(), 2);
        let video = &sections[0].lines;
        assert!(
            !video.iter().any(|l| l.starts_with("a=candidate")),
            "{fixed}"
        );
        assert!(video.contains(&"a=ice-ufrag:uf") && video.contains(&"a=ice-pwd:pw"));
        assert!(video.contains(&"a=setup:active"), "{fixed}");
        assert!(video.contains(&"a=rtcp-mux"), "{fixed}");
        // The rejected section lists what was offered, and is inactive.
        assert_eq!(video[0], "m=video 0 UDP/TLS/RTP/SAVPF 96 97");
        assert!(video.contains(&"a=rtpmap:96 VP8/90000") && video.contains(&"a=inactive"));
        let app = &sections[1].lines;
        assert!(app.contains(&"a=candidate:1 1 udp 2130706431 127.0.0.1 50993 typ host"));
        assert!(app.contains(&"a=end-of-candidates"));
        // Fixed once, nothing more to fix; the session part is kept.
        assert_eq!(fix_local_sdp(&fixed, Some(OFFER)), None);
        assert!(fixed.starts_with("v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"));
    }

    #[test]
    fn a_sound_description_is_left_alone() {
        let ok = "v=0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP x\r\na=mid:0\r\n\
            a=ice-ufrag:uf\r\na=ice-pwd:pw\r\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\n";
        assert_eq!(fix_local_sdp(ok, None), None);
        assert_eq!(candidate_section(ok), Some(("0".to_owned(), 0)));
    }

    #[test]
    fn a_later_answer_keeps_the_dtls_role_of_the_first_negotiation() {
        let answer = |setup: &str| {
            RTCSessionDescription::answer(format!(
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                 m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
                 a=mid:0\r\na=setup:{setup}\r\na=sctp-port:5000\r\n"
            ))
            .unwrap()
        };
        let mut ice = Ice::default();
        // Our offer was answered with `active`: we are the DTLS server from now on.
        ice.remote_answer_set(&answer("active").sdp);
        let later = ice.fixed(answer("active"), None);
        assert!(later.sdp.contains("a=setup:passive\r\n"), "{}", later.sdp);
        assert!(!later.sdp.contains("a=setup:active"), "{}", later.sdp);
        // Settled once: a later remote answer does not change it.
        ice.remote_answer_set(&answer("passive").sdp);
        assert!(
            ice.fixed(answer("active"), None)
                .sdp
                .contains("a=setup:passive")
        );
        // As answerer the first time, our own answer's role stands.
        let mut ice = Ice::default();
        ice.local_answer_set(&answer("active").sdp);
        assert_eq!(ice.fixed(answer("active"), None).sdp, answer("active").sdp);
    }
}
