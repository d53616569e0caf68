//! Static files from the web root: safe path resolution, conditional requests, ranges,
//! precompressed siblings, streaming.
//!
//! A request path maps to a file only when every check passes: the percent-decoded path has no
//! `..` or `.`-prefixed segment (no dotfiles), no backslash, no NUL, no encoded slash, and the
//! canonical path (symlinks resolved) stays inside the canonical web root. Anything else is "no
//! static file here" and the request goes to the app.

use bytes::Bytes;
use std::path::{Path, PathBuf};
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

/// Resolves the raw (still percent-encoded) request path `raw` under `root` (canonical).
pub fn lookup(root: &Path, raw: &str) -> Lookup {
    let path = raw.split('?').next().unwrap_or("");
    if !path.starts_with('/') {
        return Lookup::Refused;
    }
    // Encoded slashes and backslashes never name a file here.
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
        return Lookup::Refused;
    }
    let Ok(decoded) = percent_encoding::percent_decode_str(path).decode_utf8() else {
        return Lookup::Refused;
    };
    if decoded.contains('\\') || decoded.contains('\0') {
        return Lookup::Refused;
    }
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|seg| seg.starts_with('.')) {
        // `..`, `.`, and dotfiles (`.git`, `.env`, `.htpasswd` …).
        return Lookup::Refused;
    }
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
    /// The open file to send.
    pub file: std::fs::File,
    /// `Content-Encoding` to announce (`br`, `gzip`), if a sibling was picked.
    pub encoding: Option<&'static str>,
    /// Its length in bytes.
    pub len: u64,
    /// Its modification time.
    pub modified: SystemTime,
    /// Whether siblings exist (the response then varies on `Accept-Encoding`).
    pub varies: bool,
}

/// Picks `file` or its `.br`/`.gz` sibling according to `accept_encoding`.
pub fn representation(
    file: &Path,
    accept_encoding: &str,
    root: &Path,
) -> std::io::Result<Representation> {
    let accepts = |coding: &str| {
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
    };
    let mut varies = false;
    for (suffix, coding) in [("br", "br"), ("gz", "gzip")] {
        let mut sibling = file.as_os_str().to_owned();
        sibling.push(".");
        sibling.push(suffix);
        let sibling = PathBuf::from(sibling);
        if let Step::Found(real, meta) = step(root, sibling)
            && meta.is_file()
        {
            varies = true;
            if accepts(coding) {
                return Representation::open(&real, Some(coding), true);
            }
        }
    }
    Representation::open(file, None, varies)
}

impl Representation {
    /// Opens `path` (a symlink swapped in since it was resolved is not followed, nor does a
    /// FIFO swapped in block) and takes the length and modification time from the open file.
    fn open(path: &Path, encoding: Option<&'static str>, varies: bool) -> std::io::Result<Self> {
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
            file,
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

    /// Whether the request's validators say the client's copy is current (304).
    pub fn not_modified(
        &self,
        if_none_match: Option<&str>,
        if_modified_since: Option<&str>,
    ) -> bool {
        if let Some(inm) = if_none_match {
            let etag = self.etag();
            return inm.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == etag
            });
        }
        if let Some(ims) = if_modified_since
            && let Ok(since) = httpdate::parse_http_date(ims)
        {
            let modified_secs = self
                .modified
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let since_secs = since
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            return modified_secs <= since_secs;
        }
        false
    }
}

/// The outcome of a `Range` header against a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range (absent, multiple ranges, or not `bytes`): send everything (200).
    Full,
    /// One satisfiable range: inclusive start and end (206).
    Partial(u64, u64),
    /// The range lies outside the representation (416).
    Unsatisfiable,
}

/// Parses a single-range `Range` header value.
pub fn range(header: Option<&str>, len: u64) -> RangeAnswer {
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
pub struct Chunks {
    file: std::fs::File,
    offset: u64,
    left: u64,
}

/// The largest chunk handed to the connection at once.
const CHUNK: u64 = 64 * 1024;

impl Chunks {
    /// Reads `len` bytes of `file` from `start`.
    pub fn new(file: std::fs::File, start: u64, len: u64) -> Chunks {
        Chunks {
            file,
            offset: start,
            left: len,
        }
    }

    /// The next chunk and whether it is the last, or `None` when done.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<(Bytes, bool)>> {
        use std::os::unix::fs::FileExt;
        if self.left == 0 {
            return Ok(None);
        }
        let want = self.left.min(CHUNK) as usize;
        let mut buf = vec![0u8; want];
        let n = self.file.read_at(&mut buf, self.offset)?;
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
        ] {
            assert_eq!(lookup(&root, bad), Lookup::Refused, "{bad}");
        }
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
        let mut chunks = Chunks::new(rep.file, 0, rep.len);
        let mut sent = Vec::new();
        while let Some((chunk, _)) = chunks.next_chunk().expect("read") {
            sent.extend_from_slice(&chunk);
        }
        assert_eq!(sent, b"old page");
        let now = representation(&path, "", &root).expect("representation");
        assert_eq!(now.len, 20);
    }
}
