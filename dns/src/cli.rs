//! The command line.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// onebox-dns: the authoritative DNS server for the site's zones.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// What to do; without a subcommand, serve.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The serving options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check zone files (a directory of NAME.zone files, or one file); prints `file:line: what is
    /// wrong` for every error and exits non-zero if there is any.
    Check {
        /// A zone file or a directory of them.
        path: PathBuf,
    },
    /// Print the DS record(s) of a signed zone for the registrar (SHA-256 digest) and the
    /// DNSKEY they are made from, from the keys in `[dns] state_dir` (needs `--config`).
    Ds {
        /// The zone, e.g. foobar.com.
        zone: String,
    },
    /// Start a KSK rollover in the running server: a new KSK is published and signs the DNSKEY
    /// RRset beside the old one; its CDS/CDNSKEY replace the old key's once caches know it.
    /// Prints the new DS for the registrar.
    KskRollover {
        /// The zone.
        zone: String,
    },
    /// Finish a KSK rollover once the parent serves the new DS: the old KSK leaves the zone
    /// after the parent's DS TTL (and the propagation delay) has passed.
    KskSubmitted {
        /// The zone.
        zone: String,
        /// The TTL of the DS records at the parent (how long resolvers may keep the old one).
        #[arg(long, value_name = "SECS", default_value_t = 86400)]
        ds_ttl: u64,
    },
}

/// Options for serving.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to serve on, UDP and TCP (repeatable). Default: `[::]:53` and `0.0.0.0:53`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Directory of zone files, one NAME.zone per zone. Default: /etc/onebox/zones.
    #[arg(long, value_name = "DIR")]
    pub zones: Option<PathBuf>,
    /// The site TOML file; its `[dns]` section gives the same settings (the command line wins).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Log every query at INFO (off by default: it costs throughput).
    #[arg(long)]
    pub query_log: bool,
}
