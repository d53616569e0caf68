//! The memory guard (`[edge.limits] max_memory_mib`): the edge sheds load before its memory
//! reaches what the kernel would kill it for, as Envoy's overload manager does.
//!
//! Most of what a client can make the edge hold is bounded per connection (header sizes, 64
//! KiB of answer per HTTP/2 stream, 100 streams), but not across connections: an HTTP/2 client
//! that opens 100 streams for a large file and never reads from its socket holds about 16 MiB
//! of the edge's memory per connection, and `max_connections_per_client` lets it open 256. Under a
//! systemd `MemoryMax=` that ends in the edge being killed, and every visitor's connection
//! with it. So a background service reads the edge's anonymous resident memory (`RssAnon`,
//! what cannot be reclaimed without swap: connections, buffers, the caches) ten times a second
//! while a client connection is open (every ten seconds while none is: an idle edge stays
//! idle; the first connection wakes the guard at once) and, over the budget:
//!
//! - new connections are closed as they arrive (`onebox_edge_connections_refused_total
//!   {limit="memory"}`), until the memory is back under nine tenths of the budget;
//! - the connections of the client holding the most are closed (all of them, at once), then,
//!   if the memory is still over the budget half a second later, those of the next
//!   ([`ConnectionLimits::close_largest_client`]; `onebox_edge_memory_closed_connections_total`).
//!
//! Before it counts the memory as over, and while it refuses connections, the allocator is
//! told to give back what it holds free (mimalloc's `mi_collect`).
//!
//! The budget is `max_memory_mib`, else the edge's cgroup limit ([`cgroup_limit`]): on a
//! systemd unit with `MemoryHigh=` or `MemoryMax=`, as in the image, that is what it is
//! allowed; without either (`just up`) there is no guard.

use crate::connections::ConnectionLimits;
use crate::metrics::Metrics;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the memory is read while a client connection is open (or the edge is over its
/// budget).
const PERIOD: Duration = Duration::from_millis(100);

/// How often it is read while no client connection is open and the edge is within its budget:
/// no client can make it grow then (the caches fill only through requests), so the guard
/// waits for the first connection, and looks this often only to keep its gauge current.
const IDLE_PERIOD: Duration = Duration::from_secs(10);

/// How long after closing a client's connections the guard waits before it closes another's:
/// what their tasks held takes a moment to be freed and given back to the kernel.
const SETTLE: Duration = Duration::from_millis(500);

/// A cgroup limit at or above this (cgroup v1's "none", 2^63 rounded down to a page) is none.
const UNLIMITED: u64 = 1 << 60;

/// The edge's memory budget in bytes, and where it comes from (for the log): `configured`
/// (`max_memory_mib`) if set, else the limit of the edge's cgroup, else none.
pub fn budget(configured: Option<u64>) -> Option<(u64, String)> {
    if let Some(mib) = configured {
        return Some((
            mib * 1024 * 1024,
            "[edge.limits] max_memory_mib".to_string(),
        ));
    }
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit(&cgroups, Path::new("/sys/fs/cgroup"), |path| {
        std::fs::read_to_string(path).ok()
    })
}

/// The memory budget a cgroup sets, from `/proc/self/cgroup`'s text and the cgroup
/// filesystem under `root` (`read` reads one of its files): with cgroup v2, `memory.high` or
/// three quarters of `memory.max`, whichever is lower (at `memory.high` the kernel throttles
/// the cgroup, at `memory.max` it kills); with cgroup v1's memory controller, three quarters of
/// `memory.limit_in_bytes`. `None` when the cgroup has no limit.
pub fn cgroup_limit(
    cgroups: &str,
    root: &Path,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<(u64, String)> {
    let value = |path: &PathBuf| -> Option<u64> {
        let text = read(path)?;
        let n: u64 = text.trim().parse().ok()?; // "max": no limit
        (n < UNLIMITED).then_some(n)
    };
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            let dir = root.join(path);
            let high = value(&dir.join("memory.high"));
            let max = value(&dir.join("memory.max")).map(|m| m / 4 * 3);
            let (limit, what) = match (high, max) {
                (Some(h), Some(m)) if m < h => (m, "3/4 of memory.max"),
                (Some(h), _) => (h, "memory.high"),
                (None, Some(m)) => (m, "3/4 of memory.max"),
                (None, None) => continue,
            };
            return Some((limit, format!("{what} of cgroup {}", dir.display())));
        }
        if controllers.split(',').any(|c| c == "memory") {
            let dir = root.join("memory").join(path);
            if let Some(limit) = value(&dir.join("memory.limit_in_bytes")) {
                return Some((
                    limit / 4 * 3,
                    format!("3/4 of memory.limit_in_bytes of cgroup {}", dir.display()),
                ));
            }
        }
    }
    None
}

