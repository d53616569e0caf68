//! The edge's request logic, as pingora phase hooks.
//!
//! On plain HTTP: ACME HTTP-01 answers under `/.well-known/acme-challenge/`, everything else a
//! 308 to the same host and path on HTTPS. On HTTPS: a request whose path names a file under the
//! web root (GET/HEAD) is answered from it; every other request goes to the app pool, through
//! the page cache ([`crate::page_cache`], whose policy the cache hooks here delegate to).

use crate::acme::ServedCertificate;
use crate::config::{AccessLog, Config, Hsts, UnknownHost};
use crate::limits;
use crate::metrics::Metrics;
use crate::page_cache::{self, PageCache};
use crate::static_files::{self, Body, Lookup};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::{CacheKey, CachePhase, NoCacheReason, RespCacheable};
use pingora::http::ResponseHeader;
use pingora::lb::LoadBalancer;
use pingora::lb::selection::RoundRobin;
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use rustls_acme::ResolvesServerCertAcme;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the HTTP and HTTPS listeners share.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The web root, resolved per request (a publish swaps its symlink).
    pub web_root: crate::web_root::WebRoot,
    /// Small files of the web root in memory, revalidated on every request.
    pub file_cache: crate::file_cache::FileCache,
    /// The app's servers, their health and the choice among them: what every path that sends a
    /// request to the app asks.
    pub app_pool: Arc<AppPool>,
    /// ACME state for HTTP-01 answers, when ACME is on.
    pub acme: Option<Arc<ResolvesServerCertAcme>>,
    /// Figures for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Which certificate is served (HSTS is sent only with the CA's).
    pub certificate: Arc<ServedCertificate>,
    /// The `Strict-Transport-Security` value (`max-age=…`), made once ([`hsts_value`]).
    pub hsts: http::HeaderValue,
    /// Source of request ids.
    pub next_id: AtomicU64,
    /// A per-process prefix of request ids.
    pub id_prefix: u32,
    /// The cache of the app's pages, unless `[edge.page_cache] enabled = false`. Static: pingora's
    /// cache takes `'static` parts.
    pub page_cache: Option<&'static PageCache>,
    /// The edge's own client for plain requests for the app ([`crate::fast_proxy`]), with its
    /// per-thread kept connections: the HTTP/1.1 fast path's and [`Edge::h2_to_app`]'s.
    pub app_client: crate::fast_proxy::FastProxy,
}

impl Shared {
    /// Whether an HTTPS answer gets `Strict-Transport-Security` now: when configured so and a
    /// CA's certificate is served.
    pub fn sends_hsts(&self) -> bool {
        self.config.edge.headers.hsts == Hsts::WhenCaCertificate && self.certificate.from_ca()
    }
}

/// How long writing to the client may take (`limits.client_timeout_secs`, at least 30 s: a
/// slow reader of a large answer is not cut at a short read timeout).
pub fn client_write_timeout(limits: &onebox_site::edge::LimitsConfig) -> Duration {
    Duration::from_secs(limits.client_timeout_secs.get().max(30))
}

/// The pingora proxy logic of one listener.
pub struct Edge {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Whether this listener is the HTTPS one.
    pub tls: bool,
}

/// The app's servers, each with its peer built once with the configured timeouts, chosen
/// round-robin among those whose health check says they are ready — what pingora's
/// `LoadBalancer::select` does with `RoundRobin` (one turn of a shared counter per server
/// tried), without building a set of the servers tried and the peer and its options for every
/// request. Every path to the app asks it (the proxy's `upstream_peer`, the HTTP/1.1 fast
/// path, HTTP/2's direct proxy), so a pool of several servers (a second and third box) is one
/// rotation whichever path a request takes. The servers come from the configuration (static
/// discovery), so they never change while the edge runs.
pub struct AppPool {
    /// pingora's load balancer: the servers' health checks (its background service) and their
    /// results.
    health: Arc<LoadBalancer<RoundRobin>>,
    servers: Box<[AppServer]>,
    /// The round-robin counter.
    next: AtomicUsize,
}

/// One of the app's servers.
pub struct AppServer {
    backend: pingora::lb::Backend,
    /// Its peer, with the configured timeouts.
    pub peer: HttpPeer,
    /// Its place in the pool (which of the servers a kept connection goes to).
    pub index: usize,
    /// Its address as configured, for the metrics' label.
    pub name: String,
    /// `onebox_edge_app_server_requests_total` for it.
    requests: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for AppPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.servers.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("AppPool").field("servers", &names).finish()
    }
}

