//! Child processes that never outlive the test: [`ChildGuard`], signals, [`wait_until`], and
//! [`remove_at_exit`] for the directories of servers a `static` holds.
//!
//! Every guarded child gets the parent-death signal SIGKILL (`PR_SET_PDEATHSIG`). Linux sends it
//! when the *thread* that forked the child ends, not the process; test threads end after each
//! test, so a server shared through a `OnceLock` would die with the first test that used it.
//! So every child is forked by one spawner thread that lives as long as the process: the
//! children die exactly when the test process does, however it ends (even SIGKILL).

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use rustix::process::{Pid, kill_process, kill_process_group};

/// How a [`ChildGuard`] ends its child when dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL at once (the default: the child's state is thrown away with the test).
    #[default]
    Kill,
    /// SIGTERM, then SIGKILL if it has not exited within the given time (a server that must
    /// shut down cleanly, or whose main process reaps its own children).
    Term(Duration),
}

/// A child process with its standard output and error in a log file; killed and reaped when
/// dropped, and killed by the kernel when this process dies.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    program: String,
    log: PathBuf,
    group: bool,
    stop: Stop,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Starts `cmd` with standard input from /dev/null and standard output and error into the
    /// file `log` (created or truncated); the child is SIGKILLed when dropped.
    pub fn spawn(cmd: Command, log: impl AsRef<Path>) -> io::Result<ChildGuard> {
        Self::spawn_with(cmd, log, false, Stop::Kill)
    }

    /// [`spawn`](Self::spawn), with the child leading a process group of its own (`group`: the
    /// signals of [`kill`](Self::kill) and of the drop then go to the whole group, its own
    /// children too) and ended on drop as `stop` says.
    pub fn spawn_with(
        mut cmd: Command,
        log: impl AsRef<Path>,
        group: bool,
        stop: Stop,
    ) -> io::Result<ChildGuard> {
        let log = log.as_ref().to_path_buf();
        let program = Path::new(cmd.get_program())
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let out = File::create(&log).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create the log {} of {program}: {e}", log.display()),
            )
        })?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if group {
            cmd.process_group(0);
        }
        die_with_this_process(&mut cmd);
        let child = spawn_from_the_spawner(cmd)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
        Ok(ChildGuard {
            child,
            program,
            log,
            group,
            stop,
            status: None,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the child wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines the child wrote (for failure messages).
    pub fn log_tail(&self) -> String {
        crate::tail(&self.log_text(), 30)
    }

    /// Its exit status once it has exited (reaping it), `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Sends `sig` to the child (to its group when it leads one). A child that has exited is
    /// not signalled (its pid may be another process's by now).
    pub fn signal(&mut self, sig: Signal) -> io::Result<()> {
        if self.exited().is_some() {
            return Err(io::Error::other(format!(
                "{} has exited; not sending {sig:?}",
                self.program
            )));
        }
        let pid = pid_of(self.pid())?;
        if self.group {
            kill_process_group(pid, sig)?;
        } else {
            kill_process(pid, sig)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (to the group when it leads one), then reaps it. Does nothing once it has exited.
    pub fn kill(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = self.signal(Signal::KILL);
        if let Ok(status) = self.child.wait() {
            self.status = Some(status);
        }
    }

    /// SIGTERM (and SIGCONT, for a stopped child), up to `grace` to exit, then [`kill`](Self::kill).
    /// When it leads a group, SIGTERM goes to the leader only (it ends its own children) and
    /// the SIGKILL to the whole group. Returns its exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exited().is_none() {
            if let Ok(pid) = pid_of(self.pid()) {
                let _ = kill_process(pid, Signal::TERM);
                let _ = kill_process(pid, Signal::CONT);
            }
            self.wait_exit(grace);
        }
        if self.group {
            // Whatever the leader left behind in its group.
            if let Ok(pid) = pid_of(self.pid()) {
                let _ = kill_process_group(pid, Signal::KILL);
            }
        }
        self.kill();
        self.status
    }

    /// Polls `f` every few milliseconds until it is true; panics after `secs` seconds, or as soon
    /// as the child exits, naming `what` and showing the child's log.
    #[allow(clippy::panic)] // A test kit fails the test, with the reason.
    pub fn wait_until(&mut self, secs: u64, what: &str, f: impl FnMut() -> bool) {
        if let Err(e) = self.try_wait_until(Duration::from_secs(secs), what, f) {
            panic!("{e}");
        }
    }

    /// [`wait_until`](Self::wait_until), with an error instead of a panic.
    pub fn try_wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if f() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                anyhow::bail!(
                    "{} exited ({status}) while waiting for {what}; its log ({}):\n{}",
                    self.program,
                    self.log.display(),
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "timed out after {:.1} s waiting for {what}; the log of {} ({}):\n{}",
                    timeout.as_secs_f64(),
                    self.program,
                    self.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        match self.stop {
            Stop::Kill => self.kill(),
            Stop::Term(grace) => {
                self.terminate(grace);
            }
        }
    }
}

fn pid_of(pid: u32) -> io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other(format!("bad pid {pid}")))
}

