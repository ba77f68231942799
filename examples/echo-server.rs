//! A data-channel echo server with a tiny HTTP signaling endpoint and a browser client.
//!
//! Every message received on any data channel is sent straight back on the same channel, as
//! text if it arrived as text and as binary if it arrived as binary.
//!
//! Signaling is plain HTTP without trickle ICE:
//!
//! - `GET /` serves a self-contained HTML+JS page that connects, sends messages and runs a
//!   100-message self test.
//! - `POST /offer` takes `{"type":"offer","sdp":"..."}`, creates a new peer connection,
//!   answers, waits for ICE gathering to complete and replies with
//!   `{"type":"answer","sdp":"..."}`. Bad input gets a 400 with `{"error":"..."}`.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example echo-server -- --bind 127.0.0.1:8080 --ice-bind 127.0.0.1
//! ```
//!
//! and open <http://127.0.0.1:8080/> in a browser. `--ice-bind` is the IP the WebRTC UDP
//! sockets bind to (port 0); `0.0.0.0` binds one socket per non-loopback interface.
//!
//! Chromium hides local addresses behind mDNS names and refuses loopback candidates by
//! default, so on a loopback-only setup start it with
//! `--allow-loopback-in-peer-connection --disable-features=WebRtcHideLocalIpsWithMdns`.
//!
//! Set `RUST_LOG=debug` for the library's logs.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use webrtc_streams::{
    DataChannel, Error, EventStream, PeerConnection,
    rtc::peer_connection::{
        sdp::{RTCSdpType, RTCSessionDescription},
        state::RTCPeerConnectionState,
    },
};

