//! Static files from the web root: safe path resolution, conditional requests, ranges,
//! precompressed siblings, streaming.
//!
//! Three steps, as Caddy's file server takes them: [`lookup`] maps the path to a file,
//! [`representation`] picks the file or a precompressed sibling and opens it, and
//! [`serve_content`] owns every HTTP rule of the answer (preconditions, ranges, headers).
//!
//! A request path maps to a file only when every check passes: the percent-decoded path has no
//! `..` or `.`-prefixed segment (no dotfiles), no backslash, no NUL, no encoded slash, and the
//! canonical path (symlinks resolved) stays inside the canonical web root. Anything else is "no
//! static file here" and the request goes to the app.

use crate::file_cache::Cached;
use bytes::Bytes;
use pingora::Result;
use pingora::http::{RequestHeader, ResponseHeader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What a request path resolves to under the web root.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A regular file (for a directory path, its `index.html`).
    File(PathBuf),
    /// A directory asked for without its trailing slash: redirect to `path/`.
    AddSlash,
    /// No static file: the request belongs to the app (or gets a 404 if there is none).
    Missing,
    /// The path is malformed or tries to leave the root: refused with 400/404, never proxied.
    Refused,
}

/// The decoded path of the raw request path `raw`, or `None` for one [`lookup`] refuses for its
/// text: not absolute, encoded slashes, backslashes or NULs, or a segment starting with a dot
/// (`..`, `.`, and dotfiles: `.git`, `.env`, `.htpasswd` …).
fn decoded_path(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let path = raw.split('?').next().unwrap_or("");
    if !path.starts_with('/') {
        return None;
    }
    // Encoded slashes and backslashes never name a file here (either case of the hex digit;
    // looked for in place: a lowercased copy of every request's path cost an allocation).
    if path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                [w[1], w[2].to_ascii_lowercase()],
                [b'2', b'f'] | [b'5', b'c'] | [b'0', b'0']
            )
    }) {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    if decoded.contains('\\') || decoded.contains('\0') {
        return None;
    }
    if decoded.split('/').any(|seg| seg.starts_with('.')) {
        return None;
    }
    Some(decoded)
}

