//! The lookup in one zone (RFC 1034 §4.3.2, with RFC 4592 wildcards and RFC 2308 negative
//! answers): which records go in which section. No wire format here.

use crate::zone::{Node, RrSet, Zone};
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

/// Looks `query` up in `zone`. With `dnssec` (the client set DO) and a signed zone, the
/// answer carries the RRSIGs of its RRsets and the NSEC records that prove what does not exist
/// (RFC 4035 §3.1): NXDOMAIN (the name and the wildcard at its closest encloser), NODATA (the
/// name's NSEC, or for an empty non-terminal the one covering it), wildcard answers (no closer
/// match) and wildcard NODATA, the DS of a signed delegation or the NSEC proving there is none.
/// QTYPE RRSIG is answered like ANY, with the signatures of one RRset (the lowest type's), and
/// neither it nor NSEC follows a CNAME whose owner holds them (RFC 4035 §2.5): Knot's answers.
pub fn lookup(zone: &Zone, query: &Query, dnssec: bool) -> Sections {
    let qtype = query.query_type;
    let sec = if dnssec { zone.dnssec() } else { None };
    let sigs = sec.is_some();
    let mut out = Sections {
        authoritative: true,
        ..Sections::default()
    };
    // NSEC owners whose records prove a denial, in the order they were needed.
    let mut proofs: Vec<LowerName> = Vec::new();
    let mut name = query.name.clone();
    let mut seen: Vec<LowerName> = Vec::new();
    loop {
        let exclude_cut = qtype == RecordType::DS && seen.is_empty();
        let walk = zone.walk(&name);
        if let Some((cut, ns)) = zone.cut_of(&name, &walk, exclude_cut) {
            // A referral: the child's name servers in authority, glue in additional. Not
            // authoritative, unless we got here through a CNAME we answer for.
            out.authoritative = !out.answers.is_empty();
            push_rrset(&mut out.authorities, ns, &cut, false);
            if sigs && let Some(node) = zone.node(&LowerName::new(&cut)) {
                // A signed delegation's DS, or the NSEC proving it has none (insecure).
                match node.get(RecordType::DS) {
                    Some(ds) => push_rrset(&mut out.authorities, ds, &cut, true),
                    None => add_proof(&mut proofs, LowerName::new(&cut)),
                }
            }
            add_addresses(zone, &ns.records, &mut out.additionals, sigs);
            out.referral = Some(cut);
            add_proofs(zone, &proofs, &mut out.authorities);
            return out;
        }
        let lower = LowerName::new(&name);
        let mut expanded = None;
        let node = match zone.node(&lower) {
            Some(node) => node,
            None => {
                let encloser = zone.encloser_of(&name, &walk);
                let wildcard = wildcard_of(&encloser);
                match wildcard
                    .as_ref()
                    .and_then(|w| zone.node(&LowerName::new(w)))
                {
                    Some(node) => {
                        if let Some(sec) = sec {
                            // No closer match: the NSEC covering the name.
                            if let Some(owner) = sec.covering(&lower) {
                                add_proof(&mut proofs, owner.clone());
                            }
                        }
                        expanded = wildcard.clone();
                        out.wildcard = wildcard;
                        node
                    }
                    None => {
                        out.rcode = Some(ResponseCode::NXDomain);
                        push_negative_soa(zone, &mut out.authorities, sigs);
                        if let Some(sec) = sec {
                            // The name does not exist, nor the wildcard that could match it.
                            for denied in
                                std::iter::once(lower).chain(wildcard.as_ref().map(LowerName::new))
                            {
                                if let Some(owner) = sec.covering(&denied) {
                                    add_proof(&mut proofs, owner.clone());
                                }
                            }
                        }
                        add_proofs(zone, &proofs, &mut out.authorities);
                        return out;
                    }
                }
            }
        };
        // RFC 4035 §2.5: a CNAME's owner also holds its NSEC and RRSIGs. Asked for those, the
        // node answers itself (RFC 1034 §4.3.2 follows a CNAME only for types the node lacks).
        let at_cname = match qtype {
            RecordType::CNAME | RecordType::ANY => true,
            RecordType::NSEC => node.get(RecordType::NSEC).is_some(),
            RecordType::RRSIG => lowest_signed(node).is_some(),
            _ => false,
        };
        if let Some(cname) = node.get(RecordType::CNAME).filter(|_| !at_cname) {
            push_rrset(&mut out.answers, cname, &name, sigs);
            seen.push(lower);
            let Some(RData::CNAME(target)) = cname.records.first().map(|r| &r.data) else {
                add_proofs(zone, &proofs, &mut out.authorities);
                return out;
            };
            let target = target.0.clone();
            if !zone.contains(&target)
                || seen.len() >= MAX_CHAIN
                || seen.contains(&LowerName::new(&target))
            {
                add_proofs(zone, &proofs, &mut out.authorities);
                return out;
            }
            name = target;
            continue;
        }
        let before = out.answers.len();
        if qtype == RecordType::ANY {
            // RFC 8482 §4.2: one RRset answers ANY (Knot's choice: the lowest type).
            if let Some(set) = node.rrsets.iter().min_by_key(|set| u16::from(set.rtype)) {
                push_rrset(&mut out.answers, set, &name, sigs);
            }
        } else if qtype == RecordType::RRSIG {
            // The signatures of one RRset, as for ANY (Knot's answer): those of the lowest type.
            // A NODATA instead would be unprovable: the name's NSEC lists RRSIG.
            if let Some(set) = lowest_signed(node) {
                for rrsig in &set.rrsigs {
                    let mut rrsig = rrsig.clone();
                    rrsig.name = name.clone();
                    out.answers.push(rrsig);
                }
            }
        } else if let Some(set) = node.get(qtype) {
            push_rrset(&mut out.answers, set, &name, sigs);
        }
        if out.answers.len() == before {
            // Nothing beyond the CNAMEs: NODATA.
            push_negative_soa(zone, &mut out.authorities, sigs);
            if let Some(sec) = sec {
                // The NSEC at the name (or at the wildcard that matched) shows the type is
                // absent; an empty non-terminal has none, the one covering it proves it empty.
                let owner = match &expanded {
                    Some(wildcard) => Some(LowerName::new(wildcard)),
                    None if node.get(RecordType::NSEC).is_some() => Some(lower),
                    None => sec.covering(&lower).cloned(),
                };
                if let Some(owner) = owner {
                    add_proof(&mut proofs, owner);
                }
            }
        } else {
            let answers = std::mem::take(&mut out.answers);
            add_addresses(zone, &answers[before..], &mut out.additionals, sigs);
            out.answers = answers;
        }
        add_proofs(zone, &proofs, &mut out.authorities);
        return out;
    }
}

