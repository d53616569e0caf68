//! The HTTPS listener: the edge does the rustls handshake itself (so it can offer ALPN `h2`,
//! `http/1.1` and `acme-tls/1` on one port) and hands every HTTP connection to pingora's proxy.
//!
//! Certificates come from the ACME resolver; until the CA has issued one, a self-signed
//! certificate for the site's names stands in, so HTTPS never fails for lack of a certificate.

use crate::acme::AcmeCerts;
use crate::tls_idle::{READ_BUFFER_RELEASE, ReadBufferRelease};
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::CustomALPN;
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The cryptography of every TLS connection the edge makes or takes: rustls' aws-lc-rs
/// provider, whose key exchange groups put the post-quantum hybrid `X25519MLKEM768` first (the
/// group browsers offer first), then `X25519`, `secp256r1`, `secp384r1`; its cipher suites with
/// AES-128-GCM first in each TLS version (rustls lists AES-256-GCM first), then AES-256-GCM,
/// then ChaCha20-Poly1305, and the HTTPS listener picks by this order, not the client's
/// ([`server_config`]).
///
/// Why AES-128: it is what browsers choose (Chrome and Firefox offer `TLS_AES_128_GCM_SHA256`
/// first), it matches the 128-bit strength of the rest of the handshake (X25519 or P-256, the
/// P-256 certificate), and its TLS 1.3 suite hashes with SHA-256, which this library runs on the
/// CPU's SHA instructions, where the SHA-384 of `TLS_AES_256_GCM_SHA384` runs in generic code on
/// AMD processors (aws-lc uses its vector SHA-512 on Intel only): the key schedule of a full
/// handshake was a fifth of its CPU time. Clients that offer only AES-256 or ChaCha20 still get
/// it, and a client that lists ChaCha20-Poly1305 before AES-GCM (a phone without AES
/// instructions) gets its own choice ([`TlsApp`], the rule Go's TLS stack and so Caddy follow).
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        (
            matches!(s, rustls::SupportedCipherSuite::Tls12(_)),
            cipher_rank(s.suite()),
        )
    });
    Arc::new(provider)
}

/// AES-128-GCM, then AES-256-GCM, then the rest (ChaCha20-Poly1305).
fn cipher_rank(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as C;
    match suite {
        C::TLS13_AES_128_GCM_SHA256
        | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        C::TLS13_AES_256_GCM_SHA384
        | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

/// Picks the certificate for a handshake: the ACME challenge certificate for `acme-tls/1`
/// handshakes, otherwise the CA-issued certificate (as deployed by rustls-acme, or as read
/// from the cache at start until then), otherwise the self-signed stand-in.
#[derive(Debug)]
pub struct EdgeResolver {
    acme: Option<AcmeCerts>,
    self_signed: Arc<CertifiedKey>,
}

impl EdgeResolver {
    /// A resolver for `names`, using `acme`'s certificates when it has them.
    pub fn new(names: &[String], acme: Option<AcmeCerts>) -> Result<Self, String> {
        Ok(EdgeResolver {
            acme,
            self_signed: Arc::new(self_signed(names)?),
        })
    }
}

impl ResolvesServerCert for EdgeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match &self.acme {
            Some(acme) if rustls_acme::is_tls_alpn_challenge(&hello) => {
                acme.resolver.resolve(hello)
            }
            Some(acme) => acme
                .resolver
                .resolve(hello)
                .or_else(|| acme.cached.clone())
                .or_else(|| Some(self.self_signed.clone())),
            None => Some(self.self_signed.clone()),
        }
    }
}

/// A fresh self-signed certificate (ECDSA P-256) for `names`.
fn self_signed(names: &[String]) -> Result<CertifiedKey, String> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| format!("cannot make the self-signed certificate: {e}"))?;
    let key_der =
        rustls::pki_types::PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into());
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der)
        .map_err(|e| format!("cannot use the self-signed key: {e}"))?;
    Ok(CertifiedKey::new(vec![generated.cert.der().clone()], key))
}

/// Builds the rustls server configuration of the HTTPS listener.
pub fn server_config(resolver: Arc<EdgeResolver>) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS server setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"acme-tls/1".to_vec()];
    // Sessions resume from stateless tickets (RFC 8446 §4.6.1, RFC 5077 for TLS 1.2), sealed
    // with a key rotated every 6 hours and kept for 6 more (rustls's `Ticketer`), as Caddy and
    // nginx (`ssl_session_tickets on`) do. rustls's default keeps sessions in a memory cache of
    // 256 instead: a visitor came back to a full handshake once 128 others had connected since.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("TLS session tickets: {e}"))?;
    // The server's order of cipher suites (see `provider`), as nginx's
    // `ssl_prefer_server_ciphers on`; [`TlsApp`] hands clients that prefer ChaCha20 a copy
    // that follows theirs.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// The HTTPS application: TLS handshake (tokio-rustls), then the HTTP application `A`
