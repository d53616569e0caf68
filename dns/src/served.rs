//! What is served now, and the news that it changed: the catalog (replaced whole by a reload,
//! a re-signing, a transfer from a primary) and the per-zone settings (replaced whole by a
//! reload). Every request reads the current value without a lock ([`ArcSwap`]); whoever must
//! act on a change (the journal and NOTIFY side, the secondary zones' supervisor) waits for
//! one ([`Changes::changed`]) instead of looking again and again, so an idle server sleeps.
//! Storing is the only way to replace the value and it always announces it: no writer has to
//! remember to tell anyone.

use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::watch;

/// A value served now, replaced whole, with its changes announced.
#[derive(Debug)]
pub struct Served<T> {
    current: ArcSwap<T>,
    /// Bumped after every store: each [`Changes`] sees it once.
    stored: watch::Sender<()>,
}

/// The stores of one [`Served`] value a waiter has not seen yet.
#[derive(Debug)]
pub struct Changes(watch::Receiver<()>);

impl<T> Served<T> {
    /// Serves `value`.
    pub fn new(value: T) -> Self {
        Served {
            current: ArcSwap::from_pointee(value),
            stored: watch::Sender::new(()),
        }
    }

    /// The value served now, for a short read.
    pub fn load(&self) -> arc_swap::Guard<Arc<T>> {
        self.current.load()
    }

    /// The value served now, to keep.
    pub fn load_full(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Serves `value` from now on, and tells every waiter.
    pub fn store(&self, value: Arc<T>) {
        self.current.store(value);
        self.stored.send_replace(());
    }

    /// The stores from now on. Take it before loading the value it is about: a store between
    /// the two is then announced (at worst once more than needed), never missed.
    pub fn changes(&self) -> Changes {
        Changes(self.stored.subscribe())
    }
}

impl<T: Default> Default for Served<T> {
    fn default() -> Self {
        Served::new(T::default())
    }
}

impl Changes {
    /// Waits for a store not seen yet (returns at once if there was one since the last wait, or
    /// since [`Served::changes`]).
    pub async fn changed(&mut self) {
        // The sender lives in the `Served` this came from, which outlives its waiters (the
        // engine); should it go, there is nothing left to wait for.
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn announced(changes: &mut Changes) -> bool {
        tokio::time::timeout(Duration::from_millis(50), changes.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn every_store_is_announced_once_to_every_waiter() {
        let served = Served::new(1);
        let mut a = served.changes();
        assert!(!announced(&mut a).await, "nothing stored yet");
        let mut b = served.changes();
        served.store(Arc::new(2));
        assert!(announced(&mut a).await);
        assert!(announced(&mut b).await);
        assert!(!announced(&mut a).await, "announced once");
        // Two stores before a wait: one announcement, and the load sees the last.
        served.store(Arc::new(3));
        served.store(Arc::new(4));
        assert!(announced(&mut a).await);
        assert!(!announced(&mut a).await);
        assert_eq!(*served.load_full(), 4);
        assert_eq!(**served.load(), 4);
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_a_store_made_while_it_waits() {
        let served = Arc::new(Served::new(0));
        let mut changes = served.changes();
        let waiter = tokio::spawn(async move {
            changes.changed().await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        served.store(Arc::new(1));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
    }
}
