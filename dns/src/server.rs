//! The sockets: UDP (several SO_REUSEPORT sockets per address, one thread each, datagrams taken
//! and answered in batches: [`crate::batch`]) and TCP (RFC 7766
//! length-prefixed messages, pipelined queries answered in order; bounded connections in all and
//! per client, an idle timeout and a lifetime).

use crate::answer::{Reply, Transport};
use crate::config::Settings;
use crate::error::ServeError;
use crate::metrics::TcpOutcome;
use crate::query::Engine;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The limits on TCP connections.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one client (an IPv4 address, an IPv6 /64).
    pub max_per_client: usize,
    /// How long a connection may stay idle, or take to send a query.
    pub idle_timeout: Duration,
    /// How long a connection may live: after this, no new query is read and it is closed.
    pub lifetime: Duration,
}

impl TcpLimits {
    /// The limits of `settings`.
    pub fn of(settings: &Settings) -> TcpLimits {
        TcpLimits {
            max_connections: settings.tcp_max_connections,
            max_per_client: settings.tcp_max_connections_per_client,
            idle_timeout: settings.tcp_idle_timeout,
            lifetime: settings.tcp_max_connection_time,
        }
    }
}

/// The TCP connections open, in all (a semaphore) and per client.
#[derive(Debug)]
struct Connections {
    all: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    limits: TcpLimits,
}

/// An open connection's place in [`Connections`], given back when dropped.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    client: IpAddr,
    connections: Arc<Connections>,
}

