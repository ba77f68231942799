//! The byte stream to a TURN server reached over TCP (`turn:…?transport=tcp`) or TLS
//! (`turns:`): the client's STUN and ChannelData messages written back to back, and the
//! server's split apart again (RFC 8656 §12.5, [`TurnStreamDecoder`]).
//!
//! A [`Link`] is polled by the driver like its sockets. It connects on first poll (through
//! [`Runtime::connect_tcp`]), runs the TLS handshake with rustls when the server is `turns:`,
//! and queues what the TURN client writes until the connection can take it. Any failure —
//! refused connection, certificate error, the server closing, bytes that are not TURN — ends
//! the link for good with a text saying what happened; the job that owns it turns that into an
//! error event or a log line.

use std::{
    io::{self, Read, Write},
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

use rtc::shared::turn_framing::TurnStreamDecoder;
use rustls::{ClientConnection, pki_types::ServerName};

use crate::runtime::{AsyncTcpStream, ConnectTcp, Runtime};

/// Bytes queued for the server beyond which further messages are dropped (like UDP loss: the
/// TURN client and ICE retransmit what matters).
const MAX_QUEUED: usize = 1024 * 1024;
/// Reads per poll, to bound the work of one wake-up.
const READS_PER_POLL: usize = 16;
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// TLS settings of a `turns:` link.
#[derive(Clone)]
pub(crate) struct TlsSettings {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

/// One TCP or TLS connection to a TURN server.
pub(super) struct Link {
    server: SocketAddr,
    tls: Option<TlsSettings>,
    state: State,
    /// What the TURN client wrote and the connection has not taken yet (plaintext).
    queued: Vec<u8>,
    decoder: TurnStreamDecoder,
    /// Why a write outside [`poll`](Link::poll) ended the link, reported by the next poll.
    failure: Option<String>,
}

enum State {
    /// Not connected yet: connects at the next poll.
    Idle,
    Connecting(ConnectTcp),
    Open {
        stream: Box<dyn AsyncTcpStream>,
        tls: Option<Box<ClientConnection>>,
    },
    /// Failed or closed; nothing more is read or written.
    Closed,
}

impl Link {
    pub(super) fn new(server: SocketAddr, tls: Option<TlsSettings>) -> Self {
        Self {
            server,
            tls,
            state: State::Idle,
            queued: Vec::new(),
            decoder: TurnStreamDecoder::new(),
            failure: None,
        }
    }

    /// Queues one message of the TURN client for the server.
    pub(super) fn send(&mut self, message: &[u8]) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if self.queued.len() + message.len() > MAX_QUEUED {
            log::debug!("{}: stream queue full, message dropped", self.server);
            return;
        }
        self.queued.extend_from_slice(message);
    }

    /// Connects, writes what is queued and reads what arrived: whole messages from the server
    /// go to `messages`. Returns whether anything happened, or why the link ended.
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        runtime: &dyn Runtime,
        messages: &mut Vec<Vec<u8>>,
    ) -> Result<bool, String> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let result = self.poll_inner(cx, runtime, messages);
        if result.is_err() {
            self.state = State::Closed;
            self.queued.clear();
        }
        result
    }

    /// Writes what is queued, as far as the connection takes it now. Returns whether anything
    /// was written; a failure is reported by the next [`poll`](Self::poll).
    pub(super) fn flush(&mut self, cx: &mut Context<'_>) -> bool {
        let State::Open { stream, tls } = &mut self.state else {
            return false;
        };
        match flush(cx, stream.as_mut(), tls.as_deref_mut(), &mut self.queued) {
            Ok(progress) => progress,
            Err(e) => {
                self.failure = Some(format!("connection to {}: {e}", self.server));
                self.state = State::Closed;
                self.queued.clear();
                true
            }
        }
    }

    /// Writes what is queued (best effort, without waiting), then ends the connection: a TLS
    /// close_notify and a TCP FIN. Used when the allocation is released.
    pub(super) fn close(&mut self, cx: &mut Context<'_>) {
        if let State::Open { stream, tls } = &mut self.state {
            let _ = flush(cx, stream.as_mut(), tls.as_deref_mut(), &mut self.queued);
            if let Some(tls) = tls {
                tls.send_close_notify();
                let _ = flush(cx, stream.as_mut(), Some(tls), &mut Vec::new());
            }
            let _ = stream.poll_shutdown(cx);
        }
        self.state = State::Closed;
    }

    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
        runtime: &dyn Runtime,
        messages: &mut Vec<Vec<u8>>,
    ) -> Result<bool, String> {
        let mut progress = false;
        if matches!(self.state, State::Idle) {
            self.state = State::Connecting(runtime.connect_tcp(self.server));
            progress = true;
        }
        if let State::Connecting(connect) = &mut self.state {
            let stream = match connect.as_mut().poll(cx) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Err(e)) => {
                    return Err(format!("cannot connect to {}: {e}", self.server));
                }
                Poll::Ready(Ok(stream)) => stream,
            };
            let tls = match &self.tls {
                Some(s) => Some(Box::new(
                    ClientConnection::new(s.config.clone(), s.name.clone())
                        .map_err(|e| format!("TLS: {e}"))?,
                )),
                None => None,
            };
            self.state = State::Open { stream, tls };
            progress = true;
        }
        let State::Open { stream, tls } = &mut self.state else {
            return Err(format!("connection to {} closed", self.server));
        };
        progress |= flush(cx, stream.as_mut(), tls.as_deref_mut(), &mut self.queued)?;
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_POLL {
            let n = match stream.poll_read(cx, &mut buf) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => return Err(format!("connection to {}: {e}", self.server)),
                Poll::Ready(Ok(0)) => {
                    return Err(format!(
                        "connection to {} closed by the server",
                        self.server
                    ));
                }
                Poll::Ready(Ok(n)) => n,
            };
            progress = true;
            match tls.as_deref_mut() {
                None => self.decoder.extend_from_slice(&buf[..n]),
                Some(tls) => {
                    let mut input = &buf[..n];
                    while !input.is_empty() {
                        tls.read_tls(&mut input).map_err(|e| format!("TLS: {e}"))?;
                        tls.process_new_packets()
                            .map_err(|e| format!("TLS with {}: {e}", self.server))?;
                        read_plaintext(tls, &mut self.decoder)?;
                    }
                    // The handshake answers, and what waited for it, go out now.
                    flush(cx, stream.as_mut(), Some(tls), &mut self.queued)?;
                }
            }
            while let Some(message) = self
                .decoder
                .next_message()
                .map_err(|e| format!("from {}: {e}", self.server))?
            {
                messages.push(message);
            }
        }
        Ok(progress)
    }
}