/// Whether the first segment of the raw request path `raw` names nothing in the web root as
/// configured (`configured`: the symlink a publish swaps, followed by the kernel as it is now):
/// then [`lookup`] in the release it names would answer [`Lookup::Missing`] at its first step,
/// and the request goes to the app, known with one `lstat` and without resolving the root
/// ([`crate::web_root::WebRoot::current`]'s `readlink`). For `/` (no segment), the segment
/// [`lookup`] looks for is the root's `index.html`: the app's home page is known the same way.
/// `false` (decide with [`lookup`]) for a path it refuses, for an empty one, and when the segment
/// exists or cannot be checked.
pub fn first_segment_missing(configured: &Path, raw: &str) -> bool {
    let Some(decoded) = decoded_path(raw) else {
        return false;
    };
    let first = match decoded.split('/').find(|s| !s.is_empty()) {
        Some(first) => first,
        None if decoded.ends_with('/') => "index.html",
        None => return false,
    };
    // The path made on the stack (a joined `PathBuf` cost an allocation a request), or joined
    // when longer.
    let (root, name) = (configured.as_os_str().as_bytes(), first.as_bytes());
    let mut joined = [0u8; 256];
    let len = root.len() + 1 + name.len();
    let status = if len <= joined.len() {
        joined[..root.len()].copy_from_slice(root);
        joined[root.len()] = b'/';
        joined[root.len() + 1..len].copy_from_slice(name);
        std::fs::symlink_metadata(Path::new(std::ffi::OsStr::from_bytes(&joined[..len])))
    } else {
        std::fs::symlink_metadata(configured.join(first))
    };
    matches!(status, Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Resolves the raw (still percent-encoded) request path `raw` under `root` (canonical).
pub fn lookup(root: &Path, raw: &str) -> Lookup {
    let Some(decoded) = decoded_path(raw) else {
        return Lookup::Refused;
    };
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    let mut real = root.to_path_buf();
    let mut meta = None;
    for seg in segments {
        real.push(seg);
        match step(root, real) {
            Step::Found(path, m) => {
                real = path;
                meta = Some(m);
            }
            Step::Missing => return Lookup::Missing,
            Step::Outside => return Lookup::Refused,
        }
    }
    let is_dir = meta.as_ref().is_none_or(std::fs::Metadata::is_dir);
    if is_dir {
        if !decoded.ends_with('/') {
            return Lookup::AddSlash;
        }
        return match step(root, real.join("index.html")) {
            Step::Found(index, m) if m.is_file() => Lookup::File(index),
            _ => Lookup::Missing,
        };
    }
    if meta.is_some_and(|m| m.is_file()) {
        Lookup::File(real)
    } else {
        Lookup::Missing
    }
}

/// The outcome of resolving one more path component under the web root.
enum Step {
    /// It exists, at this canonical path (symlinks resolved), with this metadata.
    Found(PathBuf, std::fs::Metadata),
    /// It does not exist (or a parent is not a directory).
    Missing,
    /// It is a symlink that leads outside the web root.
    Outside,
}

/// Resolves `path`, whose parent is canonical and inside the canonical `root`.
///
/// One `lstat` per component: only a symlink is resolved in full (and must stay under the root).
/// This replaced `canonicalize` of the whole path, whose `readlink` on every component of the
/// root's own path was most of the system calls of a static request.
fn step(root: &Path, path: PathBuf) -> Step {
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Step::Missing;
    };
    if !meta.file_type().is_symlink() {
        return Step::Found(path, meta);
    }
    let Ok(target) = std::fs::canonicalize(&path) else {
        return Step::Missing;
    };
    if !target.starts_with(root) {
        return Step::Outside;
    }
    match std::fs::metadata(&target) {
        Ok(meta) => Step::Found(target, meta),
        Err(_) => Step::Missing,
    }
}

/// A representation picked for a request: the file or a precompressed sibling, open, with the
/// length and time of what was opened (so a file replaced meanwhile, as deployments do by
/// renaming, is sent whole with its own validators rather than with the old one's length).
#[derive(Debug)]
pub struct Representation {
    /// Where its bytes come from.
    pub source: Source,
    /// `Content-Encoding` to announce (`br`, `gzip`), if a sibling was picked.
    pub encoding: Option<&'static str>,
    /// Its length in bytes.
    pub len: u64,
    /// Its modification time.
    pub modified: SystemTime,
    /// Whether siblings exist (the response then varies on `Accept-Encoding`).
    pub varies: bool,
}

/// Where the bytes of a [`Representation`] come from.
#[derive(Debug)]
pub enum Source {
    /// An open file, read as it is sent.
    File {
        /// The file.
        file: std::fs::File,
        /// Its `Content-Type` (of the file asked for, also for a sibling).
        content_type: String,
    },
    /// A small file held in memory with its validators and prebuilt header
    /// ([`crate::file_cache`]).
    Cached(Arc<Cached>),
}

/// Whether `accept_encoding` (an `Accept-Encoding` value) accepts `coding` (not with `q=0`).
pub fn accepts(accept_encoding: &str, coding: &str) -> bool {
    accept_encoding.split(',').any(|part| {
        let mut it = part.split(';');
        let name = it.next().unwrap_or("").trim();
        let q_zero = it.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
        });
        name.eq_ignore_ascii_case(coding) && !q_zero
    })
}

/// The `.suffix` sibling of `file` (resolved by [`lookup`] under the canonical `root`) if it is
/// a regular file that stays under the root: its canonical path.
pub fn sibling(root: &Path, file: &Path, suffix: &str) -> Option<PathBuf> {
    match step(root, with_suffix(file, suffix)) {
        Step::Found(real, meta) if meta.is_file() => Some(real),
        _ => None,
    }
}

/// `path` with `.suffix` appended (a precompressed sibling's name).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// The precompressed siblings (file suffix, `Content-Encoding`), in the order they are
/// preferred.
pub const CODINGS: [(&str, &str); 2] = [("br", "br"), ("gz", "gzip")];

