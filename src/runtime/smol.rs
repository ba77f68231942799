//! [`Runtime`] for smol (feature `runtime-smol`).

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

/// The smol runtime: tasks on smol's global executor, sockets and timers on `async-io`.
///
/// Works from any thread, inside or outside `smol::block_on`. Spawned drivers are detached
/// (a smol `Task` would cancel its future when dropped).
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        smol::spawn(future).detach();
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
