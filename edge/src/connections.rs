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
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The limits and the connections they count.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: u32,
    open: Mutex<Open>,
    /// Over the memory budget: every new connection is refused.
    memory_over: AtomicBool,
    /// The next [`Ticket`]'s number.
    next_id: AtomicU64,
    /// Notified when a connection is admitted while none is open: what the memory guard waits
    /// for while the edge is idle.
    first_opened: tokio::sync::Notify,
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
    /// What closes them all.
    closer: Arc<Closer>,
}

/// What closes one client's connections: a flag each connection's future reads when it is
/// polled (one atomic load: nothing else is polled beside the connection), and the wakers of
/// those futures, woken once when it is set.
#[derive(Debug, Default)]
struct Closer {
    closed: AtomicBool,
    /// By [`Ticket`] number.
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Closer {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in wakers.into_values() {
            waker.wake();
        }
    }
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
    id: u64,
    closer: Arc<Closer>,
}

impl Ticket {
    /// `future` (the connection's serving), ended early with `None` when the memory guard
    /// closes this client's connections.
    pub fn until_closed<F: Future + Unpin>(&self, future: F) -> UntilClosed<'_, F> {
        UntilClosed {
            ticket: self,
            future,
            waker: None,
        }
    }
}

/// The future of [`Ticket::until_closed`].
#[derive(Debug)]
pub struct UntilClosed<'a, F> {
    ticket: &'a Ticket,
    future: F,
    /// The waker registered with the client's [`Closer`].
    waker: Option<Waker>,
}

impl<F: Future + Unpin> Future for UntilClosed<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let closer = &this.ticket.closer;
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Registered before the flag is read: a close in between wakes this waker.
            let waker = cx.waker().clone();
            closer
                .wakers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(this.ticket.id, waker.clone());
            this.waker = Some(waker);
        }
        if closer.is_closed() {
            return Poll::Ready(None);
        }
        Pin::new(&mut this.future).poll(cx).map(Some)
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
            next_id: AtomicU64::new(0),
            first_opened: tokio::sync::Notify::new(),
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
            closer: Arc::default(),
        });
        if entry.count >= self.max_per_client {
            self.metrics.refused_connection(Refused::PerClient);
            return Err(Refused::PerClient);
        }
        if entry.closer.is_closed() {
            // Its connections were closed, some are still ending: this one starts afresh.
            entry.closer = Arc::default();
        }
        entry.count += 1;
        let closer = entry.closer.clone();
        if open.total == 0 {
            // A permit is kept if the guard is not waiting yet: it cannot miss this.
            self.first_opened.notify_one();
        }
        open.total += 1;
        self.metrics.connections_open.inc();
        Ok(Ticket {
            limits: self.clone(),
            client,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            closer,
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
            .filter(|(_, c)| !c.closer.is_closed())
            .max_by_key(|(_, c)| c.count)?;
        entry.closer.close();
        Some((*client, entry.count))
    }

    /// Waits until a connection is admitted while none is open (at once if one was since the
    /// last wait ended).
    pub async fn first_opened(&self) {
        self.first_opened.notified().await;
    }

    /// Connections open now, and clients they come from.
    pub fn open(&self) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (open.total, open.per_client.len())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.closer
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
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
        let ticket = match self.limits.admit(peer) {
            Ok(ticket) => ticket,
            Err(why) => {
                tracing::debug!("connection from {peer} refused: {why:?}");
                return None;
            }
        };
        // The ticket is held for the connection's whole life: pingora's HTTP application
        // serves every request (and every HTTP/2 stream) of it within this call, and the
        // connection, its buffers and its HTTP/2 streams end when the call is dropped.
        match ticket
            .until_closed(self.app.process_new(stream, shutdown))
            .await
        {
            Some(stream) => stream,
            None => {
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

    /// Whether `ticket`'s connection (a future that never ends by itself) is closed within
    /// `wait`.
    async fn closed_within(ticket: &Ticket, wait: std::time::Duration) -> bool {
        let serving = ticket.until_closed(std::future::pending::<()>());
        tokio::time::timeout(wait, serving).await == Ok(None)
    }

    #[tokio::test]
    async fn the_memory_guard_refuses_new_connections_and_closes_the_largest_client() {
        let limits = ConnectionLimits::new(100, 10, Arc::new(Metrics::default()));
        let (a, b): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().expect("test value"),
            "192.0.2.2".parse().expect("test value"),
        );
        let a_tickets: Vec<Ticket> = (0..3)
            .map(|_| limits.admit(a).expect("test value"))
            .collect();
        let b1 = limits.admit(b).expect("test value");
        let short = std::time::Duration::from_millis(50);
        // A connection being served when its client is closed ends (its waker is woken).
        let a_serving = tokio::spawn({
            let limits = limits.clone();
            async move {
                let ticket = limits.admit(a).expect("test value");
                closed_within(&ticket, std::time::Duration::from_secs(5)).await
            }
        });
        tokio::time::sleep(short).await;
        assert!(!limits.set_memory_over(true));
        assert_eq!(limits.admit(b).err(), Some(Refused::Memory));
        assert_eq!(limits.close_largest_client(), Some((a, 4)));
        assert!(
            a_serving.await.expect("test value"),
            "a's served connection ends"
        );
        for t in &a_tickets {
            assert!(
                closed_within(t, short).await,
                "each of a's connections is closed"
            );
        }
        assert!(
            !closed_within(&b1, short).await,
            "b's connection stays open"
        );
        // a is being closed: the next largest is b.
        assert_eq!(limits.close_largest_client(), Some((b, 1)));
        assert_eq!(limits.close_largest_client(), None);
        assert!(limits.set_memory_over(false));
        // A connection of a client whose others are still closing starts afresh.
        let a_new = limits.admit(a).expect("test value");
        assert!(
            !closed_within(&a_new, short).await,
            "a's new connection stays open"
        );
        drop((a_tickets, b1, a_new));
        assert_eq!(limits.open(), (0, 0));
    }
}
