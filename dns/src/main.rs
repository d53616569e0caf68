//! onebox-dns: The onebox authoritative DNS server for the site's zones.

use clap::Parser;

/// The onebox authoritative DNS server for the site's zones.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
