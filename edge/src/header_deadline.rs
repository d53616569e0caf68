//! Slowloris defence: a connection must deliver its first request header (up to the blank line)
//! within a deadline, however slowly it trickles bytes. pingora's own timeouts apply per read,
//! which a client sending one byte every few seconds never trips.

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

/// A stream whose reads fail with `TimedOut` if the first `\r\n\r\n` has not arrived before the
/// deadline (for HTTP/2 the connection preface contains one).
#[derive(Debug)]
pub struct HeaderDeadline<S> {
    inner: S,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    tail: [u8; 3],
}

impl<S> HeaderDeadline<S> {
    /// Wraps `inner`; the header must be complete within `limit` from now.
    pub fn new(inner: S, limit: Duration) -> Self {
        HeaderDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            tail: [0; 3],
        }
    }

    /// Scans newly read bytes for the end of the header.
    fn saw(&mut self, data: &[u8]) {
        let mut window: Vec<u8> = self.tail.to_vec();
        window.extend_from_slice(&data[..data.len().min(64 * 1024)]);
        if window.windows(4).any(|w| w == b"\r\n\r\n") {
            self.deadline = None;
        }
        let n = window.len();
        if n >= 3 {
            self.tail.copy_from_slice(&window[n - 3..]);
        }
    }
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
                if self.deadline.is_some() {
                    let data = buf.filled()[before..].to_vec();
                    self.saw(&data);
                }
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

/// A plain-TCP application `A` whose connections get a header deadline.
pub struct Guarded<A> {
    app: Arc<A>,
    limit: Duration,
}

impl<A> Guarded<A> {
    /// Serves `app`, each connection's first header due within `limit`.
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
            .process_new(Box::new(HeaderDeadline::new(*l4, self.limit)), shutdown)
            .await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}
