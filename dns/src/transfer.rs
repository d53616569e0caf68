//! Zone transfers (RFC 5936 AXFR; IXFR answered with the whole zone, RFC 1995 §4): TCP only,
//! only at the apex, only to the addresses a zone allows. Single-message answers (refusals, the
//! SOA alone) go back to the query path to be finished like any other answer; a transfer's
//! messages are assembled here with [`crate::answer`].

use crate::answer::{Transport, encode};
use crate::zone::Zone;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{LowerName, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::BinEncodable;

/// Bytes of records per transfer message (before name compression, which only shrinks it).
const MESSAGE_BUDGET: usize = 16_000;

/// The answer to a transfer request.
#[derive(Debug)]
pub enum Transfer {
    /// One message, to be finished (encoded within the client's size) by the caller.
    One(Message),
    /// The transfer's messages, encoded, in order.
    Many(Vec<Vec<u8>>),
}

/// Answers an AXFR or IXFR `request` for `zone`. `response` carries the header and question.
pub fn respond(
    mut response: Message,
    request: &Message,
    zone: &Zone,
    transport: Transport,
    allowed: bool,
) -> Transfer {
    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return Transfer::One(response);
    };
    if transport == Transport::Udp && query.query_type == RecordType::AXFR {
        // AXFR is TCP-only (RFC 5936 §4.2); NSD and Knot answer NOTIMP.
        response.metadata.response_code = ResponseCode::NotImp;
        return Transfer::One(response);
    }
    let at_apex = LowerName::new(&query.name) == LowerName::new(zone.origin());
    if !at_apex {
        response.metadata.response_code = ResponseCode::NotAuth;
        return Transfer::One(response);
    }
    if !allowed {
        response.metadata.response_code = ResponseCode::Refused;
        return Transfer::One(response);
    }
    let up_to_date = query.query_type == RecordType::IXFR
        && request.authorities.iter().any(|r| match &r.data {
            RData::SOA(soa) => SerialNumber::new(soa.serial) >= SerialNumber::new(zone.serial()),
            _ => false,
        });
    if transport == Transport::Udp || up_to_date {
        // RFC 1995 §2/§4: the client is up to date, or the answer would not fit a datagram: the
        // current SOA alone (over UDP it tells the client to use TCP). AA clear, as Knot.
        response.answers.push(zone.soa().clone());
        return Transfer::One(response);
    }

    response.metadata.authoritative = true;
    let mut messages = Vec::new();
    let mut current = response.clone();
    let mut size = 0;
    let mut buf = Vec::with_capacity(512);
    let records = zone.records().chain(std::iter::once(zone.soa()));
    for record in records {
        let record_size = encoded_len(record, &mut buf);
        if size + record_size > MESSAGE_BUDGET && !current.answers.is_empty() {
            messages.push(finish(std::mem::replace(
                &mut current,
                next_message(&response),
            )));
            size = 0;
        }
        size += record_size;
        current.answers.push(record.clone());
    }
    messages.push(finish(current));
    Transfer::Many(messages)
}

/// A continuation message: same header, no question (RFC 5936 §2.2 allows either).
fn next_message(first: &Message) -> Message {
    let mut message = first.clone();
    message.queries.clear();
    message.edns = None;
    message
}

fn finish(message: Message) -> Vec<u8> {
    encode(message, u16::MAX)
}

/// The uncompressed wire length of `record`.
fn encoded_len(record: &Record, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(buf);
    encoder.set_name_encoding(hickory_proto::serialize::binary::NameEncoding::Uncompressed);
    match record.emit(&mut encoder) {
        Ok(()) => buf.len(),
        Err(_) => 65_535,
    }
}
