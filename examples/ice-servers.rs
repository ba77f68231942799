//! Two peers meet through STUN and TURN servers: every candidate is trickled as it is
//! gathered, errors from the servers are printed, and the candidate pair ICE selects is shown
//! once the data channel is open.
//!
//! ```text
//! cargo run --example ice-servers -- [--stun stun:HOST:PORT] \
//!     [--turn turn:HOST:PORT?transport=udp USER PASSWORD] [--relay-only]
//! ```
//!
//! With `--relay-only` both peers gather relayed candidates only (`ice_transport_policy:
//! relay`), so the messages go through the TURN server even on one machine. For example,
//! against a local coturn started with `turnserver --lt-cred-mech --user=demo:secret
//! --realm=demo --listening-ip=127.0.0.1 --allow-loopback-peers`:
//!
//! ```text
//! cargo run --example ice-servers -- --turn turn:127.0.0.1:3478 demo secret --relay-only
//! ```

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{
    PeerConnection, PeerConnectionEvent,
    rtc::peer_connection::{
        configuration::{RTCConfigurationBuilder, RTCIceTransportPolicy},
        transport::{RTCIceCandidatePair, RTCIceServer},
    },
};

/// What the peers use.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The STUN and TURN servers.
    pub servers: Vec<RTCIceServer>,
    /// Gather relayed candidates only.
    pub relay_only: bool,
    /// The address each peer's UDP socket binds to.
    pub bind: Option<SocketAddr>,
}

const USAGE: &str = "\
Usage: ice-servers [--stun URL] [--turn URL USER PASSWORD] [--relay-only] [--bind IP:PORT]
";

#[allow(dead_code)] // run as a test through `run`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = env_logger::try_init();
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stun" => config.servers.push(RTCIceServer {
                urls: vec![args.next().ok_or(USAGE)?],
                ..Default::default()
            }),
            "--turn" => {
                let (url, user, password) = (args.next(), args.next(), args.next());
                let (Some(url), Some(username), Some(credential)) = (url, user, password) else {
                    return Err(USAGE.into());
                };
                config.servers.push(RTCIceServer {
                    urls: vec![url],
                    username,
                    credential,
                });
            }
            "--relay-only" => config.relay_only = true,
            "--bind" => config.bind = Some(args.next().ok_or(USAGE)?.parse()?),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}").into()),
        }
    }
    let pair = run(config).await?;
    println!("selected pair: {} -> {}", pair.local(), pair.remote());
    Ok(())
}

/// Connects two peers through `config`'s servers, sends a message each way, and returns the
/// candidate pair the first peer selected.
pub async fn run(config: Config) -> Result<RTCIceCandidatePair, Box<dyn std::error::Error>> {
    let policy = if config.relay_only {
        RTCIceTransportPolicy::Relay
    } else {
        RTCIceTransportPolicy::All
    };
    let peer = || async {
        let mut builder = PeerConnection::builder().configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(config.servers.clone())
                .with_ice_transport_policy(policy)
                .build(),
        );
        if let Some(bind) = config.bind {
            builder = builder.bind([bind]);
        }
        builder.build().await // a malformed server URL fails here, with a typed error
    };
    let (a, b) = (peer().await?, peer().await?);
    // Subscribed before anything is gathered: no candidate is missed.
    let (events_a, events_b) = (a.events(), b.events());
    let mut incoming = b.data_channels();
    let dc = a.create_data_channel("hello", Default::default()).await?;

    let offer = a.create_offer().await?;
    a.set_local_description(offer.clone()).await?;
    b.set_remote_description(offer).await?;
    let answer = b.create_answer().await?;
    b.set_local_description(answer.clone()).await?;
    a.set_remote_description(answer).await?;
    // Trickle ICE: each side hands its candidates to the other as they come.
    tokio::spawn(trickle("a", events_a, b.clone()));
    tokio::spawn(trickle("b", events_b, a.clone()));

    let within = |what: &'static str| move |_| format!("{what}: no answer within 30 s");
    let remote = tokio::time::timeout(Duration::from_secs(30), incoming.next())
        .await
        .map_err(within("the data channel"))?
        .ok_or("connection closed")?;
    tokio::time::timeout(Duration::from_secs(30), dc.opened())
        .await
        .map_err(within("opening"))??;
    let mut replies = dc.messages();
    dc.send(Bytes::from_static(b"ping")).await?;
    let ping = remote.messages().next().await.ok_or("no ping")?;
    remote.send(ping.data).await?;
    let pong = replies.next().await.ok_or("no pong")?;
    assert_eq!(&pong.data[..], b"ping");

    let pair = a
        .selected_candidate_pair()
        .await?
        .ok_or("no selected pair")?;
    a.close().await?;
    b.close().await?;
    Ok(pair)
}

/// Forwards `from`'s candidates to `to`, and prints what the servers said.
async fn trickle(
    name: &str,
    mut from: webrtc_streams::EventStream<PeerConnectionEvent>,
    to: PeerConnection,
) {
    while let Some(event) = from.next().await {
        match event {
            PeerConnectionEvent::IceCandidate(Some(c)) => {
                println!("{name}: {}", c.candidate);
                if to.add_ice_candidate(c).await.is_err() {
                    return;
                }
            }
            PeerConnectionEvent::IceCandidate(None) => println!("{name}: gathering complete"),
            PeerConnectionEvent::IceCandidateError(e) => println!("{name}: server error {e:?}"),
            _ => {}
        }
    }
}
