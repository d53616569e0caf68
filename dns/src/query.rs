//! The request path: request bytes in, response bytes out. Every transport calls
//! [`Engine::respond`]; it never panics on any input (see the fuzz target and the random-packet
//! test). It decodes and checks the request, looks the question up ([`crate::lookup`]) or hands
//! a zone transfer to [`crate::transfer`], passes each UDP answer through response rate limiting
//! ([`crate::rrl`]), and has the response assembled by [`crate::answer`] with the OPT record from
//! [`crate::edns`].

use crate::answer::{self, Reply, Transport};
use crate::catalog::Catalog;
use crate::config::ZoneConfig;
use crate::edns;
use crate::fastpath::{self, AnswerCache};
use crate::lookup::{self, Sections};
use crate::metrics::Metrics;
use crate::rrl::{Action, Class, Flow, RateLimiter};
use crate::served::{Changes, Served};
use crate::transfer::{self, Transfer};
use crate::xfr::{self, ZoneSettings, tsig};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use std::net::SocketAddr;
use std::sync::Arc;

/// Answers requests from the current catalog.
#[derive(Debug)]
pub struct Engine {
    /// The zones served; replaced whole on reload.
    catalog: Arc<Served<Catalog>>,
    /// The per-zone settings; replaced whole on reload.
    zones: Served<ZoneSettings>,
    /// Whether each query is logged.
    query_log: bool,
    /// Response rate limiting of UDP answers, if on.
    rrl: Option<RateLimiter>,
    /// What is counted.
    metrics: Arc<Metrics>,
    /// TSIG keys, journals, secondary zones: what the transfer side shares with the request
    /// path.
    xfr: xfr::Shared,
    /// The answers of plain queries, if the cache is on ([`crate::fastpath`]).
    cache: Option<AnswerCache>,
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
    /// The rate-limiting flow of an answer from [`Engine::finish`], kept when the answer cache
    /// is on (it is what a hit is accounted as).
    flow: Option<(Class, Option<Name>)>,
}

impl Engine {
    /// An engine over `catalog`, with no per-zone settings, no query log, no rate limiting.
    pub fn new(catalog: Catalog) -> Self {
        Engine {
            catalog: Arc::new(Served::new(catalog)),
            zones: Served::default(),
            query_log: false,
            rrl: None,
            metrics: Arc::default(),
            xfr: xfr::Shared::default(),
            cache: None,
        }
    }

    /// Caches the answers of plain queries (UDP and TCP) ([`crate::fastpath`]) if `on`.
    pub fn with_answer_cache(mut self, on: bool) -> Self {
        self.cache = on.then(AnswerCache::default);
        self
    }

    /// How many answers the answer cache holds for the catalog served now (0 when it is off).
    pub fn cached_answers(&self) -> usize {
        self.cache
            .as_ref()
            .map_or(0, |c| c.len(&self.catalog.load_full()))
    }

    /// How many NXDOMAIN templates the answer cache holds for the catalog served now
    /// ([`fastpath::Denial`]; 0 when it is off).
    pub fn denial_templates(&self) -> usize {
        self.cache
            .as_ref()
            .map_or(0, |c| c.denials(&self.catalog.load_full()))
    }

    /// How many answers the answer cache wrote from NXDOMAIN templates (0 when it is off).
    pub fn denial_hits(&self) -> u64 {
        self.cache.as_ref().map_or(0, AnswerCache::denial_hits)
    }

    /// Allows `limit` zone transfers out at once (more are REFUSED).
    pub fn with_transfers_out(mut self, limit: usize) -> Self {
        self.xfr = xfr::Shared::new(limit);
        self
    }

    /// What the transfer side shares with the request path.
    pub fn xfr(&self) -> &xfr::Shared {
        &self.xfr
    }

    /// The per-zone settings in force.
    pub fn zone_settings(&self) -> Arc<ZoneSettings> {
        self.zones.load_full()
    }

    /// The replacements of the per-zone settings from now on ([`Engine::set_zone_settings`]).
    pub fn zone_settings_changes(&self) -> Changes {
        self.zones.changes()
    }

