//! Zone transfers out (RFC 5936 AXFR, RFC 1995 IXFR): TCP only, only at the apex, only to the
//! clients a zone allows. IXFR sends the differences the journal ([`crate::xfr::journal`])
//! kept from the client's serial to ours, or the whole zone as AXFR does when it has not got
//! them or they would be larger (RFC 1995 §4), or the SOA alone when the client is current or
//! asked over UDP. Single-message answers (refusals, the SOA alone) go back to the query path
//! to be finished like any other answer; a transfer's messages are assembled here with
//! [`crate::answer`].

use crate::answer::{Transport, encode};
use crate::xfr::journal::{self, Journal};
use crate::zone::Zone;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

/// Bytes of records per transfer message (before name compression, which only shrinks it).
const MESSAGE_BUDGET: usize = 16_000;

/// The answer to a transfer request.
#[derive(Debug)]
pub enum Transfer {
    /// One message, to be finished (encoded within the client's size) by the caller.
    One(Message),
    /// The transfer's messages, encoded, in order, and which kind of transfer it is.
    Many(Vec<Vec<u8>>, Kind),
}

/// What a transfer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The whole zone (an AXFR, or an IXFR answered with the whole zone).
    Axfr,
    /// The differences from the client's version (RFC 1995 incremental).
    Ixfr,
}

impl Kind {
    /// `AXFR` or `IXFR`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Axfr => "AXFR",
            Kind::Ixfr => "IXFR",
        }
    }
}

/// Answers an AXFR or IXFR `request` for `zone`. `response` carries the header and question;
/// `journal` holds the zone's differences, if any are kept.
pub fn respond(
    mut response: Message,
    request: &Message,
    zone: &Zone,
    transport: Transport,
    allowed: bool,
    journal: Option<&Journal>,
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
    let client_serial = (query.query_type == RecordType::IXFR)
        .then(|| {
            request.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            })
        })
        .flatten();
    let up_to_date = client_serial.is_some_and(|s| !journal::newer(zone.serial(), s));
    if transport == Transport::Udp || up_to_date {
        // RFC 1995 §2/§4: the client is up to date, or the answer would not fit a datagram: the
        // current SOA alone (over UDP it tells the client to use TCP). AA clear, as Knot.
        response.answers.push(zone.soa().clone());
        return Transfer::One(response);
    }

    response.metadata.authoritative = true;
    let chain = client_serial
        .and_then(|from| journal?.chain(from, zone.serial()))
        // Records of the incremental answer against the whole zone's (its SOA twice).
        .filter(|chain| {
            2 + chain.iter().map(|d| d.len()).sum::<usize>() <= zone.record_count() + 1
        });
    let (messages, kind) = match chain {
        Some(chain) => {
            // SOA(new), then per difference SOA(old) removed... SOA(new) added..., SOA(new).
            let records = std::iter::once(zone.soa())
                .chain(chain.into_iter().flat_map(|d| {
                    std::iter::once(&d.from)
                        .chain(d.removed.iter())
                        .chain(std::iter::once(&d.to))
                        .chain(d.added.iter())
                }))
                .chain(std::iter::once(zone.soa()));
            (pack(&response, records), Kind::Ixfr)
        }
        None => {
            let records = zone.records().chain(std::iter::once(zone.soa()));
            (pack(&response, records), Kind::Axfr)
        }
    };
    Transfer::Many(messages, kind)
}

/// Puts `records` into messages of about [`MESSAGE_BUDGET`] bytes each.
fn pack<'a>(first: &Message, records: impl Iterator<Item = &'a Record>) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current = first.clone();
    let mut size = 0;
    let mut buf = Vec::with_capacity(512);
    for record in records {
        let record_size = encoded_len(record, &mut buf);
        if size + record_size > MESSAGE_BUDGET && !current.answers.is_empty() {
            messages.push(finish(std::mem::replace(&mut current, next_message(first))));
            size = 0;
        }
        size += record_size;
        current.answers.push(record.clone());
    }
    messages.push(finish(current));
    messages
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
