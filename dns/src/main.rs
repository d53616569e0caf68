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
    let serving_options =
        !cli.serve.listen.is_empty() || cli.serve.zones.is_some() || cli.serve.query_log;
    if cli.command.is_some() && serving_options {
        eprintln!(
            "onebox-dns: --listen, --zones and --query-log are for serving, not for a subcommand"
        );
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Some(Command::Check { path }) => onebox_dns::check::run(&path),
        Some(Command::Ds { zone }) => onebox_dns::dnssec::cli::ds(&cli.serve, &zone),
        Some(Command::KskRollover { zone }) => {
            onebox_dns::dnssec::cli::control(&cli.serve, &format!("ksk-rollover {zone}"))
        }
        Some(Command::KskSubmitted { zone, ds_ttl }) => {
            onebox_dns::dnssec::cli::control(&cli.serve, &format!("ksk-submitted {zone} {ds_ttl}"))
        }
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
