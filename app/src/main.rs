//! onebox-app: The onebox application server: users, posts and settings in MySQL.

use clap::Parser;

/// The onebox application server: users, posts and settings in MySQL.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
