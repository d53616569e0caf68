//! DNSSEC: online signing that cannot expire.
//!
//! A zone with `[[dns.zone]] dnssec = true` is signed by onebox-dns itself whenever it is
//! loaded ([`sign`]): ECDSA P-256 with SHA-256 (algorithm 13) keys from [`keys`] — a KSK for
//! the DNSKEY RRset, whose DS goes to the parent, and a ZSK for the rest — and NSEC for
//! authenticated denial. The signed zone is precomputed (every RRSIG, the NSEC chain, DNSKEY,
//! CDS and CDNSKEY at the apex), so answering a query never signs.
//!
//! [`Signer`] keeps the signed zones fresh: it signs again when the earliest signature comes
//! within `dnssec_signature_refresh_secs` of its expiration (at start too, before a zone is
//! served: after days of downtime the old signatures are never served), when a key changes
//! state (the ZSK rollover it runs itself, a KSK rollover asked for with `onebox-dns
//! ksk-rollover`), and on reload when the zone file changed. Each signing serves a new SOA
//! serial (Knot's `serial-policy: increment`: the larger of the file's serial and the last one
//! served, plus one), so secondaries see the change.

pub mod cli;
pub mod control;
pub mod ds;
pub mod keys;
pub mod sign;

use crate::catalog::Catalog;
use crate::config::ZoneConfig;
use crate::zone::Zone;
use hickory_proto::dnssec::Algorithm;
use hickory_proto::rr::{LowerName, Name, RData, Record, SerialNumber};
use keys::{KeyState, Role, ZoneKeys};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// The signing algorithm: ECDSA P-256 with SHA-256 (13), which RFC 8624 has every validator
/// implement and every registry accepts in DS records.
pub const ALGORITHM: Algorithm = Algorithm::ECDSAP256SHA256;

/// The signing policy (the `[dns] dnssec_*` keys).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Seconds a new signature is valid for.
    pub signature_lifetime: u64,
    /// Sign again when the earliest signature expires within this many seconds.
    pub signature_refresh: u64,
    /// Seconds a ZSK signs before it is rolled over.
    pub zsk_lifetime: u64,
    /// Seconds added to TTLs when a rollover waits for caches.
    pub propagation_delay: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            signature_lifetime: 1_209_600,
            signature_refresh: 604_800,
            zsk_lifetime: 2_592_000,
            propagation_delay: 3600,
        }
    }
}

/// A key of a signed zone as it stood when the zone was signed (for the metrics).
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// KSK or ZSK.
    pub role: Role,
    /// Its key tag.
    pub tag: u16,
    /// Its state.
    pub state: KeyState,
    /// Whether its CDS/CDNSKEY are published (the DS the parent should have).
    pub submitted: bool,
}

/// What a signed zone has beyond its records.
#[derive(Debug)]
pub struct ZoneDnssec {
    /// The owners of NSEC records, in canonical order (RFC 4034 §6.1).
    pub(crate) nsec_owners: Vec<LowerName>,
    /// The earliest signature expiration (Unix seconds).
    pub earliest_expiry: u64,
    /// When the zone was signed (Unix seconds).
    pub signed_at: u64,
    /// How many signatures were made.
    pub signatures: usize,
    /// The keys and their states.
    pub keys: Vec<KeyInfo>,
    /// The zone as its file gave it, before signing.
    pub(crate) source: Arc<Zone>,
    /// The wire parts of its signed NXDOMAIN answers, built on first use
    /// ([`crate::fastpath::NsecParts`]).
    pub(crate) nxdomain_parts: std::sync::OnceLock<Option<Arc<crate::fastpath::NsecParts>>>,
}

impl ZoneDnssec {
    /// The owner of the NSEC record that covers `name` (a name with no NSEC of its own): the
    /// last owner before it in canonical order.
    pub fn covering(&self, name: &LowerName) -> Option<&LowerName> {
        let i = self.nsec_owners.partition_point(|owner| owner < name);
        i.checked_sub(1)
            .and_then(|i| self.nsec_owners.get(i))
            .or(self.nsec_owners.last())
    }
}

/// The time now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs the zones that ask for it, keeps their keys and serials, and says when to sign again.
#[derive(Debug)]
pub struct Signer {
    state_dir: PathBuf,
    policy: Policy,
    /// The zones with `dnssec = true`.
    enabled: Mutex<HashSet<LowerName>>,
    /// The keys of each signed zone, as last read or written.
    keys: Mutex<HashMap<LowerName, ZoneKeys>>,
    /// Held by whoever replaces the catalog (reload, re-signing, the control socket), so that
    /// one's new catalog never overwrites another's.
    pub writer: tokio::sync::Mutex<()>,
}

