//! A real TURN/STUN server for tests: Debian's coturn (`turnserver`), started with a generated
//! configuration in a temporary directory, optionally inside a network namespace, and killed by
//! PID when the [`Coturn`] guard is dropped (also while unwinding from a panic).
//!
//! ```ignore
//! let turn = Coturn::start(CoturnConfig::default()).expect("coturn");
//! let servers = vec![turn.ice_server(&[turn.stun_url(), turn.turn_udp_url()])];
//! ```
#![allow(dead_code)]

use std::{
    fmt::Write as _,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    ops::RangeInclusive,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use webrtc_streams::rtc::{
    peer_connection::transport::RTCIceServer,
    stun::{
        attributes::{ATTR_NONCE, ATTR_REALM, ATTR_REQUESTED_TRANSPORT, AttrType},
        error_code::ErrorCodeAttribute,
        message::{
            BINDING_REQUEST, CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter,
            METHOD_ALLOCATE, METHOD_BINDING, Message, MessageType, TransactionId,
        },
        xoraddr::XorMappedAddress,
    },
};

use super::netns::{command_in, in_netns};

/// The install script that provides `turnserver`.
pub const INSTALL_SCRIPT: &str = ".ci/install-interop-deps";

/// How long the server may take to answer its first STUN request.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What to start. `Default`: on 127.0.0.1 in the test's own namespace, user `test`/`secret`,
/// realm `webrtc-streams.test`, no TLS, coturn's default relay ports.
#[derive(Debug, Clone)]
pub struct CoturnConfig {
    /// Address coturn listens on and relays from (`--listening-ip`, `--relay-ip`).
    pub listen_ip: IpAddr,
    /// UDP+TCP port; `None` picks a free one (retried on collision).
    pub port: Option<u16>,
    /// Also listen for `turns:` (TLS over TCP) with a certificate made at start.
    pub tls: bool,
    /// TLS port; `None` picks a free one.
    pub tls_port: Option<u16>,
    /// Network namespace (from `ip netns add`) to run coturn in; `None` = the test's own.
    pub netns: Option<String>,
    /// The static long-term credential user (`--user=name:password`).
    pub user: String,
    pub password: String,
    pub realm: String,
    /// Relay ports (`--min-port`/`--max-port`).
    pub relay_ports: RangeInclusive<u16>,
    /// Extra configuration lines (coturn config-file syntax, e.g. `"no-udp"`).
    pub extra: Vec<String>,
}

impl Default for CoturnConfig {
    fn default() -> Self {
        Self {
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            tls: false,
            tls_port: None,
            netns: None,
            user: "test".into(),
            password: "secret".into(),
            realm: "webrtc-streams.test".into(),
            relay_ports: 49152..=65535,
            extra: Vec::new(),
        }
    }
}

/// A running coturn. Killed (by PID) and its directory removed on drop.
pub struct Coturn {
    /// The configuration it was started with, ports filled in.
    pub config: CoturnConfig,
    /// `listen_ip:port`, for STUN and TURN over UDP and TCP.
    pub addr: SocketAddr,
    /// `listen_ip:tls_port` when TLS is on.
    pub tls_addr: Option<SocketAddr>,
    /// PEM of the CA that signed the server certificate (trust this in a `turns:` client).
    pub ca_pem: Option<PathBuf>,
    /// The server's log, for diagnostics.
    pub log: PathBuf,
    /// The generated configuration file.
    pub conf: PathBuf,
    child: Child,
    dir: PathBuf,
}

impl Coturn {
    /// Starts coturn and waits (bounded by [`READY_TIMEOUT`]) until it answers a STUN Binding
    /// request and accepts TCP connections. Ports it picks itself are retried on collision.
    pub fn start(config: CoturnConfig) -> Result<Self, String> {
        let Some(bin) = which("turnserver") else {
            return Err(format!(
                "`turnserver` (Debian package `coturn`) is not installed; run `{INSTALL_SCRIPT}` \
                 as root"
            ));
        };
        let mut last = String::new();
        for _attempt in 0..5 {
            let mut c = config.clone();
            let port = match c.port {
                Some(p) => p,
                None => free_port(&c).map_err(|e| format!("picking a port: {e}"))?,
            };
            c.port = Some(port);
            if c.tls && c.tls_port.is_none() {
                c.tls_port = Some(loop {
                    let p = free_port(&c).map_err(|e| format!("picking a TLS port: {e}"))?;
                    if p != port {
                        break p;
                    }
                });
            }
            match Self::try_start(&bin, c) {
                Ok(s) => return Ok(s),
                Err(e) => {
                    last = e;
                    if config.port.is_some() && (!config.tls || config.tls_port.is_some()) {
                        break; // the caller chose the ports; retrying changes nothing
                    }
                }
            }
        }
        Err(last)
    }

    fn try_start(bin: &Path, config: CoturnConfig) -> Result<Self, String> {
        let dir = temp_dir("coturn");
        let port = config.port.expect("port chosen");
        let log = dir.join("turn.log");
        let conf = dir.join("turnserver.conf");
        let mut text = String::new();
        let ip = config.listen_ip;
        let mut line = |s: String| {
            text.push_str(&s);
            text.push('\n');
        };
        line(format!("listening-ip={ip}"));
        line(format!("relay-ip={ip}"));
        line(format!("listening-port={port}"));
        line(format!("min-port={}", config.relay_ports.start()));
        line(format!("max-port={}", config.relay_ports.end()));
        line("lt-cred-mech".into());
        line("fingerprint".into());
        line(format!("user={}:{}", config.user, config.password));
        line(format!("realm={}", config.realm));
        line(format!("userdb={}", dir.join("turndb").display()));
        line(format!("pidfile={}", dir.join("turnserver.pid").display()));
        line(format!("log-file={}", log.display()));
        line("simple-log".into());
        line("no-stdout-log".into());
        line("verbose".into());
        line("no-cli".into());
        line("no-rfc5780".into());
        line("no-dtls".into());
        line("no-multicast-peers".into());
        if ip.is_loopback() {
            line("allow-loopback-peers".into());
        }
        let mut ca_pem = None;
        let mut tls_addr = None;
        if config.tls {
            let tls_port = config.tls_port.expect("tls port chosen");
            let (ca, cert, key) = make_certificates(&dir, ip)?;
            line(format!("tls-listening-port={tls_port}"));
            line(format!("cert={}", cert.display()));
            line(format!("pkey={}", key.display()));
            ca_pem = Some(ca);
            tls_addr = Some(SocketAddr::new(ip, tls_port));
        } else {
            line("no-tls".into());
        }
        for e in &config.extra {
            line(e.clone());
        }
        std::fs::write(&conf, &text).map_err(|e| format!("write {}: {e}", conf.display()))?;

        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&conf);
        let mut cmd = command_in(config.netns.as_deref(), cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?,
            ))
            .process_group(0);
        // SAFETY: `prctl` is async-signal-safe. If the test process dies without unwinding
        // (SIGKILL), the kernel kills coturn too (the signal fires when the spawning thread
        // exits, so keep the guard on the thread that made it, as tests do).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut me = Self {
            addr: SocketAddr::new(ip, port),
            tls_addr,
            ca_pem,
            log,
            conf,
            config,
            child,
            dir,
        };
        me.wait_ready()?;
        Ok(me)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let server = self.addr;
        let bind_ip = self.config.listen_ip;
        let sock = self
            .in_ns(move || UdpSocket::bind(SocketAddr::new(bind_ip, 0)))
            .and_then(|r| r)
            .map_err(|e| format!("probe socket: {e}"))?;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "coturn exited before it was ready ({status}); config {}:\n{}",
                    self.conf.display(),
                    self.diagnostics()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "coturn did not answer a STUN binding request on {server} within \
                     {READY_TIMEOUT:?}\n{}",
                    self.diagnostics()
                ));
            }
            if binding(&sock, server, Duration::from_millis(250)).is_ok() {
                break;
            }
        }
        let mut tcp = vec![self.addr];
        tcp.extend(self.tls_addr);
        for addr in tcp {
            loop {
                let ok = self
                    .in_ns(move || TcpStream::connect_timeout(&addr, Duration::from_secs(1)))
                    .is_ok_and(|r| r.is_ok());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "coturn does not accept TCP on {addr}\n{}",
                        self.diagnostics()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Runs `f` in coturn's network namespace (or right here without one).
    pub fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        match &self.config.netns {
            Some(ns) => in_netns(ns, f),
            None => Ok(f()),
        }
    }

    /// The process id of `turnserver`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` if coturn has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn host(&self) -> String {
        match self.config.listen_ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        }
    }

    /// `stun:IP:PORT`.
    pub fn stun_url(&self) -> String {
        format!("stun:{}:{}", self.host(), self.addr.port())
    }

    /// `turn:IP:PORT?transport=udp`.
    pub fn turn_udp_url(&self) -> String {
        format!("turn:{}:{}?transport=udp", self.host(), self.addr.port())
    }

    /// `turn:IP:PORT?transport=tcp`.
    pub fn turn_tcp_url(&self) -> String {
        format!("turn:{}:{}?transport=tcp", self.host(), self.addr.port())
    }

    /// `turns:IP:TLS_PORT?transport=tcp` (the certificate names the IP); `None` without TLS.
    pub fn turns_url(&self) -> Option<String> {
        let a = self.tls_addr?;
        Some(format!("turns:{}:{}?transport=tcp", self.host(), a.port()))
    }

    /// An ICE server entry for `urls` with this server's credentials.
    pub fn ice_server(&self, urls: &[String]) -> RTCIceServer {
        RTCIceServer {
            urls: urls.to_vec(),
            username: self.config.user.clone(),
            credential: self.config.password.clone(),
        }
    }

    /// The server log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log, stderr and configuration, for failure messages.
    pub fn diagnostics(&self) -> String {
        let stderr = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let conf = std::fs::read_to_string(&self.conf).unwrap_or_default();
        let log = self.log_text();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let mut s = String::new();
        let _ = write!(s, "--- turnserver.conf ---\n{conf}--- stderr ---\n{stderr}");
        let _ = writeln!(s, "--- last lines of turn.log ---");
        for l in tail.iter().rev() {
            let _ = writeln!(s, "{l}");
        }
        s
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall; the group is the child's own (process_group(0)).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("KEEP_COTURN_DIR").is_some() {
            eprintln!("coturn directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A port free for both UDP and TCP on the configured IP (in the configured namespace).
fn free_port(c: &CoturnConfig) -> io::Result<u16> {
    let ip = c.listen_ip;
    let pick = move || -> io::Result<u16> {
        for _ in 0..50 {
            let udp = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            let port = udp.local_addr()?.port();
            if TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
                return Ok(port);
            }
        }
        Err(io::Error::other("no port free for both UDP and TCP"))
    };
    match &c.netns {
        Some(ns) => in_netns(ns, pick)?,
        None => pick(),
    }
}

/// A CA and a server certificate (for `ip` and `turn.test`) signed by it, as PEM files in `dir`:
/// `(ca.pem, cert.pem, key.pem)`.
fn make_certificates(dir: &Path, ip: IpAddr) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let err = |e: rcgen::Error| format!("certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "webrtc-streams test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let mut params =
        CertificateParams::new(vec!["turn.test".to_string(), ip.to_string()]).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "turn.test");
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let write = |p: &Path, s: String| std::fs::write(p, s).map_err(|e| format!("{p:?}: {e}"));
    write(&paths.0, ca_cert.pem())?;
    write(&paths.1, cert.pem())?;
    write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

/// Sends one STUN request of type `typ` with the raw attributes `attrs` to `server` on `sock`
/// and returns the response with the same transaction id, waiting at most `timeout`.
pub fn request(
    sock: &UdpSocket,
    server: SocketAddr,
    typ: MessageType,
    attrs: &[(AttrType, &[u8])],
    timeout: Duration,
) -> io::Result<Message> {
    let mut m = Message::new();
    let tid = TransactionId::new();
    m.build(&[Box::new(tid), Box::new(typ)])
        .map_err(io::Error::other)?;
    for (t, v) in attrs {
        m.add(*t, v);
    }
    sock.send_to(&m.raw, server)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no STUN response"));
        }
        sock.set_read_timeout(Some(left))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut resp = Message::new();
        if from != server || resp.unmarshal_binary(&buf[..n]).is_err() {
            continue;
        }
        if resp.transaction_id == tid {
            return Ok(resp);
        }
    }
}

