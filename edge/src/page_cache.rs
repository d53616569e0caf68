//! The cache of the app's public pages, on pingora's own cache (`pingora-cache`): the policy
//! that [`crate::proxy`]'s cache hooks delegate to.
//!
//! **What is cached.** Only proxied requests (never static files, which have their own answers),
//! only on the HTTPS listener, and only:
//! - requests that are `GET` or `HEAD` with no `Cookie` (so never one with the app's session
//!   cookie `onebox_session`, nor the login form's CSRF cookie), no `Authorization` and no
//!   `Upgrade` header ([`request_cacheable`]);
//! - answers that are `200` with a `Content-Length` of at most `max_object_bytes`, no
//!   `Set-Cookie`, no `Vary`, and a `Cache-Control` (or `Expires`) that allows a shared cache to
//!   keep them for a while: `s-maxage`, else `max-age`, is the freshness; `no-store`, `private`,
//!   `no-cache` or a lifetime of 0 mean not cached ([`response_cacheable`]). The app sends
//!   `public, max-age=0, s-maxage=60` on its public HTML pages and `no-store` on `/admin` and
//!   `/api/`.
//!
//! **Key.** The purge generation, the `Host` the app sees, and the path with its query: `GET` and
//! `HEAD` share an entry (a `HEAD` miss is fetched upstream as a `GET`, and a `HEAD` hit is
//! answered with the cached header and no body). Conditional and range requests are answered
//! from the cached `200` by pingora; upstream, on a miss, they are sent without their `If-*` and
//! `Range` headers so that the full answer is what is stored.
//!
//! **Fresh hits.** A request the cache would answer from a fresh page is answered in the edge's
//! first hook, before pingora's cache is enabled ([`PageCache::route`]): the same key (made
//! once, and handed on to pingora on a miss), looked up in the same [`PageStore`] map, the same
//! freshness test and LRU touch, and a header prebuilt when the page was stored (the edge fills
//! in `Age`, `X-Request-Id`, and pingora `Date` and `Connection`). No cache phase machine, cache
//! key callback, lock or meta rebuilt and converted per hit. Only a request pingora would answer
//! with the whole stored page takes it: one with `Range`, `If-Range`, `If-None-Match`,
//! `If-Modified-Since`, `If-Match` or `If-Unmodified-Since`, a stale page, a key the
//! cacheability predictor or the memory of uncacheable URLs (below) sends past the cache, go the
//! way they went before. A purge changes the key and a fill or revalidation replaces the map's
//! entry, so both are seen by the next request. Counted apart as well
//! (`onebox_edge_page_cache_fast_hits_total`, within `onebox_edge_page_cache_hits_total`).
//!
//! **Uncacheable URLs.** A URL whose answer the app did not let a shared cache keep is
//! remembered for [`UNCACHEABLE_TTL_SECS`] in a fixed table ([`UNCACHEABLE_SLOTS`] slots of 8
//! bytes: a tag of a seeded hash of the generation, `Host` and path, and an expiry), and requests
//! for it go to the app without the cache being enabled at all: no key string, no lookup, no
//! cache lock, no pingora bookkeeping. The memory is written only by requests that went through
//! the cache (their answers are the ones the cache would have stored: no `If-*`, no `Range`),
//! so it expires [`UNCACHEABLE_TTL_SECS`] after the last such answer and the next request
//! checks again. A remembered request whose answer may now be stored makes the memory forget
//! the URL: the request after it is looked up and fills the cache. A purge changes every
//! URL's hash, so it forgets them all. Behind it, for the requests that do enable the cache,
//! pingora's cacheability predictor keeps the concurrent requests for an uncacheable URL from
//! queueing behind its cache lock.
//!
//! **Bounds.** Bodies in memory ([`PageStore`]: parsed headers, bodies handed out without a
//! copy), at most `max_bytes` of them in all and one page per KiB of it, the least recently used
//! dropped first ([`simple_lru::Manager`]); a per-key
//! cache lock, so a burst of misses for one page sends one request to the app and the others
//! wait for its answer.
//!
//! **Purge.** The app adds `X-Onebox-Purge: all` to its successful answer to every change of a
//! post or the settings. The edge strips that header from every proxied answer and, when the
//! status is a success, bumps the generation that is part of every key: an O(1) purge of
//! everything, in effect for the next request (which the app answers after its change is
//! committed). A fill that started before the purge is stored under the old generation, so it
//! is never served. The old entries are unreachable and leave as the LRU drops them.
//!
//! Limits of the purge. A change that does not pass through the edge (a hand-edited database;
//! the app's own command line, `onebox-app admin set-password`, changes no page) sends no
//! purge: pages stay as they were for at most their `s-maxage` (60 s); `onebox restore` restarts the services, which
//! empties the cache. With a second box, each edge holds its own cache and only the box whose
//! edge proxied the change sees the header: the purge would have to be sent to the others
//! (e.g. the edge that sees it forwards a `PURGE` to its peers on a private listener, or the
//! generation lives in the shared database and the edges poll it) — not built.

