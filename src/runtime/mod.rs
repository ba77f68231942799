//! The runtime seam: everything the driver needs from an async executor.
//!
//! A connection's driver is one future. It needs four things from the world: a way to run that
//! future ([`Runtime::spawn`]), non-blocking UDP sockets ([`Runtime::wrap_udp_socket`]), one
//! resettable timer ([`Runtime::new_timer`]) and the current time ([`Runtime::now`]). A fifth,
//! outgoing TCP connections ([`Runtime::connect_tcp`]), is needed only to reach TURN servers
//! over TCP or TLS; its default reports [`io::ErrorKind::Unsupported`]. The driver
//! takes time *only* from [`Runtime::now`], so a runtime with a virtual clock drives the whole
//! protocol stack on virtual time.
//!
//! The traits are object-safe: a connection holds an `Arc<dyn Runtime>`, chosen per connection
//! on the builder. Built-in implementations live behind `runtime-<name>` features; any type of
//! yours that implements [`Runtime`] works the same way.
//!
//! # Example: a runtime of your own
//!
//! ```no_run
//! use std::{future::Future, io, net::SocketAddr, pin::Pin, sync::Arc, task::{Context, Poll}, time::Instant};
//! use webrtc_streams::runtime::{AsyncTimer, AsyncUdpSocket, Runtime};
//!
//! #[derive(Debug)]
//! struct MyRuntime;
//!
//! impl Runtime for MyRuntime {
//!     fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
//!         // hand the future to your executor
//! #       let _ = future;
//!     }
//!     fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
//!         // a timer that fires at `deadline` and can be reset
//! #       unimplemented!()
//!     }
//!     fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
//!         // register the (already non-blocking) socket with your reactor
//! #       unimplemented!()
//!     }
//! }
//! ```

use std::{
    fmt::Debug,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

#[cfg(feature = "runtime-tokio")]
mod tokio;
#[cfg(feature = "runtime-tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime-tokio")))]
pub use self::tokio::TokioRuntime;

#[cfg(any(
    feature = "runtime-smol",
    feature = "runtime-async-std",
    feature = "runtime-embassy"
))]
mod async_io;
#[cfg(any(
    feature = "runtime-tokio",
    feature = "runtime-smol",
    feature = "runtime-async-std",
    feature = "runtime-embassy"
))]
mod udp;

#[cfg(feature = "runtime-smol")]
mod smol;
#[cfg(feature = "runtime-smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime-smol")))]
pub use self::smol::SmolRuntime;

#[cfg(feature = "runtime-async-std")]
mod async_std;
#[cfg(feature = "runtime-async-std")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime-async-std")))]
pub use self::async_std::AsyncStdRuntime;

#[cfg(feature = "runtime-embassy")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime-embassy")))]
pub mod embassy;
#[cfg(feature = "runtime-embassy")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime-embassy")))]
pub use self::embassy::EmbassyRuntime;

#[cfg(feature = "runtime-sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime-sim")))]
pub mod sim;

/// An async executor, reactor and clock, as the connection driver sees them.
pub trait Runtime: Send + Sync + Debug + 'static {
    /// Runs `future` to completion in the background.
    ///
    /// The future must keep running when the value returned by the executor (if any) is dropped:
    /// detach it.
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>);

    /// Creates a timer that fires at `deadline`.
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>>;

    /// Registers a bound, non-blocking std UDP socket with the runtime's reactor.
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>>;

    /// Binds a UDP socket on `addr` (a concrete address, never a wildcard) for a connection.
    ///
    /// The default binds an OS socket with [`bind_std_udp`] and hands it to
    /// [`wrap_udp_socket`](Self::wrap_udp_socket). A simulated runtime overrides this to
    /// create sockets on its simulated network.
    fn bind_udp(&self, addr: SocketAddr) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        self.wrap_udp_socket(bind_std_udp(addr)?)
    }

    /// Whether this runtime's sockets are OS sockets, so that an unspecified bind address can
    /// expand to the machine's interface addresses. A simulated runtime returns `false`.
    fn uses_os_network(&self) -> bool {
        true
    }

    /// The current time. The driver reads time from here and nowhere else.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Opens a TCP connection to `addr` (used for `turn:…?transport=tcp` and `turns:` ICE
    /// servers).
    ///
    /// The future must be `Send` and may be dropped before it completes (the connection
    /// attempt is then abandoned). The default fails with [`io::ErrorKind::Unsupported`]: a
    /// runtime without TCP still runs every connection whose ICE servers use UDP, and reports
    /// TCP and TLS TURN servers as unreachable.
    fn connect_tcp(&self, addr: SocketAddr) -> ConnectTcp {
        let _ = addr;
        Box::pin(std::future::ready(Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this runtime has no TCP connections",
        ))))
    }

    /// Binds a listening TCP socket on `addr` (ICE-TCP passive candidates, see
    /// `PeerConnectionBuilder::ice_tcp`). The default fails with
    /// [`io::ErrorKind::Unsupported`], and the connection then gathers no passive TCP
    /// candidates.
    fn bind_tcp_listener(&self, addr: SocketAddr) -> io::Result<Box<dyn AsyncTcpListener>> {
        let _ = addr;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this runtime has no TCP listeners",
        ))
    }
}