impl Connections {
    /// Takes a place for a connection from `client`, if the limits allow it.
    fn open(self: &Arc<Self>, client: IpAddr) -> Result<Slot, TcpOutcome> {
        let permit = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| TcpOutcome::RefusedServerFull)?;
        let client = client_key(client);
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = per_client.entry(client).or_insert(0);
        if *open >= self.limits.max_per_client {
            return Err(TcpOutcome::RefusedClientFull);
        }
        *open += 1;
        Ok(Slot {
            _permit: permit,
            client,
            connections: self.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_client = self
            .connections
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = per_client.get_mut(&self.client) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// Who a client is, for the per-client limit: its IPv4 address, or its IPv6 /64 (one host's
/// usual share; an IPv4-mapped address is the IPv4 address).
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
        v4 => v4,
    }
}

/// Binds every listen address, starts its UDP threads and spawns its TCP task. Returns the
/// addresses bound (every socket is bound, and its thread or task running, on return).
pub fn spawn(
    settings: &Settings,
    limits: TcpLimits,
    engine: Arc<Engine>,
) -> Result<Vec<SocketAddr>, ServeError> {
    let connections = Arc::new(Connections {
        all: Arc::new(Semaphore::new(limits.max_connections)),
        per_client: Mutex::default(),
        limits,
    });
    let mut bound = Vec::new();
    let mut udp_threads = 0usize;
    for &addr in &settings.listen {
        let sockets = match bind(addr, settings.udp_sockets) {
            Ok(sockets) => sockets,
            Err(e) if settings.default_listen && is_missing_family(&e) => {
                tracing::warn!("skipping the default listen address {addr}: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let (udp, tcp) = sockets;
        for socket in udp {
            let name = format!("dns-udp-{udp_threads}");
            crate::batch::spawn_udp(socket, engine.clone(), name, settings.udp_batch_wait)
                .map_err(|cause| ServeError::UdpThread { addr, cause })?;
            udp_threads += 1;
        }
        tokio::spawn(serve_tcp(tcp, engine.clone(), connections.clone()));
        tracing::info!("listening on {addr} (UDP and TCP)");
        bound.push(addr);
    }
    if bound.is_empty() {
        return Err(ServeError::NothingBound);
    }
    Ok(bound)
}

fn is_missing_family(e: &ServeError) -> bool {
    matches!(e, ServeError::Bind { cause, .. }
        if cause.kind() == std::io::ErrorKind::AddrNotAvailable
            || cause.raw_os_error() == Some(97 /* EAFNOSUPPORT */))
}

/// Binds `count` UDP sockets (SO_REUSEPORT) and one TCP listener on `addr`.
fn bind(
    addr: SocketAddr,
    count: usize,
) -> Result<(Vec<std::net::UdpSocket>, TcpListener), ServeError> {
    let udp_err = |cause| ServeError::Bind {
        addr,
        proto: "udp",
        cause,
    };
    let tcp_err = |cause| ServeError::Bind {
        addr,
        proto: "tcp",
        cause,
    };
    let mut udp = Vec::new();
    for _ in 0..count {
        let socket = new_socket(addr, Type::DGRAM, Protocol::UDP).map_err(udp_err)?;
        socket.set_reuse_port(true).map_err(udp_err)?;
        socket.bind(&addr.into()).map_err(udp_err)?;
        udp.push(socket.into());
    }
    let tcp = new_socket(addr, Type::STREAM, Protocol::TCP).map_err(tcp_err)?;
    tcp.set_reuse_address(true).map_err(tcp_err)?;
    tcp.bind(&addr.into()).map_err(tcp_err)?;
    tcp.listen(1024).map_err(tcp_err)?;
    let tcp = TcpListener::from_std(tcp.into()).map_err(tcp_err)?;
    Ok((udp, tcp))
}

fn new_socket(addr: SocketAddr, kind: Type, proto: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(proto))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?; // [::]:53 and 0.0.0.0:53 side by side
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

async fn serve_tcp(listener: TcpListener, engine: Arc<Engine>, connections: Arc<Connections>) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("tcp accept error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let slot = match connections.open(client.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                tracing::debug!("closing the TCP connection from {client} at once: {refused:?}");
                engine.metrics().tcp_accept(refused);
                drop(stream);
                continue;
            }
        };
        engine.metrics().tcp_accept(TcpOutcome::Accepted);
        let engine = engine.clone();
        let limits = connections.limits;
        tokio::spawn(async move {
            let _slot = slot;
            let expired = match serve_connection(stream, client, &engine, limits).await {
                Ok(expired) => expired,
                Err(e) => {
                    tracing::debug!("tcp connection from {client}: {e}");
                    false
                }
            };
            engine.metrics().tcp_closed(expired);
        });
    }
}

/// Answer bytes held for one connection before they are written: a read of pipelined
/// queries can ask for many large answers, and they never take more than this (and one
/// message) at once.
const OUT_HIGH: usize = 64 * 1024;

/// The longest framed message: its two-byte length and 65,535 bytes.
const FRAME_MAX: usize = 2 + 65_535;

/// Serves one connection until the client closes it, it idles too long or its lifetime is up.
/// Returns whether it ended at its lifetime.
///
/// Whatever the client has sent is read into one buffer, every complete query in it is
/// answered in order, and the answers go out with one write. One timer per connection: each
/// query must be complete within the idle timeout of the previous one (or of the connection's
/// start), and before the end of the connection's lifetime; the timer is set again only when
/// it goes off before that deadline (the deadline moved on meanwhile). A write that cannot go
/// out at once has the idle timeout to finish.
async fn serve_connection(
    mut stream: TcpStream,
    client: SocketAddr,
    engine: &Engine,
    limits: TcpLimits,
) -> std::io::Result<bool> {
    let _ = stream.set_nodelay(true);
    let started = Instant::now();
    let end_of_life = started + limits.lifetime;
    let mut deadline = (started + limits.idle_timeout).min(end_of_life);
    let timer = tokio::time::sleep_until(deadline.into());
    tokio::pin!(timer);
    let mut buf = vec![0u8; FRAME_MAX];
    let mut filled = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut cached: Vec<u8> = Vec::with_capacity(512);
    loop {
        let read = tokio::select! {
            biased;
            read = stream.read(buf.get_mut(filled..).unwrap_or_default()) => read?,
            () = &mut timer => {
                if Instant::now() >= deadline {
                    // Idle (or a query too slow to arrive), or at the end of its life.
                    return Ok(deadline >= end_of_life);
                }
                timer.as_mut().reset(deadline.into());
                continue;
            }
        };
        if read == 0 {
            return Ok(false); // closed by the client (perhaps in the middle of a query)
        }
        filled += read;
        let now = Instant::now();
        if now >= end_of_life {
            return Ok(true); // no new query after the end of its life
        }
        let mut at = 0usize;
        while let Some(&[hi, lo]) = buf.get(at..at + 2)
            && let end = at + 2 + usize::from(u16::from_be_bytes([hi, lo]))
            && end <= filled
        {
            let request = buf.get(at + 2..end).unwrap_or_default();
            at = end;
            deadline = (now + limits.idle_timeout).min(end_of_life);
            // The reply lives until its last message is written (a transfer holds its place
            // among the transfers going out until then).
            let reply = engine.respond_buffered(request, Transport::Tcp, client, &mut cached);
            match &reply {
                None => frame(&mut out, &cached),
                Some(Reply::Drop) => continue,
                Some(Reply::One(bytes)) => frame(&mut out, bytes),
                Some(Reply::Many(all)) => {
                    for message in all.iter() {
                        frame(&mut out, message);
                        if out.len() >= OUT_HIGH {
                            write_out(&mut stream, &mut out, limits.idle_timeout).await?;
                        }
                    }
                    write_out(&mut stream, &mut out, limits.idle_timeout).await?;
                }
            }
            if out.len() >= OUT_HIGH {
                write_out(&mut stream, &mut out, limits.idle_timeout).await?;
            }
        }
        write_out(&mut stream, &mut out, limits.idle_timeout).await?;
        // What is left is the start of the next query: to the front.
        buf.copy_within(at..filled, 0);
        filled -= at;
    }
}

/// Appends `message` to `out` with its two-byte length (RFC 1035 §4.2.2).
fn frame(out: &mut Vec<u8>, message: &[u8]) {
    let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message.get(..usize::from(len)).unwrap_or_default());
}

/// Writes `out` and empties it: at once if the socket takes it (no timer), else within
/// `timeout`.
async fn write_out(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> std::io::Result<()> {
    let mut at = 0usize;
    while let Some(rest) = out.get(at..)
        && !rest.is_empty()
    {
        match stream.try_write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::timeout(timeout, stream.write_all(rest))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")
                    })??;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    out.clear();
    Ok(())
}
