//! Restarts that refuse no connection. The listening socket comes from systemd (socket
//! activation: `onebox-app.socket` holds it while the service restarts) or from the previous
//! onebox-app process (a reload), and a reload hands it on to a new process.
//!
//! `systemctl reload onebox-app` sends SIGHUP. The running process starts the binary at the path
//! it was itself started from (so a new file there is the new version) with the same arguments,
//! passing its listening socket as systemd does (`LISTEN_FDS=1`, with listenfd's
//! `LISTEN_FDS_FIRST_FD` for a descriptor other than 3). The new process opens the database,
//! applies its migrations (the old one keeps serving meanwhile) and starts accepting on the same
//! socket; it says so with its one line on standard output, which the old process reads. Only
//! then does the old process tell systemd the new main pid (`MAINPID=`) and stop: it stops
//! accepting at once (the kernel queues new connections for the new process) and finishes the
//! requests it has. A new process that fails (a broken site file, a failing migration, a crash)
//! is logged, and the old process keeps serving.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long a new process may take to serve (its database wait and migrations) before the
/// reload is given up.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The start of the one line the app prints on standard output once it accepts connections.
pub const LISTENING: &str = "onebox-app: listening on ";

/// Set for a process started by a reload: the pid of the process it takes over from.
const FROM_VAR: &str = "ONEBOX_APP_HANDOVER_FROM";

/// Takes the listening socket passed by systemd (socket activation) or by the previous process
/// (a reload), if any. Call it before any thread starts: it reads and clears `LISTEN_FDS` and
/// `LISTEN_PID`.
pub fn inherited_listener() -> std::io::Result<Option<TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 1 {
        tracing::warn!(
            "{} sockets were passed in; only the first is used",
            fds.len()
        );
    }
    fds.take_tcp_listener(0)
}

/// The pid of the process this one takes over from, when a reload started it.
pub fn predecessor() -> Option<u32> {
    std::env::var(FROM_VAR).ok()?.parse().ok()
}

/// Tells systemd (when it runs the app as `Type=notify`) `state`; nothing otherwise.
pub fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(state) {
        tracing::warn!("cannot notify systemd: {err}");
    }
}

/// What a reload needs: the binary and arguments this process started with, and its own copy
/// of the listening socket.
pub struct Reloader {
    exe: PathBuf,
    args: Vec<OsString>,
    socket: OwnedFd,
}

impl Reloader {
    /// Remembers how this process was started and copies `listener`'s descriptor.
    pub fn new(listener: &impl AsFd) -> std::io::Result<Reloader> {
        let exe = std::env::current_exe()?;
        // A binary replaced since the start reads "PATH (deleted)": the new file is at PATH.
        let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(path) => PathBuf::from(path),
            None => exe,
        };
        Ok(Reloader {
            exe,
            args: std::env::args_os().skip(1).collect(),
            socket: listener.as_fd().try_clone_to_owned()?,
        })
    }

    /// The binary a reload starts.
    pub fn exe(&self) -> &std::path::Path {
        &self.exe
    }

    /// Starts a new process on the listening socket and waits until it serves; its pid, or why
    /// it did not take over (it is stopped then, if it still runs).
    pub async fn start_successor(&self) -> Result<u32, String> {
        // A copy without close-on-exec, for the new process to inherit (dup(2) clears the flag).
        let inheritable =
            rustix::io::dup(&self.socket).map_err(|e| format!("cannot copy the socket: {e}"))?;
        let mut child = tokio::process::Command::new(&self.exe)
            .args(&self.args)
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDS_FIRST_FD", inheritable.as_raw_fd().to_string())
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env(FROM_VAR, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        drop(inheritable);
        let pid = child.id().unwrap_or(0);
        let Some(stdout) = child.stdout.take() else {
            return Err("the new process has no standard output".into());
        };
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with(LISTENING) {
                    return true;
                }
            }
            false
        })
        .await;
        match ready {
            Ok(true) => {
                // It serves on its own from now on: not killed when this handle goes.
                std::mem::forget(child);
                Ok(pid)
            }
            Ok(false) => {
                let status = child
                    .wait()
                    .await
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                Err(format!(
                    "the new process (pid {pid}) exited before serving ({status}); its log says why"
                ))
            }
            Err(_) => {
                let _ = child.kill().await;
                Err(format!(
                    "the new process (pid {pid}) did not serve within {} s and was stopped",
                    START_TIMEOUT.as_secs()
                ))
            }
        }
    }
}
