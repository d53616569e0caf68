//! The lookup in one zone (RFC 1034 §4.3.2, with RFC 4592 wildcards and RFC 2308 negative
//! answers): which records go in which section. No wire format here.

use crate::zone::{RrSet, Zone};
use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

/// Longest CNAME chain followed inside a zone.
const MAX_CHAIN: usize = 8;

/// The sections of an answer from a zone, and what kind of answer it is.
#[derive(Debug, Default)]
pub struct Sections {
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section.
    pub authorities: Vec<Record>,
    /// The additional section (addresses of name servers and mail exchangers).
    pub additionals: Vec<Record>,
    /// Whether AA is set (not on referrals).
    pub authoritative: bool,
    /// The response code; `None` is NOERROR.
    pub rcode: Option<ResponseCode>,
    /// The zone cut of a referral.
    pub referral: Option<Name>,
    /// The wildcard owner (`*.example.com.`) an answer was synthesised from.
    pub wildcard: Option<Name>,
}

/// Looks `query` up in `zone`.
pub fn lookup(zone: &Zone, query: &Query) -> Sections {
    let qtype = query.query_type;
    let mut out = Sections {
        authoritative: true,
        ..Sections::default()
    };
    let mut name = query.name.clone();
    let mut seen: Vec<LowerName> = Vec::new();
    loop {
        let exclude_cut = qtype == RecordType::DS && seen.is_empty();
        if let Some((cut, ns)) = zone.delegation(&name, exclude_cut) {
            // A referral: the child's name servers in authority, glue in additional. Not
            // authoritative, unless we got here through a CNAME we answer for.
            out.authoritative = !out.answers.is_empty();
            push_rrset(&mut out.authorities, ns, &cut);
            add_addresses(zone, &ns.records, &mut out.additionals);
            out.referral = Some(cut);
            return out;
        }
        let lower = LowerName::new(&name);
        let node = match zone.node(&lower) {
            Some(node) => node,
            None => {
                let encloser = zone.closest_encloser(&name);
                let wildcard = wildcard_of(&encloser);
                match wildcard
                    .as_ref()
                    .and_then(|w| zone.node(&LowerName::new(w)))
                {
                    Some(node) => {
                        out.wildcard = wildcard;
                        node
                    }
                    None => {
                        out.rcode = Some(ResponseCode::NXDomain);
                        out.authorities.push(zone.negative_soa());
                        return out;
                    }
                }
            }
        };
        if let Some(cname) = node
            .get(RecordType::CNAME)
            .filter(|_| qtype != RecordType::CNAME && qtype != RecordType::ANY)
        {
            push_rrset(&mut out.answers, cname, &name);
            seen.push(lower);
            let Some(RData::CNAME(target)) = cname.records.first().map(|r| &r.data) else {
                return out;
            };
            let target = target.0.clone();
            if !zone.contains(&target)
                || seen.len() >= MAX_CHAIN
                || seen.contains(&LowerName::new(&target))
            {
                return out;
            }
            name = target;
            continue;
        }
        if qtype == RecordType::ANY {
            // RFC 8482 §4.2: one RRset answers ANY (Knot's choice: the lowest type).
            if let Some(set) = node.rrsets.iter().min_by_key(|set| u16::from(set.rtype)) {
                push_rrset(&mut out.answers, set, &name);
            }
        } else if let Some(set) = node.get(qtype) {
            push_rrset(&mut out.answers, set, &name);
        }
        if out.answers.len() == seen.len() {
            // Nothing beyond the CNAMEs: NODATA.
            out.authorities.push(zone.negative_soa());
        } else {
            let answers = std::mem::take(&mut out.answers);
            add_addresses(zone, &answers, &mut out.additionals);
            out.answers = answers;
        }
        return out;
    }
}

/// `*.` + `name`.
fn wildcard_of(name: &Name) -> Option<Name> {
    Name::from_labels(std::iter::once(&b"*"[..]).chain(name.iter())).ok()
}

/// Appends the records of `set` with `owner` as their name (the query's spelling, or the
/// wildcard's expansion).
fn push_rrset(out: &mut Vec<Record>, set: &RrSet, owner: &Name) {
    for record in &set.records {
        let mut record = record.clone();
        record.name = owner.clone();
        out.push(record);
    }
}

/// Adds the in-zone A and AAAA records of every NS, MX and SRV target in `records`.
fn add_addresses(zone: &Zone, records: &[Record], additionals: &mut Vec<Record>) {
    let mut done: Vec<LowerName> = Vec::new();
    for record in records {
        let target = match &record.data {
            RData::NS(ns) => &ns.0,
            RData::MX(mx) => &mx.exchange,
            RData::SRV(srv) => &srv.target,
            _ => continue,
        };
        if !zone.contains(target) {
            continue;
        }
        let key = LowerName::new(target);
        if done.contains(&key) {
            continue;
        }
        if let Some(node) = zone.node(&key) {
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = node.get(rtype) {
                    additionals.extend(set.records.iter().cloned());
                }
            }
        }
        done.push(key);
    }
}
