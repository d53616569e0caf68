//! The answer cache: the fast path of plain queries, over UDP and TCP.
//!
//! A *plain* query ([`parse`]) is a request (a UDP datagram, or a TCP message without its
//! length) of at most [`MAX_REQUEST`] bytes with QR clear,
//! opcode QUERY, one question of class IN (not AXFR/IXFR) whose name has no compression pointer,
//! no answer or authority records, and nothing in the additional section but an OPT record of
//! EDNS version 0 with no option but, at most, one DNS COOKIE (RFC 7873: a client cookie of 8
//! bytes, or one with a server cookie, 16 to 40); no byte may follow. The answer today's path
//! ([`crate::query::Engine::respond`]) builds for such a request depends on the catalog served
//! and on the request's bytes — but on its ID and RD bit only in that it echoes them in the
//! response's header, and not at all on a COOKIE option (today's path neither checks nor
//! returns cookies: its OPT record carries no option). So the cache's key is the request's
//! bytes with the ID zeroed, RD cleared, the question's name in lower case and the COOKIE
//! option left out, and the value is the response today's path encoded for the request with
//! its question's name in lower case. A TCP request's key has the QR bit set as well (no plain
//! request has it): its answer, never cut to a UDP payload size, is an entry of its own. A hit
//! copies it and patches in the request's ID, RD bit and the question's name as the request
//! spells it (a query with mixed case, as resolvers send for DNS 0x20, is a hit of the entry
//! of its lower-case spelling; the answer's names that are compression pointers into the
//! question echo the request's capitals, as Knot's and NSD's do). For a request spelled in
//! lower case (nearly every query) the hit is byte-identical to what today's path would send;
//! for one with capitals, equal once parsed, names compared case-insensitively (today's path,
//! hickory's name compression comparing label bytes case-sensitively, can compress its other
//! names differently). On a miss, a request with capitals is answered by today's path as if
//! spelled in lower case, and its question then spelled as asked (so that what is cached is
//! what a hit sends). The test `fastpath` in dns/tests proves both for every query of the
//! differential suite, unsigned and signed.
//!
//! Only whole answers are kept: NOERROR (positive, NODATA, referral), not truncated, sent as built (not slipped by rate limiting), to a request that was not logged.
//! Each entry remembers its answer's rate-limiting flow so that a hit is accounted exactly as
//! today's path accounts it; a hit that rate limiting slips is sent as today's path slips it
//! (header with TC, the question, the OPT record), one it drops is not sent.
//!
//! The cache belongs to one catalog: every change of the data served (reload, DNSSEC signing
//! again, a zone transfer into a secondary zone, a key change) stores a new catalog, and the
//! first query that sees it starts a new, empty generation (the old one is dropped). While a
//! secondary zone has no copy to serve (answered SERVFAIL), the fast path stands aside.
//!
//! Bounded: [`MAX_ENTRIES`] answers and [`MAX_BYTES`] bytes in all, in [`SHARDS`] shards. A full
//! shard replaces a random entry with a new answer.
//!
//! NXDOMAIN answers are never entries: names that do not exist are mostly asked once (random
//! names, typos), and would only evict useful answers. For a name of a zone that does not exist
//! ([`crate::zone::Walk::nxdomain`]: no node, no zone cut above it, no wildcard at its closest
//! encloser; found on the request's bytes, [`crate::catalog::Catalog::walk_wire`]) the answer
//! has the zone's SOA and nothing that depends on the name unless it carries NSEC proofs. So the
//! first such answer for a zone's closest encloser and shape of request (type, flags, EDNS: the
//! key without the labels that do not exist) becomes a [`Denial`], a template that answers every
//! other name under that encloser: the request's question is copied in as spelled and the
//! compression pointers after it moved by the difference in length, no allocation; byte for
//! byte today's answer. With NSEC proofs (DO on a signed zone) the template is
//! [`Denial::signed`]: the answer is assembled from the zone's [`NsecParts`] (the SOA and its
//! RRSIG, the NSEC covering the name found by a binary search of the chain, the one covering
//! the wildcard): equal to today's answer once parsed, not byte for byte (today's path
//! compresses the NSEC owners and the SOA's names; the parts are written out). [`MAX_DENIALS`]
//! templates at most per catalog. The test `fastpath` asks every request of the differential
//! suite with random labels in front of its name and compares: byte for byte, or once parsed for
//! an answer with NSEC proofs.

use crate::answer::Transport;
use crate::catalog::Catalog;
use crate::rrl::Class;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The most answers kept at once, in all shards.
pub const MAX_ENTRIES: usize = 65_536;

/// The most bytes kept at once (answers and keys, and a fixed overhead per entry), in all
/// shards.
pub const MAX_BYTES: usize = 64 << 20;

/// Shards of the cache, each behind its own lock.
pub const SHARDS: usize = 16;

/// The longest request the fast path takes (and so the longest key).
pub const MAX_REQUEST: usize = 512;

/// Bytes counted per entry beyond its answer and keys (the map and slot overhead, roughly).
const ENTRY_OVERHEAD: usize = 96;

/// The length of the OPT record of a plain request and of a cacheable response (root name,
/// type, class, TTL, RDLENGTH 0).
const OPT_LEN: usize = 11;

/// What [`parse`] learns of a plain query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plain {
    /// Where the question section ends (the header is 12 bytes, the question follows).
    pub question_end: usize,
    /// Whether the request carries an OPT record.
    pub edns: bool,
    /// Where the bytes the answer depends on end: the request's end, or the start of its
    /// COOKIE option.
    pub key_end: usize,
}

/// Whether `request` is a plain query (see the module's documentation), and where its question
/// ends. Never panics, on any input.
pub fn parse(request: &[u8]) -> Option<Plain> {
    if request.len() > MAX_REQUEST {
        return None;
    }
    let header = request.get(..12)?;
    if header.get(2)? & 0xf8 != 0 {
        return None; // QR set, or an opcode other than QUERY
    }
    let count = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*header.get(at)?, *header.get(at + 1)?]))
    };
    if count(4)? != 1 || count(6)? != 0 || count(8)? != 0 {
        return None;
    }
    let edns = match count(10)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let mut at = 12usize;
    loop {
        let len = usize::from(*request.get(at)?);
        at = at.checked_add(1 + len)?;
        if at - 12 > 255 {
            return None; // longer than a name may be
        }
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // a compression pointer or an extended label type
        }
    }
    let fixed = request.get(at..at.checked_add(4)?)?;
    let qtype = u16::from_be_bytes([*fixed.first()?, *fixed.get(1)?]);
    let qclass = u16::from_be_bytes([*fixed.get(2)?, *fixed.get(3)?]);
    if qclass != 1 || matches!(qtype, 251 | 252) {
        return None; // not class IN, or a zone transfer
    }
    let question_end = at + 4;
    let (key_end, end) = if edns {
        let key_end = question_end.checked_add(OPT_LEN)?;
        let opt = request.get(question_end..key_end)?;
        // Root owner, type OPT (41), version 0 (the TTL's second byte).
        if opt.first() != Some(&0) || opt.get(1..3) != Some(&[0, 41][..]) || opt.get(6) != Some(&0)
        {
            return None;
        }
        let rdlength = usize::from(u16::from_be_bytes([*opt.get(9)?, *opt.get(10)?]));
        if rdlength > 0 {
            // One option, a COOKIE (10) of a length RFC 7873 allows, filling the RDATA.
            let option = request.get(key_end..key_end.checked_add(4)?)?;
            let len = usize::from(u16::from_be_bytes([*option.get(2)?, *option.get(3)?]));
            if option.get(..2) != Some(&[0, 10][..])
                || !(len == 8 || (16..=40).contains(&len))
                || rdlength != 4 + len
            {
                return None;
            }
        }
        (key_end, key_end + rdlength)
    } else {
        (question_end, question_end)
    };
    (end == request.len()).then_some(Plain {
        question_end,
        edns,
        key_end,
    })
}

