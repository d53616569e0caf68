//! The secondary zones (`[[dns.zone]] primary = "ADDR[:PORT] [key NAME]"`): each is pulled from
//! its primary by IXFR (AXFR for the first copy, or when IXFR fails) when the primary sends a
//! NOTIFY (accepted from the primary's address only, signed with its key when it has one) and
//! on the SOA timers: REFRESH after a good check, RETRY after a failed one. The last good copy
//! keeps being served whatever goes wrong (a refused or cut transfer, a bad signature, a serial
//! that did not increase), until EXPIRE has passed since the primary last answered: then the
//! zone is answered SERVFAIL, as Knot and NSD do, until a transfer succeeds. Each copy is kept
//! in the state directory ([`Store`]), so a restart serves it at once (unless it expired while
//! the server was down).

use crate::catalog::Catalog;
use crate::query::Engine;
use crate::xfr::client::{self, Bounds, Primary, Pulled};
use crate::xfr::journal::newer;
use crate::xfr::store::Store;
use crate::xfr::{Limits, ZoneSettings, tsig};
use crate::zone::Zone;
use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::AbortHandle;

/// Bounds on the SOA timers (seconds), as Knot's `refresh-min-interval` and friends.
const MIN_INTERVAL: u64 = 2;
const MAX_INTERVAL: u64 = 86_400;
/// The least time between two refreshes (a primary sending NOTIFY after NOTIFY).
const MIN_GAP: Duration = Duration::from_secs(1);

/// What the metrics say about a secondary zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timers {
    /// When the primary last confirmed our copy (a transfer, or an SOA check), Unix seconds.
    pub refreshed: Option<u64>,
    /// When our copy expires unless refreshed, Unix seconds.
    pub expires: Option<u64>,
}

/// The secondary zones as the request path and the reload see them.
#[derive(Debug, Default)]
pub struct Registry {
    /// The copies being served, by apex (a reload puts them into its new catalog).
    copies: Mutex<HashMap<LowerName, Arc<Zone>>>,
    /// Apexes of secondary zones with no copy to serve (none yet, or expired): SERVFAIL.
    unavailable: ArcSwap<Vec<Name>>,
    /// Each secondary zone's refresh trigger.
    triggers: Mutex<HashMap<LowerName, Arc<Notify>>>,
    /// Each secondary zone's timers.
    timers: Mutex<HashMap<LowerName, Timers>>,
}

impl Registry {
    /// `catalog` (zones from files) with the copies of the secondary zones of `settings` in; a
    /// zone file for a secondary zone is left out (logged).
    pub fn merge(&self, catalog: Catalog, settings: &ZoneSettings) -> Catalog {
        if settings.primary.is_empty() {
            return catalog;
        }
        let copies = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
        let mut zones: Vec<Arc<Zone>> = Vec::new();
        for zone in catalog.zones() {
            if settings
                .primary
                .contains_key(&LowerName::new(zone.origin()))
            {
                tracing::error!(
                    "zone {}: it is a secondary zone ([[dns.zone]] primary): its file in the \
                     zone directory is ignored",
                    zone.origin()
                );
                continue;
            }
            zones.push(zone.clone());
        }
        zones.extend(
            copies
                .iter()
                .filter(|(apex, _)| settings.primary.contains_key(*apex))
                .map(|(_, zone)| zone.clone()),
        );
        Catalog::new(zones)
    }

    /// Whether `name` belongs to a secondary zone with no copy to serve, deeper than `served`
    /// (the apex of the zone that would answer it, if any): it is answered SERVFAIL.
    pub fn unavailable(&self, name: &Name, served: Option<&Name>) -> bool {
        let unavailable = self.unavailable.load();
        if unavailable.is_empty() {
            return false;
        }
        let depth = served.map_or(0, |s| s.num_labels());
        unavailable
            .iter()
            .any(|apex| apex.zone_of(name) && apex.num_labels() >= depth)
    }

    /// Whether some secondary zone has no copy to serve (then the answer cache stands aside).
    pub fn any_unavailable(&self) -> bool {
        !self.unavailable.load().is_empty()
    }

    /// Wakes the refresh of the secondary zone `apex`; false if it is none.
    pub fn trigger(&self, apex: &Name) -> bool {
        let triggers = self.triggers.lock().unwrap_or_else(PoisonError::into_inner);
        match triggers.get(&LowerName::new(apex)) {
            Some(trigger) => {
                trigger.notify_one();
                true
            }
            None => false,
        }
    }

