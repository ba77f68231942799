//! ICE, as the driver drives it: local candidates (gathering) and remote candidates.

use std::net::SocketAddr;

use log::warn;
use rtc::peer_connection::{
    RTCPeerConnection,
    sdp::RTCSessionDescription,
    transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit},
};

use crate::error::{Error, Result};

/// ICE state the driver keeps beside the core: remote candidates that came before the remote
/// description, and whether local candidates were gathered.
#[derive(Default)]
pub(super) struct Ice {
    early_candidates: Vec<RTCIceCandidateInit>,
    gathered: bool,
}

impl Ice {
    /// Adds a remote candidate, or keeps it until the remote description is set (the core
    /// refuses candidates before).
    pub(super) fn add_remote(
        &mut self,
        core: &mut RTCPeerConnection,
        candidate: RTCIceCandidateInit,
    ) -> Result<()> {
        let Some(remote) = core.remote_description() else {
            self.early_candidates.push(candidate);
            return Ok(());
        };
        check_media_section(&candidate, remote)?;
        core.add_remote_candidate(candidate)
            .map_err(|e| Error::InvalidCandidate(e.into()))
    }

    /// The remote description is set: adds the candidates that came before it.
    pub(super) fn remote_description_set(&mut self, core: &mut RTCPeerConnection) {
        for c in std::mem::take(&mut self.early_candidates) {
            if let Err(e) = self.add_remote(core, c) {
                warn!("early remote candidate rejected: {e}");
            }
        }
    }

    /// Whether local candidates still have to be gathered (the first local description).
    pub(super) fn needs_gathering(&self) -> bool {
        !self.gathered
    }

    /// Adds one host candidate per socket address, then the end of candidates (the core then
    /// reports gathering `Complete`).
    pub(super) fn gather(&mut self, core: &mut RTCPeerConnection, addrs: &[SocketAddr]) {
        self.gathered = true;
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
        if let Err(e) = core.add_local_candidate(RTCIceCandidateInit::default()) {
            warn!("end of candidates not accepted: {e}");
        }
    }
}

/// Rejects a candidate whose `sdpMid` / `sdpMLineIndex` names no media section of `remote`.
fn check_media_section(c: &RTCIceCandidateInit, remote: &RTCSessionDescription) -> Result<()> {
    if c.candidate.trim_start_matches("candidate:").is_empty() {
        return Ok(());
    }
    let parsed = remote
        .unmarshal()
        .map_err(|e| Error::InvalidSessionDescription(e.into()))?;
    let medias = &parsed.media_descriptions;
    let unknown = || Error::UnknownMediaSection {
        mid: c.sdp_mid.clone(),
        mline_index: c.sdp_mline_index,
    };
    if let Some(mid) = c.sdp_mid.as_deref().filter(|m| !m.is_empty()) {
        let found = medias
            .iter()
            .any(|m| m.attribute("mid").flatten() == Some(mid));
        if !found {
            return Err(unknown());
        }
    } else if let Some(i) = c.sdp_mline_index
        && usize::from(i) >= medias.len()
    {
        return Err(unknown());
    }
    Ok(())
}