/// The cache key of a plain `request` that came over `transport`: its bytes with the ID zeroed
/// and RD cleared (and QR set for TCP), the question's name in lower case, its COOKIE option
/// left out (the OPT record's RDLENGTH 0), written into `buf`. `None` if it is longer than
/// [`MAX_REQUEST`].
pub fn key<'b>(
    request: &[u8],
    plain: Plain,
    transport: Transport,
    buf: &'b mut [u8; MAX_REQUEST],
) -> Option<&'b [u8]> {
    let key = buf.get_mut(..plain.key_end)?;
    key.copy_from_slice(request.get(..plain.key_end)?);
    if plain.edns
        && let Some(rdlength) = key.get_mut(plain.key_end.saturating_sub(2)..)
    {
        rdlength.fill(0);
    }
    if let Some(id) = key.get_mut(..2) {
        id.fill(0);
    }
    if let Some(name) = key.get_mut(question_name(plain.question_end)) {
        name.make_ascii_lowercase(); // a length byte (at most 63) is never a capital
    }
    if let Some(flags) = key.get_mut(2) {
        *flags &= !0x01;
        if transport == Transport::Tcp {
            *flags |= 0x80;
        }
    }
    Some(key)
}

/// A cached answer.
#[derive(Debug)]
pub struct Entry {
    /// The response today's path encoded.
    response: Box<[u8]>,
    /// Its response code.
    pub rcode: ResponseCode,
    /// Its rate-limiting class.
    pub class: Class,
    /// The name its rate-limiting flow is keyed by (`None`: the root).
    pub name: Option<Name>,
    /// Where its question section ends.
    question_end: usize,
    /// Whether it ends with an OPT record.
    edns: bool,
}

impl Entry {
    /// The entry for `response`, today's answer to the plain `request`, if it may be cached:
    /// NOERROR or NXDOMAIN, not truncated, its ID, RD bit and question the request's, no
    /// Extended DNS Error or other option in its OPT record (which must be its last record).
    pub fn new(
        request: &[u8],
        plain: Plain,
        response: &[u8],
        class: Class,
        name: Option<Name>,
    ) -> Option<Entry> {
        let q = plain.question_end;
        let (head, req_head) = (response.get(..12)?, request.get(..12)?);
        let flags = *head.get(2)?;
        let rcode = head.get(3)? & 0x0f;
        if flags & 0x80 == 0                       // not a response
            || flags & 0x02 != 0                   // truncated
            || head.get(..2) != req_head.get(..2)  // ID not echoed
            || flags & 0x01 != req_head.get(2)? & 0x01 // RD not echoed
            || !matches!(rcode, 0 | 3)
            || head.get(4..6) != Some(&[0, 1][..])
            || response.get(12..q) != request.get(12..q)
        {
            return None;
        }
        let arcount = u16::from_be_bytes([*head.get(10)?, *head.get(11)?]);
        if plain.edns {
            let opt = response.get(response.len().checked_sub(OPT_LEN)?..)?;
            if arcount == 0
                || response.len() < q + OPT_LEN
                || opt.get(..3) != Some(&[0, 0, 41][..])
                || opt.get(5) != Some(&0) // extended RCODE
                || opt.get(9..11) != Some(&[0, 0][..])
            {
                return None;
            }
        }
        Some(Entry {
            response: response.into(),
            rcode: ResponseCode::from_low(rcode),
            class,
            name,
            question_end: q,
            edns: plain.edns,
        })
    }

    /// The answer to `request` (a plain query with this entry's key), written into `out`
    /// (cleared first; its buffer reused): the cached response with the request's ID and RD bit.
    pub fn answer_into(&self, request: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.response);
        patch(out, request, self.question_end);
    }

    /// The answer to `request` as rate limiting slips it (as [`crate::answer::truncate`] and
    /// [`crate::answer::encode`] make it): the header with TC and no records counted but the
    /// OPT record, the question, the OPT record; written into `out` (cleared first; its buffer
    /// reused).
    pub fn slipped_into(&self, request: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.response.get(..self.question_end).unwrap_or_default());
        if self.edns
            && let Some(opt) = self
                .response
                .get(self.response.len().saturating_sub(OPT_LEN)..)
        {
            out.extend_from_slice(opt);
        }
        patch(out, request, self.question_end);
        if let Some(flags) = out.get_mut(2) {
            *flags |= 0x02;
        }
        if let Some(counts) = out.get_mut(6..12) {
            counts.copy_from_slice(&[0, 0, 0, 0, 0, u8::from(self.edns)]);
        }
    }

    /// The bytes this entry is counted for, with its key of `key_len` bytes (kept twice).
    fn cost(&self, key_len: usize) -> usize {
        self.response.len() + 2 * key_len + ENTRY_OVERHEAD
    }
}

/// The most names hickory's encoder keeps as compression candidates in one message (its
/// `COMPRESSION_CANDIDATE_LIMIT`): every label written out is one, the question's first.
const COMPRESSION_CANDIDATES: usize = 64;

/// The most NXDOMAIN templates kept per catalog (one per zone and shape of request: type,
/// flags, EDNS; so a handful per zone in practice).
pub const MAX_DENIALS: usize = 4096;

/// The key of the NXDOMAIN template for a plain request whose answer-cache key is `key` and
/// whose question's name has its closest encloser at `encloser_at` (the labels before are the
/// ones that do not exist): `key` without those labels, written into `buf`. `None` if there are
/// none.
pub fn denial_key<'b>(
    key: &[u8],
    plain: Plain,
    encloser_at: usize,
    buf: &'b mut [u8; MAX_REQUEST],
) -> Option<&'b [u8]> {
    if !(13..plain.question_end.saturating_sub(4)).contains(&encloser_at) {
        return None;
    }
    let head = key.get(..12)?;
    let rest = key.get(encloser_at..)?;
    let out = buf.get_mut(..head.len() + rest.len())?;
    let (a, b) = out.split_at_mut(head.len());
    a.copy_from_slice(head);
    b.copy_from_slice(rest);
    Some(out)
}

