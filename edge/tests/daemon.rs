//! `--daemon` (systemd's `Type=forking`): the launcher exits 0 only once the daemon has written
//! its whole pid file and serves, with the daemon's own status when the daemon fails first, and a
//! daemonized upgrade hands the sockets over as `edge-reload` drives it.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// A daemon, SIGKILLed on drop (it is nobody's child: the launcher's guard does not reach it).
struct Daemon(u32);

impl Drop for Daemon {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = onebox_testkit::signal(self.0, onebox_testkit::signal_named("KILL").unwrap());
        }
    }
}

fn alive(pid: u32) -> bool {
    !matches!(onebox_testkit::process_state(pid), None | Some('Z'))
}

/// Starts `onebox-edge --daemon` with `args` and its output in `log` (the daemon keeps writing
/// there); the launcher, unwaited.
fn launcher(site: &Site, args: &[&str], log: &str) -> Proc {
    let mut cmd = Command::new(common::edge_binary());
    cmd.arg("--config")
        .arg(site.config())
        .arg("--daemon")
        .args(args);
    spawn(cmd, &site.path(log))
}

/// The launcher's exit status, within 30 s.
fn exit_of(launcher: &mut Proc) -> ExitStatus {
    launcher
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "the launcher still runs after 30 s:\n{}",
                launcher.log_text()
            )
        })
}

/// The pid in the pid file, which must be whole: digits and a newline.
fn pid_file(site: &Site) -> u32 {
    let path = site.path("state/edge.pid");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} when the launcher had exited", path.display()));
    text.strip_suffix('\n')
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{}: {text:?} is not a pid and a newline", path.display()))
}

/// The session id of process `pid` (field 6 of /proc/PID/stat).
fn session_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap()
}

fn redirect_code(site: &Site) -> String {
    let out = site.curl(&["-o", "/dev/null", "-w", "%{http_code}", &site.http("/x")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_launcher_exits_once_the_daemon_has_written_its_pid_file() {
    let upstream = Upstream::start();
    let site = Site::new(Ports::new(), upstream.port, "\n[edge.acme]\nca = \"off\"\n");
    let mut previous = None;
    for round in 0..3 {
        let mut launcher = launcher(&site, &[], &format!("daemon{round}.log"));
        let status = exit_of(&mut launcher);
        assert!(status.success(), "{status}:\n{}", launcher.log_text());
        // The pid file is whole the moment the launcher is gone, and names a live process of a
        // session of its own: the daemon.
        let pid = pid_file(&site);
        let daemon = Daemon(pid);
        assert!(alive(pid), "pid {pid} from the pid file is not running");
        assert_ne!(pid, launcher.pid());
        assert_ne!(
            Some(pid),
            previous,
            "the pid file still names the last round's daemon"
        );
        assert_eq!(
            session_of(pid),
            pid,
            "the daemon does not lead its own session"
        );
        wait_until(20, "the daemon to listen", || site.listening());
        assert_eq!(redirect_code(&site), "308", "{}", launcher.log_text());
        // SIGTERM stops it (pingora's graceful stop): the next round takes the same ports.
        signal(pid, "TERM");
        wait_until(20, "the daemon to stop on SIGTERM", || !alive(pid));
        drop(daemon);
        previous = Some(pid);
    }
}

#[test]
fn a_daemon_that_fails_before_it_is_ready_fails_its_launcher_with_its_status() {
    let upstream = Upstream::start();
    let site = Site::new(Ports::new(), upstream.port, "\n[edge.acme]\nca = \"off\"\n");
    let _taken = TcpListener::bind(("127.0.0.1", site.ports.https)).unwrap();
    let mut launcher = launcher(&site, &[], "daemon.log");
    let status = exit_of(&mut launcher);
    let log = launcher.log_text();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{}", site.ports.https)),
        "{log}"
    );
    assert!(
        !site.path("state/edge.pid").exists(),
        "a pid file from a daemon that failed"
    );
}

#[test]
fn a_daemonized_upgrade_hands_the_sockets_over_as_edge_reload_does() {
    let upstream = Upstream::start();
    let site = Site::new(
        Ports::new(),
        upstream.port,
        "\n[edge.upgrade]\ngrace_period_secs = 1\nshutdown_timeout_secs = 5\n\n[edge.acme]\nca = \"off\"\n",
    );
    let mut first = launcher(&site, &[], "old.log");
    assert!(exit_of(&mut first).success(), "{}", first.log_text());
    let old = Daemon(pid_file(&site));
    wait_until(20, "the old daemon to listen", || {
        TcpStream::connect(("127.0.0.1", site.ports.http)).is_ok()
    });

    // edge-reload's steps: the new process waits on the upgrade socket; SIGQUIT to the old one.
    let mut second = launcher(&site, &["--upgrade"], "new.log");
    let socket = site.path("state/upgrade.sock");
    wait_until(20, "the new process's upgrade socket", || socket.exists());
    assert!(
        second.running(),
        "the launcher exited before the sockets came: {}",
        second.log_text()
    );
    signal(old.0, "QUIT");
    let status = exit_of(&mut second);
    assert!(status.success(), "{status}:\n{}", second.log_text());
    let new = Daemon(pid_file(&site));
    assert_ne!(new.0, old.0, "the pid file still names the old daemon");
    assert!(alive(new.0));
    assert_eq!(redirect_code(&site), "308", "{}", second.log_text());
    wait_until(30, "the old daemon to finish and exit", || !alive(old.0));
    assert_eq!(redirect_code(&site), "308", "{}", second.log_text());
    assert!(alive(new.0), "{}", second.log_text());
}
