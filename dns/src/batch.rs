//! Batched UDP I/O on dedicated threads, as NSD and Knot serve UDP: one thread per UDP socket
//! (the SO_REUSEPORT sockets of [`crate::server`]), no async runtime on this path. Each thread
//! blocks in `recvmmsg` (`MSG_WAITFORONE`: it returns as soon as one datagram is there, with
//! up to [`BATCH`] of those waiting), answers each request with [`Engine::respond_into`] in
//! the order received, and sends the answers with one `sendmmsg` call. With `[dns]
//! udp_batch_wait_us`, a thread that took a small batch sleeps that long before it reads
//! again (see [`wait_after`]).
//!
//! Everything a batch needs is allocated once per thread and reused: the request buffers, the
//! message headers and address slots of both calls, and one reply buffer per datagram (a
//! cached answer is written into it: no allocation per answer). What `sendmmsg` does not send
//! (a full socket buffer, an address it refuses) is sent one by one; a `recvmmsg` that fails is
//! followed by one `recvfrom`, as a single-datagram loop would do.
//!
//! Every answer goes through [`Engine::respond_into`], so rate limiting sees each one, the
//! metrics count each one, and each request is answered from the catalog stored at that moment
//! (a reload is seen by the next request).

use crate::answer::Transport;
use crate::query::Engine;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// Datagrams taken per `recvmmsg` call.
pub const BATCH: usize = 32;

/// Each datagram's buffer: the largest UDP payload, so that no request is cut short.
const BUF: usize = 65_535;

/// The address of a datagram's sender, if it is an IP address.
fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Starts the thread that serves `socket` (made blocking here) until the process ends; it is
/// named `name`, and `wait` is its `udp_batch_wait_us`.
pub fn spawn_udp(
    socket: UdpSocket,
    engine: Arc<Engine>,
    name: String,
    wait: Duration,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    std::thread::Builder::new()
        .name(name)
        .spawn(move || serve_udp(&socket, &engine, wait))?;
    Ok(())
}

/// How long to sleep after a batch of `taken` datagrams before reading again: `wait` after a
/// batch under half of [`BATCH`] (datagrams that arrive meanwhile make the next batch larger:
/// one wake-up, one `recvmmsg` and one `sendmmsg` for more answers), none after a larger one (a
/// busy socket is read again at once, so waiting never limits throughput). The wait follows an
/// answer, never precedes it: a query to an idle thread is answered at once.
pub fn wait_after(taken: usize, wait: Duration) -> Option<Duration> {
    (!wait.is_zero() && taken < BATCH / 2).then_some(wait)
}

/// What one thread reuses from batch to batch.
struct Batch {
    /// The request buffers.
    bufs: Box<[Vec<u8>; BATCH]>,
    /// The headers and address slots of `recvmmsg`.
    recv_headers: MultiHeaders<SockaddrStorage>,
    /// The headers and address slots of `sendmmsg`.
    send_headers: MultiHeaders<SockaddrStorage>,
    /// The datagrams received: (buffer, length, sender).
    got: Vec<(usize, usize, SockaddrStorage)>,
    /// The answers, the first `replies` of them to send.
    out: Box<[Vec<u8>; BATCH]>,
    /// Where each answer goes.
    to: Box<[Option<SockaddrStorage>; BATCH]>,
}

/// Serves `socket` (blocking) until the process ends.
fn serve_udp(socket: &UdpSocket, engine: &Engine, wait: Duration) {
    let mut batch = Batch {
        bufs: Box::new(std::array::from_fn(|_| vec![0u8; BUF])),
        recv_headers: MultiHeaders::preallocate(BATCH, None),
        send_headers: MultiHeaders::preallocate(BATCH, None),
        got: Vec::with_capacity(BATCH),
        out: Box::new(std::array::from_fn(|_| Vec::with_capacity(512))),
        to: Box::new([None; BATCH]),
    };
    loop {
        receive(socket, &mut batch);
        let mut replies = 0;
        for &(i, len, addr) in &batch.got {
            let (Some(request), Some(client)) =
                (batch.bufs.get(i).and_then(|b| b.get(..len)), to_std(&addr))
            else {
                continue;
            };
            let Some(out) = batch.out.get_mut(replies) else {
                break;
            };
            if engine.respond_into(request, Transport::Udp, client, out) {
                if let Some(to) = batch.to.get_mut(replies) {
                    *to = Some(addr);
                }
                replies += 1;
            }
        }
        if replies > 0 {
            send(socket, &mut batch, replies);
        }
        if let Some(pause) = wait_after(batch.got.len(), wait) {
            std::thread::sleep(pause);
        }
    }
}

