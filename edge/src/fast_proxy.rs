//! The edge's own client for plain requests for the app: the HTTP/1.1 fast path's `GET` or
//! `HEAD` ([`crate::fast_path`] routes it here) is sent to one of the app's servers and its answer
//! sent back, without a pingora session or the proxy's phases ([`FastProxy::proxy`]); an
//! HTTP/2 `GET` or `HEAD` that pingora's proxy would send up as it came goes the same way from
//! the proxy's `request_filter`, its answer written through pingora's HTTP/2 session
//! ([`FastProxy::proxy_h2`]; what it takes: [`crate::proxy`]'s `h2_to_app`). Both share the
//! connections to the app, their sending and the rules for the answer's head.
//!
//! pingora's path for a proxied request (its session, the proxy's phase futures moved by value,
//! header maps built and written header by header, the upstream pool's release task and its
//! `getpeername` check on every reuse) cost about 120k user-space instructions a request
//! (`bench/edge/callgrind /api`). Here the parts that decide what goes up and what comes back
//! are pingora's own: its HTTP/1 client session ([`HttpSession`]: the request written by its
//! writer, the answer read, validated and framed by its reader, its keep-alive rules) over a
//! connection made by pingora's connector with the peer's timeouts — but for the plain answer
//! to a `GET` written as bytes ([`crate::app_answer`]: HTTP/1.1, one `Content-Length` or no
//! body, kept alive; most of the app's), whose head the edge reads and writes back itself
//! without pingora's header maps (`bench/edge/callgrind /api`: 47k → 38k instructions a
//! request), and whose body it copies as it comes ([`FastProxy::send_plain`]; for an HTTP/2
//! `GET`, sent up as the bytes pingora's client writes, the header pingora's client would make
//! of it is made from those bytes, [`FastProxy::send_plain_h2`]: 119k → 102k); and the edge's
//! own rules, shared with the full path: the forwarding headers ([`crate::proxy::forwarded`]),
//! the page cache's purge header and its memory of uncacheable URLs, `X-Cache`, [`decorate`].
//! What pingora's proxy does to the answer on the way down for HTTP/1.1 is done as it does it:
//! an answer with neither `Content-Length` nor `Transfer-Encoding` is sent chunked, `Date` and
//! `Connection` are set, the body framed as the header says (chunked: a chunk per piece read,
//! in pingora's format); informational answers (`103`) pass through.
//!
//! Idle connections to the app are kept per worker thread (the edge's runtimes do not steal
//! work: a connection stays on the thread whose reactor holds it), the most recent first, at
//! most [`IDLE_PER_THREAD`] of them, and closed once idle for [`IDLE_FOR`] (a sweep every
//! [`IDLE_FOR`] while the thread keeps any); nothing watches them meanwhile. A request on a kept connection that the app has closed in the meantime fails before
//! any answer came, and is sent again on a new connection (as pingora retries a reused
//! connection's failure); a new connection that cannot be made leaves the request to the full
//! path, which answers as it does when the app is down. After the request went up on a new
//! connection, a failure before the answer's head (a timeout, a closed connection, an answer
//! pingora's reader refuses) is answered with the full path's `502`; during the body, the
//! connection to the client is closed (the head has been sent). Each wait for the app also
//! watches the client, as pingora's proxy does: a connection (HTTP/2: a stream) the client
//! ends drops the connection to the app at once, and bytes an HTTP/1.1 client sends meanwhile
//! (another request) end the exchange with the full path's `400`.

use crate::app_answer::{self, Head, Plain};
use crate::file_cache::h1_head;
use crate::page_cache::{self, PageCache};
use crate::proxy::{AppServer, Shared, decorate};
use bytes::Bytes;
use http::HeaderValue;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Stream;
use pingora::protocols::http::HttpTask;
use pingora::protocols::http::date::get_cached_date;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::proxy::Session;
use std::cell::RefCell;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most idle connections to the app one worker thread keeps.
pub const IDLE_PER_THREAD: usize = 256;

/// How long a connection to the app is kept idle (shorter than the idle timeouts app servers
/// commonly have; one the app closes sooner is replaced, see the module).
pub const IDLE_FOR: Duration = Duration::from_secs(20);

thread_local! {
    /// This thread's idle connections to the app's servers, the most recently used last.
    static IDLE: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// An idle connection to one of the app's servers.
struct Kept {
    /// The server's index in the pool ([`AppServer::index`]).
    server: usize,
    stream: Stream,
    /// When it became idle.
    since: Instant,
}

/// A request for the app as the fast path parsed it.
pub struct AppRequest<'a> {
    /// `GET` or `HEAD`.
    pub method: &'a str,
    /// The request target as received.
    pub target: &'a str,
    /// The request's header fields in order, as received.
    pub fields: &'a [httparse::Header<'a>],
    /// The `Host` the app sees ([`crate::proxy::app_host_of`] of the request's).
    pub app_host: &'a str,
    /// The site name the request is for, lower case (`X-Forwarded-Host`).
    pub site_host: &'a str,
    /// The client's address as text (`X-Forwarded-For`).
    pub client: &'a str,
    /// The request id.
    pub id: &'a HeaderValue,
    /// The page cache's URL of it when the page cache sent it to the app as an URL it
    /// remembers as uncacheable (an answer that may be cached makes it forget that).
    pub remembered: Option<page_cache::Url>,
}

impl AppRequest<'_> {
    /// What the answer's treatment takes from the request.
    fn asked(&self) -> Asked<'_> {
        Asked {
            head: self.method == "HEAD",
            id: self.id,
            remembered: self.remembered,
        }
    }
}

/// What the edge's treatment of the app's answer takes from the request, for either HTTP
/// version.
#[derive(Clone, Copy)]
pub struct Asked<'a> {
    /// Whether the request is a `HEAD` (the answer has no body).
    pub head: bool,
    /// The request id.
    pub id: &'a HeaderValue,
    /// The page cache's URL of the request when the page cache sent it to the app as an URL it
    /// remembers as uncacheable.
    pub remembered: Option<page_cache::Url>,
}

