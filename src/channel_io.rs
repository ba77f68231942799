//! Data channels in the traits the rest of async Rust speaks.
//!
//! * [`MessageSink`] ([`DataChannel::sink`], [`DataChannel::split`]): a [`Sink`] of messages,
//!   the sending counterpart of [`MessageStream`], so `StreamExt::forward`, `SinkExt::send_all`
//!   and friends work on channels.
//! * [`ByteStream`] ([`DataChannel::byte_stream`]): a reliable, ordered channel as a byte
//!   stream: [`futures::io::AsyncRead`] / [`AsyncBufRead`](futures::io::AsyncBufRead) /
//!   [`AsyncWrite`](futures::io::AsyncWrite) and, with the `runtime-tokio` feature, Tokio's
//!   `AsyncRead` / `AsyncBufRead` / `AsyncWrite`; [`ByteStream::into_split`] gives owned halves.
//!
//! Both keep the channel's back-pressure: a writer waits while the channel's
//! [buffered amount](DataChannel::buffered_amount) is above its high-water mark, and a reader
//! that stops reading stops the remote sender through SCTP flow control.

use std::{
    fmt,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};

use crate::{
    data_channel::{DataChannel, DataChannelMessage, MessageStream},
    error::{Error, Result},
    shared::command::Payload,
};

/// The largest message a [`ByteWriter`] sends (less if the remote accepts less). Small
/// enough for every browser, and it bounds what a receiver that stops reading holds: `rtc`
/// keeps up to 256 received *messages* beyond SCTP's window, whatever their size.
const MAX_CHUNK: usize = 16 * 1024;

type Pending = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Queues one message at a time for a poll-based writer: at once when the channel has room
/// (no allocation), else in a future that waits for room.
struct Outbox {
    dc: DataChannel,
    /// A message waiting for room in the send buffer or the command queue.
    waiting: Option<Pending>,
    /// The close in progress, once [`poll_close`](Self::poll_close) started it.
    closing: Option<Pending>,
    closed: bool,
}

impl Outbox {
    fn new(dc: DataChannel) -> Self {
        Self {
            dc,
            waiting: None,
            closing: None,
            closed: false,
        }
    }

    /// Ready when no message is waiting; the error of a message that could not be queued.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(waiting) = &mut self.waiting {
            let r = ready!(waiting.as_mut().poll(cx));
            self.waiting = None;
            r?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues `payload` after [`poll_idle`](Self::poll_idle) returned ready.
    fn push(&mut self, payload: Payload) -> Result<()> {
        if self.closed || self.closing.is_some() {
            return Err(Error::DataChannelClosed);
        }
        debug_assert!(
            self.waiting.is_none(),
            "push before poll_idle returned ready"
        );
        if let Err(payload) = self.dc.try_send_payload(payload)? {
            let dc = self.dc.clone();
            self.waiting = Some(Box::pin(async move { dc.send_payload(payload).await }));
        }
        Ok(())
    }

    /// Queues what is waiting, then closes the channel (after the messages sent before).
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_idle(cx))?;
        let dc = &self.dc;
        let closing = self.closing.get_or_insert_with(|| {
            let dc = dc.clone();
            Box::pin(async move { dc.close().await })
        });
        let r = ready!(closing.as_mut().poll(cx));
        self.closing = None;
        self.closed = true;
        Poll::Ready(r)
    }
}

/// The sending half of a data channel as a [`Sink`] of messages; see [`DataChannel::sink`].
///
/// `Sink<Bytes>` sends binary messages; `Sink<DataChannelMessage>` keeps each message's kind
/// (text or binary), so messages read from one channel can be forwarded to another as they
/// came. A message is *flushed* once it is handed to the connection (it counts in
/// [`buffered_amount`](DataChannel::buffered_amount) until SCTP takes it); closing the sink
/// closes the channel after the messages sent before.
#[must_use = "sinks do nothing unless used"]
pub struct MessageSink {
    out: Outbox,
}

impl MessageSink {
    /// The channel this sink sends on.
    pub fn channel(&self) -> &DataChannel {
        &self.out.dc
    }
}

impl fmt::Debug for MessageSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSink")
            .field("channel", &self.out.dc)
            .field("waiting", &self.out.waiting.is_some())
            .finish()
    }
}

