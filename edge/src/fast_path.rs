//! The HTTP/1.1 fast path: a plain `GET` or `HEAD` over HTTPS for a file the small-file cache
//! holds ([`crate::file_cache`]), or for a page the page cache holds fresh
//! ([`crate::page_cache`]), is answered before pingora makes a session for it; one for the app
//! that the page cache does not take is sent to the app by [`crate::fast_proxy`].
//!
//! pingora's path for such a request (its session, request and response header maps built and
//! written header by header, the proxy's phases and their futures) cost about 35k of the 54k
//! user-space instructions of a small file's answer and 23k of a cached page's 70k
//! (`bench/edge/callgrind`). Here the keep-alive loop ([`crate::keepalive`]) hands over a
//! request's head when it is complete in what was read at once; [`FastPath::answer`] parses
//! it (`httparse`) and answers it only when every rule of the full path is known to give the
//! same bytes:
//!
//! - HTTP/1.1, `GET` or `HEAD`, an origin-form target of plain URL characters, nothing after the
//!   head (no body, no pipelined request), within `limits.max_header_bytes` and `max_headers`;
//! - one `Host` that is one of the site's names, at most one `Accept-Encoding` and one
//!   `If-None-Match`, `Connection` only as `keep-alive`, and every other header one whose value
//!   the full path ignores here (`User-Agent`, `Accept`, `Cookie`, ... see [`IGNORED`]);
//! - no other precondition and no range (`If-Match`, `If-Modified-Since`, `Range`, ...: the
//!   full path's [`crate::static_files::serve_content`] and pingora's cache own those);
//! - a file: the small-file cache holds the path and it is still current (the same `statx`
//!   check as the full path); the answer is the entry's prebuilt response bytes with the
//!   request id, `Date` (pingora's cached value), `Connection` and, when a CA's certificate is
//!   served, HSTS;
//! - a page: no `Cookie`, and [`crate::page_cache::PageCache::route_path`] finds a fresh hit
//!   (an `If-None-Match` goes through pingora's cache, as on the full path) for a path whose
//!   first segment names nothing in the web root (the full path looks for a file first); the
//!   answer is the stored header with what the full path adds, in its order ([`decorate`],
//!   then pingora's `Date` and `Connection`), written as pingora writes it, then the body;
//! - the app: a request the page cache does not take (a `Cookie`), or whose URL it remembers as
//!   uncacheable, or any with the page cache off, for a path whose first segment names nothing
//!   in the web root, when one of the app's servers is ready (the pool's next one,
//!   [`crate::proxy::AppPool`]; none: the full path answers `503`): [`crate::fast_proxy`]
//!   sends it and the answer, as the full path would.
//!
//! Anything else, and a connection at its last allowed request or a server shutting down, goes
//! the full way, with the bytes read so far handed to pingora as the start of the request.
//! Answers count in the same metrics and get the same access log line as on the full path, and
//! `onebox_edge_fast_path_responses_total` counts them. `tests/file_cache.rs`,
//! `tests/page_cache.rs` and `tests/fast_proxy.rs` send each request both ways (a header the
//! fast path does not know sends it the full way) and compare the answers byte for byte.

use crate::fast_proxy::{AppRequest, Proxied};
use crate::file_cache::{Cached, h1_head};
use crate::page_cache::{Route, Url};
use crate::proxy::{
    AccessRecord, Kind, Shared, access_log_line, app_host_of, canonical_ip, client_write_timeout,
    decorate, ip_text, request_id,
};
use crate::static_files::{self, Source};
use onebox_site::edge::AccessLog;
use pingora::protocols::Stream;
use pingora::protocols::http::date::get_cached_date;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Headers whose values the full path ignores for a cached file or page (the page cache keeps
/// no `Vary`; a `Cookie` only keeps a request from the page cache): a request with only these
/// (besides `Host`, `Accept-Encoding`, `If-None-Match` and `Connection: keep-alive`) may be
/// answered here. Lower case.
pub const IGNORED: [&str; 17] = [
    "user-agent",
    "accept",
    "accept-language",
    "cache-control",
    "pragma",
    "referer",
    "cookie",
    "dnt",
    "upgrade-insecure-requests",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "priority",
];

/// The most header fields a request answered here may have (more goes the full way).
const MAX_FIELDS: usize = 32;

/// What [`FastPath::answer`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request was answered; the connection may serve the next one.
    Answered,
    /// The request is not one for the fast path: nothing was written.
    NotHandled,
    /// Writing the answer failed or timed out, or the answer ends the connection (the app's
    /// answer was framed by closing it, or failed midway): the connection is done.
    Failed,
}

