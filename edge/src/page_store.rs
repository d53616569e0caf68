//! The page cache's storage: pingora-cache's [`Storage`] kept in memory for the hit path.
//!
//! pingora's own in-memory storage (`MemCache`) is documented as being for tests: it keeps each
//! entry's header serialized (zstd-compressed), so every hit decompresses and parses it, and it
//! copies the body into a new buffer for every hit. Here an entry keeps its header parsed and its
//! body as one [`Bytes`]: a hit clones the header (a few small allocations) and hands out the
//! body (or a range of it) by reference count, without copying it.
//!
//! One map owns the entries, keyed by the cache key's 16-byte hash. The byte bound is the
//! eviction manager's ([`crate::page_cache`] gives pingora's LRU `max_bytes`): each entry's
//! weight is its body's length, and the LRU calls [`Storage::purge`] here for the least
//! recently used ones when the total passes it. A fill is stored only once its whole body has
//! arrived (no partial reads: requests waiting on the cache lock read the finished entry), and
//! at most `max_object_bytes` of it are ever buffered — pingora stops a fill past that size, and
//! the miss handler refuses more itself as well.
//!
//! Each entry also holds the header a fresh hit is answered with, built once when it is stored:
//! the stored header as pingora's hit path sends it (`Age`, HTTP/1.1), with the edge's
//! `X-Cache: HIT`, its security headers and slots for the per-response headers already in it
//! ([`crate::file_cache::PER_RESPONSE`]), so that [`PageStore::fresh_hit`] answers from here
//! without pingora's cache ([`crate::page_cache::PageCache::route`]).

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::cache::eviction::{CacheEntryKey, EvictionManager, simple_lru};
use pingora::cache::key::CompactCacheKey;
use pingora::cache::key::{CacheHashKey, CacheKey, HashBinary};
use pingora::cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheMeta, Storage};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

/// One stored page: its header and freshness, parsed, and its whole body.
struct Entry {
    header: ResponseHeader,
    fresh_until: SystemTime,
    /// When it was stored or last revalidated: the reference point of its age.
    updated: SystemTime,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    body: Bytes,
    /// The header of a fresh hit answered by [`PageStore::fresh_hit`] (see the module doc); none
    /// for a header pingora's hit path would change otherwise (no `Content-Length`, not a 200).
    hit_header: Option<ResponseHeader>,
}

impl Entry {
    fn new(meta: &CacheMeta, body: Bytes, extra: &[(&'static str, &'static str)]) -> Entry {
        Entry {
            header: meta.response_header().clone(),
            hit_header: hit_header(meta.response_header(), extra),
            fresh_until: meta.fresh_until(),
            updated: meta.epoch(),
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            body,
        }
    }

    /// The metadata pingora's cache works with, rebuilt from the parsed fields.
    fn meta(&self) -> CacheMeta {
        CacheMeta::new(
            self.fresh_until,
            self.updated,
            self.stale_while_revalidate_sec,
            self.stale_if_error_sec,
            self.header.clone(),
        )
    }
}

/// The header a fresh hit on a page stored with `header` is answered with, but for the values
/// of the per-response headers: what pingora's hit path makes of it (`cache_hit_header`: an
/// `Age`, HTTP/1.1; `range_header_filter`: `Accept-Ranges: bytes`) and the edge's
/// `response_filter` adds (`X-Cache: HIT`), completed by [`crate::file_cache::finish_prebuilt`]
/// (the `extra` security headers the page lacks, the per-response slots). None when pingora
/// would add `Transfer-Encoding` or not `Accept-Ranges` (no `Content-Length`, or one that is not
/// a number) or the page is not a 200: such a page (never stored today) is answered by pingora.
fn hit_header(
    header: &ResponseHeader,
    extra: &[(&'static str, &'static str)],
) -> Option<ResponseHeader> {
    let length = header.headers.get(http::header::CONTENT_LENGTH)?;
    if header.status != http::StatusCode::OK
        || std::str::from_utf8(length.as_bytes())
            .ok()?
            .parse::<usize>()
            .is_err()
    {
        return None;
    }
    let mut hit = header.clone();
    hit.set_version(http::Version::HTTP_11);
    hit.insert_header(http::header::AGE, 0u64).ok()?;
    // pingora's range filter, for a 200 with a length and no `Range` asked.
    hit.insert_header(http::header::ACCEPT_RANGES, "bytes")
        .ok()?;
    hit.insert_header("X-Cache", "HIT").ok()?;
    crate::file_cache::finish_prebuilt(&mut hit, extra)?;
    Some(hit)
}