/// Picks `file` or its `.br`/`.gz` sibling according to `accept_encoding`.
pub fn representation(
    file: &Path,
    accept_encoding: &str,
    root: &Path,
) -> std::io::Result<Representation> {
    let mut varies = false;
    for (suffix, coding) in CODINGS {
        if let Some(real) = sibling(root, file, suffix) {
            varies = true;
            if accepts(accept_encoding, coding) {
                return Representation::open(&real, content_type(file), Some(coding), true);
            }
        }
    }
    Representation::open(file, content_type(file), None, varies)
}

impl Representation {
    /// Opens `path` (a symlink swapped in since it was resolved is not followed, nor does a
    /// FIFO swapped in block) and takes the length and modification time from the open file;
    /// `content_type` is the one it is sent with.
    pub(crate) fn open(
        path: &Path,
        content_type: String,
        encoding: Option<&'static str>,
        varies: bool,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        Ok(Representation {
            len: meta.len(),
            modified: meta.modified()?,
            source: Source::File { file, content_type },
            encoding,
            varies,
        })
    }

    /// A strong validator from length, modification time and encoding.
    pub fn etag(&self) -> String {
        let nanos = self
            .modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let enc = match self.encoding {
            Some("br") => "-br",
            Some(_) => "-gz",
            None => "",
        };
        format!("\"{:x}-{:x}{enc}\"", self.len, nanos)
    }

    /// `Last-Modified` value.
    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(self.modified)
    }

    /// The modification time in whole seconds, the resolution of HTTP dates.
    fn modified_secs(&self) -> u64 {
        unix_secs(self.modified)
    }
}

/// Seconds since the Unix epoch (0 before it).
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What follows a static response's header.
#[derive(Debug)]
pub enum Body {
    /// Nothing: `HEAD`, `304`, or an empty file.
    Empty,
    /// A short text (the explanation of a `412` or `416`).
    Text(Bytes),
    /// A cached file, or the requested range of it.
    Memory(Bytes),
    /// A byte range of the open file, read in chunks.
    File(Chunks),
}

/// A static response as [`serve_content`] decided it: the header (the edge adds its own
/// headers, such as the request id, before sending it) and the body.
#[derive(Debug)]
pub struct Answer {
    /// The response header.
    pub header: Box<ResponseHeader>,
    /// What to send after it.
    pub body: Body,
}

