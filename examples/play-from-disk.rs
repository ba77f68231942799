//! Play from disk: a VP8 video file (IVF) and an Opus audio file (Ogg) played to a browser
//! with [`RtpSender::write_sample`], one frame or packet at a time, paced by their durations.
//! Both files loop until the browser leaves.
//!
//! Signaling is one HTTP request without trickle ICE: `GET /` serves the page
//! (`examples/play-from-disk/index.html`), `POST /offer` takes the browser's complete offer
//! as `{"type":"offer","sdp":"..."}` and replies with the complete answer.
//!
//! Make the files with ffmpeg (one Opus packet per Ogg page: `-page_duration 20000`):
//!
//! ```text
//! ffmpeg -f lavfi -i testsrc=size=640x480:rate=30 -t 10 -c:v libvpx -b:v 1M -g 30 video.ivf
//! ffmpeg -f lavfi -i sine=frequency=440 -t 10 -c:a libopus -page_duration 20000 audio.ogg
//! cargo run --example play-from-disk -- --video video.ivf --audio audio.ogg
//! ```
//!
//! then open <http://127.0.0.1:8080/>. `--bind ADDR:PORT` moves the page, `--ice-bind IP`
//! the WebRTC socket (default 127.0.0.1; Chromium reaches a loopback address only when
//! started with `--allow-loopback-in-peer-connection`).
//!
//! The files are read and checked whole at start: a truncated or foreign file is refused with
//! a [`MediaError`] before anything is served.

use std::{
    io::Cursor,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use tokio::{net::TcpListener, time::Instant};
use webrtc_streams::{
    media::{LocalTrack, RtpCodecKind, RtpSender, Sample},
    rtc::{
        media::io::{
            ivf_reader::{IVF_FILE_HEADER_SIZE, IVF_FRAME_HEADER_SIZE, IVFReader},
            ogg_reader::{OggHeaderType, OggReader},
        },
        peer_connection::{
            configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8},
            sdp::RTCSessionDescription,
        },
    },
};

#[path = "common/http.rs"]
mod http;
#[path = "common/session.rs"]
mod session;

/// The page, served at `/`.
const PAGE: &str = include_str!("play-from-disk/index.html");
/// Files larger than this are refused (they are read into memory).
const MAX_FILE: u64 = 512 * 1024 * 1024;

const USAGE: &str = "\
Usage: play-from-disk [--video FILE.ivf] [--audio FILE.ogg] [--bind ADDR:PORT] [--ice-bind IP]

  --video FILE      VP8 in IVF
  --audio FILE      Opus in Ogg, one packet per page (ffmpeg: -page_duration 20000)
  --bind ADDR:PORT  HTTP address to serve the page on (default 127.0.0.1:8080; port 0 picks one)
  --ice-bind IP     IP the WebRTC UDP socket binds to (default 127.0.0.1)
";

#[tokio::main]
async fn main() -> ExitCode {
    let _ = env_logger::try_init();
    let mut bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    let mut ice_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (mut video, mut audio) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--bind" => args.next().and_then(|v| v.parse().ok()).map(|v| bind = v),
            "--ice-bind" => args.next().and_then(|v| v.parse().ok()).map(|v| ice_ip = v),
            "--video" => args.next().map(|v| video = Some(PathBuf::from(v))),
            "--audio" => args.next().map(|v| audio = Some(PathBuf::from(v))),
            _ => None,
        };
        if parsed.is_none() {
            eprint!("invalid argument {arg:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let media = match Media::open(video.as_deref(), audio.as_deref()) {
        Ok(media) => media,
        Err(e) => {
            eprint!("{e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!(
            "play-from-disk: {} video frames, {} audio packets; open http://{addr}/",
            media.video_frames(),
            media.audio_packets()
        );
    }
    serve(listener, ice_ip, media).await;
    ExitCode::SUCCESS
}

/// Why a media file cannot be played.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Neither a video nor an audio file was given.
    #[error("nothing to play: give --video, --audio or both")]
    Nothing,
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is larger than the example reads into memory.
    #[error("{path} is larger than {MAX_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not VP8 in IVF.
    #[error("{path} is not a VP8 IVF file: {reason}")]
    NotIvf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The IVF header's time base gives no usable frame duration.
    #[error("{path}: time base {numerator}/{denominator} s per frame is not a usable frame rate")]
    BadFrameRate {
        /// The file.
        path: PathBuf,
        /// The time base's numerator.
        numerator: u32,
        /// The time base's denominator.
        denominator: u32,
    },
    /// The file is not Opus in Ogg, or not laid out as one packet per page.
    #[error("{path} is not a playable Ogg Opus file: {reason}")]
    NotOggOpus {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file ends in the middle of a frame or page.
    #[error("{path} is truncated: a frame or page starting at byte {offset} is incomplete")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the incomplete frame or page starts.
        offset: u64,
    },
}

