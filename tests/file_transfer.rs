//! The `file-transfer` example as a user runs it: two processes of the example binary (built
//! by this test with the test's own features and profile), a receiver and a sender, on
//! loopback. The test reads the receiver's rendezvous address from its first output line,
//! waits for both with a bound, and kills them by PID if they overrun (or when it interrupts
//! a transfer on purpose).
//!
//! - a multi-MiB random file arrives byte-identical;
//! - resume: a rate-limited transfer's receiver is killed once it holds part of the file,
//!   and the sender must give up by itself; a second run continues from the partial file,
//!   and its sender is killed, and the receiver must give up by itself; a third run
//!   continues from the longer partial file to the end, and the file is byte-identical;
//! - a partial file that is not a prefix of the file is detected (hash) and the transfer
//!   restarts from zero;
//! - bad arguments exit with code 2.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// Bound on one transfer (both processes, connection included).
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);
/// Bound on building the example.
const BUILD_LIMIT: Duration = Duration::from_secs(900);

#[test]
fn sends_a_random_file_byte_identical() {
    let bin = example_binary();
    let dir = scratch("plain");
    let src = random_file(&dir.join("random.bin"), 6 * 1024 * 1024 + 12_345, 1);
    let out = dir.join("out");
    std::fs::create_dir(&out).expect("creating the output directory");

    let (sent, received) = transfer(&bin, &src, &out, &[]);
    assert!(
        sent.ok && received.ok,
        "sender: {sent:?}\nreceiver: {received:?}"
    );
    assert_same(&src, &out.join("random.bin"));
    assert!(
        !out.join("random.bin.part").exists(),
        "the partial file is renamed"
    );
    assert!(sent.stderr.contains("starting at byte 0 of"), "{sent:?}");
    assert!(
        received.stdout.contains("checksum verified"),
        "{received:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_transfer_resumes_where_it_stopped() {
    let bin = example_binary();
    let dir = scratch("resume");
    let size = 8 * 1024 * 1024u64;
    let src = random_file(&dir.join("big.bin"), size as usize, 2);
    let out = dir.join("out");
    std::fs::create_dir(&out).expect("creating the output directory");
    let part = out.join("big.bin.part");
    let mib = 1024 * 1024;

    // First run, at 2 MB/s (about 4 s): the receiver is killed once it holds 1 MiB; the
    // sender must notice by itself (ICE fails) and exit with an error.
    let (receiver, sender) = interrupted_run(&bin, &src, &out, &part, mib);
    drop(receiver);
    let sender = sender.finish();
    assert_eq!(
        sender.code,
        Some(1),
        "the sender fails on its own: {sender:?}"
    );
    let held1 = partial(&part, size);

    // Second run, from the partial file on; the sender is killed once the receiver holds
    // 1 MiB more, and the receiver must exit with an error by itself.
    let (receiver, sender) = interrupted_run(&bin, &src, &out, &part, held1 + mib);
    drop(sender);
    let receiver = receiver.finish();
    assert_eq!(
        receiver.code,
        Some(1),
        "the receiver fails on its own: {receiver:?}"
    );
    assert!(
        receiver.stderr.contains("run again to resume"),
        "{receiver:?}"
    );
    assert!(
        receiver.stderr.contains(&format!("from byte {held1}")),
        "the second run resumed at {held1}: {receiver:?}"
    );
    let held2 = partial(&part, size);
    assert!(
        held2 > held1,
        "{held2} bytes after the second run, {held1} before"
    );

    // Third run, from the partial file on, to the end.
    let (sent, received) = transfer(&bin, &src, &out, &[]);
    assert!(
        sent.ok && received.ok,
        "sender: {sent:?}\nreceiver: {received:?}"
    );
    let resumed = format!("starting at byte {held2} of {size}");
    assert!(sent.stderr.contains(&resumed), "want {resumed:?}: {sent:?}");
    assert!(
        received.stdout.contains(&format!("(from byte {held2})")),
        "{received:?}"
    );
    assert_same(&src, &out.join("big.bin"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A transfer at 2 MB/s, interrupted (nothing killed yet) once `part` holds `until` bytes;
/// returns the receiver and the sender, both still running.
fn interrupted_run(bin: &Path, src: &Path, out: &Path, part: &Path, until: u64) -> (Proc, Proc) {
    let (mut receiver, addr) = start_receiver(bin, out);
    let mut sender = Proc::spawn(
        Command::new(bin)
            .arg("send")
            .arg(src)
            .args(["--to", &addr, "--rate", "2000000"]),
    );
    let deadline = Instant::now() + TRANSFER_LIMIT;
    loop {
        if std::fs::metadata(part).map_or(0, |m| m.len()) >= until {
            return (receiver, sender);
        }
        if !(sender.running() && receiver.running()) {
            panic!(
                "the run ended before it was interrupted:\nsender: {:?}\nreceiver: {:?}",
                sender.finish(),
                receiver.finish()
            );
        }
        assert!(Instant::now() < deadline, "no progress to {until} bytes");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The length of the partial file, which must hold part of the file only.
fn partial(part: &Path, size: u64) -> u64 {
    let held = std::fs::metadata(part).expect("the partial file").len();
    assert!(held > 0 && held < size, "partial file of {held} bytes");
    assert!(!part.with_extension("").exists(), "no complete file yet");
    held
}

#[test]
fn a_partial_file_of_another_file_restarts_from_zero() {
    let bin = example_binary();
    let dir = scratch("mismatch");
    let src = random_file(&dir.join("data.bin"), 3 * 1024 * 1024, 3);
    let out = dir.join("out");
    std::fs::create_dir(&out).expect("creating the output directory");
    // 1 MiB that is not the file's first MiB.
    random_file(&out.join("data.bin.part"), 1024 * 1024, 4);

    let (sent, received) = transfer(&bin, &src, &out, &[]);
    assert!(
        sent.ok && received.ok,
        "sender: {sent:?}\nreceiver: {received:?}"
    );
    assert!(sent.stderr.contains("starting at byte 0 of"), "{sent:?}");
    assert_same(&src, &out.join("data.bin"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_exit_with_code_2() {
    let bin = example_binary();
    for args in [
        &[][..],
        &["send", "x"],
        &["send", "x", "--to", "nowhere"],
        &["receive", ".", "--bogus", "1"],
        &["receive", ".", "--rate", "0"],
        &["fetch", "x"],
    ] {
        let status = Proc::spawn(Command::new(&bin).args(args)).finish();
        assert_eq!(status.code, Some(2), "{args:?}: {status:?}");
    }
}

/// What a finished process said.
#[derive(Debug)]
struct Finished {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A process of the example; killed by PID on drop if still running.
struct Proc {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: thread::JoinHandle<String>,
    lines: Vec<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running the example");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Self {
            child,
            stdout,
            stderr,
            lines: Vec::new(),
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The next stdout line, within `limit`.
    fn line(&mut self, limit: Duration) -> Option<String> {
        let line = self.stdout.recv_timeout(limit).ok()?;
        self.lines.push(line.clone());
        Some(line)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to end (killing it after [`TRANSFER_LIMIT`]).
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + TRANSFER_LIMIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    self.kill();
                    break None;
                }
            }
        };
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            self.lines.push(line);
        }
        let stderr = std::mem::replace(&mut self.stderr, thread::spawn(String::new));
        let mut stderr = stderr.join().unwrap_or_default();
        if status.is_none() {
            stderr.push_str("\n[killed by the test after its time limit]");
        }
        Finished {
            ok: status.is_some_and(|s| s.success()),
            code: status.and_then(|s| s.code()),
            stdout: self.lines.join("\n"),
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.kill();
        }
    }
}

/// A receiver into `out`, on an ephemeral port; returns it and its rendezvous address.
fn start_receiver(bin: &Path, out: &Path) -> (Proc, String) {
    let mut receiver = Proc::spawn(
        Command::new(bin)
            .arg("receive")
            .arg(out)
            .args(["--listen", "127.0.0.1:0"]),
    );
    let Some(line) = receiver.line(Duration::from_secs(30)) else {
        panic!("no address from the receiver: {:?}", receiver.finish());
    };
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (receiver, addr)
}

/// One complete run: a receiver into `out`, a sender of `src`.
fn transfer(bin: &Path, src: &Path, out: &Path, send_args: &[&str]) -> (Finished, Finished) {
    let (receiver, addr) = start_receiver(bin, out);
    let sender = Proc::spawn(
        Command::new(bin)
            .arg("send")
            .arg(src)
            .args(["--to", &addr])
            .args(send_args),
    );
    (sender.finish(), receiver.finish())
}

/// Builds the example with this test's features and profile (so the library is not
/// rebuilt) and returns the binary.
fn example_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let features: Vec<&str> = [
            ("runtime-tokio", cfg!(feature = "runtime-tokio")),
            ("runtime-smol", cfg!(feature = "runtime-smol")),
            ("runtime-async-std", cfg!(feature = "runtime-async-std")),
            ("runtime-embassy", cfg!(feature = "runtime-embassy")),
            ("runtime-sim", cfg!(feature = "runtime-sim")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "build",
            "--example",
            "file-transfer",
            "--message-format=json-render-diagnostics",
            "--no-default-features",
        ]);
        // Without the variables `cargo test` sets for this test: build scripts watch some
        // (ring's watches CARGO_MANIFEST_DIR), and seeing them would rebuild half the
        // dependency tree, here and again in the next plain `cargo` command.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    &*name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                )
            {
                cmd.env_remove(&*name);
            }
        }
        if !features.is_empty() {
            cmd.arg("--features").arg(features.join(","));
        }
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let mut build = Proc::spawn(&mut cmd);
        let mut executable = None;
        let deadline = Instant::now() + BUILD_LIMIT;
        while let Some(line) = build.line(deadline.saturating_duration_since(Instant::now())) {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if message["reason"] == "compiler-artifact"
                && message["target"]["name"] == "file-transfer"
                && let Some(exe) = message["executable"].as_str()
            {
                executable = Some(PathBuf::from(exe));
            }
        }
        let built = build.finish();
        assert!(built.ok, "building the example failed: {}", built.stderr);
        executable.unwrap_or_else(|| panic!("cargo named no executable: {}", built.stdout))
    })
    .clone()
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "webrtc-streams-file-transfer-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// `len` pseudo-random bytes (xorshift from `seed`) written to `path`.
fn random_file(path: &Path, len: usize, seed: u64) -> PathBuf {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::write(path, &bytes).expect("writing a test file");
    path.to_owned()
}

fn assert_same(a: &Path, b: &Path) {
    let (x, y) = (
        std::fs::read(a).expect("reading the source"),
        std::fs::read(b).unwrap_or_else(|e| panic!("{}: {e}", b.display())),
    );
    assert_eq!(x.len(), y.len(), "sizes differ");
    let first = x.iter().zip(&y).position(|(p, q)| p != q);
    assert!(first.is_none(), "first difference at byte {first:?}");
}