/// Every HTTP rule of a static response in one place, as Go's `http.ServeContent` (which
/// Caddy's file server hands each file to): the representation `rep` has been picked for `req`
/// (a `GET` or `HEAD`); this decides the status, the headers and the body.
///
/// Preconditions are evaluated in the order of RFC 9110 §13.2.2: `If-Match`, else
/// `If-Unmodified-Since` (`412` when they fail); `If-None-Match`, else `If-Modified-Since`
/// (`304`); then a single `bytes` range of a `GET` (`206`, or `416` outside the file), honoured
/// only while `If-Range`, if sent, still names this representation. Several ranges, other
/// units and `HEAD` get the whole representation (`200`). Every success carries
/// `Content-Type`, `Content-Length`, `ETag`, `Last-Modified`, `Accept-Ranges` and, for a
/// precompressed sibling, `Content-Encoding`; `Vary: Accept-Encoding` whenever siblings exist.
pub fn serve_content(req: &RequestHeader, rep: Representation) -> Result<Answer> {
    let header =
        |name: http::header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
    let head = req.method == http::Method::HEAD;
    // The validators as the cache holds them, or computed.
    let cached = match &rep.source {
        Source::Cached(c) => Some(c.clone()),
        Source::File { .. } => None,
    };
    let computed;
    let (etag, last_modified) = match &cached {
        Some(c) => (c.etag.as_str(), c.last_modified.as_str()),
        None => {
            computed = (rep.etag(), rep.last_modified());
            (computed.0.as_str(), computed.1.as_str())
        }
    };
    let modified = rep.modified_secs();
    let date = |value: &str| httpdate::parse_http_date(value).ok().map(unix_secs);

    let failed = match header(http::header::IF_MATCH) {
        Some(list) => !etag_matches(list, etag, Compare::Strong),
        None => header(http::header::IF_UNMODIFIED_SINCE)
            .and_then(date)
            .is_some_and(|since| modified > since),
    };
    if failed {
        return short(412, "Precondition Failed\n", None, head);
    }
    let unchanged = match header(http::header::IF_NONE_MATCH) {
        Some(list) => etag_matches(list, etag, Compare::Weak),
        None => header(http::header::IF_MODIFIED_SINCE)
            .and_then(date)
            .is_some_and(|since| modified <= since),
    };
    if unchanged {
        let resp = match &cached {
            Some(c) => c.not_modified.clone(),
            None => not_modified_header(etag, last_modified, rep.varies)?,
        };
        return Ok(Answer {
            header: Box::new(resp),
            body: Body::Empty,
        });
    }

    let range_header = header(http::header::RANGE).filter(|_| !head);
    let still_current = match header(http::header::IF_RANGE) {
        None => true,
        Some(v) if v.trim_start().starts_with('"') || v.trim_start().starts_with("W/") => {
            etag_matches(v, etag, Compare::Strong)
        }
        Some(v) => date(v) == Some(modified),
    };
    let wanted = if still_current {
        range(range_header, rep.len)
    } else {
        RangeAnswer::Full
    };
    let (start, len) = match wanted {
        RangeAnswer::Full => (0, rep.len),
        RangeAnswer::Partial(first, last) => (first, last - first + 1),
        RangeAnswer::Unsatisfiable => {
            let unsatisfied = format!("bytes */{}", rep.len);
            return short(416, "Range Not Satisfiable\n", Some(unsatisfied), head);
        }
    };
    let mut resp = match (&cached, &wanted) {
        (Some(c), RangeAnswer::Full) => c.ok_header.clone(),
        _ => {
            let content_type = match &rep.source {
                Source::File { content_type, .. } => content_type,
                Source::Cached(c) => &c.content_type,
            };
            let encoding = rep.encoding;
            ok_header(content_type, len, etag, last_modified, encoding, rep.varies)?
        }
    };
    if let RangeAnswer::Partial(first, last) = wanted {
        resp.set_status(206)?;
        resp.insert_header(
            http::header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{}", rep.len),
        )?;
    }
    let body = if head || len == 0 {
        Body::Empty
    } else {
        match rep.source {
            Source::File { file, .. } => Body::File(Chunks::new(file, start, len)),
            Source::Cached(c) => Body::Memory(c.body.slice(start as usize..(start + len) as usize)),
        }
    };
    Ok(Answer {
        header: Box::new(resp),
        body,
    })
}

/// The header of a successful static response of `len` bytes (before a `206`'s status and
/// `Content-Range`): what [`serve_content`] sends and [`crate::file_cache`] prebuilds.
pub fn ok_header(
    content_type: &str,
    len: u64,
    etag: &str,
    last_modified: &str,
    encoding: Option<&'static str>,
    varies: bool,
) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(12))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, len)?;
    resp.insert_header(http::header::ETAG, etag)?;
    resp.insert_header(http::header::LAST_MODIFIED, last_modified)?;
    resp.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
    if let Some(encoding) = encoding {
        resp.insert_header(http::header::CONTENT_ENCODING, encoding)?;
    }
    if varies {
        resp.insert_header(http::header::VARY, "Accept-Encoding")?;
    }
    Ok(resp)
}

/// The header of a `304 Not Modified`: the validators, and `Vary` when siblings exist; what
/// [`serve_content`] sends and [`crate::file_cache`] prebuilds.
pub fn not_modified_header(
    etag: &str,
    last_modified: &str,
    varies: bool,
) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(304, Some(4))?;
    resp.insert_header(http::header::ETAG, etag)?;
    resp.insert_header(http::header::LAST_MODIFIED, last_modified)?;
    if varies {
        resp.insert_header(http::header::VARY, "Accept-Encoding")?;
    }
    Ok(resp)
}

