//! Slowloris defence and the HTTP/1 header size limit, enforced while the header arrives.
//!
//! Every request header (up to the blank line) must arrive within a deadline, however slowly it
//! trickles bytes: pingora's own timeouts apply per read, which a client sending one byte every
//! few seconds never trips. And an HTTP/1 header that passes `max_header_bytes` before its
//! blank line is answered `431` there and then: pingora would buffer up to 1 MiB of it first.
//!
//! The wrapper sees the plaintext HTTP/1 stream. The first request's deadline starts with the
//! connection; on a kept-alive connection the next one's starts with its first byte after a
//! response was written (idle time before it is pingora's keep-alive timeout). An interim `1xx`
//! answer (`100 Continue`) does not start it: the request body follows, not a header. For HTTP/2
//! only the connection preface is timed; the h2 layer limits its own frames and header lists.
//!
//! A header refused for its size gets `431` with `Connection: close`; the stream is then shut
//! for writing and what the client still sends is read and dropped (until it closes, for at
//! most 1 MiB or until the header's deadline) before pingora sees the read fail, so the answer
//! is not lost to a reset (a socket closed with unread data sends RST, which discards data the
//! client has not read yet).

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{ALPN, Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest,
};
use pingora::server::ShutdownWatch;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The answer to an HTTP/1 header over `max_header_bytes`.
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n";

/// At most this much of what follows a refused header is read and dropped.
const DRAIN_MAX: usize = 1024 * 1024;

/// A stream whose reads fail with `TimedOut` if a request header's `\r\n\r\n` has not arrived
/// before its deadline (for HTTP/2 the connection preface contains one), and that answers `431`
/// itself to an HTTP/1 header growing past its size limit.
#[derive(Debug)]
pub struct HeaderDeadline<S> {
    inner: S,
    limit: Duration,
    /// Whether a header is arriving (and timed): from the connection's start, and on HTTP/1
    /// from a request's first byte, until its blank line.
    in_header: bool,
    /// When the arriving header's time is up. Made only once a read has to wait with a
    /// header incomplete ([`HeaderDeadline::arm`]): a header whose reads never wait (nearly all
    /// of them, also when the keep-alive loop reads its first byte alone:
    /// [`crate::keepalive`]) costs no timer.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the arriving header's time started (the connection's start for the first header,
    /// its first byte for a later one): its deadline is `limit` later.
    started: Option<tokio::time::Instant>,
    /// Whether later requests on the connection are timed too, and header sizes limited
    /// (HTTP/1).
    per_request: bool,
    /// A response went out since the last header ended: the next byte read starts a header.
    between_requests: bool,
    tail: [u8; 3],
    /// The most bytes an HTTP/1 header may have.
    max_bytes: usize,
    /// Bytes of the current header so far.
    header_bytes: usize,
    /// Set once a header was refused for its size: how far the answer has got.
    refusal: Option<Refusal>,
}

/// The steps of refusing an oversized header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// This many bytes of [`TOO_LARGE`] are written.
    Writing(usize),
    /// Shutting the stream for writing (TLS: `close_notify`, then the TCP FIN).
    Closing,
    /// Reading and dropping the rest; this many bytes so far.
    Draining(usize),
}

impl<S> HeaderDeadline<S> {
    /// Wraps `inner`; the first header must be complete within `limit` from now, and with
    /// `per_request` (HTTP/1) each later one within `limit` from its first byte, and none may
    /// pass `max_bytes` (request line included).
    pub fn new(inner: S, limit: Duration, per_request: bool, max_bytes: usize) -> Self {
        HeaderDeadline {
            inner,
            limit,
            in_header: true,
            deadline: None,
            started: Some(tokio::time::Instant::now()),
            per_request,
            between_requests: false,
            tail: [0; 3],
            max_bytes,
            header_bytes: 0,
            refusal: None,
        }
    }

    /// Handles newly read bytes: starts the next header's deadline, or ends the current one at
    /// the blank line. Returns whether the header is now over its size limit without having
    /// ended (HTTP/1 only).
    fn saw(&mut self, data: &[u8]) -> bool {
        if data.is_empty() {
            return false;
        }
        if self.between_requests {
            self.between_requests = false;
            self.in_header = true;
            self.deadline = None;
            self.started = None;
            self.tail = [0; 3];
            self.header_bytes = 0;
        }
        if !self.in_header {
            return false;
        }
        match header_end(&self.tail, data) {
            Some(n) => {
                // Complete: its size is for limits::check to judge, with a full answer.
                self.in_header = false;
                self.deadline = None;
                self.started = None;
                self.header_bytes += n;
                return false;
            }
            None => self.header_bytes += data.len(),
        }
        if self.started.is_none() {
            // The header's first bytes came in this read: its time starts now.
            self.started = Some(tokio::time::Instant::now());
        }
        if data.len() >= 3 {
            self.tail.copy_from_slice(&data[data.len() - 3..]);
        } else {
            let keep = 3 - data.len();
            self.tail.copy_within(3 - keep.., 0);
            self.tail[keep..].copy_from_slice(data);
        }
        self.per_request && self.header_bytes > self.max_bytes
    }

    /// The deadline of the arriving header, made now if it has none yet (a read is about to
    /// wait for more of it).
    fn arm(&mut self) {
        if self.deadline.is_none()
            && self.in_header
            && let Some(started) = self.started
        {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(started + self.limit)));
        }
    }

    /// Notes bytes written: a response (not an interim `1xx`) ends the current request.
    fn wrote(&mut self, data: &[u8]) {
        if self.per_request && !self.in_header && !is_interim_response(data) {
            self.between_requests = true;
        }
    }
}

