//! Batched UDP I/O: each UDP socket's task takes up to [`BATCH`] datagrams per `recvmmsg`
//! call and sends their answers with one `sendmmsg` call (as NSD and Knot do), instead of a
//! `recvfrom` and a `sendto` per query. Each request is answered by [`Engine::respond`] as
//! before, in the order received. What `sendmmsg` does not send at once (a full socket buffer)
//! is sent one by one as before; a `recvmmsg` that fails (other than "nothing to read") is
//! followed by one `recvfrom`, as the single-datagram loop did.

use crate::answer::{Reply, Transport};
use crate::query::Engine;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::io::Interest;
use tokio::net::UdpSocket;

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

/// Serves one UDP socket until the process ends.
pub async fn serve_udp(socket: UdpSocket, engine: Arc<Engine>) {
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; BUF]).collect();
    let mut got: Vec<(usize, usize, SocketAddr)> = Vec::with_capacity(BATCH);
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    let fd = socket.as_raw_fd();
    loop {
        if let Err(e) = socket.readable().await {
            tracing::debug!("udp readiness error: {e}");
            continue;
        }
        got.clear();
        let received = socket.try_io(Interest::READABLE, || {
            // Made per batch: nix's headers are not Send, so they never cross an await.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                .collect();
            let results = recvmmsg(
                fd,
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(std::io::Error::from)?;
            for (i, msg) in results.enumerate() {
                if let Some(addr) = msg.address.as_ref().and_then(to_std) {
                    got.push((i, msg.bytes, addr));
                }
            }
            Ok(())
        });
        match received {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::debug!("udp receive error (recvmmsg): {e}");
                // As the single-datagram loop: one datagram, then batches again.
                let Some(buf) = bufs.first_mut() else {
                    continue;
                };
                match socket.recv_from(buf).await {
                    Ok((len, client)) => got.push((0, len, client)),
                    Err(e) => {
                        tracing::debug!("udp receive error: {e}");
                        continue;
                    }
                }
            }
        }
        replies.clear();
        for &(i, len, client) in &got {
            let Some(request) = bufs.get(i).and_then(|b| b.get(..len)) else {
                continue;
            };
            if let Reply::One(bytes) = engine.respond(request, Transport::Udp, client) {
                replies.push((bytes, client));
            }
        }
        if replies.is_empty() {
            continue;
        }
        let sent = send_batch(fd, &replies);
        for (bytes, client) in replies.iter().skip(sent) {
            if let Err(e) = socket.send_to(bytes, client).await {
                tracing::debug!("udp send to {client} failed: {e}");
            }
        }
    }
}

/// Sends `replies` with one `sendmmsg` call; returns how many went out (0 on an error: the
/// caller sends them one by one).
fn send_batch(fd: std::os::fd::RawFd, replies: &[(Vec<u8>, SocketAddr)]) -> usize {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = replies
        .iter()
        .map(|(bytes, _)| [IoSlice::new(bytes)])
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = replies
        .iter()
        .map(|(_, client)| Some(SockaddrStorage::from(*client)))
        .collect();
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    match sendmmsg(
        fd,
        &mut headers,
        slices.iter(),
        &addrs,
        no_cmsgs,
        MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(results) => results.count(),
        Err(e) => {
            tracing::debug!("udp send error (sendmmsg): {e}");
            0
        }
    }
}
