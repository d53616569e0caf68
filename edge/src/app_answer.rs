//! The head of the app's answer to a `GET` the edge's own client sent as bytes
//! ([`crate::fast_proxy`]: the HTTP/1.1 fast path's, and HTTP/2's), read without pingora's
//! client session when the answer is a plain one.
//!
//! pingora's HTTP/1 client reads an answer's head into a `ResponseHeader` (two header maps, a
//! name made and hashed per field, the values normalized), validates it and sets up its body
//! reader: about 12k instructions a request (`bench/edge/callgrind /api`), a quarter of the
//! edge's work for a proxied request, and half of its allocations. Most of the app's answers
//! need none of it: an HTTP/1.1 head whose body has one `Content-Length` (or no body: `204`,
//! `304`), kept alive. [`read`] reads the head with pingora's parser settings (httparse, spaces
//! after a field's name and obsolete line folding allowed, as its client has them) and keeps
//! where each field is; [`Plain`] is such an answer, which [`crate::fast_proxy`] writes to the
//! client itself, with the same head pingora's path writes (the same fields, in pingora's
//! order; for HTTP/2, made into the header pingora's client would make of it), and whose body
//! it copies as it comes.
//!
//! Any other answer (an informational one first, `Transfer-Encoding`, no length, a length
//! pingora would refuse or read otherwise, HTTP/1.0, `Connection` other than `keep-alive`,
//! the page cache's purge header, a field value with a line break, a name of other characters
//! than letters, digits and `-`, more than [`MAX_FIELDS`] fields, more bytes than its body) is
//! left to pingora's client session as before: the bytes read are put back into the
//! connection (pingora's own `rewind`), and the session reads them again, with every rule of
//! its own.

use crate::page_cache;
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The most fields a plain answer has (one with more goes to pingora's session).
pub const MAX_FIELDS: usize = 32;

/// pingora's HTTP/1 client's limit on an answer's head (`MAX_HEADER_SIZE`): past it, the
/// session is left to refuse it.
const MAX_HEAD_BYTES: usize = 1_048_575;

/// The room [`read`]'s first read has: most of the app's pages (the home page of twenty posts
/// is under 10 KiB) come whole in it, head and body, where pingora's session reads 4 KiB of
/// them first. The app sends nothing past its answer, so nothing more is read.
pub const FIRST_READ: usize = 16 * 1024;

/// The room made for each further read of a head (pingora's `INIT_HEADER_BUF_SIZE`).
const READ_ROOM: usize = 4096;

/// Where a part of the head is in the bytes read.
#[derive(Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The span of `part`, a slice of `buf`.
    fn of(buf: &[u8], part: &[u8]) -> Span {
        Span {
            start: (part.as_ptr() as usize - buf.as_ptr() as usize) as u32,
            len: part.len() as u32,
        }
    }

    fn get(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..][..self.len as usize]
    }
}

/// A plain answer's head (see the module), as positions in the bytes read.
pub struct Plain {
    /// The status code (200-999).
    pub status: u16,
    reason: Span,
    fields: [(Span, Span); MAX_FIELDS],
    count: usize,
    /// Whether a name comes more than once (ASCII case ignored): most answers have none, and
    /// their fields are in pingora's order as they came.
    repeated: bool,
    /// The head's length: the body's first bytes follow it in the bytes read.
    pub head_len: usize,
    /// The body's length (`Content-Length`); `None` for an answer without a body (`204`,
    /// `304`).
    pub body_len: Option<usize>,
}

impl Plain {
    /// The reason phrase as the app wrote it (pingora's writer writes it back as it came:
    /// the status's own when they are the same, else the app's).
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.reason.get(buf)
    }

    /// Each field (name with its case, value) in pingora's order: the values of one name
    /// together, where the name first came, each with its own name as written.
    pub fn each_field(&self, buf: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
        let fields = &self.fields[..self.count];
        if !self.repeated {
            for (name, value) in fields {
                f(name.get(buf), value.get(buf));
            }
            return;
        }
        for (i, (name, _)) in fields.iter().enumerate() {
            let name = name.get(buf);
            if fields[..i]
                .iter()
                .any(|(other, _)| other.get(buf).eq_ignore_ascii_case(name))
            {
                continue;
            }
            for (other, value) in &fields[i..] {
                let other = other.get(buf);
                if other.eq_ignore_ascii_case(name) {
                    f(other, value.get(buf));
                }
            }
        }
    }

    /// Whether the answer has a field named `name` (ASCII case ignored).
    pub fn has(&self, buf: &[u8], name: &str) -> bool {
        self.position(buf, name.as_bytes(), self.count).is_some()
    }

    /// Where the first of the first `before` fields named `name` (ASCII case ignored) is.
    fn position(&self, buf: &[u8], name: &[u8], before: usize) -> Option<usize> {
        self.fields[..before].iter().position(|(n, _)| {
            n.len as usize == name.len() && n.get(buf).eq_ignore_ascii_case(name)
        })
    }
}

