//! onebox-edge: The onebox HTTP/HTTPS front door: automatic ACME certificates, static files, reverse proxy to the app.

use clap::Parser;

/// The onebox HTTP/HTTPS front door: automatic ACME certificates, static files, reverse proxy to the app.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
