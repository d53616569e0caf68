//! Signing a zone: from the zone as its file gives it to the zone served, with the DNSKEY,
//! CDS and CDNSKEY RRsets at the apex, an NSEC chain over every authoritative name and
//! delegation point, and an RRSIG for every authoritative RRset — all computed here, once, so
//! that answering a query never signs anything.

use super::keys::{Key, ZoneKeys};
use super::{ALGORITHM, KeyInfo, Policy, ZoneDnssec};
use crate::zone::{Node, RrSet, Zone};
use hickory_proto::dnssec::rdata::sig::SigInput;
use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC, RRSIG};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use std::collections::HashMap;
use std::sync::Arc;

/// Types a signed zone makes itself: taken out of the zone file's data (with a warning).
const GENERATED: [RecordType; 7] = [
    RecordType::DNSKEY,
    RecordType::RRSIG,
    RecordType::NSEC,
    RecordType::NSEC3,
    RecordType::NSEC3PARAM,
    RecordType::CDS,
    RecordType::CDNSKEY,
];

/// How far back a signature's inception goes, for validators whose clock is behind ours.
pub const INCEPTION_BACKDATE: u64 = 3600;

/// Signs `source` (an unsigned zone, as loaded from its file) with `keys` at `now`, serving SOA
/// serial `serial`.
pub fn sign(
    source: &Arc<Zone>,
    keys: &ZoneKeys,
    policy: &Policy,
    now: u64,
    serial: u32,
) -> Result<Zone, String> {
    let apex = source.origin().clone();
    let apex_lower = LowerName::new(&apex);
    let zsk = keys
        .signing_zsk(now)
        .ok_or("the zone has no active zone-signing key")?;
    let ksks: Vec<&Key> = keys.signing_ksks(now).collect();
    if ksks.is_empty() {
        return Err("the zone has no active key-signing key".into());
    }

    // The records: the file's, less the types signing makes, with the new serial.
    let mut nodes: HashMap<LowerName, Node> = source.nodes.clone();
    let mut dropped = 0;
    for node in nodes.values_mut() {
        let before = node.rrsets.len();
        node.rrsets.retain(|set| !GENERATED.contains(&set.rtype));
        dropped += before - node.rrsets.len();
    }
    if dropped > 0 {
        tracing::warn!(
            "zone {apex}: {dropped} DNSKEY/RRSIG/NSEC/NSEC3/CDS/CDNSKEY RRset(s) in the zone file \
             are ignored: onebox-dns signs the zone itself (dnssec = true)"
        );
    }
    let mut soa = source.soa().clone();
    if let RData::SOA(data) = &mut soa.data {
        data.serial = serial;
    }
    let soa_ttl = soa.ttl;
    let apex_node = nodes.entry(apex_lower.clone()).or_default();
    if let Some(set) = apex_node
        .rrsets
        .iter_mut()
        .find(|s| s.rtype == RecordType::SOA)
    {
        set.records = vec![soa.clone()];
    }

    // The apex's key RRsets: DNSKEY (every published key), CDS and CDNSKEY (the KSKs the
    // parent should point at), all with the SOA's TTL (Knot's default DNSKEY TTL).
    let ready_after = soa_ttl as u64 + policy.propagation_delay;
    let dnskeys: Vec<Record> = keys
        .published(now)
        .map(|k| rr(&apex, soa_ttl, DNSSECRData::DNSKEY(k.dnskey().clone())))
        .collect();
    let submitted = keys.submitted_ksks(now, ready_after);
    let mut cds = Vec::new();
    let mut cdnskey = Vec::new();
    for k in &submitted {
        cds.push(rr(&apex, soa_ttl, DNSSECRData::CDS(k.cds(&apex)?)));
        cdnskey.push(rr(&apex, soa_ttl, DNSSECRData::CDNSKEY(k.cdnskey())));
    }
    for (rtype, records) in [
        (RecordType::DNSKEY, dnskeys),
        (RecordType::CDS, cds),
        (RecordType::CDNSKEY, cdnskey),
    ] {
        if !records.is_empty() {
            apex_node.rrsets.push(RrSet {
                rtype,
                records,
                rrsigs: Vec::new(),
            });
        }
    }

    let wire = crate::zone::index(&nodes, &apex);
    let mut zone = Zone {
        origin: apex.clone(),
        soa,
        negative_ttl: source.negative_ttl,
        nodes,
        record_count: 0,
        warnings: source.warnings.clone(),
        dnssec: None,
        wire,
    };

    // Which names are authoritative: not below a zone cut. A cut itself owns an NSEC and its
    // DS (if any) is signed; its NS and the glue below are not.
    let mut owners: Vec<LowerName> = Vec::new();
    let mut cuts: Vec<LowerName> = Vec::new();
    for (name, node) in &zone.nodes {
        if node.rrsets.is_empty() {
            continue; // an empty non-terminal
        }
        let owner = Name::from(name.clone());
        if zone.delegation(&owner, true).is_some() {
            continue; // glue or occluded data below a cut
        }
        if *name != apex_lower && node.get(RecordType::NS).is_some() {
            cuts.push(name.clone());
        }
        owners.push(name.clone());
    }
    owners.sort();

    // The NSEC chain, in canonical order, the last pointing back at the apex; TTL the negative
    // caching TTL (RFC 9077).
    let nsec_ttl = zone.negative_ttl;
    for (i, owner) in owners.iter().enumerate() {
        let next = owners.get(i + 1).unwrap_or(&apex_lower);
        let node = zone.nodes.get_mut(owner).ok_or("a node disappeared")?;
        let mut types: Vec<RecordType> = node.rrsets.iter().map(|s| s.rtype).collect();
        types.push(RecordType::NSEC);
        types.push(RecordType::RRSIG);
        let name = Name::from(owner.clone());
        node.rrsets.push(RrSet {
            rtype: RecordType::NSEC,
            records: vec![rr(
                &name,
                nsec_ttl,
                DNSSECRData::NSEC(NSEC::new(Name::from(next.clone()), types)),
            )],
            rrsigs: Vec::new(),
        });
    }

    // Signatures: every RRset at an authoritative name; at a cut only DS and NSEC.
    let inception = now.saturating_sub(INCEPTION_BACKDATE);
    let mut earliest = u64::MAX;
    let mut signatures = 0usize;
    let lifetime = policy.signature_lifetime;
    for owner in &owners {
        let at_cut = cuts.contains(owner);
        let node = zone.nodes.get_mut(owner).ok_or("a node disappeared")?;
        for set in &mut node.rrsets {
            if at_cut && !matches!(set.rtype, RecordType::DS | RecordType::NSEC) {
                continue;
            }
            let signers: Vec<&Key> = match set.rtype {
                RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY => ksks.clone(),
                _ => vec![zsk],
            };
            set.rrsigs.clear();
            for key in signers {
                // Jitter: up to a tenth of the lifetime earlier, so that expirations spread.
                let jitter = fastrand::u64(0..=lifetime / 10);
                let expiration = now + lifetime - jitter;
                earliest = earliest.min(expiration);
                set.rrsigs
                    .push(sign_rrset(&apex, set, key, inception, expiration)?);
                signatures += 1;
            }
        }
    }

    zone.record_count = zone
        .nodes
        .values()
        .flat_map(|n| &n.rrsets)
        .map(|s| s.records.len() + s.rrsigs.len())
        .sum();
    let key_info = keys
        .keys()
        .iter()
        .map(|k| KeyInfo {
            role: k.role(),
            tag: k.tag(),
            state: k.state(now),
            submitted: submitted.iter().any(|s| s.tag() == k.tag()),
        })
        .collect();
    zone.dnssec = Some(Arc::new(ZoneDnssec {
        nsec_owners: owners,
        earliest_expiry: if earliest == u64::MAX {
            now + lifetime
        } else {
            earliest
        },
        signed_at: now,
        signatures,
        keys: key_info,
        source: source.clone(),
        nxdomain_parts: std::sync::OnceLock::new(),
    }));
    Ok(zone)
}