/// This process's memory figures, from `/proc/self/statm`, which stays open: each look is one
/// `pread` of seven numbers. Reading `/proc/self/status` instead, as the guard first did, was an
/// open, a stat, eight reads and a close for some fifty lines the kernel writes out, ten times a
/// second, idle or not: most of what an idle edge then spent.
pub struct Memory {
    statm: std::fs::File,
    page: u64,
}

impl Memory {
    /// Opens `/proc/self/statm`.
    pub fn open() -> std::io::Result<Memory> {
        Ok(Memory {
            statm: std::fs::File::open("/proc/self/statm")?,
            page: rustix::param::page_size() as u64,
        })
    }

    /// The anonymous resident memory, in bytes: the resident pages less the file-backed and
    /// shared ones, which is `RssAnon` of `/proc/self/status` (the kernel counts both from the
    /// same counters).
    pub fn rss_anon(&self) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 192];
        let n = self.statm.read_at(&mut buf, 0)?;
        anon_pages(&buf[..n])
            .map(|pages| pages * self.page)
            .ok_or_else(|| {
                std::io::Error::other(format!(
                    "/proc/self/statm is not the seven numbers expected: {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ))
            })
    }
}

/// Resident less shared pages of a `/proc/PID/statm` line (`size resident shared text lib
/// data dt`, in pages).
fn anon_pages(statm: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(statm).ok()?;
    let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
    let _size = fields.next()?.ok()?;
    let resident = fields.next()?.ok()?;
    let shared = fields.next()?.ok()?;
    resident.checked_sub(shared)
}

/// Has the allocator give the memory it holds free back to the kernel. mimalloc (the edge's
/// allocator, `edge/src/main.rs`) keeps a freed page for a second before it purges it, and
/// purges only when a thread allocates again: what idle threads freed would stay resident, and
/// the guard would refuse connections for memory that is not in use.
#[allow(unsafe_code)] // One call without arguments, see SAFETY below.
fn give_back_free_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time;
    // with `force` it frees this thread's unused pages and purges every arena's free ones.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The background service that keeps the edge within its budget.
pub struct MemoryGuard {
    memory: Memory,
    budget: u64,
    limits: Arc<ConnectionLimits>,
    metrics: Arc<Metrics>,
}

impl MemoryGuard {
    /// Keeps the edge within `budget` bytes by closing `limits`' connections; figures go to
    /// `metrics`. Fails if the process's memory cannot be read.
    pub fn new(
        budget: u64,
        limits: Arc<ConnectionLimits>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let memory = Memory::open()?;
        memory.rss_anon()?;
        metrics.memory_budget_bytes.set(budget as i64);
        Ok(MemoryGuard {
            memory,
            budget,
            limits,
            metrics,
        })
    }

    /// One look at the memory at `now`, after the last close at `last_close`; returns when it
    /// closed connections.
    fn check(&self, now: Instant, last_close: Option<Instant>) -> Option<Instant> {
        let mut used = match self.memory.rss_anon() {
            Ok(used) => used,
            Err(e) => {
                tracing::error!("memory guard: cannot read the edge's memory: {e}");
                return last_close;
            }
        };
        // Over the budget, what the allocator holds free is given back before anything is
        // closed; while new connections are refused, until the memory is back under 9/10.
        if used > self.budget || self.limits.memory_over() {
            give_back_free_memory();
            used = self.memory.rss_anon().unwrap_or(used);
        }
        self.metrics.memory_bytes.set(used as i64);
        let mib = |b: u64| b / (1024 * 1024);
        if used > self.budget {
            if !self.limits.set_memory_over(true) {
                tracing::warn!(
                    "memory {} MiB is over the budget of {} MiB: new connections are closed \
                     as they arrive",
                    mib(used),
                    mib(self.budget)
                );
            }
            if last_close.is_some_and(|t| now.duration_since(t) < SETTLE) {
                return last_close;
            }
            if let Some((client, closed)) = self.limits.close_largest_client() {
                self.metrics
                    .memory_closed_connections
                    .inc_by(u64::from(closed));
                tracing::warn!(
                    "memory {} MiB is over the budget of {} MiB: closed the {closed} \
                     connection(s) of {client}, the client with the most",
                    mib(used),
                    mib(self.budget)
                );
                return Some(now);
            }
            return last_close;
        }
        if used < self.budget / 10 * 9 && self.limits.set_memory_over(false) {
            tracing::info!(
                "memory {} MiB is back under nine tenths of the budget of {} MiB: new \
                 connections are accepted again",
                mib(used),
                mib(self.budget)
            );
        }
        last_close
    }
}

