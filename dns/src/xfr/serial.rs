//! The serial policy for zone files with secondaries (`allow_transfer` or `notify` set; a
//! signed zone's serial is the signer's, Knot's `serial-policy: increment`): a zone whose
//! records changed must have a larger SOA serial (RFC 1982), or its secondaries never see the
//! change. A reload that finds a changed
//! zone file with the same or a smaller serial refuses it — the previous version keeps being
//! served — and says so (as Knot does with `zonefile-load: difference`; BIND only warns and
//! leaves its secondaries behind). Across restarts the check uses the fingerprint of each zone
//! kept in the state directory (`xfr/serials`): a zone whose file changed while the server was
//! down without a new serial is served (there is nothing else to serve) but logged as an error.

use crate::catalog::Catalog;
use crate::xfr::ZoneSettings;
use crate::xfr::journal::{newer, record_key};
use crate::zone::Zone;
use hickory_proto::rr::{LowerName, Name, RData};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A zone's serial and a digest of everything else in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// The SOA serial.
    pub serial: u32,
    /// The records (the SOA with its serial left out), order-independent.
    pub digest: u64,
}

impl Fingerprint {
    /// The fingerprint of `zone`.
    pub fn of(zone: &Zone) -> Fingerprint {
        let mut digest = 0u64;
        for (i, record) in zone.records().enumerate() {
            let key = if i == 0 {
                let mut soa = record.clone();
                if let RData::SOA(data) = &mut soa.data {
                    data.serial = 0;
                }
                record_key(&soa)
            } else {
                record_key(record)
            };
            let hash = Sha256::digest(&key);
            let mut first = [0u8; 8];
            first.copy_from_slice(&hash[..8]);
            digest = digest.wrapping_add(u64::from_be_bytes(first));
        }
        Fingerprint {
            serial: zone.serial(),
            digest,
        }
    }
}

/// The zone as its file gave it (a signed zone's source).
fn source(zone: &Arc<Zone>) -> &Zone {
    match zone.dnssec.as_ref() {
        Some(d) => &d.source,
        None => zone,
    }
}

/// Whether the policy applies to `zone`: it has secondaries and is not signed by us.
pub fn applies(settings: &ZoneSettings, signed: bool, zone: &Name) -> bool {
    let apex = LowerName::new(zone);
    !signed
        && (settings
            .allow_transfer
            .get(&apex)
            .is_some_and(|a| !a.is_empty())
            || settings.notify.contains_key(&apex))
}

/// Checks the zones of `catalog`, just loaded from `dir`, against `previous` (the versions
/// served): a changed zone the policy `applies` to whose serial did not increase is replaced by
/// its previous version and logged. Returns the catalog to go on with and whether every zone
/// passed.
pub fn check(
    catalog: Catalog,
    previous: &Catalog,
    dir: &Path,
    applies: impl Fn(&Name) -> bool,
) -> (Catalog, bool) {
    let mut clean = true;
    let mut zones = Vec::new();
    for zone in catalog.zones() {
        let old = previous
            .find(zone.origin())
            .filter(|old| old.origin() == zone.origin());
        let Some(old) = old else {
            zones.push(zone.clone());
            continue;
        };
        if !applies(zone.origin()) || Arc::ptr_eq(old, zone) || zone.dnssec.is_some() {
            zones.push(zone.clone());
            continue;
        }
        let (before, after) = (Fingerprint::of(source(old)), Fingerprint::of(zone));
        if before.digest != after.digest && !newer(after.serial, before.serial) {
            clean = false;
            tracing::error!(
                "{}: zone {} changed but its SOA serial {} is not larger than {}: still \
                 serving the previous version (secondaries would never see the change); \
                 increase the serial and reload",
                file_of(dir, zone.origin()).display(),
                zone.origin(),
                after.serial,
                before.serial
            );
            zones.push(old.clone());
        } else {
            zones.push(zone.clone());
        }
    }
    (Catalog::new(zones), clean)
}

fn file_of(dir: &Path, origin: &Name) -> PathBuf {
    let name = origin.to_string();
    dir.join(format!("{}.zone", name.trim_end_matches('.')))
}

/// The fingerprints kept in the state directory from one run to the next.
#[derive(Debug, Clone)]
pub struct Kept {
    path: PathBuf,
}

impl Kept {
    /// The fingerprints file under `state_dir`.
    pub fn new(state_dir: &Path) -> Kept {
        Kept {
            path: state_dir.join("xfr").join("serials"),
        }
    }

    fn read(&self) -> HashMap<LowerName, Fingerprint> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let name = Name::from_ascii(words.next()?).ok()?;
                let serial = words.next()?.parse().ok()?;
                let digest = u64::from_str_radix(words.next()?, 16).ok()?;
                Some((LowerName::new(&name), Fingerprint { serial, digest }))
            })
            .collect()
    }

    /// At start: logs each zone of `catalog` the policy `applies` to that changed since the
    /// last run without a larger serial; then keeps the fingerprints of this run.
    pub fn check_at_start(&self, catalog: &Catalog, dir: &Path, applies: impl Fn(&Name) -> bool) {
        let kept = self.read();
        for zone in catalog.zones() {
            if !applies(zone.origin()) || zone.dnssec.is_some() {
                continue;
            }
            let Some(before) = kept.get(&LowerName::new(zone.origin())) else {
                continue;
            };
            let after = Fingerprint::of(zone);
            if before.digest != after.digest && !newer(after.serial, before.serial) {
                tracing::error!(
                    "{}: zone {} changed since the last run but its SOA serial {} is not \
                     larger than {}: secondaries will not see the change; increase the serial \
                     and reload",
                    file_of(dir, zone.origin()).display(),
                    zone.origin(),
                    after.serial,
                    before.serial
                );
            }
        }
        self.keep(catalog, applies);
    }

    /// Keeps the fingerprints of the zones of `catalog` the policy `applies` to (nothing is
    /// written when there are none).
    pub fn keep(&self, catalog: &Catalog, applies: impl Fn(&Name) -> bool) {
        let mut lines: Vec<String> = catalog
            .zones()
            .filter(|z| z.dnssec.is_none() && applies(z.origin()))
            .map(|z| {
                let f = Fingerprint::of(z);
                format!("{} {} {:016x}\n", z.origin(), f.serial, f.digest)
            })
            .collect();
        lines.sort();
        let text: String = lines.concat();
        let old = std::fs::read_to_string(&self.path).ok();
        if old.as_deref().unwrap_or_default() == text {
            return;
        }
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::DirBuilderExt as _;
            let dir = self.path.parent().unwrap_or(Path::new("."));
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, &text)?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(e) = write() {
            tracing::warn!(
                "cannot keep the zones' serials in {}: {e} (the serial check across restarts \
                 is off)",
                self.path.display()
            );
        }
    }
}