/// A fresh hit answered from the store: its header (the per-response values still to fill in
/// but `Age`) and body.
pub struct FreshHit {
    /// The prebuilt header with its `Age`.
    pub header: Box<ResponseHeader>,
    /// The whole body.
    pub body: Bytes,
}

/// The pages in memory (see the module doc). Lives as long as the process: pingora's cache
/// takes `'static` storage.
#[derive(Default)]
pub struct PageStore {
    entries: RwLock<HashMap<HashBinary, Arc<Entry>>>,
    /// The most body bytes one fill may buffer.
    max_object_bytes: usize,
    /// Headers the edge adds to every answer unless it has its own (its security headers),
    /// built into each entry's hit header.
    extra: Vec<(&'static str, &'static str)>,
}

impl PageStore {
    /// An empty store whose fills hold at most `max_object_bytes` of body each, and whose hit
    /// headers carry the `extra` headers (unless a page has its own).
    pub fn new(max_object_bytes: usize, extra: Vec<(&'static str, &'static str)>) -> PageStore {
        PageStore {
            entries: RwLock::new(HashMap::new()),
            max_object_bytes,
            extra,
        }
    }

    /// The page stored under `key` when it is fresh at `now` (what pingora's hit path calls
    /// fresh: `fresh_until >= now`) and has a prebuilt hit header: that header with its `Age`
    /// (whole seconds since the page was stored or revalidated, as `CacheMeta::age`) and the
    /// body. Also touches the page in `eviction`, as pingora does on a hit, with the same entry
    /// key and weight. The same map as every fill, update and purge: a page replaced or dropped
    /// is seen by the next call.
    pub fn fresh_hit(
        &self,
        key: HashBinary,
        now: SystemTime,
        eviction: &simple_lru::Manager,
    ) -> Option<FreshHit> {
        let entry = self.read().get(&key).cloned()?;
        if entry.fresh_until < now {
            return None;
        }
        let mut header = Box::new(entry.hit_header.clone()?);
        let age = now.duration_since(entry.updated).unwrap_or_default();
        header
            .insert_header(http::header::AGE, age.as_secs())
            .ok()?;
        let compact = CacheEntryKey::key_only(CompactCacheKey {
            primary: key,
            variance: None,
            user_tag: "".into(),
        });
        EvictionManager::access(eviction, &compact, entry.body.len(), entry.fresh_until);
        Some(FreshHit {
            header,
            body: entry.body.clone(),
        })
    }

    /// How many pages are stored.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no page is stored.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    // No code panics while holding the lock; a poisoned one is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<HashBinary, Arc<Entry>>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<HashBinary, Arc<Entry>>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A hit: the entry's body, or the range of it that pingora seeked to.
struct Hit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return Error::e_explain(
                ErrorType::InternalError,
                format!(
                    "seek start {start} past the body's {} bytes",
                    self.body.len()
                ),
            );
        }
        self.start = start;
        self.end = end.map_or(self.body.len(), |e| e.min(self.body.len()));
        if self.end < self.start {
            self.end = self.start;
        }
        // A seek starts a new read (one handler serves each part of a multipart range).
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// A fill: the body so far, stored with the header when it is complete.
struct Fill {
    store: &'static PageStore,
    key: HashBinary,
    meta: Entry,
    body: BytesMut,
}

#[async_trait]
impl HandleMiss for Fill {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.body.len() + data.len() > self.store.max_object_bytes {
            return Error::e_explain(
                ErrorType::InternalError,
                "page body over page_cache.max_object_bytes",
            );
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let Fill {
            store,
            key,
            mut meta,
            body,
        } = *self;
        let size = body.len();
        meta.body = body.freeze();
        store.write().insert(key, Arc::new(meta));
        Ok(MissFinishType::Created(size))
    }
}

#[async_trait]
impl Storage for PageStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(entry) = self.read().get(&key.combined_bin()).cloned() else {
            return Ok(None);
        };
        let hit = Hit {
            body: entry.body.clone(),
            start: 0,
            end: entry.body.len(),
            done: false,
        };
        Ok(Some((entry.meta(), Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Fill {
            store: self,
            key: key.combined_bin(),
            meta: Entry::new(meta, Bytes::new(), &self.extra),
            body: BytesMut::new(),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        // Entries carry no id beyond their key (HandleHit/HandleMiss::entry_id are None).
        if matches!(target, PurgeTarget::Exact(e) if e.entry_id().is_some()) {
            return Ok(PurgeOutcome::NotFound);
        }
        let removed = self.write().remove(&target.key().combined_bin()).is_some();
        Ok(if removed {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let mut entries = self.write();
        let Some(entry) = entries.get_mut(&key.combined_bin()) else {
            return Ok(false);
        };
        *entry = Arc::new(Entry::new(meta, entry.body.clone(), &self.extra));
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