/// The fast path of the HTTPS listener.
pub struct FastPath {
    shared: Arc<Shared>,
}

/// A request the fast path answers, as parsed.
struct Request<'a> {
    head: bool,
    /// `GET` or `HEAD`.
    method: &'a str,
    /// The header fields as received.
    fields: &'a [httparse::Header<'a>],
    target: &'a str,
    path: &'a str,
    /// The `Host` value as received.
    raw_host: &'a str,
    /// Its name as the site's names are compared with it (but for its case).
    host: &'a str,
    /// Whether it has a `Cookie` (then the page cache does not answer it).
    cookie: bool,
    accept_encoding: &'a str,
    if_none_match: Option<&'a str>,
}

/// Where a request that names no file the small-file cache holds goes.
enum AppRoute {
    /// A fresh hit of the page cache.
    Page(Answer),
    /// The app, without the page cache: a request the cache does not take (a `Cookie`), or
    /// whose URL it remembers as uncacheable (`Some`), or any with the page cache off.
    App(Option<Url>),
    /// The full path.
    Full,
}

/// An answer the fast path sends.
struct Answer {
    /// The whole response.
    bytes: Vec<u8>,
    status: u16,
    /// Its request id.
    id: String,
    /// [`Kind::Static`] or [`Kind::Cache`].
    kind: Kind,
}

impl FastPath {
    /// The fast path over the HTTPS listener's shared state.
    pub fn new(shared: Arc<Shared>) -> FastPath {
        FastPath { shared }
    }

    /// Answers the request whose head is exactly `head` (a complete head, nothing after it) on
    /// `stream` if it is one for the fast path (see the module); `last` says the connection may
    /// not be kept alive after it (its last allowed request, or the server is shutting down),
    /// which the full path answers.
    pub async fn answer(&self, stream: &mut Stream, head: &[u8], last: bool) -> Outcome {
        let start = Instant::now();
        if last {
            return Outcome::NotHandled;
        }
        let shared = &self.shared;
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let Some(req) = self.parse(head, &mut fields) else {
            return Outcome::NotHandled;
        };
        // The small-file cache's current entry (the same lookup and `statx` as the full path's;
        // a stale entry leaves the cache there, and the full path fills it again).
        let answer = if let Some(rep) = shared.file_cache.get(req.path, req.accept_encoding) {
            self.file(&req, &rep)
        } else {
            match self.app_route(&req, start) {
                AppRoute::Page(answer) => Some(answer),
                AppRoute::App(remembered) => {
                    return self.to_app(stream, &req, remembered, start).await;
                }
                AppRoute::Full => None,
            }
        };
        let Some(answer) = answer else {
            return Outcome::NotHandled;
        };
        let metrics = &shared.metrics;
        metrics.fast_path_responses.inc();
        if answer.kind == Kind::Static {
            metrics.static_cache_hits.inc();
            metrics.static_responses.inc();
        } else {
            metrics.page_cache_hits.inc();
            metrics.page_cache_fast_hits.inc();
        }
        let write_timeout = client_write_timeout(&shared.config.edge.limits);
        let ok = crate::fast_proxy::write(stream, &answer.bytes, write_timeout, true)
            .await
            .is_ok();
        // As the full path's `logging` counts it: a response not written has no status.
        let status = if ok { answer.status } else { 0 };
        self.log(stream, &req, status, answer.kind, &answer.id, start);
        if ok {
            Outcome::Answered
        } else {
            Outcome::Failed
        }
    }

