//! What the browser-page examples share: taking an offer, answering it, and keeping the
//! connection until it ends.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use futures::StreamExt;
use webrtc_streams::{
    PeerConnection,
    rtc::peer_connection::{
        sdp::{RTCSdpType, RTCSessionDescription},
        state::RTCPeerConnectionState,
    },
};

/// A connection that is not up by then is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A new connection (default codecs, one UDP socket on `ice_ip`) for the offer in `body`, the
/// browser's `{"type":"offer","sdp":"..."}`. `setup` runs with the offer after it is applied
/// and before the answer is made (add tracks there); then the complete answer is returned with the
/// connection and what `setup` returned. On any error the connection is closed.
pub async fn answer<T>(
    body: &[u8],
    ice_ip: IpAddr,
    setup: impl AsyncFnOnce(&PeerConnection, &RTCSessionDescription) -> webrtc_streams::Result<T>,
) -> Result<(PeerConnection, T, RTCSessionDescription), String> {
    let offer: RTCSessionDescription =
        serde_json::from_slice(body).map_err(|e| format!("not a session description: {e}"))?;
    if offer.sdp_type != RTCSdpType::Offer {
        return Err(format!("expected an offer, got {}", offer.sdp_type));
    }
    let offer = RTCSessionDescription::offer(offer.sdp).map_err(|e| e.to_string())?;
    let pc = PeerConnection::builder()
        .bind([SocketAddr::new(ice_ip, 0)])
        .default_codecs()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let negotiated = async {
        pc.set_remote_description(offer.clone()).await?;
        let made = setup(&pc, &offer).await?;
        pc.set_local_description(pc.create_answer().await?).await?;
        Ok::<_, webrtc_streams::Error>(made)
    };
    let made = match negotiated.await {
        Ok(made) => made,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e.to_string());
        }
    };
    // Host candidates only: gathering is immediate.
    let _ = tokio::time::timeout(Duration::from_secs(5), pc.gathering_complete()).await;
    match pc.local_description().await {
        Ok(Some(answer)) => Ok((pc, made, answer)),
        Ok(None) => {
            let _ = pc.close().await;
            Err("no local description".to_owned())
        }
        Err(e) => {
            let _ = pc.close().await;
            Err(e.to_string())
        }
    }
}

/// Closes the connection when it fails, disconnects or does not connect in time.
pub async fn watch(pc: PeerConnection) {
    let mut states = pc.connection_states();
    let deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(deadline);
    let mut connected = false;
    loop {
        tokio::select! {
            state = states.next() => match state {
                Some(RTCPeerConnectionState::Connected) => connected = true,
                Some(
                    RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Closed,
                )
                | None => break,
                Some(_) => {}
            },
            () = &mut deadline, if !connected => break,
        }
    }
    let _ = pc.close().await;
}