/// Moves `queued` into the connection (through TLS if any) and writes what the socket takes.
/// Returns whether anything was written.
fn flush(
    cx: &mut Context<'_>,
    stream: &mut dyn AsyncTcpStream,
    tls: Option<&mut ClientConnection>,
    queued: &mut Vec<u8>,
) -> Result<bool, String> {
    let mut progress = false;
    match tls {
        None => {
            while !queued.is_empty() {
                match stream.poll_write(cx, queued) {
                    Poll::Pending => break,
                    Poll::Ready(Ok(0)) => return Err("connection closed".to_owned()),
                    Poll::Ready(Ok(n)) => {
                        queued.drain(..n);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Err(e.to_string()),
                }
            }
        }
        Some(tls) => {
            let mut out = Writer { stream, cx };
            loop {
                // rustls holds plaintext until the handshake is done, up to its buffer limit.
                if !queued.is_empty() {
                    let n = tls
                        .writer()
                        .write(queued)
                        .map_err(|e| format!("TLS: {e}"))?;
                    queued.drain(..n);
                }
                if !tls.wants_write() {
                    break;
                }
                match tls.write_tls(&mut out) {
                    Ok(0) => return Err("connection closed".to_owned()),
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }
    Ok(progress)
}

/// Hands the plaintext rustls decrypted to the decoder.
fn read_plaintext(
    tls: &mut ClientConnection,
    decoder: &mut TurnStreamDecoder,
) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    loop {
        match tls.reader().read(&mut buf) {
            Ok(0) => return Err("TLS session closed by the server".to_owned()),
            Ok(n) => decoder.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(format!("TLS: {e}")),
        }
    }
}

/// The stream as an `io::Write` for rustls: `Pending` becomes `WouldBlock` (the waker is
/// registered).
struct Writer<'a, 'b> {
    stream: &'a mut dyn AsyncTcpStream,
    cx: &'a mut Context<'b>,
}

impl Write for Writer<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stream.poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