/// A STUN Binding request: the XOR-MAPPED-ADDRESS the server saw.
pub fn binding(sock: &UdpSocket, server: SocketAddr, timeout: Duration) -> io::Result<SocketAddr> {
    let resp = request(sock, server, BINDING_REQUEST, &[], timeout)?;
    if resp.typ != MessageType::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE) {
        return Err(io::Error::other(format!(
            "binding answered with {}",
            resp.typ
        )));
    }
    let mut xor = XorMappedAddress::default();
    xor.get_from(&resp).map_err(io::Error::other)?;
    Ok(SocketAddr::new(xor.ip, xor.port))
}

/// A STUN Binding request over TCP (STUN messages carry their own length, RFC 5389 section
/// 7.2.2): the XOR-MAPPED-ADDRESS the server saw for `stream`.
pub fn binding_tcp(stream: &mut TcpStream, timeout: Duration) -> io::Result<SocketAddr> {
    use std::io::{Read, Write};
    let mut m = Message::new();
    let tid = TransactionId::new();
    m.build(&[Box::new(tid), Box::new(BINDING_REQUEST)])
        .map_err(io::Error::other)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(&m.raw)?;
    let mut header = [0u8; 20];
    stream.read_exact(&mut header)?;
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut raw = header.to_vec();
    raw.resize(20 + len, 0);
    stream.read_exact(&mut raw[20..])?;
    let mut resp = Message::new();
    resp.unmarshal_binary(&raw).map_err(io::Error::other)?;
    if resp.transaction_id != tid
        || resp.typ != MessageType::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE)
    {
        return Err(io::Error::other(format!("unexpected answer {}", resp.typ)));
    }
    let mut xor = XorMappedAddress::default();
    xor.get_from(&resp).map_err(io::Error::other)?;
    Ok(SocketAddr::new(xor.ip, xor.port))
}

/// The answer to a TURN Allocate (REQUESTED-TRANSPORT UDP) without credentials:
/// `(error code, realm, has nonce)`.
pub fn unauthenticated_allocate(
    sock: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> io::Result<(u16, String, bool)> {
    let typ = MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST);
    // Protocol 17 (UDP) and three reserved bytes, RFC 8656 section 18.11.
    let resp = request(
        sock,
        server,
        typ,
        &[(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])],
        timeout,
    )?;
    if resp.typ != MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE) {
        return Err(io::Error::other(format!(
            "allocate answered with {}",
            resp.typ
        )));
    }
    let mut code = ErrorCodeAttribute::default();
    code.get_from(&resp).map_err(io::Error::other)?;
    let realm = resp
        .get(ATTR_REALM)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    Ok((code.code.0, realm, resp.contains(ATTR_NONCE)))
}

/// Finds `name` on `PATH` (and in the sbin directories, which a non-login root shell may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `<temp>/<prefix>-<pid>-<nanos>`, created; directories of the same prefix left by processes
/// that no longer exist are removed first.
pub fn temp_dir(prefix: &str) -> PathBuf {
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
                continue;
            };
            let pid = rest.trim_start_matches('-').split('-').next().unwrap_or("");
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
