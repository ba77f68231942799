//! Sockets and timers on `async-io`, shared by the smol, async-std and embassy runtimes.

use std::{
    future::Future,
    io,
    net::{SocketAddr, UdpSocket},
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use async_io::{Async, Timer};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};

use super::{AsyncTimer, AsyncUdpSocket};

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
        let transmit = Transmit {
            destination: target,
            ecn: None,
            contents: buf,
            segment_size: (buf.len() > segment_size).then_some(segment_size),
            src_ip: None,
        };
        loop {
            // Errors other than WouldBlock are logged by quinn-udp and reported as sent.
            match self.1.send(self.0.get_ref().into(), &transmit) {
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
            let mut meta = [RecvMeta::default()];
            let mut bufs = [io::IoSliceMut::new(&mut *buf)];
            match self.1.recv(self.0.get_ref().into(), &mut bufs, &mut meta) {
                Ok(_) => {
                    let m = &meta[0];
                    return Poll::Ready(Ok((m.len, m.stride.max(1), m.addr)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Err(e) = std::task::ready!(self.0.poll_readable(cx)) {
                return Poll::Ready(Err(e));
            }
        }
    }

    fn recv_buffer_size(&self) -> usize {
        if self.1.gro_segments() > 1 {
            64 * 1024
        } else {
            2048
        }
    }
}