    /// The timers of every secondary zone.
    pub fn timers(&self) -> Vec<(Name, Timers)> {
        let timers = self.timers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = timers
            .iter()
            .map(|(apex, t)| (Name::from(apex.clone()), *t))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Marks `apex` as having a copy to serve or not. Each secondary zone's task calls this
    /// for its own apex, several at once: `rcu` retries the change on the list another task
    /// stored meanwhile, so that no zone's mark is lost (a plain load and store lost one: a
    /// zone with no copy was then answered REFUSED instead of SERVFAIL).
    fn set_unavailable(&self, apex: &Name, unavailable: bool) {
        let key = LowerName::new(apex);
        self.unavailable.rcu(|current| {
            let mut list: Vec<Name> = current
                .iter()
                .filter(|n| LowerName::new(n) != key)
                .cloned()
                .collect();
            if unavailable {
                list.push(apex.clone());
            }
            list
        });
    }

    fn set_timers(&self, apex: &Name, timers: Timers) {
        self.timers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(LowerName::new(apex), timers);
    }
}

/// Answers a NOTIFY (RFC 1996) for a zone: NOERROR and a refresh if it is a secondary zone and
/// the NOTIFY comes from its primary's address, signed with its key when it has one; NOTAUTH
/// for a zone we are no secondary for (Knot's answer); REFUSED from anyone else (logged, at
/// most one line every 10 s). `key` is the verified TSIG key of the request, if signed.
pub fn notify_in(
    engine: &Engine,
    settings: &ZoneSettings,
    request: &Message,
    client: SocketAddr,
    key: Option<&Name>,
) -> ResponseCode {
    let Some(query) = request.queries.first() else {
        return ResponseCode::NotAuth;
    };
    let Some(primary) = settings.primary.get(&LowerName::new(&query.name)) else {
        engine.xfr().log_refusal(format_args!(
            "NOTIFY for {} from {client}: not a secondary zone here",
            query.name
        ));
        return ResponseCode::NotAuth;
    };
    if request.queries.len() != 1 || query.query_type != RecordType::SOA {
        return ResponseCode::FormErr;
    }
    if plain(client.ip()) != plain(primary.addr.ip()) {
        engine.xfr().log_refusal(format_args!(
            "NOTIFY for {} from {client} refused: its primary is {}",
            query.name, primary.addr
        ));
        return ResponseCode::Refused;
    }
    if let Some(wanted) = &primary.key
        && key.is_none_or(|k| LowerName::new(k) != LowerName::new(wanted.name()))
    {
        engine.xfr().log_refusal(format_args!(
            "NOTIFY for {} from {client} refused: not signed with the key {wanted}",
            query.name
        ));
        return ResponseCode::Refused;
    }
    let serial = request.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    });
    tracing::info!(
        "zone {}: NOTIFY from its primary {client}{}",
        query.name,
        serial.map_or(String::new(), |s| format!(", serial {s}"))
    );
    engine.xfr().secondaries.trigger(&query.name);
    ResponseCode::NoError
}

/// An IPv4-mapped IPv6 address as its IPv4 address.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Starts the task that runs a refresh task per secondary zone, as the settings list them
/// (rereading them when they change).
pub fn start(
    engine: Arc<Engine>,
    signer: Arc<crate::dnssec::Signer>,
    state_dir: std::path::PathBuf,
    limits: Limits,
) {
    let store = Store::new(&state_dir);
    let transfers = Arc::new(Semaphore::new(limits.transfers_in));
    tokio::spawn(async move {
        let mut running: HashMap<LowerName, AbortHandle> = HashMap::new();
        let mut last: Option<Arc<ZoneSettings>> = None;
        let mut changes = engine.zone_settings_changes();
        loop {
            let settings = engine.zone_settings();
            if last.as_ref().is_none_or(|l| !Arc::ptr_eq(l, &settings)) {
                let wanted: Vec<LowerName> = settings.primary.keys().cloned().collect();
                // Zones no longer secondary: stop them and take their copies out.
                let gone: Vec<LowerName> = running
                    .keys()
                    .filter(|apex| !wanted.contains(apex))
                    .cloned()
                    .collect();
                for apex in gone {
                    if let Some(task) = running.remove(&apex) {
                        task.abort();
                    }
                    let name = Name::from(apex.clone());
                    tracing::info!("zone {name}: no longer a secondary zone");
                    let registry = &engine.xfr().secondaries;
                    registry
                        .triggers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&apex);
                    registry
                        .timers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&apex);
                    registry.set_unavailable(&name, false);
                    publish(&engine, &signer, &name, None).await;
                }
                for apex in wanted {
                    if running.contains_key(&apex) {
                        continue;
                    }
                    let trigger = Arc::new(Notify::new());
                    engine
                        .xfr()
                        .secondaries
                        .triggers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(apex.clone(), trigger.clone());
                    let zone = Secondary {
                        apex: Name::from(apex.clone()),
                        engine: engine.clone(),
                        signer: signer.clone(),
                        store: store.clone(),
                        limits: limits.clone(),
                        transfers: transfers.clone(),
                        trigger,
                    };
                    let task = tokio::spawn(zone.run());
                    running.insert(apex, task.abort_handle());
                }
                last = Some(settings);
            }
            changes.changed().await;
        }
    });
}