/// The state letter of process or thread `pid` (`R`, `S`, `T` stopped, `Z` zombie ...), read
/// from `/proc/PID/stat` (a thread's id works too); `None` when it cannot be read.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: Signal) -> io::Result<()> {
    Ok(kill_process(pid_of(pid)?, sig)?)
}

/// The signal named `name`, with or without `SIG` (`"QUIT"`, `"SIGHUP"`, …), as `kill -NAME`
/// takes it; `None` for a name it does not know.
pub fn signal_named(name: &str) -> Option<Signal> {
    Some(match name.trim_start_matches("SIG") {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "TERM" => Signal::TERM,
        "CONT" => Signal::CONT,
        "STOP" => Signal::STOP,
        "TSTP" => Signal::TSTP,
        "WINCH" => Signal::WINCH,
        _ => return None,
    })
}

/// Polls `f` every few milliseconds until it is true; panics after `secs` seconds naming `what`.
#[allow(clippy::panic)] // A test kit fails the test, with the reason.
pub fn wait_until(secs: u64, what: &str, f: impl FnMut() -> bool) {
    if let Err(e) = try_wait_until(Duration::from_secs(secs), what, f) {
        panic!("{e}");
    }
}

/// [`wait_until`] with an error ("timed out after … waiting for WHAT") instead of a panic.
pub fn try_wait_until(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {:.1} s waiting for {what}",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Makes the kernel SIGKILL the child when the thread that forks it ends; see the module docs
/// for why that thread is the process-long spawner thread.
// One of the workspace's three unsafe blocks (the others: the edge's `tls::on_this_thread` and
// its `daemon::fork`).
#[allow(unsafe_code)] // `pre_exec`, see SAFETY below.
fn die_with_this_process(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed. It makes two system calls (prctl(PR_SET_PDEATHSIG), getppid) through
    // rustix, which are async-signal-safe, touches no lock and allocates nothing (its errors are
    // plain errno values, converted to `io::Error` without allocating).
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent died between fork and prctl: the signal will never come.
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

/// A spawn request for the spawner thread.
type Job = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks `cmd` from the spawner thread, which lives as long as the process.
fn spawn_from_the_spawner(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<io::Result<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, requests) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("onebox-testkit-spawner".into())
            .spawn(move || {
                // Runs until the process exits: the sender lives in the static.
                for (mut cmd, reply) in requests {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| jobs)
    });
    let spawner = spawner
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), format!("no spawner thread: {e}")))?;
    let (reply, answer) = mpsc::channel();
    spawner
        .send((cmd, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// Removes `dir` (recursively) once this process has exited, however it exits: for the
/// directory of a server a `static` holds, which is never dropped. A janitor process (`sh`, in
/// a process group of its own so that Ctrl-C does not end it) reads the paths on a pipe; when
/// the pipe closes with this process, it removes them, retrying for up to 5 s while the
/// server killed with this process lets go of its files.
pub fn remove_at_exit(dir: &Path) -> io::Result<()> {
    static JANITOR: Mutex<Option<ChildStdin>> = Mutex::new(None);
    const SCRIPT: &str = r#"trap '' HUP INT QUIT TERM
while IFS= read -r dir; do set -- "$@" "$dir"; done
for dir do
  n=0
  while [ -e "$dir" ] && [ $n -lt 50 ]; do rm -rf -- "$dir" 2>/dev/null || sleep 0.1; n=$((n + 1)); done
done"#;
    let text = dir.to_str().filter(|s| !s.contains('\n')).ok_or_else(|| {
        io::Error::other(format!("{} cannot be passed to the janitor", dir.display()))
    })?;
    let mut janitor = JANITOR.lock().unwrap_or_else(|e| e.into_inner());
    if janitor.is_none() {
        let mut child = Command::new("sh")
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        *janitor = child.stdin.take();
        // Never waited for: it outlives this process by design and is then reaped by init.
        std::mem::forget(child);
    }
    let pipe = janitor
        .as_mut()
        .ok_or_else(|| io::Error::other("no janitor"))?;
    writeln!(pipe, "{text}")?;
    pipe.flush()
}
