//! Connection limits: how many client connections may be open at once, in all and from one
//! client (`[edge.limits] max_connections`, `max_connections_per_client`).
//!
//! Every connection on the HTTP and HTTPS listeners is admitted before anything else (before
//! the TLS handshake): one over either limit is closed at once and counted
//! (`onebox_edge_connections_refused_total{limit}`). A client is an IPv4 address or an IPv6
//! /64 (one host's usual share; an IPv4-mapped address, as a dual-stack socket reports IPv4
//! clients, is the IPv4 address). The table of clients holds only clients with a connection
//! open, so it never has more than `max_connections` entries.

use crate::metrics::Metrics;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The limits and the connections they count.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: u32,
    open: Mutex<Open>,
    metrics: Arc<Metrics>,
}

/// The connections open now.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, u32>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_client` are open from this client.
    PerClient,
}

/// An admitted connection: counted until dropped.
#[derive(Debug)]
pub struct Ticket {
    limits: Arc<ConnectionLimits>,
    client: IpAddr,
}

impl ConnectionLimits {
    /// At most `max_total` connections, `max_per_client` from one client; counts go to
    /// `metrics`.
    pub fn new(max_total: usize, max_per_client: u32, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_client,
            open: Mutex::default(),
            metrics,
        })
    }

    /// Admits a connection from `peer`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refused> {
        let client = client_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            self.metrics.refused_connection(Refused::Total);
            return Err(Refused::Total);
        }
        let count = open.per_client.entry(client).or_insert(0);
        if *count >= self.max_per_client {
            self.metrics.refused_connection(Refused::PerClient);
            return Err(Refused::PerClient);
        }
        *count += 1;
        open.total += 1;
        self.metrics.connections_open.inc();
        Ok(Ticket {
            limits: self.clone(),
            client,
        })
    }

    /// Connections open now, and clients they come from.
    pub fn open(&self) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (open.total, open.per_client.len())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(&self.client);
            }
        }
        self.limits.metrics.connections_open.dec();
    }
}

/// Who a client is, for the per-client limit: its IPv4 address, or its IPv6 /64.
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

/// A listener's application `A`, behind the connection limits.
pub struct Limited<A> {
    app: Arc<A>,
    limits: Arc<ConnectionLimits>,
}

impl<A> Limited<A> {
    /// Admits each connection to `app` through `limits`.
    pub fn new(app: A, limits: Arc<ConnectionLimits>) -> Self {
        Limited {
            app: Arc::new(app),
            limits,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Limited<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let Some(peer) = peer else {
            tracing::error!("a connection without a peer address: closed");
            return None;
        };
        let _ticket = match self.limits.admit(peer) {
            Ok(ticket) => ticket,
            Err(why) => {
                tracing::debug!("connection from {peer} refused: {why:?}");
                return None;
            }
        };
        // The ticket is held for the connection's whole life: pingora's HTTP application
        // serves every request (and every HTTP/2 stream) of it within this call.
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_ipv4_addresses_or_ipv6_64s() {
        let key = |s: &str| client_key(s.parse().expect("address"));
        assert_eq!(key("192.0.2.7"), key("::ffff:192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn limits_per_client_and_in_all_with_a_table_of_open_clients_only() {
        let limits = ConnectionLimits::new(5, 2, Arc::new(Metrics::default()));
        let a: IpAddr = "192.0.2.1".parse().expect("a");
        let b: IpAddr = "2001:db8::1".parse().expect("b");
        let a1 = limits.admit(a).expect("first");
        let a2 = limits.admit(a).expect("second");
        assert_eq!(limits.admit(a).err(), Some(Refused::PerClient));
        // Another address of the same /64 is the same client.
        assert!(limits.admit(b).is_ok_and(|b1| {
            let b2 = limits.admit("2001:db8::2".parse().expect("b2"));
            let third = limits.admit("2001:db8::3".parse().expect("b3")).err();
            drop(b2);
            drop(b1);
            third == Some(Refused::PerClient)
        }));
        drop(a1);
        let again = limits.admit(a).expect("a slot was freed");
        assert_eq!(limits.open(), (2, 1));
        let others: Vec<Ticket> = (10..13)
            .map(|i| limits.admit(IpAddr::from([192, 0, 2, i])).expect("room"))
            .collect();
        assert_eq!(
            limits.admit(IpAddr::from([192, 0, 2, 99])).err(),
            Some(Refused::Total)
        );
        drop((a2, again, others));
        // Nothing open: no client is remembered.
        assert_eq!(limits.open(), (0, 0));
    }
}