/// A record of the zone's class.
fn rr(name: &Name, ttl: u32, data: DNSSECRData) -> Record {
    Record::from_rdata(name.clone(), ttl, RData::DNSSEC(data))
}

/// The RRSIG of `set` by `key`.
fn sign_rrset(
    apex: &Name,
    set: &RrSet,
    key: &Key,
    inception: u64,
    expiration: u64,
) -> Result<Record, String> {
    let first = set.records.first().ok_or("an empty RRset")?;
    let owner = &first.name;
    let input = SigInput {
        type_covered: set.rtype,
        algorithm: ALGORITHM,
        // Labels of the owner, a leading `*` not counted (RFC 4034 §3.1.3).
        num_labels: owner.num_labels(),
        original_ttl: first.ttl,
        sig_expiration: SerialNumber::new(expiration as u32),
        sig_inception: SerialNumber::new(inception as u32),
        key_tag: key.tag(),
        signer_name: apex.clone(),
    };
    let data = to_be_signed(&input, owner, first.ttl, &set.records)?;
    let signature = key.sign(&data)?;
    Ok(Record::from_rdata(
        owner.clone(),
        first.ttl,
        RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, signature))),
    ))
}

/// The signed data of RFC 4034 §3.1.8.1: the RRSIG RDATA without the signature, then each
/// record in canonical form (§6.2: owner lower case, names in RDATA lower case for the types
/// that say so, no compression) and canonical order (§6.3: by RDATA bytes; duplicates once).
pub fn to_be_signed(
    input: &SigInput,
    owner: &Name,
    ttl: u32,
    records: &[Record],
) -> Result<Vec<u8>, String> {
    let err = |e: hickory_proto::ProtoError| format!("encoding for signing: {e}");
    let mut rdatas: Vec<Vec<u8>> = Vec::with_capacity(records.len());
    for record in records {
        let mut buf = Vec::new();
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_canonical_form(true);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        record.data.emit(&mut encoder).map_err(err)?;
        rdatas.push(buf);
    }
    rdatas.sort();
    rdatas.dedup();

    let mut out = Vec::new();
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_canonical_form(true);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    input.emit(&mut encoder).map_err(err)?;
    let mut owner_wire = Vec::new();
    {
        let mut e = BinEncoder::new(&mut owner_wire);
        e.set_name_encoding(NameEncoding::UncompressedLowercase);
        owner.to_lowercase().emit(&mut e).map_err(err)?;
    }
    for rdata in rdatas {
        out.extend_from_slice(&owner_wire);
        out.extend_from_slice(&u16::from(input.type_covered).to_be_bytes());
        out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        let len = u16::try_from(rdata.len()).map_err(|_| "RDATA over 65535 bytes")?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Ok(out)
}