/// (pingora's proxy) over the decrypted stream: HTTP/2 as pingora serves it, HTTP/1 through
/// [`crate::keepalive::serve_http1`].
///
/// The handshake reads the client's hello first: a client whose first AES-GCM or
/// ChaCha20-Poly1305 suite is ChaCha20 most likely has no AES instructions, and it gets the
/// configuration that follows the client's order ([`prefers_chacha20`]); every other client
/// gets the server's order, AES-128-GCM first ([`provider`]).
pub struct TlsApp<A> {
    /// The server's order of cipher suites.
    server_order: Arc<rustls::ServerConfig>,
    /// The same configuration, following the client's order.
    client_order: Arc<rustls::ServerConfig>,
    http: Arc<A>,
    handshake_timeout: std::time::Duration,
    max_header_bytes: usize,
    /// How long a kept-alive HTTP/1 connection may wait for its next request.
    keepalive: std::time::Duration,
    /// Whether connections move to the I/O driver of the thread serving them
    /// ([`on_this_thread`]): with more than one worker thread.
    move_to_serving_thread: bool,
    /// The HTTP/1.1 fast path for small files, if set ([`TlsApp::with_fast_path`]).
    fast: Option<crate::fast_path::FastPath>,
}

impl<A> TlsApp<A> {
    /// Serves `http` over TLS with `config`; a handshake slower than `handshake_timeout` is cut,
    /// and so is each HTTP/1 request header (see [`crate::header_deadline`]), which may have at
    /// most `max_header_bytes`; an HTTP/1 connection with no next request within `keepalive` is
    /// closed. With `threads` worker threads (more than one), each connection
    /// is moved to the I/O driver of the thread that serves it ([`on_this_thread`]).
    pub fn new(
        config: Arc<rustls::ServerConfig>,
        http: A,
        handshake_timeout: std::time::Duration,
        max_header_bytes: usize,
        keepalive: std::time::Duration,
        threads: usize,
    ) -> Self {
        let mut client_order = (*config).clone();
        client_order.ignore_client_order = false;
        TlsApp {
            server_order: config,
            client_order: Arc::new(client_order),
            http: Arc::new(http),
            handshake_timeout,
            max_header_bytes,
            keepalive,
            move_to_serving_thread: threads > 1,
            fast: None,
        }
    }

    /// Answers HTTP/1.1 requests for the small-file cache's files with `fast` first
    /// ([`crate::fast_path`]).
    pub fn with_fast_path(mut self, fast: crate::fast_path::FastPath) -> Self {
        self.fast = Some(fast);
        self
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for TlsApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The listener is plain TCP: the stream is a pingora L4 stream.
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            tracing::error!("HTTPS listener got a stream that is not TCP");
            return None;
        };
        let l4 = if self.move_to_serving_thread {
            on_this_thread(*l4)
        } else {
            *l4
        };
        let handshake = async {
            let start =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), l4)
                    .await?;
            let config = if prefers_chacha20(start.client_hello().cipher_suites()) {
                &self.client_order
            } else {
                &self.server_order
            };
            start.into_stream(config.clone()).await
        };
        // Boxed, like the serving below: a connection's future is as large as its largest
        // state, and the handshake's (the acceptor, rustls' state as it starts) would otherwise
        // stay part of every connection's memory for as long as it lives.
        let tls = match tokio::time::timeout(self.handshake_timeout, Box::pin(handshake)).await {
            Ok(Ok(tls)) => TlsStream::new(tls),
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake failed: {e}");
                return None;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return None;
            }
        };
        let per_request = match &tls.alpn {
            Some(ALPN::H2) => false,
            Some(ALPN::H1) | None => true,
            Some(_) => {
                // `acme-tls/1`: the handshake itself was the answer to the CA's TLS-ALPN-01
                // check.
                tracing::info!("answered an ACME TLS-ALPN-01 validation");
                return None;
            }
        };
        // HTTP/1 requests are each timed; on HTTP/2 only the preface is.
        let stream: Stream = Box::new(crate::header_deadline::HeaderDeadline::new(
            tls,
            self.handshake_timeout,
            per_request,
            self.max_header_bytes,
        ));
        if per_request {
            let fast = self.fast.as_ref();
            Box::pin(crate::keepalive::serve_http1(
                &self.http,
                stream,
                shutdown,
                self.keepalive,
                fast,
            ))
            .await
        } else {
            self.http.process_new(stream, shutdown).await
        }
    }

    async fn cleanup(&self) {
        self.http.cleanup().await;
    }
}

