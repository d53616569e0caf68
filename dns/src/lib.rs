//! onebox-dns: an authoritative-only DNS server for a directory of RFC 1035 zone files.
//!
//! The request path ([`query::Engine::respond`]) turns request bytes into response bytes from
//! an in-memory [`catalog::Catalog`]: [`query`] decodes and dispatches, [`lookup`] finds the
//! records in a zone, [`transfer`] answers AXFR/IXFR, [`answer`] assembles the wire message
//! (within the client's size), [`edns`] handles the OPT record. [`server`] owns the sockets;
//! [`reload`] swaps the catalog on SIGHUP; [`check`] validates zone files.
//!
//! Module dependencies go one way: `server` → `query` → `lookup`, `transfer` → `answer`,
//! `edns`; nothing below `query` calls back up.

pub mod answer;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod config;
pub mod edns;
pub mod error;
pub mod lookup;
pub mod query;
pub mod reload;
pub mod server;
pub mod transfer;
pub mod zone;
pub mod zonefile;

use config::Settings;
use query::Engine;
use std::sync::Arc;

/// Serves until the process is killed: loads the zones, binds, reloads on SIGHUP.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let catalog = reload::load(&settings.zones, None)?;
    for zone in &settings.zone {
        let known = catalog.zones().any(|z| z.origin() == zone.name.name());
        if !known {
            tracing::warn!("[[dns.zone]] {}: no such zone is loaded", *zone.name);
        }
    }
    let engine = Arc::new(Engine::new(catalog, &settings.zone, settings.query_log));
    server::spawn(&settings, engine.clone())?;
    reload::on_sighup(settings.zones.clone(), engine).await?;
    Ok(())
}