#[async_trait]
impl BackgroundService for MemoryGuard {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset(); // the first look is made at once, below
        let mut last_close = None;
        loop {
            last_close = self.check(Instant::now(), last_close);
            let idle = self.limits.open().0 == 0 && !self.limits.memory_over();
            if idle {
                // A connection admitted after the count above leaves a permit: no miss.
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = self.limits.first_opened() => {}
                    () = tokio::time::sleep(IDLE_PERIOD) => {}
                }
                tick.reset();
            } else {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tick.tick() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn limit(cgroups: &str, files: &[(&str, &str)]) -> Option<(u64, String)> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, v)| (PathBuf::from(p), v.to_string()))
            .collect();
        cgroup_limit(cgroups, Path::new("/cg"), |p| files.get(p).cloned())
    }

    #[test]
    fn cgroup_v2_high_or_three_quarters_of_max_whichever_is_lower() {
        let unit = "0::/system.slice/onebox-edge.service\n";
        let dir = "/cg/system.slice/onebox-edge.service";
        let high = format!("{dir}/memory.high");
        let max = format!("{dir}/memory.max");
        // The image's unit: MemoryHigh=20%, MemoryMax=25% of 2 GiB.
        let got =
            limit(unit, &[(&high, "429490176\n"), (&max, "536870912\n")]).expect("test value");
        assert_eq!(got.0, 402_653_184);
        assert!(got.1.contains("3/4 of memory.max"), "{}", got.1);
        let got =
            limit(unit, &[(&high, "300000000\n"), (&max, "536870912\n")]).expect("test value");
        assert_eq!(got, (300_000_000, format!("memory.high of cgroup {dir}")));
        let got = limit(unit, &[(&high, "max\n"), (&max, "400000000\n")]).expect("test value");
        assert_eq!(got.0, 300_000_000);
        assert_eq!(limit(unit, &[(&high, "max\n"), (&max, "max\n")]), None);
        assert_eq!(limit(unit, &[]), None);
    }

    #[test]
    fn cgroup_v1_three_quarters_of_the_memory_controllers_limit() {
        let cgroups = "4:memory:/box\n3:cpu,cpuacct:/box\n0::/\n";
        let file = "/cg/memory/box/memory.limit_in_bytes";
        let got = limit(cgroups, &[(file, "400000000\n")]).expect("test value");
        assert_eq!(got.0, 300_000_000);
        assert!(got.1.contains("memory.limit_in_bytes"), "{}", got.1);
        // v1's "no limit" is 2^63 rounded down to a page; v2's root has no files.
        assert_eq!(limit(cgroups, &[(file, "9223372036854771712\n")]), None);
    }

    #[test]
    fn a_configured_budget_wins() {
        assert_eq!(budget(Some(64)).expect("test value").0, 64 << 20);
    }

    /// `RssAnon` of `/proc/self/status`, in bytes.
    fn status_rss_anon() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("test value");
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("test value")
            * 1024
    }

    #[test]
    fn statm_gives_rss_anon_and_each_look_reads_it_afresh() {
        let memory = Memory::open().expect("test value");
        let (statm, status) = (memory.rss_anon().expect("test value"), status_rss_anon());
        assert!(statm > 0);
        assert!(
            statm.abs_diff(status) < 1 << 20,
            "statm {statm}, status {status}"
        );
        // 64 MiB more, touched: the same open file says so at the next look.
        let held = std::hint::black_box(vec![1u8; 64 << 20]);
        let grown = memory.rss_anon().expect("test value");
        assert!(grown >= statm + (60 << 20), "{statm} then {grown}");
        assert!(grown.abs_diff(status_rss_anon()) < 1 << 20);
        drop(held);
    }

    #[test]
    fn statm_lines() {
        assert_eq!(anon_pages(b"5000 1200 300 50 0 900 0\n"), Some(900));
        assert_eq!(anon_pages(b"5000 1200"), None);
        assert_eq!(anon_pages(b"5000 200 300 50 0 900 0\n"), None);
        assert_eq!(anon_pages(b"x y z"), None);
    }
}
