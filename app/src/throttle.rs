//! Login throttling per client: failed logins are counted per client address and per client
//! address + user name, so that a storm from one address neither locks the real admin out from
//! another nor gets more than a few guesses at any one name.
//!
//! An attempt is counted as a failure when it starts, before the password is checked, so that
//! concurrent attempts cannot get past the limit; a successful login takes its count back.
//! IPv6 clients are counted per /64 (one customer's network). Both tables are LRU caches of a
//! fixed size: a flood of new addresses or names forgets the least recently seen ones and never
//! grows memory.

use lru::LruCache;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many client addresses, and as many address + name pairs, are remembered.
pub const MAX_ENTRIES: usize = 50_000;

/// The longest user name kept as a key, in bytes (longer ones are cut; the forms and the API
/// refuse them before they get here).
const MAX_KEY_NAME: usize = 256;

/// Failures within one window: how many, and when the first was.
#[derive(Debug, Clone, Copy)]
struct Window {
    count: u32,
    since: Instant,
}

/// Failed-login bookkeeping per client address and per client address + user name.
pub struct Throttle {
    max_per_name: u32,
    max_per_client: u32,
    window: Duration,
    tables: Mutex<Tables>,
}

struct Tables {
    clients: LruCache<IpAddr, Window>,
    names: LruCache<(IpAddr, String), Window>,
}

/// An attempt that was let through and already counted as a failure; [`Throttle::succeeded`]
/// takes the count back.
#[derive(Debug)]
pub struct Attempt {
    client: IpAddr,
    name: String,
}

/// Which limit refused an attempt, and for how many more seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Seconds until the oldest counted failure is forgotten.
    pub retry_after_secs: u64,
}

/// `addr`, an IPv4-mapped IPv6 address as the IPv4 address.
pub fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// The address an attempt is counted under: IPv4 as is, IPv6 as its /64 (an IPv4-mapped IPv6
/// address as the IPv4 address).
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

fn name_key(username: &str) -> String {
    let mut name = username.to_lowercase();
    if name.len() > MAX_KEY_NAME {
        let mut end = MAX_KEY_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

impl Throttle {
    /// A throttle refusing after `max_per_name` failures for one name from one client, or
    /// `max_per_client` failures from one client, within `window`.
    pub fn new(max_per_name: u32, max_per_client: u32, window: Duration) -> Throttle {
        let size = NonZeroUsize::new(MAX_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Throttle {
            max_per_name: max_per_name.max(1),
            max_per_client: max_per_client.max(1),
            window,
            tables: Mutex::new(Tables {
                clients: LruCache::new(size),
                names: LruCache::new(size),
            }),
        }
    }

    /// Lets an attempt by `client` at `username` through, counting it as a failure now, or
    /// refuses it when either limit is reached.
    pub fn begin(&self, client: IpAddr, username: &str) -> Result<Attempt, Refused> {
        let client = client_key(client);
        let name = name_key(username);
        let now = Instant::now();
        let window = self.window;
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = |w: Option<&Window>| match w {
            Some(w) if now.duration_since(w.since) < window => *w,
            _ => Window {
                count: 0,
                since: now,
            },
        };
        let per_client = fresh(tables.clients.peek(&client));
        let key = (client, name);
        let per_name = fresh(tables.names.peek(&key));
        for (w, max) in [
            (per_client, self.max_per_client),
            (per_name, self.max_per_name),
        ] {
            if w.count >= max {
                let left = window.saturating_sub(now.duration_since(w.since));
                return Err(Refused {
                    retry_after_secs: left.as_secs().max(1),
                });
            }
        }
        tables.clients.put(
            client,
            Window {
                count: per_client.count + 1,
                ..per_client
            },
        );
        let name = key.1.clone();
        tables.names.put(
            key,
            Window {
                count: per_name.count + 1,
                ..per_name
            },
        );
        Ok(Attempt { client, name })
    }

    /// The attempt succeeded: forgets the failures at this name from this client and takes
    /// back the attempt's own count from the client's.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.names.pop(&(attempt.client, attempt.name));
        if let Some(w) = tables.clients.get_mut(&attempt.client) {
            w.count = w.count.saturating_sub(1);
        }
    }

    /// How many clients and client + name pairs are remembered.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        (tables.clients.len(), tables.names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn counts_per_client_and_name_before_checking() {
        let t = Throttle::new(2, 3, Duration::from_secs(60));
        let a = ip("192.0.2.1");
        t.begin(a, "Admin").expect("first");
        t.begin(a, "admin").expect("second");
        let refused = t.begin(a, "ADMIN").expect_err("third at the same name");
        assert!((59..=60).contains(&refused.retry_after_secs), "{refused:?}");
        // Another name from the same client: one more, then the client's limit.
        t.begin(a, "other").expect("another name");
        t.begin(a, "third").expect_err("the client's limit");
        // Another client is not affected, at any name.
        let ok = t.begin(ip("192.0.2.2"), "admin").expect("another client");
        t.succeeded(ok);
        assert_eq!(t.len(), (2, 2));
    }

    #[test]
    fn success_takes_its_count_back_and_windows_expire() {
        let t = Throttle::new(2, 2, Duration::from_millis(200));
        let a = ip("2001:db8::1");
        let first = t.begin(a, "admin").expect("first");
        t.succeeded(first);
        t.begin(a, "admin").expect("after a success");
        t.begin(ip("2001:db8::2"), "admin")
            .expect("the same /64: its second");
        t.begin(ip("2001:db8::3"), "x")
            .expect_err("the /64's limit");
        t.begin(ip("2001:db8:0:1::2"), "admin")
            .expect("another /64");
        std::thread::sleep(Duration::from_millis(250));
        t.begin(a, "admin").expect("the window passed");
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::new(5, 5, Duration::from_secs(60));
        for i in 0..(MAX_ENTRIES as u32 + 1000) {
            let _ = t.begin(IpAddr::V4(i.into()), &"n".repeat(1000));
        }
        assert_eq!(t.len(), (MAX_ENTRIES, MAX_ENTRIES));
        assert_eq!(
            client_key(ip("::ffff:192.0.2.9")),
            ip("192.0.2.9"),
            "mapped IPv4 is IPv4"
        );
    }
}