impl AppPool {
    /// The servers of `health`'s pool, with the timeouts of `up`, each counting its requests in
    /// `metrics`.
    pub fn new(
        health: Arc<LoadBalancer<RoundRobin>>,
        up: &onebox_site::edge::UpstreamConfig,
        metrics: &crate::metrics::Metrics,
    ) -> AppPool {
        let pool = &health;
        let mut backends: Vec<_> = pool.backends().get_backend().iter().cloned().collect();
        // In the configuration's order (the load balancer keeps a set).
        backends.sort_by_key(|b| {
            up.servers
                .iter()
                .position(|s| b.addr.as_inet() == Some(s))
                .unwrap_or(usize::MAX)
        });
        let servers = backends
            .into_iter()
            .enumerate()
            .map(|(index, backend)| {
                let name = backend.addr.to_string();
                AppServer {
                    peer: app_peer(backend.clone(), up),
                    requests: metrics.app_server_requests(&name),
                    backend,
                    index,
                    name,
                }
            })
            .collect();
        AppPool {
            health,
            servers,
            next: AtomicUsize::new(0),
        }
    }

    /// The server the next request goes to, counted in its
    /// `onebox_edge_app_server_requests_total`: the next one round-robin whose health check
    /// says it is ready; `None` when none is (the proxy answers `503`).
    pub fn ready(&self) -> Option<&AppServer> {
        let backends = self.health.backends();
        let server = if let [only] = &self.servers[..] {
            backends.ready(&only.backend).then_some(only)
        } else {
            (0..self.servers.len())
                .map(|_| {
                    &self.servers[self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len()]
                })
                .find(|server| backends.ready(&server.backend))
        }?;
        server.requests.inc();
        Some(server)
    }

    /// Each server's name and whether its health check says it is ready, in the
    /// configuration's order.
    pub fn health(&self) -> impl Iterator<Item = (&str, bool)> {
        let backends = self.health.backends();
        self.servers
            .iter()
            .map(move |s| (s.name.as_str(), backends.ready(&s.backend)))
    }
}

/// The peer for one of the app's servers, with the configured timeouts.
fn app_peer(backend: pingora::lb::Backend, up: &onebox_site::edge::UpstreamConfig) -> HttpPeer {
    let mut peer = HttpPeer::new(backend, false, String::new());
    peer.options.connection_timeout = Some(up.connect_timeout_ms.millis());
    peer.options.total_connection_timeout = Some(up.connect_timeout_ms.millis());
    peer.options.read_timeout = Some(up.read_timeout_secs.secs());
    peer.options.write_timeout = Some(up.read_timeout_secs.secs());
    peer
}

/// Per-request state.
pub struct Ctx {
    /// The request id, as the header value sent up to the app and back to the client (built
    /// once; each header holds a reference to it, not a copy).
    id: http::HeaderValue,
    start: Instant,
    host: String,
    kind: Kind,
    body_bytes: u64,
    /// The URL for the page cache's memory of uncacheable URLs, when the request may use the
    /// cache.
    page_url: Option<page_cache::Url>,
    /// Whether that memory sent the request to the app without the cache.
    page_remembered: bool,
    /// The page cache key, made with the URL (taken by `cache_key_callback`).
    page_key: Option<CacheKey>,
}

impl Ctx {
    /// The request id (hex digits).
    fn id(&self) -> &str {
        self.id.to_str().unwrap_or_default()
    }
}

/// How a request was answered (the access log's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sent to the app pool (the default until something else answers).
    Proxy,
    /// Answered from the page cache.
    Cache,
    /// Answered from the web root (a file, its 304/206/416/412, a 404 for a refused path, the
    /// redirect adding a directory's slash).
    Static,
    /// An ACME HTTP-01 token (or a 404 for an unknown one) on the plain-HTTP listener.
    Acme,
    /// The plain-HTTP listener's 308 to HTTPS.
    Redirect,
    /// Refused before anything else: 413, 431, 400 (smuggling), 421 (unknown host).
    Refused,
}

impl Kind {
    /// The access log's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Proxy => "proxy",
            Kind::Cache => "cache",
            Kind::Static => "static",
            Kind::Acme => "acme",
            Kind::Redirect => "redirect",
            Kind::Refused => "refused",
        }
    }
}

/// How many [`SECURITY_HEADERS`] there are.
pub const SECURITY_HEADER_COUNT: usize = 3;

/// The security headers the HTTPS listener adds (`[edge.headers] security_headers`) unless the
/// response has its own: each as the header map's key (a standard name, looked up without
/// parsing, where a name given as text is parsed at every lookup), as written, and its value.
pub const SECURITY_HEADERS: [(http::HeaderName, &str, &str); SECURITY_HEADER_COUNT] = [
    (
        http::header::X_CONTENT_TYPE_OPTIONS,
        "X-Content-Type-Options",
        "nosniff",
    ),
    (
        http::header::X_FRAME_OPTIONS,
        "X-Frame-Options",
        "SAMEORIGIN",
    ),
    (
        http::header::REFERRER_POLICY,
        "Referrer-Policy",
        "strict-origin-when-cross-origin",
    ),
];

