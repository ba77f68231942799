//! Network namespaces for tests: running code and child processes inside a named namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole life,
//! whichever thread uses it later. [`in_netns`] runs a closure on a fresh thread that first
//! joins the namespace (`setns(CLONE_NEWNET)` on `/var/run/netns/NAME`), so every socket the
//! closure creates lives in that namespace; the thread ends with the closure and the test
//! process itself never changes namespace.
#![allow(dead_code)]

use std::{io, os::fd::AsRawFd, path::PathBuf, process::Command};

/// Where `ip netns add NAME` puts the namespace handle.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// Runs `f` on a new thread that has joined network namespace `name` (created with
/// `ip netns add`), and returns its result. Sockets created by `f` stay in that namespace.
pub fn in_netns<T, F>(name: &str, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = netns_path(name);
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
            // SAFETY: `setns` with a valid namespace fd affects only this (scoped) thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("setns into {} (needs root): {e}", path.display()),
                ));
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// `cmd` wrapped so that it runs inside namespace `netns` (`ip netns exec NETNS ...`), or
/// `cmd` itself when `netns` is `None`. `ip netns exec` execs the program, so the child's pid
/// is the program's.
pub fn command_in(netns: Option<&str>, cmd: Command) -> Command {
    let Some(ns) = netns else {
        return cmd;
    };
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}