/// The most bytes an answer to the plain `request` may take over `transport`, as
/// [`crate::edns::size_limit`] says: 64 KiB over TCP; over UDP the EDNS payload size, at least
/// 512 and at most [`crate::edns::EDNS_PAYLOAD`], or 512 without EDNS.
pub fn size_limit(request: &[u8], plain: Plain, transport: Transport) -> usize {
    if transport == Transport::Tcp {
        return usize::from(u16::MAX);
    }
    if !plain.edns {
        return 512;
    }
    let at = plain.question_end + 3; // the OPT record's CLASS: the payload size
    request.get(at..at + 2).map_or(512, |b| {
        usize::from(u16::from_be_bytes([b[0], b[1]]).clamp(512, crate::edns::EDNS_PAYLOAD))
    })
}

/// Whether the plain `request` has the DNSSEC OK bit (RFC 3225) in its OPT record.
pub fn dnssec_ok(request: &[u8], plain: Plain) -> bool {
    plain.edns
        && request
            .get(plain.question_end + 7) // the OPT record's TTL: extended RCODE, version, flags
            .is_some_and(|flags| flags & 0x80 != 0)
}

/// An NXDOMAIN answer that serves the names of a zone that do not exist
/// ([`crate::zone::Walk::nxdomain`]) under one closest encloser, asked with one shape of
/// request: the answer's records (the zone's SOA) do not depend on the name, only the question
/// and the compression pointers into it do (with NSEC proofs, see [`Denial::signed`]).
/// Built from today's answer to one such name; the answer to another is its header (ID and RD
/// the request's), the request's question as spelled, and its records with every compression
/// pointer moved by the difference in the names' lengths. Today's path would compress the SOA's
/// names into the labels that do not exist only if one of them ended with those labels: such a
/// name is left to it ([`Denial::serves`]).
#[derive(Debug)]
pub struct Denial {
    /// Today's answer to the name it was built from (in lower case).
    response: Box<[u8]>,
    /// Where that answer's question ends.
    question_end: usize,
    /// Where the compression pointers after the question are.
    pointers: Box<[usize]>,
    /// The SOA's MNAME and RNAME cut to one label more than the closest encloser (wire form;
    /// empty when shorter).
    next_closers: [Box<[u8]>; 2],
    /// The labels its records write out (not compressed).
    literal_labels: usize,
    /// Its rate-limiting class.
    pub class: Class,
    /// The name its rate-limiting flow is keyed by (the apex).
    pub name: Option<Name>,
    /// Whether it ends with an OPT record.
    edns: bool,
    /// For a signed zone's answer with NSEC proofs: its parts ([`Denial::signed`]).
    nsec: Option<Nsec>,
}

/// What a signed NXDOMAIN template assembles its authority section from.
#[derive(Debug)]
struct Nsec {
    /// The zone's parts.
    parts: Arc<NsecParts>,
    /// The NSEC (in `parts.chain`) covering the wildcard at the closest encloser.
    wildcard: usize,
    /// The apex's number of labels.
    apex_labels: usize,
}

/// A signed zone's NXDOMAIN answers in wire parts (RFC 4035 §3.1.3.2), built once per signed
/// zone: the SOA with the negative-caching TTL and its RRSIGs, each without its owner (a
/// compression pointer to the apex in the question goes in front); and, for each NSEC owner in
/// canonical order, its NSEC record and RRSIGs in wire form, nothing compressed. What
/// [`crate::lookup::lookup`] puts in the authority section of such an answer, as today's path
/// encodes it but for name compression: today's path (hickory's encoder) also compresses the
/// NSEC owners and the SOA's MNAME and RNAME, so an answer assembled from these parts is equal to
/// today's once parsed, not byte for byte, and never shorter (the question has fewer than 64
/// labels: each of its names is a compression candidate of today's path).
#[derive(Debug)]
pub struct NsecParts {
    /// The SOA and its RRSIGs, each a 2-byte placeholder for its owner (at `soa_owners`) and the
    /// rest of the record.
    soa: Box<[u8]>,
    /// Where the owner placeholders are in `soa`.
    soa_owners: Box<[usize]>,
    /// The NSEC owners (lower-case wire form, canonical order) and their NSEC records and
    /// RRSIGs (wire form, owners written out) with their number.
    chain: Box<[Proof]>,
}

/// One NSEC owner of [`NsecParts`]: its name (lower-case wire form), its NSEC record and RRSIGs
/// (wire form), their number.
type Proof = (Box<[u8]>, Box<[u8]>, u16);

/// `record` in wire form, no name compressed.
fn uncompressed(record: &hickory_proto::rr::Record) -> Option<Vec<u8>> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
    let mut buf = Vec::new();
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record.emit(&mut encoder).ok()?;
    Some(buf)
}

/// The canonical order of two names in lower-case wire form (RFC 4034 §6.1: label by label from
/// the root, each label's bytes, a shorter label first; then fewer labels first), as
/// `LowerName`'s order sorts the NSEC chain.
fn canonical_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let (mut sa, mut sb) = (
        [0usize; crate::zone::MAX_LABELS],
        [0usize; crate::zone::MAX_LABELS],
    );
    let na = crate::zone::label_starts(a, &mut sa).unwrap_or(0);
    let nb = crate::zone::label_starts(b, &mut sb).unwrap_or(0);
    for (&x, &y) in sa[..na].iter().rev().zip(sb[..nb].iter().rev()) {
        match wire_label(a, x).cmp(wire_label(b, y)) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
    }
    na.cmp(&nb)
}

/// The label at `at` of the wire-form name `wire` (without its length byte).
fn wire_label(wire: &[u8], at: usize) -> &[u8] {
    let len = usize::from(wire.get(at).copied().unwrap_or(0));
    wire.get(at + 1..at + 1 + len).unwrap_or_default()
}

impl NsecParts {
    /// The parts of `zone`, if it is signed (built on first use, then kept with the zone).
    pub fn of(zone: &crate::zone::Zone) -> Option<Arc<NsecParts>> {
        let sec = zone.dnssec.as_ref()?;
        sec.nxdomain_parts
            .get_or_init(|| NsecParts::build(zone).map(Arc::new))
            .clone()
    }

    fn build(zone: &crate::zone::Zone) -> Option<NsecParts> {
        use hickory_proto::rr::{LowerName, RecordType};
        let sec = zone.dnssec()?;
        let soa = zone.negative_soa();
        let ttl = soa.ttl;
        let sigs = zone
            .node(&LowerName::new(zone.origin()))
            .and_then(|n| n.get(RecordType::SOA))
            .map(|set| set.rrsigs.clone())
            .unwrap_or_default();
        let (mut bytes, mut owners) = (Vec::new(), Vec::new());
        for mut record in std::iter::once(soa).chain(sigs) {
            record.ttl = ttl;
            record.name = Name::root();
            let wire = uncompressed(&record)?;
            owners.push(bytes.len());
            bytes.extend_from_slice(&[0xc0, 0]);
            bytes.extend_from_slice(wire.get(1..)?); // the root's byte left out
        }
        let mut chain = Vec::with_capacity(sec.nsec_owners.len());
        for owner in &sec.nsec_owners {
            let mut records = Vec::new();
            let mut count = 0u16;
            if let Some(set) = zone.node(owner).and_then(|n| n.get(RecordType::NSEC)) {
                for record in set.records.iter().chain(&set.rrsigs) {
                    records.extend_from_slice(&uncompressed(record)?);
                    count = count.checked_add(1)?;
                }
            }
            let name = crate::zone::wire_name(&Name::from(owner.clone()));
            chain.push((name.into(), records.into(), count));
        }
        Some(NsecParts {
            soa: bytes.into(),
            soa_owners: owners.into(),
            chain: chain.into(),
        })
    }

