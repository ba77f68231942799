//! [`Runtime`] for Tokio (feature `runtime-tokio`).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use quinn_udp::UdpSocketState;
use tokio::{io::Interest, runtime::Handle, time::Sleep};

use super::{
    AsyncTcpListener, AsyncTcpStream, AsyncTimer, AsyncUdpSocket, ConnectTcp, Runtime,
    bind_std_tcp_listener, udp,
};

/// The Tokio runtime: tasks, timers and sockets of one Tokio [`Handle`].
///
/// Needs Tokio's `net`, `time` and `rt` features (enabled by this crate's `runtime-tokio`
/// feature) and a runtime with time and I/O drivers enabled (`enable_all()`). Sockets use
/// segmentation offload (GSO) and receive coalescing (GRO) where the OS offers them, through
/// `quinn-udp`.
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    handle: Handle,
}

impl TokioRuntime {
    /// Uses the runtime the calling task runs on.
    ///
    /// # Panics
    ///
    /// Panics when called outside a Tokio runtime, like [`Handle::current`].
    pub fn current() -> Self {
        Self::new(Handle::current())
    }

    /// Uses the runtime the calling task runs on, or `None` outside a Tokio runtime.
    pub fn try_current() -> Option<Self> {
        Handle::try_current().ok().map(Self::new)
    }

    /// Uses the runtime behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }
}

impl Runtime for TokioRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        // Dropping a Tokio JoinHandle detaches the task.
        drop(self.handle.spawn(future));
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        let _guard = self.handle.enter();
        Box::pin(TokioTimer(Box::pin(tokio::time::sleep_until(
            deadline.into(),
        ))))
    }

    /// Tokio's clock: the same one its timers use, so that a runtime whose clock is paused
    /// (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) drives connections on
    /// virtual time instead of spinning on deadlines its timers consider far away.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&socket).into())?;
        let _guard = self.handle.enter();
        Ok(Arc::new(TokioUdpSocket {
            io: tokio::net::UdpSocket::from_std(socket)?,
            state,
        }))
    }

    fn connect_tcp(&self, addr: SocketAddr) -> ConnectTcp {
        // Connecting on the runtime itself registers the socket with its reactor, whichever
        // thread polls the returned future.
        let task = self.handle.spawn(tokio::net::TcpStream::connect(addr));
        Box::pin(async move {
            let stream = task.await.map_err(io::Error::other)??;
            stream.set_nodelay(true)?;
            Ok(Box::new(TokioTcpStream(stream)) as Box<dyn AsyncTcpStream>)
        })
    }

    fn bind_tcp_listener(&self, addr: SocketAddr) -> io::Result<Box<dyn AsyncTcpListener>> {
        let listener = bind_std_tcp_listener(addr)?;
        let _guard = self.handle.enter();
        Ok(Box::new(TokioTcpListener(
            tokio::net::TcpListener::from_std(listener)?,
        )))
    }
}

#[derive(Debug)]
struct TokioTcpListener(tokio::net::TcpListener);

impl AsyncTcpListener for TokioTcpListener {
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn AsyncTcpStream>, SocketAddr)>> {
        let (stream, peer) = ready!(self.0.poll_accept(cx))?;
        stream.set_nodelay(true)?;
        Poll::Ready(Ok((Box::new(TokioTcpStream(stream)), peer)))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[derive(Debug)]
struct TokioTcpStream(tokio::net::TcpStream);

impl AsyncTcpStream for TokioTcpStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read = tokio::io::ReadBuf::new(buf);
        ready!(tokio::io::AsyncRead::poll_read(
            Pin::new(&mut self.0),
            cx,
            &mut read
        ))?;
        Poll::Ready(Ok(read.filled().len()))
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}

#[derive(Debug)]
struct TokioTimer(Pin<Box<Sleep>>);

impl AsyncTimer for TokioTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.get_mut().0.as_mut().reset(deadline.into());
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().0.as_mut().poll(cx)
    }
}

#[derive(Debug)]
struct TokioUdpSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

impl AsyncUdpSocket for TokioUdpSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut read = tokio::io::ReadBuf::new(buf);
        let from = ready!(self.io.poll_recv_from(cx, &mut read))?;
        Poll::Ready(Ok((read.filled().len(), from)))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.io.poll_send_to(cx, buf, target)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn max_send_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn poll_send_segments(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        segment_size: usize,
        target: SocketAddr,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.io.poll_send_ready(cx))?;
            match self.io.try_io(Interest::WRITABLE, || {
                udp::send(&self.state, (&self.io).into(), buf, segment_size, target)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_recv_segments(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, usize, SocketAddr)>> {
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_io(Interest::READABLE, || {
                udp::recv(&self.state, (&self.io).into(), buf)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn recv_buffer_size(&self) -> usize {
        udp::recv_buffer_size(&self.state)
    }
}
