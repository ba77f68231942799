//! The `axum-signaling` page and protocol behind Actix Web: WebSocket signaling with trickle
//! ICE, a data-channel chat between every connected page, and the page's camera reflected
//! back.
//!
//! ```text
//! cargo run --example actix-signaling -- --bind 127.0.0.1:8080
//! ```
//!
//! then open <http://127.0.0.1:8080/> in one or more tabs. `--ice-bind IP` is the address the
//! WebRTC sockets bind to (default 127.0.0.1); `--workers N` sets Actix's worker count.
//!
//! Actix runs each worker on a current-thread Tokio runtime of its own (actix-rt), and a
//! request's tasks stay on its worker (`actix_web::rt::spawn` is `spawn_local`): a
//! connection's driver and its tasks run there, on the runtime they were created on. The
//! WebSocket (`actix-ws`) is not `Send`, which `common/signal.rs`'s session does not need.
//! The chat room (a `tokio::sync::broadcast` channel) is shared by every worker: pages on
//! different workers chat with each other.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::ExitCode,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::Server, web};
use actix_ws::Message;
use futures::{StreamExt, future};

#[path = "common/signal.rs"]
mod signal;

use signal::{Room, ServerMessage};

const USAGE: &str = "\
Usage: actix-signaling [--bind ADDR:PORT] [--ice-bind IP] [--workers N]

  --bind ADDR:PORT  HTTP address to serve the page on (default 127.0.0.1:8080; port 0 picks one)
  --ice-bind IP     IP the WebRTC UDP sockets bind to (default 127.0.0.1)
  --workers N       Actix worker threads (default: one per CPU)
";

#[actix_web::main]
async fn main() -> ExitCode {
    let _ = env_logger::try_init();
    let mut bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    let mut ice_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut workers = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--bind" => args.next().and_then(|v| v.parse().ok()).map(|v| bind = v),
            "--ice-bind" => args.next().and_then(|v| v.parse().ok()).map(|v| ice_ip = v),
            "--workers" => args
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .map(|n| workers = Some(n)),
            _ => None,
        };
        if parsed.is_none() {
            eprint!("invalid argument {arg:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let listener = match std::net::TcpListener::bind(bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!("actix-signaling: open http://{addr}/");
    }
    let served = match server(listener, ice_ip, workers) {
        Ok(server) => server.await,
        Err(e) => Err(e),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every worker's handlers get.
#[derive(Clone)]
struct State {
    room: Room,
    ice_ip: IpAddr,
}

/// The server for `listener`: the page at `/`, the signaling WebSocket at `/ws`; WebRTC
/// sockets bind to `ice_ip`. Run it by awaiting it inside an Actix system (`#[actix_web::main]`
/// or `actix_web::rt::System::new().block_on`); stop it with its [`handle`](Server::handle).
pub fn server(
    listener: std::net::TcpListener,
    ice_ip: IpAddr,
    workers: Option<usize>,
) -> io::Result<Server> {
    let state = State {
        room: Room::new(),
        ice_ip,
    };
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route(
                "/",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("text/html; charset=utf-8")
                        .body(signal::PAGE)
                }),
            )
            .route("/ws", web::get().to(websocket))
    });
    if let Some(n) = workers {
        server = server.workers(n);
    }
    Ok(server.listen(listener)?.run())
}

/// Upgrades to a WebSocket and runs the session on this worker.
async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
) -> actix_web::Result<HttpResponse> {
    let (response, session, frames) = actix_ws::handle(&req, body)?;
    let frames = frames.max_frame_size(signal::MAX_SIGNAL_MESSAGE);
    let pong = session.clone();
    // Text frames are messages; pings get their pong; a close frame or an error ends the
    // stream, which ends the session.
    let from_page = frames
        .take_while(|frame| {
            future::ready(matches!(frame, Ok(m) if !matches!(m, Message::Close(_))))
        })
        .filter_map(move |frame| {
            let mut pong = pong.clone();
            async move {
                match frame {
                    Ok(Message::Text(text)) => Some(signal::parse(&text)),
                    Ok(Message::Binary(_)) => {
                        Some(Err("binary frames are not signaling".to_owned()))
                    }
                    Ok(Message::Ping(bytes)) => {
                        let _ = pong.pong(&bytes).await;
                        None
                    }
                    _ => None,
                }
            }
        });
    // actix-ws sends with `async fn text`: `sink::unfold` makes that a `Sink`.
    let to_page =
        futures::sink::unfold(session, |mut session, message: ServerMessage| async move {
            session.text(signal::to_text(&message)).await?;
            Ok::<_, actix_ws::Closed>(session)
        });
    let State { room, ice_ip } = state.get_ref().clone();
    actix_web::rt::spawn(signal::session(
        Box::pin(from_page),
        Box::pin(to_page),
        room,
        ice_ip,
    ));
    Ok(response)
}