/// A request id: the process's prefix and the request's number, each as 8 lowercase hex digits
/// (what `format!("{prefix:08x}{n:08x}")` gives, without the formatting machinery).
pub fn request_id(prefix: u32, n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n_digits = (16 - n.leading_zeros() as usize / 4).max(8);
    let mut out = String::with_capacity(8 + n_digits);
    for (value, digits) in [(u64::from(prefix), 8), (n, n_digits)] {
        for shift in (0..digits).rev() {
            out.push(HEX[((value >> (shift * 4)) & 0xf) as usize] as char);
        }
    }
    out
}

/// The `Strict-Transport-Security` header's value for `max_age_secs`.
pub fn hsts_value(max_age_secs: u64) -> http::HeaderValue {
    // Digits and ASCII only: always a valid header value.
    http::HeaderValue::from_maybe_shared(Bytes::from(format!("max-age={max_age_secs}")))
        .unwrap_or(http::HeaderValue::from_static("max-age=0"))
}

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

impl Edge {
    /// The `Host` of the request (without port, lower-case), from `Host` or the URI authority.
    fn host(session: &Session) -> String {
        let req = session.req_header();
        let raw = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default();
        let no_port = if raw.starts_with('[') {
            raw.split_once(']')
                .map_or(raw, |(h, _)| h)
                .trim_start_matches('[')
        } else {
            raw.rsplit_once(':').map_or(raw, |(h, _)| h)
        };
        no_port.trim_end_matches('.').to_ascii_lowercase()
    }

    /// Adds the request id, and on HTTPS the security headers and HSTS ([`decorate`]).
    fn decorate(&self, resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
        decorate(&self.shared, self.tls, resp, ctx.id.clone())
    }

