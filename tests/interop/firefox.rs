//! Firefox (Debian's `firefox-esr`), headless, driven over its built-in WebDriver BiDi, inside
//! a network namespace of its own whose only link is `lo`.
//!
//! No geckodriver: Firefox started with `--remote-debugging-port` serves WebDriver BiDi on a
//! WebSocket (`ws://127.0.0.1:PORT/session`). The client here is a minimal WebSocket client
//! (RFC 6455: the upgrade, masked text frames out, fragmented/ping/close frames in) and the
//! four BiDi commands the tests use (`session.new`, `browsingContext.getTree`,
//! `browsingContext.navigate`, `script.callFunction`) — about as much code as a WebSocket crate's
//! glue would be, without its dependency tree.
//!
//! Each [`Firefox`] gets a fresh profile directory (also its `HOME`) with the prefs a
//! loopback-only machine needs (see `/work/shared/notes/interop-facts.md`, "Firefox"):
//! `media.peerconnection.ice.loopback` (else Firefox signals only a TCP `127.0.0.1:9`
//! candidate), `media.peerconnection.ice.obfuscate_host_addresses = false` (a plain 127.0.0.1
//! host candidate instead of an mDNS name) and fake camera/microphone without a prompt.
//!
//! [`LoopbackNetns`] is the namespace: `lo` up and a route `8.8.8.8/32 dev lo src 127.0.0.1`.
//! Without camera/microphone permission Firefox gathers only its "default" address, which it
//! finds by connecting a UDP socket towards 8.8.8.8; with no route it gathers nothing and ICE
//! fails. With the route the address is 127.0.0.1 and nothing can leave the namespace.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Mutex,
    task::JoinHandle,
};

use crate::{
    common::netns::command_in,
    interop::{ProcessGroupGuard, TempDir, bounded, browser::find_binary, missing},
};

/// The BiDi port inside the namespace (the namespace is ours alone: no collisions).
const BIDI_PORT: u16 = 9222;

/// Profile prefs (`user.js`).
const PREFS: &[(&str, &str)] = &[
    ("media.peerconnection.ice.loopback", "true"),
    ("media.peerconnection.ice.obfuscate_host_addresses", "false"),
    ("media.navigator.streams.fake", "true"),
    ("media.navigator.permission.disabled", "true"),
    // Quiet start-up: no first-run pages, no default-browser check, no update or telemetry
    // attempts (nothing could leave the namespace anyway).
    ("browser.shell.checkDefaultBrowser", "false"),
    ("browser.startup.homepage_override.mstone", "\"ignore\""),
    ("browser.aboutwelcome.enabled", "false"),
    ("datareporting.policy.dataSubmissionEnabled", "false"),
    ("toolkit.telemetry.reportingpolicy.firstRun", "false"),
    ("app.update.disabledForTesting", "true"),
];

// ---- the namespace ------------------------------------------------------------------------

static NEXT_NS: AtomicUsize = AtomicUsize::new(0);
/// Same prefix as `tests/common/netns.rs` (`wsn-<pid>-...`), so stale ones are recognisable.
const NS_PREFIX: &str = "wsn-";

/// A network namespace with only `lo` (up) and the 8.8.8.8 route Firefox needs. Dropping it
/// kills every process still inside (only ours: the name holds this process's PID) and
/// deletes it.
pub struct LoopbackNetns {
    pub name: String,
}

impl LoopbackNetns {
    /// Panics, saying what is needed, unless this process is root and `ip` exists.
    pub fn new() -> Self {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || crate::interop::which("ip").is_none() {
            panic!(
                "\n\nThe Firefox interop tests run Firefox and our peer in a network namespace \
                 with only `lo`: they must run as root (CI does, via .ci/run) with `ip` \
                 (iproute2) installed. Install with `{}` as root.\n\n",
                crate::interop::INSTALL_SCRIPT
            );
        }
        remove_stale();
        let n = NEXT_NS.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NS_PREFIX}{}-{n}-ff", std::process::id());
        ip(&["netns", "add", &name]).unwrap_or_else(|e| panic!("{e}"));
        let ns = Self { name };
        let setup = ip(&["-n", &ns.name, "link", "set", "lo", "up"]).and_then(|()| {
            ip(&[
                "-n",
                &ns.name,
                "route",
                "add",
                "8.8.8.8/32",
                "dev",
                "lo",
                "src",
                "127.0.0.1",
            ])
        });
        if let Err(e) = setup {
            panic!("setting up namespace {}: {e}", ns.name);
        }
        ns
    }
}

