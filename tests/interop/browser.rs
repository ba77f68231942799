//! A Chromium session driven over WebDriver (Debian's `chromium` + `chromium-driver`), for
//! tests that open a page and call its functions.
//!
//! Used by `tests/interop_chromium.rs` (the interop page) and `tests/interop_examples.rs`
//! (the examples' pages, through [`Browser::eval`]). About a hundred lines of
//! HTTP/1.1 + JSON over a Tokio `TcpStream`: the four commands used do not justify a
//! WebDriver crate and its dependency tree.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{ProcessGroupGuard, TempDir, bounded, missing};

/// A Chromium session behind its own chromedriver. Dropping it kills chromedriver and the
/// browser (the whole process group) and removes the profile directory.
pub struct Browser {
    driver_addr: SocketAddr,
    session: String,
    // Field order matters: the processes die before their profile directory is removed.
    _driver: ProcessGroupGuard,
    profile: TempDir,
}

pub fn find_binary(env: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        if !super::is_executable(&p) {
            missing(&format!("{env}={} is not an executable file.", p.display()));
        }
        return p;
    }
    names
        .iter()
        .find_map(|n| super::which(n))
        .unwrap_or_else(|| {
            missing(&format!(
                "`{}` not found on PATH (or set {env}); the Chromium interop test needs it.",
                names[0]
            ))
        })
}

impl Browser {
    pub async fn start() -> Result<Self, String> {
        Self::start_with(false).await
    }