/// A plain-text error answer of a static request (`412`, `416`).
fn short(
    status: u16,
    text: &'static str,
    content_range: Option<String>,
    head: bool,
) -> Result<Answer> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, text.len())?;
    if let Some(value) = content_range {
        resp.insert_header(http::header::CONTENT_RANGE, value)?;
    }
    Ok(Answer {
        header: Box::new(resp),
        body: if head {
            Body::Empty
        } else {
            Body::Text(Bytes::from_static(text.as_bytes()))
        },
    })
}

/// How two entity tags are compared (RFC 9110 §8.8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Both strong and equal (`If-Match`, `If-Range`).
    Strong,
    /// Equal once any `W/` is dropped (`If-None-Match`).
    Weak,
}

/// Whether the `If-Match`/`If-None-Match`/`If-Range` value `list` (`*` or entity tags
/// separated by commas) names `etag` (a strong tag of this server).
pub fn etag_matches(list: &str, etag: &str, compare: Compare) -> bool {
    let mut rest = list.trim();
    if rest == "*" {
        return true;
    }
    while !rest.is_empty() {
        let weak = rest.starts_with("W/");
        let tag_start = if weak { &rest[2..] } else { rest };
        // An entity tag is a quoted string without escapes: up to the next quote.
        let Some(body) = tag_start.strip_prefix('"') else {
            return false;
        };
        let Some(close) = body.find('"') else {
            return false;
        };
        let tag = &tag_start[..close + 2];
        if tag == etag && (compare == Compare::Weak || !weak) {
            return true;
        }
        rest = body[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    false
}

/// The outcome of a `Range` header against a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// No usable range (absent, multiple ranges, or not `bytes`): send everything (200).
    Full,
    /// One satisfiable range: inclusive start and end (206).
    Partial(u64, u64),
    /// The range lies outside the representation (416).
    Unsatisfiable,
}

/// Parses a single-range `Range` header value.
fn range(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(value) = header else {
        return RangeAnswer::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeAnswer::Full;
        };
        if n == 0 || len == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Partial(len.saturating_sub(n), len - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeAnswer::Full;
    };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return RangeAnswer::Full,
        }
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial(start, end)
}

/// The `Content-Type` for a file name.
pub fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    if mime.type_() == "text"
        || mime.essence_str() == "application/javascript"
        || mime.essence_str() == "application/json"
    {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    }
}

/// Reads a byte range of a file in chunks of at most 64 KiB: the file is never held in memory
/// whole.
///
/// Reads are plain positioned reads on the worker thread, as nginx does without `aio`: web roots
/// live in the page cache, and a hop to a blocking-thread pool for every read (what
/// `tokio::fs` does) cost more than the read itself — it was most of the time of a small file.
#[derive(Debug)]
pub struct Chunks {
    file: std::fs::File,
    offset: u64,
    left: u64,
    /// The largest chunk: [`CHUNK`], or [`H2_CHUNK`] on HTTP/2.
    chunk: u64,
}

/// The largest chunk handed to the connection at once: 64 KiB, four full TLS records.
const CHUNK: u64 = 64 * 1024;

/// The largest chunk on HTTP/2: what four DATA frames of 16 KiB (HTTP/2's default largest
/// frame, the size clients keep) carry when, with their 9-byte heads, they fill four TLS records
/// exactly. The h2 layer writes a chunk's four frames at once (`third_party/h2`'s
/// `COALESCE_LIMIT`); a 64 KiB chunk left 36 bytes past its last full record, which went out
/// alone, in a short record and a write of their own, when the next chunk was not there yet.
pub const H2_CHUNK: u64 = CHUNK - 4 * 9;

impl Chunks {
    /// Reads `len` bytes of `file` from `start`.
    pub fn new(file: std::fs::File, start: u64, len: u64) -> Chunks {
        Chunks {
            file,
            offset: start,
            left: len,
            chunk: CHUNK,
        }
    }

    /// Chunks of at most [`H2_CHUNK`] bytes, for an HTTP/2 stream.
    pub fn for_http2(mut self) -> Chunks {
        self.chunk = H2_CHUNK;
        self
    }