    /// Counts an answer's status and writes its access log line, as the full path's `logging`
    /// does.
    fn log(
        &self,
        stream: &Stream,
        req: &Request<'_>,
        status: u16,
        kind: Kind,
        id: &str,
        start: Instant,
    ) {
        let shared = &self.shared;
        shared.metrics.count_response(status);
        let format = shared.config.edge.access_log;
        if format == AccessLog::Off {
            return;
        }
        let line = access_log_line(
            format,
            &AccessRecord {
                client: client_ip(stream),
                host: &req.host.to_ascii_lowercase(),
                method: req.method,
                uri: &req.target,
                version: "HTTP/1.1",
                status,
                ms: start.elapsed().as_secs_f64() * 1000.0,
                kind,
                id,
                tls: true,
            },
        );
        println!("{line}");
    }

    /// Where a request that names no file the small-file cache holds goes: a fresh page-cache
    /// hit is answered here (see [`FastPath::page`]), a request the page cache would not take
    /// or sends to the app without the cache goes to the app (see [`FastPath::to_app`]), when
    /// its path's first segment names nothing in the web root (the full path looks for a file
    /// first); anything else, the full path.
    fn app_route(&self, req: &Request<'_>, start: Instant) -> AppRoute {
        let shared = &self.shared;
        let remembered = match shared.page_cache {
            // The page cache takes no request with a `Cookie` (the only credentials the fast
            // path lets through).
            Some(_) if req.cookie => None,
            Some(cache) => {
                let host = app_host_of(req.raw_host);
                let conditional = req.if_none_match.is_some();
                match cache.route_path(&host, req.target, conditional, start) {
                    Route::Hit(hit) => {
                        return self.page(req, hit).map_or(AppRoute::Full, AppRoute::Page);
                    }
                    Route::Remembered(url) => Some(url),
                    Route::Lookup(..) | Route::Bypass => return AppRoute::Full,
                }
            }
            None => None,
        };
        if !static_files::first_segment_missing(shared.web_root.configured(), req.path) {
            return AppRoute::Full;
        }
        AppRoute::App(remembered)
    }

    /// Sends a request to the app and its answer to the client ([`crate::fast_proxy`]) when
    /// one of the app's servers is ready, the pool's next one (else the full path answers
    /// `503`).
    async fn to_app(
        &self,
        stream: &mut Stream,
        req: &Request<'_>,
        remembered: Option<Url>,
        start: Instant,
    ) -> Outcome {
        let shared = &self.shared;
        let Some(server) = shared.app_pool.ready() else {
            return Outcome::NotHandled;
        };
        let id = self.next_id();
        let Ok(id_value) = http::HeaderValue::from_str(&id) else {
            return Outcome::NotHandled;
        };
        let client = client_ip(stream).map(ip_text).unwrap_or_default();
        let app_host = app_host_of(req.raw_host);
        let site_host = req.host.to_ascii_lowercase();
        let app_req = AppRequest {
            method: req.method,
            target: req.target,
            fields: req.fields,
            app_host: &app_host,
            site_host: &site_host,
            client: &client,
            id: &id_value,
            remembered,
        };
        // Boxed: the connection's task (HTTP/2 and idle connections too) is sized by its
        // largest state, and the proxy's (a client session, headers) would add kilobytes to
        // every connection's memory.
        let proxied = Box::pin(shared.app_client.proxy(shared, server, stream, &app_req)).await;
        let (status, keep) = match proxied {
            Proxied::NotSent => return Outcome::NotHandled,
            Proxied::Answered { status, keep } => (status, keep),
        };
        let metrics = &shared.metrics;
        metrics.fast_path_responses.inc();
        metrics.proxied_requests.inc();
        metrics.proxied_directly.inc();
        if remembered.is_some() {
            metrics.page_cache_remembered_uncacheable.inc();
        }
        self.log(stream, req, status, Kind::Proxy, &id, start);
        if keep {
            return Outcome::Answered;
        }
        if status != 0 {
            // Answered, and the connection ends: closed as pingora closes it (TLS's
            // close_notify, then the socket's end).
            let limit = client_write_timeout(&shared.config.edge.limits);
            let _ = tokio::time::timeout(limit, stream.shutdown()).await;
        }
        Outcome::Failed
    }

