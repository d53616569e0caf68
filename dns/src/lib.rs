//! onebox-dns: an authoritative-only DNS server for a directory of RFC 1035 zone files.
//!
//! The request path ([`answer::Answerer::respond`]) turns request bytes into response bytes from
//! an in-memory [`catalog::Catalog`]; [`server`] owns the sockets; [`reload`] swaps the catalog
//! on SIGHUP; [`check`] validates zone files.

pub mod answer;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod reload;
pub mod server;
pub mod transfer;
pub mod zone;
pub mod zonefile;

use answer::Answerer;
use config::Settings;
use std::sync::Arc;

/// Serves until the process is killed: loads the zones, binds, reloads on SIGHUP.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let catalog = reload::load(&settings.zones, None)?;
    for zone in &settings.zone {
        let known = catalog.zones().any(|z| {
            z.origin()
                .to_string()
                .trim_end_matches('.')
                .eq_ignore_ascii_case(zone.name.trim_end_matches('.'))
        });
        if !known {
            tracing::warn!("[[dns.zone]] {}: no such zone is loaded", zone.name);
        }
    }
    let answerer = Arc::new(Answerer::new(catalog, &settings.zone, settings.query_log));
    server::spawn(&settings, answerer.clone())?;
    reload::on_sighup(settings.zones.clone(), answerer).await?;
    Ok(())
}
