//! Network namespaces for tests: running code and child processes inside a named namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole life,
//! whichever thread uses it later. [`in_netns`] runs a closure on a fresh thread that first
//! joins the namespace (`setns(CLONE_NEWNET)` on `/var/run/netns/NAME`), so every socket the
//! closure creates lives in that namespace; the thread ends with the closure and the test
//! process itself never changes namespace.
#![allow(dead_code)]

use std::{
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
};

/// Where `ip netns add NAME` puts the namespace handle.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// Runs `f` on a new thread that has joined network namespace `name` (created with
/// `ip netns add`), and returns its result. Sockets created by `f` stay in that namespace.
pub fn in_netns<T, F>(name: &str, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = netns_path(name);
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
            // SAFETY: `setns` with a valid namespace fd affects only this (scoped) thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("setns into {} (needs root): {e}", path.display()),
                ));
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// `cmd` wrapped so that it runs inside namespace `netns` (`ip netns exec NETNS ...`), or
/// `cmd` itself when `netns` is `None`. `ip netns exec` execs the program, so the child's pid
/// is the program's.
pub fn command_in(netns: Option<&str>, cmd: Command) -> Command {
    let Some(ns) = netns else {
        return cmd;
    };
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

use std::{
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

/// The install script that provides `ip` and `nft`.
pub const INSTALL_SCRIPT: &str = ".ci/install-interop-deps";

/// How a home router translates and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Linux masquerade: port-preserving, one mapping per local address and port whatever the
    /// destination (endpoint-independent mapping; filtering by conntrack is address- and
    /// port-dependent, as in most home routers). STUN's reflexive address works for every peer.
    EndpointIndependent,
    /// `masquerade fully-random`: a new random port for every destination (symmetric NAT), so a
    /// STUN-reflexive address is useless to anyone but the STUN server; only a relay helps.
    Symmetric,
    /// No UDP leaves the home (TCP still does, masqueraded): TURN over TCP/TLS or ICE-TCP only.
    UdpBlocked,
    /// A 1:1 NAT, as in front of a cloud server: everything that reaches the router's public
    /// address goes to the host (same port), and the host's packets leave from it. Nothing
    /// is filtered.
    OneToOne,
}

/// The public network: `10.99.0.0/24` on a bridge in the public namespace.
pub const PUBLIC_PREFIX: u8 = 24;
/// The public namespace's address meant for servers (coturn).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The public namespace's second address, meant for public peers.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);

/// One home: a host namespace behind a router namespace doing NAT.
#[derive(Debug, Clone)]
pub struct Home {
    /// The namespace of the machine in the home (interface `eth0`, default route via router).
    pub host: String,
    /// The router's namespace (interfaces `lan` and `wan`).
    pub router: String,
    pub nat: Nat,
    /// The host's private address (`10.<n>.0.2`).
    pub host_ip: Ipv4Addr,
    /// The router's LAN address (`10.<n>.0.1`).
    pub lan_ip: Ipv4Addr,
    /// The router's public address on the public network: what the world sees.
    pub wan_ip: Ipv4Addr,
}

/// A simulated internet: a public namespace (servers and public peers) and two homes, each a
/// host behind its own NAT router. Namespace names contain the test process's PID; all of them
/// are deleted on drop (also while unwinding from a panic), together with any process still
/// running inside them (the test's own children: coturn and the like).
///
/// Addresses: public network `10.99.0.0/24` (public namespace [`SERVER_IP`] and [`PEER_IP`],
/// router A `10.99.0.2`, router B `10.99.0.3`); home A `10.1.0.0/24`, home B `10.2.0.0/24`
/// (router `.1`, host `.2`). No namespace has a route to the real machine, and the homes have
/// no route to each other's LAN: they meet only through their routers' public addresses.
pub struct Internet {
    /// The public namespace.
    pub public: String,
    pub a: Home,
    pub b: Home,
    created: Vec<String>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);
const NAME_PREFIX: &str = "wsn-";

impl Internet {
    /// Builds the namespaces, links, addresses, routes and NAT rules. Panics with what is
    /// needed when not root or when `ip`/`nft` are missing.
    pub fn new(nat_a: Nat, nat_b: Nat) -> Self {
        require_tools();
        remove_stale_namespaces();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = |role: &str| format!("{NAME_PREFIX}{}-{n}-{role}", std::process::id());
        let mut net = Self {
            public: name("pub"),
            a: home(&name("ha"), &name("ra"), nat_a, 1),
            b: home(&name("hb"), &name("rb"), nat_b, 2),
            created: Vec::new(),
        };
        net.build()
            .unwrap_or_else(|e| panic!("building the simulated internet: {e}"));
        net
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), String> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    fn build(&mut self) -> Result<(), String> {
        let p = self.public.clone();
        self.add_ns(&p)?;
        ip(&["-n", &p, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &p, "link", "set", "br0", "up"])?;
        for a in [SERVER_IP, PEER_IP] {
            ip(&[
                "-n",
                &p,
                "addr",
                "add",
                &format!("{a}/{PUBLIC_PREFIX}"),
                "dev",
                "br0",
            ])?;
        }
        // Like a host on the internet, the public side has a default route, out of an
        // interface where everything is dropped: datagrams to a home's private addresses are sent
        // and vanish on the way, as on the internet. Neither "network unreachable" (no route)
        // nor a `blackhole` route will do: sendto fails with ENETUNREACH or EINVAL, and coturn
        // closes the whole allocation whose relay socket saw such an error — with every
        // candidate type gathered, ICE checks from a relay to a peer's private host address
        // then kill the relay both peers need.
        // (A veth pair whose far end has no address: the default gateway behind it has a
        // permanent neighbour entry, so nothing waits for ARP, and frames arriving at the far
        // end are for nobody there and are dropped.)
        ip(&[
            "-n", &p, "link", "add", "sinka", "type", "veth", "peer", "name", "sinkb",
        ])?;
        for dev in ["sinka", "sinkb"] {
            ip(&["-n", &p, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &p, "addr", "add", "10.98.0.1/30", "dev", "sinka"])?;
        ip(&[
            "-n",
            &p,
            "neigh",
            "add",
            "10.98.0.2",
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "sinka",
            "nud",
            "permanent",
        ])?;
        ip(&[
            "-n",
            &p,
            "route",
            "add",
            "default",
            "via",
            "10.98.0.2",
            "dev",
            "sinka",
        ])?;
        for (home, port) in [(self.a.clone(), "to-a"), (self.b.clone(), "to-b")] {
            let (h, r) = (&home.host, &home.router);
            self.add_ns(r)?;
            self.add_ns(h)?;
            // Router WAN <-> public bridge.
            ip(&[
                "-n", r, "link", "add", "wan", "type", "veth", "peer", "name", port, "netns", &p,
            ])?;
            ip(&["-n", &p, "link", "set", port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                r,
                "addr",
                "add",
                &format!("{}/{PUBLIC_PREFIX}", home.wan_ip),
                "dev",
                "wan",
            ])?;
            ip(&["-n", r, "link", "set", "wan", "up"])?;
            // Router LAN <-> host.
            ip(&[
                "-n", r, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", h,
            ])?;
            ip(&[
                "-n",
                r,
                "addr",
                "add",
                &format!("{}/24", home.lan_ip),
                "dev",
                "lan",
            ])?;
            ip(&["-n", r, "link", "set", "lan", "up"])?;
            ip(&[
                "-n",
                h,
                "addr",
                "add",
                &format!("{}/24", home.host_ip),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", h, "link", "set", "eth0", "up"])?;
            ip(&[
                "-n",
                h,
                "route",
                "add",
                "default",
                "via",
                &home.lan_ip.to_string(),
            ])?;
            run(
                Command::new("ip").args([
                    "netns",
                    "exec",
                    r,
                    "sh",
                    "-c",
                    "echo 1 > /proc/sys/net/ipv4/ip_forward",
                ]),
                None,
            )?;
            run(
                Command::new("ip").args(["netns", "exec", r, "nft", "-f", "-"]),
                Some(&nat_ruleset(&home)),
            )?;
        }
        Ok(())
    }

    /// Runs `ip ARGS`: for changes a test makes to its own namespaces (`-n NS ...`).
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        ip(args)
    }

    /// Feeds `rules` to `nft -f -` inside namespace `ns` (one of this internet's).
    pub fn nft(&self, ns: &str, rules: &str) -> Result<(), String> {
        assert!(self.created.iter().any(|c| c == ns), "{ns} is not ours");
        run(
            Command::new("ip").args(["netns", "exec", ns, "nft", "-f", "-"]),
            Some(rules),
        )
    }

    /// Every namespace of this internet.
    pub fn namespaces(&self) -> Vec<String> {
        self.created.clone()
    }
}

fn home(host: &str, router: &str, nat: Nat, n: u8) -> Home {
    Home {
        host: host.into(),
        router: router.into(),
        nat,
        host_ip: Ipv4Addr::new(10, n, 0, 2),
        lan_ip: Ipv4Addr::new(10, n, 0, 1),
        wan_ip: Ipv4Addr::new(10, 99, 0, 1 + n),
    }
}

/// The router's nftables rules: masquerade out of `wan` (port-preserving or fully random),
/// optionally no UDP out, and nothing in from `wan` that is not part of a connection the home
/// started.
///
/// Unsolicited packets addressed to the router itself are dropped in `input`, before
/// conntrack confirms an entry for them. Otherwise the first hole-punching check that
/// arrives before the home's own check leaves a confirmed entry whose reply tuple is the
/// mapping the home is about to use; masquerade then picks another port for the home's
/// packets, and the endpoint-independent NAT behaves like a symmetric one.
fn nat_ruleset(home: &Home) -> String {
    let nat = home.nat;
    if nat == Nat::OneToOne {
        let (host, wan) = (home.host_ip, home.wan_ip);
        return format!(
            "table ip nat {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname \"wan\" dnat to {host}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"wan\" snat to {wan}
    }}
}}
"
        );
    }
    let masquerade = match nat {
        Nat::Symmetric => "masquerade fully-random",
        Nat::EndpointIndependent | Nat::UdpBlocked | Nat::OneToOne => "masquerade",
    };
    let udp = if nat == Nat::UdpBlocked {
        "iifname \"lan\" meta l4proto udp drop"
    } else {
        ""
    };
    format!(
        "table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"wan\" {masquerade}
    }}
}}
table ip filter {{
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname \"wan\" ct state new drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        {udp}
        iifname \"wan\" ct state established,related accept
        iifname \"wan\" drop
    }}
}}
"
    )
}

