//! The versions a primary keeps for IXFR (RFC 1995): the differences between the zone
//! versions it served, in memory, newest last. Whoever changes the catalog (a reload, a
//! re-signing, a transfer from our primary) makes a new version; [`crate::xfr::watch`] records
//! its difference here. A chain of differences longer than the zone itself is useless (an AXFR
//! is smaller), so the journal of a zone never holds more records than the zone, nor more than
//! [`MAX_DIFFS`] differences; the oldest go first.

use crate::zone::Zone;
use hickory_proto::rr::{Record, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use std::collections::{HashMap, VecDeque};

/// Differences kept per zone at most (Knot's `journal-max-depth` is 20).
pub const MAX_DIFFS: usize = 32;

/// The difference between two consecutive versions of a zone.
#[derive(Debug, Clone)]
pub struct Diff {
    /// The SOA of the older version.
    pub from: Record,
    /// The SOA of the newer version.
    pub to: Record,
    /// Records of the older version not in the newer (the SOA aside).
    pub removed: Vec<Record>,
    /// Records of the newer version not in the older (the SOA aside).
    pub added: Vec<Record>,
}

impl Diff {
    /// The SOA serial of the older version.
    pub fn from_serial(&self) -> u32 {
        serial_of(&self.from)
    }

    /// The SOA serial of the newer version.
    pub fn to_serial(&self) -> u32 {
        serial_of(&self.to)
    }

    /// Records this difference takes in an IXFR (its two SOAs included).
    pub fn len(&self) -> usize {
        self.removed.len() + self.added.len() + 2
    }

    /// Whether it changes nothing but the SOA.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

/// The serial of an SOA record (0 for anything else).
pub fn serial_of(soa: &Record) -> u32 {
    match &soa.data {
        hickory_proto::rr::RData::SOA(soa) => soa.serial,
        _ => 0,
    }
}

/// A record's identity for comparing versions: its wire form, names lower case, uncompressed
/// (the TTL included: a new TTL is a removal and an addition, as in every IXFR).
pub fn record_key(record: &Record) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
    if record.emit(&mut encoder).is_err() {
        buf.clear();
        buf.extend_from_slice(record.to_string().as_bytes());
    }
    buf
}

/// The difference from `old` to `new` (every record but the SOA; RRSIGs and NSEC records
/// of a signed zone are records like the others).
pub fn diff(old: &Zone, new: &Zone) -> Diff {
    let index = |zone: &Zone| -> HashMap<Vec<u8>, Record> {
        zone.records()
            .skip(1) // the SOA
            .map(|r| (record_key(r), r.clone()))
            .collect()
    };
    let before = index(old);
    let mut after = index(new);
    let mut removed = Vec::new();
    for (key, record) in before {
        if after.remove(&key).is_none() {
            removed.push(record);
        }
    }
    let added: Vec<Record> = new
        .records()
        .skip(1)
        .filter(|r| after.contains_key(&record_key(r)))
        .cloned()
        .collect();
    Diff {
        from: old.soa().clone(),
        to: new.soa().clone(),
        removed,
        added,
    }
}

/// The differences kept for one zone, oldest first, each starting where the previous ended.
#[derive(Debug, Default)]
pub struct Journal {
    diffs: VecDeque<Diff>,
    /// Records in `diffs`.
    records: usize,
}

impl Journal {
    /// Adds the difference to a new version of a zone of `zone_records` records. A difference
    /// that does not start where the last one ended, or is larger than the zone, starts the
    /// journal again.
    pub fn push(&mut self, diff: Diff, zone_records: usize) {
        if self
            .diffs
            .back()
            .is_some_and(|last| last.to_serial() != diff.from_serial())
        {
            self.clear();
        }
        if diff.len() > zone_records {
            self.clear();
            return;
        }
        self.records += diff.len();
        self.diffs.push_back(diff);
        while self.diffs.len() > MAX_DIFFS || self.records > zone_records {
            match self.diffs.pop_front() {
                Some(old) => self.records -= old.len(),
                None => break,
            }
        }
    }

    /// Forgets every difference.
    pub fn clear(&mut self) {
        self.diffs.clear();
        self.records = 0;
    }

    /// The differences from serial `from` to serial `to`, if the journal has the whole chain.
    pub fn chain(&self, from: u32, to: u32) -> Option<Vec<&Diff>> {
        let start = self.diffs.iter().position(|d| d.from_serial() == from)?;
        let mut chain = Vec::new();
        for diff in self.diffs.iter().skip(start) {
            chain.push(diff);
            if diff.to_serial() == to {
                return Some(chain);
            }
        }
        None
    }

    /// The serials the journal can start an IXFR from.
    pub fn serials(&self) -> Vec<u32> {
        self.diffs.iter().map(Diff::from_serial).collect()
    }

    /// Number of differences kept.
    pub fn len(&self) -> usize {
        self.diffs.len()
    }

    /// Whether no difference is kept.
    pub fn is_empty(&self) -> bool {
        self.diffs.is_empty()
    }
}

/// Whether serial `a` is newer than `b` (RFC 1982).
pub fn newer(a: u32, b: u32) -> bool {
    SerialNumber::new(a) > SerialNumber::new(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::zonefile;
    use hickory_proto::rr::Name;
    use std::path::Path;

    fn zone(text: &str) -> Zone {
        let origin = Name::from_ascii("example.test.").unwrap();
        let (records, errors) = zonefile::parse(Path::new("t.zone"), text, &origin);
        assert!(errors.is_empty(), "{errors:?}");
        Zone::build(Path::new("t.zone"), &origin, records).unwrap()
    }

    fn version(serial: u32, extra: &str) -> Zone {
        zone(&format!(
            "$TTL 300\n@ SOA ns hostmaster {serial} 60 60 600 60\n@ NS ns\nns A 192.0.2.1\n\
             a A 192.0.2.2\nb A 192.0.2.3\nc A 192.0.2.4\nd A 192.0.2.5\n{extra}"
        ))
    }

    #[test]
    fn a_diff_names_what_changed_and_nothing_else() {
        let old = version(1, "www A 192.0.2.10\n");
        let new = version(2, "www A 192.0.2.11\nnew TXT \"x\"\n");
        let d = diff(&old, &new);
        assert_eq!((d.from_serial(), d.to_serial()), (1, 2));
        let show = |rs: &[Record]| {
            let mut v: Vec<String> = rs.iter().map(|r| r.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(
            show(&d.removed),
            vec!["www.example.test. 300 IN A 192.0.2.10"]
        );
        assert_eq!(
            show(&d.added),
            vec![
                "new.example.test. 300 IN TXT x",
                "www.example.test. 300 IN A 192.0.2.11"
            ]
        );
    }

    #[test]
    fn the_journal_chains_versions_and_stays_smaller_than_the_zone() {
        let v: Vec<Zone> = (1..=4)
            .map(|s| version(s, &format!("www A 192.0.2.{s}\n")))
            .collect();
        let mut j = Journal::default();
        for pair in v.windows(2) {
            j.push(diff(&pair[0], &pair[1]), pair[1].record_count());
        }
        // Each difference is 4 records, the zone 9: only the last two fit.
        assert_eq!(j.serials(), vec![2, 3]);
        assert!(j.chain(1, 4).is_none());
        let chain = j.chain(2, 4).expect("2 -> 4");
        assert_eq!(chain.len(), 2);
        assert!(j.chain(3, 4).is_some());
        // A difference that does not follow on starts again.
        j.push(diff(&v[0], &v[1]), 9);
        assert_eq!(j.serials(), vec![1]);
        // One larger than the zone empties it.
        let big = version(
            9,
            &(0..20)
                .map(|i| format!("x{i} A 192.0.2.9\n"))
                .collect::<String>(),
        );
        j.push(diff(&v[1], &big), v[1].record_count());
        assert!(j.is_empty());
    }
}
