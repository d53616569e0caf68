//! Free loopback ports.
//!
//! A port taken with `bind(…:0)` and released comes from the kernel's ephemeral range, where the
//! next outgoing connection (curl's, a client's) may take it before the server binds it; and a
//! port with a TIME_WAIT socket on it may still refuse a server's bind. So ports are picked at
//! random below the ephemeral range, skipping any port with a socket of any state, TCP or UDP,
//! IPv4 or IPv6 (`/proc/net/{tcp,tcp6,udp,udp6}`), then checked by binding both protocols.
//! A port handed out once is never handed out again by this process.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// Ports this process has handed out.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port free for both TCP and UDP right now: below the ephemeral range, with no
/// socket of any state on it, and never handed out before by this process.
///
/// # Panics
/// When no such port is found in 2000 tries (a machine out of ports).
#[allow(clippy::panic)] // A test kit fails the test, with the reason.
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// [`free_port`], with an error instead of a panic.
pub fn try_free_port() -> io::Result<u16> {
    let (bottom, top) = range();
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..2000 {
        let port = fastrand::u16(bottom..top);
        if handed.contains(&port) || in_use(port) {
            continue;
        }
        let free = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        if free {
            handed.insert(port);
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no port in {bottom}..{top} is free for TCP and UDP after 2000 tries"),
    ))
}

/// The range to pick from: 20000 up to the start of the ephemeral range (clear of the fixed
/// ports the stack and the benchmarks use, 5353 … 18444).
fn range() -> (u16, u16) {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if low > 21000 {
        (20000, low)
    } else {
        // An unusual ephemeral range: everything above it up to 65535 is never auto-assigned.
        let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u16>().ok())
            .unwrap_or(60999);
        (high.saturating_add(1).max(1024), u16::MAX)
    }
}

/// Whether any TCP or UDP socket (any state, any address) has `port` as its local port.
pub(crate) fn in_use(port: u16) -> bool {
    ["tcp", "tcp6", "udp", "udp6"].iter().any(|table| {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{table}")) else {
            return false;
        };
        text.lines().skip(1).any(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                == Some(port)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_time_wait_or_listening_is_seen_as_in_use() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(in_use(port));
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        assert!(in_use(udp.local_addr().expect("addr").port()));
    }

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let (_, top) = range();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|&p| p < top), "{ports:?}");
    }
}
