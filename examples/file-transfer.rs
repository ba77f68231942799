//! Send a file over a data channel: a progress bar, back-pressure, a SHA-256 check at the end,
//! and resumption of an interrupted transfer.
//!
//! ```text
//! cargo run --example file-transfer -- receive ./downloads --listen 127.0.0.1:9000
//! cargo run --example file-transfer -- send ./big.iso --to 127.0.0.1:9000
//! ```
//!
//! # How it works
//!
//! * **Signaling** is a tiny TCP rendezvous: the receiver listens (`--listen`, port 0 picks
//!   one and is printed as `listening on ADDR`), the sender connects and writes its complete
//!   offer as one JSON line, the receiver answers with one line, and the TCP connection
//!   closes. Everything else goes over WebRTC. The receiver takes one transfer and exits.
//! * **The data** goes through one reliable, ordered data channel used as a byte stream
//!   ([`DataChannel::byte_stream`]): Tokio's `AsyncBufRead` for the JSON lines of the
//!   protocol, `AsyncWrite`/`AsyncRead` for the file. Writing waits while the channel's send
//!   buffer is above its high-water mark, and a receiver that writes to a slow disk stops
//!   the sender through SCTP's flow control: memory stays bounded on both sides whatever the
//!   file size.
//! * **The protocol** on the byte stream:
//!   1. sender: `{"name":"big.iso","size":N}`
//!   2. receiver: `{"offset":K,"sha256":"..."}`: it holds `K` bytes of the file already
//!      (`DIR/big.iso.part`, left by an interrupted transfer), with that hash
//!   3. sender: `{"start":S}`: `S = K` if its first `K` bytes have the same hash, else `0`
//!      (the partial file is from another file, and is overwritten), then the `N - S`
//!      remaining bytes, then `{"sha256":"..."}` of the whole file
//!   4. receiver: hashes the file it wrote, from disk; if it matches, renames
//!      `big.iso.part` to `big.iso` and says `{"ok":true}`, else removes the partial file and
//!      says `{"ok":false,...}` (a second run starts from zero).
//! * **Interruptions**: a side that hears nothing from its peer for 9 s (a crash, a kill, a
//!   lost network) gives up with exit code 1, keeping what it received in the partial file.
//! * **Resuming**: run both commands again: the transfer continues where the receiver's
//!   partial file ends, and the final hash covers the whole file.
//!
//! The progress bar (`indicatif`) is drawn on a terminal only; either side prints one summary
//! line at the end. `--rate BYTES_PER_SECOND` caps the sender's rate. Exit codes: 0 done,
//! 1 failed (the reason on stderr), 2 bad arguments.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use tokio::{
    fs::File,
    io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use webrtc_streams::{
    PeerConnection, PeerConnectionBuilder,
    data_channel::RTCDataChannelInit,
    rtc::peer_connection::{
        sdp::{RTCSdpType, RTCSessionDescription},
        state::RTCPeerConnectionState,
    },
};

const USAGE: &str = "\
Usage: file-transfer send FILE --to ADDR:PORT [--ice-bind IP] [--rate BYTES_PER_SECOND]
       file-transfer receive DIR [--listen ADDR:PORT] [--ice-bind IP]

  --to ADDR:PORT    the receiver's rendezvous address
  --listen ADDR:PORT  where the receiver waits for the sender (default 127.0.0.1:9000;
                    port 0 picks one, printed as `listening on ADDR`)
  --ice-bind IP     IP the WebRTC UDP socket binds to (default 127.0.0.1)
  --rate N          the sender sends at most N bytes per second
";

/// Bound on the rendezvous and on the connection coming up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer silent for this long is gone: the transfer stops (and can be resumed).
const PEER_GONE: Duration = Duration::from_secs(9);
/// Bound on one protocol line (they are a few dozen bytes).
const MAX_LINE: u64 = 4096;
/// The sender reads and writes the file in pieces of this size.
const CHUNK: usize = 64 * 1024;