impl Drop for LoopbackNetns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

fn delete_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let Ok(pid) = pid.parse::<libc::pid_t>() else {
                continue;
            };
            if pid as u32 != std::process::id() {
                // SAFETY: plain syscall on a pid inside our own namespace (our children).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    if let Err(e) = ip(&["netns", "del", ns]) {
        eprintln!("warning: could not delete network namespace {ns}: {e}");
    }
}

/// Deletes namespaces of this naming scheme left by test processes that no longer exist.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if name.ends_with("-ff")
            && pid.parse::<u32>().is_ok()
            && !Path::new("/proc").join(pid).exists()
        {
            delete_namespace(&name);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `f` as a task on a multi-threaded Tokio runtime (2 workers) whose threads all live in
/// namespace `ns`: every socket any of its tasks creates — the page server, the BiDi
/// connection, our peer's UDP socket — belongs to that namespace. (New threads inherit the
/// namespace of the thread that creates them, and the runtime is built on a thread that joined
/// `ns`.) The workers get 8 MiB stacks: the test's futures are deep in debug builds.
pub fn run_in<F>(ns: &LoopbackNetns, f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    crate::common::netns::in_netns(&ns.name, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(8 << 20)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(rt.spawn(f))
    })
    .unwrap_or_else(|e| panic!("joining namespace {} (needs root): {e}", ns.name))
    .unwrap_or_else(|e| match e.try_into_panic() {
        Ok(p) => std::panic::resume_unwind(p),
        Err(e) => panic!("test task: {e}"),
    })
}

// ---- the page server ----------------------------------------------------------------------

/// Serves `page` to `GET /` on 127.0.0.1 (of the namespace of the calling runtime); stops on
/// drop.
pub struct PageServer {
    port: u16,
    task: JoinHandle<()>,
}

impl PageServer {
    pub async fn start(page: &'static str) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind page server: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (status, body) = if head.starts_with(b"GET / ") {
                        ("200 OK", page)
                    } else {
                        ("404 Not Found", "not found")
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self { port, task })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- Firefox --------------------------------------------------------------------------------

/// A headless Firefox with one tab, driven over WebDriver BiDi. Must be started (and used)
/// on a runtime inside the namespace [`run_in`] provides. Dropping it kills Firefox's whole
/// process group and removes its profile.
pub struct Firefox {
    bidi: Mutex<WebSocket>,
    next_id: std::sync::atomic::AtomicU64,
    context: String,
    log_path: PathBuf,
    // Field order matters: the processes die before their profile directory is removed.
    process: ProcessGroupGuard,
    profile: TempDir,
}

/// Debian's `firefox-esr` (or `$FIREFOX`); fails the test saying what to install if missing.
pub fn find_firefox() -> PathBuf {
    if std::env::var_os("FIREFOX").is_none()
        && crate::interop::which("firefox-esr").is_none()
        && crate::interop::which("firefox").is_none()
    {
        missing(
            "`firefox-esr` not found on PATH (or set FIREFOX); the Firefox interop tests need \
             Debian's `firefox-esr` package.",
        );
    }
    find_binary("FIREFOX", &["firefox-esr", "firefox"])
}

impl Firefox {
    /// Starts Firefox in namespace `netns` (the caller's runtime must be inside it too),
    /// connects over BiDi and opens a session.
    pub async fn start(netns: &str, limit: Duration) -> Result<Self, String> {
        let firefox = find_firefox();
        let profile = TempDir::new("webrtc-streams-firefox");
        let dir = profile.path().join("profile");
        let home = profile.path().join("home");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        let user_js: String = PREFS
            .iter()
            .map(|(k, v)| format!("user_pref(\"{k}\", {v});\n"))
            .collect();
        std::fs::write(dir.join("user.js"), user_js).map_err(|e| e.to_string())?;
        let log_path = profile.path().join("firefox.log");

        // `sh -c 'exec "$0" "$@" >LOG 2>&1' firefox ARGS...`: Firefox's output into a file
        // (ProcessGroupGuard gives the child /dev/null).
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("exec \"$0\" \"$@\" >'{}' 2>&1", log_path.display()))
            .arg(&firefox)
            .args(["--headless", "--no-remote"])
            .arg(format!("--remote-debugging-port={BIDI_PORT}"))
            .arg("--profile")
            .arg(&dir)
            .arg("about:blank")
            .env("HOME", &home)
            .env("TMPDIR", profile.path())
            .env("MOZ_CRASHREPORTER_DISABLE", "1");
        let cmd = command_in(Some(netns), cmd);
        let mut process = ProcessGroupGuard::spawn("firefox", cmd, Some(profile.path()))
            .map_err(|e| format!("starting {}: {e}", firefox.display()))?;

