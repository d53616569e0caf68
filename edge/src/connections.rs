//! Connection limits: how many client connections may be open at once, in all and from one
//! client (`[edge.limits] max_connections`, `max_connections_per_client`).
//!
//! Every connection on the HTTP and HTTPS listeners is admitted before anything else (before
//! the TLS handshake): one over either limit is closed at once and counted
//! (`onebox_edge_connections_refused_total{limit}`). A client is an IPv4 address or an IPv6
//! /64 (one host's usual share; an IPv4-mapped address, as a dual-stack socket reports IPv4
//! clients, is the IPv4 address). The table of clients holds only clients with a connection
//! open, so it never has more than `max_connections` entries.
//!
//! The memory guard ([`crate::memory`]) works through the same table: while the edge is over
//! its memory budget every new connection is closed on arrival, and the guard closes all the
//! connections of the client that has the most ([`ConnectionLimits::close_largest_client`]).

use crate::metrics::Metrics;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The limits and the connections they count.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: u32,
    open: Mutex<Open>,
    /// Over the memory budget: every new connection is refused.
    memory_over: AtomicBool,
    metrics: Arc<Metrics>,
}

/// The connections open now.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, Client>,
}

/// One client's open connections.
#[derive(Debug)]
struct Client {
    count: u32,
    /// Set to `true` to close them all; each connection's [`Ticket`] watches it.
    close: watch::Sender<bool>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_client` are open from this client.
    PerClient,
    /// The edge is over its memory budget ([`crate::memory`]).
    Memory,
}

/// An admitted connection: counted until dropped.
#[derive(Debug)]
pub struct Ticket {
    limits: Arc<ConnectionLimits>,
    client: IpAddr,
    close: watch::Receiver<bool>,
}

impl Ticket {
    /// Resolves when the memory guard closes this client's connections.
    pub async fn closed(&mut self) {
        // An error: the client's entry is gone, which it never is while a ticket holds it.
        if self.close.wait_for(|close| *close).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl ConnectionLimits {
    /// At most `max_total` connections, `max_per_client` from one client; counts go to
    /// `metrics`.
    pub fn new(max_total: usize, max_per_client: u32, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_client,
            open: Mutex::default(),
            memory_over: AtomicBool::new(false),
            metrics,
        })
    }

    /// Admits a connection from `peer`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refused> {
        let client = client_key(peer);
        if self.memory_over.load(Ordering::Relaxed) {
            self.metrics.refused_connection(Refused::Memory);
            return Err(Refused::Memory);
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            self.metrics.refused_connection(Refused::Total);
            return Err(Refused::Total);
        }
        let entry = open.per_client.entry(client).or_insert_with(|| Client {
            count: 0,
            close: watch::Sender::new(false),
        });
        if entry.count >= self.max_per_client {
            self.metrics.refused_connection(Refused::PerClient);
            return Err(Refused::PerClient);
        }
        if *entry.close.borrow() {
            // Its connections were closed, some are still ending: this one starts afresh.
            entry.close = watch::Sender::new(false);
        }
        entry.count += 1;
        let close = entry.close.subscribe();
        open.total += 1;
        self.metrics.connections_open.inc();
        Ok(Ticket {
            limits: self.clone(),
            client,
            close,
        })
    }

    /// Whether the edge is over its memory budget (new connections refused).
    pub fn memory_over(&self) -> bool {
        self.memory_over.load(Ordering::Relaxed)
    }

    /// Sets whether the edge is over its memory budget (new connections refused); returns
    /// what it was.
    pub fn set_memory_over(&self, over: bool) -> bool {
        self.memory_over.swap(over, Ordering::Relaxed)
    }

    /// Closes every connection of the client with the most open (not already being closed);
    /// returns it and how many, or `None` when there is none.
    pub fn close_largest_client(&self) -> Option<(IpAddr, u32)> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (client, entry) = open
            .per_client
            .iter()
            .filter(|(_, c)| !*c.close.borrow())
            .max_by_key(|(_, c)| c.count)?;
        entry.close.send_replace(true);
        Some((*client, entry.count))
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
        if let Some(entry) = open.per_client.get_mut(&self.client) {
            entry.count -= 1;
            if entry.count == 0 {
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
        let mut ticket = match self.limits.admit(peer) {
            Ok(ticket) => ticket,
            Err(why) => {
                tracing::debug!("connection from {peer} refused: {why:?}");
                return None;
            }
        };
        // The ticket is held for the connection's whole life: pingora's HTTP application
        // serves every request (and every HTTP/2 stream) of it within this call, and the
        // connection, its buffers and its HTTP/2 streams end when the call is dropped.
        tokio::select! {
            stream = self.app.process_new(stream, shutdown) => stream,
            () = ticket.closed() => {
                tracing::debug!("connection from {peer} closed by the memory guard");
                None
            }
        }
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

    #[tokio::test]
    async fn the_memory_guard_refuses_new_connections_and_closes_the_largest_client() {
        let limits = ConnectionLimits::new(100, 10, Arc::new(Metrics::default()));
        let (a, b): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().expect("test value"),
            "192.0.2.2".parse().expect("test value"),
        );
        let mut a_tickets: Vec<Ticket> = (0..3)
            .map(|_| limits.admit(a).expect("test value"))
            .collect();
        let mut b1 = limits.admit(b).expect("test value");
        assert!(!limits.set_memory_over(true));
        assert_eq!(limits.admit(b).err(), Some(Refused::Memory));
        assert_eq!(limits.close_largest_client(), Some((a, 3)));
        for t in &mut a_tickets {
            tokio::time::timeout(std::time::Duration::from_secs(5), t.closed())
                .await
                .expect("each of a's connections is told to close");
        }
        let b_open = tokio::time::timeout(std::time::Duration::from_millis(50), b1.closed());
        assert!(b_open.await.is_err(), "b's connection stays open");
        // a is being closed: the next largest is b.
        assert_eq!(limits.close_largest_client(), Some((b, 1)));
        assert_eq!(limits.close_largest_client(), None);
        assert!(limits.set_memory_over(false));
        // A connection of a client whose others are still closing starts afresh.
        let mut a_new = limits.admit(a).expect("test value");
        let a_open = tokio::time::timeout(std::time::Duration::from_millis(50), a_new.closed());
        assert!(a_open.await.is_err(), "a's new connection stays open");
        drop((a_tickets, b1, a_new));
        assert_eq!(limits.open(), (0, 0));
    }
}
