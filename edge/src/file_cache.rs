//! The small-file cache of the static path: files of at most [`MAX_FILE`] bytes kept in memory
//! with their validators and prebuilt `200` and `304` headers, so that a request for one costs a single
//! `statx` instead of the resolution, sibling probes, `open`, `fstat`, `pread` and `close` of
//! [`crate::static_files`].
//!
//! Entries are keyed by the raw request path and remember the file [`lookup`] approved (only
//! one reached without a symlink below the web root: a symlinked file is served the full way), its
//! precompressed `.br`/`.gz` siblings (present, with their bodies, or absent), and for each the
//! path under the *configured* web root (the symlink a publish swaps) that names it. A hit
//! re-stats that path and serves the entry only when it still names the very same file: same
//! device, inode, size, modification and change time (nanoseconds). So:
//!
//! - a publish or rollback (the web-root symlink now names another release), a file replaced by
//!   a rename (a new inode), written in place (a new change time) or deleted (`ENOENT`) is a
//!   miss, and the request takes the full path at once;
//! - a component swapped for a symlink leaving the root makes the path name another file (a
//!   miss, and [`lookup`] refuses it); the one exception is a hard link of the very file that
//!   was approved, whose bytes are the approved ones;
//! - a path [`lookup`] refuses for its text (dotfiles, `..`, encoded slashes) is never inserted,
//!   and the key is the raw path, so it is never answered from here either.
//!
//! A sibling is only probed (one more `statx` each) for a client that accepts its coding: one
//! remembered absent that now exists is a miss, and the entry is rebuilt with it. A client that
//! accepts neither coding gets the identity body and the `Vary` of the last rebuild.
//!
//! Memory is bounded: [`MAX_FILE`] per representation and [`MAX_TOTAL`] in all (entries are
//! dropped to make room), each entry counted with its key and a fixed overhead.
//!
//! [`lookup`]: crate::static_files::lookup

use crate::static_files::{self, CODINGS, Representation, Source, with_suffix};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The largest file (or sibling) kept in memory, in bytes.
pub const MAX_FILE: u64 = 64 * 1024;

/// The most bytes all entries together may take.
pub const MAX_TOTAL: usize = 32 * 1024 * 1024;

/// The headers of every response whose values are only known when it is sent, with the
/// placeholders a prebuilt header holds for them: the request id (set by the edge's
/// `decorate`), and `Date` and `Connection`, which pingora sets on every HTTP/1 response (`Date`
/// also on HTTP/2, where it removes `Connection`).
pub const PER_RESPONSE: [(&str, &str); 3] = [
    ("X-Request-Id", "-"),
    ("Date", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("Connection", "keep-alive"),
];

/// Completes a header prebuilt for answers sent from memory (the file cache's, the page cache's
/// fresh hits): each of `extra` (the edge's security headers) the header does not have yet, and
/// slots for the headers every response gets (see [`PER_RESPONSE`]), so that filling them in
/// replaces a value rather than growing the header's maps, which a clone holds without spare
/// room.
pub fn finish_prebuilt(
    header: &mut ResponseHeader,
    extra: &[(&'static str, &'static str)],
) -> Option<()> {
    for (name, value) in extra {
        if !header.headers.contains_key(*name) {
            header.insert_header(*name, *value).ok()?;
        }
    }
    for (name, value) in PER_RESPONSE {
        header.insert_header(name, value).ok()?;
    }
    Some(())
}

/// Bytes counted per entry on top of its bodies and key (paths, headers, the map's slot).
const ENTRY_OVERHEAD: usize = 2048;

/// What names one version of one file: a file replaced, rewritten or touched differs in one of
/// these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether `path` (followed, one `statx`) still names this version of the file.
    fn current(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && Identity::of(&m) == *self)
    }
}

