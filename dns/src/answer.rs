//! The request path: request bytes in, response bytes out. Every transport calls
//! [`Answerer::respond`]; it never panics on any input (see the fuzz target and the random-packet
//! test).

use crate::catalog::Catalog;
use crate::config::{AddressMatch, ZoneConfig};
use crate::transfer;
use crate::zone::{RrSet, Zone};
use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The EDNS UDP payload size the server advertises and uses at most (RFC 6891, DNS flag day
/// 2020).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Longest CNAME chain followed inside a zone.
const MAX_CHAIN: usize = 8;

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A UDP datagram: answers are limited to the client's payload size.
    Udp,
    /// A TCP stream: answers up to 64 KiB, zone transfers allowed.
    Tcp,
}

/// What to send back.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nothing (the packet was not a query worth answering, e.g. a response or a runt).
    Drop,
    /// One message.
    One(Vec<u8>),
    /// Several messages, in order (a zone transfer).
    Many(Vec<Vec<u8>>),
}

/// Answers requests from the current catalog.
#[derive(Debug)]
pub struct Answerer {
    /// The zones served; replaced whole on reload.
    pub catalog: ArcSwap<Catalog>,
    /// Who may transfer which zone.
    transfer_acl: HashMap<LowerName, Vec<AddressMatch>>,
    /// Whether each query is logged.
    query_log: bool,
}

/// The lookup result being assembled.
#[derive(Default)]
struct Sections {
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    authoritative: bool,
    rcode: Option<ResponseCode>,
}

impl Answerer {
    /// An answerer over `catalog`, with the per-zone transfer permissions of `zones`.
    pub fn new(catalog: Catalog, zones: &[ZoneConfig], query_log: bool) -> Self {
        let transfer_acl = zones
            .iter()
            .filter_map(|z| {
                let mut name = Name::from_ascii(&z.name).ok()?;
                name.set_fqdn(true);
                Some((LowerName::new(&name), z.allow_transfer.clone()))
            })
            .collect();
        Answerer {
            catalog: ArcSwap::from_pointee(catalog),
            transfer_acl,
            query_log,
        }
    }

    /// Answers one request.
    pub fn respond(&self, request: &[u8], transport: Transport, client: SocketAddr) -> Reply {
        if request.len() < 12 || request[2] & 0x80 != 0 {
            return Reply::Drop; // a runt, or a response: never answer those
        }
        let message = match Message::from_vec(request) {
            Ok(message) => message,
            Err(_) => return Reply::One(formerr_header(request)),
        };
        let reply = self.answer(&message, transport, client);
        if self.query_log {
            let q = message.queries.first();
            tracing::info!(
                target: "query",
                %client,
                transport = ?transport,
                name = %q.map(|q| q.name.to_string()).unwrap_or_default(),
                qtype = %q.map(|q| q.query_type.to_string()).unwrap_or_default(),
                rcode = %match &reply { Reply::One(b) => rcode_name(b), Reply::Many(_) => "NOERROR (transfer)".into(), Reply::Drop => "dropped".into() },
            );
        }
        reply
    }

    fn answer(&self, request: &Message, transport: Transport, client: SocketAddr) -> Reply {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.queries = request.queries.clone();
        let limit = match (transport, &request.edns) {
            (Transport::Tcp, _) => u16::MAX,
            (Transport::Udp, None) => 512,
            (Transport::Udp, Some(edns)) => edns.max_payload().clamp(512, EDNS_PAYLOAD),
        };
        if let Some(edns) = &request.edns {
            let mut opt = Edns::new();
            opt.set_max_payload(EDNS_PAYLOAD);
            opt.set_version(0);
            opt.set_dnssec_ok(edns.flags().dnssec_ok);
            response.edns = Some(opt);
            if edns.version() > 0 {
                response.metadata.response_code = ResponseCode::BADVERS;
                return Reply::One(encode(response, limit));
            }
        }
        if request.metadata.message_type != MessageType::Query {
            return Reply::Drop;
        }
        if request.metadata.op_code != OpCode::Query {
            if request.metadata.op_code == OpCode::Notify {
                // We are no secondary: NOTAUTH, with the question, as Knot answers.
                response.metadata.response_code = ResponseCode::NotAuth;
                return Reply::One(encode(response, limit));
            }
            // UPDATE and the rest: NOTIMP, header only, as NSD answers.
            response.metadata.response_code = ResponseCode::NotImp;
            return Reply::One(bare(response));
        }
        let [query] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            if request.queries.is_empty() {
                // No question: FORMERR with our OPT (RFC 6891 §7), as Knot answers.
                return Reply::One(encode(response, limit));
            }
            return Reply::One(bare(response));
        };
        if !request.answers.is_empty() {
            response.metadata.response_code = ResponseCode::FormErr;
            return Reply::One(bare(response));
        }
        if !matches!(query.query_class, DNSClass::IN | DNSClass::ANY) {
            // Other classes: REFUSED without an Extended DNS Error, as Knot answers.
            response.metadata.response_code = ResponseCode::Refused;
            return Reply::One(encode(response, limit));
        }
        let catalog = self.catalog.load();
        let is_transfer = matches!(query.query_type, RecordType::AXFR | RecordType::IXFR);
        let Some(zone) = catalog.find(&query.name) else {
            if is_transfer {
                // RFC 5936 §2.2.1: not authoritative for the zone asked for.
                response.metadata.response_code = ResponseCode::NotAuth;
                return Reply::One(encode(response, limit));
            }
            return Reply::One(refused(response, limit));
        };
        if is_transfer {
            let allowed = self
                .transfer_acl
                .get(&LowerName::new(zone.origin()))
                .is_some_and(|acl| acl.iter().any(|m| m.matches(client.ip())));
            return transfer::respond(response, request, zone, transport, allowed, limit);
        }
        let sections = lookup(zone, query);
        response.metadata.authoritative = sections.authoritative;
        response.metadata.response_code = sections.rcode.unwrap_or(ResponseCode::NoError);
        response.answers = sections.answers;
        response.authorities = sections.authorities;
        response.additionals = sections.additionals;
        Reply::One(encode(response, limit))
    }
}