/// Binds a non-blocking OS TCP listener on `addr` (address reuse as servers do on Unix; a
/// backlog of 64).
pub fn bind_std_tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // On Unix, SO_REUSEADDR only lets a listener rebind a port whose old connections linger in
    // TIME_WAIT. On Windows it would let this socket bind a port another socket is listening
    // on (and so hide `AddrInUse` from the port-range search), so it is left off there, as
    // the standard library and mio do.
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A listening TCP socket registered with a reactor (ICE-TCP passive candidates), from
/// [`Runtime::bind_tcp_listener`].
pub trait AsyncTcpListener: Send + Debug + 'static {
    /// Accepts a connection: the stream and the address of its remote end. `Pending`
    /// registers `cx`'s waker until one is waiting.
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn AsyncTcpStream>, SocketAddr)>>;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A TCP connection being opened by [`Runtime::connect_tcp`].
pub type ConnectTcp = Pin<Box<dyn Future<Output = io::Result<Box<dyn AsyncTcpStream>>> + Send>>;

/// A connected TCP stream registered with a reactor: a byte pipe in each direction.
///
/// The methods follow the usual poll contract: `Pending` registers `cx`'s waker, which is woken
/// when the operation may make progress.
pub trait AsyncTcpStream: Send + Debug + 'static {
    /// Reads into `buf`, returning how many bytes were read; `Ok(0)` means the peer closed
    /// its sending half (end of stream).
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Writes a prefix of `buf`, returning how many bytes were taken (at least one when `buf`
    /// is not empty).
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Shuts down the sending half (a TCP FIN) after what was written.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The local address of the connection.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The address of the remote end.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}

/// A timer that can be re-armed without being re-created.
pub trait AsyncTimer: Send + Debug + 'static {
    /// Re-arms the timer to fire at `deadline`.
    fn reset(self: Pin<&mut Self>, deadline: Instant);

    /// Completes once the deadline has passed; registers `cx`'s waker otherwise.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// A UDP socket registered with a reactor.
pub trait AsyncUdpSocket: Send + Sync + Debug + 'static {
    /// Receives one datagram into `buf`, returning its length and source address.
    ///
    /// Returns `Pending` (and registers `cx`'s waker) when nothing is ready.
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;

    /// Sends one datagram to `target`.
    ///
    /// Returns `Pending` (and registers `cx`'s waker) while the send buffer is full.
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>>;

    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// How many datagrams [`poll_send_segments`](Self::poll_send_segments) may carry in one
    /// call: more than 1 where the platform offers segmentation offload (GSO).
    fn max_send_segments(&self) -> usize {
        1
    }

    /// Sends `buf` to `target` as consecutive datagrams of `segment_size` bytes (the last may
    /// be shorter), in one operation where the platform allows it. `buf` holds at most
    /// [`max_send_segments`](Self::max_send_segments) segments.
    ///
    /// The default sends a single datagram and suits sockets whose `max_send_segments` is 1.
    fn poll_send_segments(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        segment_size: usize,
        target: SocketAddr,
    ) -> Poll<io::Result<()>> {
        debug_assert!(buf.len() <= segment_size);
        self.poll_send_to(cx, buf, target).map_ok(|_| ())
    }

    /// Receives into `buf` one datagram, or several of equal size coalesced by the platform
    /// (GRO). Returns the total length, the size of each datagram (`stride`; the last may be
    /// shorter) and the source.
    ///
    /// The default receives one datagram (`stride == len`).
    fn poll_recv_segments(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, usize, SocketAddr)>> {
        self.poll_recv_from(cx, buf)
            .map_ok(|(len, from)| (len, len, from))
    }

    /// The receive buffer [`poll_recv_segments`](Self::poll_recv_segments) needs: larger than
    /// one datagram where the platform coalesces received datagrams.
    fn recv_buffer_size(&self) -> usize {
        2048
    }
}

