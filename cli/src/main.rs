//! `onebox`: the operator's command for a onebox server.
//!
//! - `onebox provision`: from cloud-init user-data (or a site file) to a provisioned server.
//! - `onebox status`: what runs, where, with which certificate and zone serials.
//! - `onebox ds`: the DS records (and DNSKEY) of a signed zone, for the registrar.
//! - `onebox backup` / `onebox restore`: restic snapshots of the whole site, and back.
//! - `onebox publish`: the static site replaced atomically, or rolled back.
//! - `onebox doctor`: every check, with its fix; `--alert` sends problems and fixes.
//!
//! Started under the name `onebox-dns`, `onebox-edge` or `onebox-app` (the image's hard links
//! of this binary), it is that program instead: the image carries one binary for the four.

mod admin;
mod alerts;
mod backup;
mod caa;
mod database;
mod doctor;
mod ds;
mod provision;
mod publish;
mod restic;
mod restore;
mod rootfs;
mod run;
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
    /// Back up the site (database, site file, zones, DNS keys, certificates, web root) to its
    /// restic repository and apply the retention policy; the result goes to the state file.
    Backup(backup::Args),
    /// Restore the site from a snapshot (the latest by default): files back in place, the
    /// database loaded, the services restarted.
    Restore(restore::Args),
    /// Publish a directory as the site's static files (atomically), or roll back.
    Publish(publish::Args),
    /// Check everything a person would check by hand (DNS and the parent zone, DS, certificate,
    /// backups, disk, clock, updates, services), each with its fix; exit 1 when something
    /// fails. With --alert, send what turned bad or was fixed.
    Doctor(doctor::Args),
    /// Pin the zone's CAA record to the site's ACME account (RFC 8657 accounturi) once
    /// onebox-edge has recorded it; run by onebox-caa.path.
    Caa(caa::Args),
}

/// Bad input (user-data, a site file, a flag): exit code 2, nothing written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

// mimalloc, the edge's allocator (edge/src/main.rs): this binary runs the edge too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Another onebox program: its name and its `main`.
type Program = (&'static str, fn() -> ExitCode);

/// The program a binary started as `name` (argv[0], a path or not) runs: another onebox program
/// under its own name, the `onebox` command otherwise.
fn program(name: &std::ffi::OsStr) -> Option<Program> {
    match std::path::Path::new(name).file_name()?.to_str()? {
        "onebox-dns" => Some(("onebox-dns", onebox_dns::main)),
        "onebox-edge" => Some(("onebox-edge", onebox_edge::main)),
        "onebox-app" => Some(("onebox-app", onebox_app::main)),
        _ => None,
    }
}

fn main() -> ExitCode {
    // No transparent huge pages for any program of this binary (inherited by what it starts):
    // mimalloc asks for them on its arenas and Debian's kernel gives them to any large mapping,
    // and 2 MiB pages for a few KiB in use each cost onebox-dns 11 MiB of its 26 (and the edge
    // 16 KiB per idle HTTP/2 connection: onebox_edge::main, which says so when this fails).
    let thp = rustix::thread::disable_transparent_huge_pages(true);
    let started_as = std::env::args_os().next().as_deref().and_then(program);
    let name = started_as.map_or("onebox", |(name, _)| name);
    // The edge says so itself, in its log's format.
    if let Err(e) = thp
        && name != "onebox-edge"
    {
        eprintln!("{name}: transparent huge pages stay allowed (prctl PR_SET_THP_DISABLE: {e})");
    }
    if let Some((_, run)) = started_as {
        return run();
    }
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
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => runtime()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(restore::run(args)).map(|()| true)),
        Command::Publish(args) => publish::run(args).map(|()| true),
        Command::Caa(args) => caa::run(args).map(|()| true),
        Command::Doctor(args) => runtime()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(doctor::run(args))),
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