/// One representation held in memory: a file or a precompressed sibling.
#[derive(Debug)]
pub struct Cached {
    /// The path under the configured web root that names it (what a hit re-stats).
    stat_path: PathBuf,
    /// The version that was read.
    id: Identity,
    /// The whole content.
    pub body: Bytes,
    /// Its modification time.
    pub modified: SystemTime,
    /// `Content-Encoding`, for a sibling.
    pub encoding: Option<&'static str>,
    /// The `ETag` value.
    pub etag: String,
    /// The `Last-Modified` value.
    pub last_modified: String,
    /// The `Content-Type` value (of the file, also for its siblings).
    pub content_type: String,
    /// The complete `200` header of a `GET` for all of it.
    pub ok_header: ResponseHeader,
    /// The complete `304` header of a conditional request it satisfies.
    pub not_modified: ResponseHeader,
    /// `ok_header` as an HTTP/1.1 response sends it, status line included, up to the
    /// per-response headers ([`PER_RESPONSE`]), for [`crate::fast_path`].
    pub ok_wire: Option<Bytes>,
    /// `not_modified` the same way.
    pub not_modified_wire: Option<Bytes>,
}

/// A sibling as the entry remembers it.
#[derive(Debug)]
enum Sibling {
    /// There was none (the path it would have is kept, to probe).
    Absent(PathBuf),
    /// There is one, in memory.
    Present(Arc<Cached>),
}

/// A cached file with its siblings.
#[derive(Debug)]
struct Entry {
    file: Arc<Cached>,
    siblings: [Sibling; 2],
    /// Whether any sibling exists (`Vary: Accept-Encoding`).
    varies: bool,
    /// Bytes counted against [`MAX_TOTAL`].
    size: usize,
}

/// The cache: raw request path → entry.
#[derive(Debug)]
pub struct FileCache {
    /// The web root as configured (a publish swaps the symlink it may be).
    configured: PathBuf,
    /// Headers added to every prebuilt `200` (the edge's security headers).
    extra: Vec<(&'static str, &'static str)>,
    map: Mutex<Map>,
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<Box<str>, Arc<Entry>>,
    total: usize,
}