    /// The answer from the small-file cache, if it holds `req`'s file and it is current.
    fn file(&self, req: &Request<'_>, rep: &static_files::Representation) -> Option<Answer> {
        let Source::Cached(cached) = &rep.source else {
            return None;
        };
        let unchanged = req.if_none_match.is_some_and(|list| {
            static_files::etag_matches(list, &cached.etag, static_files::Compare::Weak)
        });
        self.response(cached, unchanged, req.head)
    }

    /// The answer from the page cache's fresh hit `hit` for an anonymous request, as
    /// [`PageCache::route`](crate::page_cache::PageCache::route) finds it, when its path names
    /// nothing in the web root (the full path looks for a file first).
    fn page(&self, req: &Request<'_>, hit: crate::page_store::FreshHit) -> Option<Answer> {
        let shared = &self.shared;
        if !static_files::first_segment_missing(shared.web_root.configured(), req.path) {
            return None;
        }
        let mut header = hit.header;
        let id = self.next_id();
        let value = http::HeaderValue::from_str(&id).ok()?;
        let body = if req.head { &[][..] } else { &hit.body[..] };
        let mut bytes = Vec::with_capacity(1024 + body.len());
        finished_head(shared, &mut header, value, true, &mut bytes)?;
        bytes.extend_from_slice(body);
        Some(Answer {
            bytes,
            status: header.status.as_u16(),
            id,
            kind: Kind::Cache,
        })
    }