/// The signed RRset of the lowest type at `node`, if any.
fn lowest_signed(node: &Node) -> Option<&RrSet> {
    node.rrsets
        .iter()
        .filter(|set| !set.rrsigs.is_empty())
        .min_by_key(|set| u16::from(set.rtype))
}

/// Notes that the NSEC at `owner` goes in the authority section (once).
fn add_proof(proofs: &mut Vec<LowerName>, owner: LowerName) {
    if !proofs.contains(&owner) {
        proofs.push(owner);
    }
}

/// Appends the NSEC records (and their RRSIGs) at `proofs` to `authorities`.
fn add_proofs(zone: &Zone, proofs: &[LowerName], authorities: &mut Vec<Record>) {
    for owner in proofs {
        if let Some(set) = zone.node(owner).and_then(|n| n.get(RecordType::NSEC)) {
            authorities.extend(set.records.iter().cloned());
            authorities.extend(set.rrsigs.iter().cloned());
        }
    }
}

/// The SOA for a negative answer (with its RRSIG when `sigs`), TTL the negative-caching TTL.
fn push_negative_soa(zone: &Zone, authorities: &mut Vec<Record>, sigs: bool) {
    let soa = zone.negative_soa();
    let ttl = soa.ttl;
    authorities.push(soa);
    if sigs
        && let Some(set) = zone
            .node(&LowerName::new(zone.origin()))
            .and_then(|n| n.get(RecordType::SOA))
    {
        authorities.extend(set.rrsigs.iter().map(|r| {
            let mut r = r.clone();
            r.ttl = ttl;
            r
        }));
    }
}

/// `*.` + `name`.
fn wildcard_of(name: &Name) -> Option<Name> {
    Name::from_labels(std::iter::once(&b"*"[..]).chain(name.iter())).ok()
}

/// Appends the records of `set` with `owner` as their name (the query's spelling, or the
/// wildcard's expansion), and with `sigs` their RRSIGs.
fn push_rrset(out: &mut Vec<Record>, set: &RrSet, owner: &Name, sigs: bool) {
    let rrsigs = if sigs { &set.rrsigs[..] } else { &[] };
    for record in set.records.iter().chain(rrsigs) {
        let mut record = record.clone();
        record.name = owner.clone();
        out.push(record);
    }
}

