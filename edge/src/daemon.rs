//! `--daemon`: the edge goes into the background as systemd's `Type=forking` expects, and the
//! process that started it (the launcher) exits only once the daemon is ready.
//!
//! The fork happens first thing in `main`, while the process has one thread: a child forked from
//! a process with more threads inherits whatever locks those held at that instant (the allocator's,
//! a logger's) with nobody left to release them. pingora's own daemon mode forks late, after its
//! timer thread has started, and its launcher exits before the daemon has written its pid file:
//! a systemd that read that file in between saw it empty, and since the file is written without
//! being closed no change it watches for followed, so the start hung until its timeout (seen in
//! the VM suite, with a daemon that also stopped reacting to SIGTERM).
//!
//! Here the launcher waits on a pipe. The daemon loads the site file, takes the listening
//! sockets (over the upgrade socket when upgrading), writes its pid file whole (written to a
//! temporary name and renamed over the old one) and then sends one byte: the launcher exits 0.
//! A daemon that exits before that closes the pipe, and the launcher exits with the daemon's own
//! status, its error already on the shared standard error.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// The byte a ready daemon sends its launcher.
const READY: u8 = b'R';

/// Why the edge could not go into the background.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// More than one thread at the fork: the daemon could inherit locks no thread will release.
    #[error("cannot fork into the background with {0} threads running (only with one)")]
    Threads(usize),
    /// The thread count could not be read.
    #[error("cannot count this process's threads in /proc/self/task: {0}")]
    ThreadCount(std::io::Error),
    /// The launcher's pipe, the fork or the new session failed.
    #[error("cannot fork into the background: {what}: {source}")]
    Fork {
        /// The step that failed.
        what: &'static str,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The pid file could not be written.
    #[error("{}: cannot write the pid file: {source}", path.display())]
    PidFile {
        /// The pid file.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The daemon could not leave its working directory for `/`.
    #[error("cannot change the working directory to /: {0}")]
    Chdir(std::io::Error),
    /// The launcher went away before the daemon was ready.
    #[error("cannot tell the launcher that the edge is ready: {0}")]
    Notify(std::io::Error),
}

/// Which side of the fork this process is.
pub enum Forked {
    /// The launcher, done: its exit code (0 once the daemon was ready, else the daemon's).
    Launcher(ExitCode),
    /// The daemon, which calls [`Ready::ready`] once it serves.
    Daemon(Ready),
}

/// The daemon's end of the launcher's pipe.
pub struct Ready {
    pipe: std::io::PipeWriter,
}

/// Forks: the child becomes the daemon (a new session, standard input from `/dev/null`,
/// standard output and error kept: the journal's stream under systemd); the parent waits until
/// the daemon is ready or has exited. Refuses if the process has more than one thread.
pub fn fork() -> Result<Forked, DaemonError> {
    let threads = thread_count().map_err(DaemonError::ThreadCount)?;
    if threads != 1 {
        return Err(DaemonError::Threads(threads));
    }
    let fork_error = |what| move |source| DaemonError::Fork { what, source };
    let (mut reader, writer) = std::io::pipe().map_err(fork_error("pipe"))?;
    let null = std::fs::File::open("/dev/null").map_err(fork_error("/dev/null"))?;
    // SAFETY: the process has one thread (checked above), so the child is a complete copy of it
    // and may go on running any code.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(fork_error("fork")(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(reader);
        rustix::process::setsid().map_err(|e| fork_error("setsid")(e.into()))?;
        rustix::stdio::dup2_stdin(&null).map_err(|e| fork_error("stdin")(e.into()))?;
        // pingora's daemon mode did this too: the group may read what the edge writes.
        rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o007));
        return Ok(Forked::Daemon(Ready { pipe: writer }));
    }
    drop(writer);
    Ok(Forked::Launcher(wait_for_daemon(&mut reader, pid)))
}

/// The launcher's wait: 0 on the ready byte; once the pipe closes without it, the daemon's own
/// exit status (1 if it was killed by a signal or reported success without being ready).
fn wait_for_daemon(reader: &mut std::io::PipeReader, pid: libc::pid_t) -> ExitCode {
    let mut byte = [0u8; 1];
    let ready = loop {
        match reader.read(&mut byte) {
            Ok(n) => break n == 1 && byte[0] == READY,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("onebox-edge: waiting for the daemon (pid {pid}): {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    if ready {
        return ExitCode::SUCCESS;
    }
    let status = loop {
        let daemon = rustix::process::Pid::from_raw(pid);
        match rustix::process::waitpid(daemon, rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => break status,
            Err(rustix::io::Errno::INTR) => continue,
            // (`None` is WNOHANG's "still running": not asked for, so not retried either.)
            Ok(None) => {
                eprintln!("onebox-edge: waiting for the daemon (pid {pid}): no exit status");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("onebox-edge: waiting for the daemon (pid {pid}): {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) if code != 0 => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (_, Some(signal)) => {
            eprintln!("onebox-edge: the daemon was killed by signal {signal} before it was ready");
            ExitCode::FAILURE
        }
        _ => {
            eprintln!("onebox-edge: the daemon exited before it was ready");
            ExitCode::FAILURE
        }
    }
}

impl Ready {
    /// Writes this process's pid to `pid_file` whole (a temporary file renamed over it), changes
    /// to `/` (a daemon holds no directory) and lets the launcher exit 0.
    pub fn ready(mut self, pid_file: &Path) -> Result<(), DaemonError> {
        let pid_error = |source| DaemonError::PidFile {
            path: pid_file.to_path_buf(),
            source,
        };
        let mut temporary = pid_file.as_os_str().to_owned();
        temporary.push(".new");
        std::fs::write(&temporary, format!("{}\n", std::process::id())).map_err(pid_error)?;
        std::fs::rename(&temporary, pid_file).map_err(pid_error)?;
        std::env::set_current_dir("/").map_err(DaemonError::Chdir)?;
        self.pipe.write_all(&[READY]).map_err(DaemonError::Notify)
    }
}

/// How many threads this process has.
fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_process_with_more_than_one_thread_is_not_forked() {
        // A second thread, alive until `stop` is dropped.
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || wait.recv());
        match fork() {
            Err(DaemonError::Threads(n)) => assert!(n >= 2, "{n} threads"),
            Err(e) => panic!("another error: {e}"),
            Ok(Forked::Launcher(_)) => panic!("forked"),
            Ok(Forked::Daemon(_)) => std::process::exit(101),
        }
        drop(stop);
        other.join().unwrap().unwrap_err();
    }
}