/// Socket buffer size asked of the kernel (which caps it at `net.core.rmem_max` /
/// `wmem_max`). The default of ~200 KiB overflows under a burst of SCTP packets, and every loss
/// costs a retransmission round.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Binds a non-blocking OS UDP socket on `addr`, with large kernel buffers (best effort) and,
/// for IPv6, `IPV6_V6ONLY`.
pub fn bind_std_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: a smaller buffer still works, only with more loss under load.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The runtime a connection uses when the builder is given none: the first enabled built-in
/// runtime that is usable from the calling context.
pub(crate) fn default_runtime() -> crate::error::Result<Arc<dyn Runtime>> {
    #[cfg(feature = "runtime-tokio")]
    {
        if let Some(rt) = TokioRuntime::try_current() {
            return Ok(Arc::new(rt));
        }
    }
    // smol and async-std work from any context: their executors and reactor are global.
    #[cfg(feature = "runtime-smol")]
    {
        return Ok(Arc::new(SmolRuntime));
    }
    #[cfg(all(feature = "runtime-async-std", not(feature = "runtime-smol")))]
    {
        return Ok(Arc::new(AsyncStdRuntime));
    }
    #[allow(unreachable_code)]
    Err(crate::error::Error::NoRuntime(
        "no runtime given to the builder and no built-in runtime is usable here \
         (enable `runtime-tokio` and call from inside a Tokio runtime, or pass one with `.runtime(..)`)",
    ))
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        io::{self, Read, Write},
        pin::Pin,
        sync::Arc,
        time::Instant,
    };

    use futures::future::poll_fn;

    #[cfg(feature = "runtime-async-std")]
    use super::AsyncStdRuntime;
    #[cfg(feature = "runtime-embassy")]
    use super::EmbassyRuntime;
    #[cfg(feature = "runtime-smol")]
    use super::SmolRuntime;
    #[cfg(feature = "runtime-tokio")]
    use super::TokioRuntime;
    use super::{AsyncTimer, AsyncUdpSocket, Runtime};

    /// Connects through `rt` to an echo server on loopback, writes 200 KB (more than one
    /// socket buffer takes at once), shuts the sending half down and reads everything back.
    #[allow(dead_code)]
    async fn echo_round_trip(rt: &dyn Runtime) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let server_addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut all = Vec::new();
            conn.read_to_end(&mut all).expect("read");
            conn.write_all(&all).expect("write");
        });
        let mut stream = rt.connect_tcp(server_addr).await.expect("connect");
        assert_eq!(stream.peer_addr().expect("peer"), server_addr);
        assert!(stream.local_addr().expect("local").ip().is_loopback());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < data.len() {
            let n = poll_fn(|cx| stream.poll_write(cx, &data[sent..]))
                .await
                .expect("write");
            assert!(n > 0);
            sent += n;
        }
        poll_fn(|cx| stream.poll_shutdown(cx))
            .await
            .expect("shutdown");
        let mut back = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = poll_fn(|cx| stream.poll_read(cx, &mut buf))
                .await
                .expect("read");
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        assert!(back == data, "{} bytes came back", back.len());
        server.join().expect("server thread");
    }

    #[cfg(feature = "runtime-tokio")]
    #[tokio::test]
    async fn tokio_tcp_round_trip() {
        echo_round_trip(&TokioRuntime::current()).await;
    }

    #[cfg(feature = "runtime-smol")]
    #[test]
    fn smol_tcp_round_trip() {
        ::smol::block_on(echo_round_trip(&SmolRuntime));
    }

    #[cfg(feature = "runtime-async-std")]
    #[test]
    fn async_std_tcp_round_trip() {
        ::async_std::task::block_on(echo_round_trip(&AsyncStdRuntime));
    }

    #[cfg(feature = "runtime-embassy")]
    #[test]
    fn embassy_tcp_round_trip() {
        let rt = EmbassyRuntime::start().expect("embassy");
        // The sockets are on async-io's reactor, which runs on its own thread.
        futures::executor::block_on(echo_round_trip(&rt));
    }

    #[cfg(feature = "runtime-tokio")]
    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = TokioRuntime::current()
            .connect_tcp(addr)
            .await
            .expect_err("nothing listens");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    /// A runtime that implements only the required methods.
    #[derive(Debug)]
    struct Minimal;

    impl Runtime for Minimal {
        fn spawn(&self, _: Pin<Box<dyn Future<Output = ()> + Send>>) {}
        fn new_timer(&self, _: Instant) -> Pin<Box<dyn AsyncTimer>> {
            unreachable!("not used by the test")
        }
        fn wrap_udp_socket(&self, _: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    #[test]
    fn tcp_is_unsupported_by_default() {
        let err = futures::executor::block_on(Minimal.connect_tcp("127.0.0.1:9".parse().unwrap()))
            .expect_err("no TCP");
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }
}
