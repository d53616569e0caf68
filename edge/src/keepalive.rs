//! HTTP/1 connections between requests: a kept-alive connection holds its stream and nothing
//! of the next request until that request's first byte arrives.
//!
//! pingora's own HTTP/1 loop (its `ServerApp` for every `HttpServerApp`) starts the next
//! request's `process_new_http` as soon as a response is done, and that call waits for the
//! request: its future (9.3 KiB for the edge's proxy, boxed by `async_trait`), its session and
//! a 4 KiB header buffer were held for the whole idle time of every kept-alive connection, most
//! of an idle connection's 37 KiB (`bench/edge/run`'s idle step). This loop is pingora's, but
//! it reads the next request's first byte itself first, through the connection's stream (so
//! bytes TLS has already decrypted count, and the header deadline of
//! [`crate::header_deadline`] starts with that byte), for at most the keep-alive time; only then
//! does it make the session, and hands pingora that byte as the start of the request (the
//! session's pipelined prefix, in a buffer of pingora's usual 4 KiB), which pingora parses as
//! if it had read it.
//!
//! On the HTTPS listener the loop first adds what else the stream has at once (nearly always
//! the rest of the request's head, which TLS decrypted with its first byte) and offers a
//! complete head to the HTTP/1.1 fast path ([`crate::fast_path`]): a request it answers never
//! becomes a pingora session; one it leaves goes to pingora with those bytes as its prefix.
//! The loop counts the requests of the connection itself, so that pingora's limit of requests
//! per connection (`keepalive_request_limit`) covers both.

use crate::fast_path::{FastPath, Outcome};
use bytes::{BufMut, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp};
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The header buffer pingora makes for a request (its `INIT_HEADER_BUF_SIZE`); the first byte
/// goes into one of these, so that the rest of the header is read as pingora reads it.
const HEADER_BUFFER: usize = 4096;

/// Serves the HTTP/1 requests of `stream` with `app`, one after the other while the connection
/// is kept alive; a connection with no request's first byte within `keepalive` is closed (the
/// first request is also timed by the stream's header deadline), and so is one waiting for its
/// next request when the server begins shutting down. Returns when the connection ends.
///
/// What pingora's loop does to each session is done here in the same way: the first one is
/// kept alive unless the server is shutting down and gets the app's request limit per
/// connection (`keepalive_request_limit`), each later one the settings the previous one left
/// (`HttpPersistentSettings`: keep-alive), and each the requests left by the count of
/// requests served so far, fast path included. The edge does not turn on HTTP/1 pipelining,
/// so those settings carry no bytes of a next request: what a client sends ahead stays in the
/// stream (or in TLS) and is read here. With `fast` (HTTPS), a complete head is offered to it
/// first; not on a connection's last allowed request, nor while shutting down.
pub async fn serve_http1<A>(
    app: &Arc<A>,
    mut stream: Stream,
    shutdown: &ShutdownWatch,
    keepalive: Duration,
    fast: Option<&FastPath>,
) -> Option<Stream>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let limit = app
        .server_options()
        .and_then(|options| options.keepalive_request_limit);
    // What the last session pingora served left, if any (kept over requests the fast path
    // answers, for the next session pingora serves).
    let mut settings: Option<HttpPersistentSettings> = None;
    // Requests served on this connection so far.
    let mut served: u32 = 0;
    loop {
        let first = first_byte(&mut stream, keepalive, shutdown).await?;
        let mut prefix = BytesMut::with_capacity(HEADER_BUFFER);
        prefix.put_u8(first);
        // As pingora counts them: the first session may be reused `limit` times, each later
        // one a time less; one with none left is not kept alive.
        let reuses_left = limit.map(|limit| limit.saturating_sub(served));
        if let Some(fast) = fast {
            read_available(&mut stream, &mut prefix).await?;
            if prefix.ends_with(b"\r\n\r\n") {
                let last = reuses_left == Some(0) || *shutdown.borrow();
                match fast.answer(&mut stream, &prefix, last).await {
                    Outcome::Answered => {
                        served = served.saturating_add(1);
                        continue;
                    }
                    Outcome::Failed => return None,
                    Outcome::NotHandled => {}
                }
            }
        }
        let mut session = ServerSession::new_http1(stream);
        match settings.take() {
            Some(left) => left.apply_to_session(&mut session),
            None => session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) }),
        }
        session.set_keepalive_reuses_remaining(reuses_left);
        session.set_pipelined_prefix(prefix);
        let reused = app.process_new_http(session, shutdown).await?;
        served = served.saturating_add(1);
        let (next, next_settings) = reused.consume();
        stream = next;
        settings = next_settings;
    }
}

/// Adds to `buf` what the stream has at once (what TLS has already decrypted, or the socket
/// holds), without waiting: the rest of a request whose first byte just came is nearly always
/// there. `None` if the read failed (the connection is done: a header over its size limit has
/// been answered by [`crate::header_deadline`]).
async fn read_available(stream: &mut Stream, buf: &mut BytesMut) -> Option<()> {
    let mut read = std::pin::pin!(stream.read_buf(buf));
    let got = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r.map(|_| ())),
        Poll::Pending => Poll::Ready(Ok(())),
    })
    .await;
    got.ok()
}

/// The next request's first byte, or `None` if the client closed the connection, it failed,
/// nothing came within `wait`, or the server began shutting down (as pingora's proxy drops a
/// connection waiting for its next request then, so that an old process's idle connections
/// do not linger through a reload; a byte already there is still served).
async fn first_byte(stream: &mut Stream, wait: Duration, shutdown: &ShutdownWatch) -> Option<u8> {
    let mut byte = [0u8; 1];
    tokio::select! {
        biased;
        read = tokio::time::timeout(wait, stream.read(&mut byte)) => match read {
            Ok(Ok(1)) => Some(byte[0]),
            // Closed between requests: how kept-alive connections usually end.
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::debug!("HTTP/1 connection failed between requests: {e}");
                None
            }
            Err(_) => {
                tracing::debug!("HTTP/1 connection idle for {wait:?}: closed");
                None
            }
        },
        () = shutting_down(shutdown.clone()) => {
            tracing::debug!("shutting down: an idle HTTP/1 connection closed");
            None
        }
    }
}

/// Resolves once the server begins shutting down (never, if the signal's sender is gone).
async fn shutting_down(mut shutdown: ShutdownWatch) {
    if shutdown.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}
