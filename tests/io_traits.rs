//! Data channels in the standard traits: `Sink`, `futures::io` and Tokio's `AsyncRead` /
//! `AsyncWrite`, on real loopback connections, every byte checked.

mod common;

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use common::{init_log, pair_with_channel, within};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use webrtc_streams::{DataChannelMessage, Error, rtc::data_channel::RTCDataChannelInit};

/// The byte at `offset` of the test stream (a pattern that catches lost, repeated and
/// reordered chunks).
fn pattern(offset: u64) -> u8 {
    let x = offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (offset as u8)
}

/// Reads `len` bytes of [`pattern`], in pieces of odd sizes.
struct PatternReader {
    offset: u64,
    len: u64,
}

impl AsyncRead for PatternReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let piece = (self.len - self.offset)
            .min(buf.remaining() as u64)
            .min(12_345);
        for _ in 0..piece {
            let b = pattern(self.offset);
            buf.put_slice(&[b]);
            self.offset += 1;
        }
        Poll::Ready(Ok(()))
    }
}

/// Checks that what is written is [`pattern`] from offset 0.
struct PatternChecker {
    offset: u64,
}

impl AsyncWrite for PatternChecker {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &b in buf {
            if b != pattern(self.offset) {
                return Poll::Ready(Err(io::Error::other(format!(
                    "wrong byte at offset {}",
                    self.offset
                ))));
            }
            self.offset += 1;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// 64 MiB through `tokio::io::copy` on both ends: the writer's shutdown closes the channel,
/// and the reader sees every byte, in order, then end of file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_io_copy_of_64_mib_through_a_channel() {
    use tokio::io::AsyncWriteExt;
    init_log();
    const LEN: u64 = 64 * 1024 * 1024;
    let (_a, _b, dc_a, dc_b) = pair_with_channel("bytes", RTCDataChannelInit::default()).await;
    let (_unused, mut writer) = dc_a.byte_stream().expect("reliable").into_split();
    let mut reader = dc_b.byte_stream().expect("reliable");
    let send = tokio::spawn(async move {
        let mut source = PatternReader {
            offset: 0,
            len: LEN,
        };
        let n = tokio::io::copy(&mut source, &mut writer).await?;
        writer.shutdown().await?;
        io::Result::Ok(n)
    });
    let mut checker = PatternChecker { offset: 0 };
    let received = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::io::copy(&mut reader, &mut checker),
    )
    .await
    .expect("copy timed out")
    .expect("receiving");
    let sent = within("sender", send)
        .await
        .expect("join")
        .expect("sending");
    assert_eq!(sent, LEN);
    assert_eq!(received, LEN);
    assert_eq!(checker.offset, LEN);
}

/// The same with `futures::io`: an echo through `futures::io::copy` on the far side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_io_echo() {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    init_log();
    const LEN: usize = 1024 * 1024;
    let (_a, _b, dc_a, dc_b) = pair_with_channel("echo", RTCDataChannelInit::default()).await;
    let echo = tokio::spawn(async move {
        let (mut r, mut w) = dc_b.byte_stream().expect("reliable").into_split();
        futures::io::copy(&mut r, &mut w).await?;
        w.close().await?;
        io::Result::Ok(())
    });
    let (mut r, mut w) = dc_a.byte_stream().expect("reliable").into_split();
    let data: Vec<u8> = (0..LEN as u64).map(pattern).collect();
    let expected = data.clone();
    let write = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.flush().await?;
        io::Result::Ok(w)
    });
    let mut back = vec![0u8; LEN];
    within("echo", r.read_exact(&mut back)).await.expect("read");
    assert!(back == expected, "echoed bytes differ");
    let mut w = within("writer", write).await.expect("join").expect("write");
    within("close", w.close()).await.expect("close");
    let mut rest = Vec::new();
    within("end of file", r.read_to_end(&mut rest))
        .await
        .expect("read to end");
    assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
    within("echo task", echo)
        .await
        .expect("join")
        .expect("echo");
}

