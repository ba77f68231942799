//! Axum + WebSocket signaling with trickle ICE: a data-channel chat between every connected
//! page, and the page's camera reflected back.
//!
//! ```text
//! cargo run --example axum-signaling -- --bind 127.0.0.1:8080
//! ```
//!
//! then open <http://127.0.0.1:8080/> in one or more tabs and press Start. `--ice-bind IP` is
//! the address the WebRTC sockets bind to (default 127.0.0.1); Chromium reaches a loopback
//! address only when started with `--allow-loopback-in-peer-connection`, so give your LAN
//! address to use a browser as it comes.
//!
//! # How it is built
//!
//! * `GET /` serves the page; `GET /ws` upgrades to a WebSocket, one per connection.
//! * The WebSocket becomes a `Stream` of signaling messages and a `Sink` of replies with two
//!   combinators (`filter_map` on the read half, `with` on the write half), and
//!   `common/signal.rs` runs the session: **one loop over one stream**, the page's messages
//!   `merge`d with the connection's events and its throttled statistics (`tokio-stream`).
//!   Candidates go to the page as the connection finds them and come from the page as the
//!   browser finds them; `null` ends them both ways.
//! * Chat: each page's `chat` channel is split into a `Sink` and a `Stream`; what the stream
//!   yields goes to a broadcast room, and the room's stream is `forward`ed into every sink.
//!   Chat messages are broadcast to everyone, the sender included.
//! * Media: each track the page sends comes back through `RtpSender::write_rtp`.
//!
//! `actix-signaling` runs the same session and page behind Actix Web.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::ExitCode,
};

use axum::{
    Router,
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    response::{Html, Response},
    routing::get,
};
use futures::{SinkExt, StreamExt, future};
use tokio::net::TcpListener;

#[path = "common/signal.rs"]
mod signal;

use signal::{Room, ServerMessage};

const USAGE: &str = "\
Usage: axum-signaling [--bind ADDR:PORT] [--ice-bind IP]

  --bind ADDR:PORT  HTTP address to serve the page on (default 127.0.0.1:8080; port 0 picks one)
  --ice-bind IP     IP the WebRTC UDP sockets bind to (default 127.0.0.1)
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
        println!("axum-signaling: open http://{addr}/");
    }
    match serve(listener, ice_ip).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every request handler gets.
#[derive(Clone)]
struct App {
    room: Room,
    ice_ip: IpAddr,
}

/// Serves the page and the signaling WebSocket on `listener` until it fails; WebRTC sockets
/// bind to `ice_ip`.
pub async fn serve(listener: TcpListener, ice_ip: IpAddr) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(|| async { Html(signal::PAGE) }))
        .route("/ws", get(websocket))
        .with_state(App {
            room: Room::new(),
            ice_ip,
        });
    axum::serve(listener, app).await
}

/// Upgrades to a WebSocket and runs the session on it.
async fn websocket(ws: WebSocketUpgrade, State(app): State<App>) -> Response {
    ws.max_message_size(signal::MAX_SIGNAL_MESSAGE)
        .on_upgrade(move |socket| run(socket, app))
}

/// The WebSocket as a stream of signaling messages and a sink of replies.
async fn run(socket: WebSocket, app: App) {
    let (to_page, from_page) = socket.split();
    // Text frames are messages; pings are answered by axum; a close frame or an error ends
    // the stream (`take_while`), which ends the session.
    let from_page = from_page
        .take_while(|frame| {
            future::ready(matches!(frame, Ok(m) if !matches!(m, Message::Close(_))))
        })
        .filter_map(|frame| {
            future::ready(match frame {
                Ok(Message::Text(text)) => Some(signal::parse(&text)),
                Ok(Message::Binary(_)) => Some(Err("binary frames are not signaling".to_owned())),
                _ => None,
            })
        });
    let to_page = to_page.with(|message: ServerMessage| {
        future::ready(Ok::<_, axum::Error>(Message::Text(
            signal::to_text(&message).into(),
        )))
    });
    signal::session(Box::pin(from_page), Box::pin(to_page), app.room, app.ice_ip).await;
}
