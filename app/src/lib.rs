//! onebox-app: the site's application server — users, posts and settings in MySQL.

mod admin;
mod api;
mod cli;
mod config;
mod db;
mod extract;
mod filters;
mod handover;
mod input;
mod linger;
mod markdown;
mod metrics;
mod migrate;
mod model;
mod pages;
mod password;
mod server;
mod session;
mod state;
mod throttle;

use clap::Parser;
use std::process::ExitCode;

/// The `onebox-app` command: parses the arguments and runs it (the `onebox-app` binary, and the
/// `onebox` binary when started under that name).
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("onebox-app: {err:#}");
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
