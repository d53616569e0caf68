//! Loading the zone directory at startup and again on SIGHUP: the new catalog is built aside
//! and swapped in whole; a zone whose file fails keeps its previous version serving. SIGHUP also
//! rereads the site file's per-zone settings (`[[dns.zone]]`); a site file that fails keeps the
//! previous settings.

use crate::catalog::{self, Catalog};
use crate::config::{DnsConfig, ZoneConfig};
use crate::dnssec::Signer;
use crate::error::ServeError;
use crate::query::Engine;
use hickory_proto::rr::LowerName;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded zone directory.
#[derive(Debug)]
pub struct Loaded {
    /// The zones to serve.
    pub catalog: Catalog,
    /// Whether every zone file loaded (none kept its previous version or was left out).
    pub clean: bool,
}

/// Loads `dir` (keeping zones of `previous` whose files fail) and logs every error and the
/// outcome.
pub fn load(dir: &Path, previous: Option<&Catalog>) -> Result<Loaded, ServeError> {
    let files = catalog::zone_files(dir).map_err(|cause| ServeError::ZoneDir {
        path: dir.to_path_buf(),
        cause,
    })?;
    let loaded = catalog::load(&files, previous);
    for error in &loaded.errors {
        tracing::error!("{error}");
    }
    for origin in &loaded.kept {
        tracing::warn!("zone {origin}: its file has errors; still serving the previous version");
    }
    for zone in loaded.catalog.zones() {
        for warning in zone.warnings() {
            tracing::warn!("{warning}");
        }
        tracing::info!(
            "zone {}: serial {}, {} records",
            zone.origin(),
            zone.serial(),
            zone.record_count()
        );
    }
    if loaded.catalog.is_empty() {
        tracing::warn!("{}: no zone is being served", dir.display());
    }
    Ok(Loaded {
        catalog: loaded.catalog,
        clean: loaded.errors.is_empty(),
    })
}

/// Warns about `[[dns.zone]]` tables that name no zone being served.
pub fn check_zone_settings(zones: &[ZoneConfig], catalog: &Catalog) {
    for zone in zones.iter().filter(|z| z.primary.is_none()) {
        let apex = LowerName::new(zone.name.name());
        if !catalog.zones().any(|z| LowerName::new(z.origin()) == apex) {
            tracing::warn!(
                "[[dns.zone]] {}: no such zone is loaded (no {}.zone in the zone directory)",
                zone.name.get(),
                zone.name.get()
            );
        }
    }
}

/// The site file the server was started with, and the `[dns]` section it read from it.
#[derive(Debug, Clone)]
pub struct SiteFile {
    /// Its path.
    pub path: PathBuf,
    /// Its `[dns]` section as last applied.
    pub dns: DnsConfig,
}

/// On every SIGHUP, until the process ends: rereads the site file's `[[dns.zone]]` tables (if
/// the server was started with one) and the zone directory.
pub async fn on_sighup(
    dir: PathBuf,
    mut site: Option<SiteFile>,
    engine: Arc<Engine>,
    signer: Arc<Signer>,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(ServeError::Signal)?;
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading {}", dir.display());
        let mut ok = true;
        let _writer = signer.writer.lock().await;
        if let Some(site) = site.as_mut() {
            ok &= reread_site_file(site, &engine, &signer).await;
        }
        let previous = engine.catalog().load_full();
        let dir2 = dir.clone();
        let signer2 = signer.clone();
        let settings = engine.zone_settings();
        let loaded = tokio::task::spawn_blocking(move || {
            load(&dir2, Some(&previous)).map(|mut loaded| {
                // The serial policy, on the zones as their files give them (before signing).
                let applies = |zone: &hickory_proto::rr::Name| {
                    crate::xfr::serial::applies(&settings, signer2.is_enabled(zone), zone)
                };
                let (catalog, clean) =
                    crate::xfr::serial::check(loaded.catalog, &previous, &dir2, applies);
                crate::xfr::serial::Kept::new(signer2.state_dir()).keep(&catalog, applies);
                loaded.clean &= clean;
                loaded.catalog =
                    signer2.sign_catalog(catalog, Some(&previous), crate::dnssec::now());
                loaded
            })
        })
        .await;
        match loaded {
            Ok(Ok(loaded)) => {
                tracing::info!("reloaded: {} zones", loaded.catalog.len());
                ok &= loaded.clean;
                if let Some(site) = &site {
                    check_zone_settings(&site.dns.zone, &loaded.catalog);
                }
                // The secondary zones' copies go on being served.
                let catalog = engine
                    .xfr()
                    .secondaries
                    .merge(loaded.catalog, &engine.zone_settings());
                engine.catalog().store(Arc::new(catalog));
            }
            Ok(Err(e)) => {
                ok = false;
                tracing::error!("reload failed, still serving the previous zones: {e}");
            }
            Err(e) => {
                ok = false;
                tracing::error!("reload failed, still serving the previous zones: {e}");
            }
        }
        engine.metrics().reload(ok);
    }
    Ok(())
}

