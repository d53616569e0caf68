//! onebox-edge: the onebox HTTP/HTTPS front door.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

// mimalloc: glibc's malloc and free were an eighth of the edge's CPU time per proxied request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Fork into the background (systemd's Type=forking), after taking over the sockets when
    /// upgrading; the daemon's pid goes to <state_dir>/edge.pid.
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Every TLS configuration names its provider; this default is for any library code that
    // asks for the process's (the test build links ring too, so none would be picked).
    let _ = rustls::crypto::CryptoProvider::install_default(
        rustls::crypto::aws_lc_rs::default_provider(),
    );
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let result = match cli.command {
        Some(Command::Check) => onebox_edge::server::check(&cli.config),
        None => onebox_edge::server::run(&cli.config, cli.upgrade, cli.daemon),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onebox-edge: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