        // Wait for the BiDi port (the log says "WebDriver BiDi listening on ws://...").
        let started = Instant::now();
        let stream = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", BIDI_PORT)).await {
                break s;
            }
            if let Some(status) = process.try_wait() {
                return Err(format!(
                    "firefox exited ({status}) before serving BiDi; its log:\n{}",
                    tail(&log_path)
                ));
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "firefox did not serve BiDi on 127.0.0.1:{BIDI_PORT} within {limit:?}; \
                     its log:\n{}",
                    tail(&log_path)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ws = WebSocket::connect(stream, &format!("127.0.0.1:{BIDI_PORT}"), "/session").await?;
        let mut ff = Self {
            bidi: Mutex::new(ws),
            next_id: 1.into(),
            context: String::new(),
            log_path,
            process,
            profile,
        };
        ff.command("session.new", json!({ "capabilities": {} }))
            .await?;
        let tree = ff
            .command("browsingContext.getTree", json!({ "maxDepth": 0 }))
            .await?;
        ff.context = tree["contexts"][0]["context"]
            .as_str()
            .ok_or_else(|| format!("no browsing context in {tree}"))?
            .to_owned();
        eprintln!(
            "firefox ready after {:?} (pid group {})",
            started.elapsed(),
            ff.process.id()
        );
        Ok(ff)
    }

    /// Sends one BiDi command and returns its `result` (or the error it answered with).
    pub async fn command(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut ws = self.bidi.lock().await;
        ws.send_text(&json!({ "id": id, "method": method, "params": params }).to_string())
            .await?;
        loop {
            let text = ws.read_text().await?;
            let msg: Value =
                serde_json::from_str(&text).map_err(|e| format!("BiDi message {text:?}: {e}"))?;
            if msg["id"].as_u64() != Some(id) {
                continue; // an event, or an answer to a command abandoned by a timeout
            }
            return match msg["type"].as_str() {
                Some("success") => Ok(msg["result"].clone()),
                _ => Err(format!(
                    "BiDi {method}: {} {}",
                    msg["error"].as_str().unwrap_or("?"),
                    msg["message"].as_str().unwrap_or("")
                )),
            };
        }
    }

    /// Loads `url` in the tab and waits until it is complete.
    pub async fn navigate(&self, url: &str) -> Result<(), String> {
        self.command(
            "browsingContext.navigate",
            json!({ "context": self.context, "url": url, "wait": "complete" }),
        )
        .await
        .map(drop)
    }

    /// Calls the page's `T[name](...args)` and returns its (awaited) result, JSON in and out.
    pub async fn call(&self, name: &str, args: Value) -> Result<Value, String> {
        let result = self
            .command(
                "script.callFunction",
                json!({
                    "functionDeclaration":
                        "async (name, args) => JSON.stringify(await T[name](...JSON.parse(args)) ?? null)",
                    "awaitPromise": true,
                    "target": { "context": self.context },
                    "arguments": [
                        { "type": "string", "value": name },
                        { "type": "string", "value": args.to_string() },
                    ],
                }),
            )
            .await?;
        match result["type"].as_str() {
            Some("success") => {
                let text = result["result"]["value"]
                    .as_str()
                    .ok_or_else(|| format!("T.{name} returned {result}"))?;
                serde_json::from_str(text).map_err(|e| format!("T.{name} returned {text:?}: {e}"))
            }
            _ => Err(format!(
                "T.{name} threw: {}",
                result["exceptionDetails"]["text"]
                    .as_str()
                    .map_or_else(|| result.to_string(), str::to_owned)
            )),
        }
    }

