//! One authoritative zone in memory: its nodes by lower-case name, with every empty
//! non-terminal present, so that existence, delegation and wildcard questions are single lookups.

use crate::error::ZoneError;
use crate::zonefile::{self, LinedRecord};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The records of one type at one name.
#[derive(Debug, Clone)]
pub struct RrSet {
    /// The type of every record in the set.
    pub rtype: RecordType,
    /// The records, in file order, all with the same TTL.
    pub records: Vec<Record>,
    /// Their RRSIG records, when the zone is signed and the set is authoritative; else empty.
    pub rrsigs: Vec<Record>,
}

/// Everything at one name of a zone. A node with no RRsets is an empty non-terminal.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// The RRsets at this name, in the order their types first appear in the file.
    pub rrsets: Vec<RrSet>,
}

impl Node {
    /// The RRset of type `rtype`, if there is one.
    pub fn get(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|set| set.rtype == rtype)
    }
}

/// An authoritative zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The apex, lower case.
    pub(crate) origin: Name,
    /// The SOA record at the apex.
    pub(crate) soa: Record,
    /// The negative-caching TTL: min(SOA TTL, SOA MINIMUM) (RFC 2308 §3).
    pub(crate) negative_ttl: u32,
    /// Every node, keyed by lower-case name; empty non-terminals included.
    pub(crate) nodes: HashMap<LowerName, Node>,
    /// Number of records (for logs and transfers).
    pub(crate) record_count: usize,
    /// Problems that NSD and Knot serve anyway but `named-checkzone` rejects: logged when
    /// serving, errors for `onebox-dns check`.
    pub(crate) warnings: Vec<ZoneError>,
    /// What a signed zone has beyond its records (see [`crate::dnssec`]); `None` unsigned.
    pub(crate) dnssec: Option<Arc<crate::dnssec::ZoneDnssec>>,
}