impl Sink<Bytes> for MessageSink {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().out.poll_idle(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<()> {
        self.get_mut().out.push(Payload::Binary(item))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().out.poll_idle(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().out.poll_close(cx)
    }
}

impl Sink<DataChannelMessage> for MessageSink {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().out.poll_idle(cx)
    }

    /// Text messages stay text; a "text" message that is not UTF-8 is sent as binary.
    fn start_send(self: Pin<&mut Self>, item: DataChannelMessage) -> Result<()> {
        let payload = match item.text() {
            Some(text) => Payload::Text(text.to_owned()),
            None => Payload::Binary(item.data),
        };
        self.get_mut().out.push(payload)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().out.poll_idle(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().out.poll_close(cx)
    }
}

/// The reading half of a [`ByteStream`]: the channel's messages, concatenated.
///
/// Reading returns end of file once the channel is closed and every message before the close
/// was read.
pub struct ByteReader {
    messages: MessageStream,
    current: Bytes,
}

impl ByteReader {
    /// Makes `current` non-empty; `false` at end of file.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        while self.current.is_empty() {
            match ready!(Pin::new(&mut self.messages).poll_next(cx)) {
                Some(message) => self.current = message.data,
                None => return Poll::Ready(false),
            }
        }
        Poll::Ready(true)
    }

    fn poll_read_into(&mut self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<usize> {
        if out.is_empty() || !ready!(self.poll_fill(cx)) {
            return Poll::Ready(0);
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Poll::Ready(n)
    }
}

impl fmt::Debug for ByteReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteReader")
            .field("messages", &self.messages)
            .field("buffered", &self.current.len())
            .finish()
    }
}

/// The writing half of a [`ByteStream`].
///
/// Each write sends at most one message of up to 16 KiB (or the remote's maximum message
/// size, if smaller) and returns how many bytes it took; writes are not coalesced, so wrap
/// the writer in a `BufWriter` when writing many small pieces. A write returns once its
/// bytes are handed to the connection or wait for room; `flush` waits until nothing waits.
/// Closing (`close` / `shutdown`) closes the channel: the reader on the other side sees end of
/// file after the last byte.
pub struct ByteWriter {
    out: Outbox,
}

impl ByteWriter {
    fn poll_write_chunk(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.out.poll_idle(cx)).map_err(to_io)?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let limit = match self.out.dc.max_message_size() {
            Some(max) if max > 0 => max.min(MAX_CHUNK),
            _ => MAX_CHUNK,
        };
        let n = buf.len().min(limit);
        let chunk = Bytes::copy_from_slice(&buf[..n]);
        self.out.push(Payload::Binary(chunk)).map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_idle(cx).map_err(to_io)
    }

    fn poll_close_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_close(cx).map_err(to_io)
    }
}

impl fmt::Debug for ByteWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteWriter")
            .field("channel", &self.out.dc)
            .field("waiting", &self.out.waiting.is_some())
            .finish()
    }
}

/// A reliable, ordered data channel as a byte stream; see [`DataChannel::byte_stream`].
///
/// Message boundaries are not kept: what one side writes, the other reads as one stream of
/// bytes, in order, every byte once. Reads and writes are independent;
/// [`into_split`](Self::into_split) separates them without a lock.
#[derive(Debug)]
pub struct ByteStream {
    reader: ByteReader,
    writer: ByteWriter,
}

impl ByteStream {
    /// The owned reading and writing halves, for two tasks.
    pub fn into_split(self) -> (ByteReader, ByteWriter) {
        (self.reader, self.writer)
    }

    /// The channel this stream reads and writes.
    pub fn channel(&self) -> &DataChannel {
        &self.writer.out.dc
    }
}

