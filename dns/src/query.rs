//! The request path: request bytes in, response bytes out. Every transport calls
//! [`Engine::respond`]; it never panics on any input (see the fuzz target and the random-packet
//! test). It decodes and checks the request, looks the question up ([`crate::lookup`]) or hands
//! a zone transfer to [`crate::transfer`], passes each UDP answer through response rate limiting
//! ([`crate::rrl`]), and has the response assembled by [`crate::answer`] with the OPT record from
//! [`crate::edns`].

use crate::answer::{self, Reply, Transport};
use crate::catalog::Catalog;
use crate::config::{AddressMatch, ZoneConfig};
use crate::edns;
use crate::lookup::{self, Sections};
use crate::metrics::Metrics;
use crate::rrl::{Action, Class, Flow, RateLimiter};
use crate::transfer::{self, Transfer};
use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The per-zone settings (`[[dns.zone]]`), replaced whole when the site file is reread.
#[derive(Debug, Default)]
struct ZoneSettings {
    /// Who may transfer which zone.
    allow_transfer: HashMap<LowerName, Vec<AddressMatch>>,
}

/// Answers requests from the current catalog.
#[derive(Debug)]
pub struct Engine {
    /// The zones served; replaced whole on reload.
    catalog: Arc<ArcSwap<Catalog>>,
    /// The per-zone settings; replaced whole on reload.
    zones: ArcSwap<ZoneSettings>,
    /// Whether each query is logged.
    query_log: bool,
    /// Response rate limiting of UDP answers, if on.
    rrl: Option<RateLimiter>,
    /// What is counted.
    metrics: Arc<Metrics>,
}

/// How a response message is put on the wire.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// Within this many bytes (see [`answer::encode`]).
    Limit(u16),
    /// Header only (see [`answer::bare`]).
    Bare,
}

/// A request's answer, with what the log and the metrics say about it.
struct Outcome {
    reply: Reply,
    /// The response code of the response built (sent or not).
    rcode: ResponseCode,
    /// What rate limiting did.
    action: Action,
}

impl Engine {
    /// An engine over `catalog`, with no per-zone settings, no query log, no rate limiting.
    pub fn new(catalog: Catalog) -> Self {
        Engine {
            catalog: Arc::new(ArcSwap::from_pointee(catalog)),
            zones: ArcSwap::default(),
            query_log: false,
            rrl: None,
            metrics: Arc::default(),
        }
    }

    /// Logs every query at INFO.
    pub fn with_query_log(mut self, on: bool) -> Self {
        self.query_log = on;
        self
    }

    /// Rate-limits UDP answers with `rrl`.
    pub fn with_rate_limiter(mut self, rrl: Option<RateLimiter>) -> Self {
        self.rrl = rrl;
        self
    }

    /// Counts into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The zones served; store a new catalog to reload.
    pub fn catalog(&self) -> &Arc<ArcSwap<Catalog>> {
        &self.catalog
    }

    /// What is counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Replaces the per-zone settings (`[[dns.zone]]` tables) at once.
    pub fn set_zone_settings(&self, zones: &[ZoneConfig]) {
        let allow_transfer = zones
            .iter()
            .map(|z| (LowerName::new(z.name.name()), z.allow_transfer.clone()))
            .collect();
        self.zones.store(Arc::new(ZoneSettings { allow_transfer }));
    }

