//! [`Runtime`] for embassy (feature `runtime-embassy`). **Experimental.**
//!
//! What this is: `embassy-executor` on its `std` platform runs the connection drivers on one
//! dedicated thread, `embassy-time` (with its `std` driver) provides the timers, and UDP
//! sockets go through `async-io`'s reactor, because embassy has no socket API for a hosted OS.
//!
//! What it is not: a way onto a microcontroller. The `rtc` protocol core needs `std` (heap,
//! `std::time::Instant`, OS randomness, rustls), so this runtime exists for applications that
//! already run embassy on a host (for example, a simulator of a device) and want WebRTC on the
//! same executor.
//!
//! Limits: embassy tasks are statically allocated. Drivers (and other futures spawned through
//! this runtime) share a pool of [`TASK_POOL_SIZE`] slots; when it is full, further futures
//! run on a thread of their own (with a warning in the log) instead of failing.

use std::{
    future::Future,
    io,
    net::{SocketAddr, UdpSocket},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use embassy_executor::{Executor, SendSpawner};
use log::warn;

use super::{
    AsyncTcpListener, AsyncTimer, AsyncUdpSocket, ConnectTcp, Runtime,
    async_io::{self, AsyncIoUdpSocket},
};

/// How many futures may run on embassy executors at once (all [`EmbassyRuntime`]s together).
pub const TASK_POOL_SIZE: usize = 1024;

type BoxedFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Futures currently occupying a pool slot.
static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);

#[embassy_executor::task(pool_size = TASK_POOL_SIZE)]
async fn run_boxed(future: BoxedFuture) {
    future.await;
    LIVE_TASKS.fetch_sub(1, Ordering::AcqRel);
}

/// An embassy executor running on a dedicated thread.
#[derive(Clone)]
pub struct EmbassyRuntime {
    spawner: SendSpawner,
}

impl std::fmt::Debug for EmbassyRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbassyRuntime").finish_non_exhaustive()
    }
}

impl EmbassyRuntime {
    /// Starts an embassy executor on a new thread (named `embassy-executor`) and returns a
    /// runtime that spawns onto it. The thread runs for the rest of the process.
    ///
    /// # Errors
    ///
    /// An I/O error if the thread cannot be spawned.
    pub fn start() -> io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("embassy-executor".into())
            .spawn(move || {
                let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
                executor.run(move |spawner| {
                    let _ = tx.send(spawner.make_send());
                })
            })?;
        let spawner = rx
            .recv()
            .map_err(|_| io::Error::other("embassy executor thread did not start"))?;
        Ok(Self { spawner })
    }
}

impl Runtime for EmbassyRuntime {
    fn spawn(&self, future: BoxedFuture) {
        if LIVE_TASKS.fetch_add(1, Ordering::AcqRel) >= TASK_POOL_SIZE {
            LIVE_TASKS.fetch_sub(1, Ordering::AcqRel);
            warn!("embassy task pool full: running a future on a thread of its own");
            std::thread::spawn(move || futures::executor::block_on(future));
            return;
        }
        match run_boxed(future) {
            Ok(token) => self.spawner.spawn(token),
            // Unreachable while LIVE_TASKS counts the pool's slots; the future is lost.
            Err(e) => {
                LIVE_TASKS.fetch_sub(1, Ordering::AcqRel);
                log::error!("embassy task not spawned: {e:?}");
            }
        }
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(EmbassyTimer::new(deadline))
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

/// An `embassy-time` timer; re-armed by replacing it.
struct EmbassyTimer(embassy_time::Timer);

impl std::fmt::Debug for EmbassyTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbassyTimer")
    }
}

impl EmbassyTimer {
    fn new(deadline: Instant) -> Self {
        let from_now = deadline.saturating_duration_since(Instant::now());
        let micros = u64::try_from(from_now.as_micros()).unwrap_or(u64::MAX / 2);
        Self(embassy_time::Timer::after(
            embassy_time::Duration::from_micros(micros),
        ))
    }
}

impl AsyncTimer for EmbassyTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        *self.get_mut() = Self::new(deadline);
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}