    /// The next chunk and whether it is the last, or `None` when done.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<(Bytes, bool)>> {
        if self.left == 0 {
            return Ok(None);
        }
        let want = self.left.min(self.chunk) as usize;
        // Read into the buffer's uninitialised capacity: zeroing 64 KiB first (vec![0; n]) was
        // as much work as copying it.
        let mut buf = Vec::with_capacity(want);
        let n = rustix::io::pread(
            &self.file,
            rustix::buffer::spare_capacity(&mut buf),
            self.offset,
        )
        .map_err(std::io::Error::from)?;
        // The allocator may give more capacity than asked: bytes past the range are dropped.
        let n = n.min(want);
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        buf.truncate(n);
        self.offset += n as u64;
        self.left -= n as u64;
        Ok(Some((Bytes::from(buf), self.left == 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range(None, 10), RangeAnswer::Full);
        assert_eq!(range(Some("bytes=0-3"), 10), RangeAnswer::Partial(0, 3));
        assert_eq!(range(Some("bytes=5-"), 10), RangeAnswer::Partial(5, 9));
        assert_eq!(range(Some("bytes=-4"), 10), RangeAnswer::Partial(6, 9));
        assert_eq!(range(Some("bytes=-40"), 10), RangeAnswer::Partial(0, 9));
        assert_eq!(range(Some("bytes=8-100"), 10), RangeAnswer::Partial(8, 9));
        assert_eq!(range(Some("bytes=10-"), 10), RangeAnswer::Unsatisfiable);
        assert_eq!(range(Some("bytes=0-1,4-5"), 10), RangeAnswer::Full);
        assert_eq!(range(Some("items=0-1"), 10), RangeAnswer::Full);
    }

    #[test]
    fn lookups_cannot_escape() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("a.txt"), "a").expect("w");
        std::fs::write(root.join("sub/index.html"), "i").expect("w");
        std::fs::write(root.join(".env"), "secret").expect("w");
        std::fs::write(dir.path().join("outside"), "o").expect("w");
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).expect("ln");
        let root = std::fs::canonicalize(&root).expect("canon");
        assert_eq!(lookup(&root, "/a.txt"), Lookup::File(root.join("a.txt")));
        assert_eq!(
            lookup(&root, "/sub/"),
            Lookup::File(root.join("sub/index.html"))
        );
        assert_eq!(lookup(&root, "/sub"), Lookup::AddSlash);
        assert_eq!(lookup(&root, "/nope"), Lookup::Missing);
        for bad in [
            "/../outside",
            "/%2e%2e/outside",
            "/sub/..%2foutside",
            "/.env",
            "/%2eenv",
            "/a.txt%00",
            "/sub\\..\\outside",
            "/link",
            "/sub/%5c..%5coutside",
            // An encoded slash, in either case: never a separator (it would name sub/index.html).
            "/sub%2findex.html",
            "/sub%2Findex.html",
            "/sub%5Cindex.html",
        ] {
            assert_eq!(lookup(&root, bad), Lookup::Refused, "{bad}");
        }
    }

    /// `first_segment_missing` says "missing" only where `lookup` in the release the configured
    /// root names would: for a first segment, and for `/`, whose segment is `index.html`.
    #[test]
    fn a_missing_first_segment_or_index_is_known_with_one_lstat() {
        let dir = tempfile::tempdir().expect("tmp");
        let base = std::fs::canonicalize(dir.path()).expect("canon");
        for r in ["r1", "r2"] {
            std::fs::create_dir_all(base.join(r).join("sub")).expect("mkdir");
        }
        std::fs::write(base.join("r2/index.html"), "i").expect("w");
        std::os::unix::fs::symlink("r1", base.join("www")).expect("ln");
        let www = base.join("www");
        for (raw, missing) in [("/", true), ("//", true), ("/nope", true), ("/sub/", false)] {
            assert_eq!(first_segment_missing(&www, raw), missing, "{raw}");
            let looked = lookup(&base.join("r1"), raw) == Lookup::Missing;
            assert!(!missing || looked, "{raw}");
        }
        // A publish that brings an index: `/` is a file from the next request on.
        std::os::unix::fs::symlink("r2", base.join("www.new")).expect("ln");
        std::fs::rename(base.join("www.new"), &www).expect("swap");
        assert!(!first_segment_missing(&www, "/"));
        assert_eq!(
            lookup(&base.join("r2"), "/"),
            Lookup::File(base.join("r2/index.html"))
        );
        // A root whose path with the segment is longer or shorter than the room on the stack.
        for long in [100, 256, 257, 400] {
            // base/r2/<m>/<n>, and `/sub` after it, `long` bytes in all.
            let n = long - base.as_os_str().len() - "/r2//".len() - "/sub".len();
            let root = base
                .join("r2")
                .join("m".repeat(n / 2))
                .join("n".repeat(n - n / 2));
            std::fs::create_dir_all(root.join("sub")).expect("mkdir");
            assert_eq!(root.as_os_str().len() + 4, long);
            assert!(!first_segment_missing(&root, "/sub/"), "{long}");
            assert!(first_segment_missing(&root, "/sup/"), "{long}");
        }
    }

    /// A web root with one file, `page.html`, and the answers the edge gives for it.
    struct Page {
        _dir: tempfile::TempDir,
        root: PathBuf,
        path: PathBuf,
    }

    impl Page {
        fn new(body: &str) -> Page {
            let dir = tempfile::tempdir().expect("tmp");
            let root = std::fs::canonicalize(dir.path()).expect("canon");
            let path = root.join("page.html");
            std::fs::write(&path, body).expect("w");
            Page {
                _dir: dir,
                root,
                path,
            }
        }

        /// The page's representation (its validators).
        fn rep(&self) -> Representation {
            representation(&self.path, "", &self.root).expect("representation")
        }

        /// The answer to `method /page.html` with `headers`.
        fn answer(&self, method: &str, headers: &[(&str, &str)]) -> Answer {
            let mut req = RequestHeader::build(method, b"/page.html", None).expect("req");
            for (k, v) in headers {
                req.append_header(k.to_string(), *v).expect("hdr");
            }
            serve_content(&req, self.rep()).expect("answer")
        }
    }

    fn status(a: &Answer) -> u16 {
        a.header.status.as_u16()
    }

    fn get<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
        a.header.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The preconditions in RFC 9110 §13.2.2's order, each with the answer it must give.
    #[test]
    fn preconditions_in_rfc_order() {
        let page = Page::new("0123456789");
        let (etag, lm) = (page.rep().etag(), page.rep().last_modified());
        let a = page.answer("GET", &[]);
        assert_eq!(status(&a), 200);
        assert_eq!(get(&a, "content-length"), Some("10"));
        assert_eq!(get(&a, "content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(get(&a, "accept-ranges"), Some("bytes"));
        assert_eq!(get(&a, "etag"), Some(etag.as_str()));
        assert!(matches!(a.body, Body::File(_)));

        let weak = format!("W/{etag}");
        let list = format!("\"other\", {etag}");
        let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
            (vec![("If-Match", "\"other\"")], 412),
            (vec![("If-Match", list.as_str())], 200),
            (vec![("If-Match", "*")], 200),
            // If-Match uses the strong comparison: a weak tag never matches.
            (vec![("If-Match", weak.as_str())], 412),
            (
                vec![("If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
                412,
            ),
            (vec![("If-Unmodified-Since", lm.as_str())], 200),
            // If-Match present: If-Unmodified-Since is not looked at.
            (
                vec![
                    ("If-Match", etag.as_str()),
                    ("If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"),
                ],
                200,
            ),
            (vec![("If-None-Match", list.as_str())], 304),
            (vec![("If-None-Match", weak.as_str())], 304),
            (vec![("If-None-Match", "*")], 304),
            (vec![("If-None-Match", "\"other\"")], 200),
            (vec![("If-Modified-Since", lm.as_str())], 304),
            (
                vec![("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
                200,
            ),
            (vec![("If-Modified-Since", "not a date")], 200),
            // If-None-Match present: If-Modified-Since is not looked at.
            (
                vec![
                    ("If-None-Match", "\"other\""),
                    ("If-Modified-Since", lm.as_str()),
                ],
                200,
            ),
            // A failed If-Match wins over a matching If-None-Match.
            (
                vec![("If-Match", "\"other\""), ("If-None-Match", etag.as_str())],
                412,
            ),
        ];
        for (headers, want) in cases {
            let a = page.answer("GET", &headers);
            assert_eq!(status(&a), want, "{headers:?}");
            if want == 304 {
                assert_eq!(get(&a, "etag"), Some(etag.as_str()));
                assert_eq!(get(&a, "content-length"), None);
                assert!(matches!(a.body, Body::Empty));
            }
            if want == 412 {
                assert!(matches!(a.body, Body::Text(_)));
            }
        }
    }

    #[test]
    fn ranges_and_if_range() {
        let page = Page::new("0123456789");
        let (etag, lm) = (page.rep().etag(), page.rep().last_modified());
        let a = page.answer("GET", &[("Range", "bytes=2-4")]);
        assert_eq!(status(&a), 206);
        assert_eq!(get(&a, "content-range"), Some("bytes 2-4/10"));
        assert_eq!(get(&a, "content-length"), Some("3"));
        let a = page.answer("GET", &[("Range", "bytes=20-")]);
        assert_eq!(status(&a), 416);
        assert_eq!(get(&a, "content-range"), Some("bytes */10"));
        // HEAD: Range is defined for GET only.
        let a = page.answer("HEAD", &[("Range", "bytes=2-4")]);
        assert_eq!(status(&a), 200);
        assert_eq!(get(&a, "content-length"), Some("10"));
        assert!(matches!(a.body, Body::Empty));
        // If-Range: the range only while the validator is current.
        for (if_range, want) in [
            (etag.as_str(), 206),
            ("\"stale\"", 200),
            (lm.as_str(), 206),
            ("Wed, 01 Jan 2003 00:00:00 GMT", 200),
        ] {
            let a = page.answer("GET", &[("Range", "bytes=2-4"), ("If-Range", if_range)]);
            assert_eq!(status(&a), want, "If-Range: {if_range}");
        }
        // An empty file: 200 with no body to read.
        let a = Page::new("").answer("GET", &[]);
        assert_eq!(status(&a), 200);
        assert_eq!(get(&a, "content-length"), Some("0"));
        assert!(matches!(a.body, Body::Empty));
    }

    #[test]
    fn entity_tag_lists() {
        let tag = "\"a-1\"";
        assert!(etag_matches(" \"x\" ,\"a-1\"", tag, Compare::Strong));
        assert!(etag_matches("W/\"a-1\"", tag, Compare::Weak));
        assert!(!etag_matches("W/\"a-1\"", tag, Compare::Strong));
        assert!(!etag_matches("\"a-1", tag, Compare::Weak));
        assert!(!etag_matches("a-1", tag, Compare::Weak));
        assert!(!etag_matches("\"a-12\"", tag, Compare::Weak));
    }

    /// A file replaced by a rename (how deployments publish) after its representation was
    /// picked is still sent whole: the bytes and the length, ETag and Last-Modified all come
    /// from the file that was open, never the old length with the new content.
    #[test]
    fn a_file_replaced_meanwhile_is_sent_as_it_was_opened() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(dir.path()).expect("canon");
        let path = root.join("page.html");
        std::fs::write(&path, "old page").expect("w");
        let rep = representation(&path, "", &root).expect("representation");
        assert_eq!(rep.len, 8);
        let staged = root.join("page.html.new");
        std::fs::write(&staged, "the new page, longer").expect("w");
        std::fs::rename(&staged, &path).expect("rename");
        let Source::File { file, .. } = rep.source else {
            unreachable!("representation opens the file")
        };
        let mut chunks = Chunks::new(file, 0, rep.len);
        let mut sent = Vec::new();
        while let Some((chunk, _)) = chunks.next_chunk().expect("read") {
            sent.extend_from_slice(&chunk);
        }
        assert_eq!(sent, b"old page");
        let now = representation(&path, "", &root).expect("representation");
        assert_eq!(now.len, 20);
    }
}