impl Signer {
    /// A signer keeping its keys in `state_dir`.
    pub fn new(state_dir: PathBuf, policy: Policy, zones: &[ZoneConfig]) -> Signer {
        let signer = Signer {
            state_dir,
            policy,
            enabled: Mutex::default(),
            keys: Mutex::default(),
            writer: tokio::sync::Mutex::new(()),
        };
        signer.set_zones(zones);
        signer
    }

    /// The state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// Applies the `[[dns.zone]]` tables' `dnssec` keys.
    pub fn set_zones(&self, zones: &[ZoneConfig]) {
        let enabled = zones
            .iter()
            .filter(|z| z.dnssec)
            .map(|z| LowerName::new(z.name.name()))
            .collect();
        *self.enabled.lock().unwrap_or_else(PoisonError::into_inner) = enabled;
    }

    /// Whether `zone` is to be signed.
    pub fn is_enabled(&self, zone: &Name) -> bool {
        self.enabled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&LowerName::new(zone))
    }

    /// The catalog to serve for a freshly loaded `catalog`: zones to be signed are signed, or
    /// keep `previous`'s signed version when nothing changed and it is not due; a zone that
    /// cannot be signed keeps its previous signed version, or is left out (never served
    /// unsigned when it should be signed).
    pub fn sign_catalog(&self, catalog: Catalog, previous: Option<&Catalog>, now: u64) -> Catalog {
        let zones: Vec<Arc<Zone>> = catalog
            .zones()
            .filter_map(|zone| {
                if !self.is_enabled(zone.origin()) {
                    return Some(match &zone.dnssec {
                        Some(d) => d.source.clone(), // signing was turned off
                        None => zone.clone(),
                    });
                }
                let old = previous
                    .and_then(|p| p.find(zone.origin()))
                    .filter(|z| z.origin() == zone.origin() && z.dnssec.is_some());
                let source = match &zone.dnssec {
                    Some(d) => d.source.clone(), // kept from before: its file failed
                    None => zone.clone(),
                };
                if let Some(old) = old {
                    let same = old
                        .dnssec
                        .as_ref()
                        .is_some_and(|d| Arc::ptr_eq(&d.source, &source) || same_records(&d.source, &source));
                    if same && !self.due(old, now) {
                        return Some(old.clone());
                    }
                }
                match self.sign_zone(&source, now) {
                    Ok(signed) => Some(Arc::new(signed)),
                    Err(e) => {
                        tracing::error!("zone {}: cannot sign: {e}", zone.origin());
                        match old {
                            Some(old) => {
                                tracing::warn!(
                                    "zone {}: still serving the previous signed version",
                                    zone.origin()
                                );
                                Some(old.clone())
                            }
                            None => {
                                tracing::error!(
                                    "zone {}: not served (dnssec = true, and it could not be signed)",
                                    zone.origin()
                                );
                                None
                            }
                        }
                    }
                }
            })
            .collect();
        Catalog::new(zones)
    }

    /// A new catalog with every signed zone that is due signed again, or `None` if none is.
    pub fn resign_due(&self, catalog: &Catalog, now: u64) -> Option<Catalog> {
        let mut changed = false;
        let zones: Vec<Arc<Zone>> = catalog
            .zones()
            .map(|zone| {
                let Some(dnssec) = &zone.dnssec else {
                    return zone.clone();
                };
                if !self.due(zone, now) {
                    return zone.clone();
                }
                match self.sign_zone(&dnssec.source, now) {
                    Ok(signed) => {
                        changed = true;
                        Arc::new(signed)
                    }
                    Err(e) => {
                        tracing::error!(
                            "zone {}: cannot sign again ({e}); its earliest signature expires at \
                             {} (Unix time)",
                            zone.origin(),
                            dnssec.earliest_expiry
                        );
                        zone.clone()
                    }
                }
            })
            .collect();
        changed.then(|| Catalog::new(zones))
    }

    /// A new catalog with `zone` signed again now (after a key change asked for by hand).
    pub fn resign_zone(&self, catalog: &Catalog, zone: &Name, now: u64) -> Result<Catalog, String> {
        let mut found = false;
        let mut zones = Vec::new();
        for z in catalog.zones() {
            match &z.dnssec {
                Some(d) if LowerName::new(z.origin()) == LowerName::new(zone) => {
                    found = true;
                    zones.push(Arc::new(self.sign_zone(&d.source, now)?));
                }
                _ => zones.push(z.clone()),
            }
        }
        if !found {
            return Err(format!("no signed zone {zone} is being served"));
        }
        Ok(Catalog::new(zones))
    }

    /// Whether a signed zone must be signed again at `now`: its earliest signature is within
    /// the refresh period, or a key changes state (or a ZSK rollover is due).
    fn due(&self, zone: &Zone, now: u64) -> bool {
        self.next_signing(zone).is_some_and(|t| t <= now)
    }

    /// When `zone` (signed) must be signed again.
    pub fn next_signing(&self, zone: &Zone) -> Option<u64> {
        let dnssec = zone.dnssec.as_ref()?;
        let mut next = dnssec
            .earliest_expiry
            .saturating_sub(self.policy.signature_refresh);
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = keys.get(&LowerName::new(zone.origin())) {
            let ready_after = u64::from(zone.soa().ttl) + self.policy.propagation_delay;
            if let Some(t) = k.next_change(dnssec.signed_at, ready_after) {
                next = next.min(t);
            }
            if let Some(zsk) = k.signing_zsk(dnssec.signed_at) {
                let roll = zsk.active_time().saturating_add(self.policy.zsk_lifetime);
                let has_successor = k
                    .keys()
                    .iter()
                    .any(|o| o.role() == Role::Zsk && o.active_time() > zsk.active_time());
                if !has_successor {
                    next = next.min(roll.max(dnssec.signed_at + 1));
                }
            }
        }
        Some(next)
    }

    /// When any served signed zone must be signed again.
    pub fn next_wakeup(&self, catalog: &Catalog) -> Option<u64> {
        catalog.zones().filter_map(|z| self.next_signing(z)).min()
    }

    /// Signs `source` now: keys read (or made), a ZSK rollover started or finished if due, a
    /// new serial; the state file written.
    fn sign_zone(&self, source: &Arc<Zone>, now: u64) -> Result<Zone, String> {
        let apex = source.origin().clone();
        let lower = LowerName::new(&apex);
        let mut all = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = match all.remove(&lower) {
            Some(keys) => keys,
            None => ZoneKeys::open_or_create(&self.state_dir, &apex, now)?,
        };
        let mut keys = keys;
        let result = (|| {
            let soa_ttl = u64::from(source.soa().ttl);
            let max_ttl = source
                .records()
                .map(|r| u64::from(r.ttl))
                .max()
                .unwrap_or(soa_ttl);
            let publish_wait = soa_ttl + self.policy.propagation_delay;
            let retire_wait = max_ttl + self.policy.propagation_delay;
            if let Some(tag) =
                keys.roll_zsk_if_due(now, self.policy.zsk_lifetime, publish_wait, retire_wait)?
            {
                tracing::info!(
                    "zone {apex}: ZSK rollover: new ZSK {tag} published, signs from {} (Unix time)",
                    now + publish_wait
                );
            }
            if keys.forget_removed(now) {
                tracing::info!("zone {apex}: a retired key left the DNSKEY RRset");
            }
            let file_serial = source.serial();
            let base = match keys.serial() {
                Some(last) if SerialNumber::new(last) > SerialNumber::new(file_serial) => last,
                _ => file_serial,
            };
            let serial = base.wrapping_add(1);
            let signed = sign::sign(source, &keys, &self.policy, now, serial)?;
            keys.set_serial(serial);
            keys.save()?;
            if let Some(d) = signed.dnssec() {
                tracing::info!(
                    "zone {apex}: signed, serial {serial}, {} signatures, earliest expiry in {} s",
                    d.signatures,
                    d.earliest_expiry.saturating_sub(now)
                );
            }
            Ok(signed)
        })();
        all.insert(lower, keys);
        result
    }

    /// Runs `f` on the keys of `zone` (read from the state file if not held yet) and saves them.
    pub fn with_keys<T>(
        &self,
        zone: &Name,
        f: impl FnOnce(&mut ZoneKeys) -> Result<T, String>,
    ) -> Result<T, String> {
        let lower = LowerName::new(zone);
        let mut all = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if !all.contains_key(&lower) {
            let keys = ZoneKeys::read(&self.state_dir, zone)?
                .ok_or_else(|| format!("zone {zone} has no DNSSEC keys"))?;
            all.insert(lower.clone(), keys);
        }
        let keys = all.get_mut(&lower).ok_or("no keys")?;
        let out = f(keys)?;
        keys.save()?;
        Ok(out)
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// Whether two loaded zones have the same records.
fn same_records(a: &Zone, b: &Zone) -> bool {
    if a.record_count() != b.record_count() {
        return false;
    }
    let wire = |z: &Zone| {
        let mut v: Vec<String> = z.records().map(record_key).collect();
        v.sort();
        v
    };
    wire(a) == wire(b)
}

fn record_key(r: &Record) -> String {
    let data = match &r.data {
        RData::SOA(soa) => format!("{soa}"),
        other => other.to_string(),
    };
    format!("{} {} {} {data}", r.name, r.ttl, r.record_type())
}