    /// Like [`start`](Self::start); with `mdns`, Chromium hides its host addresses behind
    /// `.local` names, as it does by default (without
    /// `--disable-features=WebRtcHideLocalIpsWithMdns`).
    pub async fn start_with(mdns: bool) -> Result<Self, String> {
        let chromium = find_binary("CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = find_binary("CHROMEDRIVER", &["chromedriver"]);
        let profile = TempDir::new("webrtc-streams-chromium");
        let log_path = profile.path().join("chromedriver.log");
        let user_data = profile.path().join("profile");

        // A free port: bind, note, release. If another process takes it in between,
        // chromedriver fails to start and we try again with a new one.
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let mut cmd = Command::new(&chromedriver);
            // Chromium's crash handler puts its database under $XDG_CONFIG_HOME/chromium:
            // keep it in our directory, which also marks the handler as ours (it leaves our
            // process group with setsid; the guard finds it by that path).
            cmd.env("XDG_CONFIG_HOME", profile.path().join("config"))
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log_path.display()));
            let mut driver = ProcessGroupGuard::spawn("chromedriver", cmd, Some(profile.path()))
                .map_err(|e| format!("cannot run {}: {e}", chromedriver.display()))?;
            let driver_addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_ready(driver_addr, &mut driver).await {
                Ok(()) => {}
                Err(e) => {
                    last_err = e;
                    continue;
                }
            }
            let mut args = vec![
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--allow-loopback-in-peer-connection",
                // A synthetic camera and microphone, granted without a prompt.
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
            if mdns {
                // With camera/microphone permission granted (the fake UI grants it) Chromium
                // shows its addresses: the page gets no such permission in this mode.
                args.retain(|a| !a.starts_with("--use-fake-"));
            } else {
                args.push("--disable-features=WebRtcHideLocalIpsWithMdns".into());
            }
            // INTEROP_HEADFUL=1 shows the window (needs a display); see the README.
            if std::env::var_os("INTEROP_HEADFUL").is_none_or(|v| v.is_empty() || v == "0") {
                args.insert(0, "--headless".into());
            }
            args.push(format!("--user-data-dir={}", user_data.display()));
            if let Ok(extra) = std::env::var("INTEROP_CHROMIUM_ARGS") {
                args.extend(extra.split_whitespace().map(String::from));
            }
            let caps = json!({
                "capabilities": {
                    "alwaysMatch": {
                        "browserName": "chrome",
                        "timeouts": { "script": 120_000, "pageLoad": 30_000 },
                        "goog:chromeOptions": {
                            "binary": chromium.to_string_lossy(),
                            "args": args,
                        },
                    }
                }
            });
            let v = webdriver(driver_addr, "POST", "/session", Some(&caps)).await?;
            let session = v["sessionId"]
                .as_str()
                .ok_or_else(|| format!("no session id in {v}"))?
                .to_owned();
            eprintln!(
                "chromium {} via chromedriver on {driver_addr}; DevTools on {}",
                v["capabilities"]["browserVersion"],
                v["capabilities"]["goog:chromeOptions"]["debuggerAddress"]
            );
            return Ok(Self {
                driver_addr,
                session,
                _driver: driver,
                profile,
            });
        }
        Err(format!("chromedriver did not start: {last_err}"))
    }

    pub async fn navigate(&self, url: &str) -> Result<(), String> {
        let path = format!("/session/{}/url", self.session);
        webdriver(
            self.driver_addr,
            "POST",
            &path,
            Some(&json!({ "url": url })),
        )
        .await?;
        Ok(())
    }

    /// Calls `T[name](...args)` in the page and returns what its promise resolves to.
    pub async fn call(&self, name: &str, args: Value) -> Result<Value, String> {
        const SCRIPT: &str = "
            const done = arguments[arguments.length - 1];
            const name = arguments[0], args = arguments[1];
            Promise.resolve()
              .then(() => T[name](...args))
              .then((v) => done({ ok: v === undefined ? null : v }),
                    (e) => done({ err: String(e && e.stack ? e.stack : e) }));";
        let path = format!("/session/{}/execute/async", self.session);
        let body = json!({ "script": SCRIPT, "args": [name, args] });
        let v = webdriver(self.driver_addr, "POST", &path, Some(&body)).await?;
        match (v.get("ok"), v.get("err")) {
            (Some(ok), _) => Ok(ok.clone()),
            (None, Some(err)) => Err(format!("browser: T.{name} failed: {err}")),
            _ => Err(format!("browser: T.{name}: unexpected result {v}")),
        }
    }

    /// Runs `script` in the page as the body of an async function with `args` as
    /// `arguments`, and returns what it returns (a promise is awaited). A throw or a rejection
    /// becomes an `Err` naming the script.
    pub async fn eval(&self, script: &str, args: Value) -> Result<Value, String> {
        const WRAPPER: &str = "
            const done = arguments[arguments.length - 1];
            const body = arguments[0], args = arguments[1];
            Promise.resolve()
              .then(() => new Function(\"return (async () => {\" + body + \"})()\").apply(null, args))
              .then((v) => done({ ok: v === undefined ? null : v }),
                    (e) => done({ err: String(e && e.stack ? e.stack : e) }));";
        let path = format!("/session/{}/execute/async", self.session);
        let body = json!({ "script": WRAPPER, "args": [script, args] });
        let v = webdriver(self.driver_addr, "POST", &path, Some(&body)).await?;
        match (v.get("ok"), v.get("err")) {
            (Some(ok), _) => Ok(ok.clone()),
            (None, Some(err)) => Err(format!("browser: {script:?} failed: {err}")),
            _ => Err(format!("browser: {script:?}: unexpected result {v}")),
        }
    }

    /// Ends the session (Chromium exits); the guard kills whatever is left.
    pub async fn quit(&self) {
        let path = format!("/session/{}", self.session);
        let _ = bounded(
            "deleting the session",
            Duration::from_secs(10),
            webdriver(self.driver_addr, "DELETE", &path, None),
        )
        .await;
    }

    pub fn driver_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.profile.path().join("chromedriver.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Waits until chromedriver answers `/status` with `ready: true`.
async fn wait_ready(addr: SocketAddr, driver: &mut ProcessGroupGuard) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = driver.try_wait() {
            return Err(format!("chromedriver exited: {status}"));
        }
        if let Ok(v) = webdriver(addr, "GET", "/status", None).await
            && v["ready"].as_bool() == Some(true)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("chromedriver not ready after 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One WebDriver command: HTTP/1.1 with a JSON body; returns the response's `value`.
async fn webdriver(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to chromedriver at {addr}: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    // chromedriver answers `Connection: close` but keeps the socket open: read by length.
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut read_more = async |response: &mut Vec<u8>| -> Result<bool, String> {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        response.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    };
    let head_end = loop {
        if let Some(pos) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if !read_more(&mut response).await? {
            return Err(format!(
                "{method} {path}: connection closed before the response"
            ));
        }
    };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: malformed status line"))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let content_length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let body_start = head_end + 4;
    let body = if chunked {
        loop {
            if let Some(body) = dechunk(&response[body_start..]) {
                break body;
            }
            if !read_more(&mut response).await? {
                return Err(format!("{method} {path}: truncated chunked body"));
            }
        }
    } else if let Some(len) = content_length {
        while response.len() < body_start + len {
            if !read_more(&mut response).await? {
                return Err(format!("{method} {path}: truncated body"));
            }
        }
        response[body_start..body_start + len].to_vec()
    } else {
        while read_more(&mut response).await? {}
        response[body_start..].to_vec()
    };
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{method} {path}: HTTP {status}, body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if status >= 400 {
        return Err(format!(
            "{method} {path}: HTTP {status}: {} {}",
            value["error"], value["message"]
        ));
    }
    Ok(value)
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