/// Adds the in-zone A and AAAA records of every NS, MX and SRV target in `records` (with
/// `sigs`, and their RRSIGs where they are authoritative data).
fn add_addresses(zone: &Zone, records: &[Record], additionals: &mut Vec<Record>, sigs: bool) {
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
                    if sigs {
                        additionals.extend(set.rrsigs.iter().cloned());
                    }
                }
            }
        }
        done.push(key);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dnssec::{Policy, keys::ZoneKeys, sign};
    use hickory_proto::dnssec::rdata::DNSSECRData;
    use std::str::FromStr;
    use std::sync::Arc;

    /// A small zone signed by onebox-dns: an address, a CNAME, a wildcard.
    fn signed_zone() -> (tempfile::TempDir, Zone) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("example.test.zone");
        std::fs::write(
            &file,
            "$ORIGIN example.test.\n$TTL 3600\n\
             @ 600 IN SOA ns1 hostmaster 1 7200 3600 1209600 900\n@ IN NS ns1\n\
             ns1 IN A 192.0.2.53\nwww IN A 192.0.2.80\nwww IN AAAA 2001:db8::80\n\
             alias IN CNAME www\n*.wild IN TXT \"wildcard\"\n",
        )
        .unwrap();
        let origin = Name::from_str("example.test.").unwrap();
        let source = Arc::new(Zone::load(&file, &origin).unwrap());
        let now = crate::dnssec::now();
        let keys = ZoneKeys::open_or_create(&dir.path().join("state"), &origin, now).unwrap();
        let zone = sign::sign(&source, &keys, &Policy::default(), now, 2).unwrap();
        (dir, zone)
    }

    fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Sections {
        let query = Query::query(Name::from_str(name).unwrap(), qtype);
        lookup(zone, &query, true)
    }

    /// The (owner, type, covered type) of records, RRSIGs by the type they cover.
    fn shape(records: &[Record]) -> Vec<(String, RecordType, Option<RecordType>)> {
        records
            .iter()
            .map(|r| {
                let covered = match &r.data {
                    RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input().type_covered),
                    _ => None,
                };
                (r.name.to_string(), r.record_type(), covered)
            })
            .collect()
    }

    #[test]
    fn rrsig_queries_answer_the_lowest_types_signatures() {
        let (_dir, zone) = signed_zone();
        // Not a NODATA: the name's NSEC lists RRSIG, so that denial could not be proven.
        let a = ask(&zone, "www.example.test.", RecordType::RRSIG);
        assert_eq!(a.rcode, None);
        assert_eq!(
            shape(&a.answers),
            [(
                "www.example.test.".into(),
                RecordType::RRSIG,
                Some(RecordType::A)
            )]
        );
        assert!(a.authorities.is_empty());
        // At a CNAME's owner: its own signature, the CNAME not followed.
        let a = ask(&zone, "alias.example.test.", RecordType::RRSIG);
        assert_eq!(
            shape(&a.answers),
            [(
                "alias.example.test.".into(),
                RecordType::RRSIG,
                Some(RecordType::CNAME)
            )]
        );
        // From a wildcard: the expanded signature and the NSEC proving no closer match.
        let a = ask(&zone, "x.wild.example.test.", RecordType::RRSIG);
        assert_eq!(
            shape(&a.answers),
            [(
                "x.wild.example.test.".into(),
                RecordType::RRSIG,
                Some(RecordType::TXT)
            )]
        );
        assert!(
            shape(&a.authorities)
                .iter()
                .any(|(n, t, _)| n == "*.wild.example.test." && *t == RecordType::NSEC)
        );
    }

    #[test]
    fn nsec_at_a_cname_owner_is_answered_not_followed() {
        let (_dir, zone) = signed_zone();
        let a = ask(&zone, "alias.example.test.", RecordType::NSEC);
        assert_eq!(
            shape(&a.answers),
            [
                ("alias.example.test.".into(), RecordType::NSEC, None),
                (
                    "alias.example.test.".into(),
                    RecordType::RRSIG,
                    Some(RecordType::NSEC)
                ),
            ]
        );
        // Other types still follow the CNAME.
        let a = ask(&zone, "alias.example.test.", RecordType::AAAA);
        assert_eq!(a.answers.len(), 4, "CNAME, its RRSIG, AAAA, its RRSIG");
    }
}