    /// Where in the chain the NSEC covering `name` (lower-case wire form, no NSEC of its own) is:
    /// the last owner before it in canonical order, or the last of all
    /// ([`crate::dnssec::ZoneDnssec::covering`]).
    fn covering(&self, name: &[u8]) -> Option<usize> {
        let i = self
            .chain
            .partition_point(|(owner, _, _)| canonical_cmp(owner, name).is_lt());
        i.checked_sub(1).or_else(|| self.chain.len().checked_sub(1))
    }
}

/// Why [`Denial::new`] or [`Denial::signed`] made no template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTemplate {
    /// No name of this shape of request can have one (not NXDOMAIN, records other than the
    /// SOA without DO on a signed zone, truncated, ...).
    Never,
    /// This name's answer compresses into the labels that do not exist; another's may not.
    NotThisName,
}

/// A name at `at` in `message`: where it ends, and the compression pointer's position if it
/// ends with one; counts its labels written out into `labels`. `None` if it runs off the
/// message.
fn walk_name(message: &[u8], mut at: usize, labels: &mut usize) -> Option<(usize, Option<usize>)> {
    loop {
        let len = *message.get(at)?;
        match len {
            0 => return Some((at + 1, None)),
            1..=63 => {
                at += 1 + usize::from(len);
                *labels += 1;
            }
            0xc0..=0xff => {
                message.get(at + 1)?;
                return Some((at + 2, Some(at)));
            }
            _ => return None,
        }
    }
}

/// The name at `at` in `message`, its compression pointers followed (at most 127), in wire form.
fn decompress(message: &[u8], mut at: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..128 {
        let len = *message.get(at)?;
        match len {
            0 => {
                out.push(0);
                return (out.len() <= 255).then_some(out);
            }
            1..=63 => {
                out.extend_from_slice(message.get(at..at + 1 + usize::from(len))?);
                at += 1 + usize::from(len);
            }
            0xc0..=0xff => {
                at = usize::from(u16::from_be_bytes([len, *message.get(at + 1)?]) & 0x3fff);
            }
            _ => return None,
        }
    }
    None
}

/// The last `labels` labels of `name` (wire form), with the root; empty if it has fewer.
fn last_labels(name: &[u8], labels: usize) -> Box<[u8]> {
    let mut starts = Vec::new();
    let mut at = 0usize;
    while let Some(&len) = name.get(at) {
        if len == 0 {
            break;
        }
        starts.push(at);
        at += 1 + usize::from(len);
    }
    match starts.len().checked_sub(labels).and_then(|i| starts.get(i)) {
        Some(&start) => name.get(start..).unwrap_or_default().into(),
        None => Box::default(),
    }
}

/// The number of labels of the name at `at` in `message` (no pointers), the root left out.
fn count_labels(message: &[u8], mut at: usize) -> usize {
    let mut labels = 0;
    while let Some(&len) = message.get(at) {
        if len == 0 || len > 63 {
            break;
        }
        labels += 1;
        at += 1 + usize::from(len);
    }
    labels
}

impl Denial {
    /// The template for `response`, today's answer to the plain `request` (its question in lower
    /// case) whose name's labels that do not exist start at `labels.0` (the next closer name)
    /// and end at `labels.1` (the closest encloser), if it is one: NXDOMAIN, not truncated, its
    /// ID, RD bit and question the request's, nothing but the SOA in the authority section and
    /// the OPT record (no option) in the additional, no compression pointer into the labels
    /// that do not exist.
    pub fn new(
        request: &[u8],
        plain: Plain,
        response: &[u8],
        labels: (usize, usize),
        class: Class,
        name: Option<Name>,
    ) -> Result<Denial, NoTemplate> {
        Denial::build(request, plain, response, labels, class, name)
            .unwrap_or(Err(NoTemplate::Never))
    }

    fn build(
        request: &[u8],
        plain: Plain,
        response: &[u8],
        (next_closer_at, encloser_at): (usize, usize),
        class: Class,
        name: Option<Name>,
    ) -> Option<Result<Denial, NoTemplate>> {
        let Some(entry) = Entry::new(request, plain, response, class, name) else {
            return Some(Err(NoTemplate::Never));
        };
        let head = response.get(..12)?;
        let edns = u8::from(plain.edns);
        if entry.rcode != ResponseCode::NXDomain || head.get(6..12)? != [0, 0, 0, 1, 0, edns] {
            return Some(Err(NoTemplate::Never));
        }
        let q = plain.question_end;
        let mut pointers = Vec::new();
        let mut into_labels = false;
        let mut note = |pointer: Option<usize>| -> Option<()> {
            if let Some(at) = pointer {
                let target = usize::from(u16::from_be_bytes([
                    *response.get(at)?,
                    *response.get(at + 1)?,
                ])) & 0x3fff;
                if (12..encloser_at).contains(&target) {
                    into_labels = true; // into the labels that do not exist
                } else if !((encloser_at..q - 4).contains(&target) || (q..at).contains(&target)) {
                    return None;
                }
                pointers.push(at);
            }
            Some(())
        };
        // The SOA: owner, TYPE, CLASS, TTL, RDLENGTH, then MNAME, RNAME and five numbers.
        let mut literal = 0usize;
        let (at, pointer) = walk_name(response, q, &mut literal)?;
        note(pointer)?;
        if response.get(at..at + 2)? != [0, 6] {
            return Some(Err(NoTemplate::Never));
        }
        let rdlength = usize::from(u16::from_be_bytes([
            *response.get(at + 8)?,
            *response.get(at + 9)?,
        ]));
        let rdata = at + 10;
        let (mname_end, pointer) = walk_name(response, rdata, &mut literal)?;
        note(pointer)?;
        let (rname_end, pointer) = walk_name(response, mname_end, &mut literal)?;
        note(pointer)?;
        let end = rname_end + 20;
        if end != rdata + rdlength || end + if plain.edns { OPT_LEN } else { 0 } != response.len() {
            return Some(Err(NoTemplate::Never));
        }
        // Every label written is a compression candidate; hickory keeps the first
        // COMPRESSION_CANDIDATES only: past that, today's path compresses less.
        if into_labels || count_labels(request, 12) + literal >= COMPRESSION_CANDIDATES {
            return Some(Err(NoTemplate::NotThisName));
        }
        let labels = count_labels(request, encloser_at) + 1;
        let next_closers = [
            last_labels(&decompress(response, rdata)?, labels),
            last_labels(&decompress(response, mname_end)?, labels),
        ];
        if next_closers
            .iter()
            .any(|n| n.eq_ignore_ascii_case(request.get(next_closer_at..q - 4).unwrap_or_default()))
        {
            return Some(Err(NoTemplate::NotThisName));
        }
        Some(Ok(Denial {
            response: entry.response,
            question_end: q,
            pointers: pointers.into(),
            next_closers,
            literal_labels: literal,
            class: entry.class,
            name: entry.name,
            edns: plain.edns,
            nsec: None,
        }))
    }

