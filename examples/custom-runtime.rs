//! A runtime of your own: the library needs only the `Runtime` trait, so any executor works.
//!
//! Peer A runs on a runtime written here on `async-executor` + `async-io` (the pieces smol is
//! made of); peer B runs on a runtime written here on Tokio. No built-in runtime is needed:
//!
//! ```text
//! cargo run --example custom-runtime --no-default-features
//! ```

use std::{
    future::Future,
    io,
    net::{SocketAddr, UdpSocket},
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use futures::StreamExt;
use webrtc_streams::{
    PeerConnection, Result,
    runtime::{AsyncTimer, AsyncUdpSocket, Runtime},
};

// ---- runtime 1: async-executor + async-io ---------------------------------------------------

/// A global `async-executor` driven by one background thread; sockets and timers on `async-io`.
#[derive(Debug)]
struct ExecutorRuntime {
    executor: &'static async_executor::Executor<'static>,
}

impl ExecutorRuntime {
    fn new() -> Self {
        static EXECUTOR: OnceLock<&'static async_executor::Executor<'static>> = OnceLock::new();
        let executor = *EXECUTOR.get_or_init(|| {
            let ex: &'static async_executor::Executor<'static> =
                Box::leak(Box::new(async_executor::Executor::new()));
            std::thread::spawn(move || {
                async_io::block_on(ex.run(futures::future::pending::<()>()))
            });
            ex
        });
        Self { executor }
    }
}

impl Runtime for ExecutorRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.executor.spawn(future).detach();
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        #[derive(Debug)]
        struct Timer(async_io::Timer);
        impl AsyncTimer for Timer {
            fn reset(self: Pin<&mut Self>, deadline: Instant) {
                self.get_mut().0.set_at(deadline);
            }
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
            }
        }
        Box::pin(Timer(async_io::Timer::at(deadline)))
    }

    fn wrap_udp_socket(&self, socket: UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        #[derive(Debug)]
        struct Socket(async_io::Async<UdpSocket>);
        impl AsyncUdpSocket for Socket {
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
        }
        Ok(Arc::new(Socket(async_io::Async::new(socket)?)))
    }
}

// ---- runtime 2: Tokio, written by hand ------------------------------------------------------

#[derive(Debug)]
struct MyTokio(tokio::runtime::Handle);

impl Runtime for MyTokio {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        drop(self.0.spawn(future));
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        #[derive(Debug)]
        struct Timer(Pin<Box<tokio::time::Sleep>>);
        impl AsyncTimer for Timer {
            fn reset(self: Pin<&mut Self>, deadline: Instant) {
                self.get_mut().0.as_mut().reset(deadline.into());
            }
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.get_mut().0.as_mut().poll(cx)
            }
        }
        let _enter = self.0.enter();
        Box::pin(Timer(Box::pin(tokio::time::sleep_until(deadline.into()))))
    }

    fn wrap_udp_socket(&self, socket: UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        #[derive(Debug)]
        struct Socket(tokio::net::UdpSocket);
        impl AsyncUdpSocket for Socket {
            fn poll_recv_from(
                &self,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<(usize, SocketAddr)>> {
                let mut read = tokio::io::ReadBuf::new(buf);
                let from = std::task::ready!(self.0.poll_recv_from(cx, &mut read))?;
                Poll::Ready(Ok((read.filled().len(), from)))
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
        let _enter = self.0.enter();
        Ok(Arc::new(Socket(tokio::net::UdpSocket::from_std(socket)?)))
    }
}

// ---- the two peers ---------------------------------------------------------------------------

/// Runs the demo; also called by the test suite.
pub fn main() -> Result<()> {
    let tokio_rt = tokio::runtime::Runtime::new()?;
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    async_io::block_on(async {
        let a = PeerConnection::builder()
            .runtime(Arc::new(ExecutorRuntime::new()))
            .bind([loopback])
            .build()
            .await?;
        let b = PeerConnection::builder()
            .runtime(Arc::new(MyTokio(tokio_rt.handle().clone())))
            .bind([loopback])
            .build()
            .await?;
        let mut incoming = b.data_channels();
        let dc = a.create_data_channel("hello", Default::default()).await?;

        let offer = a.create_offer().await?;
        a.set_local_description(offer).await?;
        a.gathering_complete().await.unwrap();
        b.set_remote_description(a.local_description().await.unwrap().expect("offer"))
            .await?;
        let answer = b.create_answer().await?;
        b.set_local_description(answer).await?;
        b.gathering_complete().await.unwrap();
        a.set_remote_description(b.local_description().await.unwrap().expect("answer"))
            .await?;

        let remote = incoming.next().await.expect("channel");
        let mut msgs = remote.messages();
        dc.send(Bytes::from_static(b"hello from async-executor"))
            .await?;
        let m = msgs.next().await.expect("message");
        println!(
            "tokio peer got {:?} on {:?}",
            String::from_utf8_lossy(&m.data),
            remote.label()
        );
        a.close().await?;
        b.close().await?;
        Ok(())
    })
}
