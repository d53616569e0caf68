//! Loading the zone directory at startup and again on SIGHUP: the new catalog is built aside
//! and swapped in whole; a zone whose file fails keeps its previous version serving.

use crate::catalog::{self, Catalog};
use crate::error::ServeError;
use crate::query::Engine;
use std::path::Path;
use std::sync::Arc;

/// Loads `dir` (keeping zones of `previous` whose files fail) and logs every error and the
/// outcome.
pub fn load(dir: &Path, previous: Option<&Catalog>) -> Result<Catalog, ServeError> {
    let files = catalog::zone_files(dir).map_err(|source| ServeError::ZoneDir {
        path: dir.to_path_buf(),
        source,
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
    Ok(loaded.catalog)
}

/// Reloads the zone directory on every SIGHUP, until the process ends.
pub async fn on_sighup(dir: std::path::PathBuf, engine: Arc<Engine>) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(ServeError::Signal)?;
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading {}", dir.display());
        let previous = engine.catalog.load_full();
        let dir2 = dir.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&dir2, Some(&previous))).await;
        match loaded {
            Ok(Ok(catalog)) => {
                tracing::info!("reloaded: {} zones", catalog.len());
                engine.catalog.store(Arc::new(catalog));
            }
            Ok(Err(e)) => tracing::error!("reload failed, still serving the previous zones: {e}"),
            Err(e) => tracing::error!("reload failed, still serving the previous zones: {e}"),
        }
    }
    Ok(())
}
