//! Secondaries, both ways: this server as a primary (NOTIFY out, AXFR and IXFR out, TSIG) and as
//! a secondary (NOTIFY in, IXFR/AXFR in, the SOA timers, a copy kept in the state directory).
//!
//! - [`tsig`]: the `[[dns.tsig]]` keys; checking and signing messages (RFC 8945).
//! - [`journal`]: the differences between the versions served, for IXFR out.
//! - [`watch`]: notices every new catalog, whoever made it (a reload, a re-signing, a transfer
//!   in), records the differences of each zone whose serial changed and sends its NOTIFYs.
//! - [`notify`]: NOTIFY out, retried until acknowledged.
//! - [`serial`]: the serial policy for zone files (a changed zone must have a new serial).
//! - [`client`]: SOA queries and IXFR/AXFR from a primary, bounded in size and time.
//! - [`secondary`]: the secondary zones: timers, NOTIFY in, the copy on disk ([`store`]).
//!
//! [`Shared`] is what the request path ([`crate::query`]) needs of all this; the tasks are
//! started by [`start`].

pub mod client;
pub mod journal;
pub mod notify;
pub mod secondary;
pub mod serial;
pub mod store;
pub mod tsig;
pub mod watch;

use crate::config::ZoneConfig;
use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name};
use journal::Journal;
use onebox_site::dns::{Remote, TransferAllow};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The per-zone transfer settings (`[[dns.zone]]`), replaced whole when the site file is reread.
#[derive(Debug, Default)]
pub struct ZoneSettings {
    /// Who may transfer which zone.
    pub allow_transfer: HashMap<LowerName, Vec<TransferAllow>>,
    /// Where each zone's NOTIFYs go.
    pub notify: HashMap<LowerName, Vec<Remote>>,
    /// The primary of each secondary zone.
    pub primary: HashMap<LowerName, Remote>,
}

impl ZoneSettings {
    /// The settings of `zones`.
    pub fn new(zones: &[ZoneConfig]) -> ZoneSettings {
        let mut settings = ZoneSettings::default();
        for zone in zones {
            let apex = LowerName::new(zone.name.name());
            settings
                .allow_transfer
                .insert(apex.clone(), zone.allow_transfer.clone());
            if !zone.notify.is_empty() {
                settings.notify.insert(apex.clone(), zone.notify.clone());
            }
            if let Some(primary) = &zone.primary {
                settings.primary.insert(apex, primary.clone());
            }
        }
        settings
    }

    /// Whether `client`, whose request was signed with `key` (verified), may transfer `zone`.
    pub fn may_transfer(&self, zone: &Name, client: std::net::IpAddr, key: Option<&Name>) -> bool {
        self.allow_transfer
            .get(&LowerName::new(zone))
            .is_some_and(|acl| acl.iter().any(|a| a.allows(client, key)))
    }
}

/// What the request path shares with the transfer tasks.
#[derive(Debug)]
pub struct Shared {
    /// The TSIG keys.
    pub keys: ArcSwap<tsig::Keys>,
    /// The differences kept for IXFR, per zone.
    pub journals: Mutex<HashMap<LowerName, Journal>>,
    /// Places for transfers going out at once.
    pub transfers_out: Arc<tokio::sync::Semaphore>,
    /// The secondary zones: their copies, which are unavailable, and their NOTIFY triggers.
    pub secondaries: secondary::Registry,
    /// When a refused NOTIFY or TSIG failure was last logged, and how many since.
    noise: Mutex<(Option<Instant>, u64)>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new(10)
    }
}

impl Shared {
    /// Shared state allowing `transfers_out` transfers out at once.
    pub fn new(transfers_out: usize) -> Shared {
        Shared {
            keys: ArcSwap::default(),
            journals: Mutex::default(),
            transfers_out: Arc::new(tokio::sync::Semaphore::new(transfers_out)),
            secondaries: secondary::Registry::default(),
            noise: Mutex::default(),
        }
    }

    /// Runs `f` on the journal of `zone`, if one is kept.
    pub fn with_journal<T>(&self, zone: &Name, f: impl FnOnce(Option<&Journal>) -> T) -> T {
        let journals = self.journals.lock().unwrap_or_else(PoisonError::into_inner);
        f(journals.get(&LowerName::new(zone)))
    }

    /// Logs a refused NOTIFY, a bad TSIG or a refused transfer at WARN, at most one line every
    /// 10 s (with how many were not logged): strangers cannot fill the log.
    pub fn log_refusal(&self, what: std::fmt::Arguments<'_>) {
        let mut noise = self.noise.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match noise.0 {
            Some(last) if now.duration_since(last) < Duration::from_secs(10) => noise.1 += 1,
            _ => {
                if noise.1 > 0 {
                    tracing::warn!("{what} (and {} more refusals not logged)", noise.1);
                } else {
                    tracing::warn!("{what}");
                }
                *noise = (Some(now), 0);
            }
        }
    }
}

/// The settings the transfer tasks run with (from `[dns]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most bytes of one transfer in.
    pub transfer_max_bytes: u64,
    /// How long a transfer in may take.
    pub transfer_timeout: Duration,
    /// Transfers in at once.
    pub transfers_in: usize,
}

/// Starts the transfer tasks: the catalog watcher (journal, NOTIFY out) and the secondary
/// zones. `signer`'s writer lock is held by whoever replaces the catalog (the reload, the
/// re-signing, the secondary zones), so that one's new catalog never drops another's change.
pub fn start(
    engine: Arc<crate::query::Engine>,
    signer: Arc<crate::dnssec::Signer>,
    state_dir: std::path::PathBuf,
    limits: Limits,
) {
    tokio::spawn(watch::run(engine.clone()));
    secondary::start(engine, signer, state_dir, limits);
}
