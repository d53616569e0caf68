//! Slowloris defence: every request header (up to the blank line) must arrive within a deadline,
//! however slowly it trickles bytes. pingora's own timeouts apply per read, which a client
//! sending one byte every few seconds never trips.
//!
//! The wrapper sees the plaintext HTTP/1 stream. The first request's deadline starts with the
//! connection; on a kept-alive connection the next one's starts with its first byte after a
//! response was written (idle time before it is pingora's keep-alive timeout). An interim `1xx`
//! answer (`100 Continue`) does not start it: the request body follows, not a header. For HTTP/2
//! only the connection preface is timed; the h2 layer limits its own frames.

use async_trait::async_trait;
use pingora::apps::ServerApp;
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

/// A stream whose reads fail with `TimedOut` if a request header's `\r\n\r\n` has not arrived
/// before its deadline (for HTTP/2 the connection preface contains one).
#[derive(Debug)]
pub struct HeaderDeadline<S> {
    inner: S,
    limit: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether later requests on the connection are timed too (HTTP/1).
    per_request: bool,
    /// A response went out since the last header ended: the next byte read starts a header.
    between_requests: bool,
    tail: [u8; 3],
}

impl<S> HeaderDeadline<S> {
    /// Wraps `inner`; the first header must be complete within `limit` from now, and with
    /// `per_request` (HTTP/1) each later one within `limit` from its first byte.
    pub fn new(inner: S, limit: Duration, per_request: bool) -> Self {
        HeaderDeadline {
            inner,
            limit,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            per_request,
            between_requests: false,
            tail: [0; 3],
        }
    }

    /// Handles newly read bytes: starts the next header's deadline, or ends the current one at
    /// the blank line.
    fn saw(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.between_requests {
            self.between_requests = false;
            self.deadline = Some(Box::pin(tokio::time::sleep(self.limit)));
            self.tail = [0; 3];
        }
        if self.deadline.is_none() {
            return;
        }
        let mut seam = [0u8; 6];
        seam[..3].copy_from_slice(&self.tail);
        let k = data.len().min(3);
        seam[3..3 + k].copy_from_slice(&data[..k]);
        let end = b"\r\n\r\n";
        if seam[..3 + k].windows(4).any(|w| w == end) || data.windows(4).any(|w| w == end) {
            self.deadline = None;
        }
        if data.len() >= 3 {
            self.tail.copy_from_slice(&data[data.len() - 3..]);
        } else {
            let keep = 3 - data.len();
            self.tail.copy_within(3 - keep.., 0);
            self.tail[keep..].copy_from_slice(data);
        }
    }

    /// Notes bytes written: a response (not an interim `1xx`) ends the current request.
    fn wrote(&mut self, data: &[u8]) {
        if self.per_request && self.deadline.is_none() && !is_interim_response(data) {
            self.between_requests = true;
        }
    }
}

/// Whether `data` starts an interim (`1xx`) HTTP/1 response such as `100 Continue`.
fn is_interim_response(data: &[u8]) -> bool {
    data.len() >= 10 && data.starts_with(b"HTTP/1.") && data[8] == b' ' && data[9] == b'1'
}

impl<S: AsyncRead + Unpin> AsyncRead for HeaderDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
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

/// A plain-TCP application `A` whose requests get a header deadline.
pub struct Guarded<A> {
    app: Arc<A>,
    limit: Duration,
}

impl<A> Guarded<A> {
    /// Serves `app` (HTTP/1), each request header due within `limit`.
    pub fn new(app: A, limit: Duration) -> Self {
        Guarded {
            app: Arc::new(app),
            limit,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            tracing::error!("plain listener got a stream that is not TCP");
            return None;
        };
        self.app
            .process_new(
                Box::new(HeaderDeadline::new(*l4, self.limit, true)),
                shutdown,
            )
            .await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}