    /// Sends a short plain-text answer.
    async fn plain(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        status: u16,
        body: &str,
        extra: &[(&str, String)],
    ) -> Result<bool> {
        let mut resp = ResponseHeader::build(status, Some(4))?;
        resp.insert_header("Content-Type", "text/plain; charset=utf-8")?;
        resp.insert_header("Content-Length", body.len().to_string())?;
        for (k, v) in extra {
            resp.insert_header(k.to_string(), v.as_str())?;
        }
        self.decorate(&mut resp, ctx)?;
        let head = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(resp), head).await?;
        if !head {
            session
                .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
                .await?;
        }
        Ok(true)
    }

    /// Refuses a request and closes the connection afterwards.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        why: &str,
    ) -> Result<bool> {
        ctx.kind = Kind::Refused;
        session.as_downstream_mut().set_keepalive(None);
        let answered = self.plain(session, ctx, status, why, &[]).await;
        self.discard_h2_body(session).await;
        answered
    }

    /// After an early answer on HTTP/2, reads and drops the rest of the request body (for at most
    /// `limits.client_timeout_secs`), as nginx does. Dropping a stream whose body is still
    /// arriving resets it (RST_STREAM CANCEL), and the reset discards the answer still queued
    /// behind it: the client saw a stream error instead of the 413.
    async fn discard_h2_body(&self, session: &mut Session) {
        if !session.as_downstream().is_http2() || session.as_downstream_mut().is_body_done() {
            return;
        }
        let limit = self.shared.config.edge.limits.client_timeout_secs.secs();
        let drain = async {
            while let Ok(Some(_)) = session.as_downstream_mut().read_request_body().await {}
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }

    /// Answers on the plain-HTTP listener: ACME HTTP-01 or a redirect.
    async fn http_listener(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let path = session.req_header().uri.path().to_string();
        if let Some(token) = path.strip_prefix(ACME_PREFIX) {
            ctx.kind = Kind::Acme;
            let answer = self
                .shared
                .acme
                .as_ref()
                .and_then(|a| a.get_http_01_key_auth(token));
            return match answer {
                Some(key_auth) => {
                    tracing::info!("answered an ACME HTTP-01 validation for {}", ctx.host);
                    self.plain(session, ctx, 200, &key_auth, &[]).await
                }
                None => self.plain(session, ctx, 404, "Not Found\n", &[]).await,
            };
        }
        ctx.kind = Kind::Redirect;
        let port = self.shared.config.public_https_port();
        let authority = if port == 443 {
            ctx.host.clone()
        } else {
            format!("{}:{port}", ctx.host)
        };
        let pq = session
            .req_header()
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        self.redirect(session, ctx, format!("https://{authority}{pq}"))
            .await
    }

    /// A `308 Permanent Redirect` to `location`.
    async fn redirect(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        location: String,
    ) -> Result<bool> {
        self.plain(
            session,
            ctx,
            308,
            "Permanent Redirect\n",
            &[("Location", location)],
        )
        .await
    }

    /// Answers from the web root if the path names a file there; `Ok(false)` means "proxy it".
    /// A small file comes from the file cache when it is still current there.
    async fn static_file(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return Ok(false);
        }
        let raw_path = req.uri.path();
        let accept = req
            .headers
            .get(http::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let cache = &self.shared.file_cache;
        let rep = match cache.get(raw_path, accept) {
            Some(rep) => {
                self.shared.metrics.static_cache_hits.inc();
                rep
            }
            None => {
                // Most requests for the app name nothing in the web root from their first
                // segment on (the home page `/`: no `index.html`): one `lstat`, no `readlink`
                // of the root.
                if static_files::first_segment_missing(self.shared.web_root.configured(), raw_path)
                {
                    return Ok(false);
                }
                // One release for the whole request, even if a publish swaps the root meanwhile.
                let web_root = self.shared.web_root.current();
                let file = match static_files::lookup(&web_root, raw_path) {
                    Lookup::File(f) => f,
                    Lookup::Missing => return Ok(false),
                    other => return self.not_a_file(session, ctx, other).await,
                };
                match cache.fill(raw_path, &web_root, &file, accept) {
                    Some(rep) => rep,
                    None => match static_files::representation(&file, accept, &web_root) {
                        Ok(r) => r,
                        Err(_) => {
                            ctx.kind = Kind::Static;
                            return self.plain(session, ctx, 404, "Not Found\n", &[]).await;
                        }
                    },
                }
            }
        };
        ctx.kind = Kind::Static;
        self.shared.metrics.static_responses.inc();
        let answer = static_files::serve_content(req, rep)?;
        let mut header = answer.header;
        self.decorate(&mut header, ctx)?;
        match answer.body {
            Body::Empty => session.write_response_header(header, true).await?,
            Body::Text(bytes) | Body::Memory(bytes) => {
                session.write_response_header(header, false).await?;
                session.write_response_body(Some(bytes), true).await?;
            }
            Body::File(chunks) => {
                let mut chunks = if session.as_downstream().is_http2() {
                    chunks.for_http2()
                } else {
                    chunks
                };
                session.write_response_header(header, false).await?;
                while let Some((chunk, end)) = chunks.next_chunk().map_err(file_error)? {
                    session.write_response_body(Some(chunk), end).await?;
                }
            }
        }
        Ok(true)
    }

    /// What the edge adds to a request for the app (pingora's `upstream_request_filter`, and
    /// [`Edge::h2_to_app`]'s request): the forwarding headers ([`forwarded`]) and the `Host` the
    /// page cache's key has (the same for HTTP/1.1 and HTTP/2), sent only when the request's
    /// differs (none, another case, the default port).
    fn app_request(
        &self,
        session: &Session,
        upstream: &mut pingora::http::RequestHeader,
        ctx: &Ctx,
    ) -> Result<()> {
        let client = client_ip(session).map(ip_text).unwrap_or_default();
        forwarded(upstream, client, self.tls, &ctx.host, &ctx.id)?;
        let host = app_host(session.req_header(), &ctx.host);
        if upstream
            .headers
            .get(http::header::HOST)
            .is_none_or(|h| h.as_bytes() != host.as_bytes())
        {
            upstream.insert_header("Host", host.as_ref())?;
        }
        // With the page cache on for this request, pingora has already made it the request for
        // the whole 200 to store: a HEAD goes up as a GET, without If-* or Range.
        Ok(())
    }

    /// An HTTP/2 request for the app that pingora's proxy would send up as it came — a `GET` or
    /// `HEAD` with no body, no field HTTP/1.1 treats as hop-by-hop, no `Host` but the
    /// `:authority` — that the page cache does not store (`Cookie`, a URL it remembers as
    /// uncacheable, or the page cache off), when one of the app's servers is ready (the pool's
    /// next one), is sent by the edge's own client ([`crate::fast_proxy::FastProxy::proxy_h2`])
    /// instead of pingora's proxy phases. The request that goes up is made as pingora's proxy
    /// makes it for an HTTP/1.1 server: the client's header as HTTP/1.1, `Host` from the
    /// authority (pingora's rule, which it does not export), then [`Edge::app_request`]; what
    /// pingora's later checks of it would change (a `Host` the filter replaced, matched to the
    /// URI) does not change the bytes sent. `Ok(false)`: the full path proxies it.
    async fn h2_to_app(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Names, not text: a lookup by text parses the name first.
        use http::header::{self as h, HeaderName};
        static HOP_BY_HOP: [HeaderName; 10] = [
            h::CONNECTION,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
            h::PROXY_AUTHENTICATE,
            h::PROXY_AUTHORIZATION,
            h::TE,
            h::TRAILER,
            h::TRANSFER_ENCODING,
            h::UPGRADE,
            HeaderName::from_static("http2-settings"),
        ];
        let shared = &self.shared;
        if !self.tls || !session.as_downstream().is_http2() || ctx.page_key.is_some() {
            return Ok(false);
        }
        let no_body = session.is_body_empty();
        let req = session.req_header();
        let head = req.method == http::Method::HEAD;
        let plain = (head || req.method == http::Method::GET)
            && no_body
            && !req.headers.contains_key(http::header::HOST)
            && !HOP_BY_HOP.iter().any(|name| req.headers.contains_key(name));
        let Some(authority) = req.uri.authority().filter(|a| !a.as_str().contains('@')) else {
            return Ok(false);
        };
        if !plain {
            return Ok(false);
        }
        // Chosen once the request is known to go this way (a turn of the rotation each).
        let Some(server) = shared.app_pool.ready() else {
            return Ok(false);
        };
        let mut up = req.clone();
        up.set_version(http::Version::HTTP_11);
        up.insert_header(http::header::HOST, authority.as_str())?;
        self.app_request(session, &mut up, ctx)?;
        let asked = crate::fast_proxy::Asked {
            head,
            id: &ctx.id,
            remembered: ctx.page_url.filter(|_| ctx.page_remembered),
        };
        // Boxed, as the HTTP/1.1 fast path's: a stream's task is sized by its largest state.
        let sent = Box::pin(
            shared
                .app_client
                .proxy_h2(shared, server, session, asked, &up),
        )
        .await;
        if matches!(sent, Ok(false)) {
            return Ok(false);
        }
        ctx.kind = Kind::Proxy;
        shared.metrics.proxied_requests.inc();
        shared.metrics.proxied_directly.inc();
        sent
    }

    /// On the HTTPS listener, for a request the web root did not answer: a fresh page-cache hit
    /// is sent at once ([`PageCache::route`]); otherwise what the cache hooks are to do with it
    /// is noted in `ctx`, and `Ok(false)` proxies it.
    async fn page_cache_route(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(cache) = self.shared.page_cache else {
            return Ok(false);
        };
        let req = session.req_header();
        let head = req.method == http::Method::HEAD;
        let hit = match cache.route(&app_host(req, &ctx.host), req, ctx.start) {
            page_cache::Route::Bypass => return Ok(false),
            page_cache::Route::Remembered(url) => {
                ctx.page_url = Some(url);
                ctx.page_remembered = true;
                self.shared.metrics.page_cache_remembered_uncacheable.inc();
                return Ok(false);
            }
            page_cache::Route::Lookup(url, key) => {
                ctx.page_url = Some(url);
                ctx.page_key = Some(key);
                return Ok(false);
            }
            page_cache::Route::Hit(hit) => hit,
        };
        ctx.kind = Kind::Cache;
        self.shared.metrics.page_cache_hits.inc();
        self.shared.metrics.page_cache_fast_hits.inc();
        let mut header = hit.header;
        self.decorate(&mut header, ctx)?;
        let end = head || hit.body.is_empty();
        session.write_response_header(header, end).await?;
        if !end {
            session.write_response_body(Some(hit.body), true).await?;
        }
        Ok(true)
    }

    /// The answer to a path that names no file but is the web root's: a refused path's 404, or
    /// the redirect adding a directory's slash.
    async fn not_a_file(&self, session: &mut Session, ctx: &mut Ctx, what: Lookup) -> Result<bool> {
        ctx.kind = Kind::Static;
        if what != Lookup::AddSlash {
            return self.plain(session, ctx, 404, "Not Found\n", &[]).await;
        }
        let uri = &session.req_header().uri;
        let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let location = format!("{}/{q}", uri.path());
        self.redirect(session, ctx, location).await
    }
}