/// Largest accepted request body.
const MAX_BODY: usize = 1024 * 1024;
/// Largest accepted request line plus headers.
const MAX_HEADERS: usize = 16 * 1024;
/// Time a client has to send its whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on ICE gathering for an answer (host candidates only: normally instant).
const GATHERING_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that has not connected by then is closed (a safety net: ICE itself gives up
/// after about 30 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "\
Usage: echo-server [--bind ADDR:PORT] [--ice-bind IP]

Options:
  --bind ADDR:PORT  HTTP listen address (default 127.0.0.1:8080)
  --ice-bind IP     IP to bind the WebRTC UDP sockets on, port 0 (default 127.0.0.1)
  -h, --help        Print this help
";

struct Options {
    bind: SocketAddr,
    ice_ip: IpAddr,
}

/// `Ok(None)` means `--help` was requested.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut opts = Options {
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
        ice_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--bind" => {
                let v = value("--bind")?;
                opts.bind = v
                    .parse()
                    .map_err(|e| format!("invalid --bind address {v:?}: {e}"))?;
            }
            "--ice-bind" => {
                let v = value("--ice-bind")?;
                opts.ice_ip = v
                    .parse()
                    .map_err(|e| format!("invalid --ice-bind IP {v:?}: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(opts))
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = env_logger::try_init();
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let listener = match TcpListener::bind(opts.bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", opts.bind);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(opts.bind);
    println!("echo-server listening on http://{addr}");

    let server = Arc::new(Server {
        ice_ip: opts.ice_ip,
        next_id: AtomicU64::new(1),
    });
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let server = server.clone();
                tokio::spawn(async move {
                    if let Err(e) = server.serve_http(stream).await {
                        eprintln!("http {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Server {
    ice_ip: IpAddr,
    next_id: AtomicU64,
}

/// A response ready to be written.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra_headers: &'static str,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            extra_headers: "",
        }
    }

    fn json(status: u16, value: serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, serde_json::json!({ "error": message.into() }))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\n{}Connection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            self.extra_headers,
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

/// A parsed request head.
struct RequestHead {
    method: String,
    path: String,
    content_length: usize,
    expect_continue: bool,
}

/// Parses the request line and headers (without the final blank line).
fn parse_head(head: &[u8]) -> Result<RequestHead, Response> {
    let head = std::str::from_utf8(head).map_err(|_| Response::error(400, "non-UTF-8 header"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::error(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(Response::error(400, "malformed request line"));
    }
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();

    let mut content_length = None;
    let mut expect_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Response::error(400, "malformed header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len: usize = value
                .parse()
                .map_err(|_| Response::error(400, "invalid Content-Length"))?;
            if content_length.is_some_and(|l| l != len) {
                return Err(Response::error(400, "conflicting Content-Length headers"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::error(
                501,
                "Transfer-Encoding is not supported; send Content-Length",
            ));
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    Ok(RequestHead {
        method: method.to_owned(),
        path,
        content_length: content_length.unwrap_or(0),
        expect_continue,
    })
}

/// Reads one request; `Err` holds the response to send instead.
async fn read_request(
    stream: &mut TcpStream,
) -> std::io::Result<Result<(RequestHead, Vec<u8>), Response>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if pos > MAX_HEADERS {
                return Ok(Err(Response::error(431, "request headers too large")));
            }
            break pos;
        }
        if buf.len() > MAX_HEADERS {
            return Ok(Err(Response::error(431, "request headers too large")));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = match parse_head(&buf[..head_end]) {
        Ok(head) => head,
        Err(resp) => return Ok(Err(resp)),
    };
    if head.content_length > MAX_BODY {
        return Ok(Err(Response::error(
            413,
            format!("body larger than {MAX_BODY} bytes"),
        )));
    }
    let mut body = buf.split_off(head_end + 4);
    if body.len() < head.content_length && head.expect_continue {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    while body.len() < head.content_length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    // Anything past Content-Length would be a pipelined request; we close after one.
    body.truncate(head.content_length);
    Ok(Ok((head, body)))
}

impl Server {
    async fn serve_http(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
            Ok(Ok(request)) => request,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => Err(Response::error(408, "request timed out")),
        };
        let response = match request {
            Ok((head, body)) => self.route(&head, &body).await,
            Err(resp) => resp,
        };
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await?;
        // Lingering close: if we answered before reading the whole request (413, 400, ...),
        // closing with unread data would reset the connection and could destroy the response
        // before the client reads it. Drain a bounded amount for a short while instead.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut sink = [0u8; 8192];
            let mut drained = 0usize;
            while drained < 4 * MAX_BODY {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        })
        .await;
        Ok(())
    }

    async fn route(&self, head: &RequestHead, body: &[u8]) -> Response {
        match (head.method.as_str(), head.path.as_str()) {
            ("GET", "/" | "/index.html") => {
                Response::new(200, "text/html; charset=utf-8", INDEX_HTML)
            }
            ("POST", "/offer") => match self.answer_offer(body).await {
                Ok(answer) => match serde_json::to_value(&answer) {
                    Ok(v) => Response::json(200, v),
                    Err(e) => Response::error(500, format!("cannot encode answer: {e}")),
                },
                Err(resp) => resp,
            },
            (_, "/") => Response {
                extra_headers: "Allow: GET\r\n",
                ..Response::error(405, "method not allowed")
            },
            (_, "/offer") => Response {
                extra_headers: "Allow: POST\r\n",
                ..Response::error(405, "method not allowed")
            },
            _ => Response::error(404, "not found"),
        }
    }

    /// Handles `POST /offer`: a new connection answering the offer in `body`.
    async fn answer_offer(&self, body: &[u8]) -> Result<RTCSessionDescription, Response> {
        let offer: RTCSessionDescription = serde_json::from_slice(body)
            .map_err(|e| Response::error(400, format!("invalid JSON session description: {e}")))?;
        if offer.sdp_type != RTCSdpType::Offer {
            return Err(Response::error(
                400,
                format!(
                    "expected \"type\":\"offer\", got {:?}",
                    offer.sdp_type.to_string()
                ),
            ));
        }
        // Parse the SDP up front so that garbage is rejected before any socket is bound.
        let offer = RTCSessionDescription::offer(offer.sdp)
            .map_err(|e| Response::error(400, format!("invalid SDP: {e}")))?;

        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pc = PeerConnection::builder()
            .bind([SocketAddr::new(self.ice_ip, 0)])
            .build()
            .await
            .map_err(|e| Response::error(500, format!("cannot create peer connection: {e}")))?;
        // Subscribe before the remote description is applied so that nothing is missed.
        let channels = pc.data_channels();
        let states = pc.connection_states();
        tokio::spawn(run_session(id, pc.clone(), channels, states));

        match negotiate(&pc, offer).await {
            Ok(answer) => {
                eprintln!("[pc {id}] answered, ICE on {:?}", pc.local_addrs());
                Ok(answer)
            }
            Err(resp) => {
                eprintln!(
                    "[pc {id}] offer rejected: {}",
                    String::from_utf8_lossy(&resp.body)
                );
                let _ = pc.close().await;
                Err(resp)
            }
        }
    }
}

/// Applies the offer and produces the complete answer (with all candidates).
async fn negotiate(
    pc: &PeerConnection,
    offer: RTCSessionDescription,
) -> Result<RTCSessionDescription, Response> {
    let client_error = |what: &str, e: Error| {
        let status = match e {
            Error::InvalidSessionDescription(_) | Error::InvalidOperation(_) => 400,
            _ => 500,
        };
        Response::error(status, format!("{what}: {e}"))
    };
    pc.set_remote_description(offer)
        .await
        .map_err(|e| client_error("cannot apply offer", e))?;
    let answer = pc
        .create_answer()
        .await
        .map_err(|e| client_error("cannot create answer", e))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| client_error("cannot apply answer", e))?;
    tokio::time::timeout(GATHERING_TIMEOUT, pc.gathering_complete())
        .await
        .map_err(|_| Response::error(500, "ICE gathering timed out"))?
        .map_err(|e| client_error("connection closed while gathering", e))?;
    pc.local_description()
        .await
        .map_err(|e| client_error("connection closed", e))?
        .ok_or_else(|| Response::error(500, "no local description"))
}

/// Keeps one connection alive, echoes on each of its channels, and closes it when it fails,
/// disconnects, closes, or never connects.
async fn run_session(
    id: u64,
    pc: PeerConnection,
    mut channels: EventStream<DataChannel>,
    mut states: EventStream<RTCPeerConnectionState>,
) {
    let connect_deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(connect_deadline);
    let mut connected = false;
    let mut channels_done = false;
    loop {
        tokio::select! {
            dc = channels.next(), if !channels_done => match dc {
                Some(dc) => {
                    tokio::spawn(echo(id, dc));
                }
                None => channels_done = true,
            },
            state = states.next() => match state {
                Some(state) => {
                    eprintln!("[pc {id}] connection state: {state}");
                    match state {
                        RTCPeerConnectionState::Connected => connected = true,
                        RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Disconnected
                        | RTCPeerConnectionState::Closed => break,
                        _ => {}
                    }
                }
                None => break,
            },
            () = &mut connect_deadline, if !connected => {
                eprintln!("[pc {id}] not connected after {CONNECT_TIMEOUT:?}, giving up");
                break;
            }
        }
    }
    if let Err(e) = pc.close().await {
        eprintln!("[pc {id}] close failed: {e}");
    }
    eprintln!("[pc {id}] closed");
}

/// Sends every message of `dc` back on it, until the channel ends or a send fails.
async fn echo(id: u64, dc: DataChannel) {
    let label = dc.label().to_owned();
    eprintln!("[pc {id}] data channel {label:?} opened by peer");
    let mut msgs = dc.messages();
    let mut count = 0u64;
    while let Some(m) = msgs.next().await {
        let sent = if m.is_string {
            dc.send_text(String::from_utf8_lossy(&m.data).into_owned())
                .await
        } else {
            dc.send(m.data).await
        };
        if let Err(e) = sent {
            eprintln!("[pc {id}] channel {label:?}: echo failed: {e}");
            break;
        }
        count += 1;
    }
    eprintln!("[pc {id}] data channel {label:?} done after {count} messages");
}

const INDEX_HTML: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>webrtc-streams echo</title>
<style>
  body { font-family: sans-serif; max-width: 50em; margin: 2em auto; padding: 0 1em; }
  #log { border: 1px solid #999; height: 24em; overflow-y: auto; padding: .5em;
         font-family: monospace; white-space: pre-wrap; background: #f8f8f8; }
  .sent { color: #036; } .echo { color: #060; } .err { color: #a00; } .info { color: #555; }
  input[type=text] { width: 60%; }
</style>
</head>
<body>
<h1>webrtc-streams echo</h1>
<p>
  <button id="connect">Connect</button>
  <span id="status">disconnected</span>
</p>
<p>
  <input type="text" id="message" placeholder="message" disabled>
  <button id="send" disabled>Send</button>
  <button id="selftest" disabled>Self-test (100 messages)</button>
</p>
<div id="log"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let pc = null;
let dc = null;
let test = null; // { expected: [...], received: [...], done: fn }

function log(text, cls) {
  const line = document.createElement("div");
  line.className = cls || "info";
  line.textContent = new Date().toLocaleTimeString() + "  " + text;
  $("log").appendChild(line);
  $("log").scrollTop = $("log").scrollHeight;
}

function setConnected(open) {
  $("message").disabled = !open;
  $("send").disabled = !open;
  $("selftest").disabled = !open;
}

function waitForGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => { log("ICE gathering timed out; sending what we have"); resolve(); }, 5000);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

function describe(data) {
  if (typeof data === "string") return JSON.stringify(data);
  return "<" + data.byteLength + " bytes binary>";
}

function sameData(a, b) {
  if (typeof a === "string" || typeof b === "string") return a === b;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

async function connect() {
  if (pc) { pc.close(); pc = null; dc = null; setConnected(false); }
  $("connect").disabled = true;
  try {
    pc = new RTCPeerConnection({ iceServers: [] });
    pc.onconnectionstatechange = () => {
      $("status").textContent = pc.connectionState;
      log("connection state: " + pc.connectionState);
    };
    dc = pc.createDataChannel("echo");
    dc.binaryType = "arraybuffer";
    dc.onopen = () => { log("data channel open"); setConnected(true); };
    dc.onclose = () => { log("data channel closed"); setConnected(false); };
    dc.onmessage = (ev) => {
      if (test) { test.received.push(ev.data); if (test.received.length === test.expected.length) test.done(); }
      else log("echo: " + describe(ev.data), "echo");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc);
    const resp = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type: pc.localDescription.type, sdp: pc.localDescription.sdp }),
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error("server said " + resp.status + ": " + (body.error || "?"));
    await pc.setRemoteDescription(body);
    log("answer applied, connecting...");
  } catch (e) {
    log("connect failed: " + e, "err");
  } finally {
    $("connect").disabled = false;
  }
}

function send() {
  const text = $("message").value;
  if (!dc || dc.readyState !== "open") return;
  dc.send(text);
  log("sent: " + describe(text), "sent");
  $("message").value = "";
}

function selfTest() {
  if (!dc || dc.readyState !== "open" || test) return;
  const expected = [];
  for (let i = 0; i < 100; i++) {
    if (i % 2 === 0) {
      expected.push("self-test #" + i + " " + Math.random().toString(36).slice(2) + " \u00e9\u4e2d\u{1F600}");
    } else {
      const bytes = new Uint8Array(1 + Math.floor(Math.random() * 2000));
      crypto.getRandomValues(bytes);
      expected.push(bytes.buffer);
    }
  }
  const started = performance.now();
  const finish = () => {
    if (!test) return;
    clearTimeout(test.timer);
    const got = test.received;
    let same = 0;
    for (let i = 0; i < expected.length; i++) if (i < got.length && sameData(expected[i], got[i])) same++;
    const ms = Math.round(performance.now() - started);
    log("self-test: " + same + "/" + expected.length + " came back identical (" + got.length +
        " received, " + ms + " ms)", same === expected.length ? "echo" : "err");
    test = null;
  };
  test = { expected, received: [], done: finish, timer: setTimeout(finish, 10000) };
  log("self-test: sending " + expected.length + " messages (50 text, 50 binary)", "sent");
  for (const m of expected) dc.send(m);
}

$("connect").onclick = connect;
$("send").onclick = send;
$("selftest").onclick = selfTest;
$("message").addEventListener("keydown", (ev) => { if (ev.key === "Enter") send(); });
</script>
</body>
</html>
"##;