    /// Replaces the TSIG keys at once.
    pub fn set_tsig_keys(&self, keys: tsig::Keys) {
        self.xfr.keys.store(Arc::new(keys));
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

    /// The zones served; store a new catalog to reload (its watchers are told).
    pub fn catalog(&self) -> &Arc<Served<Catalog>> {
        &self.catalog
    }

    /// What is counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Replaces the per-zone settings (`[[dns.zone]]` tables) at once.
    pub fn set_zone_settings(&self, zones: &[ZoneConfig]) {
        self.zones.store(Arc::new(ZoneSettings::new(zones)));
    }

    /// Answers one request.
    pub fn respond(&self, request: &[u8], transport: Transport, client: SocketAddr) -> Reply {
        let mut out = Vec::new();
        match self.respond_buffered(request, transport, client, &mut out) {
            Some(reply) => reply,
            None => Reply::One(out),
        }
    }

    /// Answers one request into `out`, as [`Engine::respond`] answers it, for a transport
    /// whose answers are one message each (UDP): returns whether `out` holds a message to
    /// send. `out` is cleared first and its buffer reused: a cached answer costs no
    /// allocation. (A zone transfer's messages, never sent over UDP, are not written.)
    pub fn respond_into(
        &self,
        request: &[u8],
        transport: Transport,
        client: SocketAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        match self.respond_buffered(request, transport, client, out) {
            None => true,
            Some(Reply::One(bytes)) => {
                put(out, bytes);
                true
            }
            Some(Reply::Drop) => false,
            Some(Reply::Many(_)) => {
                tracing::debug!("a reply of several messages for {client} left unsent");
                false
            }
        }
    }

    /// Answers one request as [`Engine::respond`] answers it: `None` when the answer was
    /// written into `out` (a cached answer: `out`'s buffer is reused, nothing is allocated),
    /// else the reply built (`out` then holds nothing to send: it may have been cleared).
    pub fn respond_buffered(
        &self,
        request: &[u8],
        transport: Transport,
        client: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Option<Reply> {
        if request.len() < 12 || request[2] & 0x80 != 0 {
            // A runt, or a response: never answer those.
            self.metrics.query(transport, None);
            return Some(Reply::Drop);
        }
        // One catalog answers the request, cached or not.
        let catalog = self.catalog.load_full();
        if !self.query_log
            && let Some(cache) = &self.cache
            && !self.xfr.secondaries.any_unavailable()
            && let Some(plain) = fastpath::parse(request)
        {
            return self.respond_cached(cache, &catalog, request, plain, transport, client, out);
        }
        Some(
            self.respond_with(request, transport, client, &catalog)
                .reply,
        )
    }

    /// Answers a plain query from `cache` into `out` (`None`), or builds the answer and
    /// caches it.
    #[allow(clippy::too_many_arguments)]
    fn respond_cached(
        &self,
        cache: &AnswerCache,
        catalog: &Arc<Catalog>,
        request: &[u8],
        plain: fastpath::Plain,
        transport: Transport,
        client: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Option<Reply> {
        let mut buf = [0u8; fastpath::MAX_REQUEST];
        let Some(key) = fastpath::key(request, plain, transport, &mut buf) else {
            return Some(self.respond_with(request, transport, client, catalog).reply);
        };
        if let Some(entry) = cache.get(catalog, key) {
            let flow = Flow {
                class: entry.class,
                name: entry.name.as_ref(),
            };
            match self.limit(transport, client, flow) {
                Action::Drop => {
                    self.metrics.query(transport, None);
                    return Some(Reply::Drop);
                }
                Action::Slip => entry.slipped_into(request, out),
                Action::Send => entry.answer_into(request, out),
            }
            self.metrics.query(transport, Some(entry.rcode));
            return None;
        }
        // A question with capitals is answered as if asked in lower case (the entry serves
        // every spelling), then spelled as asked.
        let mut lowered = Vec::new();
        let asked = if fastpath::lowered(request, plain, &mut lowered) {
            &lowered[..]
        } else {
            request
        };
        // A name that does not exist: its zone's NXDOMAIN template, or one built from this
        // answer (never an entry of the answer cache: such names are mostly asked once).
        let mut denial_buf = [0u8; fastpath::MAX_REQUEST];
        let mut build = None;
        if let Some((encloser_at, next_closer_at, zone)) = nxdomain(catalog, asked, plain)
            && let Some(denial_key) = fastpath::denial_key(key, plain, encloser_at, &mut denial_buf)
        {
            match cache.denial(catalog, denial_key) {
                Some(Some(denial))
                    if denial.serves(asked, next_closer_at)
                        && denial.answer_into(
                            request,
                            asked,
                            plain.question_end,
                            fastpath::size_limit(request, plain, transport),
                            out,
                        ) =>
                {
                    let flow = Flow {
                        class: denial.class,
                        name: denial.name.as_ref(),
                    };
                    match self.limit(transport, client, flow) {
                        Action::Drop => {
                            out.clear();
                            self.metrics.query(transport, None);
                            return Some(Reply::Drop);
                        }
                        Action::Slip => denial.slipped_into(request, plain.question_end, out),
                        Action::Send => {}
                    }
                    self.metrics.query(transport, Some(ResponseCode::NXDomain));
                    cache.denial_hit();
                    return None;
                }
                Some(_) => {}
                None => build = Some((encloser_at, next_closer_at, denial_key, zone)),
            }
        }
        let mut outcome = self.respond_with(asked, transport, client, catalog);
        if let (Reply::One(bytes), Action::Send, Some((class, name))) =
            (&outcome.reply, outcome.action, outcome.flow)
        {
            if let Some((encloser_at, next_closer_at, denial_key, zone)) = build {
                // DO on a signed zone: NSEC proofs, assembled ([`fastpath::NsecParts`]).
                let proofs = zone.dnssec().is_some() && fastpath::dnssec_ok(asked, plain);
                let denial = if proofs {
                    fastpath::Denial::signed(
                        asked,
                        plain,
                        bytes,
                        zone,
                        encloser_at,
                        class,
                        name.clone(),
                    )
                } else {
                    fastpath::Denial::new(
                        asked,
                        plain,
                        bytes,
                        (next_closer_at, encloser_at),
                        class,
                        name.clone(),
                    )
                };
                match denial {
                    Ok(denial) => cache.insert_denial(catalog, denial_key, Some(denial)),
                    Err(fastpath::NoTemplate::Never) => {
                        cache.insert_denial(catalog, denial_key, None);
                    }
                    Err(fastpath::NoTemplate::NotThisName) => {}
                }
            }
            if let Some(entry) = fastpath::Entry::new(asked, plain, bytes, class, name) {
                cache.insert(catalog, key, entry);
            }
        }
        if let Reply::One(bytes) = &mut outcome.reply {
            fastpath::spell(bytes, request, plain.question_end);
        }
        Some(outcome.reply)
    }

    /// Answers one request from `catalog` (today's path: decoded, looked up, encoded), counts
    /// and logs it.
    fn respond_with(
        &self,
        request: &[u8],
        transport: Transport,
        client: SocketAddr,
        catalog: &Catalog,
    ) -> Outcome {
        let (outcome, message) = match Message::from_vec(request) {
            Ok(message) => (
                self.signed(request, &message, transport, client, catalog),
                Some(message),
            ),
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
                        flow: None,
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
                            flow: None,
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
        outcome
    }

    /// Answers a decoded request, checking its TSIG first and signing the answer when it was
    /// signed (RFC 8945).
    fn signed(
        &self,
        bytes: &[u8],
        request: &Message,
        transport: Transport,
        client: SocketAddr,
        catalog: &Catalog,
    ) -> Outcome {
        if request.signature().is_none() {
            return self.answer(request, transport, client, None, catalog);
        }
        match tsig::check_request(bytes, request, &self.xfr.keys.load(), tsig::now()) {
            tsig::Check::Unsigned => self.answer(request, transport, client, None, catalog),
            tsig::Check::Failed {
                response,
                error,
                reason,
            } => {
                self.metrics.tsig_failure(error);
                self.xfr
                    .log_refusal(format_args!("request from {client} refused: {reason}"));
                Outcome {
                    reply: Reply::One(response),
                    rcode: ResponseCode::NotAuth,
                    action: Action::Send,
                    flow: None,
                }
            }
            tsig::Check::Signed(mut signing) => {
                let mut outcome = self.answer(request, transport, client, Some(&signing), catalog);
                let signed = match &mut outcome.reply {
                    Reply::Drop => Ok(()),
                    Reply::One(bytes) => signing.sign(bytes),
                    Reply::Many(messages) => messages
                        .list
                        .iter_mut()
                        .try_for_each(|bytes| signing.sign(bytes)),
                };
                if let Err(e) = signed {
                    tracing::error!("cannot sign the answer to {client}: {e}");
                    outcome.reply = Reply::Drop;
                }
                outcome
            }
        }
    }

    fn answer(
        &self,
        request: &Message,
        transport: Transport,
        client: SocketAddr,
        tsig: Option<&tsig::Signing>,
        catalog: &Catalog,
    ) -> Outcome {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.queries = request.queries.clone();
        let key: Option<&Name> = tsig.map(tsig::Signing::key_name);
        let size = edns::size_limit(request, transport);
        let limit = Encoding::Limit(match tsig {
            // Room for the TSIG record.
            Some(t) => size.saturating_sub(u16::try_from(t.overhead()).unwrap_or(u16::MAX)),
            None => size,
        });
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
                flow: None,
            };
        }
        if request.metadata.op_code != OpCode::Query {
            if request.metadata.op_code == OpCode::Notify {
                // NOERROR from a secondary zone's primary; NOTAUTH for a zone we are no
                // secondary for (Knot's answer); REFUSED from anyone else.
                let settings = self.zones.load();
                let rcode = xfr::secondary::notify_in(self, &settings, request, client, key);
                self.metrics.notify_received(rcode == ResponseCode::NoError);
                response.metadata.response_code = rcode;
                response.metadata.authoritative = rcode == ResponseCode::NoError;
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
        let is_transfer = matches!(query.query_type, RecordType::AXFR | RecordType::IXFR);
        let found = catalog.find(&query.name);
        if self
            .xfr
            .secondaries
            .unavailable(&query.name, found.map(|z| z.origin()))
        {
            // A secondary zone with no copy to serve (none yet, or expired): SERVFAIL, as
            // Knot and NSD answer.
            response.metadata.response_code = ResponseCode::ServFail;
            return self.finish(response, limit, error, transport, client);
        }
        let Some(zone) = found else {
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
            let asked = if query.query_type == RecordType::IXFR {
                transfer::Kind::Ixfr
            } else {
                transfer::Kind::Axfr
            };
            let mut allowed = self
                .zones
                .load()
                .may_transfer(zone.origin(), client.ip(), key);
            if !allowed && transport == Transport::Tcp {
                self.metrics.transfer_out(asked, "refused");
                self.xfr.log_refusal(format_args!(
                    "{} of {} from {client} refused: not in its allow_transfer{}",
                    asked.as_str(),
                    zone.origin(),
                    key.map_or(String::new(), |k| format!(" (signed with {k})"))
                ));
            }
            // A place among the transfers going out, held until the last message is sent.
            let permit = if allowed && transport == Transport::Tcp {
                match self.xfr.transfers_out.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        allowed = false;
                        self.metrics.transfer_out(asked, "refused");
                        self.xfr.log_refusal(format_args!(
                            "{} of {} from {client} refused: transfers_out_max transfers are \
                             going out",
                            asked.as_str(),
                            zone.origin()
                        ));
                        None
                    }
                }
            } else {
                None
            };
            let answered = self.xfr.with_journal(zone.origin(), |journal| {
                transfer::respond(response, request, zone, transport, allowed, journal)
            });
            return match answered {
                Transfer::Many(list, kind) => {
                    self.metrics.transfer_out(kind, "ok");
                    tracing::info!(
                        "{} of {} to {client}{}: {} of serial {}",
                        asked.as_str(),
                        zone.origin(),
                        key.map_or(String::new(), |k| format!(" (key {k})")),
                        match kind {
                            transfer::Kind::Ixfr => "the differences",
                            transfer::Kind::Axfr => "the whole zone",
                        },
                        zone.serial(),
                    );
                    Outcome {
                        reply: Reply::Many(answer::Messages { list, permit }),
                        rcode: ResponseCode::NoError,
                        action: Action::Send,
                        flow: None,
                    }
                }
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
        let kept = self
            .cache
            .as_ref()
            .map(|_| (flow.class, flow.name.cloned()));
        match action {
            Action::Drop => {
                return Outcome {
                    reply: Reply::Drop,
                    rcode,
                    action,
                    flow: kept,
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
            flow: kept,
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

/// Whether the question of the plain `request` (in lower case) is a name of a zone of `catalog`
/// that does not exist ([`crate::zone::Walk::nxdomain`]): where its name's labels above the
/// closest encloser end and where the last of them starts, and the zone. Found on the request's
/// bytes ([`Catalog::walk_wire`]): nothing decoded, nothing allocated.
fn nxdomain<'c>(
    catalog: &'c Catalog,
    request: &[u8],
    plain: fastpath::Plain,
) -> Option<(usize, usize, &'c Arc<crate::zone::Zone>)> {
    let wire = request.get(12..plain.question_end.checked_sub(4)?)?;
    let mut starts = [0usize; crate::zone::MAX_LABELS];
    let (zone, walk) = catalog.walk_wire(wire, &mut starts)?;
    if !walk.nxdomain() {
        return None;
    }
    let above = walk.labels.checked_sub(walk.encloser)?;
    let encloser_at = crate::zone::suffix_at(wire, &starts, walk.labels, walk.encloser)?;
    let next_closer_at = *starts.get(above.checked_sub(1)?)?;
    Some((12 + encloser_at, 12 + next_closer_at, zone))
}

/// Puts `bytes` into `out`: copied into its buffer if it has room (kept for the next answer),
/// else moved.
fn put(out: &mut Vec<u8>, bytes: Vec<u8>) {
    if out.capacity() >= bytes.len() {
        out.clear();
        out.extend_from_slice(&bytes);
    } else {
        *out = bytes;
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Engine>();
    is::<Arc<Engine>>();
}