/// Fills `batch.got` with the next datagrams (waits for at least one).
fn receive(socket: &UdpSocket, batch: &mut Batch) {
    batch.got.clear();
    let mut iovs = batch
        .bufs
        .each_mut()
        .map(|b| [IoSliceMut::new(b.as_mut_slice())]);
    match recvmmsg(
        socket.as_raw_fd(),
        &mut batch.recv_headers,
        iovs.iter_mut(),
        MsgFlags::MSG_WAITFORONE,
        None,
    ) {
        Ok(results) => {
            for (i, msg) in results.enumerate() {
                if let Some(addr) = msg.address {
                    batch.got.push((i, msg.bytes, addr));
                }
            }
        }
        Err(nix::errno::Errno::EINTR) => {}
        Err(e) => {
            tracing::debug!("udp receive error (recvmmsg): {e}");
            // One datagram, then batches again.
            let Some(buf) = batch.bufs.first_mut() else {
                return;
            };
            match socket.recv_from(buf) {
                Ok((len, client)) => batch.got.push((0, len, SockaddrStorage::from(client))),
                Err(e) => tracing::debug!("udp receive error: {e}"),
            }
        }
    }
}

/// Sends the first `replies` answers of `batch` with one `sendmmsg` call; what it does not
/// send goes out one by one.
fn send(socket: &UdpSocket, batch: &mut Batch, replies: usize) {
    let slices = batch.out.each_ref().map(|b| [IoSlice::new(b)]);
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    let sent = match sendmmsg(
        socket.as_raw_fd(),
        &mut batch.send_headers,
        slices.get(..replies).unwrap_or_default(),
        batch.to.get(..replies).unwrap_or_default(),
        no_cmsgs,
        MsgFlags::empty(),
    ) {
        Ok(results) => results.count(),
        Err(e) => {
            tracing::debug!("udp send error (sendmmsg): {e}");
            0
        }
    };
    for (bytes, to) in batch
        .out
        .iter()
        .zip(batch.to.iter())
        .take(replies)
        .skip(sent)
    {
        let Some(client) = to.as_ref().and_then(to_std) else {
            continue;
        };
        if let Err(e) = socket.send_to(bytes, client) {
            tracing::debug!("udp send to {client} failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `udp_batch_wait_us` reaches the UDP threads, and they wait only after a batch under half
    /// full: never when it is 0 (the default), never when the socket is busy.
    #[test]
    fn udp_batch_wait_follows_small_batches_only() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |line: &str| {
            let config = dir.path().join("site.toml");
            std::fs::write(
                &config,
                format!("[site]\ndomain = \"example.test\"\n\n[dns]\n{line}"),
            )
            .unwrap();
            crate::config::Settings::from_args(&crate::cli::ServeArgs {
                listen: Vec::new(),
                zones: None,
                config: Some(config),
                query_log: false,
            })
            .unwrap()
        };
        let off = settings("").udp_batch_wait;
        let on = settings("udp_batch_wait_us = 250").udp_batch_wait;
        assert_eq!(on, Duration::from_micros(250));
        for taken in 0..=BATCH {
            assert_eq!(wait_after(taken, off), None, "default, {taken} taken");
            let want = (taken < BATCH / 2).then_some(on);
            assert_eq!(wait_after(taken, on), want, "250 us, {taken} taken");
        }
    }
}