    /// Answers one request.
    pub fn respond(&self, request: &[u8], transport: Transport, client: SocketAddr) -> Reply {
        if request.len() < 12 || request[2] & 0x80 != 0 {
            // A runt, or a response: never answer those.
            self.metrics.query(transport, None);
            return Reply::Drop;
        }
        let (outcome, message) = match Message::from_vec(request) {
            Ok(message) => (self.answer(&message, transport, client), Some(message)),
            Err(_) => {
                let flow = Flow {
                    class: Class::Error,
                    name: None,
                };
                let outcome = match self.limit(transport, client, flow) {
                    Action::Drop => Outcome {
                        reply: Reply::Drop,
                        rcode: ResponseCode::FormErr,
                        action: Action::Drop,
                    },
                    action => {
                        let mut bytes = answer::formerr_header(request);
                        if action == Action::Slip {
                            bytes[2] |= 0x02; // TC
                        }
                        Outcome {
                            reply: Reply::One(bytes),
                            rcode: ResponseCode::FormErr,
                            action,
                        }
                    }
                };
                (outcome, None)
            }
        };
        let sent = !matches!(outcome.reply, Reply::Drop);
        self.metrics.query(transport, sent.then_some(outcome.rcode));
        if self.query_log {
            let q = message.as_ref().and_then(|m| m.queries.first());
            tracing::info!(
                target: "query",
                %client,
                transport = ?transport,
                name = %q.map(|q| q.name.to_string()).unwrap_or_default(),
                qtype = %q.map(|q| q.query_type.to_string()).unwrap_or_default(),
                rcode = %match (&outcome.reply, outcome.action) {
                    (Reply::Drop, Action::Drop) => "dropped (rate limit)".to_string(),
                    (Reply::Drop, _) => "dropped".to_string(),
                    (Reply::Many(_), _) => "NOERROR (transfer)".to_string(),
                    (Reply::One(_), Action::Slip) => {
                        format!("{} (truncated: rate limit)", outcome.rcode)
                    }
                    (Reply::One(_), _) => outcome.rcode.to_string(),
                },
            );
        }
        outcome.reply
    }

