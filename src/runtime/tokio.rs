//! [`Runtime`] for Tokio (feature `runtime-tokio`).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use tokio::{io::ReadBuf, runtime::Handle, time::Sleep};

use super::{AsyncTimer, AsyncUdpSocket, Runtime};

/// The Tokio runtime: tasks, timers and sockets of one Tokio [`Handle`].
///
/// Needs Tokio's `net`, `time` and `rt` features (enabled by this crate's `runtime-tokio`
/// feature) and a runtime with time and I/O drivers enabled (`enable_all()`).
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

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        socket.set_nonblocking(true)?;
        let _guard = self.handle.enter();
        Ok(Arc::new(TokioUdpSocket(tokio::net::UdpSocket::from_std(
            socket,
        )?)))
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
struct TokioUdpSocket(tokio::net::UdpSocket);

impl AsyncUdpSocket for TokioUdpSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut read = ReadBuf::new(buf);
        match self.0.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(from)) => Poll::Ready(Ok((read.filled().len(), from))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.0.poll_send_to(cx, buf, target)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
