//! What the onebox tests and scripts share, so that each test crate stops re-implementing it:
//!
//! - [`free_port`]: a loopback port free for TCP and UDP, below the kernel's ephemeral range and
//!   free of sockets in any state; [`wait_until`]: polling with a deadline and a message;
//! - [`ChildGuard`]: a child process with its output in a log file, killed and reaped when
//!   dropped, and killed by the kernel when the test process dies, even when a `static` holds it;
//! - [`temp_dir`]: temporary directories ([`tempfile`]);
//! - [`MariaDb`]: a private mariadbd on its own unix socket, a fresh [`Database`] per test, and
//!   the outage operations (kill, freeze, restart);
//! - [`Pebble`]: Debian's pebble ACME CA with pebble-challtestsrv as its DNS, validating for real;
//! - [`TestCa`]: a throwaway CA issuing leaf certificates (rcgen), PEM out;
//! - [`program`]: which build of a onebox program a test runs (the shipped one under `just test`).
//!
//! The `onebox-testkit` binary starts the same MariaDB and pebble for shell scripts (`just up`,
//! the benchmarks): `onebox-testkit mariadb DIR`, `onebox-testkit pebble DIR`,
//! `onebox-testkit with-mariadb CMD...`.
//!
//! Functions that only a broken machine can fail ([`free_port`], [`wait_until`]) panic with a
//! message, as a test would; starting servers returns a [`Result`](anyhow::Result) whose error
//! carries the server's log.

mod mariadb;
mod pebble;
mod pki;
mod ports;
mod process;

pub use mariadb::{Database, MariaDb, URL_VAR, current_user};
pub use pebble::{Pebble, PebblePorts};
pub use pki::{Leaf, TestCa};
pub use ports::{free_port, try_free_port};
pub use process::{
    ChildGuard, Signal, Stop, process_state, remove_at_exit, signal, signal_named, try_wait_until,
    wait_until,
};
pub use tempfile;

/// A fresh temporary directory named `onebox-WHAT-XXXXXX`, removed when dropped.
///
/// # Panics
/// When the system's temporary directory is not writable.
#[allow(clippy::panic)] // A test kit fails the test, with the reason.
pub fn temp_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("onebox-{what}-"))
        .tempdir()
        .unwrap_or_else(|e| {
            panic!(
                "cannot create a temporary directory in {}: {e}",
                std::env::temp_dir().display()
            )
        })
}

/// The environment variable naming the directory of the onebox build to run: `just build` makes
/// `target/dist` (the link-time optimised `onebox` the image ships, under each program's name),
/// which `just test-rust`, the scripts and the benchmarks run.
pub const BIN_VAR: &str = "ONEBOX_BIN";

/// The onebox program `name` (`onebox`, `onebox-dns`, `onebox-edge`, `onebox-app`) as a test runs
/// it: `$ONEBOX_BIN/name` when [`BIN_VAR`] is set, so that the tests run the build the image
/// ships, else `built`, the binary cargo built beside the test (`env!("CARGO_BIN_EXE_<name>")`).
///
/// # Panics
/// When `ONEBOX_BIN` is set and holds no file `name`: a test must not silently run another build.
#[allow(clippy::panic)] // A test kit fails the test, with the reason.
pub fn program(name: &str, built: &str) -> std::path::PathBuf {
    match std::env::var_os(BIN_VAR) {
        Some(dir) if !dir.is_empty() => {
            let path = std::path::Path::new(&dir).join(name);
            if !path.is_file() {
                panic!(
                    "{BIN_VAR}={} holds no {name}: run `just build`, or unset {BIN_VAR} to test {built}",
                    std::path::Path::new(&dir).display()
                );
            }
            path
        }
        _ => std::path::PathBuf::from(built),
    }
}

/// The last `lines` lines of `text` (for failure messages).
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
