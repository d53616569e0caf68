//! Lingering close, as nginx's `lingering_close`: a connection the server ends while the client
//! may still be sending is drained before it is closed.
//!
//! The app answers some requests before their body has arrived (413 for a body over
//! `max_body_bytes`, declared by `Content-Length`), and then ends the connection. Closing a
//! socket with unread data makes the kernel send a reset, which can reach the client before it
//! has read the answer, and makes its next write fail: the client (curl, a browser, the edge
//! relaying an upload) then reports a broken connection instead of the 413. So the socket is
//! shut down for writing (the answer is followed by a FIN) and what the client still sends is
//! read and thrown away, until it closes its side or [`LINGER_IDLE`] passes without data, for at
//! most [`LINGER_TOTAL`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The longest wait for more data from the client while draining.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);
/// The longest a closed connection is drained in all.
pub const LINGER_TOTAL: Duration = Duration::from_secs(10);

/// A TCP listener whose connections linger on close, and which lets go of its socket when the
/// server starts draining (`stop` turns true): this process accepts nothing more, and the kernel
/// keeps new connections for whoever else holds the socket (the next process, systemd).
#[derive(Debug)]
pub struct LingeringListener {
    listener: Option<TcpListener>,
    addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl LingeringListener {
    /// Accepts on `listener` until `stop` turns true.
    pub fn new(
        listener: TcpListener,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> io::Result<LingeringListener> {
        Ok(LingeringListener {
            addr: listener.local_addr()?,
            listener: Some(listener),
            stop,
        })
    }
}

impl axum::serve::Listener for LingeringListener {
    type Io = Lingering;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Lingering, SocketAddr) {
        if let Some(listener) = self.listener.as_mut() {
            tokio::select! {
                (stream, addr) = axum::serve::Listener::accept(listener) => {
                    return (Lingering(Some(stream)), addr);
                }
                _ = self.stop.wait_for(|stop| *stop) => {}
            }
        }
        // Draining: close this process's copy of the socket and accept nothing more.
        self.listener = None;
        std::future::pending().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// An accepted connection: a TCP stream that is drained in the background when dropped.
#[derive(Debug)]
pub struct Lingering(Option<TcpStream>);

impl Lingering {
    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.0
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_shutdown(cx)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if let Some(stream) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(drain(stream));
        }
    }
}

/// Sends FIN, then reads and discards until the client closes, goes quiet or time is up.
async fn drain(mut stream: TcpStream) {
    // Already shut down by hyper after a complete answer: a second shutdown changes nothing.
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER_TOTAL, async {
        loop {
            match tokio::time::timeout(LINGER_IDLE, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    })
    .await;
}

/// The peer address of a connection, for `ConnectInfo` (axum implements it for plain
/// `TcpListener`s only).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LingeringListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LingeringListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}
