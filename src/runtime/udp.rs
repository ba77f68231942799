//! Segmentation offload (GSO) and receive coalescing (GRO) through `quinn-udp`, shared by the
//! built-in runtimes' sockets.

use std::{
    io::{self, IoSliceMut},
    net::SocketAddr,
};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};

/// Sends `buf` as datagrams of `segment_size` bytes. Every error is returned (`quinn-udp`'s
/// `send` would log and swallow `ENOBUFS`, `EMSGSIZE` and the rest, so a whole segmented batch
/// could vanish unseen): the driver counts them (`PeerConnection::socket_stats`).
pub(crate) fn send(
    state: &UdpSocketState,
    socket: UdpSockRef<'_>,
    buf: &[u8],
    segment_size: usize,
    target: SocketAddr,
) -> io::Result<()> {
    let transmit = Transmit {
        destination: target,
        ecn: None,
        contents: buf,
        segment_size: (buf.len() > segment_size).then_some(segment_size),
        src_ip: None,
    };
    state.try_send(socket, &transmit)
}

/// Receives one datagram or a coalesced run: `(total length, stride, source)`.
pub(crate) fn recv(
    state: &UdpSocketState,
    socket: UdpSockRef<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, usize, SocketAddr)> {
    let mut meta = [RecvMeta::default()];
    let mut bufs = [IoSliceMut::new(buf)];
    state.recv(socket, &mut bufs, &mut meta)?;
    let m = &meta[0];
    Ok((m.len, m.stride.max(1), m.addr))
}

/// The receive buffer a socket needs: 64 KiB when the OS coalesces datagrams.
pub(crate) fn recv_buffer_size(state: &UdpSocketState) -> usize {
    if state.gro_segments() > 1 {
        64 * 1024
    } else {
        2048
    }
}