fn to_io(e: Error) -> io::Error {
    let kind = match e {
        Error::DataChannelClosed | Error::Closed(_) => io::ErrorKind::BrokenPipe,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl DataChannel {
    /// This channel's sending side as a [`Sink`] of messages (`Bytes` or
    /// [`DataChannelMessage`]).
    ///
    /// # Example
    ///
    /// Forward every message of one channel to another:
    ///
    /// ```no_run
    /// # async fn f(from: webrtc_streams::DataChannel, to: webrtc_streams::DataChannel)
    /// # -> webrtc_streams::Result<()> {
    /// use futures::StreamExt;
    /// from.messages().map(Ok).forward(to.sink()).await?; // closes `to` at the end
    /// # Ok(()) }
    /// ```
    pub fn sink(&self) -> MessageSink {
        MessageSink {
            out: Outbox::new(self.clone()),
        }
    }

    /// The channel as owned halves: a [`Sink`] to send and the [`MessageStream`] to receive.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(dc: webrtc_streams::DataChannel) -> webrtc_streams::Result<()> {
    /// use bytes::Bytes;
    /// use futures::{SinkExt, StreamExt};
    /// let (mut tx, mut rx) = dc.split();
    /// tokio::spawn(async move { tx.send(Bytes::from_static(b"ping")).await });
    /// while let Some(message) = rx.next().await {
    ///     println!("{} bytes", message.data.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn split(&self) -> (MessageSink, MessageStream) {
        (self.sink(), self.messages())
    }

    /// The channel as a byte stream ([`ByteStream`]).
    ///
    /// It shares the channel's inbox with [`messages`](Self::messages): read through one or
    /// the other, not both.
    ///
    /// # Errors
    ///
    /// [`Error::NotAByteStream`] if the channel is unordered or may drop messages
    /// (`max_retransmits` or `max_packet_life_time` set): a byte stream would lose or
    /// reorder bytes.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(dc: webrtc_streams::DataChannel) -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut reader, mut writer) = dc.byte_stream()?.into_split();
    /// // Echo: every byte read is written back.
    /// futures::io::copy(&mut reader, &mut writer).await?;
    /// # Ok(()) }
    /// ```
    pub fn byte_stream(&self) -> Result<ByteStream> {
        if !self.ordered()
            || self.max_retransmits().is_some()
            || self.max_packet_life_time().is_some()
        {
            return Err(Error::NotAByteStream);
        }
        Ok(ByteStream {
            reader: ByteReader {
                messages: self.messages(),
                current: Bytes::new(),
            },
            writer: ByteWriter {
                out: Outbox::new(self.clone()),
            },
        })
    }
}

impl futures::io::AsyncRead for ByteReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_read_into(cx, buf).map(Ok)
    }
}

impl futures::io::AsyncBufRead for ByteReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        ready!(this.poll_fill(cx));
        Poll::Ready(Ok(&this.current))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.current.advance(amt.min(this.current.len()));
    }
}

impl futures::io::AsyncWrite for ByteWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_chunk(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_io(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close_io(cx)
    }
}

impl futures::io::AsyncRead for ByteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl futures::io::AsyncBufRead for ByteStream {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().reader).consume(amt);
    }
}

impl futures::io::AsyncWrite for ByteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().writer.poll_write_chunk(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.poll_flush_io(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.poll_close_io(cx)
    }
}

#[cfg(feature = "runtime-tokio")]
mod tokio_io {
    use std::{
        io,
        pin::Pin,
        task::{Context, Poll, ready},
    };

    use bytes::Buf;
    use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

    use super::{ByteReader, ByteStream, ByteWriter};

    impl AsyncRead for ByteReader {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if buf.remaining() == 0 || !ready!(this.poll_fill(cx)) {
                return Poll::Ready(Ok(()));
            }
            let n = buf.remaining().min(this.current.len());
            buf.put_slice(&this.current[..n]);
            this.current.advance(n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncBufRead for ByteReader {
        fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
            let this = self.get_mut();
            ready!(this.poll_fill(cx));
            Poll::Ready(Ok(&this.current))
        }

        fn consume(self: Pin<&mut Self>, amt: usize) {
            let this = self.get_mut();
            this.current.advance(amt.min(this.current.len()));
        }
    }

    impl AsyncWrite for ByteWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().poll_write_chunk(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_flush_io(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_close_io(cx)
        }
    }

    impl AsyncRead for ByteStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
        }
    }

    impl AsyncBufRead for ByteStream {
        fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
            Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
        }

        fn consume(self: Pin<&mut Self>, amt: usize) {
            Pin::new(&mut self.get_mut().reader).consume(amt);
        }
    }

    impl AsyncWrite for ByteStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writer.poll_write_chunk(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().writer.poll_flush_io(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().writer.poll_close_io(cx)
        }
    }
}
