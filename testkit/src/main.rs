//! `onebox-testkit`: the test kit's servers for shell scripts, started the way the Rust tests
//! start them.
//!
//! - `onebox-testkit mariadb DIR`: a private MariaDB in DIR (datadir `DIR/data`, kept; socket
//!   `DIR/mysqld.sock`), until SIGTERM/SIGINT, then a clean shutdown.
//! - `onebox-testkit pebble DIR`: pebble + pebble-challtestsrv with their files in DIR.
//! - `onebox-testkit with-mariadb CMD...`: CMD with `ONEBOX_TEST_MYSQL_URL` naming a private
//!   MariaDB that lives as long as CMD.
//!
//! Once its server answers, `mariadb` and `pebble` print one line on standard output, `ready`
//! and then `key=value` pairs separated by spaces (values have no spaces: such a DIR is refused),
//! e.g. `ready socket=/x/mysqld.sock url=mysql://me@localhost/?socket=/x/mysqld.sock pid=42`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use onebox_testkit::{MariaDb, Pebble, PebblePorts, try_free_port};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Parser)]
#[command(version, about = "The onebox test kit's servers for shell scripts")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a private MariaDB in DIR until SIGTERM/SIGINT: unix socket DIR/mysqld.sock only,
    /// the current user authenticated by unix_socket; prints
    /// `ready socket=PATH url=URL pid=PID` once it accepts connections.
    Mariadb {
        /// Its directory: datadir DIR/data (initialised when missing, kept), socket, log.
        dir: PathBuf,
        /// Remove DIR entirely when stopping.
        #[arg(long)]
        ephemeral: bool,
    },
    /// Runs pebble and pebble-challtestsrv (every name → 127.0.0.1) with their files in DIR
    /// until SIGTERM/SIGINT; prints `ready directory=URL directory_ca=PATH roots=PATH
    /// management=PORT dns=PORT` once pebble answers (ports default to free ones).
    Pebble {
        /// Its directory: pebble's certificate and key, configuration, logs, roots.pem.
        dir: PathBuf,
        /// The port pebble validates HTTP-01 challenges on.
        #[arg(long)]
        http_port: u16,
        /// The port pebble validates TLS-ALPN-01 challenges on.
        #[arg(long)]
        tls_port: u16,
        /// The ACME directory's port.
        #[arg(long)]
        directory_port: Option<u16>,
        /// pebble's management API port (the roots).
        #[arg(long)]
        management_port: Option<u16>,
        /// challtestsrv's DNS port (UDP and TCP).
        #[arg(long)]
        dns_port: Option<u16>,
        /// challtestsrv's management API port.
        #[arg(long)]
        dns_management_port: Option<u16>,
    },
    /// Runs CMD with ONEBOX_TEST_MYSQL_URL=mysql://USER@localhost/?socket=PATH naming a private
    /// MariaDB in a temporary directory, removed afterwards; exits with CMD's status. When
    /// ONEBOX_TEST_MYSQL_URL is set already, CMD runs against that server.
    WithMariadb {
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("onebox-testkit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    // Registered before any server starts, so that a SIGTERM during the start is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?;
    match cmd {
        Cmd::Mariadb { dir, ephemeral } => {
            plain(&dir)?;
            let mut db = MariaDb::start_in(&dir)?;
            ready(&[
                ("socket", db.socket().display().to_string()),
                ("url", db.url()),
                ("pid", db.pid().unwrap_or_default().to_string()),
            ])?;
            let ended = until_signal(&mut signals, || db.running());
            db.stop();
            drop(db);
            if ephemeral {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            if !ended {
                bail!(
                    "mariadbd exited by itself; its log is {}",
                    dir.join("mariadbd.log").display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pebble {
            dir,
            http_port,
            tls_port,
            directory_port,
            management_port,
            dns_port,
            dns_management_port,
        } => {
            plain(&dir)?;
            let port = |p: Option<u16>| p.map_or_else(try_free_port, Ok);
            let ports = PebblePorts {
                directory: port(directory_port)?,
                management: port(management_port)?,
                dns: port(dns_port)?,
                dns_management: port(dns_management_port)?,
                http: http_port,
                tls: tls_port,
            };
            let mut pebble = Pebble::start_in(&dir, ports)?;
            let roots = pebble.dir().join("roots.pem");
            pebble.write_roots(&roots)?;
            ready(&[
                ("directory", pebble.directory_url()),
                ("directory_ca", pebble.directory_ca().display().to_string()),
                ("roots", roots.display().to_string()),
                ("management", ports.management.to_string()),
                ("dns", ports.dns.to_string()),
            ])?;
            let ended = until_signal(&mut signals, || pebble.running());
            drop(pebble);
            if !ended {
                bail!(
                    "pebble or challtestsrv exited by itself; logs in {}",
                    dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::WithMariadb { cmd } => with_mariadb(&mut signals, &cmd),
    }
}

/// Refuses a directory whose path the `ready` line could not carry.
fn plain(dir: &Path) -> anyhow::Result<()> {
    let text = dir
        .to_str()
        .with_context(|| format!("{} is not UTF-8", dir.display()))?;
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the directory {text:?} has whitespace in its path: pick another");
    }
    Ok(())
}

/// Prints the `ready` line.
fn ready(pairs: &[(&str, String)]) -> anyhow::Result<()> {
    let mut line = String::from("ready");
    for (key, value) in pairs {
        line.push_str(&format!(" {key}={value}"));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Waits for SIGTERM or SIGINT (`true`), or until `alive` says the server died (`false`).
fn until_signal(signals: &mut Signals, mut alive: impl FnMut() -> bool) -> bool {
    loop {
        if signals.pending().next().is_some() {
            return true;
        }
        if !alive() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `with-mariadb CMD...`.
fn with_mariadb(signals: &mut Signals, cmd: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    let (program, args) = cmd.split_first().context("no command given")?;
    let mut db = None;
    if std::env::var_os(onebox_testkit::URL_VAR).is_none() {
        db = Some(MariaDb::start()?);
    }
    let mut command = std::process::Command::new(program);
    command.args(args);
    if let Some(db) = &db {
        command.env(onebox_testkit::URL_VAR, db.url());
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        for sig in signals.pending() {
            // SIGINT from a terminal reached the command too; a SIGTERM is passed on.
            if sig == SIGTERM {
                let _ = onebox_testkit::signal(child.id(), onebox_testkit::Signal::TERM);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(db);
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