    /// The last lines of Firefox's own output (stdout and stderr).
    pub fn log_tail(&self) -> String {
        tail(&self.log_path)
    }

    /// Prints the page's log and Firefox's output (before failing a test).
    pub async fn dump_logs(&self) {
        let log = bounded("reading the page log", Duration::from_secs(10), async {
            self.call("log", json!([])).await
        })
        .await;
        eprintln!("---- page log ----");
        match log {
            Ok(Ok(Value::Array(lines))) => {
                for l in lines {
                    eprintln!("{}", l.as_str().unwrap_or_default());
                }
            }
            other => eprintln!("(unavailable: {other:?})"),
        }
        eprintln!("---- firefox output (tail) ----\n{}", self.log_tail());
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

// ---- a minimal WebSocket client -----------------------------------------------------------

/// A client WebSocket over a `TcpStream` (RFC 6455), for text messages.
struct WebSocket {
    stream: TcpStream,
    buf: Vec<u8>,
    mask_seed: u32,
}

impl WebSocket {
    async fn connect(mut stream: TcpStream, host: &str, path: &str) -> Result<Self, String> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: d2VicnRjLXN0cmVhbXMtYmlkaQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("WebSocket upgrade: {e}"))?;
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 65536 {
                return Err("WebSocket upgrade: response head too long".into());
            }
            let mut chunk = [0u8; 4096];
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("WebSocket upgrade: {e}"))?;
            if n == 0 {
                return Err("WebSocket upgrade: connection closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("WebSocket upgrade refused: {head}"));
        }
        buf.drain(..end);
        let mask_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() | 1);
        Ok(Self {
            stream,
            buf,
            mask_seed,
        })
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        // xorshift32: masks need not be secret here, only present.
        self.mask_seed ^= self.mask_seed << 13;
        self.mask_seed ^= self.mask_seed >> 17;
        self.mask_seed ^= self.mask_seed << 5;
        let mask = self.mask_seed.to_be_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| format!("WebSocket send: {e}"))
    }

    async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.send_frame(0x1, text.as_bytes()).await
    }

    /// Ensures `n` bytes are buffered.
    async fn fill(&mut self, n: usize) -> Result<(), String> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 16384];
            let got = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("WebSocket read: {e}"))?;
            if got == 0 {
                return Err("WebSocket closed by firefox".into());
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    /// The next complete text (or binary) message; answers pings, fails on close.
    async fn read_text(&mut self) -> Result<String, String> {
        let mut message = Vec::new();
        loop {
            self.fill(2).await?;
            let (b0, b1) = (self.buf[0], self.buf[1]);
            let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x80 != 0);
            let (len, mut at) = match b1 & 0x7f {
                126 => {
                    self.fill(4).await?;
                    (
                        usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                        4,
                    )
                }
                127 => {
                    self.fill(10).await?;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[2..10]);
                    let len = u64::from_be_bytes(b);
                    if len > 64 << 20 {
                        return Err(format!("WebSocket frame of {len} bytes"));
                    }
                    (len as usize, 10)
                }
                n => (usize::from(n), 2),
            };
            let mask = if masked {
                self.fill(at + 4).await?;
                let m = [
                    self.buf[at],
                    self.buf[at + 1],
                    self.buf[at + 2],
                    self.buf[at + 3],
                ];
                at += 4;
                Some(m)
            } else {
                None
            };
            self.fill(at + len).await?;
            let mut payload: Vec<u8> = self.buf.drain(..at + len).skip(at).collect();
            if let Some(m) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            match opcode {
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message)
                            .map_err(|e| format!("WebSocket text not UTF-8: {e}"));
                    }
                }
                0x8 => {
                    return Err(format!(
                        "WebSocket closed by firefox: {}",
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                    ));
                }
                0x9 => self.send_frame(0xA, &payload).await?,
                _ => {} // pong or reserved: ignore
            }
        }
    }
}
