//! `onebox`: the operator's command for a onebox server.
//!
//! - `onebox provision`: from cloud-init user-data (or a site file) to a provisioned server.
//! - `onebox status`: what runs, where, with which certificate and zone serials.
//! - `onebox ds`: the DS records (and DNSKEY) of a signed zone, for the registrar.

mod admin;
mod database;
mod ds;
mod provision;
mod rootfs;
mod status;
mod userdata;
mod zonegen;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The onebox server's own command: provision it, and see how it is.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Write the site file, zones and database of a server from cloud-init user-data or a site
    /// file, and set the first admin password. Checks everything before writing anything; keeps
    /// what exists.
    Provision(provision::Args),
    /// Show what runs, on which addresses, the certificate served, zone serials and whether
    /// the database answers; exit 1 when something is down.
    Status(status::Args),
    /// Print the DS records to give the registrar, and the DNSKEY they are made from, for a
    /// zone onebox-dns signs (default: the site's domain).
    Ds(ds::Args),
}

/// Bad input (user-data, a site file, a flag): exit code 2, nothing written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let result = match &cli.command {
        Command::Provision(args) => provision::plan(args)
            .and_then(|plan| runtime()?.block_on(provision::apply(&plan)).map(|()| true)),
        Command::Ds(args) => ds::run(args).map(|()| true),
        Command::Status(args) => runtime()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(status::run(args))),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("onebox: {err:#}");
            if err.downcast_ref::<Invalid>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
