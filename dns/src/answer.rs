//! Message assembly: what goes back on the wire. A response [`Message`] is encoded within the
//! client's size limit here (additional data left out first, then a truncated answer), and the
//! fixed-form responses (header-only, FORMERR for undecodable bytes) are built here. Both the
//! query path ([`crate::query`]) and zone transfers ([`crate::transfer`]) call this module; it
//! calls neither.

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP datagram: answers are limited to the client's payload size.
    Udp,
    /// A TCP stream: answers up to 64 KiB, zone transfers allowed.
    Tcp,
}

/// What to send back.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nothing (the packet was not a query worth answering, e.g. a response or a runt; or the
    /// answer was rate-limited).
    Drop,
    /// One message.
    One(Vec<u8>),
    /// Several messages, in order (a zone transfer).
    Many(Messages),
}

/// The messages of a zone transfer, and its place among the transfers going out (given back
/// when they are dropped, after the last one is sent).
#[derive(Debug)]
pub struct Messages {
    /// The encoded messages, in order.
    pub list: Vec<Vec<u8>>,
    /// The transfer's place, if it holds one.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Messages {
    /// The messages, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Vec<u8>> {
        self.list.iter()
    }
}

impl PartialEq for Messages {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for Messages {}

/// Encodes `response` within `limit` bytes: additional records that do not fit are left out;
/// if the answer itself does not fit, a truncated response (TC, no records) is sent.
pub fn encode(mut response: Message, limit: u16) -> Vec<u8> {
    loop {
        match response.to_vec() {
            Ok(bytes) if bytes.len() <= usize::from(limit) => return bytes,
            _ if !response.additionals.is_empty() => {
                // Leave out whole RRsets of additional data, last first, each with its RRSIGs.
                let last = response.additionals.len() - 1;
                let (name, rtype) = (
                    response.additionals[last].name.clone(),
                    covered_type(&response.additionals[last]),
                );
                while response
                    .additionals
                    .last()
                    .is_some_and(|r| covered_type(r) == rtype && r.name == name)
                {
                    response.additionals.pop();
                }
            }
            _ if !response.answers.is_empty() || !response.authorities.is_empty() => {
                truncate(&mut response);
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

/// The type of a record, or for an RRSIG the type it covers (an RRset and its signatures go
/// together).
fn covered_type(record: &Record) -> RecordType {
    match &record.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().type_covered,
        _ => record.record_type(),
    }
}

/// Empties the answer, authority and additional sections and sets TC: the client should ask
/// again over TCP. The question and OPT stay.
pub fn truncate(response: &mut Message) {
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    response.metadata.truncation = true;
}

/// A header-only response (no question, no OPT), as NSD sends for FORMERR and opcodes it does
/// not serve.
pub fn bare(mut response: Message) -> Vec<u8> {
    response.queries.clear();
    response.edns = None;
    encode(response, 512)
}

/// A FORMERR response to a request that could not be decoded: its header's ID, opcode and RD
/// copied, no sections. `request` must be at least 12 bytes long.
pub fn formerr_header(request: &[u8]) -> Vec<u8> {
    let flags = 0x80 | (request[2] & 0x79); // QR, opcode, RD
    vec![request[0], request[1], flags, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The response code of an encoded response (its header's low four bits).
pub fn rcode_of(bytes: &[u8]) -> ResponseCode {
    ResponseCode::from_low(bytes.get(3).map_or(0, |b| b & 0x0f))
}
