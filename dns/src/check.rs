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
    let mut errors = loaded.errors;
    for zone in loaded.catalog.zones() {
        errors.extend(zone.warnings().iter().cloned());
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(ZoneErrors(errors));
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

/// `onebox-dns check PATH`: prints a line per zone loaded, or every error (one `file:line: what`
/// per line) and fails with a count.
pub fn run(path: &Path) -> anyhow::Result<()> {
    match check(path) {
        Ok(lines) => {
            lines.iter().for_each(|line| println!("{line}"));
            Ok(())
        }
        Err(ZoneErrors(errors)) => {
            errors.iter().for_each(|e| println!("{e}"));
            anyhow::bail!("{} error(s) in {}", errors.len(), path.display())
        }
    }
}