    /// The template for `response`, today's answer with NSEC proofs (DO, a signed zone) to the
    /// plain `request` (its question in lower case, fewer than 64 labels) for a name of `zone`
    /// that does not exist, whose closest encloser starts at `encloser_at`: if it is one this
    /// template assembles from `zone`'s [`NsecParts`], equal once parsed (checked here, on this
    /// very request). Its answers are assembled, not patched: the NSEC covering each name is
    /// found in the chain.
    #[allow(clippy::too_many_arguments)]
    pub fn signed(
        request: &[u8],
        plain: Plain,
        response: &[u8],
        zone: &crate::zone::Zone,
        encloser_at: usize,
        class: Class,
        name: Option<Name>,
    ) -> Result<Denial, NoTemplate> {
        let Some(entry) = Entry::new(request, plain, response, class, name) else {
            return Err(NoTemplate::Never);
        };
        let q = plain.question_end;
        let wildcard_name = match request.get(encloser_at..q - 4) {
            Some(encloser) if encloser.len() + 2 <= 255 => {
                let mut w = vec![1, b'*'];
                w.extend_from_slice(encloser);
                w
            }
            _ => return Err(NoTemplate::Never),
        };
        let (Some(parts), Some(head)) = (NsecParts::of(zone), response.get(..12)) else {
            return Err(NoTemplate::Never);
        };
        let Some(wildcard) = parts.covering(&wildcard_name) else {
            return Err(NoTemplate::Never);
        };
        if entry.rcode != ResponseCode::NXDomain
            || head.get(6..8) != Some(&[0, 0][..])
            || head.get(10..12) != Some(&[0, u8::from(plain.edns)][..])
        {
            return Err(NoTemplate::Never);
        }
        let denial = Denial {
            response: entry.response,
            question_end: q,
            pointers: Box::default(),
            next_closers: [Box::default(), Box::default()],
            literal_labels: 0,
            class: entry.class,
            name: entry.name,
            edns: plain.edns,
            nsec: Some(Nsec {
                parts,
                wildcard,
                apex_labels: crate::zone::label_count(zone.origin()),
            }),
        };
        // The proof: this template's answer to the request it was built from is today's once
        // parsed.
        let mut out = Vec::new();
        if !denial.answer_into(request, request, q, usize::from(u16::MAX), &mut out) {
            return Err(NoTemplate::NotThisName);
        }
        let parsed = |b: &[u8]| hickory_proto::op::Message::from_vec(b).ok();
        match (parsed(&out), parsed(response)) {
            (Some(a), Some(b)) if a == b => Ok(denial),
            _ => Err(NoTemplate::Never),
        }
    }

    /// Whether this template serves `request` (a plain query with this template's key) whose
    /// next closer name starts at `next_closer_at`: unless the SOA's MNAME or RNAME ends with
    /// that name (today's path would compress them into it), or the name has so many labels that
    /// today's path would run out of compression candidates (and compress less).
    pub fn serves(&self, request: &[u8], next_closer_at: usize) -> bool {
        let Some(next_closer) = request.get(next_closer_at..) else {
            return false;
        };
        if count_labels(request, 12) + self.literal_labels >= COMPRESSION_CANDIDATES {
            return false;
        }
        if self.nsec.is_some() {
            return true; // assembled: equal once parsed, whatever the name
        }
        !self.next_closers.iter().any(|n| {
            next_closer
                .get(..n.len())
                .is_some_and(|asked| !n.is_empty() && asked.eq_ignore_ascii_case(n))
        })
    }

    /// The answer to `request` (a plain query, its question ending at `question_end`, with
    /// this template's key; `lowered` the same with its question in lower case), written into
    /// `out` (cleared first; its buffer reused) if it takes at most `limit` bytes. `false`, with
    /// `out` cleared, if it does not fit (today's path then answers), or a pointer would leave
    /// the reach of compression (not on any name a request can hold).
    pub fn answer_into(
        &self,
        request: &[u8],
        lowered: &[u8],
        question_end: usize,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        if let Some(nsec) = &self.nsec {
            let done = self.assemble(nsec, request, lowered, question_end, out);
            if !done || out.len() > limit {
                out.clear();
                return false;
            }
            return true;
        }
        if self.response.len() + question_end - self.question_end > limit {
            out.clear();
            return false;
        }
        self.patch_into(request, question_end, out)
    }

    /// A signed template's answer (see [`Denial::signed`]): the header, the question, the SOA
    /// and its RRSIGs (owners pointing at the apex in the question), the NSEC covering the name
    /// and the one covering the wildcard (once if the same), the OPT record.
    fn assemble(
        &self,
        nsec: &Nsec,
        request: &[u8],
        lowered: &[u8],
        question_end: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        let (Some(head), Some(question), Some(name)) = (
            self.response.get(..12),
            request.get(12..question_end),
            lowered.get(12..question_end.saturating_sub(4)),
        ) else {
            return false;
        };
        let mut starts = [0usize; crate::zone::MAX_LABELS];
        let Some(labels) = crate::zone::label_starts(name, &mut starts) else {
            return false;
        };
        let apex_at = (nsec.apex_labels <= labels)
            .then(|| crate::zone::suffix_at(name, &starts, labels, nsec.apex_labels))
            .flatten();
        let (Some(apex_at), Some(covering)) = (apex_at, nsec.parts.covering(name)) else {
            return false;
        };
        let Ok(pointer) = u16::try_from(12 + apex_at) else {
            return false;
        };
        out.extend_from_slice(head);
        out.extend_from_slice(question);
        let soa_at = out.len();
        out.extend_from_slice(&nsec.parts.soa);
        for &at in &nsec.parts.soa_owners {
            if let Some(owner) = out.get_mut(soa_at + at..soa_at + at + 2) {
                owner.copy_from_slice(&(pointer | 0xc000).to_be_bytes());
            }
        }
        let mut count = nsec.parts.soa_owners.len();
        for (i, proof) in [covering, nsec.wildcard].into_iter().enumerate() {
            if i == 1 && proof == covering {
                break;
            }
            let Some((_, records, n)) = nsec.parts.chain.get(proof) else {
                return false;
            };
            out.extend_from_slice(records);
            count += usize::from(*n);
        }
        if self.edns
            && let Some(opt) = self
                .response
                .get(self.response.len().saturating_sub(OPT_LEN)..)
        {
            out.extend_from_slice(opt);
        }
        let Ok(count) = u16::try_from(count) else {
            return false;
        };
        if let Some(ns) = out.get_mut(8..10) {
            ns.copy_from_slice(&count.to_be_bytes());
        }
        patch_header(out, request);
        true
    }