impl Drop for Internet {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            delete_namespace(ns);
        }
    }
}

/// Kills the processes still inside `ns` (started by this test process: the name holds its
/// PID) and deletes the namespace.
fn delete_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let Ok(pid) = pid.parse::<libc::pid_t>() else {
                continue;
            };
            if pid as u32 != std::process::id() {
                // SAFETY: plain syscall on a pid found inside our own namespace.
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

/// Deletes namespaces named by this module for test processes that no longer exist.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            delete_namespace(&name);
        }
    }
}

/// Panics, saying what is needed, unless this process is root and `ip` and `nft` exist.
pub fn require_tools() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = ["ip", "nft"]
        .into_iter()
        .filter(|t| super::coturn::which(t).is_none())
        .collect();
    if !root || !missing.is_empty() {
        panic!(
            "\n\nThe network-namespace tests build a simulated internet with `ip netns` and \
             nftables NAT: they must run as root (CI does, via .ci/run) with `ip` (iproute2) \
             and `nft` (nftables) installed.\nroot: {root}; missing: {missing:?}\nInstall with \
             `{INSTALL_SCRIPT}` as root.\n\n"
        );
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args), None)
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<(), String> {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("piped stdin");
        w.write_all(input.as_bytes())
            .map_err(|e| format!("{what}: writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Whether namespace `name` exists.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
        || Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(name))
            })
}

