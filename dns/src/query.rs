//! The request path: request bytes in, response bytes out. Every transport calls
//! [`Engine::respond`]; it never panics on any input (see the fuzz target and the random-packet
//! test). It decodes and checks the request, looks the question up ([`crate::lookup`]) or hands
//! a zone transfer to [`crate::transfer`], and has the response assembled by
//! [`crate::answer`] with the OPT record from [`crate::edns`].

use crate::answer::{self, Reply, Transport};
use crate::catalog::Catalog;
use crate::config::{AddressMatch, ZoneConfig};
use crate::{edns, lookup, transfer};
use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Answers requests from the current catalog.
#[derive(Debug)]
pub struct Engine {
    /// The zones served; replaced whole on reload.
    pub catalog: ArcSwap<Catalog>,
    /// Who may transfer which zone.
    transfer_acl: HashMap<LowerName, Vec<AddressMatch>>,
    /// Whether each query is logged.
    query_log: bool,
}

impl Engine {
    /// An engine over `catalog`, with the per-zone transfer permissions of `zones`.
    pub fn new(catalog: Catalog, zones: &[ZoneConfig], query_log: bool) -> Self {
        let transfer_acl = zones
            .iter()
            .map(|z| (LowerName::new(z.name.name()), z.allow_transfer.clone()))
            .collect();
        Engine {
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
            Err(_) => return Reply::One(answer::formerr_header(request)),
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
                rcode = %match &reply {
                    Reply::One(b) => answer::rcode_of(b).to_string(),
                    Reply::Many(_) => "NOERROR (transfer)".into(),
                    Reply::Drop => "dropped".into(),
                },
            );
        }
        reply
    }

    fn answer(&self, request: &Message, transport: Transport, client: SocketAddr) -> Reply {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.queries = request.queries.clone();
        let limit = edns::size_limit(request, transport);
        if let Some(opt) = &request.edns {
            response.edns = Some(edns::response_opt(opt));
            if edns::bad_version(opt) {
                response.metadata.response_code = ResponseCode::BADVERS;
                return Reply::One(answer::encode(response, limit));
            }
        }
        if request.metadata.message_type != MessageType::Query {
            return Reply::Drop;
        }
        if request.metadata.op_code != OpCode::Query {
            if request.metadata.op_code == OpCode::Notify {
                // We are no secondary: NOTAUTH, with the question, as Knot answers.
                response.metadata.response_code = ResponseCode::NotAuth;
                return Reply::One(answer::encode(response, limit));
            }
            // UPDATE and the rest: NOTIMP, header only, as NSD answers.
            response.metadata.response_code = ResponseCode::NotImp;
            return Reply::One(answer::bare(response));
        }
        let [query] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            if request.queries.is_empty() {
                // No question: FORMERR with our OPT (RFC 6891 §7), as Knot answers.
                return Reply::One(answer::encode(response, limit));
            }
            return Reply::One(answer::bare(response));
        };
        if !request.answers.is_empty() {
            response.metadata.response_code = ResponseCode::FormErr;
            return Reply::One(answer::bare(response));
        }
        if !matches!(query.query_class, DNSClass::IN | DNSClass::ANY) {
            // Other classes: REFUSED without an Extended DNS Error, as Knot answers.
            response.metadata.response_code = ResponseCode::Refused;
            return Reply::One(answer::encode(response, limit));
        }
        let catalog = self.catalog.load();
        let is_transfer = matches!(query.query_type, RecordType::AXFR | RecordType::IXFR);
        let Some(zone) = catalog.find(&query.name) else {
            if is_transfer {
                // RFC 5936 §2.2.1: not authoritative for the zone asked for.
                response.metadata.response_code = ResponseCode::NotAuth;
                return Reply::One(answer::encode(response, limit));
            }
            // Not ours: REFUSED with the Extended DNS Error "Not Authoritative" (RFC 8914),
            // as NSD and Knot answer.
            response.metadata.response_code = ResponseCode::Refused;
            edns::add_extended_error(&mut response, edns::EDE_NOT_AUTHORITATIVE);
            return Reply::One(answer::encode(response, limit));
        };
        if is_transfer {
            let allowed = self
                .transfer_acl
                .get(&LowerName::new(zone.origin()))
                .is_some_and(|acl| acl.iter().any(|m| m.matches(client.ip())));
            return transfer::respond(response, request, zone, transport, allowed, limit);
        }
        let sections = lookup::lookup(zone, query);
        response.metadata.authoritative = sections.authoritative;
        response.metadata.response_code = sections.rcode.unwrap_or(ResponseCode::NoError);
        response.answers = sections.answers;
        response.authorities = sections.authorities;
        response.additionals = sections.additionals;
        Reply::One(answer::encode(response, limit))
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Engine>();
    is::<Arc<Engine>>();
}