/// The frames and packets to play, read and checked whole; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Media {
    video: Arc<Vec<Sample>>,
    audio: Arc<Vec<Sample>>,
}

impl Media {
    /// Reads a VP8 IVF file and an Opus Ogg file (at least one of them).
    ///
    /// # Errors
    ///
    /// A [`MediaError`] saying which file is unreadable, foreign or truncated.
    pub fn open(video: Option<&Path>, audio: Option<&Path>) -> Result<Self, MediaError> {
        if video.is_none() && audio.is_none() {
            return Err(MediaError::Nothing);
        }
        Ok(Self {
            video: Arc::new(video.map(read_ivf).transpose()?.unwrap_or_default()),
            audio: Arc::new(audio.map(read_ogg_opus).transpose()?.unwrap_or_default()),
        })
    }

    /// Video frames in the file.
    pub fn video_frames(&self) -> usize {
        self.video.len()
    }

    /// Audio packets in the file.
    pub fn audio_packets(&self) -> usize {
        self.audio.len()
    }
}

/// Serves the page and answers offers on `listener`, forever; the WebRTC sockets bind to
/// `ice_ip`.
pub async fn serve(listener: TcpListener, ice_ip: IpAddr, media: Media) {
    http::serve(listener, move |request| {
        let media = media.clone();
        async move {
            match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/") => http::Response::html(PAGE),
                ("POST", "/offer") => match answer(&request.body, ice_ip, media).await {
                    Ok(answer) => http::Response::json(serde_json::to_value(answer)),
                    Err(e) => http::Response::error(400, &e),
                },
                _ => http::Response::error(404, "not found"),
            }
        }
    })
    .await;
}

/// A new connection for the offer in `body`, sending the files; returns the complete answer.
/// The connection runs on its own tasks.
async fn answer(
    body: &[u8],
    ice_ip: IpAddr,
    media: Media,
) -> Result<RTCSessionDescription, String> {
    let (pc, players, answer) = session::answer(body, ice_ip, async |pc, _offer| {
        // Both tracks in one media stream, so that the page plays them in one element.
        let mut players = Vec::new();
        for (samples, kind, codec) in [
            (
                &media.video,
                RtpCodecKind::Video,
                LocalTrack::codec(MIME_TYPE_VP8, 90_000, 0),
            ),
            (
                &media.audio,
                RtpCodecKind::Audio,
                LocalTrack::codec(MIME_TYPE_OPUS, 48_000, 2),
            ),
        ] {
            if !samples.is_empty() {
                let track = LocalTrack::new(kind, kind.to_string(), "disk", codec);
                players.push((pc.add_track(track).await?, samples.clone()));
            }
        }
        Ok(players)
    })
    .await?;
    for (sender, samples) in players {
        tokio::spawn(play(sender, samples));
    }
    tokio::spawn(session::watch(pc));
    Ok(answer)
}

/// Sends `samples` on `sender` in a loop, each when its time has come, until the connection
/// closes. The first write waits until the connection is up; the clock starts then.
async fn play(sender: RtpSender, samples: Arc<Vec<Sample>>) {
    let mut due: Option<Instant> = None;
    for sample in samples.iter().cycle() {
        if sender.write_sample(sample.clone()).await.is_err() {
            break; // closed
        }
        let next = due.get_or_insert_with(Instant::now);
        *next += sample.duration;
        tokio::time::sleep_until(*next).await;
    }
}

/// Reads a whole file, refusing very large ones.
fn read_file(path: &Path) -> Result<Vec<u8>, MediaError> {
    let io = |source| MediaError::Io {
        path: path.to_owned(),
        source,
    };
    if std::fs::metadata(path).map_err(io)?.len() > MAX_FILE {
        return Err(MediaError::TooLarge {
            path: path.to_owned(),
        });
    }
    std::fs::read(path).map_err(io)
}