    /// A new request id.
    fn next_id(&self) -> String {
        let shared = &self.shared;
        request_id(
            shared.id_prefix,
            shared.next_id.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// The request in `head` if it is one for the fast path.
    fn parse<'h>(
        &self,
        head: &'h [u8],
        fields: &'h mut [httparse::Header<'h>; MAX_FIELDS],
    ) -> Option<Request<'h>> {
        let limits = &self.shared.config.edge.limits;
        if head.len() > limits.max_header_bytes.as_usize() {
            return None;
        }
        let mut parsed = httparse::Request::new(fields);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(n)) if n == head.len() => {}
            _ => return None,
        }
        if parsed.version != Some(1) || parsed.headers.len() > limits.max_headers.as_usize() {
            return None;
        }
        let method = parsed.method?;
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return None,
        };
        let target = parsed.path?;
        if !plain_target(target) {
            return None;
        }
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        let mut host = None;
        let mut accept_encoding = None;
        let mut if_none_match = None;
        let mut cookie = false;
        for field in parsed.headers.iter() {
            // Only the values used here are checked: the full path ignores the others.
            let name = field.name;
            let slot = if name.eq_ignore_ascii_case("host") {
                &mut host
            } else if name.eq_ignore_ascii_case("accept-encoding") {
                &mut accept_encoding
            } else if name.eq_ignore_ascii_case("if-none-match") {
                &mut if_none_match
            } else if name.eq_ignore_ascii_case("connection") {
                if !visible(field.value)?
                    .trim()
                    .eq_ignore_ascii_case("keep-alive")
                {
                    return None;
                }
                continue;
            } else if IGNORED.iter().any(|known| name.eq_ignore_ascii_case(known)) {
                cookie |= name.eq_ignore_ascii_case("cookie");
                continue;
            } else {
                return None;
            };
            if slot.replace(visible(field.value)?).is_some() {
                return None;
            }
        }
        let raw_host = host?;
        let host = host_name(raw_host)?;
        if !self
            .shared
            .config
            .names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(host))
        {
            return None;
        }
        Some(Request {
            head: head_only,
            method,
            fields: parsed.headers,
            target,
            path,
            raw_host,
            host,
            cookie,
            accept_encoding: accept_encoding.unwrap_or_default(),
            if_none_match,
        })
    }

    /// The whole response (header and body) for `cached`.
    fn response(&self, cached: &Cached, unchanged: bool, head: bool) -> Option<Answer> {
        let (prebuilt, status, body) = if unchanged {
            (cached.not_modified_wire.as_ref()?, 304, &[][..])
        } else {
            let body = if head { &[][..] } else { &cached.body[..] };
            (cached.ok_wire.as_ref()?, 200, body)
        };
        let shared = &self.shared;
        let id = self.next_id();
        let date = get_cached_date();
        let hsts = shared.sends_hsts();
        let mut out = Vec::with_capacity(prebuilt.len() + 160 + body.len());
        out.extend_from_slice(prebuilt);
        for (name, value) in [
            (&b"X-Request-Id: "[..], id.as_bytes()),
            (b"Date: ", date.as_bytes()),
            (b"Connection: ", b"keep-alive"),
        ] {
            out.extend_from_slice(name);
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if hsts {
            out.extend_from_slice(b"Strict-Transport-Security: ");
            out.extend_from_slice(shared.hsts.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Some(Answer {
            bytes: out,
            status,
            id,
            kind: Kind::Static,
        })
    }
}

/// Appends to `out` an HTTPS answer's head as the full path finishes and writes it: what it
/// adds, in its order — the edge's headers ([`decorate`], request id `id`), then pingora's
/// `Date` and `Connection` (`keep-alive` if `keep`, else `close`) — then the status line and the
/// header as pingora's HTTP/1.1 writer sends them, and the blank line.
pub fn finished_head(
    shared: &Shared,
    header: &mut pingora::http::ResponseHeader,
    id: http::HeaderValue,
    keep: bool,
    out: &mut Vec<u8>,
) -> Option<()> {
    decorate(shared, true, header, id).ok()?;
    header
        .insert_header(http::header::DATE, get_cached_date())
        .ok()?;
    let connection = if keep { "keep-alive" } else { "close" };
    header
        .insert_header(http::header::CONNECTION, connection)
        .ok()?;
    h1_head(header, out);
    out.extend_from_slice(b"\r\n");
    Some(())
}

/// The client's address of `stream` as the full path's access log and `X-Forwarded-For` have
/// it.
fn client_ip(stream: &Stream) -> Option<std::net::IpAddr> {
    let digest = stream.get_socket_digest();
    canonical_ip(digest.as_ref().and_then(|d| d.peer_addr()))
}

/// Whether `target` is an origin-form request target of unreserved, sub-delimiter, `%`, `:`,
/// `@`, `/` and `?` characters only, with no empty path segment (`//`), which every URI parser
/// reads alike.
fn plain_target(target: &str) -> bool {
    target.starts_with('/')
        && !target.contains("//")
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b))
}

/// `value` as text if it is visible ASCII, spaces and tabs only (what `to_str` accepts).
fn visible(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The name of a `Host` value as the full path compares it with the site's names (which
/// it lowercases first): without its port and a trailing dot; `None` for an IPv6 literal or an
/// empty name, and for userinfo (`@`), which pingora refuses with `400` (the full path answers
/// those).
fn host_name(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    if raw.starts_with('[') || raw.contains('@') {
        return None;
    }
    let name = raw
        .rsplit_once(':')
        .map_or(raw, |(h, _)| h)
        .trim_end_matches('.');
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_targets() {
        assert!(plain_target("/"));
        assert!(plain_target("/a/b.txt?x=1&y=%20"));
        assert!(!plain_target("http://example.com/"));
        assert!(!plain_target("//a"));
        assert!(!plain_target("/a b"));
        assert!(!plain_target("/a#b"));
        assert!(!plain_target("*"));
    }

    #[test]
    fn hosts_as_the_full_path_compares_them() {
        assert_eq!(host_name("WWW.Foobar.com.:8443"), Some("WWW.Foobar.com"));
        assert_eq!(host_name("www.foobar.com"), Some("www.foobar.com"));
        assert_eq!(host_name("[::1]:443"), None);
        assert_eq!(host_name(":443"), None);
        assert_eq!(host_name("www.foobar.com:1@evil.example"), None);
    }
}
