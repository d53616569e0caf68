//! The sockets: UDP (several SO_REUSEPORT sockets per address, one task each) and TCP (bounded
//! connections, idle timeout, RFC 7766 length-prefixed messages, pipelined queries answered in
//! order).

use crate::answer::{Reply, Transport};
use crate::config::Settings;
use crate::error::ServeError;
use crate::query::Engine;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// Binds every listen address and spawns its UDP and TCP tasks. Returns the addresses bound.
pub fn spawn(settings: &Settings, engine: Arc<Engine>) -> Result<Vec<SocketAddr>, ServeError> {
    let connections = Arc::new(Semaphore::new(settings.tcp_max_connections));
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
            tokio::spawn(serve_udp(socket, engine.clone()));
        }
        tokio::spawn(serve_tcp(
            tcp,
            engine.clone(),
            connections.clone(),
            settings.tcp_idle_timeout,
        ));
        tracing::info!("listening on {addr} (UDP and TCP)");
        bound.push(addr);
    }
    if bound.is_empty() {
        return Err(ServeError::NothingBound);
    }
    Ok(bound)
}

fn is_missing_family(e: &ServeError) -> bool {
    matches!(e, ServeError::Bind { source, .. }
        if source.kind() == std::io::ErrorKind::AddrNotAvailable
            || source.raw_os_error() == Some(97 /* EAFNOSUPPORT */))
}

/// Binds `count` UDP sockets (SO_REUSEPORT) and one TCP listener on `addr`.
fn bind(addr: SocketAddr, count: usize) -> Result<(Vec<UdpSocket>, TcpListener), ServeError> {
    let udp_err = |source| ServeError::Bind {
        addr,
        proto: "udp",
        source,
    };
    let tcp_err = |source| ServeError::Bind {
        addr,
        proto: "tcp",
        source,
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

async fn serve_udp(socket: UdpSocket, engine: Arc<Engine>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("udp receive error: {e}");
                continue;
            }
        };
        if let Reply::One(bytes) = engine.respond(&buf[..len], Transport::Udp, client)
            && let Err(e) = socket.send_to(&bytes, client).await
        {
            tracing::debug!("udp send to {client} failed: {e}");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    engine: Arc<Engine>,
    connections: Arc<Semaphore>,
    idle: std::time::Duration,
) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("tcp accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!("too many TCP connections; closing the one from {client}");
            drop(stream);
            continue;
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_connection(stream, client, &engine, idle).await {
                tracing::debug!("tcp connection from {client}: {e}");
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    client: SocketAddr,
    engine: &Engine,
    idle: std::time::Duration,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 65_535];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle
        }
        let len = usize::from(u16::from_be_bytes(len));
        match tokio::time::timeout(idle, stream.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let messages = match engine.respond(&buf[..len], Transport::Tcp, client) {
            Reply::Drop => continue,
            Reply::One(bytes) => vec![bytes],
            Reply::Many(all) => all,
        };
        for message in messages {
            let mut framed = Vec::with_capacity(message.len() + 2);
            framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
            framed.extend_from_slice(&message);
            tokio::time::timeout(idle, stream.write_all(&framed))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")
                })??;
        }
    }
}
