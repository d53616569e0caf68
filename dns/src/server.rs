//! The sockets: UDP (several SO_REUSEPORT sockets per address, one task each, datagrams taken
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
use tokio::net::{TcpListener, TcpStream, UdpSocket};
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

/// Binds every listen address and spawns its UDP and TCP tasks. Returns the addresses bound.
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
            tokio::spawn(crate::batch::serve_udp(socket, engine.clone()));
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
fn bind(addr: SocketAddr, count: usize) -> Result<(Vec<UdpSocket>, TcpListener), ServeError> {
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
        let socket = UdpSocket::from_std(socket.into()).map_err(udp_err)?;
        udp.push(socket);
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

/// Serves one connection until the client closes it, it idles too long or its lifetime is up.
/// Returns whether it ended at its lifetime.
async fn serve_connection(
    mut stream: TcpStream,
    client: SocketAddr,
    engine: &Engine,
    limits: TcpLimits,
) -> std::io::Result<bool> {
    let _ = stream.set_nodelay(true);
    let end_of_life = Instant::now() + limits.lifetime;
    let mut buf = vec![0u8; 65_535];
    loop {
        // The next query must start before the idle timeout and the end of the lifetime.
        let left = end_of_life.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(true);
        }
        let mut len = [0u8; 2];
        match tokio::time::timeout(limits.idle_timeout.min(left), stream.read_exact(&mut len)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(left <= limits.idle_timeout), // idle, or at the end of its life
        }
        let len = usize::from(u16::from_be_bytes(len));
        match tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(false),
        }
        // The reply lives until its last message is written (a transfer holds its place
        // among the transfers going out until then).
        let reply = engine.respond(&buf[..len], Transport::Tcp, client);
        let messages: Vec<&Vec<u8>> = match &reply {
            Reply::Drop => continue,
            Reply::One(bytes) => vec![bytes],
            Reply::Many(all) => all.iter().collect(),
        };
        for message in messages {
            let mut framed = Vec::with_capacity(message.len() + 2);
            framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
            framed.extend_from_slice(message);
            tokio::time::timeout(limits.idle_timeout, stream.write_all(&framed))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")
                })??;
        }
    }
}