/// Signs the signed zones again whenever they are due (signatures near their expiry, a key
/// changing state), until the process ends. Wakes at the next due time, and at least every
/// ten minutes (a clock that jumped is noticed).
pub async fn resign(signer: Arc<Signer>, engine: Arc<Engine>) {
    loop {
        let now = crate::dnssec::now();
        let next = signer.next_wakeup(&engine.catalog().load());
        let wait = next.map_or(600, |t| t.saturating_sub(now).clamp(1, 600));
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        let _writer = signer.writer.lock().await;
        let catalog = engine.catalog().load_full();
        let signer2 = signer.clone();
        let signed =
            tokio::task::spawn_blocking(move || signer2.resign_due(&catalog, crate::dnssec::now()))
                .await;
        match signed {
            Ok(Some(catalog)) => engine.catalog().store(Arc::new(catalog)),
            Ok(None) => {}
            Err(e) => tracing::error!("signing failed: {e}"),
        }
    }
}

/// Rereads the site file and applies its `[[dns.zone]]` tables; other `[dns]` keys that changed
/// are named in a warning (they take effect at the next start). A file that fails is logged
/// (file:line:column) and changes nothing. Returns whether it was applied.
async fn reread_site_file(site: &mut SiteFile, engine: &Engine, signer: &Signer) -> bool {
    let path = site.path.clone();
    let read = tokio::task::spawn_blocking(move || onebox_site::load(&path)).await;
    let file = match read {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => {
            tracing::error!("{e}; still using the previous [[dns.zone]] settings");
            return false;
        }
        Err(e) => {
            tracing::error!("rereading {}: {e}", site.path.display());
            return false;
        }
    };
    let base = site
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let keys = match crate::xfr::tsig::Keys::load(&file.dns, &base) {
        Ok(keys) => keys,
        Err(e) => {
            tracing::error!(
                "{}; still using the previous settings",
                file.error_at(e.span, &e.key, e.message)
            );
            return false;
        }
    };
    let dns = file.dns;
    let changed = changed_keys(&site.dns, &dns);
    if !changed.is_empty() {
        tracing::warn!(
            "{}: [dns] {} changed; restart onebox-dns to apply (a reload applies [[dns.zone]] \
             tables and zone files only)",
            site.path.display(),
            changed.join(", ")
        );
    }
    if dns.zone != site.dns.zone {
        tracing::info!(
            "{}: applying {} [[dns.zone]] table(s)",
            site.path.display(),
            dns.zone.len()
        );
    }
    engine.set_tsig_keys(keys);
    engine.set_zone_settings(&dns.zone);
    signer.set_zones(&dns.zone);
    // Remember only what was applied: the other keys keep their running values.
    site.dns.zone = dns.zone;
    site.dns.tsig = dns.tsig;
    true
}

/// The `[dns]` keys other than `zone` whose values differ between `old` and `new`.
fn changed_keys(old: &DnsConfig, new: &DnsConfig) -> Vec<String> {
    let table = |dns: &DnsConfig| match toml::Value::try_from(dns) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::map::Map::new(),
    };
    let (old, new) = (table(old), table(new));
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| *k != "zone" && *k != "tsig" && old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}
