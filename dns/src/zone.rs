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
    /// Every node's name in lower-case wire form, with what [`Zone::walk_wire`] needs to know
    /// of it ([`CUT`], [`WILDCARD`]): built with `nodes` by [`index`].
    pub(crate) wire: HashMap<Box<[u8]>, u8>,
}

/// A [`Zone::wire`] flag: the node is a zone cut (NS records, not the apex).
const CUT: u8 = 1;
/// A [`Zone::wire`] flag: the node has a wildcard child (`*.` + its name is a node).
const WILDCARD: u8 = 2;

/// The most labels a name has (255 bytes, each label at least 2 bytes, and the root).
pub const MAX_LABELS: usize = 128;

/// The [`Zone::wire`] index of `nodes`, a zone at `origin`.
pub(crate) fn index(nodes: &HashMap<LowerName, Node>, origin: &Name) -> HashMap<Box<[u8]>, u8> {
    let apex = LowerName::new(origin);
    let mut wire: HashMap<Box<[u8]>, u8> = HashMap::with_capacity(nodes.len());
    for (name, node) in nodes {
        let bytes = wire_name(&Name::from(name.clone()));
        let cut = *name != apex && node.get(RecordType::NS).is_some();
        *wire.entry(bytes.clone().into()).or_default() |= if cut { CUT } else { 0 };
        if bytes.get(..2) == Some(&[1, b'*'][..])
            && let Some(parent) = bytes.get(2..)
        {
            *wire.entry(parent.into()).or_default() |= WILDCARD;
        }
    }
    wire
}

/// `name` in lower-case wire form (no compression, the root's zero byte last).
pub fn wire_name(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// Where the labels of the wire-form name `wire` (no compression pointer) start, into `starts`:
/// their number (the root not counted), or `None` if it is not such a name.
pub fn label_starts(wire: &[u8], starts: &mut [usize; MAX_LABELS]) -> Option<usize> {
    let mut at = 0usize;
    let mut count = 0usize;
    loop {
        let len = usize::from(*wire.get(at)?);
        if len == 0 {
            return (at + 1 == wire.len()).then_some(count);
        }
        if len > 63 {
            return None;
        }
        *starts.get_mut(count)? = at;
        count += 1;
        at += 1 + len;
    }
}

/// Where the name made of the last `n` of the `labels` labels of the wire-form name `wire`
/// (label starts in `starts`, [`label_starts`]) begins in `wire`: the root's zero byte for
/// `n` = 0 (or more labels than the name has); `None` only for an empty `wire`.
pub fn suffix_at(
    wire: &[u8],
    starts: &[usize; MAX_LABELS],
    labels: usize,
    n: usize,
) -> Option<usize> {
    match labels.checked_sub(n).and_then(|i| starts.get(i)) {
        Some(&at) if n > 0 => Some(at),
        _ => wire.len().checked_sub(1),
    }
}

/// What one walk down a zone from its apex towards a name finds ([`Zone::walk`]): the one
/// owner of the questions of delegation, existence, closest encloser and wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// The name's number of labels.
    pub labels: usize,
    /// The topmost zone cut strictly below the apex at or above the name, in labels.
    pub cut: Option<usize>,
    /// The deepest node at or above the name, in labels: the name's own when it exists, else
    /// its closest encloser (every empty non-terminal is a node, so the first name missing on
    /// the way down is where it ends).
    pub encloser: usize,
    /// Whether the wildcard at the closest encloser (`*.` + encloser) is a node.
    pub wildcard: bool,
}

impl Walk {
    /// Whether the name is one [`crate::lookup::lookup`] answers NXDOMAIN for, whatever the
    /// type asked: no zone cut at or above it, no node of its own, no wildcard at its closest
    /// encloser.
    pub fn nxdomain(&self) -> bool {
        self.cut.is_none() && self.encloser < self.labels && !self.wildcard
    }
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

        let wire = index(&nodes, &origin);
        let mut zone = Zone {
            origin,
            soa,
            negative_ttl,
            nodes,
            record_count,
            warnings: Vec::new(),
            dnssec: None,
            wire,
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

    /// The walk down from the apex towards `name` (at or below the apex): see [`Walk`].
    pub fn walk(&self, name: &Name) -> Walk {
        let wire = wire_name(name);
        let mut starts = [0usize; MAX_LABELS];
        let labels = label_starts(&wire, &mut starts).unwrap_or(0);
        self.walk_wire(&wire, &starts, labels)
    }

    /// [`Zone::walk`] for a name in lower-case wire form, `wire`, whose `labels` labels start at
    /// `starts` ([`label_starts`]): no allocation, each ancestor a slice of `wire`.
    pub fn walk_wire(&self, wire: &[u8], starts: &[usize; MAX_LABELS], labels: usize) -> Walk {
        let apex = label_count(&self.origin);
        let suffix = |n: usize| -> &[u8] {
            suffix_at(wire, starts, labels, n)
                .and_then(|at| wire.get(at..))
                .unwrap_or_default()
        };
        let mut walk = Walk {
            labels,
            cut: None,
            encloser: apex.min(labels),
            wildcard: false,
        };
        let mut flags = self.wire.get(suffix(apex)).copied().unwrap_or(0);
        for n in apex + 1..=labels {
            let Some(&found) = self.wire.get(suffix(n)) else {
                break;
            };
            if found & CUT != 0 && walk.cut.is_none() {
                walk.cut = Some(n);
            }
            walk.encloser = n;
            flags = found;
        }
        walk.wildcard = walk.encloser < labels && flags & WILDCARD != 0;
        walk
    }

    /// The topmost zone cut strictly below the apex at or above `name`: the name and its NS
    /// RRset. With `exclude_name`, a cut exactly at `name` does not count (a DS query is
    /// answered by the parent side).
    pub fn delegation(&self, name: &Name, exclude_name: bool) -> Option<(Name, &RrSet)> {
        self.cut_of(name, &self.walk(name), exclude_name)
    }

    /// [`Zone::delegation`] from the walk towards `name`.
    pub fn cut_of(&self, name: &Name, walk: &Walk, exclude_name: bool) -> Option<(Name, &RrSet)> {
        let cut = walk
            .cut
            .filter(|&cut| !(exclude_name && cut == walk.labels))?;
        let ancestor = name.trim_to(cut);
        let ns = self
            .nodes
            .get(&LowerName::new(&ancestor))?
            .get(RecordType::NS)?;
        Some((ancestor, ns))
    }

    /// The closest encloser of `name`, a name that does not exist, from the walk towards it: its
    /// deepest existing ancestor.
    pub fn encloser_of(&self, name: &Name, walk: &Walk) -> Name {
        let apex = label_count(&self.origin);
        if walk.labels <= apex {
            return self.origin.clone();
        }
        name.trim_to(walk.encloser.min(walk.labels - 1).max(apex))
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