/// The connection `stream`, registered with the I/O driver of the thread that runs this task.
///
/// pingora accepts every connection of a listener on one thread, where the socket is
/// registered with that thread's I/O driver (its epoll), and spawns the connection's task on a
/// random worker thread (`pingora_runtime::current_handle`, without work stealing). Left so,
/// every readiness event of a connection served by another thread is seen by the accepting
/// thread first, which then wakes the serving thread through its eventfd: two thread wake-ups
/// per event for the connection's whole life, and the serving thread waits while the
/// accepting one is busy. Measured with `strace -f` on a Connection: close request: the
/// ClientHello, the client's Finished and the request each arrived as an `epoll_wait` on the
/// accepting thread, then an eventfd `write` to the serving one.
///
/// Here the socket moves: a duplicate of its descriptor is registered with this thread's
/// driver, then pingora's stream is dropped (deregistered from the accepting thread's epoll,
/// its descriptor closed). A handful of system calls once per connection. The new stream has
/// no L4 buffers (TLS reads into rustls' own buffer, and [`TlsStream`] coalesces writes) and
/// keeps the client's address. If the descriptor cannot be duplicated (out of descriptors),
/// the stream is served as it came.
// One of the workspace's two unsafe blocks (the other is testkit's `die_with_this_process`).
#[allow(unsafe_code)] // One `BorrowedFd::borrow_raw`, see SAFETY below.
pub fn on_this_thread(stream: L4Stream) -> L4Stream {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the descriptor is `stream`'s own, open until `stream` is dropped, which is after
    // the borrow ends (pingora's stream implements `AsRawFd` but not `AsFd`).
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let Ok(fd) = borrowed.try_clone_to_owned() else {
        return stream;
    };
    // The duplicate shares the socket's open file description: non-blocking, TCP_NODELAY.
    let tcp = match tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd)) {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::debug!("cannot register a connection with its thread's driver: {e}");
            return stream;
        }
    };
    let peer = stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().cloned());
    drop(stream);
    let mut moved = L4Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(moved.as_raw_fd());
    let _ = digest.peer_addr.set(peer);
    moved.set_socket_digest(digest);
    moved
}

