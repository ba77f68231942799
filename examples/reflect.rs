//! Reflect: a browser sends its camera and microphone; the server sends every RTP packet
//! straight back on a track of its own, and the page shows both videos side by side.
//!
//! It is the smallest SFU: remote tracks are streams of RTP packets, and
//! [`RtpSender::write_rtp`] forwards them as they are (only SSRC and payload type are rewritten
//! to the negotiated ones). A picture loss indication is sent when a track starts, so the
//! browser sends a key frame, and every PLI or FIR the browser sends about the reflected video
//! is passed on to it, as an SFU passes a subscriber's key-frame requests to the publisher.
//!
//! Signaling is one HTTP request without trickle ICE: `GET /` serves the page
//! (`examples/reflect/index.html`), `POST /offer` takes the browser's complete offer as
//! `{"type":"offer","sdp":"..."}` and replies with the complete answer.
//!
//! ```text
//! cargo run --example reflect -- --bind 127.0.0.1:8080
//! ```
//!
//! then open <http://127.0.0.1:8080/>. `--ice-bind IP` is the address the WebRTC socket binds
//! to (default 127.0.0.1); Chromium reaches a loopback address only when started with
//! `--allow-loopback-in-peer-connection`.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::ExitCode,
};

use futures::StreamExt;
use tokio::net::TcpListener;
use webrtc_streams::{
    media::{LocalTrack, RtpCodecKind, RtpSender},
    rtc::peer_connection::sdp::RTCSessionDescription,
};

/// The page, served at `/`.
const PAGE: &str = include_str!("reflect/index.html");
#[path = "common/http.rs"]
mod http;
#[path = "common/reflecting.rs"]
mod reflecting;

use reflecting::{codec, reflect, sent_kinds};
#[path = "common/session.rs"]
mod session;

const USAGE: &str = "\
Usage: reflect [--bind ADDR:PORT] [--ice-bind IP]

  --bind ADDR:PORT  HTTP address to serve the page on (default 127.0.0.1:8080; port 0 picks one)
  --ice-bind IP     IP the WebRTC UDP socket binds to (default 127.0.0.1)
";

#[tokio::main]
async fn main() -> ExitCode {
    let _ = env_logger::try_init();
    let mut bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    let mut ice_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--bind" => args.next().and_then(|v| v.parse().ok()).map(|v| bind = v),
            "--ice-bind" => args.next().and_then(|v| v.parse().ok()).map(|v| ice_ip = v),
            _ => None,
        };
        if parsed.is_none() {
            eprint!("invalid argument {arg:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let listener = match TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!("reflect: open http://{addr}/");
    }
    serve(listener, ice_ip).await;
    ExitCode::SUCCESS
}

/// Serves the page and answers offers on `listener`, forever; the WebRTC sockets bind to
/// `ice_ip`.
pub async fn serve(listener: TcpListener, ice_ip: IpAddr) {
    http::serve(listener, move |request| async move {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => http::Response::html(PAGE),
            ("POST", "/offer") => match answer(&request.body, ice_ip).await {
                Ok(answer) => http::Response::json(serde_json::to_value(answer)),
                Err(e) => http::Response::error(400, &e),
            },
            _ => http::Response::error(404, "not found"),
        }
    })
    .await;
}

/// A new connection for the offer in `body`: one sending track for each kind the browser
/// sends, then the complete answer. The connection runs on its own tasks.
async fn answer(body: &[u8], ice_ip: IpAddr) -> Result<RTCSessionDescription, String> {
    let mut tracks = None;
    let (pc, mut senders, answer) = session::answer(body, ice_ip, async |pc, offer| {
        // Subscribed before the answer is set: no track is missed.
        tracks = Some(pc.tracks());
        // Added after the offer, each track takes the browser's transceiver of its kind,
        // which becomes send-and-receive.
        let mut senders: HashMap<RtpCodecKind, Vec<RtpSender>> = HashMap::new();
        for (i, kind) in sent_kinds(&offer.sdp).into_iter().enumerate() {
            let track = LocalTrack::new(kind, format!("reflect-{i}"), "reflect", codec(kind));
            senders
                .entry(kind)
                .or_default()
                .push(pc.add_track(track).await?);
        }
        Ok(senders)
    })
    .await?;
    if let Some(mut tracks) = tracks {
        // Ends when the connection closes.
        tokio::spawn(async move {
            while let Some(track) = tracks.next().await {
                match senders.get_mut(&track.kind()).and_then(Vec::pop) {
                    Some(sender) => {
                        tokio::spawn(reflect(track, sender));
                    }
                    None => eprintln!("no sender left for {track:?}"),
                }
            }
        });
    }
    tokio::spawn(async move {
        session::watch(pc).await;
        eprintln!("connection closed");
    });
    Ok(answer)
}
