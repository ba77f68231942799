//! Sockets and timers on `async-io`, shared by the smol, async-std and embassy runtimes.

use std::{
    future::Future,
    io,
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use async_io::{Async, Timer};
use quinn_udp::UdpSocketState;

use futures::io::{AsyncRead, AsyncWrite};

use super::{
    AsyncTcpListener, AsyncTcpStream, AsyncTimer, AsyncUdpSocket, ConnectTcp,
    bind_std_tcp_listener, udp,
};

/// A resettable `async-io` timer.
#[derive(Debug)]
pub(crate) struct AsyncIoTimer(Timer);

impl AsyncIoTimer {
    pub(crate) fn new(deadline: Instant) -> Self {
        Self(Timer::at(deadline))
    }
}

impl AsyncTimer for AsyncIoTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.get_mut().0.set_at(deadline);
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

/// A UDP socket registered with the `async-io` reactor; GSO/GRO through `quinn-udp` where
/// the OS offers them.
#[derive(Debug)]
pub(crate) struct AsyncIoUdpSocket(Async<UdpSocket>, UdpSocketState);

impl AsyncIoUdpSocket {
    pub(crate) fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Self(Async::new(socket)?, state))
    }
}

impl AsyncUdpSocket for AsyncIoUdpSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            match self.0.get_ref().recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
            // Readiness may be stale; retry until the reactor says not ready.
            if let Err(e) = std::task::ready!(self.0.poll_readable(cx)) {
                return Poll::Ready(Err(e));
            }
        }
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.0.get_ref().send_to(buf, target) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
            if let Err(e) = std::task::ready!(self.0.poll_writable(cx)) {
                return Poll::Ready(Err(e));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    fn max_send_segments(&self) -> usize {
        self.1.max_gso_segments()
    }

    fn poll_send_segments(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        segment_size: usize,
        target: SocketAddr,
    ) -> Poll<io::Result<()>> {
        loop {
            match udp::send(&self.1, self.0.get_ref().into(), buf, segment_size, target) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
            if let Err(e) = std::task::ready!(self.0.poll_writable(cx)) {
                return Poll::Ready(Err(e));
            }
        }
    }

    fn poll_recv_segments(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, usize, SocketAddr)>> {
        loop {
            match udp::recv(&self.1, self.0.get_ref().into(), buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
            if let Err(e) = std::task::ready!(self.0.poll_readable(cx)) {
                return Poll::Ready(Err(e));
            }
        }
    }

    fn recv_buffer_size(&self) -> usize {
        udp::recv_buffer_size(&self.1)
    }
}

/// Opens a TCP connection on the `async-io` reactor.
pub(crate) fn connect_tcp(addr: SocketAddr) -> ConnectTcp {
    Box::pin(async move {
        let stream = Async::<TcpStream>::connect(addr).await?;
        stream.get_ref().set_nodelay(true)?;
        Ok(Box::new(AsyncIoTcpStream(stream)) as Box<dyn AsyncTcpStream>)
    })
}

/// Binds a TCP listener on the `async-io` reactor.
pub(crate) fn bind_tcp_listener(addr: SocketAddr) -> io::Result<Box<dyn AsyncTcpListener>> {
    Ok(Box::new(AsyncIoTcpListener(Async::new(
        bind_std_tcp_listener(addr)?,
    )?)))
}

/// A TCP listener registered with the `async-io` reactor.
#[derive(Debug)]
struct AsyncIoTcpListener(Async<TcpListener>);

impl AsyncTcpListener for AsyncIoTcpListener {
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn AsyncTcpStream>, SocketAddr)>> {
        loop {
            match self.0.get_ref().accept() {
                Ok((stream, peer)) => {
                    stream.set_nodelay(true)?;
                    let stream = Async::new(stream)?;
                    return Poll::Ready(Ok((Box::new(AsyncIoTcpStream(stream)), peer)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    futures::ready!(self.0.poll_readable(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

/// A TCP stream registered with the `async-io` reactor.
#[derive(Debug)]
struct AsyncIoTcpStream(Async<TcpStream>);

impl AsyncTcpStream for AsyncIoTcpStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // `Async`'s `poll_close` only flushes (a no-op for TCP): shut down the socket itself.
        Poll::Ready(self.0.get_ref().shutdown(std::net::Shutdown::Write))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}