/// Whether the first AES-GCM or ChaCha20-Poly1305 suite a client offers is ChaCha20-Poly1305:
/// clients list it first when they have no AES instructions, where AES-GCM is slow (Go's
/// `aesgcmPreferred`, inverted).
pub fn prefers_chacha20(offered: &[rustls::CipherSuite]) -> bool {
    use rustls::CipherSuite as C;
    offered
        .iter()
        .find_map(|suite| match suite {
            C::TLS13_CHACHA20_POLY1305_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Some(true),
            C::TLS13_AES_128_GCM_SHA256
            | C::TLS13_AES_256_GCM_SHA384
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// A TLS connection as pingora's HTTP layer takes it: tokio-rustls' server stream over the
/// TCP stream, with the negotiated ALPN protocol and the TCP stream's identity and digests.
/// (The edge does TLS itself rather than through pingora's `rustls` feature, whose
/// pingora-rustls crate pins rustls to the ring provider and the unmaintained
/// rustls-pemfile.)
///
/// On HTTP/1 it holds back writes until the next flush while they fit one TLS record
/// ([`COALESCE_MAX`]): pingora writes a response's header and its body separately, and each
/// write is its own record, and — the body's record being larger than the TCP stream's write
/// buffer (1460 bytes) — its own `send`. Held together, a header and a body of up to 16 KiB
/// are one record and one `send`, as nginx sends them (its `ssl_buffer_size` is 16k). A write
/// of at least [`DIRECT_MIN`] bytes (a body) after held bytes (its header) that fits the record
/// with them is handed to TLS at once with them, as two slices of one vectored write: the same
/// one record and `send`, without copying the body into the buffer first (rustls copies it into
/// its record in any case). The buffer grows per response to what it holds and is freed when it
/// is flushed, so an idle connection holds none.
///
/// On HTTP/2 it cuts writes at TLS record boundaries ([`TlsStream::poll_write_aligned`]): the
/// h2 layer writes DATA frames of up to 16 KiB (the client's largest frame size) with their
/// 9-byte heads, four to a write (`third_party/h2`'s `COALESCE_LIMIT`), and rustls made each
/// such write full 16 KiB records and a short one of the heads' bytes left over, each a
/// separate seal on the edge and a separate decryption and read on the client (when the h2
/// layer wrote a frame at a time, half the records were such 9-byte ones). Held back and sent
/// with the next write, the leftover bytes begin the next full record: one 16 KiB record per
/// 16 KiB of body, as nginx sends it (`ssl_buffer_size` 16k). (A file's chunks on HTTP/2 fill
/// four records exactly, `static_files::H2_CHUNK`, so that nothing is left over when the next
/// chunk is not read yet.)
#[derive(Debug)]
pub struct TlsStream {
    inner: tokio_rustls::server::TlsStream<L4Stream>,
    alpn: Option<ALPN>,
    /// Whether small writes are held back (HTTP/1); otherwise writes are aligned to records
    /// (HTTP/2).
    coalesce: bool,
    /// Written but not yet handed to TLS; empty with no capacity between flushes.
    pending: Vec<u8>,
    /// HTTP/2: a flush left a record's leftover held back (see [`TlsStream::poll_flush`]).
    flush_deferred: bool,
    /// Gives TLS's read buffer back while the connection waits idle ([`crate::tls_idle`]).
    idle: ReadBufferRelease,
}

/// The most plaintext held back: one TLS record's worth.
pub const COALESCE_MAX: usize = 16 * 1024;

/// The smallest HTTP/1 write sent at once with what is held (rather than copied to it until the
/// flush): a body after its header. Smaller writes are held, to share a record with what
/// follows.
pub const DIRECT_MIN: usize = 4 * 1024;

/// The plaintext of a full TLS record (rustls' largest fragment).
pub const RECORD_PLAINTEXT: usize = 16 * 1024;

/// The most an HTTP/2 write leaves held back past its last full record (copied, to begin the
/// next record): a longer leftover is handed to TLS at once, as a short record, rather than
/// copied.
pub const ALIGN_TAIL_MAX: usize = 4 * 1024;

impl TlsStream {
    fn new(inner: tokio_rustls::server::TlsStream<L4Stream>) -> Self {
        let alpn = match inner.get_ref().1.alpn_protocol() {
            Some(b"h2") => Some(ALPN::H2),
            Some(b"http/1.1") => Some(ALPN::H1),
            Some(other) => Some(ALPN::Custom(CustomALPN::new(other.to_vec()))),
            None => None,
        };
        let coalesce = !matches!(alpn, Some(ALPN::H2));
        TlsStream {
            inner,
            alpn,
            coalesce,
            pending: Vec::new(),
            flush_deferred: false,
            idle: ReadBufferRelease::new(READ_BUFFER_RELEASE, !coalesce),
        }
    }

    /// Hands what is held back to TLS; frees the buffer once it is all written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Freed: an idle connection holds no buffer.
        self.pending = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// An HTTP/2 write: see [`poll_write_aligned`].
    fn poll_write_aligned(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if bufs.iter().any(|b| !b.is_empty()) {
            self.flush_deferred = false;
        }
        poll_write_aligned(Pin::new(&mut self.inner), cx, &mut self.pending, bufs)
    }

    /// The key exchange group the handshake used (`X25519MLKEM768`, `X25519` …).
    pub fn key_exchange_group(&self) -> Option<rustls::NamedGroup> {
        self.inner
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|g| g.name())
    }

    fn tcp(&self) -> &L4Stream {
        self.inner.get_ref().0
    }
}

/// The most slices of `bufs` handed to TLS with what is held (h2 writes one or two, HTTP/1's
/// direct write one).
const HELD_WRITE_SLICES: usize = 8;

/// Writes what is held (`pending`), then `bufs` cut to their first `cut` bytes, to `w` as one
/// vectored write. Ready with `Some((from_bufs, offered))` when all that was held went:
/// `pending` is then empty (its capacity kept), `from_bufs` the bytes of `bufs` written (0 when
/// only what was held went) and `offered` those handed over (`cut`, or less past
/// [`HELD_WRITE_SLICES`] slices); with `None` when `w` took only part of what was held, which is
/// drained from `pending`: the caller writes again. A write of 0 bytes is a
/// [`std::io::ErrorKind::WriteZero`] error, so every `None` is progress: a stream that takes
/// nothing would otherwise have its caller retry forever, spinning the task.
fn poll_write_held<W: AsyncWrite + Unpin>(
    w: Pin<&mut W>,
    cx: &mut Context<'_>,
    pending: &mut Vec<u8>,
    bufs: &[std::io::IoSlice<'_>],
    cut: usize,
) -> Poll<std::io::Result<Option<(usize, usize)>>> {
    let held = pending.len();
    let mut slices = [std::io::IoSlice::new(&[]); HELD_WRITE_SLICES + 1];
    let mut n = 0;
    if held > 0 {
        slices[0] = std::io::IoSlice::new(pending);
        n = 1;
    }
    let mut left = cut;
    for b in bufs.iter().take(HELD_WRITE_SLICES) {
        if left == 0 {
            break;
        }
        let take = b.len().min(left);
        slices[n] = std::io::IoSlice::new(&b[..take]);
        n += 1;
        left -= take;
    }
    let offered = cut - left;
    let written = std::task::ready!(w.poll_write_vectored(cx, &slices[..n]))?;
    if written == 0 && held + offered > 0 {
        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
    }
    if written < held {
        pending.drain(..written);
        return Poll::Ready(Ok(None));
    }
    pending.clear();
    Poll::Ready(Ok(Some((written - held, offered))))
}

/// An HTTP/2 write: what is held back and `bufs` handed to TLS up to the last full
/// record's end, the rest (when at most [`ALIGN_TAIL_MAX`]) held back for the next write or
/// the flush; a write that does not complete a record is held back whole. (`w` is the TLS
/// stream, `pending` what [`TlsStream`] holds back.)
fn poll_write_aligned<W: AsyncWrite + Unpin>(
    mut w: Pin<&mut W>,
    cx: &mut Context<'_>,
    pending: &mut Vec<u8>,
    bufs: &[std::io::IoSlice<'_>],
) -> Poll<std::io::Result<usize>> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total == 0 {
        return Poll::Ready(Ok(0));
    }
    loop {
        let held = pending.len();
        let whole = (held + total) / RECORD_PLAINTEXT * RECORD_PLAINTEXT;
        if whole == 0 {
            for b in bufs {
                pending.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        let hold_tail = held + total - whole <= ALIGN_TAIL_MAX;
        // `bufs` cut at the last full record's end when the tail is held back.
        let cut = if hold_tail { whole - held } else { total };
        let Some((from_bufs, offered)) =
            std::task::ready!(poll_write_held(w.as_mut(), cx, pending, bufs, cut))?
        else {
            // TLS took only part of what was held: again with the rest.
            continue;
        };
        if from_bufs == offered && hold_tail {
            let mut skip = from_bufs;
            for b in bufs {
                let skipped = skip.min(b.len());
                pending.extend_from_slice(&b[skipped..]);
                skip -= skipped;
            }
            return Poll::Ready(Ok(total));
        }
        if from_bufs > 0 {
            return Poll::Ready(Ok(from_bufs));
        }
        // Only what was held went: the records are counted again from `bufs`.
    }
}

/// An HTTP/1 body written at once after what is held (its header): both handed to `w` in one
/// vectored write, draining a partial write of what was held and writing again. Ready with
/// `Some(n)`, the bytes of `buf` written, or `None` when only what was held went (the caller
/// holds `buf`); `pending` is freed either way, as a flush frees it.
fn poll_write_direct<W: AsyncWrite + Unpin>(
    mut w: Pin<&mut W>,
    cx: &mut Context<'_>,
    pending: &mut Vec<u8>,
    buf: &[u8],
) -> Poll<std::io::Result<Option<usize>>> {
    let bufs = [std::io::IoSlice::new(buf)];
    loop {
        if let Some((n, _)) =
            std::task::ready!(poll_write_held(w.as_mut(), cx, pending, &bufs, buf.len()))?
        {
            *pending = Vec::new();
            return Poll::Ready(Ok((n > 0).then_some(n)));
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        match poll {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.idle.read(),
            Poll::Pending => {
                let inner = &mut this.inner;
                this.idle
                    .wait(cx, || inner.get_mut().1.release_read_buffer());
            }
            _ => {}
        }
        poll
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if !this.coalesce {
            return this.poll_write_aligned(cx, &[std::io::IoSlice::new(buf)]);
        }
        if !this.pending.is_empty() && this.pending.len() + buf.len() > COALESCE_MAX {
            std::task::ready!(this.poll_drain(cx))?;
        }
        if this.pending.is_empty() && buf.len() >= COALESCE_MAX {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if !this.pending.is_empty() && buf.len() >= DIRECT_MIN {
            // A body after a held header that fits one record with it: both handed to TLS in
            // one vectored write, one record and one send as if held until the flush, without
            // copying the body into the buffer first (rustls copies it into its record anyway).
            if let Some(n) = std::task::ready!(poll_write_direct(
                Pin::new(&mut this.inner),
                cx,
                &mut this.pending,
                buf
            ))? {
                return Poll::Ready(Ok(n));
            }
            // Only what was held went: `buf` is held below.
        }
        // Grown to what is held, not COALESCE_MAX at once: most responses are a few hundred
        // bytes (a 304, a proxied API answer).
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    /// On HTTP/2 the h2 layer flushes after every DATA frame, so a record's leftover held back
    /// at a flush would be the leftover of every frame: the first flush after a write keeps a
    /// short leftover ([`ALIGN_TAIL_MAX`]) and wakes the connection's task, whose next poll
    /// flushes again (h2 flushes on every poll of an open connection). If the task wrote the
    /// next frame meanwhile, the leftover began its record; if not, this second flush sends it.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.coalesce
            && !self.flush_deferred
            && !self.pending.is_empty()
            && self.pending.len() <= ALIGN_TAIL_MAX
        {
            self.flush_deferred = true;
            cx.waker().wake_by_ref();
            return Pin::new(&mut self.inner).poll_flush(cx);
        }
        self.flush_deferred = false;
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if !self.coalesce {
            return self.poll_write_aligned(cx, bufs);
        }
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for TlsStream {
    async fn shutdown(&mut self) {
        // What is held back, close_notify, then the TCP write side.
        if let Err(e) = tokio::io::AsyncWriteExt::shutdown(self).await {
            tracing::debug!("TLS shutdown: {e}");
        }
    }
}

impl UniqueID for TlsStream {
    fn id(&self) -> UniqueIDType {
        self.tcp().id()
    }
}

impl Ssl for TlsStream {
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.alpn.clone()
    }
}

impl GetTimingDigest for TlsStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.tcp().get_timing_digest()
    }
}

impl GetProxyDigest for TlsStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.tcp().get_proxy_digest()
    }
}

impl GetSocketDigest for TlsStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.tcp().get_socket_digest()
    }
}

#[async_trait]
impl Peek for TlsStream {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::{AcmeService, StateCache};
    use crate::metrics::Metrics;
    use rustls::pki_types::CertificateDer;

    /// A CA and a certificate for the site's names signed by it, in rustls-acme's cache format.
    fn ca_and_cached_pem(names: &[String]) -> (CertificateDer<'static>, String) {
        let ca = onebox_testkit::TestCa::new("onebox test CA").expect("CA");
        let leaf = ca.leaf(names).expect("leaf");
        (ca.cert_der(), leaf.key_chain_pem(&ca))
    }

    /// A TLS handshake in memory for `www.foobar.com` against `server`, verifying with `root`.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        root: CertificateDer<'static>,
    ) -> Result<(), rustls::Error> {
        handshake_as(server, client_config(root)?).map(|_| ())
    }

    /// A client trusting `root` only; it keeps the sessions it is given (rustls's default).
    fn client_config(
        root: CertificateDer<'static>,
    ) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).expect("root");
        Ok(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }

    /// [`handshake`] by `client`; the tickets the server sends after it are delivered to the
    /// client. Returns whether the handshake was a full or a resumed one.
    fn handshake_as(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Result<rustls::HandshakeKind, rustls::Error> {
        let name = rustls::pki_types::ServerName::try_from("www.foobar.com").expect("name");
        let mut client = rustls::ClientConnection::new(client, name)?;
        let mut server = rustls::ServerConnection::new(server)?;
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return client
                    .handshake_kind()
                    .ok_or_else(|| rustls::Error::General("no handshake kind".into()));
            }
            let mut buf = Vec::new();
            client.write_tls(&mut buf).expect("write");
            server.read_tls(&mut buf.as_slice()).expect("read");
            server.process_new_packets()?;
            buf.clear();
            server.write_tls(&mut buf).expect("write");
            client.read_tls(&mut buf.as_slice()).expect("read");
            client.process_new_packets()?;
        }
        Err(rustls::Error::General("handshake did not finish".into()))
    }

    /// A visitor who comes back after hundreds of others resumes its session (a ticket the
    /// edge sealed, not a cache entry): rustls's default cache of 256 sessions had forgotten it
    /// (each full handshake stores two), and the handshake was a full one again.
    #[test]
    fn a_visitor_resumes_after_hundreds_of_others() {
        let names = vec!["www.foobar.com".to_string()];
        let resolver = EdgeResolver::new(&names, None).expect("resolver");
        let root = resolver.self_signed.cert[0].clone();
        let server = server_config(Arc::new(resolver)).expect("TLS config");
        let visitor = client_config(root.clone()).expect("client");
        let kind = |client| handshake_as(server.clone(), client).expect("handshake");
        assert_eq!(kind(visitor.clone()), rustls::HandshakeKind::Full);
        for _ in 0..300 {
            assert_eq!(
                kind(client_config(root.clone()).expect("client")),
                rustls::HandshakeKind::Full
            );
        }
        assert_eq!(kind(visitor), rustls::HandshakeKind::Resumed);
    }

    /// With the server's order, a client that prefers AES-256-GCM (OpenSSL's order: curl, wrk)
    /// gets AES-128-GCM, as browsers choose it; one that offers AES-256-GCM alone gets that.
    /// (Clients preferring ChaCha20 get the client's order: `connections.rs` checks it
    /// through the edge.)
    #[test]
    fn the_server_picks_aes_128_gcm_whatever_the_client_prefers() {
        use rustls::CipherSuite as C;
        let names = vec!["www.foobar.com".to_string()];
        let resolver = EdgeResolver::new(&names, None).expect("resolver");
        let server_tls = server_config(Arc::new(resolver)).expect("TLS config");
        let chosen = |offer: &[C]| {
            let mut client_provider = rustls::crypto::aws_lc_rs::default_provider();
            client_provider.cipher_suites = offer
                .iter()
                .map(|c| {
                    *client_provider
                        .cipher_suites
                        .iter()
                        .find(|s| s.suite() == *c)
                        .expect("suite")
                })
                .collect();
            let client = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("client")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from("www.foobar.com").expect("name");
            let mut client = rustls::ClientConnection::new(Arc::new(client), name).expect("c");
            let mut server = rustls::ServerConnection::new(server_tls.clone()).expect("s");
            let mut hello = Vec::new();
            client.write_tls(&mut hello).expect("write");
            server.read_tls(&mut hello.as_slice()).expect("read");
            server.process_new_packets().expect("client hello");
            server.negotiated_cipher_suite().expect("chosen").suite()
        };
        assert_eq!(
            chosen(&[C::TLS13_AES_256_GCM_SHA384, C::TLS13_AES_128_GCM_SHA256]),
            C::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(
            chosen(&[C::TLS13_AES_256_GCM_SHA384]),
            C::TLS13_AES_256_GCM_SHA384
        );
    }

    /// ChaCha20 is preferred when it comes before every AES-GCM suite the client lists;
    /// suites of neither kind do not count.
    #[test]
    fn chacha20_is_preferred_only_when_listed_before_aes_gcm() {
        use rustls::CipherSuite as C;
        let chacha = C::TLS13_CHACHA20_POLY1305_SHA256;
        let aes = C::TLS13_AES_128_GCM_SHA256;
        let other = C::TLS_EMPTY_RENEGOTIATION_INFO_SCSV;
        assert!(prefers_chacha20(&[other, chacha, aes]));
        assert!(!prefers_chacha20(&[other, aes, chacha]));
        assert!(!prefers_chacha20(&[
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            chacha
        ]));
        assert!(prefers_chacha20(&[
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        ]));
        assert!(!prefers_chacha20(&[other]));
        assert!(!prefers_chacha20(&[]));
    }

    /// The cached certificate is served from the first handshake, before the ACME background
    /// service has run at all (right after a start or a reload); without it, the self-signed
    /// stand-in is served, which the client refuses.
    #[test]
    fn the_cached_certificate_is_served_before_the_acme_service_runs() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().display().to_string();
        let site = dir.path().join("site.toml");
        std::fs::write(
            &site,
            format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\nstate_dir = \"{root}/state\"\n"
            ),
        )
        .expect("write");
        let config = crate::config::load(&site).expect("site file");
        let directory = config.edge.acme.directory().expect("ACME on");
        let (ca, pem) = ca_and_cached_pem(&config.names);
        let serve = || {
            let metrics = Arc::new(Metrics::default());
            let (_service, certs) = AcmeService::new(&config, metrics)
                .expect("ACME setup")
                .expect("ACME on");
            let served = certs.served.clone();
            let resolver = EdgeResolver::new(&config.names, Some(certs)).expect("resolver");
            let tls = server_config(Arc::new(resolver)).expect("TLS config");
            (tls, served)
        };

        let (tls, served) = serve();
        let refused = handshake(tls, ca.clone()).expect_err("nothing cached: self-signed");
        assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
        assert!(!served.from_ca());

        let cache = StateCache::new(
            config.edge.state_dir.join("acme"),
            Arc::new(Metrics::default()),
        );
        let path = cache.cert_path(&config.names, &directory);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, &pem).expect("write");
        let (tls, served) = serve();
        handshake(tls, ca.clone()).expect("the cached certificate is served");
        // Served as CA-issued from the start, so HSTS is sent from the first answer too.
        assert!(served.from_ca());

        // A cache file rustls-acme would refuse is not served either.
        std::fs::write(&path, pem.replace("PRIVATE KEY", "RSA PRIVATE KEY")).expect("write");
        let (tls, _) = serve();
        handshake(tls, ca).expect_err("an unusable cache file: self-signed");
    }

    /// A server [`TlsStream`] negotiated with `alpn`, and the client's task, which reads until
    /// the server shuts down and returns the plaintext size of every application-data record
    /// and the bytes received.
    async fn tls_pair(alpn: &[u8]) -> (TlsStream, tokio::task::JoinHandle<(Vec<usize>, Vec<u8>)>) {
        use tokio::io::AsyncReadExt;
        let cert = rcgen::generate_simple_self_signed(vec!["www.foobar.com".to_string()])
            .expect("certificate");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let mut server_config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("server config");
        server_config.alpn_protocols = vec![alpn.to_vec()];
        // No tickets after the handshake: the client's records begin with the body's.
        server_config.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).expect("root");
        let mut client_config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_config.alpn_protocols = vec![alpn.to_vec()];

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("www.foobar.com").expect("name");
            let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config))
                .connect(name, tcp)
                .await
                .expect("client handshake");
            let (mut tcp, mut conn) = tls.into_inner();
            let mut raw = Vec::new();
            tcp.read_to_end(&mut raw).await.expect("read");
            // Each record fed to TLS alone: the plaintext size of every application-data one.
            let (mut records, mut body) = (Vec::new(), Vec::new());
            let mut at = 0;
            while at + 5 <= raw.len() {
                let end = at + 5 + usize::from(u16::from_be_bytes([raw[at + 3], raw[at + 4]]));
                let mut record = &raw[at..end];
                let mut plain = Vec::new();
                while !record.is_empty() {
                    conn.read_tls(&mut record).expect("read_tls");
                    conn.process_new_packets().expect("record");
                }
                let _ = std::io::Read::read_to_end(&mut conn.reader(), &mut plain);
                if !plain.is_empty() {
                    records.push(plain.len());
                    body.extend_from_slice(&plain);
                }
                at = end;
            }
            (records, body)
        });

        let (tcp, _) = listener.accept().await.expect("accept");
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(server_config))
            .accept(L4Stream::from(tcp))
            .await
            .expect("server handshake");
        (TlsStream::new(tls), client)
    }

    /// On HTTP/1 a response's header and a body that fit one record with it go out as one
    /// record (the body handed to TLS with the held header, not copied after it); a small body
    /// is held with the header until the flush; a body past a record's worth sends the header
    /// first, then full records.
    #[tokio::test]
    async fn http1_header_and_body_share_one_record() {
        use tokio::io::AsyncWriteExt;
        let (mut stream, client) = tls_pair(b"http/1.1").await;
        assert_eq!(stream.alpn, Some(ALPN::H1));
        let mut sent = Vec::new();
        for (i, body_len) in [9959usize, 2000, 20000].into_iter().enumerate() {
            let head = vec![b'h' + i as u8; 300];
            let body = vec![b'a' + i as u8; body_len];
            stream.write_all(&head).await.expect("head");
            stream.write_all(&body).await.expect("body");
            stream.flush().await.expect("flush");
            sent.extend_from_slice(&head);
            sent.extend_from_slice(&body);
        }
        AsyncWriteExt::shutdown(&mut stream)
            .await
            .expect("shutdown");
        let (records, received) = client.await.expect("client");
        assert_eq!(records, [10259, 2300, 300, 16384, 3616]);
        assert!(received == sent, "the bytes arrive in order");
    }

    /// An HTTP/2 body written as h2 writes it (each DATA frame a 9-byte head and a 16 KiB
    /// payload, one write and one flush per frame) goes out in full 16 KiB records, not a full
    /// record and a 9-byte one per frame; the leftover held at a flush is sent by the next
    /// flush (the connection's next poll), and the client reads every byte in order.
    #[tokio::test]
    async fn http2_writes_fill_whole_tls_records() {
        use tokio::io::AsyncWriteExt;
        let (mut stream, client) = tls_pair(b"h2").await;
        assert_eq!(stream.alpn, Some(ALPN::H2));
        let mut sent = Vec::new();
        for i in 0..64u8 {
            let head = [i; 9];
            let payload = vec![i.wrapping_mul(7); 16 * 1024];
            let mut written = 0;
            while written < head.len() + payload.len() {
                let mut skip = written;
                let rest: Vec<&[u8]> = [&head[..], &payload[..]]
                    .into_iter()
                    .map(|b| {
                        let s = skip.min(b.len());
                        skip -= s;
                        &b[s..]
                    })
                    .collect();
                let slices: Vec<_> = rest.iter().map(|b| std::io::IoSlice::new(b)).collect();
                written += stream.write_vectored(&slices).await.expect("write");
            }
            stream.flush().await.expect("flush");
            sent.extend_from_slice(&head);
            sent.extend_from_slice(&payload);
        }
        // The connection's next poll flushes again, with nothing written since.
        stream.flush().await.expect("second flush");
        AsyncWriteExt::shutdown(&mut stream)
            .await
            .expect("shutdown");
        drop(stream);

        let (records, body) = client.await.expect("client");
        assert!(
            body == sent,
            "the client read other bytes than were written"
        );
        let full = records.iter().filter(|&&n| n == RECORD_PLAINTEXT).count();
        assert_eq!(
            (records.len(), full),
            (
                sent.len().div_ceil(RECORD_PLAINTEXT),
                sent.len() / RECORD_PLAINTEXT
            ),
            "plaintext per record: {records:?}"
        );
    }

    /// A stream that takes at most `take` bytes a write (none when 0), keeps what it took, and
    /// panics past 1000 writes: a caller that retried a 0-byte write forever fails rather than
    /// hangs.
    #[derive(Default)]
    struct Takes {
        take: usize,
        writes: usize,
        got: Vec<u8>,
    }

    impl AsyncWrite for Takes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes += 1;
            assert!(self.writes <= 1000, "written {} times: a spin", self.writes);
            let n = buf.len().min(self.take);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.as_mut().poll_write(cx, &all)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A TLS stream that takes nothing (a write of 0 bytes) fails the HTTP/2 and the HTTP/1
    /// write with what is held with `WriteZero`, with or without bytes held, rather than
    /// retrying forever (one CPU spinning for as long as the connection lasts).
    #[test]
    fn a_stream_that_takes_nothing_is_a_write_zero_error_not_a_spin() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let head = [1u8; 9];
        let payload = vec![2u8; RECORD_PLAINTEXT];
        let frame = [
            std::io::IoSlice::new(&head),
            std::io::IoSlice::new(&payload),
        ];
        for held in [0, 9, 300] {
            let mut w = Takes::default();
            let mut pending = vec![3u8; held];
            let r = poll_write_aligned(Pin::new(&mut w), &mut cx, &mut pending, &frame);
            assert!(
                matches!(&r, Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::WriteZero),
                "HTTP/2, {held} bytes held: {r:?}"
            );
            assert_eq!(w.writes, 1, "HTTP/2, {held} bytes held");
        }
        let mut w = Takes::default();
        let mut pending = vec![3u8; 300];
        let r = poll_write_direct(Pin::new(&mut w), &mut cx, &mut pending, &payload[..5000]);
        assert!(
            matches!(&r, Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::WriteZero),
            "HTTP/1: {r:?}"
        );
        assert_eq!(w.writes, 1, "HTTP/1");
    }

    /// A TLS stream that takes a few bytes a write (its buffer full) gets what was held, then
    /// the write, in order, from the HTTP/2 and the HTTP/1 write alike.
    #[test]
    fn partial_writes_of_what_is_held_keep_the_bytes_in_order() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let head = [1u8; 9];
        let payload: Vec<u8> = (0..2 * RECORD_PLAINTEXT).map(|i| i as u8).collect();
        let held: Vec<u8> = (0..300).map(|i| (i * 7) as u8).collect();

        let mut w = Takes {
            take: 128,
            ..Takes::default()
        };
        let mut pending = held.clone();
        let mut written = 0;
        let (mut sent, mut rest) = (vec![], vec![]);
        while written < head.len() + payload.len() {
            let mut skip = written;
            for b in [&head[..], &payload[..]] {
                let s = skip.min(b.len());
                skip -= s;
                rest.push(&b[s..]);
            }
            let slices: Vec<_> = rest.drain(..).map(std::io::IoSlice::new).collect();
            let r = poll_write_aligned(Pin::new(&mut w), &mut cx, &mut pending, &slices);
            assert!(matches!(r, Poll::Ready(Ok(n)) if n > 0), "HTTP/2: {r:?}");
            if let Poll::Ready(Ok(n)) = r {
                written += n;
            }
        }
        sent.extend_from_slice(&held);
        sent.extend_from_slice(&head);
        sent.extend_from_slice(&payload);
        w.got.extend_from_slice(&pending);
        assert!(w.got == sent, "HTTP/2: other bytes, or out of order");

        let mut w = Takes {
            take: 128,
            ..Takes::default()
        };
        let mut pending = held.clone();
        let body = &payload[..5000];
        let r = poll_write_direct(Pin::new(&mut w), &mut cx, &mut pending, body);
        assert!(matches!(r, Poll::Ready(Ok(Some(_)))), "HTTP/1: {r:?}");
        assert!(pending.is_empty() && pending.capacity() == 0);
        let mut sent = held.clone();
        if let Poll::Ready(Ok(Some(n))) = r {
            sent.extend_from_slice(&body[..n]);
        }
        assert!(w.got == sent, "HTTP/1: other bytes, or out of order");
    }
}
