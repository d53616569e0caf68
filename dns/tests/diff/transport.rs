//! Sending one request to one server over UDP or TCP with plain std sockets and timeouts, and
//! collecting what came back: one message, a zone transfer's stream of messages, or nothing.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// How long to wait for an answer that may legitimately never come (dropped requests).
pub const TIMEOUT: Duration = Duration::from_millis(1500);

/// UDP or TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram each way.
    Udp,
    /// RFC 1035 §4.2.2 / RFC 7766: two-byte length prefix, one connection per request.
    Tcp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// What a server sent back.
#[derive(Debug)]
pub enum Reply {
    /// The messages received (one, or several for a zone transfer).
    Messages(Vec<Vec<u8>>),
    /// Nothing within the timeout, or the TCP connection closed without a message; why.
    Nothing(&'static str),
}

/// Sends `packet` to `addr` and reads the reply. With `transfer`, keeps reading TCP messages until
/// a message holds the closing SOA (a second SOA record), an error RCODE, EOF or the timeout.
pub fn exchange(addr: SocketAddr, transport: Transport, packet: &[u8], transfer: bool) -> Reply {
    match transport {
        Transport::Udp => udp(addr, packet),
        Transport::Tcp => tcp(addr, packet, transfer),
    }
}

fn udp(addr: SocketAddr, packet: &[u8]) -> Reply {
    let run = || -> std::io::Result<Reply> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.connect(addr)?;
        sock.set_read_timeout(Some(TIMEOUT))?;
        sock.send(packet)?;
        let mut buf = vec![0u8; 65535];
        let id = &packet[..2];
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match sock.recv(&mut buf) {
                // Ignore stray datagrams with another ID (none are expected on a fresh socket).
                Ok(n) if n >= 2 && &buf[..2] != id && Instant::now() < deadline => continue,
                Ok(n) => return Ok(Reply::Messages(vec![buf[..n].to_vec()])),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(Reply::Nothing("no UDP reply (timeout)"));
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    return Ok(Reply::Nothing("ICMP port unreachable"));
                }
                Err(e) => return Err(e),
            }
        }
    };
    run().unwrap_or(Reply::Nothing("UDP error"))
}

fn tcp(addr: SocketAddr, packet: &[u8], transfer: bool) -> Reply {
    let mut stream = match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Ok(s) => s,
        Err(_) => return Reply::Nothing("TCP connect failed"),
    };
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    if stream.write_all(&framed).is_err() {
        return Reply::Nothing("TCP write failed");
    }
    let mut messages = Vec::new();
    let mut soa_seen = 0usize;
    loop {
        let mut len = [0u8; 2];
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) => {
                if messages.is_empty() {
                    return Reply::Nothing(match e.kind() {
                        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => {
                            "TCP connection closed without a reply"
                        }
                        ErrorKind::WouldBlock | ErrorKind::TimedOut => "no TCP reply (timeout)",
                        _ => "TCP read failed",
                    });
                }
                // A transfer that stops early: the comparison shows the missing closing SOA.
                return Reply::Messages(messages);
            }
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut msg).is_err() {
            if messages.is_empty() {
                return Reply::Nothing("TCP message cut short");
            }
            return Reply::Messages(messages);
        }
        let done = !transfer || {
            match super::wire::parse(&msg) {
                Ok(r) => {
                    soa_seen += r
                        .answer
                        .iter()
                        .filter(|rr| rr.rtype == super::wire::rtype::SOA)
                        .count();
                    // An error or the closing SOA ends it; an IXFR "up to date" answer (one SOA)
                    // ends with the timeout or the server closing the connection.
                    r.rcode != 0 || soa_seen >= 2
                }
                Err(_) => true,
            }
        };
        messages.push(msg);
        if done || messages.len() > 10_000 {
            return Reply::Messages(messages);
        }
    }
}
