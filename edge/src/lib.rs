//! onebox-edge: the onebox HTTP/HTTPS front door on pingora, with certificates from ACME
//! (rustls-acme), static files from a web root, and a health-checked reverse proxy to the app.
//!
//! One module per concept: [`config`] (the `[edge]` section), [`server`] (assembling the pingora
//! server), [`proxy`] (the request logic as pingora phase hooks), [`static_files`],
//! [`file_cache`] (small static files in memory), [`limits`] (per request), [`connections`]
//! (per connection), [`header_deadline`] (slowloris and oversized HTTP/1 headers), [`tls`] (the
//! HTTPS listener and certificate choice), [`acme`] (ordering and storing certificates),
//! [`page_cache`] (the app's pages in pingora's cache) and [`page_store`] (its storage),
//! [`keepalive`] (HTTP/1 connections between requests), [`fast_path`] (plain HTTP/1.1 requests
//! answered without a pingora session) and [`fast_proxy`] (the edge's own client for plain
//! requests for the app: the fast path's, and HTTP/2's from the proxy's `request_filter`) with
//! [`app_answer`] (the head of a plain answer of the app, read without pingora's client session),
//! [`metrics`], [`logging`], [`memcpy`] (glibc's copies on AMD processors).

pub mod acme;
pub mod acme_account;
pub mod app_answer;
pub mod config;
pub mod connections;
pub mod daemon;
pub mod error;
pub mod fast_path;
pub mod fast_proxy;
pub mod file_cache;
pub mod header_deadline;
pub mod keepalive;
pub mod limits;
pub mod logging;
pub mod memcpy;
pub mod memory;
pub mod metrics;
pub mod page_cache;
pub mod page_store;
pub mod proxy;
pub mod server;
pub mod static_files;
pub mod tls;
pub mod tls_idle;
pub mod web_root;

pub use error::EdgeError;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The onebox HTTP/HTTPS front door: automatic ACME certificates, static files, reverse proxy to the app.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The site file (TOML with [site] and [edge]).
    #[arg(long, global = true, default_value = "/etc/onebox/site.toml")]
    config: PathBuf,
    /// Take over the listening sockets of a running edge (zero-downtime upgrade): start the new
    /// process with -u, then send SIGQUIT to the old one.
    #[arg(short = 'u', long)]
    upgrade: bool,
    /// Fork into the background (systemd's Type=forking): this process exits 0 once the daemon
    /// has loaded the site file, taken the sockets (over the upgrade socket when upgrading) and
    /// written its pid to <state_dir>/edge.pid, or with the daemon's status if it failed.
    #[arg(short = 'd', long)]
    daemon: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the site file and exit (errors as file:line:column).
    Check,
}

/// The `onebox-edge` command: parses the arguments, then serves or checks the site file (the
/// `onebox-edge` binary, and the `onebox` binary when started under that name).
pub fn main() -> std::process::ExitCode {
    // No transparent huge pages for this process (inherited by the daemon's fork): mimalloc
    // asks for them on its arenas (`madvise`), and Debian's kernel gives them to every large
    // enough mapping anyway (`always`); idle connections' memory is spread over the arenas,
    // and one 2 MiB page for a few KiB held made an idle HTTP/2 connection cost 56 KiB of RSS
    // instead of 40 (`tests/connections.rs`). Before the first large allocation.
    let thp = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    // Before anything starts a thread, when serving: on an AMD processor this starts the edge
    // again with glibc's copies tuned, and returns only if that failed (said below, once there
    // is a log).
    let retuned = cli.command.is_none().then(memcpy::prefer_vector_copies);
    // Before anything starts a thread: see `daemon`.
    let daemon = match (&cli.command, cli.daemon) {
        (None, true) => match daemon::fork() {
            Ok(daemon::Forked::Launcher(code)) => return code,
            Ok(daemon::Forked::Daemon(ready)) => Some(ready),
            Err(e) => {
                eprintln!("onebox-edge: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    // Every TLS configuration names its provider; this default is for any library code that
    // asks for the process's (the test build links ring too, so none would be picked).
    let _ = rustls::crypto::CryptoProvider::install_default(
        rustls::crypto::aws_lc_rs::default_provider(),
    );
    logging::init();
    match retuned {
        Some(Err(e)) => tracing::warn!(
            "glibc keeps copying with rep movsb on this AMD processor (starting again with GLIBC_TUNABLES: {e}): large responses cost more CPU"
        ),
        Some(Ok(())) => {
            if let Some(copies) = memcpy::in_effect() {
                tracing::info!("{copies}");
            }
        }
        None => {}
    }
    if let Err(e) = thp {
        tracing::warn!(
            "transparent huge pages stay allowed for the edge (prctl PR_SET_THP_DISABLE: {e}): idle connections cost more memory"
        );
    }
    let result = match cli.command {
        Some(Command::Check) => server::check(&cli.config),
        None => server::run(&cli.config, cli.upgrade, daemon),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onebox-edge: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