    fn answer(&self, request: &Message, transport: Transport, client: SocketAddr) -> Outcome {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.queries = request.queries.clone();
        let limit = Encoding::Limit(edns::size_limit(request, transport));
        // Answers that come from no zone: rate-limited as errors of the root.
        let error = Flow {
            class: Class::Error,
            name: None,
        };
        if let Some(opt) = &request.edns {
            response.edns = Some(edns::response_opt(opt));
            if edns::bad_version(opt) {
                response.metadata.response_code = ResponseCode::BADVERS;
                return self.finish(response, limit, error, transport, client);
            }
        }
        if request.metadata.message_type != MessageType::Query {
            return Outcome {
                reply: Reply::Drop,
                rcode: ResponseCode::NoError,
                action: Action::Send,
            };
        }
        if request.metadata.op_code != OpCode::Query {
            if request.metadata.op_code == OpCode::Notify {
                // We are no secondary: NOTAUTH, with the question, as Knot answers.
                response.metadata.response_code = ResponseCode::NotAuth;
                return self.finish(response, limit, error, transport, client);
            }
            // UPDATE and the rest: NOTIMP, header only, as NSD answers.
            response.metadata.response_code = ResponseCode::NotImp;
            return self.finish(response, Encoding::Bare, error, transport, client);
        }
        let [query] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            if request.queries.is_empty() {
                // No question: FORMERR with our OPT (RFC 6891 §7), as Knot answers.
                return self.finish(response, limit, error, transport, client);
            }
            return self.finish(response, Encoding::Bare, error, transport, client);
        };
        if !request.answers.is_empty() {
            response.metadata.response_code = ResponseCode::FormErr;
            return self.finish(response, Encoding::Bare, error, transport, client);
        }
        if !matches!(query.query_class, DNSClass::IN | DNSClass::ANY) {
            // Other classes: REFUSED without an Extended DNS Error, as Knot answers.
            response.metadata.response_code = ResponseCode::Refused;
            return self.finish(response, limit, error, transport, client);
        }
        let catalog = self.catalog.load();
        let is_transfer = matches!(query.query_type, RecordType::AXFR | RecordType::IXFR);
        let Some(zone) = catalog.find(&query.name) else {
            if is_transfer {
                // RFC 5936 §2.2.1: not authoritative for the zone asked for.
                response.metadata.response_code = ResponseCode::NotAuth;
                return self.finish(response, limit, error, transport, client);
            }
            // Not ours: REFUSED with the Extended DNS Error "Not Authoritative" (RFC 8914),
            // as NSD and Knot answer.
            response.metadata.response_code = ResponseCode::Refused;
            edns::add_extended_error(&mut response, edns::EDE_NOT_AUTHORITATIVE);
            return self.finish(response, limit, error, transport, client);
        };
        let apex = Some(zone.origin());
        if is_transfer {
            let allowed = self
                .zones
                .load()
                .allow_transfer
                .get(&LowerName::new(zone.origin()))
                .is_some_and(|acl| acl.iter().any(|m| m.matches(client.ip())));
            return match transfer::respond(response, request, zone, transport, allowed) {
                Transfer::Many(messages) => Outcome {
                    reply: Reply::Many(messages),
                    rcode: ResponseCode::NoError,
                    action: Action::Send,
                },
                Transfer::One(response) => {
                    let flow = match response.metadata.response_code {
                        ResponseCode::NoError => Flow {
                            class: Class::Positive,
                            name: Some(&query.name),
                        },
                        _ => Flow {
                            class: Class::Error,
                            name: apex,
                        },
                    };
                    self.finish(response, limit, flow, transport, client)
                }
            };
        }
        let Sections {
            answers,
            authorities,
            additionals,
            authoritative,
            rcode,
            referral,
            wildcard,
        } = lookup::lookup(
            zone,
            query,
            request.edns.as_ref().is_some_and(edns::dnssec_ok),
        );
        // The rate-limiting class of the answer and the name it is keyed by, as NSD's
        // `rrl_classify`: NXDOMAIN by the zone, a referral by the delegation, ANY by the
        // question, a wildcard answer by the wildcard, NODATA by the zone, a positive answer by
        // the question.
        let (class, name) = match (rcode, &referral, &wildcard) {
            (Some(ResponseCode::NXDomain), _, _) => (Class::NxDomain, zone.origin()),
            (Some(_), _, _) => (Class::Error, zone.origin()),
            (None, Some(cut), _) => (Class::Referral, cut),
            _ if query.query_type == RecordType::ANY => (Class::Any, &query.name),
            (None, None, Some(wildcard)) => (Class::Wildcard, wildcard),
            _ if answers.is_empty() => (Class::NoData, zone.origin()),
            _ => (Class::Positive, &query.name),
        };
        response.metadata.authoritative = authoritative;
        response.metadata.response_code = rcode.unwrap_or(ResponseCode::NoError);
        response.answers = answers;
        response.authorities = authorities;
        response.additionals = additionals;
        let flow = Flow {
            class,
            name: Some(name),
        };
        self.finish(response, limit, flow, transport, client)
    }

    /// Rate-limits (UDP only) and encodes `response`.
    fn finish(
        &self,
        mut response: Message,
        encoding: Encoding,
        flow: Flow<'_>,
        transport: Transport,
        client: SocketAddr,
    ) -> Outcome {
        let rcode = response.metadata.response_code;
        let action = self.limit(transport, client, flow);
        match action {
            Action::Drop => {
                return Outcome {
                    reply: Reply::Drop,
                    rcode,
                    action,
                };
            }
            Action::Slip => answer::truncate(&mut response),
            Action::Send => {}
        }
        let bytes = match encoding {
            Encoding::Limit(limit) => answer::encode(response, limit),
            Encoding::Bare => answer::bare(response),
        };
        Outcome {
            reply: Reply::One(bytes),
            rcode,
            action,
        }
    }

    /// What response rate limiting says about an answer of `flow` to `client`: UDP answers
    /// only; TCP is never limited (its client cannot forge its address).
    fn limit(&self, transport: Transport, client: SocketAddr, flow: Flow<'_>) -> Action {
        let Some(rrl) = &self.rrl else {
            return Action::Send;
        };
        if transport != Transport::Udp {
            return Action::Send;
        }
        let action = rrl.check(client.ip(), flow);
        if action != Action::Send {
            self.metrics.rate_limited(action, flow.class);
        }
        action
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Engine>();
    is::<Arc<Engine>>();
}
