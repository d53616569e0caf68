//! `onebox-dns check`: validates zone files like `named-checkzone`, listing every error.

use crate::catalog;
use crate::error::{ZoneError, ZoneErrors};
use std::path::Path;

/// Checks a zone file, or every `*.zone` file of a directory. Returns a summary line per zone
/// on success, every error (file:line) otherwise.
pub fn check(path: &Path) -> Result<Vec<String>, ZoneErrors> {
    let files = if path.is_dir() {
        catalog::zone_files(path).map_err(|e| {
            ZoneErrors(vec![ZoneError::new(
                path,
                0,
                format!("cannot read the directory: {e}"),
            )])
        })?
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(ZoneErrors(vec![ZoneError::new(
            path,
            0,
            "no *.zone files here",
        )]));
    }
    let loaded = catalog::load(&files, None);
    if !loaded.errors.is_empty() {
        return Err(ZoneErrors(loaded.errors));
    }
    let mut zones: Vec<_> = loaded.catalog.zones().collect();
    zones.sort_by_key(|z| z.origin().to_string());
    Ok(zones
        .iter()
        .map(|z| {
            format!(
                "zone {}: loaded serial {}, {} records: OK",
                z.origin(),
                z.serial(),
                z.record_count()
            )
        })
        .collect())
}