/// Adds the request id `id`, and on HTTPS (`tls`) the security headers and HSTS: what every
/// answer of the edge gets, from the proxy's phases and [`crate::fast_path`] alike. (A prebuilt
/// header of [`crate::file_cache`] or the page cache holds the request id's slot already:
/// inserting replaces its value.)
pub fn decorate(
    shared: &Shared,
    tls: bool,
    resp: &mut ResponseHeader,
    mut id: http::HeaderValue,
) -> Result<()> {
    // New on every answer: HTTP/2 sends it "never indexed" (HPACK). Indexed, each id went into the
    // connection's table, pushing out the fields that repeat (the security headers, HSTS), which
    // then went out whole again, and each answer's id was compared with every id still there.
    id.set_sensitive(true);
    resp.insert_header("X-Request-Id", id)?;
    if !tls {
        return Ok(());
    }
    let headers = &shared.config.edge.headers;
    if shared.sends_hsts() {
        // Made once: a clone shares its bytes.
        resp.insert_header("Strict-Transport-Security", shared.hsts.clone())?;
    }
    if headers.security_headers {
        for (key, name, value) in SECURITY_HEADERS {
            if !resp.headers.contains_key(key) {
                // A static value: no copy, no validation.
                resp.insert_header(name, http::HeaderValue::from_static(value))?;
            }
        }
    }
    Ok(())
}