/// The VP8 frames of an IVF file, each lasting one tick of the file's time base.
fn read_ivf(path: &Path) -> Result<Vec<Sample>, MediaError> {
    let data = read_file(path)?;
    let not_ivf = |reason: String| MediaError::NotIvf {
        path: path.to_owned(),
        reason,
    };
    if data.len() < IVF_FILE_HEADER_SIZE {
        return Err(not_ivf(format!(
            "shorter than the {IVF_FILE_HEADER_SIZE}-byte header"
        )));
    }
    let (mut reader, header) =
        IVFReader::new(Cursor::new(&data[..])).map_err(|e| not_ivf(e.to_string()))?;
    if &header.four_cc != b"VP80" {
        let codec = String::from_utf8_lossy(&header.four_cc).into_owned();
        return Err(not_ivf(format!("codec {codec:?}, not VP80")));
    }
    let (numerator, denominator) = (header.timebase_numerator, header.timebase_denominator);
    let frame = (denominator != 0)
        .then(|| Duration::try_from_secs_f64(f64::from(numerator) / f64::from(denominator)))
        .and_then(Result::ok)
        .filter(|d| (Duration::from_millis(1)..=Duration::from_secs(10)).contains(d))
        .ok_or_else(|| MediaError::BadFrameRate {
            path: path.to_owned(),
            numerator,
            denominator,
        })?;
    // The reader allocates what a frame header announces: check it against the file first.
    let mut offset = IVF_FILE_HEADER_SIZE;
    let mut samples = Vec::new();
    while offset < data.len() {
        let rest = &data[offset..];
        let size = rest
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        if size.is_none_or(|size| rest.len() < IVF_FRAME_HEADER_SIZE + size) {
            return Err(MediaError::Truncated {
                path: path.to_owned(),
                offset: offset as u64,
            });
        }
        let (payload, frame_header) = reader
            .parse_next_frame()
            .map_err(|e| not_ivf(e.to_string()))?;
        offset += IVF_FRAME_HEADER_SIZE + frame_header.frame_size as usize;
        samples.push(Sample::new(payload.freeze(), frame));
    }
    Ok(samples)
}

/// The Opus packets of an Ogg file laid out one packet per page, each with its duration.
fn read_ogg_opus(path: &Path) -> Result<Vec<Sample>, MediaError> {
    let data = read_file(path)?;
    let not_opus = |reason: String| MediaError::NotOggOpus {
        path: path.to_owned(),
        reason,
    };
    // The reader reads what a page header announces: check each page against the file first.
    let page_len = |offset: usize| {
        let rest = &data[offset..];
        if !rest.starts_with(OGG_CAPTURE_PATTERN) {
            return Err(not_opus(format!("no Ogg page at byte {offset}")));
        }
        let truncated = || MediaError::Truncated {
            path: path.to_owned(),
            offset: offset as u64,
        };
        let segments = usize::from(*rest.get(26).ok_or_else(truncated)?);
        let table = rest.get(27..27 + segments).ok_or_else(truncated)?;
        let len = 27 + segments + table.iter().map(|&s| usize::from(s)).sum::<usize>();
        if rest.len() < len {
            return Err(truncated());
        }
        Ok(len)
    };
    let mut offset = page_len(0)?;
    let (mut reader, header) =
        OggReader::new(Cursor::new(&data[..]), true).map_err(|e| not_opus(e.to_string()))?;
    if header.channels > 2 {
        return Err(not_opus(format!(
            "{} channels (at most 2)",
            header.channels
        )));
    }
    let mut samples = Vec::new();
    let mut granule = 0u64;
    while offset < data.len() {
        let page_start = offset;
        offset += page_len(offset)?;
        let (payload, page) = reader
            .parse_next_page()
            .map_err(|e| not_opus(format!("page at byte {page_start}: {e}")))?;
        if page.opus_header_type(&payload) == Some(OggHeaderType::OpusTags) {
            continue;
        }
        if page.header_type & 0x01 != 0 || page.granule_position == u64::MAX {
            return Err(not_opus(format!(
                "the packet at byte {page_start} spans pages (pages must hold one packet each)"
            )));
        }
        let Some(duration) = opus_samples(&payload) else {
            return Err(not_opus(format!(
                "the page at byte {page_start} holds no Opus packet"
            )));
        };
        // More samples on the page than in its first packet: several packets per page.
        if page.granule_position.saturating_sub(granule) > u64::from(duration) {
            return Err(not_opus(format!(
                "the page at byte {page_start} holds more than one packet; re-mux with \
                 `ffmpeg -i IN -c copy -page_duration 20000 OUT.ogg`"
            )));
        }
        granule = page.granule_position;
        samples.push(Sample::new(
            payload.freeze(),
            Duration::from_micros(u64::from(duration) * 1_000_000 / 48_000),
        ));
    }
    if samples.is_empty() {
        return Err(not_opus("no audio packets".into()));
    }
    Ok(samples)
}

/// What every Ogg page starts with.
const OGG_CAPTURE_PATTERN: &[u8] = b"OggS";

/// The number of 48 kHz samples in the Opus packet `packet` (RFC 6716, section 3.1), or
/// `None` if it is not one.
fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = u32::from(toc >> 3);
    // Frame sizes in units of 2.5 ms (120 samples at 48 kHz).
    let units = match config {
        0..=11 => [4, 8, 16, 24][(config % 4) as usize],
        12..=15 => [4, 8][(config % 2) as usize],
        _ => [1, 2, 4, 8][(config % 4) as usize],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let samples = units * 120 * frames;
    // A packet lasts at most 120 ms.
    (frames > 0 && samples <= 5760).then_some(samples)
}