/// Replaces (or with `None` removes) the copy of `apex` in the catalog, holding the writer lock.
async fn publish(
    engine: &Engine,
    signer: &crate::dnssec::Signer,
    apex: &Name,
    zone: Option<Arc<Zone>>,
) {
    let _writer = signer.writer.lock().await;
    let key = LowerName::new(apex);
    {
        let mut copies = engine
            .xfr()
            .secondaries
            .copies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &zone {
            Some(zone) => copies.insert(key.clone(), zone.clone()),
            None => copies.remove(&key),
        };
    }
    let current = engine.catalog().load_full();
    let zones: Vec<Arc<Zone>> = current
        .zones()
        .filter(|z| LowerName::new(z.origin()) != key)
        .cloned()
        .chain(zone)
        .collect();
    engine.catalog().store(Arc::new(Catalog::new(zones)));
}

/// One secondary zone's refresh task.
struct Secondary {
    apex: Name,
    engine: Arc<Engine>,
    signer: Arc<crate::dnssec::Signer>,
    store: Store,
    limits: Limits,
    transfers: Arc<Semaphore>,
    trigger: Arc<Notify>,
}

/// The SOA timers of a copy (seconds), bounded.
struct Soa {
    refresh: u64,
    retry: u64,
    expire: u64,
}

fn timers_of(zone: &Zone) -> Soa {
    let clamp = |v: i32| {
        u64::try_from(v)
            .unwrap_or(0)
            .clamp(MIN_INTERVAL, MAX_INTERVAL)
    };
    match &zone.soa().data {
        RData::SOA(soa) => Soa {
            refresh: clamp(soa.refresh),
            retry: clamp(soa.retry),
            expire: u64::try_from(soa.expire).unwrap_or(0).max(MIN_INTERVAL + 1),
        },
        _ => Soa {
            refresh: 3600,
            retry: 600,
            expire: 604_800,
        },
    }
}

