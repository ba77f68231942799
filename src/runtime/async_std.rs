//! [`Runtime`] for async-std (feature `runtime-async-std`).
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); its successor is smol
//! (`runtime-smol`). This runtime is kept thin: tasks go to async-std's executor, sockets and
//! timers to `async-io`, the reactor async-std 1.13 itself runs on.

use std::{
    future::Future,
    io,
    net::{SocketAddr, UdpSocket},
    pin::Pin,
    sync::Arc,
    time::Instant,
};

use super::{
    AsyncTcpListener, AsyncTimer, AsyncUdpSocket, ConnectTcp, Runtime,
    async_io::{self, AsyncIoTimer, AsyncIoUdpSocket},
};

/// The async-std runtime. Prefer [`SmolRuntime`](super::SmolRuntime) for new code: async-std
/// is no longer maintained.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdRuntime;

impl Runtime for AsyncStdRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        // Dropping an async-std JoinHandle detaches the task.
        drop(async_std::task::spawn(future));
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(AsyncIoTimer::new(deadline))
    }

    fn wrap_udp_socket(&self, socket: UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(AsyncIoUdpSocket::new(socket)?))
    }

    fn connect_tcp(&self, addr: SocketAddr) -> ConnectTcp {
        async_io::connect_tcp(addr)
    }

    fn bind_tcp_listener(&self, addr: SocketAddr) -> io::Result<Box<dyn AsyncTcpListener>> {
        async_io::bind_tcp_listener(addr)
    }
}
