//! EDNS (RFC 6891): the payload size a UDP answer may use, the OPT record of a response, and
//! Extended DNS Errors (RFC 8914).

use crate::answer::Transport;
use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::rdata::opt::EdnsOption;

/// The EDNS UDP payload size the server advertises and uses at most (RFC 6891, DNS flag day
/// 2020).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The EDNS option code of an Extended DNS Error (RFC 8914).
const EDE_OPTION: u16 = 15;

/// The Extended DNS Error "Not Authoritative" (RFC 8914 §4.21).
pub const EDE_NOT_AUTHORITATIVE: u16 = 20;

/// The most bytes a response to `request` may take: 64 KiB over TCP; over UDP the client's EDNS
/// payload size, at least 512 and at most [`EDNS_PAYLOAD`], or 512 without EDNS.
pub fn size_limit(request: &Message, transport: Transport) -> u16 {
    match (transport, &request.edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(edns)) => edns.max_payload().clamp(512, EDNS_PAYLOAD),
    }
}

/// The OPT record answering the client's: version 0, our payload size, DO echoed.
pub fn response_opt(request: &Edns) -> Edns {
    let mut opt = Edns::new();
    opt.set_max_payload(EDNS_PAYLOAD);
    opt.set_version(0);
    opt.set_dnssec_ok(request.flags().dnssec_ok);
    opt
}

/// Whether the client asked for DNSSEC records (the DO bit, RFC 3225).
pub fn dnssec_ok(request: &Edns) -> bool {
    request.flags().dnssec_ok
}

/// Whether the client's EDNS version is one we do not speak (then the answer is BADVERS).
pub fn bad_version(request: &Edns) -> bool {
    request.version() > 0
}

/// Adds the Extended DNS Error `code` to `response`, if it carries an OPT record (a client that
/// did not send EDNS gets none).
pub fn add_extended_error(response: &mut Message, code: u16) {
    if let Some(edns) = response.edns.as_mut() {
        edns.options_mut()
            .insert(EdnsOption::Unknown(EDE_OPTION, code.to_be_bytes().to_vec()));
    }
}
