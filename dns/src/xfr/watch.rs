//! Notices every new catalog, whoever stored it — a reload, a re-signing, a transfer from our
//! primary: every store is announced ([`crate::served`]), and between two it sleeps (no writer
//! has to remember to call anything, and an idle server does not wake). For each zone whose
//! serial changed it records the difference in the zone's journal (for IXFR) and sends the
//! zone's NOTIFYs; at start, every zone with `notify` targets is announced once, as BIND and
//! Knot do.

use crate::catalog::Catalog;
use crate::query::Engine;
use crate::xfr::journal;
use crate::xfr::notify::Notifier;
use crate::zone::Zone;
use hickory_proto::rr::LowerName;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

/// Runs until the process ends.
pub async fn run(engine: Arc<Engine>) {
    let notifier = Notifier::new(engine.clone());
    let mut changes = engine.catalog().changes();
    let mut last: Option<Arc<Catalog>> = None;
    loop {
        let current = engine.catalog().load_full();
        if last.as_ref().is_none_or(|l| !Arc::ptr_eq(l, &current)) {
            changed(&engine, &notifier, last.as_deref(), &current).await;
            last = Some(current);
        }
        changes.changed().await;
    }
}

/// Records the differences from `old` to `new` and sends the NOTIFYs.
async fn changed(engine: &Arc<Engine>, notifier: &Notifier, old: Option<&Catalog>, new: &Catalog) {
    let old_zones: HashMap<LowerName, &Arc<Zone>> = old
        .map(|c| c.zones().map(|z| (LowerName::new(z.origin()), z)).collect())
        .unwrap_or_default();
    for zone in new.zones() {
        let apex = LowerName::new(zone.origin());
        let previous = old_zones.get(&apex);
        match previous {
            Some(p) if Arc::ptr_eq(p, zone) => continue,
            Some(p) if p.serial() == zone.serial() => continue,
            Some(p) => {
                if journal::newer(zone.serial(), p.serial()) {
                    let (p, z) = ((*p).clone(), zone.clone());
                    let diff = tokio::task::spawn_blocking(move || journal::diff(&p, &z)).await;
                    if let Ok(diff) = diff {
                        tracing::debug!(
                            "zone {}: serial {} -> {}: {} removed, {} added",
                            zone.origin(),
                            diff.from_serial(),
                            diff.to_serial(),
                            diff.removed.len(),
                            diff.added.len()
                        );
                        engine
                            .xfr()
                            .journals
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(apex.clone())
                            .or_default()
                            .push(diff, zone.record_count());
                    }
                } else {
                    tracing::warn!(
                        "zone {}: the serial went back from {} to {}: secondaries keep their \
                         copy until it passes {} again",
                        zone.origin(),
                        p.serial(),
                        zone.serial(),
                        p.serial()
                    );
                    if let Some(j) = engine
                        .xfr()
                        .journals
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(&apex)
                    {
                        j.clear();
                    }
                }
            }
            None => {}
        }
        notifier.announce(zone);
    }
    let mut journals = engine
        .xfr()
        .journals
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    journals.retain(|apex, _| new.zones().any(|z| LowerName::new(z.origin()) == *apex));
}