/// What to do, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send {
        file: PathBuf,
        to: SocketAddr,
        ice_ip: IpAddr,
        rate: Option<u64>,
    },
    Receive {
        dir: PathBuf,
        listen: SocketAddr,
        ice_ip: IpAddr,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    name: String,
    size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Have {
    offset: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Start {
    start: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Trailer {
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Verdict {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = env_logger::try_init();
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command).await {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("file-transfer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let verb = args.next().ok_or("no command")?;
    let path = PathBuf::from(args.next().ok_or("no FILE or DIR")?);
    let mut to = None;
    let mut listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 9000));
    let mut ice_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut rate = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("invalid value {value:?} for {flag}");
        match flag.as_str() {
            "--to" => to = Some(value.parse().map_err(bad)?),
            "--listen" => listen = value.parse().map_err(bad)?,
            "--ice-bind" => ice_ip = value.parse().map_err(bad)?,
            "--rate" => {
                rate = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|&r| r > 0)
                        .ok_or(format!("invalid value {value:?} for {flag}"))?,
                )
            }
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    match verb.as_str() {
        "send" => Ok(Command::Send {
            file: path,
            to: to.ok_or("send needs --to ADDR:PORT")?,
            ice_ip,
            rate,
        }),
        "receive" => Ok(Command::Receive {
            dir: path,
            listen,
            ice_ip,
        }),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Runs one side of a transfer to the end; returns the summary line.
pub async fn run(command: Command) -> Result<String, String> {
    match command {
        Command::Send {
            file,
            to,
            ice_ip,
            rate,
        } => send(&file, to, ice_ip, rate).await,
        Command::Receive {
            dir,
            listen,
            ice_ip,
        } => {
            let listener = TcpListener::bind(listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            // The test (or a script) reads this line to find the port.
            println!("listening on {addr}");
            receive(&dir, listener, ice_ip).await
        }
    }
}

/// The sending side: offers, sends `file`, waits for the receiver's verdict.
async fn send(
    path: &Path,
    to: SocketAddr,
    ice_ip: IpAddr,
    rate: Option<u64>,
) -> Result<String, String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no usable file name", path.display()))?
        .to_owned();
    let mut file = File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = file.metadata().await.map_err(|e| e.to_string())?.len();

    let pc = connection(ice_ip).await?;
    let outcome = async {
        // Created before the offer: it is negotiated with it. Default options: reliable and
        // ordered, which a byte stream needs.
        let dc = pc
            .create_data_channel("file", RTCDataChannelInit::default())
            .await
            .map_err(|e| e.to_string())?;
        pc.set_local_description(pc.create_offer().await.map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let offer = complete_description(&pc).await?;
        let answer = within("the rendezvous", async {
            let mut tcp = TcpStream::connect(to)
                .await
                .map_err(|e| format!("cannot reach the receiver at {to}: {e}"))?;
            write_line(&mut tcp, &offer).await?;
            read_line::<RTCSessionDescription, _>(&mut tokio::io::BufReader::new(tcp)).await
        })
        .await??;
        let answer = RTCSessionDescription::answer(answer.sdp).map_err(|e| e.to_string())?;
        pc.set_remote_description(answer)
            .await
            .map_err(|e| e.to_string())?;
        within("the data channel to open", dc.opened())
            .await?
            .map_err(|e| e.to_string())?;

        let (mut reader, mut writer) = dc.byte_stream().map_err(|e| e.to_string())?.into_split();
        write_line(&mut writer, &Header { name, size }).await?;
        let have: Have = read_line(&mut reader).await?;
        // One pass over the file: the hash of its first `offset` bytes, and of all of it.
        let (prefix, whole) = hash_file(&mut file, Some(have.offset)).await?;
        let start = if have.offset <= size && prefix.as_deref() == Some(have.sha256.as_str()) {
            have.offset
        } else {
            0
        };
        eprintln!("starting at byte {start} of {size}");
        write_line(&mut writer, &Start { start }).await?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| e.to_string())?;

        let bar = progress(size, start);
        let began = Instant::now();
        let mut buf = vec![0; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = file.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            // Waits while the channel's send buffer is full: this is the back-pressure.
            writer
                .write_all(&buf[..n])
                .await
                .map_err(|e| format!("sending: {e}"))?;
            sent += n as u64;
            bar.inc(n as u64);
            if let Some(rate) = rate {
                let due = began + Duration::from_secs_f64(sent as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if start + sent != size {
            return Err(format!("{} changed while it was sent", path.display()));
        }
        write_line(&mut writer, &Trailer { sha256: whole }).await?;
        let verdict: Verdict = read_line(&mut reader).await?;
        bar.finish();
        // Closing the writer closes the channel after everything sent before.
        let _ = writer.shutdown().await;
        if !verdict.ok {
            return Err(format!(
                "the receiver rejected the file: {}",
                verdict.error.unwrap_or_default()
            ));
        }
        Ok(format!(
            "sent {sent} of {size} bytes (from byte {start}) in {:.1?}, checksum verified",
            began.elapsed()
        ))
    }
    .await;
    let _ = pc.close().await;
    outcome
}

/// The receiving side: waits for one sender on `listener`, answers, receives into `dir`.
async fn receive(dir: &Path, listener: TcpListener, ice_ip: IpAddr) -> Result<String, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let pc = connection(ice_ip).await?;
    let outcome = async {
        let mut channels = pc.data_channels();
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        within("the rendezvous", async {
            let mut tcp = tokio::io::BufReader::new(tcp);
            let offer: RTCSessionDescription = read_line(&mut tcp).await?;
            if offer.sdp_type != RTCSdpType::Offer {
                return Err(format!("expected an offer, got {}", offer.sdp_type));
            }
            let offer = RTCSessionDescription::offer(offer.sdp).map_err(|e| e.to_string())?;
            pc.set_remote_description(offer)
                .await
                .map_err(|e| e.to_string())?;
            pc.set_local_description(pc.create_answer().await.map_err(|e| e.to_string())?)
                .await
                .map_err(|e| e.to_string())?;
            let answer = complete_description(&pc).await?;
            write_line(tcp.get_mut(), &answer).await
        })
        .await??;
        let dc = within("the sender's data channel", channels.next())
            .await?
            .ok_or("the connection closed")?;
        drop(channels);
        let (mut reader, mut writer) = dc.byte_stream().map_err(|e| e.to_string())?.into_split();

        let Header { name, size } = read_line(&mut reader).await?;
        let name = safe_name(&name)?;
        let part_path = dir.join(format!("{name}.part"));
        let mut part = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part_path)
            .await
            .map_err(|e| format!("{}: {e}", part_path.display()))?;
        let held = part.metadata().await.map_err(|e| e.to_string())?.len();
        // A partial file longer than the file is from another file: start over.
        let offset = if held <= size { held } else { 0 };
        let (prefix, _) = hash_file(&mut part, Some(offset)).await?;
        write_line(
            &mut writer,
            &Have {
                offset,
                sha256: prefix.unwrap_or_default(),
            },
        )
        .await?;
        let Start { start } = read_line(&mut reader).await?;
        if start != 0 && start != offset {
            return Err(format!("the sender starts at {start}, not at 0 or {offset}"));
        }
        eprintln!("receiving {name}: {size} bytes, from byte {start}");
        part.set_len(start).await.map_err(|e| e.to_string())?;
        part.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| e.to_string())?;

        let bar = progress(size, start);
        let began = Instant::now();
        let expected = size - start;
        // Reading slower than the network (a slow disk) stops the sender: the channel's
        // receive window fills and SCTP holds it back.
        let got = tokio::io::copy(
            &mut (&mut reader).take(expected),
            &mut bar.wrap_async_write(&mut part),
        )
        .await
        .map_err(|e| format!("receiving: {e}"))?;
        if got != expected {
            return Err(format!(
                "the transfer stopped after {} of {size} bytes; run again to resume",
                start + got
            ));
        }
        part.sync_all().await.map_err(|e| e.to_string())?;
        let Trailer { sha256 } = read_line(&mut reader).await?;
        // The hash of what is on disk, the resumed prefix included.
        let (_, on_disk) = hash_file(&mut part, None).await?;
        drop(part);
        let verdict = if on_disk == sha256 {
            let path = dir.join(name);
            tokio::fs::rename(&part_path, &path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Verdict {
                ok: true,
                error: None,
            }
        } else {
            let _ = tokio::fs::remove_file(&part_path).await;
            Verdict {
                ok: false,
                error: Some(format!("SHA-256 {on_disk}, expected {sha256}")),
            }
        };
        write_line(&mut writer, &verdict).await?;
        bar.finish();
        // The sender closes the channel once it has read the verdict: wait for that, so the
        // verdict is not lost in our own close.
        let mut rest = Vec::new();
        let _ = within("the sender to close", (&mut reader).take(MAX_LINE).read_to_end(&mut rest)).await;
        match verdict.error {
            None => Ok(format!(
                "received {got} of {size} bytes (from byte {start}) in {:.1?} into {}, checksum verified",
                began.elapsed(),
                dir.join(name).display()
            )),
            Some(e) => Err(format!("checksum mismatch: {e}; the partial file was removed")),
        }
    }
    .await;
    let _ = pc.close().await;
    outcome
}

/// A connection with one UDP socket on `ice_ip`, which closes itself if it fails.
async fn connection(ice_ip: IpAddr) -> Result<PeerConnection, String> {
    // A peer that stays silent for PEER_GONE is gone (ICE `Failed`): the other side stops
    // instead of waiting for ICE's default 30 s.
    let settings = PeerConnectionBuilder::default_settings()
        .with_ice_timeouts(
            Some(PEER_GONE / 3),
            Some(PEER_GONE),
            Some(Duration::from_secs(1)),
        )
        .build();
    let pc = PeerConnection::builder()
        .bind([SocketAddr::new(ice_ip, 0)])
        .setting_engine(settings)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let mut states = pc.connection_states();
    let weak = pc.downgrade();
    tokio::spawn(async move {
        while let Some(state) = states.next().await {
            if state == RTCPeerConnectionState::Failed {
                eprintln!("the connection failed");
                if let Some(pc) = weak.upgrade() {
                    let _ = pc.close().await;
                }
            }
        }
    });
    Ok(pc)
}

/// The local description once gathering is complete (no trickle: one message each way).
async fn complete_description(pc: &PeerConnection) -> Result<RTCSessionDescription, String> {
    within("ICE gathering", pc.gathering_complete())
        .await?
        .map_err(|e| e.to_string())?;
    pc.local_description()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no local description".to_owned())
}

/// The file name the sender gave, if it names a file in the directory and nothing else.
fn safe_name(name: &str) -> Result<&str, String> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 255;
    if plain {
        Ok(name)
    } else {
        Err(format!("refusing the file name {name:?}"))
    }
}

/// Hashes `file` from its start: the hex SHA-256 of its first `prefix` bytes (if it has
/// them) and of all of it.
async fn hash_file(
    file: &mut File,
    prefix: Option<u64>,
) -> Result<(Option<String>, String), String> {
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut prefix_hash = None;
    let mut read = 0u64;
    let mut buf = vec![0; CHUNK];
    loop {
        let want = match prefix {
            Some(p) if prefix_hash.is_none() => {
                if read == p {
                    prefix_hash = Some(hex(hasher.clone().finalize().as_slice()));
                    buf.len()
                } else {
                    buf.len().min((p - read) as usize)
                }
            }
            _ => buf.len(),
        };
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if prefix == Some(read) && prefix_hash.is_none() {
        prefix_hash = Some(hex(hasher.clone().finalize().as_slice()));
    }
    Ok((prefix_hash, hex(hasher.finalize().as_slice())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A progress bar for `size` bytes starting at `start`, drawn on a terminal only.
fn progress(size: u64, start: u64) -> ProgressBar {
    let bar = ProgressBar::new(size).with_position(start);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Writes `value` as one JSON line.
async fn write_line<W: AsyncWrite + Unpin>(
    out: &mut W,
    value: &impl Serialize,
) -> Result<(), String> {
    let mut line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    line.push(b'\n');
    out.write_all(&line)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    out.flush().await.map_err(|e| format!("sending: {e}"))
}

/// Reads one JSON line of at most [`MAX_LINE`] bytes.
async fn read_line<T: DeserializeOwned, R: AsyncBufRead + Unpin>(
    input: &mut R,
) -> Result<T, String> {
    let mut line = String::new();
    let n = input
        .take(MAX_LINE)
        .read_line(&mut line)
        .await
        .map_err(|e| format!("receiving: {e}"))?;
    if n == 0 {
        return Err("the peer closed the connection".to_owned());
    }
    if !line.ends_with('\n') {
        return Err("protocol line too long or cut".to_owned());
    }
    serde_json::from_str(&line).map_err(|e| format!("bad protocol line {line:?}: {e}"))
}

/// `future`, or an error naming `what` after [`CONNECT_TIMEOUT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(CONNECT_TIMEOUT, future)
        .await
        .map_err(|_| format!("timed out waiting for {what}"))
}