/// `StreamExt::forward` from one channel into another's sink: every message arrives once, in
/// order, with its kind (text or binary); the end of the first closes the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_from_one_channel_into_another() {
    init_log();
    const COUNT: usize = 1000;
    let (a, b, dc_in_a, dc_in_b) = pair_with_channel("in", RTCDataChannelInit::default()).await;
    let mut incoming = b.data_channels();
    let dc_out_a = a
        .create_data_channel("out", RTCDataChannelInit::default())
        .await
        .expect("create");
    let dc_out_b = within("second channel", incoming.next())
        .await
        .expect("channel stream ended");
    within("open", dc_out_a.opened()).await.expect("open");
    within("open", dc_out_b.opened()).await.expect("open");

    let message = |i: usize| {
        if i.is_multiple_of(3) {
            DataChannelMessage {
                is_string: true,
                data: Bytes::from(format!("text {i}")),
            }
        } else {
            DataChannelMessage {
                is_string: false,
                data: Bytes::from(vec![i as u8; 1 + i * 37 % 5000]),
            }
        }
    };
    // b: whatever arrives on "in" goes out on "out".
    let forward = tokio::spawn(dc_in_b.messages().map(Ok).forward(dc_out_b.sink()));
    // a: sends on "in", then closes it.
    let mut sink = dc_in_a.sink();
    let mut items = futures::stream::iter((0..COUNT).map(message).map(Ok));
    within("send_all", sink.send_all(&mut items))
        .await
        .expect("send_all");
    within("close", SinkExt::<DataChannelMessage>::close(&mut sink))
        .await
        .expect("close");
    let received: Vec<DataChannelMessage> =
        within("forwarded messages", dc_out_a.messages().collect()).await;
    within("forward", forward)
        .await
        .expect("join")
        .expect("forward");
    assert_eq!(received.len(), COUNT);
    for (i, m) in received.iter().enumerate() {
        assert_eq!(*m, message(i), "message {i}");
    }
}

/// The sink of a closed channel fails with a typed error, and a byte stream is refused on a
/// channel that may lose or reorder messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreliable_channels_are_not_byte_streams_and_closed_sinks_fail() {
    init_log();
    let unordered = RTCDataChannelInit {
        ordered: false,
        ..Default::default()
    };
    let (a, _b, dc_a, _dc_b) = pair_with_channel("lossy", unordered).await;
    assert!(matches!(dc_a.byte_stream(), Err(Error::NotAByteStream)));
    let lossy = a
        .create_data_channel(
            "retransmits",
            RTCDataChannelInit {
                max_retransmits: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    assert!(matches!(lossy.byte_stream(), Err(Error::NotAByteStream)));

    let mut sink = dc_a.sink();
    within("close", dc_a.close()).await.expect("close");
    let r = within("send", sink.send(Bytes::from_static(b"late"))).await;
    assert!(matches!(r, Err(Error::DataChannelClosed)), "{r:?}");
}

/// A writer whose reader stops reading waits: the bytes it holds stay within the sender's
/// high-water mark plus one message and the receiver's budget; nothing is lost once the
/// reader reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_holds_back_the_writer() {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    init_log();
    const LEN: usize = 16 * 1024 * 1024;
    let (_a, b, dc_a, dc_b) = pair_with_channel("slow", RTCDataChannelInit::default()).await;
    let (_r, mut w) = dc_a.byte_stream().expect("reliable").into_split();
    let data: Vec<u8> = (0..LEN as u64).map(pattern).collect();
    let expected = data.clone();
    let write = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.close().await?;
        io::Result::Ok(())
    });
    // Nobody reads on b for a while: the writer must be stuck, with bounded buffers. What
    // can be in flight: the sender's buffer (1 MiB), SCTP's window (1 MiB), `rtc`'s backlog
    // of 256 messages (4 MiB of 16 KiB chunks) and the receive budget (2 MiB).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!write.is_finished(), "16 MiB written with no reader");
    let held = dc_a.buffered_amount();
    assert!(
        held <= dc_a.high_water_mark() + 16 * 1024,
        "sender holds {held} bytes"
    );
    let budget = webrtc_streams::data_channel::DEFAULT_RECEIVE_BUDGET;
    assert!(
        b.received_amount() <= budget + 16 * 1024,
        "receiver holds {} bytes",
        b.received_amount()
    );
    let mut r = dc_b.byte_stream().expect("reliable");
    let mut got = Vec::with_capacity(LEN);
    within("read all", r.read_to_end(&mut got))
        .await
        .expect("read");
    assert!(got == expected, "bytes differ");
    within("writer", write).await.expect("join").expect("write");
}