/// What [`read`] found, with the connection. (Returned once a request and matched at once: a
/// boxed head would cost an allocation a request.)
#[allow(clippy::large_enum_variant)]
pub enum Head {
    /// A plain answer: its head; its body's first bytes follow it in the bytes read.
    Plain(Plain, Stream),
    /// Any other: the bytes read were put back into the connection, for pingora's session.
    Other(Stream),
}

/// Whether [`read`] can put bytes back into `stream` (pingora's TCP streams, which its
/// connector makes, can).
pub fn readable(stream: &Stream) -> bool {
    stream.as_any().is::<L4Stream>()
}

/// Reads the head of the app's answer from `stream` ([`readable`]) into `buf` (empty; made with
/// [`FIRST_READ`] of room by the caller), each read within `timeout`, and says whether it is a
/// plain one (see the module). A connection closed or failed before any byte, and a read that
/// timed out, are pingora's errors for them (so that the caller retries a reused connection as
/// pingora does); anything else read is a [`Head`].
pub async fn read(
    mut stream: Stream,
    buf: &mut Vec<u8>,
    timeout: Option<Duration>,
) -> pingora::Result<Head> {
    use pingora::ErrorType::{ConnectionClosed, ReadError, ReadTimedout};
    loop {
        if buf.capacity() - buf.len() < READ_ROOM / 4 {
            buf.reserve(READ_ROOM);
        }
        let Some(read) = within(timeout, stream.read_buf(buf)).await else {
            return pingora::Error::e_explain(ReadTimedout, "while reading response headers");
        };
        match read {
            Ok(0) if buf.is_empty() => {
                let mut e = pingora::Error::explain(
                    ConnectionClosed,
                    "while reading response headers, bytes already read: 0",
                );
                e.retry = pingora::RetryType::ReusedOnly;
                return Err(e);
            }
            Err(e) if buf.is_empty() => {
                let io_error = e.raw_os_error().is_some();
                let mut e = pingora::Error::because(
                    ReadError,
                    "while reading response headers, bytes already read: 0",
                    e,
                );
                if io_error {
                    e.retry = pingora::RetryType::ReusedOnly;
                }
                return Err(e);
            }
            // The end, or a failure, after part of a head: pingora's session reads the part
            // again and comes to the same end.
            Ok(0) | Err(_) => return put_back(stream, buf).map(Head::Other),
            Ok(_) => {}
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut answer = httparse::Response::new(&mut headers);
        match parser().parse_response(&mut answer, buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                return match plain(&answer, head_len, buf) {
                    Some(plain) => Ok(Head::Plain(plain, stream)),
                    None => put_back(stream, buf).map(Head::Other),
                };
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => {}
            // Too big, too many fields for a plain answer, or refused: the session's to say.
            Ok(httparse::Status::Partial) | Err(_) => {
                return put_back(stream, buf).map(Head::Other);
            }
        }
    }
}

/// `read`'s outcome if it comes within `timeout` (none: no limit), on pingora's timer, which
/// its client's reads use too.
pub async fn within<T>(timeout: Option<Duration>, read: impl Future<Output = T>) -> Option<T> {
    match timeout {
        Some(t) => pingora::time::timeout(t, read).await.ok(),
        None => Some(read.await),
    }
}

/// httparse with pingora's HTTP/1 client's settings for an answer's head (its
/// `parse_resp_buffer`): spaces after a field's name and obsolete line folding allowed.
fn parser() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    config.allow_obsolete_multiline_headers_in_responses(true);
    config
}

/// `stream` ([`readable`]) with the bytes read from it (`buf`) put back, to be read again by
/// pingora's session.
pub fn put_back(stream: Stream, buf: &[u8]) -> pingora::Result<Stream> {
    match stream.into_any().downcast::<L4Stream>() {
        Ok(mut l4) => {
            l4.rewind(buf);
            Ok(l4)
        }
        // Not reached: `read` takes only such streams.
        Err(_) => pingora::Error::e_explain(
            pingora::ErrorType::InternalError,
            "a connection to the app of an unexpected kind",
        ),
    }
}

