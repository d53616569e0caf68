//! onebox-dns: the onebox authoritative DNS server for the site's zones.

use clap::Parser;
use onebox_dns::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(Command::Check { path }) => onebox_dns::check::run(&path),
        None => onebox_dns::config::Settings::from_args(&cli.serve)
            .map_err(anyhow::Error::from)
            .and_then(|settings| {
                tokio::runtime::Runtime::new()?.block_on(onebox_dns::serve(settings))
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onebox-dns: {e:#}");
            ExitCode::FAILURE
        }
    }
}