impl FileCache {
    /// A cache for the web root configured as `configured` (made absolute here, not
    /// resolved); `extra` headers go into every prebuilt `200`.
    pub fn new(configured: &Path, extra: Vec<(&'static str, &'static str)>) -> FileCache {
        FileCache {
            configured: std::path::absolute(configured).unwrap_or_else(|_| configured.into()),
            extra,
            map: Mutex::new(Map::default()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, Map> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The representation of the file at `raw` for a client sending `accept_encoding`, if the
    /// cache holds it and it is still current (see the module's rules); `None` sends the request
    /// the full way, then to [`FileCache::fill`].
    pub fn get(&self, raw: &str, accept_encoding: &str) -> Option<Representation> {
        let entry = self.map().entries.get(raw).cloned()?;
        let picked = self.pick(&entry, accept_encoding);
        if picked.is_none() {
            let mut map = self.map();
            if let Some(old) = map.entries.get(raw)
                && Arc::ptr_eq(old, &entry)
            {
                map.total -= entry.size;
                map.entries.remove(raw);
            }
        }
        picked
    }

    /// Revalidates `entry` for this request and picks its representation.
    fn pick(&self, entry: &Entry, accept_encoding: &str) -> Option<Representation> {
        if !entry.file.id.current(&entry.file.stat_path) {
            return None;
        }
        for (sibling, (_, coding)) in entry.siblings.iter().zip(CODINGS) {
            if !static_files::accepts(accept_encoding, coding) {
                continue;
            }
            match sibling {
                Sibling::Present(cached) if cached.id.current(&cached.stat_path) => {
                    return Some(representation(cached, entry.varies));
                }
                // Changed or gone: rebuild.
                Sibling::Present(_) => return None,
                Sibling::Absent(path) => {
                    if std::fs::metadata(path).is_ok() {
                        return None;
                    }
                }
            }
        }
        Some(representation(&entry.file, entry.varies))
    }

    /// After [`static_files::lookup`] resolved `raw` to `file` under the canonical `root`:
    /// reads the file and its siblings into a new entry if they are small and stable, and
    /// returns the representation for this request; `None` when it cannot be cached (too
    /// large, changing, a sibling that is not a plain file under the root), and the caller
    /// serves it the full way.
    pub fn fill(
        &self,
        raw: &str,
        root: &Path,
        file: &Path,
        accept_encoding: &str,
    ) -> Option<Representation> {
        // A large file costs one more `statx` here, not the probes below.
        if std::fs::symlink_metadata(file).map_or(true, |m| m.len() > MAX_FILE) {
            return None;
        }
        let stat_path = self.stat_path(raw)?;
        // Only a file reached without symlinks below the root: then the path under the
        // configured root and the resolved one name the same directory entries, siblings too.
        if root.join(stat_path.strip_prefix(&self.configured).ok()?) != file {
            return None;
        }
        let content_type = static_files::content_type(file);
        let mut real = [None, None];
        for (found, (suffix, _)) in real.iter_mut().zip(CODINGS) {
            *found = static_files::sibling(root, file, suffix);
            // Something that exists but is not a servable sibling: not cached.
            if found.is_none() && std::fs::symlink_metadata(with_suffix(&stat_path, suffix)).is_ok()
            {
                return None;
            }
        }
        let varies = real.iter().any(Option::is_some);
        let load = |path: &Path, stat_path: PathBuf, encoding| -> Option<Arc<Cached>> {
            let mut cached = read(path, stat_path, encoding, content_type.clone())?;
            cached.ok_header = self.ok_header(&cached, varies)?;
            cached.not_modified = self.not_modified(&cached, varies)?;
            cached.ok_wire = h1_wire(&cached.ok_header);
            cached.not_modified_wire = h1_wire(&cached.not_modified);
            Some(Arc::new(cached))
        };
        let main = load(file, stat_path.clone(), None)?;
        let mut siblings = Vec::with_capacity(2);
        for (found, (suffix, coding)) in real.iter().zip(CODINGS) {
            let sibling_stat = with_suffix(&stat_path, suffix);
            siblings.push(match found {
                Some(path) => Sibling::Present(load(path, sibling_stat, Some(coding))?),
                None => Sibling::Absent(sibling_stat),
            });
        }
        let siblings: [Sibling; 2] = siblings.try_into().ok()?;
        let size = ENTRY_OVERHEAD
            + raw.len()
            + main.body.len()
            + siblings
                .iter()
                .map(|s| match s {
                    Sibling::Present(c) => c.body.len() + ENTRY_OVERHEAD,
                    Sibling::Absent(_) => 0,
                })
                .sum::<usize>();
        let entry = Arc::new(Entry {
            file: main,
            siblings,
            varies,
            size,
        });
        let picked = self.pick(&entry, accept_encoding);
        if picked.is_some() && size <= MAX_TOTAL {
            let mut map = self.map();
            if let Some(old) = map.entries.remove(raw) {
                map.total -= old.size;
            }
            while map.total + size > MAX_TOTAL {
                let Some(key) = map.entries.keys().next().cloned() else {
                    break;
                };
                if let Some(old) = map.entries.remove(&key) {
                    map.total -= old.size;
                }
            }
            map.total += size;
            map.entries.insert(raw.into(), entry);
        }
        picked
    }

    /// The path under the configured root that `raw` names (with `index.html` for a
    /// directory path), as [`static_files::lookup`] walks it.
    fn stat_path(&self, raw: &str) -> Option<PathBuf> {
        let path = raw.split('?').next().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .ok()?;
        let mut out = self.configured.clone();
        for seg in decoded.split('/').filter(|s| !s.is_empty()) {
            out.push(seg);
        }
        if decoded.ends_with('/') {
            out.push("index.html");
        }
        Some(out)
    }

    /// The prebuilt `200` header of `cached`.
    fn ok_header(&self, cached: &Cached, varies: bool) -> Option<ResponseHeader> {
        let mut header = static_files::ok_header(
            &cached.content_type,
            cached.body.len() as u64,
            &cached.etag,
            &cached.last_modified,
            cached.encoding,
            varies,
        )
        .ok()?;
        self.finish(&mut header)?;
        Some(header)
    }

    /// The prebuilt `304` header of `cached`.
    fn not_modified(&self, cached: &Cached, varies: bool) -> Option<ResponseHeader> {
        let mut header =
            static_files::not_modified_header(&cached.etag, &cached.last_modified, varies).ok()?;
        self.finish(&mut header)?;
        Some(header)
    }

    /// Completes a prebuilt header ([`finish_prebuilt`] with the edge's extra headers).
    fn finish(&self, header: &mut ResponseHeader) -> Option<()> {
        finish_prebuilt(header, &self.extra)
    }

    /// How many entries the cache holds and how many bytes they count.
    pub fn usage(&self) -> (usize, usize) {
        let map = self.map();
        (map.entries.len(), map.total)
    }
}

/// The representation of a cached body for one request.
fn representation(cached: &Arc<Cached>, varies: bool) -> Representation {
    Representation {
        source: Source::Cached(cached.clone()),
        encoding: cached.encoding,
        len: cached.body.len() as u64,
        modified: cached.modified,
        varies,
    }
}

/// Reads the file at `path` (resolved, inside the root) whole if it is at most [`MAX_FILE`]
/// bytes, did not change while read, and `stat_path` names that same file now.
fn read(
    path: &Path,
    stat_path: PathBuf,
    encoding: Option<&'static str>,
    content_type: String,
) -> Option<Cached> {
    use std::os::unix::fs::FileExt;
    let rep = Representation::open(path, content_type, encoding, false).ok()?;
    let Source::File { file, content_type } = &rep.source else {
        return None;
    };
    let before = Identity::of(&file.metadata().ok()?);
    if before.size > MAX_FILE {
        return None;
    }
    let mut body = vec![0u8; before.size as usize];
    let mut done = 0;
    while done < body.len() {
        match file.read_at(&mut body[done..], done as u64) {
            Ok(0) | Err(_) => return None,
            Ok(n) => done += n,
        }
    }
    let after = Identity::of(&file.metadata().ok()?);
    if before != after || !after.current(&stat_path) {
        return None;
    }
    Some(Cached {
        stat_path,
        id: after,
        etag: rep.etag(),
        last_modified: rep.last_modified(),
        modified: rep.modified,
        body: Bytes::from(body),
        encoding,
        content_type: content_type.clone(),
        ok_header: ResponseHeader::build(200, None).ok()?,
        not_modified: ResponseHeader::build(304, None).ok()?,
        ok_wire: None,
        not_modified_wire: None,
    })
}

/// `header`'s status line and header lines as pingora's HTTP/1.1 writer sends them (its
/// `http_resp_header_to_buf`, without the blank line that ends them), appended to `out`.
pub fn h1_head(header: &ResponseHeader, out: &mut impl bytes::BufMut) {
    status_line(header.version, header, out);
    header.header_to_h1_wire(out);
}

/// `header`'s status line as pingora's HTTP/1 writer sends it with `version` (the header's
/// own: an HTTP/1.0 app's answer stays one).
pub fn status_line(version: http::Version, header: &ResponseHeader, out: &mut impl bytes::BufMut) {
    out.put_slice(match version {
        http::Version::HTTP_09 => b"HTTP/0.9 ",
        http::Version::HTTP_10 => b"HTTP/1.0 ",
        _ => b"HTTP/1.1 ",
    });
    out.put_slice(header.status.as_str().as_bytes());
    out.put_slice(b" ");
    out.put_slice(header.get_reason_phrase().unwrap_or_default().as_bytes());
    out.put_slice(b"\r\n");
}

/// A prebuilt header as pingora's HTTP/1.1 writer sends it (status line, then each header in
/// order with its case), without the per-response headers at its end ([`PER_RESPONSE`]) and
/// the blank line: what [`crate::fast_path`] sends before its own values of those. `None` if
/// the header does not end with their placeholders.
fn h1_wire(header: &ResponseHeader) -> Option<Bytes> {
    let mut wire = bytes::BytesMut::with_capacity(512);
    h1_head(header, &mut wire);
    let mut suffix = Vec::new();
    for (name, value) in PER_RESPONSE {
        suffix.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let keep = wire.len().checked_sub(suffix.len())?;
    if wire[keep..] != suffix[..] || header.version != http::Version::HTTP_11 {
        return None;
    }
    wire.truncate(keep);
    Some(wire.freeze())
}