/// The forwarding headers and the request id on a request to the app, from the proxy's
/// `upstream_request_filter` and [`crate::fast_proxy`] alike: `X-Forwarded-For` (`client`),
/// `X-Forwarded-Proto`, `X-Forwarded-Host` (the site name `host`), `X-Request-Id` (`id`). The
/// edge is the first hop: a client's own forwarding headers are replaced, not trusted.
pub fn forwarded(
    upstream: &mut pingora::http::RequestHeader,
    client: String,
    tls: bool,
    host: &str,
    id: &http::HeaderValue,
) -> Result<()> {
    upstream.insert_header("X-Forwarded-For", client)?;
    upstream.insert_header(
        "X-Forwarded-Proto",
        http::HeaderValue::from_static(if tls { "https" } else { "http" }),
    )?;
    upstream.insert_header("X-Forwarded-Host", host)?;
    upstream.insert_header("X-Request-Id", id.clone())?;
    Ok(())
}

/// What the access log says of one request.
pub struct AccessRecord<'a> {
    /// The client's address.
    pub client: Option<std::net::IpAddr>,
    /// The site name it was for (empty before it was known).
    pub host: &'a str,
    /// Its method.
    pub method: &'a str,
    /// Its target as received (written as it is: the proxy's is the parsed URI, not copied to
    /// a string for a text line).
    pub uri: &'a dyn std::fmt::Display,
    /// Its protocol version (`HTTP/1.1`).
    pub version: &'a str,
    /// The status sent (0: none).
    pub status: u16,
    /// Milliseconds from its start to its end.
    pub ms: f64,
    /// How it was answered.
    pub kind: Kind,
    /// Its request id.
    pub id: &'a str,
    /// Whether it came over HTTPS.
    pub tls: bool,
}

/// One access log line in `format` (not [`AccessLog::Off`]), for the proxy's `logging` phase
/// and [`crate::fast_path`] alike.
pub fn access_log_line(format: AccessLog, r: &AccessRecord<'_>) -> String {
    let client = r.client.map(ip_text).unwrap_or_default();
    let (status, ms, version) = (r.status, r.ms, r.version);
    match format {
        AccessLog::Json => serde_json::json!({
            "time": httpdate::fmt_http_date(std::time::SystemTime::now()),
            "id": r.id, "client": client, "host": r.host, "method": r.method,
            "uri": r.uri.to_string(), "version": version, "status": status,
            "ms": (ms * 1000.0).round() / 1000.0, "kind": r.kind.as_str(), "tls": r.tls,
        })
        .to_string(),
        _ => format!(
            "{client} {} \"{} {} {version}\" {status} {ms:.3}ms {} {}",
            if r.host.is_empty() { "-" } else { r.host },
            r.method,
            r.uri,
            r.kind.as_str(),
            r.id
        ),
    }
}

/// The client's address: on the dual-stack `[::]` listener an IPv4 client's `::ffff:a.b.c.d`
/// is its IPv4 address `a.b.c.d`.
fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    canonical_ip(session.client_addr())
}

/// A peer address as [`client_ip`] reads it (`::ffff:a.b.c.d` as `a.b.c.d`), for a stream
/// without a session ([`crate::fast_path`]).
pub fn canonical_ip(
    addr: Option<&pingora::protocols::l4::socket::SocketAddr>,
) -> Option<std::net::IpAddr> {
    addr.and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical())
}

/// An address as text, what `ip.to_string()` gives; an IPv4 one without the formatting
/// machinery (~1.3k instructions per proxied request for `X-Forwarded-For`).
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// The `Host` the app sees, and the page cache's key has: the request's `Host`, or HTTP/2's
/// `:authority` when it has none, lower-case and without the HTTPS default port (`:443`), so
/// that `www.foobar.com:443`, `WWW.foobar.com` and an HTTP/2 `:authority: www.foobar.com` are
/// one page; `ctx_host` only when the request names no host at all (HTTP/1.0).
fn app_host<'a>(req: &'a pingora::http::RequestHeader, ctx_host: &'a str) -> Cow<'a, str> {
    match req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
    {
        Some(raw) => app_host_of(raw),
        None => Cow::Borrowed(ctx_host),
    }
}