    /// An unsigned template's answer: see [`Denial::answer_into`].
    fn patch_into(&self, request: &[u8], question_end: usize, out: &mut Vec<u8>) -> bool {
        out.clear();
        let (Some(head), Some(question), Some(records)) = (
            self.response.get(..12),
            request.get(12..question_end),
            self.response.get(self.question_end..),
        ) else {
            return false;
        };
        out.extend_from_slice(head);
        out.extend_from_slice(question);
        out.extend_from_slice(records);
        for &at in &self.pointers {
            let moved = (at + question_end).checked_sub(self.question_end);
            let Some(pointer) = moved.and_then(|m| out.get_mut(m..m + 2)) else {
                out.clear();
                return false;
            };
            let target = (usize::from(u16::from_be_bytes([pointer[0], pointer[1]]) & 0x3fff)
                + question_end)
                .checked_sub(self.question_end)
                .filter(|&t| t <= 0x3fff)
                .and_then(|t| u16::try_from(t).ok());
            let Some(target) = target else {
                out.clear();
                return false;
            };
            pointer.copy_from_slice(&(target | 0xc000).to_be_bytes());
        }
        patch_header(out, request);
        true
    }

    /// The answer to `request` as rate limiting slips it (see [`Entry::slipped_into`]).
    pub fn slipped_into(&self, request: &[u8], question_end: usize, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.response.get(..12).unwrap_or_default());
        out.extend_from_slice(request.get(12..question_end).unwrap_or_default());
        if self.edns
            && let Some(opt) = self
                .response
                .get(self.response.len().saturating_sub(OPT_LEN)..)
        {
            out.extend_from_slice(opt);
        }
        patch_header(out, request);
        if let Some(flags) = out.get_mut(2) {
            *flags |= 0x02;
        }
        if let Some(counts) = out.get_mut(6..12) {
            counts.copy_from_slice(&[0, 0, 0, 0, 0, u8::from(self.edns)]);
        }
    }
}

/// Puts `request`'s ID and RD bit into the response `out`.
fn patch_header(out: &mut [u8], request: &[u8]) {
    if let (Some(id), Some(asked)) = (out.get_mut(..2), request.get(..2)) {
        id.copy_from_slice(asked);
    }
    if let (Some(flags), Some(asked)) = (out.get_mut(2), request.get(2)) {
        *flags = (*flags & !0x01) | (asked & 0x01);
    }
}

/// Puts `request`'s ID and RD bit, and its question's name as spelled, into the response
/// `out`, whose question (ending at `question_end`) is `request`'s but for capitals.
fn patch(out: &mut [u8], request: &[u8], question_end: usize) {
    spell(out, request, question_end);
    patch_header(out, request);
}

/// Where the question's name lies in a message whose question ends at `question_end`: from the
/// end of the 12-byte header to its QTYPE and QCLASS (4 bytes).
fn question_name(question_end: usize) -> std::ops::Range<usize> {
    12..question_end.saturating_sub(4)
}

/// Writes the question's name as `request` spells it into `out` (a message whose question, ending
/// at `question_end`, is `request`'s but for capitals): the names of the answer that are
/// compression pointers into the question then echo the request's capitals too, as Knot and
/// NSD echo them. Nothing is written unless both names are the same but for capitals.
pub fn spell(out: &mut [u8], request: &[u8], question_end: usize) {
    let name = question_name(question_end);
    if let (Some(to), Some(from)) = (out.get_mut(name.clone()), request.get(name))
        && to.eq_ignore_ascii_case(from)
    {
        to.copy_from_slice(from);
    }
}

/// `request`'s question name in lower case, into `lowered` (cleared first): `false`, and
/// nothing written, when it has no capital letter.
pub fn lowered(request: &[u8], plain: Plain, lowered: &mut Vec<u8>) -> bool {
    let name = question_name(plain.question_end);
    if !request
        .get(name.clone())
        .is_some_and(|n| n.iter().any(u8::is_ascii_uppercase))
    {
        return false;
    }
    lowered.clear();
    lowered.extend_from_slice(request);
    if let Some(n) = lowered.get_mut(name) {
        n.make_ascii_lowercase();
    }
    true
}

/// The answer cache's hasher: aHash with random keys drawn for each table (the names hashed
/// are the clients', so they must not be able to pick colliding keys), cheaper per lookup than
/// the standard library's SipHash.
type KeyedHasher = ahash::RandomState;

/// One shard: the entries, and their keys by position for random replacement.
#[derive(Debug, Default)]
struct Shard {
    index: HashMap<Box<[u8]>, usize, KeyedHasher>,
    slots: Vec<(Box<[u8]>, Arc<Entry>)>,
    bytes: usize,
}

/// NXDOMAIN templates by key (`None`: no template serves that key).
type Denials = HashMap<Box<[u8]>, Option<Arc<Denial>>, KeyedHasher>;

/// The answers cached for one catalog.
#[derive(Debug)]
struct Generation {
    catalog: Arc<Catalog>,
    shards: Box<[Mutex<Shard>]>,
    hasher: KeyedHasher,
    /// The NXDOMAIN answers by [`denial_key`] (`None`: that answer is not one a template can
    /// serve), at most [`MAX_DENIALS`].
    denials: Mutex<Denials>,
}

impl Generation {
    fn new(catalog: Arc<Catalog>) -> Generation {
        Generation {
            catalog,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: KeyedHasher::new(),
            denials: Mutex::default(),
        }
    }

    fn shard(&self, key: &[u8]) -> Option<&Mutex<Shard>> {
        let hash = self.hasher.hash_one(key);
        self.shards
            .get(usize::try_from(hash % SHARDS as u64).unwrap_or_default())
    }
}

/// The answer cache (see the module's documentation).
#[derive(Debug)]
pub struct AnswerCache {
    current: arc_swap::ArcSwap<Generation>,
    /// Answers written from an NXDOMAIN template, ever.
    denial_hits: std::sync::atomic::AtomicU64,
}