/// The request as it goes to the app.
#[derive(Clone, Copy)]
enum UpRequest<'a> {
    /// A `GET`'s bytes (HTTP/1.1: made by [`raw_request`]; HTTP/2: by pingora's client writer,
    /// in [`FastProxy::proxy_h2`]), and which plain answers to it the edge reads and sends
    /// itself.
    Raw(&'a [u8], PlainOk),
    /// Its header, written by pingora's client session, which reads the answer.
    Header(&'a RequestHeader),
}

/// Which of the app's plain answers ([`app_answer`]) to a request the edge sends itself.
#[derive(Clone, Copy)]
enum PlainOk {
    /// Every one.
    Any,
    /// Those the page cache refuses at once ([`page_cache::refused_at_once`]): the answers
    /// to an URL it remembers as uncacheable, which it forgets on one it may keep.
    Uncacheable,
}

impl PlainOk {
    /// Whether the plain answer `head` (read into `buf`) is sent by the edge itself.
    fn takes(self, head: &Plain, buf: &[u8]) -> bool {
        match self {
            PlainOk::Any => true,
            PlainOk::Uncacheable => {
                page_cache::refused_at_once(head.status, |name| head.has(buf, name.as_str()))
            }
        }
    }
}

/// How sending a request to the app ended, before anything went to the client. (Returned once
/// a request and matched at once: the client session is not boxed, which would cost an
/// allocation a request.)
#[allow(clippy::large_enum_variant)]
enum Exchanged {
    /// The app could not be reached on a new connection: nothing was sent.
    NotSent,
    /// Sent on a new connection, but no answer's head came back (or pingora's reader refused
    /// it): the full path's `502` is due.
    Failed(Box<pingora::Error>),
    /// The app's answer's head was read.
    Answered(HttpSession),
    /// A plain answer's head was read ([`app_answer`]): the connection, the bytes read (the
    /// head and the body's first bytes) and the head.
    Plain(Stream, Vec<u8>, Plain),
}

/// How a proxied request ended.
pub enum Proxied {
    /// The app could not be reached on a new connection: nothing was sent anywhere; the full
    /// path is to answer the request.
    NotSent,
    /// An answer was sent (the app's, or the `502` for an app that did not answer); `keep`
    /// says whether the connection to the client may serve another request.
    Answered {
        /// The status sent (0: the head could not be written).
        status: u16,
        /// Whether the client's connection may be kept alive.
        keep: bool,
    },
}

/// The fast path's connections to the app.
pub struct FastProxy {
    connector: std::sync::OnceLock<TransportConnector>,
}

impl Default for FastProxy {
    fn default() -> Self {
        FastProxy::new()
    }
}

impl FastProxy {
    /// A proxy with no connection yet (pingora's connector, its own pool unused).
    pub fn new() -> FastProxy {
        FastProxy {
            connector: std::sync::OnceLock::new(),
        }
    }

    /// pingora's connector, made on first use.
    fn connector(&self) -> &TransportConnector {
        self.connector
            .get_or_init(|| TransportConnector::new(Some(ConnectorOptions::new(1))))
    }

    /// Sends `request` to the app's server `server` and reads its answer's head: on a kept
    /// connection first, and again on a new one if the kept one fails before any answer (a
    /// connection the app closed meanwhile), as pingora retries a reused connection's failure.
    /// The head of the answer to a request sent as bytes ([`UpRequest::Raw`]) is read by
    /// [`app_answer::read`] first, and a plain answer's the request's [`PlainOk`] takes is
    /// returned as [`Exchanged::Plain`]; any other is read by pingora's client session.
    async fn exchange(&self, server: &AppServer, request: UpRequest<'_>) -> Exchanged {
        let peer = &server.peer;
        let mut reused = true;
        loop {
            let mut stream = match take_idle(server.index) {
                Some(stream) => stream,
                None => {
                    reused = false;
                    match self.connector().new_stream(peer).await {
                        Ok(stream) => stream,
                        Err(e) => {
                            tracing::debug!("fast path: connecting to the app: {e}");
                            return Exchanged::NotSent;
                        }
                    }
                }
            };
            let sent = match request {
                UpRequest::Raw(bytes, _) => {
                    write_up(&mut stream, bytes, peer.options.write_timeout).await
                }
                UpRequest::Header(_) => Ok(()),
            };
            let head = match (sent, request) {
                (Ok(()), UpRequest::Raw(_, plain)) if app_answer::readable(&stream) => {
                    let mut buf = Vec::with_capacity(app_answer::FIRST_READ);
                    let read = app_answer::read(stream, &mut buf, peer.options.read_timeout);
                    match read.await {
                        Ok(Head::Plain(head, stream)) if plain.takes(&head, &buf) => {
                            return Exchanged::Plain(stream, buf, head);
                        }
                        Ok(Head::Plain(_, stream)) => app_answer::put_back(stream, &buf),
                        // Read again by pingora's session, below.
                        Ok(Head::Other(stream)) => Ok(stream),
                        Err(e) => Err(e),
                    }
                }
                (Ok(()), _) => Ok(stream),
                (Err(e), _) => Err(e),
            };
            let answered = match head {
                Ok(stream) => {
                    let mut up = HttpSession::new(stream);
                    up.read_timeout = peer.options.read_timeout;
                    up.write_timeout = peer.options.write_timeout;
                    let sent = match request {
                        UpRequest::Header(header) => up
                            .write_request_header(Box::new(header.clone()))
                            .await
                            .map(drop),
                        UpRequest::Raw(..) => Ok(()),
                    };
                    match sent {
                        Ok(()) => up.read_response().await.map(|_| up),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match answered {
                Ok(up) => return Exchanged::Answered(up),
                // A kept connection the app closed meanwhile: again on a new one.
                Err(e) if reused && e.etype() != &pingora::ErrorType::ReadTimedout => {
                    tracing::debug!("fast path: a kept connection to the app failed: {e}");
                }
                Err(e) => return Exchanged::Failed(e),
            }
        }
    }

    /// Sends `req` to the app's server `server` and its answer to `client` (see the module).
    pub async fn proxy(
        &self,
        shared: &Shared,
        server: &AppServer,
        client: &mut Stream,
        req: &AppRequest<'_>,
    ) -> Proxied {
        // The request's bytes when written directly, else its header (made once, for a retry
        // too).
        let asked = req.asked();
        // A plain answer is read and sent by the edge itself; for an URL the page cache
        // remembers as uncacheable, only one it refuses at once (else it is to forget the URL,
        // `forget_if_cacheable`, which reads pingora's header).
        let plain = if asked.remembered.is_none() {
            PlainOk::Any
        } else {
            PlainOk::Uncacheable
        };
        let raw = raw_request(req);
        let header;
        let request = match &raw {
            Some(bytes) => UpRequest::Raw(bytes, plain),
            None => match upstream_request(req) {
                Ok(h) => {
                    header = h;
                    UpRequest::Header(&header)
                }
                Err(e) => return self.bad_gateway(shared, client, req, &e).await,
            },
        };
        // Each wait for the app also watches the client's connection, as pingora's proxy does.
        // (The exchange's future in a block of its own: its 2.5 KB are free for what follows,
        // so this future, boxed and so copied at each request, is 5.1 KB rather than 7.0.)
        let watched = {
            let exchange = pin!(self.exchange(server, request));
            watching(exchange, pin!(said(client))).await
        };
        let exchanged = match watched {
            Ok(exchanged) => exchanged,
            Err(said) => return self.client_spoke(shared, client, req, said, None).await,
        };
        let mut up = match exchanged {
            Exchanged::NotSent => return Proxied::NotSent,
            Exchanged::Failed(e) => return self.bad_gateway(shared, client, req, &e).await,
            Exchanged::Answered(up) => up,
            Exchanged::Plain(stream, buf, head) => {
                let answer = PlainAnswer { stream, buf, head };
                return self.send_plain(shared, server, client, req, answer).await;
            }
        };
        let client_timeout = crate::proxy::client_write_timeout(&shared.config.edge.limits);
        // Informational answers pass through; then the final one.
        let (head, status, framing, keep) = loop {
            let body_done = up.is_body_done();
            let header = match app_head(&up) {
                Ok(header) => header,
                Err(e) => return self.bad_gateway(shared, client, req, &e).await,
            };
            if let Some((head, framing, keep)) = wire_head(shared, asked, header, body_done) {
                break (head, header.status.as_u16(), framing, keep);
            }
            let mut header = header.clone();
            let informational = header.status.is_informational();
            let keep = downstream_head(shared, asked, &mut header, body_done, true);
            if !informational {
                let framing = Framing::of(&header, asked.head);
                let mut head = Vec::with_capacity(1024);
                h1_head(&header, &mut head);
                head.extend_from_slice(b"\r\n");
                break (head, header.status.as_u16(), framing, keep);
            }
            let mut bytes = Vec::with_capacity(256);
            h1_head(&header, &mut bytes);
            bytes.extend_from_slice(b"\r\n");
            // Sent at once, as pingora flushes an informational head.
            if write(client, &bytes, client_timeout, true).await.is_err() {
                return Proxied::Answered {
                    status: 0,
                    keep: false,
                };
            }
            let watched = watching(pin!(up.read_response()), pin!(said(client))).await;
            match watched {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return self.bad_gateway(shared, client, req, &e).await,
                Err(said) => return self.client_spoke(shared, client, req, said, None).await,
            }
        };
        let keep = keep && framing != Framing::Close;
        // The head goes out with the first piece of the body (one write), unless the body is
        // streamed (no length): then the head and each piece are sent at once (flushed, as
        // pingora's writer flushes them: the HTTPS stream holds small writes until a flush).
        let streamed = framing != Framing::Length;
        let mut pending = Some(head);
        if streamed
            && let Some(head) = pending.take()
            && write(client, &head, client_timeout, true).await.is_err()
        {
            return Proxied::Answered {
                status: 0,
                keep: false,
            };
        }
        let mut sent_head = pending.is_none();
        loop {
            let piece = if framing == Framing::None {
                Ok(None)
            } else {
                let watched = watching(pin!(up.read_body_bytes()), pin!(said(client))).await;
                match watched {
                    Ok(piece) => piece,
                    Err(said) => {
                        let sent = sent_head.then_some(status);
                        return self.client_spoke(shared, client, req, said, sent).await;
                    }
                }
            };
            let piece = match piece {
                Ok(piece) => piece,
                Err(e) => {
                    tracing::warn!("request {}: upstream failed: {e}", id_text(req.id));
                    return Proxied::Answered {
                        status: if sent_head { status } else { 0 },
                        keep: false,
                    };
                }
            };
            let end = piece.is_none();
            let mut out = pending.take().unwrap_or_default();
            framing.frame(piece.as_ref(), end, &mut out);
            if !out.is_empty() && write(client, &out, client_timeout, streamed).await.is_err() {
                return Proxied::Answered {
                    status: if sent_head { status } else { 0 },
                    keep: false,
                };
            }
            sent_head = true;
            if end {
                break;
            }
        }
        if client.flush().await.is_err() {
            return Proxied::Answered {
                status,
                keep: false,
            };
        }
        keep_for_next(up, server.index).await;
        Proxied::Answered { status, keep }
    }

    /// Sends the app's plain answer (see [`app_answer`]) to `client`: its head as the full
    /// path writes it ([`head_fields`]) with the body's first bytes in one write, then the rest
    /// of the body as it is read (each read within the app's read timeout, watching the client
    /// as [`FastProxy::proxy`] does), and keeps the connection to the app for the next request.
    async fn send_plain(
        &self,
        shared: &Shared,
        server: &AppServer,
        client: &mut Stream,
        req: &AppRequest<'_>,
        answer: PlainAnswer,
    ) -> Proxied {
        let PlainAnswer {
            mut stream,
            mut buf,
            head,
        } = answer;
        let status = head.status;
        let client_timeout = crate::proxy::client_write_timeout(&shared.config.edge.limits);
        let mut out = Vec::with_capacity(1024 + buf.len() - head.head_len);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(head.reason(&buf));
        out.extend_from_slice(b"\r\n");
        head_fields(
            shared,
            req.asked(),
            &Fields::Plain(&head, &buf),
            false,
            true,
            &mut out,
        );
        let mut left = head.body_len.unwrap_or(0);
        let first = &buf[head.head_len..];
        out.extend_from_slice(first);
        left -= first.len();
        if write(client, &out, client_timeout, false).await.is_err() {
            return Proxied::Answered {
                status: 0,
                keep: false,
            };
        }
        let timeout = server.peer.options.read_timeout;
        while left > 0 {
            buf.clear();
            let read = read_piece(&mut stream, &mut buf, left, timeout);
            let watched = watching(pin!(read), pin!(said(client))).await;
            let piece = match watched {
                Ok(piece) => piece,
                Err(said) => {
                    return self
                        .client_spoke(shared, client, req, said, Some(status))
                        .await;
                }
            };
            if let Err(e) = piece {
                tracing::warn!("request {}: upstream failed: {e}", id_text(req.id));
                return Proxied::Answered {
                    status,
                    keep: false,
                };
            }
            left -= buf.len();
            if write(client, &buf, client_timeout, false).await.is_err() {
                return Proxied::Answered {
                    status,
                    keep: false,
                };
            }
        }
        if client.flush().await.is_err() {
            return Proxied::Answered {
                status,
                keep: false,
            };
        }
        put_idle(server.index, stream);
        Proxied::Answered { status, keep: true }
    }

    /// Sends an HTTP/2 request for the app, as `request` (the request pingora's proxy would
    /// send up, see [`crate::proxy`]'s `h2_to_app`), to the app's server `server` and its answer
    /// to the client through pingora's HTTP/2 session, without the proxy's phases: the head
    /// treated as the full path treats it ([`downstream_head`]) and written, like each piece of
    /// the body, as pingora's proxy writes them (its response tasks, through the session's
    /// modules and its HTTP/2 writer, which adds `Date` and drops the fields HTTP/2 has no
    /// place for). `Ok(false)`: the app could not be reached on a new connection, nothing was
    /// sent, the full path is to answer. An error is the full path's too: pingora's proxy
    /// answers it with the edge's `fail_to_proxy` (`502` for the app's failure before the head).
    pub async fn proxy_h2(
        &self,
        shared: &Shared,
        server: &AppServer,
        session: &mut Session,
        asked: Asked<'_>,
        request: &RequestHeader,
    ) -> pingora::Result<bool> {
        // A `GET` goes up as the bytes pingora's client session writes for it, so that a plain
        // answer is read by the edge ([`FastProxy::send_plain_h2`]); the header the edge makes
        // of it goes through [`downstream_head`], which forgets a remembered URL whose answer
        // may now be cached, so every plain answer is taken.
        let wire = (!asked.head)
            .then(|| pingora::protocols::http::v1::client::http_req_header_to_wire(request))
            .flatten();
        let up_request = match &wire {
            Some(bytes) => UpRequest::Raw(bytes, PlainOk::Any),
            None => UpRequest::Header(request),
        };
        // Each wait for the app also watches the client's stream, as pingora's proxy does: a
        // stream the client resets (or a connection it closes) ends the exchange at once, so
        // streams opened and reset in a loop do not hold the app's connections.
        // (The exchange's future in a block of its own, as in `proxy`: 4.1 KB rather than 6.6.)
        let exchanged = {
            let exchange = pin!(self.exchange(server, up_request));
            watching(exchange, pin!(stream_closed(session))).await?
        };
        let mut up = match exchanged {
            Exchanged::NotSent => return Ok(false),
            Exchanged::Failed(e) => return Err(e.into_up()),
            Exchanged::Answered(up) => up,
            Exchanged::Plain(stream, buf, head) => {
                let answer = PlainAnswer { stream, buf, head };
                return self
                    .send_plain_h2(shared, server, session, asked, answer)
                    .await;
            }
        };
        // Informational answers are written as the full path writes them (pingora's HTTP/2
        // writer leaves them out); then the final one.
        loop {
            let body_done = up.is_body_done();
            let answer = app_head(&up).map_err(|e| e.into_up())?;
            let informational = answer.status.is_informational();
            write_h2_head(shared, asked, session, Box::new(answer.clone()), body_done).await?;
            if !informational {
                if body_done {
                    keep_for_next(up, server.index).await;
                    return Ok(true);
                }
                break;
            }
            watching(pin!(up.read_response()), pin!(stream_closed(session)))
                .await?
                .map_err(|e| e.into_up())?;
        }
        loop {
            let piece = watching(pin!(up.read_body_bytes()), pin!(stream_closed(session)))
                .await?
                .map_err(|e| e.into_up())?;
            let end = piece.is_none() || up.is_body_done();
            // No body for a HEAD (the edge's `response_body_filter`).
            let piece = piece.filter(|_| !asked.head);
            session
                .write_response_tasks(vec![HttpTask::Body(piece, end)])
                .await
                .map_err(|e| e.into_down())?;
            if end {
                break;
            }
        }
        keep_for_next(up, server.index).await;
        Ok(true)
    }

    /// Sends the app's plain answer (see [`app_answer`]) to an HTTP/2 client as
    /// [`FastProxy::proxy_h2`] sends the answers pingora's client session reads: its head made
    /// into the header that session makes of it (the status, each field in the order it came,
    /// each value as pingora normalizes it, sharing the bytes read), without the names' case,
    /// which HTTP/2 does not send; treated and written the same way ([`downstream_head`],
    /// pingora's response tasks); then the body as it is read (each piece within the app's read
    /// timeout, watching the client's stream), and the connection kept for the next request.
    async fn send_plain_h2(
        &self,
        shared: &Shared,
        server: &AppServer,
        session: &mut Session,
        asked: Asked<'_>,
        answer: PlainAnswer,
    ) -> pingora::Result<bool> {
        use pingora::ErrorType::InvalidHTTPHeader;
        let PlainAnswer {
            mut stream,
            buf,
            head,
        } = answer;
        let read = Bytes::from(buf);
        let mut header = ResponseHeader::build_no_case(head.status, Some(app_answer::MAX_FIELDS))
            .map_err(|e| e.into_up())?;
        header.set_version(http::Version::HTTP_11);
        let mut appended = true;
        head.each_field(&read, |name, value| {
            let value = pingora::http::header_value_from_raw(read.slice_ref(value));
            appended = appended
                && http::HeaderName::from_bytes(name)
                    .is_ok_and(|name| header.append_header(name, value).is_ok());
        });
        if !appended {
            return Err(pingora::Error::explain(
                InvalidHTTPHeader,
                "while parsing response header",
            )
            .into_up());
        }
        let length = head.body_len.unwrap_or(0);
        let body_done = length == 0;
        write_h2_head(shared, asked, session, Box::new(header), body_done).await?;
        let timeout = server.peer.options.read_timeout;
        // The body's first bytes came with the head.
        let mut piece = read.slice(head.head_len..);
        let mut left = length;
        while left > 0 {
            if piece.is_empty() {
                let mut next = Vec::new();
                watching(
                    pin!(read_piece(&mut stream, &mut next, left, timeout)),
                    pin!(stream_closed(session)),
                )
                .await?
                .map_err(|e| e.into_up())?;
                piece = Bytes::from(next);
            }
            left -= piece.len();
            session
                .write_response_tasks(vec![HttpTask::Body(Some(piece), left == 0)])
                .await
                .map_err(|e| e.into_down())?;
            piece = Bytes::new();
        }
        put_idle(server.index, stream);
        Ok(true)
    }

    /// The full path's answer to a request the app did not answer (`fail_to_proxy`'s `502`,
    /// the connection closed after it), with its warning.
    async fn bad_gateway(
        &self,
        shared: &Shared,
        client: &mut Stream,
        req: &AppRequest<'_>,
        e: &pingora::Error,
    ) -> Proxied {
        tracing::warn!("request {}: upstream failed: {e}", id_text(req.id));
        let body = "Bad Gateway: the application did not answer\n";
        self.refuse(shared, client, req, 502, body).await
    }

    /// What the full path does when the client's connection says something while the app's
    /// answer is awaited (pingora's `read_body_or_idle` then fails the request as the client's
    /// error, and the edge's `fail_to_proxy` answers it): the connection's end ends the exchange,
    /// with nothing more sent; bytes of a request sent after this one (pipelining, which
    /// pingora's proxy does not take) get `400`, if no head has been `sent` yet. The
    /// connection to the app is dropped, and the client's closed.
    async fn client_spoke(
        &self,
        shared: &Shared,
        client: &mut Stream,
        req: &AppRequest<'_>,
        said: Said,
        sent: Option<u16>,
    ) -> Proxied {
        tracing::debug!(
            "request {}: the client {said:?} before the answer's end",
            id_text(req.id)
        );
        match (said, sent) {
            (Said::More, None) => self.refuse(shared, client, req, 400, "Bad Request\n").await,
            (_, sent) => Proxied::Answered {
                status: sent.unwrap_or(0),
                keep: false,
            },
        }
    }

    /// Sends the full path's plain answer `status` with `body` to `client` (the connection
    /// closed after it).
    async fn refuse(
        &self,
        shared: &Shared,
        client: &mut Stream,
        req: &AppRequest<'_>,
        status: u16,
        body: &str,
    ) -> Proxied {
        let Some(bytes) = plain(shared, req, status, body) else {
            return Proxied::Answered {
                status: 0,
                keep: false,
            };
        };
        let timeout = crate::proxy::client_write_timeout(&shared.config.edge.limits);
        let written = write(client, &bytes, timeout, true).await.is_ok();
        Proxied::Answered {
            status: if written { status } else { 0 },
            keep: false,
        }
    }
}

/// Writes the app's answer's head `header` to an HTTP/2 client as pingora's proxy writes it:
/// treated as the full path treats it ([`downstream_head`]), then as a response task through the
/// session's modules and its HTTP/2 writer (which adds `Date` and drops the fields HTTP/2 has
/// no place for); `body_done` ends the stream with it.
async fn write_h2_head(
    shared: &Shared,
    asked: Asked<'_>,
    session: &mut Session,
    mut header: Box<ResponseHeader>,
    body_done: bool,
) -> pingora::Result<()> {
    if !downstream_head(shared, asked, &mut header, body_done, false) {
        return pingora::Error::e_explain(pingora::ErrorType::InternalError, "the answer's head");
    }
    session
        .write_response_tasks(vec![HttpTask::Header(header, body_done)])
        .await
        .map(drop)
        .map_err(|e| e.into_down())
}

/// The app's plain answer as [`FastProxy::exchange`] read it.
struct PlainAnswer {
    /// The connection to the app.
    stream: Stream,
    /// The bytes read: the head and the body's first bytes.
    buf: Vec<u8>,
    /// The head.
    head: Plain,
}

/// Reads the next piece of a plain answer's body from the app into `buf` (empty): at most
/// `left` bytes (so that nothing past the answer is read) and 64 KiB (pingora's body reader's
/// piece), within `timeout`. The connection's end before the body's is an error, as pingora's
/// reader makes it.
async fn read_piece(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    left: usize,
    timeout: Option<Duration>,
) -> pingora::Result<()> {
    use bytes::BufMut;
    use pingora::ErrorType::{ConnectionClosed, ReadError, ReadTimedout};
    let want = left.min(64 * 1024);
    buf.reserve(want);
    let mut room = (&mut *buf).limit(want);
    let Some(read) = app_answer::within(timeout, stream.read_buf(&mut room)).await else {
        return pingora::Error::e_explain(ReadTimedout, "while reading body");
    };
    match read {
        Ok(0) => pingora::Error::e_explain(
            ConnectionClosed,
            format!("while reading body: {left} bytes still due"),
        ),
        Ok(_) => Ok(()),
        Err(e) => Err(pingora::Error::because(ReadError, "while reading body", e)),
    }
}

/// A request id as text.
fn id_text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or_default()
}

/// Writes `bytes` to the client within `timeout`, and sends them at once if `flush` (the
/// fast path's answers too).
pub async fn write(
    client: &mut Stream,
    bytes: &[u8],
    timeout: Duration,
    flush: bool,
) -> std::io::Result<()> {
    let write = async {
        client.write_all(bytes).await?;
        if flush {
            client.flush().await?;
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(done) => done,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// A short plain-text answer as the full path's `plain` writes it with the connection to be
/// closed: status line, `Content-Type`, `Content-Length`, [`decorate`]'s headers, `Date`,
/// `Connection: close`, the body (none for `HEAD`).
fn plain(shared: &Shared, req: &AppRequest<'_>, status: u16, body: &str) -> Option<Vec<u8>> {
    let mut header = ResponseHeader::build(status, Some(8)).ok()?;
    header
        .insert_header("Content-Type", "text/plain; charset=utf-8")
        .ok()?;
    header
        .insert_header("Content-Length", body.len().to_string())
        .ok()?;
    let mut bytes = Vec::with_capacity(512);
    crate::fast_path::finished_head(shared, &mut header, req.id.clone(), false, &mut bytes)?;
    if req.method != "HEAD" {
        bytes.extend_from_slice(body.as_bytes());
    }
    Some(bytes)
}

/// The request that goes up, as the full path makes it: the client's header without its
/// hop-by-hop `Connection` (pingora's upstream request policy), then the forwarding headers
/// and the request id ([`crate::proxy::forwarded`]), and the app's `Host` when the request's
/// differs.
fn upstream_request(req: &AppRequest<'_>) -> pingora::Result<RequestHeader> {
    let mut header = RequestHeader::build(
        req.method,
        req.target.as_bytes(),
        Some(req.fields.len() + 4),
    )?;
    let mut host = None;
    for field in req.fields {
        if field.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        if field.name.eq_ignore_ascii_case("host") {
            host = Some(field.value);
        }
        let value = pingora::http::header_value_from_raw(Bytes::copy_from_slice(field.value));
        header.append_header(field.name.to_string(), value)?;
    }
    crate::proxy::forwarded(
        &mut header,
        req.client.to_string(),
        true,
        req.site_host,
        req.id,
    )?;
    if host.is_none_or(|h| h != req.app_host.as_bytes()) {
        header.insert_header("Host", req.app_host)?;
    }
    Ok(header)
}

/// The bytes [`upstream_request`] makes pingora's writer send, written here without building
/// the header map, for a `GET` whose header names are all different (pingora's map writes the
/// values of one name together; `HEAD` needs the request in pingora's client session, for the
/// answer's framing): the request line, the client's fields in order but `Connection` (with
/// `Host` as the app gets it, under that name, where the request had it), then the
/// forwarding headers and the request id.
fn raw_request(req: &AppRequest<'_>) -> Option<Vec<u8>> {
    if req.method != "GET" {
        return None;
    }
    let fields = req.fields;
    for (i, field) in fields.iter().enumerate() {
        if fields[..i]
            .iter()
            .any(|other| other.name.eq_ignore_ascii_case(field.name))
        {
            return None;
        }
    }
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for f in fields {
        if f.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        if f.name.eq_ignore_ascii_case("host") && f.value != req.app_host.as_bytes() {
            field(&mut out, b"Host", req.app_host.as_bytes());
            continue;
        }
        field(&mut out, f.name.as_bytes(), f.value);
    }
    // As `forwarded` inserts them (new names: the fast path takes no request with its own).
    field(&mut out, b"X-Forwarded-For", req.client.as_bytes());
    field(&mut out, b"X-Forwarded-Proto", b"https");
    field(&mut out, b"X-Forwarded-Host", req.site_host.as_bytes());
    field(&mut out, b"X-Request-Id", req.id.as_bytes());
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// Writes a request's bytes to the app within `timeout`, as pingora's client writes a header.
async fn write_up(
    stream: &mut Stream,
    bytes: &[u8],
    timeout: Option<Duration>,
) -> pingora::Result<()> {
    use pingora::ErrorType::{WriteError, WriteTimedout};
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    let done = match timeout {
        Some(t) => match tokio::time::timeout(t, write).await {
            Ok(done) => done,
            Err(_) => return pingora::Error::e_explain(WriteTimedout, "writing the request"),
        },
        None => write.await,
    };
    done.map_err(|e| pingora::Error::because(WriteError, "writing the request", e))
}

/// What the full path does to an answer's head on its way to the client, in its order: the
/// page cache's purge header and its memory of uncacheable URLs (the edge's
/// `upstream_response_filter`), an answer with a body of no stated length made chunked
/// (pingora's proxy, for either HTTP version), `X-Cache` and [`decorate`] (the edge's
/// `response_filter`); then, for an HTTP/1.1 client (`h1`), `Date` and `Connection` (pingora's
/// HTTP/1 writer; not on an informational answer; pingora's HTTP/2 writer does its own).
/// `body_done`: no body follows. Returns whether the connection to the client may be kept
/// alive (false: the head could not be made).
fn downstream_head(
    shared: &Shared,
    req: Asked<'_>,
    header: &mut ResponseHeader,
    body_done: bool,
    h1: bool,
) -> bool {
    let cache: Option<&PageCache> = shared.page_cache;
    if page_cache::take_purge(header)
        && let Some(cache) = cache
    {
        cache.purge();
        shared.metrics.page_cache_purges.inc();
        tracing::info!(
            "request {}: the app changed its pages; page cache purged",
            id_text(req.id)
        );
    }
    forget_if_cacheable(shared, req, header);
    let informational = header.status.is_informational();
    if made_chunked(req, header, body_done) {
        header.set_version(http::Version::HTTP_11);
        if header
            .insert_header(http::header::TRANSFER_ENCODING, "chunked")
            .is_err()
        {
            return false;
        }
    }
    if cache.is_some()
        && header
            .insert_header("X-Cache", HeaderValue::from_static("BYPASS"))
            .is_err()
    {
        return false;
    }
    if decorate(shared, true, header, req.id.clone()).is_err() {
        return false;
    }
    if informational || !h1 {
        return true;
    }
    let keep = Framing::of(header, req.head) != Framing::Close;
    let connection = if keep { "keep-alive" } else { "close" };
    header
        .insert_header(http::header::DATE, get_cached_date())
        .is_ok()
        && header
            .insert_header(http::header::CONNECTION, connection)
            .is_ok()
        && keep
}

/// The head [`downstream_head`] and pingora's writer make of the app's final answer `up`,
/// written from it without copying its header map (its status line, then [`head_fields`]),
/// with its framing and whether the connection to the client is kept. `None` for an answer this does not write ([`downstream_head`]'s
/// copy does): an informational one, one with the page cache's purge header (removing a
/// field reorders pingora's map), one read without its names' case.
fn wire_head(
    shared: &Shared,
    req: Asked<'_>,
    up: &ResponseHeader,
    body_done: bool,
) -> Option<(Vec<u8>, Framing, bool)> {
    static PURGE: http::HeaderName = http::HeaderName::from_static(page_cache::PURGE_HEADER);
    if up.status.is_informational() || !up.has_case() || up.headers.contains_key(&PURGE) {
        return None;
    }
    forget_if_cacheable(shared, req, up);
    let chunked = made_chunked(req, up, body_done);
    let framing = if chunked {
        Framing::Chunked
    } else {
        Framing::of(up, req.head)
    };
    let keep = framing != Framing::Close;
    let mut out = Vec::with_capacity(1024);
    let version = if chunked {
        http::Version::HTTP_11
    } else {
        up.version
    };
    crate::file_cache::status_line(version, up, &mut out);
    head_fields(shared, req, &Fields::Header(up), chunked, keep, &mut out);
    Some((out, framing, keep))
}

/// The fields of an answer's head as [`head_fields`] takes them.
enum Fields<'a> {
    /// pingora's header, read with its names' case.
    Header(&'a ResponseHeader),
    /// A plain answer's head ([`app_answer`]) and the bytes it was read from.
    Plain(&'a Plain, &'a [u8]),
}

impl Fields<'_> {
    /// Whether there is a field named `name`.
    fn has(&self, name: &http::HeaderName) -> bool {
        match self {
            Fields::Header(up) => up.headers.contains_key(name),
            Fields::Plain(head, buf) => head.has(buf, name.as_str()),
        }
    }

    /// Each field (name as written, value) in pingora's order: the values of one name together.
    fn each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        match self {
            Fields::Header(up) => {
                for (name, value) in up.case_header_iter() {
                    f(name.as_slice(), value.as_bytes());
                }
            }
            Fields::Plain(head, buf) => head.each_field(buf, f),
        }
    }
}

/// The most fields [`head_fields`] inserts: `Transfer-Encoding`, `X-Cache`, `X-Request-Id`, HSTS,
/// the security headers, `Date` and `Connection`.
const MOST_INSERTS: usize = 6 + crate::proxy::SECURITY_HEADER_COUNT;

/// Appends the header fields of the app's final answer as the full path writes them after its
/// status line, and the blank line: each field of the app's in pingora's order (see
/// [`Fields::each`]), a field the full path inserts written in the place of the app's own of
/// that name (with the inserted name's case, one value), the others after them in the order
/// the full path inserts them (`Transfer-Encoding` when made `chunked`, the page cache's
/// `X-Cache`, [`decorate`]'s, `Date`, `Connection` as `keep` says).
fn head_fields(
    shared: &Shared,
    req: Asked<'_>,
    fields: &Fields<'_>,
    chunked: bool,
    keep: bool,
    out: &mut Vec<u8>,
) {
    let cache: Option<&PageCache> = shared.page_cache;
    // What the full path inserts, in its order: (name as compared, name as written, value).
    let date = get_cached_date();
    // (On the stack: a vector cost an allocation a request.)
    let mut slots: [(&str, &str, &[u8]); MOST_INSERTS] = [("", "", &[]); MOST_INSERTS];
    let mut count = 0;
    let mut insert = |entry| {
        slots[count] = entry;
        count += 1;
    };
    if chunked {
        insert(("transfer-encoding", "Transfer-Encoding", &b"chunked"[..]));
    }
    if cache.is_some() {
        insert(("x-cache", "X-Cache", &b"BYPASS"[..]));
    }
    insert(("x-request-id", "X-Request-Id", req.id.as_bytes()));
    if shared.sends_hsts() {
        insert((
            "strict-transport-security",
            "Strict-Transport-Security",
            shared.hsts.as_bytes(),
        ));
    }
    if shared.config.edge.headers.security_headers {
        for (key, name, value) in crate::proxy::SECURITY_HEADERS {
            // Added only when the answer has none of its own.
            if !fields.has(&key) {
                insert((name, name, value.as_bytes()));
            }
        }
    }
    insert(("date", "Date", date.as_bytes()));
    let connection: &[u8] = if keep { b"keep-alive" } else { b"close" };
    insert(("connection", "Connection", connection));
    let inserts = &slots[..count];
    let mut written = [false; MOST_INSERTS];
    fields.each(|name, value| {
        if let Some(i) = inserts
            .iter()
            .position(|(lower, _, _)| name.eq_ignore_ascii_case(lower.as_bytes()))
        {
            if !written[i] {
                written[i] = true;
                let (_, name, value) = inserts[i];
                field(out, name.as_bytes(), value);
            }
            return;
        }
        field(out, name, value);
    });
    for (i, (_, name, value)) in inserts.iter().enumerate() {
        if !written[i] {
            field(out, name.as_bytes(), value);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The edge's `upstream_response_filter` rule: a request the page cache sent to the app as an
/// URL it remembers as uncacheable, answered with an answer that may be cached, makes it forget
/// the URL (the next request fills the cache).
fn forget_if_cacheable(shared: &Shared, req: Asked<'_>, answer: &ResponseHeader) {
    if let Some(url) = req.remembered
        && let Some(cache) = shared.page_cache
        && cache.response_cacheable(answer).is_cacheable()
    {
        cache.forget_uncacheable(url);
    }
}

/// pingora's proxy rule, whatever the client's HTTP version: an answer that has a body (not to
/// `HEAD`, not `204`/`304`, not informational), neither `Transfer-Encoding` nor
/// `Content-Length`, and more to come than read with its head (`body_done`) is made chunked,
/// as HTTP/1.1.
fn made_chunked(req: Asked<'_>, answer: &ResponseHeader, body_done: bool) -> bool {
    let no_body = req.head || matches!(answer.status.as_u16(), 204 | 304);
    !no_body
        && !answer.status.is_informational()
        && !answer.headers.contains_key(http::header::TRANSFER_ENCODING)
        && !answer.headers.contains_key(http::header::CONTENT_LENGTH)
        && !body_done
}

/// Appends a header field `name: value` and its line end.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How the body of an answer is framed to the client (pingora's HTTP/1 body writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (`HEAD`, `204`, `304`).
    None,
    /// `Content-Length`: the bytes as they are.
    Length,
    /// `Transfer-Encoding: chunked`: a chunk per piece, then the last chunk.
    Chunked,
    /// Until the connection closes (an encoding other than chunked last).
    Close,
}

impl Framing {
    /// The framing of `header`'s body as pingora's writer decides it.
    fn of(header: &ResponseHeader, head: bool) -> Framing {
        if head || matches!(header.status.as_u16(), 204 | 304) {
            return Framing::None;
        }
        let headers = &header.headers;
        if let Some(te) = headers.get(http::header::TRANSFER_ENCODING) {
            let last = te
                .as_bytes()
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default();
            return if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                Framing::Close
            };
        }
        if headers.contains_key(http::header::CONTENT_LENGTH) {
            Framing::Length
        } else {
            Framing::Close
        }
    }

    /// Appends `piece` to `out` as this framing sends it, and the end of the body at `end`.
    fn frame(self, piece: Option<&Bytes>, end: bool, out: &mut Vec<u8>) {
        match self {
            Framing::None => {}
            Framing::Length | Framing::Close => {
                if let Some(piece) = piece {
                    out.extend_from_slice(piece);
                }
            }
            Framing::Chunked => {
                if let Some(piece) = piece.filter(|p| !p.is_empty()) {
                    out.extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                if end {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
        }
    }
}

/// What an HTTP/1.1 client's connection said while its request was answered.
#[derive(Debug, Clone, Copy)]
enum Said {
    /// It ended (or failed).
    Closed,
    /// It sent more bytes: the start of another request.
    More,
}

/// `work`'s result, unless the client's side (`client`: what its connection or stream says
/// next, [`said`] or [`stream_closed`]) comes first: each wait for the app also watches the
/// client, as pingora's proxy does. `work` is polled first, and the client only while it
/// waits: a piece of the answer already read costs no look at the client. Both are pinned by
/// the caller where they were made (the exchange's future holds a client session: it is not
/// moved).
async fn watching<F: Future, C: Future>(
    mut work: Pin<&mut F>,
    mut client: Pin<&mut C>,
) -> Result<F::Output, C::Output> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(done));
        }
        client.as_mut().poll(cx).map(Err)
    })
    .await
}

/// What an HTTP/1.1 client's connection says next while its request is answered (the
/// client's side of pingora's `read_body_or_idle` for a request without a body): one byte read
/// at most, which while it waits finds nothing and has the client's next bytes or end wake the
/// task.
async fn said(client: &mut Stream) -> Said {
    let mut probe = [0; 1];
    match client.read(&mut probe).await {
        Ok(0) | Err(_) => Said::Closed,
        Ok(_) => Said::More,
    }
}

/// The head of the app's answer read by `up`, or the error for one the full path refuses too:
/// none read, or a `101` (no request the edge sends asks for an upgrade).
fn app_head(up: &HttpSession) -> pingora::Result<&ResponseHeader> {
    use pingora::ErrorType::InvalidHTTPHeader;
    let Some(header) = up.resp_header() else {
        return pingora::Error::e_explain(InvalidHTTPHeader, "no answer");
    };
    if header.status == http::StatusCode::SWITCHING_PROTOCOLS {
        let why = "a 101 answer to a request that asked for no upgrade";
        return pingora::Error::e_explain(InvalidHTTPHeader, why);
    }
    Ok(header)
}

/// Waits until the client resets the HTTP/2 stream of `session`'s request (which has no body)
/// or its connection ends, and says so as a client's error.
async fn stream_closed(session: &mut Session) -> Box<pingora::Error> {
    match session.as_downstream_mut().read_body_or_idle(true).await {
        Err(e) => e.into_down(),
        Ok(_) => pingora::Error::explain(pingora::ErrorType::H2Error, "the client's stream ended")
            .into_down(),
    }
}

/// Keeps the connection of an answered request to the app's server `server` (its index in the
/// pool) for the next one, if pingora's client session says it may be (the answer read to its
/// end, keep-alive on both sides).
async fn keep_for_next(mut up: HttpSession, server: usize) {
    up.respect_keepalive();
    if let Some(stream) = up.reuse().await {
        put_idle(server, stream);
    }
}

/// This thread's most recently idle connection to the app's server `server`, if one has been
/// idle for less than [`IDLE_FOR`] (older ones, to any server, are closed).
fn take_idle(server: usize) -> Option<Stream> {
    IDLE.with_borrow_mut(|idle| {
        let i = idle.iter().rposition(|kept| kept.server == server)?;
        if idle[i].since.elapsed() < IDLE_FOR {
            Some(idle.remove(i).stream)
        } else {
            // Those kept before it are older still.
            idle.drain(..=i);
            None
        }
    })
}

/// Keeps an idle connection to the app's server `server` (closed instead when the thread keeps
/// [`IDLE_PER_THREAD`] already), and starts this thread's sweeper if it is not running.
fn put_idle(server: usize, stream: Stream) {
    IDLE.with_borrow_mut(|idle| {
        if idle.len() < IDLE_PER_THREAD {
            idle.push(Kept {
                server,
                stream,
                since: Instant::now(),
            });
        }
    });
    if !SWEEPING.replace(true) {
        // On this thread's runtime (a current-thread one: the task stays on this thread).
        tokio::spawn(sweep());
    }
}

thread_local! {
    /// Whether this thread's sweeper ([`sweep`]) runs.
    static SWEEPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Closes this thread's connections idle for [`IDLE_FOR`] (a connection the app closed is held
/// until then, not until the next request), every [`IDLE_FOR`] while it keeps any; ends when
/// it keeps none (the next kept one starts it again), so an idle edge sets no timer for it.
async fn sweep() {
    loop {
        tokio::time::sleep(IDLE_FOR).await;
        let left = IDLE.with_borrow_mut(|idle| {
            idle.retain(|kept| kept.since.elapsed() < IDLE_FOR);
            idle.len()
        });
        if left == 0 {
            SWEEPING.set(false);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(status: u16, fields: &[(&'static str, &'static str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap();
        for (k, v) in fields {
            h.append_header(*k, *v).unwrap();
        }
        h
    }

    #[test]
    fn framing_is_pingoras() {
        let of = |status, fields: &[_], head| Framing::of(&header(status, fields), head);
        assert_eq!(of(200, &[("Content-Length", "3")], false), Framing::Length);
        assert_eq!(of(200, &[("Content-Length", "3")], true), Framing::None);
        assert_eq!(of(204, &[], false), Framing::None);
        assert_eq!(of(304, &[("ETag", "\"a\"")], false), Framing::None);
        assert_eq!(
            of(200, &[("Transfer-Encoding", "gzip, chunked")], false),
            Framing::Chunked
        );
        assert_eq!(
            of(200, &[("Transfer-Encoding", "gzip")], false),
            Framing::Close
        );
        assert_eq!(of(200, &[], false), Framing::Close);
    }

    #[test]
    fn chunks_are_written_as_pingora_writes_them() {
        let mut out = Vec::new();
        Framing::Chunked.frame(Some(&Bytes::from_static(&[b'a'; 26])), false, &mut out);
        Framing::Chunked.frame(Some(&Bytes::new()), false, &mut out);
        Framing::Chunked.frame(None, true, &mut out);
        let mut want = b"1A\r\n".to_vec();
        want.extend_from_slice(&[b'a'; 26]);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, want);
    }
}
