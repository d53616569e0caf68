//! The set of zones served: loaded from a directory of `NAME.zone` files, looked up by the
//! longest matching apex.

use crate::error::ZoneError;
use crate::zone::Zone;
use hickory_proto::rr::{LowerName, Name};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The zones being served, by apex.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    zones: HashMap<LowerName, Arc<Zone>>,
    /// The same zones by apex in lower-case wire form ([`Catalog::walk_wire`]).
    wire: HashMap<Box<[u8]>, Arc<Zone>>,
    /// The deepest apex, in labels: longest-match lookups start no deeper than this.
    max_labels: usize,
}

/// The outcome of loading a zone directory.
#[derive(Debug)]
pub struct Loaded {
    /// The zones that can be served.
    pub catalog: Catalog,
    /// Every problem found, per file and line.
    pub errors: Vec<ZoneError>,
    /// Apexes whose file failed and which keep serving their previous version.
    pub kept: Vec<Name>,
}

impl Catalog {
    /// A catalog of the given zones.
    pub fn new(zones: impl IntoIterator<Item = Arc<Zone>>) -> Self {
        let zones: HashMap<LowerName, Arc<Zone>> = zones
            .into_iter()
            .map(|z| (LowerName::new(z.origin()), z))
            .collect();
        let max_labels = zones
            .values()
            .map(|z| crate::zone::label_count(z.origin()))
            .max()
            .unwrap_or(0);
        let wire = zones
            .values()
            .map(|z| (crate::zone::wire_name(z.origin()).into(), z.clone()))
            .collect();
        Catalog {
            zones,
            wire,
            max_labels,
        }
    }

    /// The zone with the longest apex that `name` is at or below, if any.
    pub fn find(&self, name: &Name) -> Option<&Arc<Zone>> {
        let mut labels = crate::zone::label_count(name).min(self.max_labels);
        loop {
            let candidate = LowerName::new(&name.trim_to(labels));
            if let Some(zone) = self.zones.get(&candidate) {
                return Some(zone);
            }
            if labels == 0 {
                return None;
            }
            labels -= 1;
        }
    }

    /// The zone with the longest apex that the name `wire` (lower-case wire form, no compression
    /// pointer) is at or below, and the walk down it towards the name ([`Zone::walk_wire`]);
    /// with the name's label starts, for the caller to cut it. No allocation.
    pub fn walk_wire(
        &self,
        wire: &[u8],
        starts: &mut [usize; crate::zone::MAX_LABELS],
    ) -> Option<(&Arc<Zone>, crate::zone::Walk)> {
        let labels = crate::zone::label_starts(wire, starts)?;
        let mut n = labels.min(self.max_labels);
        loop {
            let at = crate::zone::suffix_at(wire, starts, labels, n)?;
            if let Some(zone) = self.wire.get(wire.get(at..)?) {
                return Some((zone, zone.walk_wire(wire, starts, labels)));
            }
            n = n.checked_sub(1)?;
        }
    }

    /// Every zone served.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether no zone is served.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

/// The zone files of a directory (`*.zone`), sorted by name.
pub fn zone_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "zone") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The apex a zone file serves: its file name without `.zone` (`foobar.com.zone` → `foobar.com.`).
pub fn origin_of(file: &Path) -> Result<Name, ZoneError> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let mut name = Name::from_ascii(stem).map_err(|e| {
        ZoneError::new(
            file,
            0,
            format!("the file name does not name a zone (NAME.zone): {e}"),
        )
    })?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// Loads every zone file of `files`. A file that fails keeps the zone of the same apex in
/// `previous` serving, if there is one.
pub fn load(files: &[PathBuf], previous: Option<&Catalog>) -> Loaded {
    let mut zones = Vec::new();
    let mut errors = Vec::new();
    let mut kept = Vec::new();
    for file in files {
        let origin = match origin_of(file) {
            Ok(origin) => origin,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match Zone::load(file, &origin) {
            Ok(zone) => zones.push(Arc::new(zone)),
            Err(errs) => {
                errors.extend(errs);
                if let Some(old) = previous.and_then(|p| p.zones.get(&LowerName::new(&origin))) {
                    zones.push(old.clone());
                    kept.push(origin);
                }
            }
        }
    }
    Loaded {
        catalog: Catalog::new(zones),
        errors,
        kept,
    }
}