impl Default for AnswerCache {
    fn default() -> Self {
        AnswerCache {
            current: arc_swap::ArcSwap::from_pointee(Generation::new(Arc::default())),
            denial_hits: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl AnswerCache {
    /// The generation for `catalog`: the current one, or a new empty one if the catalog
    /// changed.
    fn generation(&self, catalog: &Arc<Catalog>) -> Arc<Generation> {
        let current = self.current.load_full();
        if Arc::ptr_eq(&current.catalog, catalog) {
            return current;
        }
        let fresh = Arc::new(Generation::new(catalog.clone()));
        self.current.store(fresh.clone());
        fresh
    }

    /// The current generation, if it holds `catalog`'s answers (none once the catalog changed).
    fn current_for(&self, catalog: &Arc<Catalog>) -> Option<Arc<Generation>> {
        let current = self.current.load_full();
        Arc::ptr_eq(&current.catalog, catalog).then_some(current)
    }

    /// The answer cached under `key` for `catalog`.
    pub fn get(&self, catalog: &Arc<Catalog>, key: &[u8]) -> Option<Arc<Entry>> {
        let generation = self.generation(catalog);
        let shard = generation
            .shard(key)?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = *shard.index.get(key)?;
        shard.slots.get(at).map(|(_, entry)| entry.clone())
    }

    /// Keeps `entry` under `key`, an answer built from `catalog` (nothing is kept if the catalog
    /// has changed since).
    pub fn insert(&self, catalog: &Arc<Catalog>, key: &[u8], entry: Entry) {
        let generation = self.generation(catalog);
        let Some(shard) = generation.shard(key) else {
            return;
        };
        if entry.rcode == ResponseCode::NXDomain {
            return; // names that do not exist are answered from a Denial, or not cached
        }
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if shard.index.contains_key(key) {
            return;
        }
        let cost = entry.cost(key.len());
        let (max_entries, max_bytes) = (MAX_ENTRIES / SHARDS, MAX_BYTES / SHARDS);
        if shard.slots.len() < max_entries && shard.bytes + cost <= max_bytes {
            let at = shard.slots.len();
            shard.slots.push((key.into(), Arc::new(entry)));
            shard.index.insert(key.into(), at);
            shard.bytes += cost;
            return;
        }
        if shard.slots.is_empty() {
            return;
        }
        let at = fastrand::usize(..shard.slots.len());
        let Some((old_key, old)) = shard.slots.get(at) else {
            return;
        };
        let old_cost = old.cost(old_key.len());
        if shard.bytes - old_cost + cost > max_bytes {
            return;
        }
        let old_key = old_key.clone();
        shard.index.remove(&old_key);
        if let Some(slot) = shard.slots.get_mut(at) {
            *slot = (key.into(), Arc::new(entry));
        }
        shard.index.insert(key.into(), at);
        shard.bytes = shard.bytes - old_cost + cost;
    }

    /// The NXDOMAIN template kept under `key` (a [`denial_key`]) for `catalog`: `Some(None)`
    /// when that answer was found to be one no template serves.
    pub fn denial(&self, catalog: &Arc<Catalog>, key: &[u8]) -> Option<Option<Arc<Denial>>> {
        let generation = self.generation(catalog);
        let denials = generation
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        denials.get(key).cloned()
    }

    /// Keeps `denial` (or `None`: no template serves this answer) under `key` for `catalog`,
    /// unless [`MAX_DENIALS`] are kept already.
    pub fn insert_denial(&self, catalog: &Arc<Catalog>, key: &[u8], denial: Option<Denial>) {
        let generation = self.generation(catalog);
        let mut denials = generation
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if denials.len() < MAX_DENIALS {
            denials
                .entry(key.into())
                .or_insert_with(|| denial.map(Arc::new));
        }
    }

    /// Counts an answer written from an NXDOMAIN template.
    pub fn denial_hit(&self) {
        self.denial_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many answers were written from NXDOMAIN templates, ever.
    pub fn denial_hits(&self) -> u64 {
        self.denial_hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many NXDOMAIN templates are kept for `catalog` (shapes of request found to need
    /// today's path left out).
    pub fn denials(&self, catalog: &Arc<Catalog>) -> usize {
        let Some(generation) = self.current_for(catalog) else {
            return 0;
        };
        generation
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|d| d.is_some())
            .count()
    }

    /// How many answers are cached for `catalog`.
    pub fn len(&self, catalog: &Arc<Catalog>) -> usize {
        let Some(generation) = self.current_for(catalog) else {
            return 0;
        };
        generation
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).slots.len())
            .sum()
    }

    /// Whether no answer is cached for `catalog`.
    pub fn is_empty(&self, catalog: &Arc<Catalog>) -> bool {
        self.len(catalog) == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn query(name: &[&str], qtype: u16, edns: bool) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for label in name {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if edns {
            q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0]);
        }
        q
    }

    /// The tables' keys come from clients: every table must hash with keys of its own, drawn
    /// at random, so that no list of names collides in every server (a fixed-key hasher would).
    #[test]
    fn each_table_hashes_with_random_keys_of_its_own() {
        let (a, b) = (
            Generation::new(Arc::default()),
            Generation::new(Arc::default()),
        );
        let key = query(&["www", "example", "com"], 1, true);
        let mut hashes = vec![a.hasher.hash_one(&key), b.hasher.hash_one(&key)];
        for g in [&a, &b] {
            let shard = g.shards.first().unwrap().lock().unwrap();
            hashes.push(shard.index.hasher().hash_one(&key));
            hashes.push(g.denials.lock().unwrap().hasher().hash_one(&key));
        }
        let mut distinct = hashes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            hashes.len(),
            "tables hashing alike: {hashes:x?}"
        );
    }

    #[test]
    fn plain_queries_are_recognised() {
        let q = query(&["www", "Example", "com"], 1, true);
        assert_eq!(
            parse(&q),
            Some(Plain {
                question_end: 12 + 17 + 4,
                edns: true,
                key_end: 12 + 17 + 4 + 11,
            })
        );
        let q = query(&["www", "example", "com"], 28, false);
        assert_eq!(parse(&q).map(|p| p.edns), Some(false));
    }

    #[test]
    fn unusual_queries_are_not_plain() {
        let base = query(&["www", "example", "com"], 1, true);
        let mut trailing = base.clone();
        trailing.push(0);
        let mut axfr = query(&["example", "com"], 252, false);
        let mut notify = base.clone();
        notify[2] = 0x20;
        let mut response = base.clone();
        response[2] |= 0x80;
        let mut chaos = base.clone();
        chaos[12 + 17 + 3] = 3;
        let mut option = base.clone();
        option[base.len() - 1] = 4; // RDLENGTH 4
        option.extend_from_slice(&[0, 10, 0, 0]);
        let mut version = base.clone();
        version[base.len() - 5] = 1;
        let mut pointer = base.clone();
        pointer[12] = 0xc0;
        let two = {
            let mut q = base.clone();
            q[5] = 2;
            q
        };
        for q in [
            &trailing, &axfr, &notify, &response, &chaos, &option, &version, &pointer, &two,
        ] {
            assert_eq!(parse(q), None, "{q:?}");
        }
        axfr.truncate(5);
        assert_eq!(parse(&axfr), None);
    }

    #[test]
    fn a_cookie_is_left_out_of_the_key_and_other_options_are_not_plain() {
        let base = query(&["www", "example", "com"], 1, true);
        let mut buf = [0u8; MAX_REQUEST];
        let want = key(&base, parse(&base).unwrap(), Transport::Udp, &mut buf)
            .unwrap()
            .to_vec();
        let with = |code: u16, len: usize| {
            let mut q = base.clone();
            let at = q.len() - 2;
            q[at..].copy_from_slice(&((4 + len) as u16).to_be_bytes());
            q.extend_from_slice(&code.to_be_bytes());
            q.extend_from_slice(&(len as u16).to_be_bytes());
            q.extend((0..len).map(|i| i as u8));
            q
        };
        for len in [8, 16, 24, 40] {
            let q = with(10, len);
            let plain = parse(&q).unwrap_or_else(|| panic!("a cookie of {len} bytes"));
            assert_eq!(key(&q, plain, Transport::Udp, &mut buf).unwrap(), &want[..]);
        }
        for (code, len) in [(10, 0), (10, 7), (10, 12), (10, 41), (8, 8), (3, 0)] {
            assert_eq!(
                parse(&with(code, len)),
                None,
                "option {code} of {len} bytes"
            );
        }
        let mut two = with(10, 8);
        two.pop();
        assert_eq!(parse(&two), None, "cut short");
    }

    #[test]
    fn random_bytes_never_panic() {
        let base = query(&["www", "example", "com"], 1, true);
        let mut buf = [0u8; MAX_REQUEST];
        for round in 0..200_000u32 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                (0..fastrand::usize(..600))
                    .map(|_| fastrand::u8(..))
                    .collect()
            } else {
                // Mutations of a plain query: the bytes that matter, changed at random.
                let mut q = base.clone();
                for _ in 0..fastrand::usize(1..4) {
                    let at = fastrand::usize(..q.len());
                    q[at] = fastrand::u8(..);
                }
                q.truncate(fastrand::usize(..=q.len() + 1).min(q.len()));
                q
            };
            if let Some(plain) = parse(&bytes) {
                assert!(plain.question_end <= plain.key_end && plain.key_end <= bytes.len());
                assert!(key(&bytes, plain, Transport::Udp, &mut buf).is_some());
            }
        }
    }

    #[test]
    fn other_capitals_share_an_entry_and_hits_are_spelled_as_asked() {
        let lower = query(&["www", "example", "com"], 1, true);
        let mixed = query(&["wWw", "ExAmPlE", "COM"], 1, true);
        let (mut a, mut b) = ([0u8; MAX_REQUEST], [0u8; MAX_REQUEST]);
        let plain = parse(&mixed).unwrap();
        assert_eq!(
            key(&lower, parse(&lower).unwrap(), Transport::Udp, &mut a),
            key(&mixed, plain, Transport::Udp, &mut b)
        );
        // The type is not a name: HTTPS (65, an 'A' byte) stays as it is in the key.
        let https = query(&["www", "example", "com"], 65, true);
        let https_key = key(&https, parse(&https).unwrap(), Transport::Udp, &mut a).unwrap();
        assert_eq!(https_key[12 + 17..12 + 19], [0, 65]);
        let mut lowered_buf = vec![1, 2, 3];
        assert!(!lowered(&lower, plain, &mut lowered_buf));
        assert_eq!(lowered_buf, [1, 2, 3], "nothing written without capitals");
        assert!(lowered(&mixed, plain, &mut lowered_buf));
        assert_eq!(lowered_buf, lower);
        // An entry built from the lower-case question; a hit for the mixed-case one: the
        // question as asked, the answer's owner (a pointer to it) so echoing it.
        let mut response = lower.clone();
        response[2] = 0x85;
        response[7] = 1;
        let opt = response.split_off(plain.question_end);
        response.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        response.extend_from_slice(&opt);
        let entry = Entry::new(&lower, plain, &response, Class::Positive, None).unwrap();
        let mut answer = Vec::new();
        entry.answer_into(&mixed, &mut answer);
        assert_eq!(
            answer[12..plain.question_end],
            mixed[12..plain.question_end]
        );
        assert_eq!(answer[plain.question_end..], response[plain.question_end..]);
        entry.slipped_into(&mixed, &mut answer);
        assert_eq!(
            answer[12..plain.question_end],
            mixed[12..plain.question_end]
        );
        // Another name is never written over the question.
        let other = query(&["xxx", "example", "com"], 1, true);
        entry.answer_into(&other, &mut answer);
        assert_eq!(
            answer[12..plain.question_end],
            lower[12..plain.question_end]
        );
    }

    #[test]
    fn hits_patch_the_id_and_rd_and_slips_keep_question_and_opt() {
        let q = query(&["www", "example", "com"], 1, true);
        let plain = parse(&q).unwrap();
        let mut response = q.clone();
        response[2] = 0x85; // QR AA RD
        response[7] = 1; // one answer
        let opt = response.split_off(plain.question_end);
        response.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        response.extend_from_slice(&opt);
        let entry = Entry::new(&q, plain, &response, Class::Positive, None).unwrap();
        let mut again = q.clone();
        again[0] = 0xab;
        again[2] = 0;
        let mut answer = Vec::new();
        entry.answer_into(&again, &mut answer);
        assert_eq!(answer[..2], [0xab, 0x34]);
        assert_eq!(answer[2], 0x84);
        assert_eq!(answer[3..], response[3..]);
        let mut slipped = vec![0xff; 3]; // what was there is cleared first
        entry.slipped_into(&again, &mut slipped);
        assert_eq!(slipped[2], 0x86);
        assert_eq!(slipped[6..12], [0, 0, 0, 0, 0, 1]);
        assert_eq!(slipped[12..plain.question_end], q[12..plain.question_end]);
        assert_eq!(slipped[plain.question_end..], opt[..]);
        // Not cached: truncated, REFUSED, another ID.
        for (at, value) in [(2, 0x87), (3, 5), (0, 0)] {
            let mut r = response.clone();
            r[at] = value;
            assert!(Entry::new(&q, plain, &r, Class::Positive, None).is_none());
        }
    }

    #[test]
    fn the_cache_is_bounded_and_never_holds_nxdomain() {
        let cache = AnswerCache::default();
        let catalog = Arc::new(Catalog::default());
        let q = query(&["x", "example", "com"], 1, false);
        let plain = parse(&q).unwrap();
        let mut response = q.clone();
        response[2] = 0x85;
        let entry = |rcode: u8| {
            let mut r = response.clone();
            r[3] = rcode;
            Entry::new(&q, plain, &r, Class::NxDomain, None).unwrap()
        };
        for i in 0..10_000u32 {
            cache.insert(&catalog, &i.to_be_bytes(), entry(3));
        }
        assert!(cache.is_empty(&catalog), "no NXDOMAIN is cached");
        for i in 0..(MAX_ENTRIES + 10_000) as u32 {
            cache.insert(&catalog, &i.to_be_bytes(), entry(0));
        }
        let full = cache.len(&catalog);
        assert!(full <= MAX_ENTRIES && full > MAX_ENTRIES / 2, "{full}");
        let last = (u32::MAX - 999).to_be_bytes();
        for i in 0..1000u32 {
            cache.insert(&catalog, &(u32::MAX - i).to_be_bytes(), entry(0));
        }
        assert!(cache.len(&catalog) <= MAX_ENTRIES);
        assert!(
            cache.get(&catalog, &last).is_some(),
            "a full shard takes new answers"
        );
        // Another catalog: nothing cached.
        let other = Arc::new(Catalog::default());
        assert!(cache.get(&other, &last).is_none());
        assert!(cache.is_empty(&other));
        assert!(cache.get(&catalog, &last).is_none());
    }
}