/// A Tokio runtime on a thread of its own inside a network namespace.
///
/// Everything its tasks create — the sockets `PeerConnectionBuilder::build` binds (it binds
/// them synchronously in its first poll, on the polling thread, and enumerates the interfaces
/// of that thread's namespace for an unspecified address), and any socket a connection's
/// driver opens later (its driver task runs here too) — lives in that namespace. Handles
/// returned from it (a `PeerConnection`) are used from any thread as usual.
///
/// Dropping it stops the runtime and its tasks (drop the connections first).
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub netns: String,
}

impl NsRuntime {
    /// Starts the thread, joins namespace `netns`, and runs a current-thread Tokio runtime
    /// there.
    pub fn start(netns: &str) -> Self {
        let path = netns_path(netns);
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("ns {netns}"))
            .spawn(move || {
                let joined = std::fs::File::open(&path)
                    .map_err(|e| format!("open {}: {e}", path.display()))
                    .and_then(|f| {
                        // SAFETY: affects only this thread.
                        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
                            Ok(())
                        } else {
                            Err(format!(
                                "setns {}: {}",
                                path.display(),
                                io::Error::last_os_error()
                            ))
                        }
                    });
                let rt = joined.and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("tokio runtime: {e}"))
                });
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .expect("spawn namespace thread");
        let handle = rx
            .recv()
            .expect("namespace thread ended")
            .unwrap_or_else(|e| panic!("runtime in namespace {netns}: {e}"));
        Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
            netns: netns.to_string(),
        }
    }

    /// Spawns `fut` on the namespace's runtime; the handle can be awaited from anywhere.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }

    /// Runs the future `make` returns on the namespace's thread (`make` runs there too) and
    /// returns its output.
    pub async fn run<F, M>(&self, make: M) -> F::Output
    where
        M: FnOnce() -> F + Send + 'static,
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(async move { make().await })
            .await
            .unwrap_or_else(|e| panic!("task in namespace {}: {e}", self.netns))
    }

    /// Builds the connection `make` describes inside the namespace: its sockets and its
    /// driver live there.
    pub async fn peer<M>(&self, make: M) -> webrtc_streams::PeerConnection
    where
        M: FnOnce() -> webrtc_streams::PeerConnectionBuilder + Send + 'static,
    {
        let netns = self.netns.clone();
        self.run(move || async move { make().build().await })
            .await
            .unwrap_or_else(|e| panic!("build a peer connection in {netns}: {e}"))
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP echo inside a namespace: answers every datagram with the text of the source address
/// it saw (`"ip:port"`), from the same socket. Stops on drop.
pub struct UdpEcho {
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start(netns: &str, addr: SocketAddr) -> Self {
        let sock = in_netns(netns, move || UdpSocket::bind(addr))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("UDP echo on {addr} in {netns}: {e}"));
        let addr = sock.local_addr().expect("local addr");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        received.fetch_add(1, Ordering::Relaxed);
                        let _ = sock.send_to(from.to_string().as_bytes(), from);
                    }
                }
            })
        };
        Self {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// How many datagrams arrived.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends one datagram from `sock` to an [`UdpEcho`] at `echo` and returns the source address
/// the echo saw, or `None` if no answer came within `timeout`.
pub fn mapped_by_echo(sock: &UdpSocket, echo: SocketAddr, timeout: Duration) -> Option<SocketAddr> {
    sock.send_to(b"who am i", echo).ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = [0u8; 128];
    loop {
        let (n, from) = sock.recv_from(&mut buf).ok()?;
        if from == echo {
            return std::str::from_utf8(&buf[..n]).ok()?.parse().ok();
        }
    }
}