/// The `Host` the app sees for a request's raw `Host` (see [`app_host`]).
pub fn app_host_of(raw: &str) -> Cow<'_, str> {
    let raw = raw.strip_suffix(":443").unwrap_or(raw);
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(raw.to_ascii_lowercase())
    } else {
        Cow::Borrowed(raw)
    }
}

/// A static file read failure as a pingora error.
fn file_error(e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::InternalError, "reading a static file", e)
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = Ctx;

    /// No downstream modules: pingora's default is its response-compression module, switched
    /// off (level 0), which still cost a context and filter calls per request. The edge
    /// compresses nothing (precompressed siblings are served as they are).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        Ctx {
            // Hex digits only: always a valid header value, taken without a copy.
            id: http::HeaderValue::try_from(request_id(self.shared.id_prefix, n))
                .unwrap_or(http::HeaderValue::from_static("-")),
            start: Instant::now(),
            host: String::new(),
            kind: Kind::Proxy,
            body_bytes: 0,
            page_url: None,
            page_remembered: false,
            page_key: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let limits = &self.shared.config.edge.limits;
        let downstream = session.as_downstream_mut();
        downstream.set_read_timeout(Some(limits.client_timeout_secs.secs()));
        downstream.set_write_timeout(Some(client_write_timeout(limits)));
        downstream.set_keepalive(Some(limits.keepalive_secs.get()));
        ctx.host = Self::host(session);

        let raw = if session.as_downstream().is_http2() {
            None
        } else {
            Some(session.as_downstream().to_h1_raw())
        };
        if let Err(refusal) = limits::check(session.req_header(), raw.as_deref(), limits) {
            let why = match refusal {
                limits::Refusal::HeadersTooLarge => "Request Header Fields Too Large\n",
                limits::Refusal::BodyTooLarge => "Content Too Large\n",
                limits::Refusal::Smuggling => "Bad Request: conflicting message framing\n",
            };
            return self.refuse(session, ctx, refusal.status(), why).await;
        }

        if !self.shared.config.names.contains(&ctx.host) {
            match self.shared.config.edge.unknown_host {
                UnknownHost::Misdirected => {
                    return self
                        .refuse(
                            session,
                            ctx,
                            421,
                            "Misdirected Request: this server does not serve that host name\n",
                        )
                        .await;
                }
                UnknownHost::DefaultSite => {
                    ctx.host = self
                        .shared
                        .config
                        .names
                        .first()
                        .cloned()
                        .unwrap_or_default()
                }
            }
        }

        if !self.tls {
            return self.http_listener(session, ctx).await;
        }
        if self.static_file(session, ctx).await? || self.page_cache_route(session, ctx).await? {
            return Ok(true);
        }
        self.h2_to_app(session, ctx).await
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > self.shared.config.edge.limits.max_body_bytes.get() {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over limits.max_body_bytes",
                );
            }
        }
        Ok(())
    }

    /// Enables the page cache for the requests [`Edge::page_cache_route`] sent to pingora's
    /// cache (an anonymous `GET`/`HEAD` on HTTPS whose URL is not remembered as uncacheable and
    /// that was no fresh hit).
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        if let Some(cache) = self.shared.page_cache
            && ctx.page_key.is_some()
        {
            cache.enable(session);
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        let Some(cache) = self.shared.page_cache else {
            return Error::e_explain(ErrorType::InternalError, "the page cache is off");
        };
        if let Some(key) = ctx.page_key.take() {
            return Ok(key);
        }
        let req = session.req_header();
        Ok(cache.key(&app_host(req, &ctx.host), req))
    }

    /// Whether the answer may be stored; one that may not is remembered for its URL (by the
    /// requests that went through the cache only: theirs are the answers the cache would
    /// store, without the client's `If-*` or `Range`).
    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        let Some(cache) = self.shared.page_cache else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        let answer = cache.response_cacheable(resp);
        if !answer.is_cacheable()
            && let Some(url) = ctx.page_url
        {
            cache.remember_uncacheable(url, Instant::now());
        }
        Ok(answer)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.kind = Kind::Proxy;
        self.shared.metrics.proxied_requests.inc();
        let Some(server) = self.shared.app_pool.ready() else {
            self.shared.metrics.upstream_errors.inc();
            return Error::e_explain(ErrorType::HTTPStatus(503), "no healthy app upstream");
        };
        Ok(Box::new(server.peer.clone()))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        _ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // One pool member is down: answer 502 at once instead of retrying into the same wall.
        self.shared.metrics.upstream_errors.inc();
        e.set_retry(false);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.app_request(session, upstream, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if page_cache::take_purge(upstream)
            && let Some(cache) = self.shared.page_cache
        {
            cache.purge();
            self.shared.metrics.page_cache_purges.inc();
            tracing::info!(
                "request {}: the app changed its pages; page cache purged",
                ctx.id()
            );
        }
        // Sent to the app without the cache as a URL whose answers may not be cached: an
        // answer that may be makes the cache forget that, and the next request fills it.
        if ctx.page_remembered
            && let Some(url) = ctx.page_url
            && let Some(cache) = self.shared.page_cache
            && cache.response_cacheable(upstream).is_cacheable()
        {
            cache.forget_uncacheable(url);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if self.shared.page_cache.is_some() && self.tls {
            let status = match session.cache.phase() {
                CachePhase::Hit => {
                    ctx.kind = Kind::Cache;
                    self.shared.metrics.page_cache_hits.inc();
                    "HIT"
                }
                CachePhase::Miss | CachePhase::Expired => {
                    self.shared.metrics.page_cache_misses.inc();
                    "MISS"
                }
                _ => "BYPASS",
            };
            upstream.insert_header("X-Cache", http::HeaderValue::from_static(status))?;
        }
        self.decorate(upstream, ctx)
    }

    /// A `HEAD` that missed the page cache is fetched upstream as a `GET` (to store the whole
    /// page): its body is stored, never sent (over HTTP/2 a body on a `HEAD` stream is a
    /// protocol error; pingora's HTTP/1 writer drops it itself).
    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if body.is_some() && session.req_header().method == http::Method::HEAD {
            *body = None;
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => 502,
                pingora::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        if code > 0 {
            let text = match code {
                502 => "Bad Gateway: the application did not answer\n",
                503 => "Service Unavailable: the application is down\n",
                413 => "Content Too Large\n",
                400 => "Bad Request\n",
                _ => "Error\n",
            };
            session.as_downstream_mut().set_keepalive(None);
            match self.plain(session, ctx, code, text, &[]).await {
                // Answered: let the client finish sending so it reads the answer.
                Ok(_) => self.discard_h2_body(session).await,
                // The app's answer had already begun; the stream or connection just ends.
                Err(err) => tracing::debug!("could not send the error response: {err}"),
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.shared.metrics.count_response(status);
        if ctx.kind == Kind::Proxy
            && status >= 500
            && let Some(e) = e
        {
            tracing::warn!("request {}: upstream failed: {e}", ctx.id());
        }
        let format = self.shared.config.edge.access_log;
        if format == AccessLog::Off {
            return;
        }
        let req = session.req_header();
        let version = format!("{:?}", req.version);
        let line = access_log_line(
            format,
            &AccessRecord {
                client: client_ip(session),
                host: &ctx.host,
                method: req.method.as_str(),
                uri: &req.uri,
                version: &version,
                status,
                ms: ctx.start.elapsed().as_secs_f64() * 1000.0,
                kind: ctx.kind,
                id: ctx.id(),
                tls: self.tls,
            },
        );
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_as_text_are_what_to_string_gives() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.7",
            "1.22.133.4",
            "99.100.109.110",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn request_ids_are_the_formatted_prefix_and_number() {
        for prefix in [0, 1, 0xdead_beef, u32::MAX] {
            for n in [
                0,
                9,
                0xabc,
                0xffff_ffff,
                0x1_0000_0000,
                0x1234_5678_9abc,
                u64::MAX,
            ] {
                assert_eq!(request_id(prefix, n), format!("{prefix:08x}{n:08x}"));
            }
        }
    }

    #[test]
    fn the_hsts_value_is_its_max_age() {
        assert_eq!(hsts_value(31_536_000), "max-age=31536000");
        assert_eq!(hsts_value(0), "max-age=0");
    }

    /// The app's `Host`: the request's, else the URI's authority, lower-case and without
    /// `:443`, else the listener's host; kept, it reads the same.
    #[test]
    fn the_app_host_is_the_requests_lower_case_without_the_default_port() {
        let host = |host: Option<&str>, uri: &str| {
            let mut req = pingora::http::RequestHeader::build("GET", b"/", None).unwrap();
            req.set_uri(uri.parse().unwrap());
            if let Some(h) = host {
                req.insert_header("Host", h).unwrap();
            }
            app_host(&req, "ctx.example").to_string()
        };
        assert_eq!(host(Some("www.foobar.com"), "/"), "www.foobar.com");
        assert_eq!(host(Some("www.foobar.com:443"), "/"), "www.foobar.com");
        assert_eq!(host(Some("WWW.Foobar.com:443"), "/"), "www.foobar.com");
        assert_eq!(
            host(Some("www.foobar.com:8443"), "/"),
            "www.foobar.com:8443"
        );
        assert_eq!(host(None, "https://Www.foobar.com:443/x"), "www.foobar.com");
        assert_eq!(host(None, "https://foobar.com:443/x"), "foobar.com");
        assert_eq!(host(None, "/"), "ctx.example");
    }
}