/// How many bytes of `data` complete the header whose last bytes so far are `tail`, if its
/// blank line (`\r\n\r\n`) is in them.
fn header_end(tail: &[u8; 3], data: &[u8]) -> Option<usize> {
    const END: &[u8] = b"\r\n\r\n";
    let mut seam = [0u8; 6];
    seam[..3].copy_from_slice(tail);
    let k = data.len().min(3);
    seam[3..3 + k].copy_from_slice(&data[..k]);
    // A blank line across the boundary ends at seam index i + 4, data index i + 1.
    if let Some(i) = seam[..3 + k].windows(4).position(|w| w == END)
        && i < 3
    {
        return Some(i + 1);
    }
    data.windows(4).position(|w| w == END).map(|i| i + 4)
}

/// Whether `data` starts an interim (`1xx`) HTTP/1 response such as `100 Continue`.
fn is_interim_response(data: &[u8]) -> bool {
    data.len() >= 10 && data.starts_with(b"HTTP/1.") && data[8] == b' ' && data[9] == b'1'
}

impl<S: AsyncRead + AsyncWrite + Unpin> HeaderDeadline<S> {
    /// Answers an oversized header: `431`, shut for writing, drain; then the read fails.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            match self.refusal {
                Some(Refusal::Writing(done)) if done < TOO_LARGE.len() => {
                    match Pin::new(&mut self.inner).poll_write(cx, &TOO_LARGE[done..]) {
                        Poll::Ready(Ok(0)) => break,
                        Poll::Ready(Ok(n)) => self.refusal = Some(Refusal::Writing(done + n)),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Some(Refusal::Writing(_)) => self.refusal = Some(Refusal::Closing),
                Some(Refusal::Closing) => match Pin::new(&mut self.inner).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => self.refusal = Some(Refusal::Draining(0)),
                    Poll::Ready(Err(_)) => break,
                    Poll::Pending => return Poll::Pending,
                },
                Some(Refusal::Draining(drained)) if drained < DRAIN_MAX => {
                    self.arm();
                    let expired = self
                        .deadline
                        .as_mut()
                        .is_none_or(|d| d.as_mut().poll(cx).is_ready());
                    if expired {
                        break;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            self.refusal = Some(Refusal::Draining(drained + buf.filled().len()));
                        }
                        Poll::Ready(_) => break,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                _ => break,
            }
        }
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "request header over limits.max_header_bytes (answered 431)",
        )))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeaderDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.refusal.is_some() {
            return self.poll_refuse(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if self.saw(&buf.filled()[before..]) {
                    // pingora never sees this header: the answer comes from here.
                    buf.set_filled(before);
                    self.refusal = Some(Refusal::Writing(0));
                    return self.poll_refuse(cx);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.arm();
                let expired = match self.deadline.as_mut() {
                    Some(d) => d.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request header not complete in time (slowloris defence)",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

use std::future::Future;

impl<S: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
        {
            self.wrote(&buf[..n]);
        }
        written
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            self.wrote(&first[..first.len().min(n)]);
        }
        written
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl<S: Shutdown + Send> Shutdown for HeaderDeadline<S> {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl<S: UniqueID> UniqueID for HeaderDeadline<S> {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl<S: Ssl> Ssl for HeaderDeadline<S> {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl<S: GetTimingDigest> GetTimingDigest for HeaderDeadline<S> {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl<S: GetProxyDigest> GetProxyDigest for HeaderDeadline<S> {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl<S: GetSocketDigest> GetSocketDigest for HeaderDeadline<S> {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl<S: Send> Peek for HeaderDeadline<S> {}

/// A plain-TCP application `A` whose requests get a header deadline and size limit.
pub struct Guarded<A> {
    app: Arc<A>,
    limit: Duration,
    max_bytes: usize,
    keepalive: Duration,
}

impl<A> Guarded<A> {
    /// Serves `app` (HTTP/1, through [`crate::keepalive::serve_http1`]), each request header
    /// due within `limit` and at most `max_bytes`, each next request's first byte within
    /// `keepalive`.
    pub fn new(app: A, limit: Duration, max_bytes: usize, keepalive: Duration) -> Self {
        Guarded {
            app: Arc::new(app),
            limit,
            max_bytes,
            keepalive,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            tracing::error!("plain listener got a stream that is not TCP");
            return None;
        };
        let stream: Stream = Box::new(HeaderDeadline::new(*l4, self.limit, true, self.max_bytes));
        crate::keepalive::serve_http1(&self.app, stream, shutdown, self.keepalive, None).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blank_line_is_found_across_reads() {
        assert_eq!(header_end(&[0; 3], b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(header_end(b"a\r\n", b"\r\nbody"), Some(2));
        assert_eq!(header_end(b"\r\n\r", b"\nX"), Some(1));
        assert_eq!(header_end(b"\n\r\n", b"X\r\n"), None);
        assert_eq!(header_end(&[0; 3], b"\r\n\r"), None);
    }

    #[tokio::test]
    async fn an_http1_header_over_the_limit_is_answered_431_before_it_ends() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut guarded = HeaderDeadline::new(server, Duration::from_secs(60), true, 1000);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ")
            .await
            .expect("write");
        client.write_all(&[b'a'; 2000]).await.expect("write");
        // The client is done sending: the drain ends.
        AsyncWriteExt::shutdown(&mut client)
            .await
            .expect("shutdown");
        let mut buf = vec![0u8; 4096];
        let mut got = 0;
        let err = loop {
            match guarded.read(&mut buf[got..]).await {
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        assert!(
            got <= 1000,
            "the oversized header was handed on ({got} bytes)"
        );
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 431 "), "{answer:?}");

        // A header within the limit passes untouched.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut guarded = HeaderDeadline::new(server, Duration::from_secs(5), true, 1000);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let n = guarded.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }
}