impl Secondary {
    async fn run(self) {
        let now = tsig::now();
        let mut copy: Option<Arc<Zone>> = None;
        let mut refreshed: Option<u64> = None;
        match self.store.load(&self.apex, self.limits.transfer_max_bytes) {
            Ok(Some(saved)) => {
                let expire = timers_of(&saved.zone).expire;
                let at = saved.refreshed.unwrap_or(0);
                if at + expire <= now {
                    tracing::warn!(
                        "zone {}: the copy in {} (serial {}) expired while the server was \
                         down; not serving it until the primary answers",
                        self.apex,
                        self.store.dir().display(),
                        saved.zone.serial()
                    );
                } else {
                    tracing::info!(
                        "zone {}: serving the copy in {} (serial {}) until the primary is asked",
                        self.apex,
                        self.store.dir().display(),
                        saved.zone.serial()
                    );
                    copy = Some(Arc::new(saved.zone));
                    refreshed = Some(at);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!("zone {}: the saved copy cannot be used: {e}", self.apex),
        }
        self.engine
            .xfr()
            .secondaries
            .set_unavailable(&self.apex, copy.is_none());
        self.publish_timers(copy.as_deref(), refreshed);
        if copy.is_some() {
            publish(&self.engine, &self.signer, &self.apex, copy.clone()).await;
        }
        // The first refresh at once; a failed first transfer is tried again at growing intervals.
        let mut wait = Duration::ZERO;
        let mut backoff = MIN_INTERVAL;
        loop {
            let expiry = copy
                .as_ref()
                .zip(refreshed)
                .map(|(z, at)| at + timers_of(z).expire);
            let until_expiry = expiry.map(|e| Duration::from_secs(e.saturating_sub(tsig::now())));
            let sleep = until_expiry.map_or(wait, |e| wait.min(e));
            tokio::select! {
                () = self.trigger.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
            if let Some(expiry) = expiry
                && tsig::now() >= expiry
                && copy.is_some()
            {
                tracing::error!(
                    "zone {}: expired (no answer from the primary for SOA expire): answering \
                     SERVFAIL until a transfer succeeds",
                    self.apex
                );
                self.engine
                    .xfr()
                    .secondaries
                    .set_unavailable(&self.apex, true);
                publish(&self.engine, &self.signer, &self.apex, None).await;
                copy = None;
                refreshed = None;
                self.publish_timers(None, None);
            }
            match self.refresh(copy.as_deref()).await {
                Ok(Some(zone)) => {
                    let zone = Arc::new(zone);
                    refreshed = Some(tsig::now());
                    if let Err(e) = self.store.save(&zone) {
                        tracing::error!("zone {}: cannot keep its copy: {e}", self.apex);
                    }
                    self.save_refreshed(refreshed);
                    self.engine
                        .xfr()
                        .secondaries
                        .set_unavailable(&self.apex, false);
                    publish(&self.engine, &self.signer, &self.apex, Some(zone.clone())).await;
                    self.publish_timers(Some(&zone), refreshed);
                    wait = Duration::from_secs(timers_of(&zone).refresh);
                    copy = Some(zone);
                    backoff = MIN_INTERVAL;
                }
                Ok(None) => {
                    refreshed = Some(tsig::now());
                    self.save_refreshed(refreshed);
                    self.publish_timers(copy.as_deref(), refreshed);
                    wait = Duration::from_secs(
                        copy.as_deref().map_or(backoff, |z| timers_of(z).refresh),
                    );
                }
                Err(e) => {
                    tracing::warn!("zone {}: refresh failed: {e}", self.apex);
                    wait = match copy.as_deref() {
                        Some(z) => {
                            tracing::warn!(
                                "zone {}: still serving serial {}",
                                self.apex,
                                z.serial()
                            );
                            Duration::from_secs(timers_of(z).retry)
                        }
                        None => {
                            let w = backoff;
                            backoff = (backoff * 2).min(300);
                            Duration::from_secs(w)
                        }
                    };
                }
            }
            tokio::time::sleep(MIN_GAP).await;
            wait = wait.saturating_sub(MIN_GAP);
        }
    }

    fn save_refreshed(&self, at: Option<u64>) {
        if let Some(at) = at
            && let Err(e) = self.store.save_refreshed(&self.apex, at)
        {
            tracing::error!("zone {}: {e}", self.apex);
        }
    }

    fn publish_timers(&self, copy: Option<&Zone>, refreshed: Option<u64>) {
        let expires = copy.zip(refreshed).map(|(z, at)| at + timers_of(z).expire);
        self.engine
            .xfr()
            .secondaries
            .set_timers(&self.apex, Timers { refreshed, expires });
    }

    /// Asks the primary and transfers a newer version: `Ok(Some)` a new copy, `Ok(None)` ours is
    /// current.
    async fn refresh(&self, copy: Option<&Zone>) -> Result<Option<Zone>, String> {
        let settings = self.engine.zone_settings();
        let Some(remote) = settings.primary.get(&LowerName::new(&self.apex)).cloned() else {
            return Err("no primary configured".into());
        };
        let keys = self.engine.xfr().keys.load_full();
        let signer = match &remote.key {
            None => None,
            Some(name) => Some(
                keys.get(name.name())
                    .ok_or_else(|| format!("the key {name} is not loaded"))?
                    .clone(),
            ),
        };
        let primary = Primary {
            addr: remote.addr,
            signer: signer.as_ref(),
        };
        let theirs = client::soa_serial(&self.apex, primary)
            .await
            .map_err(|e| format!("SOA query to {}: {e}", remote.addr))?;
        if let Some(copy) = copy {
            if theirs == copy.serial() {
                tracing::debug!("zone {}: serial {theirs} is current", self.apex);
                return Ok(None);
            }
            if !newer(theirs, copy.serial()) {
                tracing::warn!(
                    "zone {}: the primary {} has serial {theirs}, not newer than ours ({}): \
                     keeping ours",
                    self.apex,
                    remote.addr,
                    copy.serial()
                );
                return Ok(None);
            }
        }
        let _place = self
            .transfers
            .acquire()
            .await
            .map_err(|_| "shutting down".to_string())?;
        let bounds = Bounds {
            max_bytes: self.limits.transfer_max_bytes,
            timeout: self.limits.transfer_timeout,
        };
        let source = format!("{} from {}", self.apex, remote.addr);
        let metrics = self.engine.metrics();
        if let Some(copy) = copy {
            let pulled = client::transfer(&self.apex, primary, Some(copy.soa()), bounds).await;
            let result = match pulled {
                Ok(Pulled::UpToDate(_)) => return Ok(None),
                Ok(Pulled::Incremental(diffs)) => {
                    client::apply(copy, &diffs, &source).map(|z| (z, crate::transfer::Kind::Ixfr))
                }
                Ok(Pulled::Full(records)) => client::build(&self.apex, records, &source)
                    .map(|z| (z, crate::transfer::Kind::Axfr)),
                Err(e) => Err(e),
            };
            match result.and_then(|(z, kind)| self.check_newer(z, Some(copy)).map(|z| (z, kind))) {
                Ok((zone, kind)) => {
                    metrics.transfer_in(kind, true);
                    tracing::info!(
                        "zone {}: {} from {}: serial {} -> {}, {} records",
                        self.apex,
                        kind.as_str(),
                        remote.addr,
                        copy.serial(),
                        zone.serial(),
                        zone.record_count()
                    );
                    return Ok(Some(zone));
                }
                Err(e) => {
                    metrics.transfer_in(crate::transfer::Kind::Ixfr, false);
                    tracing::warn!(
                        "zone {}: IXFR from {} failed ({e}); trying AXFR",
                        self.apex,
                        remote.addr
                    );
                }
            }
        }
        let result = match client::transfer(&self.apex, primary, None, bounds).await {
            Ok(Pulled::Full(records)) => client::build(&self.apex, records, &source),
            Ok(_) => Err("an AXFR answered with differences".into()),
            Err(e) => Err(e),
        }
        .and_then(|z| self.check_newer(z, copy));
        match result {
            Ok(zone) => {
                metrics.transfer_in(crate::transfer::Kind::Axfr, true);
                tracing::info!(
                    "zone {}: AXFR from {}: serial {}, {} records",
                    self.apex,
                    remote.addr,
                    zone.serial(),
                    zone.record_count()
                );
                Ok(Some(zone))
            }
            Err(e) => {
                metrics.transfer_in(crate::transfer::Kind::Axfr, false);
                Err(format!("AXFR from {}: {e}", remote.addr))
            }
        }
    }

    /// `zone` if its serial is newer than our copy's.
    fn check_newer(&self, zone: Zone, copy: Option<&Zone>) -> Result<Zone, String> {
        match copy {
            Some(copy) if !newer(zone.serial(), copy.serial()) => Err(format!(
                "the transferred serial {} is not newer than ours ({})",
                zone.serial(),
                copy.serial()
            )),
            _ => Ok(zone),
        }
    }
}

/// A family of timer gauges: its name, help, and the timer it shows.
type Family = (&'static str, &'static str, fn(&Timers) -> Option<u64>);

/// The secondary zones' timers, read at each scrape (see [`crate::metrics`]).
#[derive(Debug)]
pub struct TimersCollector(pub Arc<Engine>);

impl prometheus_client::collector::Collector for TimersCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::gauge::ConstGauge;
        let timers = self.0.xfr().secondaries.timers();
        let families: [Family; 2] = [
            (
                "secondary_refreshed_timestamp_seconds",
                "When the primary last confirmed each secondary zone's copy (Unix time)",
                |t| t.refreshed,
            ),
            (
                "secondary_expiry_timestamp_seconds",
                "When each secondary zone's copy expires unless refreshed (Unix time)",
                |t| t.expires,
            ),
        ];
        for (name, help, get) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (zone, t) in &timers {
                if let Some(value) = get(t) {
                    let zone = zone.to_string();
                    let labels = [("zone", zone.trim_end_matches('.'))];
                    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Registry;
    use hickory_proto::rr::Name;

    /// Zones' tasks mark their apexes at once: every mark must hold (each zone's task runs on
    /// the runtime's threads, and a lost mark answered REFUSED for a zone with no copy).
    #[test]
    fn marks_made_at_once_by_several_zones_are_all_kept() {
        const THREADS: usize = 4;
        const ZONES: usize = 400;
        let registry = Registry::default();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let registry = &registry;
                scope.spawn(move || {
                    for z in 0..ZONES {
                        let apex = Name::from_ascii(format!("z{z}.t{t}.test.")).unwrap();
                        registry.set_unavailable(&apex, true);
                    }
                });
            }
        });
        let root = Name::root();
        for t in 0..THREADS {
            for z in 0..ZONES {
                let name = Name::from_ascii(format!("www.z{z}.t{t}.test.")).unwrap();
                assert!(
                    registry.unavailable(&name, Some(&root)),
                    "{name} lost its mark"
                );
            }
        }
        // And a zone that gets its copy is taken off, the others kept.
        registry.set_unavailable(&Name::from_ascii("z0.t0.test.").unwrap(), false);
        assert!(!registry.unavailable(&Name::from_ascii("a.z0.t0.test.").unwrap(), None));
        assert!(registry.unavailable(&Name::from_ascii("a.z1.t0.test.").unwrap(), None));
    }
}