impl Zone {
    /// Reads the zone `origin` from the master file `file`, returning every error found.
    pub fn load(file: &Path, origin: &Name) -> Result<Zone, Vec<ZoneError>> {
        let text = std::fs::read(file).map_err(|e| {
            vec![ZoneError::new(
                file,
                0,
                format!("cannot read the file: {e}"),
            )]
        })?;
        let text = String::from_utf8(text)
            .map_err(|_| vec![ZoneError::new(file, 0, "the file is not UTF-8 text")])?;
        let (records, mut errors) = zonefile::parse(file, &text, origin);
        match Zone::build(file, origin, records) {
            Ok(zone) if errors.is_empty() => Ok(zone),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                errors.sort_by_key(|e| e.line);
                Err(errors)
            }
        }
    }

    /// Builds a zone from parsed records, checking it the way `named-checkzone` does.
    pub fn build(
        file: &Path,
        origin: &Name,
        records: Vec<LinedRecord>,
    ) -> Result<Zone, Vec<ZoneError>> {
        let origin = origin.to_lowercase();
        let mut errors = Vec::new();
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        let mut lines: HashMap<(LowerName, RecordType), usize> = HashMap::new();
        let mut soa: Option<Record> = None;
        let mut record_count = 0;

        for LinedRecord { record, line } in records {
            let err = |message: String| ZoneError::new(file, line, message);
            if !origin.zone_of(&record.name) {
                errors.push(err(format!("{} is outside the zone {origin}", record.name)));
                continue;
            }
            let rtype = record.record_type();
            let key = LowerName::new(&record.name);
            if rtype == RecordType::SOA {
                if key != LowerName::new(&origin) {
                    errors.push(err(format!(
                        "an SOA record is only allowed at the apex {origin}"
                    )));
                    continue;
                }
                if soa.is_some() {
                    errors.push(err("the zone has more than one SOA record".into()));
                    continue;
                }
                soa = Some(record.clone());
            }
            let node = nodes.entry(key.clone()).or_default();
            match node.rrsets.iter_mut().find(|set| set.rtype == rtype) {
                Some(set) => {
                    if set.records.iter().any(|r| r.data == record.data) {
                        continue; // duplicate records are dropped, as every server does
                    }
                    if rtype == RecordType::CNAME {
                        errors.push(err(format!(
                            "{} has more than one CNAME record",
                            record.name
                        )));
                        continue;
                    }
                    let mut record = record;
                    record.ttl = set.records[0].ttl; // RFC 2181 §5.2: one TTL per RRset
                    set.records.push(record);
                }
                None => {
                    lines.insert((key, rtype), line);
                    node.rrsets.push(RrSet {
                        rtype,
                        records: vec![record],
                        rrsigs: Vec::new(),
                    });
                }
            }
            record_count += 1;
        }

        let Some(soa) = soa else {
            errors.push(ZoneError::new(
                file,
                0,
                format!("the zone {origin} has no SOA record"),
            ));
            return Err(errors);
        };
        let negative_ttl = match &soa.data {
            RData::SOA(SOA { minimum, .. }) => soa.ttl.min(*minimum),
            _ => soa.ttl,
        };

        // CNAME and other data (RFC 1034 §3.6.2).
        for (name, node) in &nodes {
            if node.get(RecordType::CNAME).is_some() && node.rrsets.len() > 1 {
                let line = lines
                    .get(&(name.clone(), RecordType::CNAME))
                    .copied()
                    .unwrap_or(0);
                errors.push(ZoneError::new(
                    file,
                    line,
                    format!("{name} has a CNAME and other data"),
                ));
            }
        }
        let apex = LowerName::new(&origin);
        if nodes
            .get(&apex)
            .and_then(|n| n.get(RecordType::NS))
            .is_none()
        {
            errors.push(ZoneError::new(
                file,
                0,
                format!("the zone {origin} has no NS records at its apex"),
            ));
        }

        // Empty non-terminals: every ancestor of a name, down from the apex, exists.
        let owners: Vec<Name> = nodes.keys().map(|k| Name::from(k.clone())).collect();
        for owner in owners {
            let mut labels = label_count(&owner);
            while labels > label_count(&origin) + 1 {
                labels -= 1;
                nodes
                    .entry(LowerName::new(&owner.trim_to(labels)))
                    .or_default();
            }
        }

        let mut zone = Zone {
            origin,
            soa,
            negative_ttl,
            nodes,
            record_count,
            warnings: Vec::new(),
            dnssec: None,
        };
        let mut warnings = Vec::new();

        // Name servers inside the zone need addresses (named-checkzone's check).
        for (name, node) in &zone.nodes {
            let Some(ns) = node.get(RecordType::NS) else {
                continue;
            };
            for record in &ns.records {
                let RData::NS(target) = &record.data else {
                    continue;
                };
                if zone.contains(&target.0) && !zone.has_address(&target.0) {
                    let line = lines
                        .get(&(name.clone(), RecordType::NS))
                        .copied()
                        .unwrap_or(0);
                    warnings.push(ZoneError::new(
                        file,
                        line,
                        format!(
                            "the name server {} of {name} has no A or AAAA record",
                            target.0
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() {
            warnings.sort_by_key(|e| e.line);
            zone.warnings = warnings;
            Ok(zone)
        } else {
            errors.sort_by_key(|e| e.line);
            Err(errors)
        }
    }

    /// The DNSSEC side of a signed zone (`None`: the zone is not signed).
    pub fn dnssec(&self) -> Option<&crate::dnssec::ZoneDnssec> {
        self.dnssec.as_deref()
    }

    /// Problems NSD and Knot accept but `named-checkzone` does not.
    pub fn warnings(&self) -> &[ZoneError] {
        &self.warnings
    }

    /// The apex, lower case.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA record.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The SOA record with the negative-caching TTL, for the authority section of negative
    /// answers (RFC 2308 §3).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        soa.ttl = self.negative_ttl;
        soa
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(soa) => soa.serial,
            _ => 0,
        }
    }

    /// Number of records in the zone.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Whether `name` is at or below the apex.
    pub fn contains(&self, name: &Name) -> bool {
        self.origin.zone_of(name)
    }

    /// The node at `name` (any case), if it exists (empty non-terminals exist).
    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Whether `name` owns an A or AAAA record.
    pub fn has_address(&self, name: &Name) -> bool {
        self.nodes
            .get(&LowerName::new(name))
            .is_some_and(|n| n.get(RecordType::A).is_some() || n.get(RecordType::AAAA).is_some())
    }

    /// Whether `name` (at or below the apex) is a name [`crate::lookup::lookup`] answers
    /// NXDOMAIN for, whatever the type asked: no zone cut at or above it below the apex, no node
    /// of its own, no wildcard at its closest encloser. Returns the closest encloser's number of
    /// labels. The walk goes down from the apex: every empty non-terminal is a node, so the first
    /// name missing on the way down is where the closest encloser ends, as
    /// [`Zone::delegation`] and [`Zone::closest_encloser`] find it.
    pub fn nxdomain_encloser(&self, name: &Name) -> Option<usize> {
        let apex_labels = label_count(&self.origin);
        let total = label_count(name);
        if total <= apex_labels || !self.contains(name) {
            return None;
        }
        let mut encloser = self.origin.clone();
        for labels in apex_labels + 1..=total {
            let ancestor = name.trim_to(labels);
            let Some(node) = self.nodes.get(&LowerName::new(&ancestor)) else {
                let wildcard =
                    Name::from_labels(std::iter::once(&b"*"[..]).chain(encloser.iter())).ok();
                let matched =
                    wildcard.is_some_and(|w| self.nodes.contains_key(&LowerName::new(&w)));
                return (!matched).then_some(labels - 1);
            };
            if node.get(RecordType::NS).is_some() {
                return None; // a zone cut: a referral
            }
            encloser = ancestor;
        }
        None // the name has a node
    }

    /// The topmost zone cut strictly below the apex at or above `name`: the name and its NS
    /// RRset. With `exclude_name`, a cut exactly at `name` does not count (a DS query is
    /// answered by the parent side).
    pub fn delegation(&self, name: &Name, exclude_name: bool) -> Option<(Name, &RrSet)> {
        let apex_labels = label_count(&self.origin);
        let total = label_count(name);
        let last = if exclude_name {
            total.saturating_sub(1)
        } else {
            total
        };
        for labels in apex_labels + 1..=last {
            let ancestor = name.trim_to(labels);
            let node = self.nodes.get(&LowerName::new(&ancestor))?;
            if let Some(ns) = node.get(RecordType::NS) {
                return Some((ancestor, ns));
            }
        }
        None
    }

    /// The closest encloser of a name that does not exist: its deepest existing ancestor.
    pub fn closest_encloser(&self, name: &Name) -> Name {
        let mut labels = label_count(name);
        while labels > label_count(&self.origin) {
            labels -= 1;
            let ancestor = name.trim_to(labels);
            if self.nodes.contains_key(&LowerName::new(&ancestor)) {
                return ancestor;
            }
        }
        self.origin.clone()
    }

    /// Every record of the zone (RRSIGs included), the SOA first, in an order suitable for a
    /// transfer.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        let apex = LowerName::new(&self.origin);
        let apex2 = apex.clone();
        let apex3 = apex.clone();
        let apex_rest = self
            .nodes
            .get(&apex)
            .into_iter()
            .flat_map(|n| n.rrsets.iter());
        let others = self
            .nodes
            .iter()
            .filter(move |(k, _)| **k != apex2)
            .flat_map(|(_, n)| n.rrsets.iter());
        let soa_sigs = self
            .nodes
            .get(&apex3)
            .and_then(|n| n.get(RecordType::SOA))
            .into_iter()
            .flat_map(|set| set.rrsigs.iter());
        std::iter::once(&self.soa).chain(soa_sigs).chain(
            apex_rest
                .chain(others)
                .filter(|set| set.rtype != RecordType::SOA)
                .flat_map(|set| set.records.iter().chain(set.rrsigs.iter())),
        )
    }
}

/// The number of labels of `name`, a leading `*` included (hickory's `num_labels` leaves it out,
/// as RRSIG label counts do).
pub fn label_count(name: &Name) -> usize {
    name.iter().count()
}
