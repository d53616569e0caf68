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

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
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
}

impl Entry {
    fn new(meta: &CacheMeta, body: Bytes) -> Entry {
        Entry {
            header: meta.response_header().clone(),
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

/// The pages in memory (see the module doc). Lives as long as the process: pingora's cache
/// takes `'static` storage.
#[derive(Default)]
pub struct PageStore {
    entries: RwLock<HashMap<HashBinary, Arc<Entry>>>,
    /// The most body bytes one fill may buffer.
    max_object_bytes: usize,
}

impl PageStore {
    /// An empty store whose fills hold at most `max_object_bytes` of body each.
    pub fn new(max_object_bytes: usize) -> PageStore {
        PageStore {
            entries: RwLock::new(HashMap::new()),
            max_object_bytes,
        }
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
            meta: Entry::new(meta, Bytes::new()),
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
        *entry = Arc::new(Entry::new(meta, entry.body.clone()));
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
