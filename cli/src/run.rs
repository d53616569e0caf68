//! Running an outside program (restic, mariadb-dump, systemctl) bounded in time: its own process
//! group, killed whole (ssh under restic too) when the time is up.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished program left.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl Finished {
    /// The last `lines` lines of standard error, for a message.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(lines)..].join("; ")
    }
}

/// Runs `cmd` (stdin: null unless set) for at most `timeout`; output is collected in full.
/// After the time is up the whole process group is killed and the error says so.
pub fn bounded(cmd: &mut Command, timeout: Duration, what: &str) -> anyhow::Result<Finished> {
    cmd.stdout(Stdio::piped());
    bounded_to(cmd, timeout, what)
}

/// [`bounded`] for a command whose standard output is set already (a file): `stdout` is empty.
pub fn bounded_to(cmd: &mut Command, timeout: Duration, what: &str) -> anyhow::Result<Finished> {
    cmd.stderr(Stdio::piped());
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {what}: {e}"))?;
    let pid = child.id();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_thread = reader(out.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err_thread = reader(err.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    };
    let Some(status) = status else {
        if let Some(pid) = rustix::process::Pid::from_raw(pid.cast_signed()) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!(
            "{what} did not finish within {} s and was stopped",
            timeout.as_secs()
        );
    };
    // Children left in the group (an ssh restic started) go with it.
    if let Some(pid) = rustix::process::Pid::from_raw(pid.cast_signed()) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    Ok(Finished {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}