/// Looks `query` up in `zone` (RFC 1034 §4.3.2 with RFC 4592 wildcards and RFC 2308 negative
/// answers).
fn lookup(zone: &Zone, query: &Query) -> Sections {
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
            return out;
        }
        let lower = LowerName::new(&name);
        let node = match zone.node(&lower) {
            Some(node) => node,
            None => {
                let encloser = zone.closest_encloser(&name);
                let wildcard = wildcard_of(&encloser).map(|w| LowerName::new(&w));
                match wildcard.as_ref().and_then(|w| zone.node(w)) {
                    Some(node) => node,
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

/// A header-only response (no question, no OPT), as NSD sends for FORMERR and opcodes it does
/// not serve.
fn bare(mut response: Message) -> Vec<u8> {
    response.queries.clear();
    response.edns = None;
    encode(response, 512)
}

/// REFUSED for a name we are not authoritative for, with the Extended DNS Error "Not
/// Authoritative" (RFC 8914 code 20) when the client speaks EDNS, as NSD and Knot do.
fn refused(mut response: Message, limit: u16) -> Vec<u8> {
    response.metadata.response_code = ResponseCode::Refused;
    if let Some(edns) = response.edns.as_mut() {
        edns.options_mut()
            .insert(EdnsOption::Unknown(15, vec![0, 20]));
    }
    encode(response, limit)
}

/// Encodes `response` within `limit` bytes: additional records that do not fit are left out;
/// if the answer itself does not fit, a truncated response (TC, no records) is sent.
pub fn encode(mut response: Message, limit: u16) -> Vec<u8> {
    loop {
        match response.to_vec() {
            Ok(bytes) if bytes.len() <= usize::from(limit) => return bytes,
            _ if !response.additionals.is_empty() => {
                // Leave out whole RRsets of additional data, last first.
                let last = response.additionals.len() - 1;
                let (name, rtype) = (
                    response.additionals[last].name.clone(),
                    response.additionals[last].record_type(),
                );
                while response
                    .additionals
                    .last()
                    .is_some_and(|r| r.record_type() == rtype && r.name == name)
                {
                    response.additionals.pop();
                }
            }
            _ if !response.answers.is_empty() || !response.authorities.is_empty() => {
                response.answers.clear();
                response.authorities.clear();
                response.metadata.truncation = true;
            }
            _ => {
                // Cannot happen for a header + question + OPT under 512 bytes; send a bare
                // SERVFAIL header rather than nothing.
                let mut header = Vec::with_capacity(12);
                header.extend_from_slice(&response.metadata.id.to_be_bytes());
                header.extend_from_slice(&[0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]);
                return header;
            }
        }
    }
}

/// A FORMERR response to a request that could not be decoded: its header's ID, opcode and RD
/// copied, no sections.
fn formerr_header(request: &[u8]) -> Vec<u8> {
    let flags = 0x80 | (request[2] & 0x79); // QR, opcode, RD
    vec![request[0], request[1], flags, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The response code of an encoded response, for the query log.
fn rcode_name(bytes: &[u8]) -> String {
    let low = bytes.get(3).map_or(0, |b| b & 0x0f);
    ResponseCode::from_low(low).to_string()
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Answerer>();
    is::<Arc<Answerer>>();
}