/// The head `answer` (`head_len` bytes of `buf`) as a [`Plain`] answer, if it is one.
fn plain(answer: &httparse::Response<'_, '_>, head_len: usize, buf: &[u8]) -> Option<Plain> {
    if answer.version != Some(1) || buf.len() > u32::MAX as usize {
        return None;
    }
    let status = answer.code?;
    if !(200..=999).contains(&status) {
        return None;
    }
    let reason = Span::of(buf, answer.reason?.as_bytes());
    let mut plain = Plain {
        status,
        reason,
        fields: [(Span::default(), Span::default()); MAX_FIELDS],
        count: 0,
        repeated: false,
        head_len,
        body_len: None,
    };
    let mut length = None;
    let mut connection = false;
    for field in answer.headers.iter() {
        let (name, value) = (field.name.as_bytes(), field.value);
        // (httparse refuses a NUL, and takes a line break only in a folded value.)
        if name.is_empty()
            || !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            || memchr::memchr2(b'\r', b'\n', value).is_some()
        {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            // One value, digits only (what pingora takes as a length and more, left to it).
            if length.is_some()
                || value.is_empty()
                || value.len() > 18
                || !value.iter().all(u8::is_ascii_digit)
            {
                return None;
            }
            length = Some(std::str::from_utf8(value).ok()?.parse::<usize>().ok()?);
        } else if name.eq_ignore_ascii_case(b"connection") {
            // Kept alive as HTTP/1.1's default, or said so once.
            if connection || !value.trim_ascii().eq_ignore_ascii_case(b"keep-alive") {
                return None;
            }
            connection = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(page_cache::PURGE_HEADER.as_bytes())
        {
            return None;
        }
        plain.repeated = plain.repeated || plain.position(buf, name, plain.count).is_some();
        plain.fields[plain.count] = (Span::of(buf, name), Span::of(buf, value));
        plain.count += 1;
    }
    let extra = buf.len() - head_len;
    if matches!(status, 204 | 304) {
        // No body; bytes after the head would be more than the answer.
        if extra > 0 {
            return None;
        }
    } else {
        let length = length?;
        if extra > length {
            return None;
        }
        plain.body_len = Some(length);
    }
    Some(plain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `head` read as [`read`] reads it: parsed, then [`plain`] or not.
    fn plain_of(head: &str) -> Option<Plain> {
        let buf = head.as_bytes();
        let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut answer = httparse::Response::new(&mut headers);
        match parser().parse_response(&mut answer, buf) {
            Ok(httparse::Status::Complete(len)) => plain(&answer, len, buf),
            _ => None,
        }
    }

    #[test]
    fn a_length_or_no_body_kept_alive_is_plain() {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nab";
        let plain = plain_of(head).unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.body_len, Some(3));
        assert_eq!(plain.head_len, head.len() - 2);
        assert_eq!(plain.reason(head.as_bytes()), b"OK");
        for head in [
            "HTTP/1.1 204 No Content\r\nX-App: b\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 9\r\n\r\n",
        ] {
            assert_eq!(plain_of(head).unwrap().body_len, None, "{head}");
        }
        for head in [
            "HTTP/1.1 404 Gone Fishing\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
            "HTTP/1.1 599 \r\nContent-Length: 007\r\n\r\n",
        ] {
            assert!(plain_of(head).is_some(), "{head}");
        }
    }

    #[test]
    fn every_other_answer_is_left_to_pingora() {
        for head in [
            "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, Upgrade\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Onebox-Purge: all\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Folded: a\r\n b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Nul: a\0b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX_Under: a\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcd",
            "HTTP/1.1 204 No Content\r\n\r\nx",
        ] {
            assert!(plain_of(head).is_none(), "{head}");
        }
        let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: v\r\n")).collect();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n{many}\r\n");
        assert!(plain_of(&head).is_none());
    }

    #[test]
    fn fields_come_in_pingoras_order_with_their_case() {
        let head = "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-App: b\r\nset-cookie: c=3\r\nContent-Length: 0\r\n\r\n";
        let plain = plain_of(head).unwrap();
        let mut seen = Vec::new();
        plain.each_field(head.as_bytes(), |name, value| {
            seen.push(format!(
                "{}: {}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            ));
        });
        assert_eq!(
            seen,
            [
                "Set-Cookie: a=1",
                "set-cookie: c=3",
                "X-App: b",
                "Content-Length: 0"
            ]
        );
        assert!(plain.has(head.as_bytes(), "x-app"));
        assert!(!plain.has(head.as_bytes(), "vary"));
        // No name twice: as they came.
        let head = "HTTP/1.1 200 OK\r\nX-B: 1\r\nContent-Length: 0\r\nX-A: 2\r\nX-Ab: 3\r\n\r\n";
        let plain = plain_of(head).unwrap();
        let mut seen = Vec::new();
        plain.each_field(head.as_bytes(), |name, _| seen.push(name.to_vec()));
        assert_eq!(seen, [&b"X-B"[..], b"Content-Length", b"X-A", b"X-Ab"]);
    }
}