use crate::page_store::{FreshHit, PageStore};
use pingora::cache::cache_control::CacheControl;
use pingora::cache::eviction::simple_lru;
use pingora::cache::filters::{calculate_fresh_until, resp_cacheable};
use pingora::cache::key::CacheHashKey;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::predictor::{CacheablePredictor, Predictor};
use pingora::cache::{
    CacheKey, CacheMetaDefaults, CacheOptionOverrides, NoCacheReason, RespCacheable,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The response header by which the app asks the edge to purge its cache. The edge never
/// passes it on.
pub const PURGE_HEADER: &str = "x-onebox-purge";

/// No freshness unless the app gives one (no heuristic freshness), no serving stale unless
/// its `Cache-Control` says so.
const DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(|_| None, 0, 0);

/// How long a fill holds its key's lock before waiting requests compete again, and how long a
/// waiting request waits before going to the app itself.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// How many keys the predictor remembers as uncacheable, per shard ([`PREDICTOR_SHARDS`]): an
/// LRU of 16-byte key hashes, so 16 × 1024 keys in well under a MiB, whatever the URLs asked.
const PREDICTOR_SHARD_KEYS: usize = 1024;
/// The predictor's shards (each its own lock).
const PREDICTOR_SHARDS: usize = 16;

/// How long a URL whose answer may not be cached is sent to the app without the cache, after
/// the last answer that said so ([`PageCache::remembers_uncacheable`]).
pub const UNCACHEABLE_TTL_SECS: u32 = 10;
/// Slots of the memory of uncacheable URLs (8 bytes each; two per hash, so two URLs whose
/// hashes meet in one pair of slots are both remembered).
pub const UNCACHEABLE_SLOTS: usize = 4096;

/// A URL as the memory of uncacheable URLs knows it: a seeded hash of the purge generation, the
/// `Host` the app sees and the path with its query ([`PageCache::url`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Url(u64);

impl Url {
    /// The first of the URL's two slots, and its tag: the hash's high 32 bits, never 0 (0 is an
    /// empty slot).
    fn slot_and_tag(self) -> (usize, u64) {
        let slot = (self.0 as usize % (UNCACHEABLE_SLOTS / 2)) * 2;
        (slot, (self.0 >> 32) | 1)
    }
}

/// What the page cache makes of a request ([`PageCache::route`]).
pub enum Route {
    /// Not one the cache may answer or fill ([`request_cacheable`]).
    Bypass,
    /// Its URL's last answer may not be cached: to the app without the cache.
    Remembered(Url),
    /// Through pingora's cache, with this key.
    Lookup(Url, CacheKey),
    /// A fresh page, to be sent as it is (its header still lacks `X-Request-Id`, and pingora's
    /// `Date` and `Connection`).
    Hit(FreshHit),
}

/// The cache: its in-memory storage, pingora's LRU, lock and cacheability predictor, and the
/// purge generation.
pub struct PageCache {
    storage: &'static PageStore,
    eviction: &'static simple_lru::Manager,
    lock: &'static CacheKeyLockImpl,
    /// The keys whose last answer the app did not let a shared cache keep (`no-store`, no
    /// `Cache-Control`, a `Set-Cookie` …, pingora's `OriginNotCache`) or that were too large:
    /// requests for them bypass the lookup and the cache lock and go to the app at once. Without
    /// it every request for an uncacheable URL (an API call, a page with a session) took the
    /// key's lock, and the requests for it that came meanwhile waited for its answer before
    /// going to the app themselves: requests for one uncacheable URL went up in convoys, each
    /// waiting for the app's answer to the one before (a slow API call made every concurrent
    /// caller wait twice as long). A bypassed request whose answer may be stored again is
    /// stored, and its key forgotten here (pingora's `response_became_cacheable`), so a page
    /// that turns cacheable is cached from its next answer on.
    predictor: &'static Predictor<PREDICTOR_SHARDS>,
    /// The memory of uncacheable URLs, consulted before the cache is enabled: each slot 0 or
    /// a [`Url`]'s tag (high 32 bits) and the second since `epoch` until which it holds.
    uncacheable: Box<[AtomicU64]>,
    /// The start of the memory's clock.
    epoch: Instant,
    /// The seed of [`Url`]'s hash (per process: which URLs share slots cannot be worked out
    /// from outside).
    hasher: foldhash::quality::RandomState,
    max_object_bytes: usize,
    generation: AtomicU64,
}

impl PageCache {
    /// The cache `config` describes, or none when it is off. Its storage lives as long as the
    /// process (pingora's cache takes `'static` parts): build one per process.
    /// `extra` are the headers the edge adds to every answer unless it has its own (built into
    /// the stored pages' hit headers).
    pub fn new(
        config: &crate::config::PageCacheConfig,
        extra: Vec<(&'static str, &'static str)>,
    ) -> Option<PageCache> {
        if !config.enabled {
            return None;
        }
        let lock: Box<CacheKeyLockImpl> = CacheLock::new_boxed(LOCK_TIMEOUT);
        Some(PageCache {
            storage: Box::leak(Box::new(PageStore::new(
                config.max_object_bytes.as_usize(),
                extra,
            ))),
            eviction: Box::leak(Box::new(simple_lru::Manager::new_with_watermark(
                config.max_bytes.as_usize(),
                Some(max_pages(config.max_bytes.as_usize())),
            ))),
            lock: Box::leak(lock),
            predictor: Box::leak(Box::new(Predictor::new(PREDICTOR_SHARD_KEYS, None))),
            uncacheable: (0..UNCACHEABLE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            hasher: foldhash::quality::RandomState::default(),
            max_object_bytes: config.max_object_bytes.as_usize(),
            generation: AtomicU64::new(0),
        })
    }

    /// What becomes of a proxied request on the HTTPS listener to `host` (the `Host` the app
    /// sees, lower-case), received at `now`: the decisions `request_cache_filter` and pingora's
    /// cache lookup would make, in that order, up to a fresh hit (see the module doc).
    pub fn route(&self, host: &str, req: &RequestHeader, now: Instant) -> Route {
        use http::header::{
            IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
        };
        if !request_cacheable(req) {
            return Route::Bypass;
        }
        // One pass over the request's few header names rather than a hashed lookup for each.
        let conditional = req.headers.keys().any(|h| {
            h == RANGE
                || h == IF_RANGE
                || h == IF_NONE_MATCH
                || h == IF_MODIFIED_SINCE
                || h == IF_MATCH
                || h == IF_UNMODIFIED_SINCE
        });
        self.route_path(host, path_and_query(req), conditional, now)
    }

    /// [`PageCache::route`] of a request that [`request_cacheable`] accepts, for `path` (its
    /// path and query as received) on `host`; `conditional` if it has a precondition or a range
    /// (never answered as a fresh hit: pingora's cache path evaluates those).
    pub fn route_path(&self, host: &str, path: &str, conditional: bool, now: Instant) -> Route {
        let url = self.url_of(host, path);
        if self.remembers_uncacheable(url, now) {
            return Route::Remembered(url);
        }
        let key = self.key_of(host, path);
        match self.fresh_hit(&key, conditional) {
            Some(hit) => Route::Hit(hit),
            None => Route::Lookup(url, key),
        }
    }

    /// The fresh page stored under `key`, when pingora's hit path would send the request the
    /// whole of it as it is stored (not `conditional`).
    fn fresh_hit(&self, key: &CacheKey, conditional: bool) -> Option<FreshHit> {
        if conditional || !self.predictor.cacheable_prediction(key) {
            return None;
        }
        // The key has no variance (the cache keeps no `Vary`): its storage key is its primary
        // hash.
        self.storage
            .fresh_hit(key.primary_bin(), SystemTime::now(), self.eviction)
    }

    /// Turns pingora's cache on for this request (when [`request_cacheable`] said yes).
    pub fn enable(&'static self, session: &mut Session) {
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(LOCK_TIMEOUT);
        session.cache.enable(
            self.storage,
            Some(self.eviction),
            Some(self.predictor),
            Some(self.lock),
            Some(overrides),
        );
        session.cache.set_max_file_size_bytes(self.max_object_bytes);
    }

    /// The key of a request to `host` (the `Host` the app sees).
    pub fn key(&self, host: &str, req: &RequestHeader) -> CacheKey {
        self.key_of(host, path_and_query(req))
    }

    /// The key of `path` (path and query as received) on `host`.
    fn key_of(&self, host: &str, path: &str) -> CacheKey {
        let generation = self.generation.load(Ordering::Acquire);
        // `format!("{generation}\n{host}\n{path}")`, without the formatting machinery (~1k
        // instructions per request; the number by `itoa`).
        let mut primary = Vec::with_capacity(20 + 2 + host.len() + path.len());
        primary.extend_from_slice(itoa::Buffer::new().format(generation).as_bytes());
        primary.push(b'\n');
        primary.extend_from_slice(host.as_bytes());
        primary.push(b'\n');
        primary.extend_from_slice(path.as_bytes());
        let mut key = CacheKey::new(primary, "");
        // Hashed once here: the predictor, the store, the lock and the LRU each ask for it,
        // and would hash the key again every time.
        let hash = key.primary_bin();
        key.set_primary_bin_override(hash);
        key
    }

    /// The URL of a request to `host` (the `Host` the app sees, lower-case), under the current
    /// purge generation, for the memory of uncacheable URLs.
    pub fn url(&self, host: &str, req: &RequestHeader) -> Url {
        self.url_of(host, path_and_query(req))
    }

    /// The URL of `path` (path and query as received) on `host`.
    fn url_of(&self, host: &str, path: &str) -> Url {
        let generation = self.generation.load(Ordering::Acquire);
        Url(self.hasher.hash_one((generation, host, path)))
    }

    /// The memory's clock at `now`: whole seconds since it started.
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() & u64::from(u32::MAX)
    }

    /// Whether `url`'s last answer that went through the cache, less than
    /// [`UNCACHEABLE_TTL_SECS`] before `now`, was one the cache may not keep: then the request
    /// goes to the app without the cache.
    pub fn remembers_uncacheable(&self, url: Url, now: Instant) -> bool {
        let (slot, tag) = url.slot_and_tag();
        let second = self.second(now);
        self.uncacheable[slot..slot + 2].iter().any(|s| {
            let v = s.load(Ordering::Relaxed);
            v >> 32 == tag && v & u64::from(u32::MAX) > second
        })
    }

    /// Remembers that `url`'s answer at `now` may not be cached, in the slot that holds it
    /// already, else an empty or expired one, else the one that expires first.
    pub fn remember_uncacheable(&self, url: Url, now: Instant) {
        let (slot, tag) = url.slot_and_tag();
        let second = self.second(now);
        let until = (second + u64::from(UNCACHEABLE_TTL_SECS)) & u64::from(u32::MAX);
        let pair = &self.uncacheable[slot..slot + 2];
        let [a, b] = [0, 1].map(|i| pair[i].load(Ordering::Relaxed));
        let live = |v: u64| v & u64::from(u32::MAX) > second;
        let i = if a >> 32 == tag {
            0
        } else if b >> 32 == tag {
            1
        } else if !live(a) {
            0
        } else if !live(b) {
            1
        } else {
            usize::from(b & u64::from(u32::MAX) < a & u64::from(u32::MAX))
        };
        // Racing writers may each win one slot or overwrite each other: at worst a URL is
        // looked up once more than it had to be.
        pair[i].store(tag << 32 | until, Ordering::Relaxed);
    }

    /// Forgets `url` (its answer may now be stored): the next request for it goes through
    /// the cache.
    pub fn forget_uncacheable(&self, url: Url) {
        let (slot, tag) = url.slot_and_tag();
        for s in &self.uncacheable[slot..slot + 2] {
            let v = s.load(Ordering::Relaxed);
            if v >> 32 == tag {
                let _ = s.compare_exchange(v, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }

    /// Whether `resp` may be stored, and for how long.
    pub fn response_cacheable(&self, resp: &ResponseHeader) -> RespCacheable {
        let refuse = RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
        if refused_at_once(resp.status.as_u16(), |name| resp.headers.contains_key(name)) {
            return refuse;
        }
        let length = resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        // A streamed answer (no length) is not cached: pingora would have to abort it midway
        // once it passed max_object_bytes.
        if length.is_none_or(|n| n > self.max_object_bytes) {
            return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
        }
        let cc = CacheControl::from_resp_headers(resp);
        // The header is copied into the stored meta only when it will be stored: `no-store`,
        // `private`, `no-cache`, a lifetime of 0 are refused on the parsed Cache-Control alone.
        let now = SystemTime::now();
        if calculate_fresh_until(now, cc.as_ref(), resp, false, &DEFAULTS)
            .is_none_or(|until| until < now)
        {
            return refuse;
        }
        match resp_cacheable(cc.as_ref(), resp.clone(), false, &DEFAULTS) {
            RespCacheable::Cacheable(meta) if meta.is_fresh(now) => RespCacheable::Cacheable(meta),
            _ => refuse,
        }
    }

    /// Purges every page: the next request for any of them goes to the app.
    pub fn purge(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether the page cache refuses an answer of `status` on which fields it has alone (`has`
/// says whether it has a field of that name), before any parsing: not a `200`; neither
/// `Cache-Control` nor `Expires` (no freshness: [`DEFAULTS`] gives none), which most of the
/// app's uncacheable answers have; a `Set-Cookie`; a `Vary`. Asked first by
/// [`PageCache::response_cacheable`], and by the fast path's proxy on an answer it reads
/// without pingora's session ([`crate::app_answer`]).
pub fn refused_at_once(status: u16, has: impl Fn(&http::HeaderName) -> bool) -> bool {
    status != 200
        || !has(&http::header::CACHE_CONTROL) && !has(&http::header::EXPIRES)
        || has(&http::header::SET_COOKIE)
        || has(&http::header::VARY)
}

/// The most pages held: one per KiB of `max_bytes` (at least 16). The LRU counts body bytes
/// only; each page also keeps its header (under a KiB for the app's pages), so many tiny
/// pages (one post under many query strings) cannot hold much more than twice `max_bytes`.
fn max_pages(max_bytes: usize) -> usize {
    (max_bytes / 1024).max(16)
}

/// A request's path and query as the cache keys it.
fn path_and_query(req: &RequestHeader) -> &str {
    req.uri.path_and_query().map_or("/", |p| p.as_str())
}

/// Whether a request may be answered from the cache or fill it: `GET`/`HEAD`, anonymous (no
/// `Cookie`, no `Authorization`), not an upgrade.
pub fn request_cacheable(req: &RequestHeader) -> bool {
    (req.method == http::Method::GET || req.method == http::Method::HEAD)
        && !req.headers.contains_key(http::header::COOKIE)
        && !req.headers.contains_key(http::header::AUTHORIZATION)
        && !req.headers.contains_key(http::header::UPGRADE)
}

/// Strips the app's purge header from `resp`; true when it asked for a purge with a
/// successful answer.
pub fn take_purge(resp: &mut ResponseHeader) -> bool {
    // Looked up by a prebuilt name first: removing by `&str` parses the name every time, and
    // nearly every answer has no such header.
    static NAME: http::HeaderName = http::HeaderName::from_static(PURGE_HEADER);
    resp.headers.contains_key(&NAME)
        && resp.remove_header(&NAME).is_some()
        && (resp.status.is_success() || resp.status.is_redirection())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cache() -> PageCache {
        PageCache::new(&crate::config::PageCacheConfig::default(), Vec::new()).unwrap()
    }

    fn resp(status: u16, headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        r.insert_header("Content-Length", "5").unwrap();
        for (k, v) in headers {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    #[test]
    fn only_what_the_app_allows_a_shared_cache_to_keep() {
        let c = cache();
        let ok = |h: &[(&'static str, &str)]| c.response_cacheable(&resp(200, h)).is_cacheable();
        assert!(ok(&[("Cache-Control", "public, max-age=0, s-maxage=60")]));
        assert!(ok(&[("Cache-Control", "max-age=60")]));
        assert!(!ok(&[]), "no Cache-Control: no heuristic freshness");
        assert!(!ok(&[("Cache-Control", "no-store")]));
        assert!(!ok(&[("Cache-Control", "private, max-age=60")]));
        assert!(!ok(&[("Cache-Control", "no-cache, max-age=60")]));
        assert!(!ok(&[("Cache-Control", "max-age=0")]));
        assert!(!ok(&[
            ("Cache-Control", "max-age=60"),
            ("Set-Cookie", "a=b")
        ]));
        assert!(!ok(&[
            ("Cache-Control", "max-age=60"),
            ("Vary", "Accept-Language")
        ]));
        let not_ok = resp(404, &[("Cache-Control", "max-age=60")]);
        assert!(!c.response_cacheable(&not_ok).is_cacheable());
        let mut streamed = resp(200, &[("Cache-Control", "max-age=60")]);
        streamed.remove_header("Content-Length");
        assert!(!c.response_cacheable(&streamed).is_cacheable());
        let mut large = resp(200, &[("Cache-Control", "max-age=60")]);
        large
            .insert_header("Content-Length", (2 * 1024 * 1024).to_string())
            .unwrap();
        assert!(!c.response_cacheable(&large).is_cacheable());
    }

    #[test]
    fn expires_alone_gives_freshness_and_a_past_one_none() {
        let c = cache();
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        let ok = |h: &[(&'static str, &str)]| c.response_cacheable(&resp(200, h)).is_cacheable();
        assert!(ok(&[("Expires", &in_a_minute)]));
        assert!(!ok(&[("Expires", &past)]));
        assert!(!ok(&[("Expires", "not a date")]));
        assert!(!ok(&[
            ("Cache-Control", "no-store"),
            ("Expires", &in_a_minute)
        ]));
    }

    #[test]
    fn the_memory_of_uncacheable_urls_holds_for_its_ttl_and_forgets() {
        let c = cache();
        let req = RequestHeader::build("GET", b"/api/x", None).unwrap();
        let url = c.url("foobar.com", &req);
        let t0 = c.epoch + Duration::from_secs(100);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!c.remembers_uncacheable(url, t0));
        c.remember_uncacheable(url, t0);
        assert!(c.remembers_uncacheable(url, t0));
        assert!(c.remembers_uncacheable(url, at(u64::from(UNCACHEABLE_TTL_SECS) - 1)));
        assert!(!c.remembers_uncacheable(url, at(u64::from(UNCACHEABLE_TTL_SECS))));
        // Another host, path or query is another URL.
        let other = RequestHeader::build("GET", b"/api/x?y", None).unwrap();
        assert!(!c.remembers_uncacheable(c.url("foobar.com", &other), t0));
        assert!(!c.remembers_uncacheable(c.url("www.foobar.com", &req), t0));
        // Remembered again later: the expiry moves; forgotten when its answer may be kept.
        c.remember_uncacheable(url, at(5));
        assert!(c.remembers_uncacheable(url, at(u64::from(UNCACHEABLE_TTL_SECS) + 4)));
        c.forget_uncacheable(url);
        assert!(!c.remembers_uncacheable(url, at(5)));
        // A purge forgets every URL.
        c.remember_uncacheable(url, t0);
        c.purge();
        assert_ne!(c.url("foobar.com", &req), url);
        assert!(!c.remembers_uncacheable(c.url("foobar.com", &req), t0));
    }

    #[test]
    fn urls_sharing_slots_are_remembered_two_at_a_time() {
        let c = cache();
        let t0 = c.epoch + Duration::from_secs(1);
        // Three URLs whose hashes fall on the same pair of slots.
        let first = Url(7 << 32 | 12);
        let second = Url(9 << 32 | 12);
        let third = Url(11 << 32 | 12);
        c.remember_uncacheable(first, t0);
        c.remember_uncacheable(second, t0 + Duration::from_secs(1));
        assert!(c.remembers_uncacheable(first, t0));
        assert!(c.remembers_uncacheable(second, t0));
        assert!(!c.remembers_uncacheable(third, t0));
        // A third one takes the slot that expires first.
        c.remember_uncacheable(third, t0 + Duration::from_secs(2));
        assert!(!c.remembers_uncacheable(first, t0 + Duration::from_secs(2)));
        assert!(c.remembers_uncacheable(second, t0 + Duration::from_secs(2)));
        assert!(c.remembers_uncacheable(third, t0 + Duration::from_secs(2)));
        // Forgetting one leaves the other.
        c.forget_uncacheable(third);
        assert!(!c.remembers_uncacheable(third, t0 + Duration::from_secs(2)));
        assert!(c.remembers_uncacheable(second, t0 + Duration::from_secs(2)));
        // The memory is bounded: the pair of slots is all the three ever took.
        let taken = c
            .uncacheable
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != 0)
            .count();
        assert_eq!(taken, 1);
    }

    #[test]
    fn only_anonymous_reads() {
        let req = |method: &str, headers: &[(&'static str, &str)]| {
            let mut r = RequestHeader::build(method, b"/", None).unwrap();
            for (k, v) in headers {
                r.insert_header(*k, *v).unwrap();
            }
            request_cacheable(&r)
        };
        assert!(req("GET", &[]));
        assert!(req("HEAD", &[("Accept", "text/html")]));
        assert!(!req("POST", &[]));
        assert!(!req("GET", &[("Cookie", "onebox_session=abc")]));
        assert!(!req("GET", &[("Authorization", "Basic eDp5")]));
        assert!(!req("GET", &[("Upgrade", "websocket")]));
    }

    #[test]
    fn a_purge_changes_every_key_and_the_header_never_passes() {
        let c = cache();
        let req = RequestHeader::build("GET", b"/posts/1?x=1", None).unwrap();
        let before = c.key("foobar.com", &req);
        assert_eq!(
            before.primary_key_str(),
            Some("0\nfoobar.com\n/posts/1?x=1")
        );
        let mut r = resp(303, &[(PURGE_HEADER, "all")]);
        assert!(take_purge(&mut r));
        assert!(r.headers.get(PURGE_HEADER).is_none());
        c.purge();
        assert_ne!(
            c.key("foobar.com", &req).primary_key_str(),
            before.primary_key_str()
        );
        let mut failed = resp(403, &[(PURGE_HEADER, "all")]);
        assert!(!take_purge(&mut failed));
        assert!(failed.headers.get(PURGE_HEADER).is_none());
    }
}
