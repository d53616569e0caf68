//! Response Rate Limiting for UDP, as NSD and Knot have it: answers are counted per *flow* — the
//! client's network (/24 for IPv4, /56 for IPv6) and the kind of answer with the name it is about
//! — in token buckets; a flow over its rate has its answers dropped, except every Nth
//! (`slip`), which goes out empty with TC so that a real resolver asks again over TCP (which is
//! never limited: a TCP client cannot forge its address).
//!
//! The kinds of answer and the names they are keyed by follow NSD's `rrl_classify`: a positive
//! answer or an ANY answer by the question's name; a wildcard answer by the wildcard; NODATA,
//! NXDOMAIN and errors by the zone (a forger asking random names in one zone is one flow); a
//! referral by the delegation. An error outside every zone (REFUSED) is keyed by the root.
//!
//! The table is a fixed array of buckets allocated at start (bounded memory whatever the
//! traffic): four-way set-associative, indexed by a keyed hash (SipHash with a random key, so a
//! client cannot aim at another flow's bucket). A new flow takes an empty bucket of its set, or
//! the one with the most tokens — a bucket refilled to the brim holds no information, and a flow
//! being limited (few tokens) is the last to be displaced.

use hickory_proto::rr::Name;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Buckets per set.
const WAYS: usize = 4;

/// One response's cost, in thousandths of a token (tokens are counted in thousandths so that a
/// bucket refills every millisecond, not in one step per second).
const COST: u64 = 1000;

/// Bits of an IPv4 address that make a client's network.
pub const IPV4_PREFIX: u8 = 24;

/// Bits of an IPv6 address that make a client's network.
pub const IPV6_PREFIX: u8 = 56;

/// At most one log line per this many milliseconds.
const LOG_PERIOD_MS: u64 = 10_000;

/// The settings of the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlConfig {
    /// Answers per second each flow may have, on average.
    pub responses_per_sec: u32,
    /// Every `slip`th limited answer is sent truncated (TC) instead of dropped; 0: all are
    /// dropped; 1: all are sent truncated.
    pub slip: u32,
    /// Seconds of `responses_per_sec` a quiet flow may use at once (the bucket's depth).
    pub window_secs: u32,
    /// Flows tracked at once (the table's size in buckets; memory is about 40 bytes each).
    pub table_size: usize,
}

/// The kind of an answer, for rate limiting: each kind of a client network is limited on its
/// own, so that a flood of one kind does not starve the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// An answer with records for the question's name.
    Positive,
    /// An answer synthesised from a wildcard.
    Wildcard,
    /// NOERROR without records of the type asked for.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// A delegation to another zone's servers.
    Referral,
    /// An answer to an ANY question.
    Any,
    /// Any other response code (REFUSED, FORMERR, NOTIMP, ...).
    Error,
}

impl Class {
    /// The class's name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Positive => "positive",
            Class::Wildcard => "wildcard",
            Class::NoData => "nodata",
            Class::NxDomain => "nxdomain",
            Class::Referral => "referral",
            Class::Any => "any",
            Class::Error => "error",
        }
    }
}

/// What an answer is, for rate limiting: its class and the name the class is keyed by (`None`
/// for the root: an error outside every zone).
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    /// The answer's class.
    pub class: Class,
    /// The name it is about.
    pub name: Option<&'a Name>,
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send it as it is.
    Send,
    /// Send it empty, with TC.
    Slip,
    /// Send nothing.
    Drop,
}

/// One flow's token bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The flow's hash, with the low bit set; 0: the bucket is empty.
    key: u64,
    /// When the tokens were last counted, in milliseconds since the limiter started.
    stamp_ms: u64,
    /// Tokens left, in thousandths.
    tokens: u64,
    /// Answers limited since the flow last had a token (for slip, and to log a flow's start).
    limited: u32,
}

/// The rate limiter: shared by every UDP socket's task.
#[derive(Debug)]
pub struct RateLimiter {
    sets: Box<[Mutex<[Bucket; WAYS]>]>,
    hasher: std::hash::RandomState,
    /// Thousandths of a token added per millisecond (= answers per second).
    rate: u64,
    /// A bucket's depth, in thousandths of a token.
    capacity: u64,
    slip: u32,
    epoch: Instant,
    /// When the next log line may be written (milliseconds since `epoch`).
    next_log_ms: AtomicU64,
    /// Answers dropped and slipped since the last log line.
    dropped_since_log: AtomicU64,
    slipped_since_log: AtomicU64,
}

impl RateLimiter {
    /// A limiter with `config`'s settings; `None` if `responses_per_sec` is 0 (off).
    pub fn new(config: RrlConfig) -> Option<RateLimiter> {
        if config.responses_per_sec == 0 {
            return None;
        }
        let sets = config.table_size.div_ceil(WAYS).max(1).next_power_of_two();
        let rate = u64::from(config.responses_per_sec);
        Some(RateLimiter {
            sets: (0..sets)
                .map(|_| Mutex::new([Bucket::default(); WAYS]))
                .collect(),
            hasher: std::hash::RandomState::new(),
            rate,
            // At least one answer's worth, so that a flow at its rate is never limited.
            capacity: (rate * u64::from(config.window_secs.max(1)) * 1000).max(COST),
            slip: config.slip,
            epoch: Instant::now(),
            next_log_ms: AtomicU64::new(0),
            dropped_since_log: AtomicU64::new(0),
            slipped_since_log: AtomicU64::new(0),
        })
    }

    /// Buckets in the table.
    pub fn buckets(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Counts an answer of `flow` to `client` and says whether to send it.
    pub fn check(&self, client: IpAddr, flow: Flow<'_>) -> Action {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.check_at(client, flow, now_ms)
    }

    /// [`RateLimiter::check`] at a given time (milliseconds since the limiter started).
    fn check_at(&self, client: IpAddr, flow: Flow<'_>, now_ms: u64) -> Action {
        let (network, hash) = self.flow_hash(client, flow);
        let key = hash | 1;
        let index = (hash >> 32) as usize & (self.sets.len() - 1);
        let (action, started) = {
            let mut set = self.sets[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let bucket = self.bucket_for(&mut set, key, now_ms);
            let refill = now_ms.saturating_sub(bucket.stamp_ms) * self.rate;
            bucket.tokens = bucket.tokens.saturating_add(refill).min(self.capacity);
            bucket.stamp_ms = bucket.stamp_ms.max(now_ms);
            if bucket.tokens >= COST {
                bucket.tokens -= COST;
                bucket.limited = 0;
                return Action::Send;
            }
            bucket.limited = bucket.limited.saturating_add(1);
            let slip = self.slip > 0 && bucket.limited.is_multiple_of(self.slip);
            let action = if slip { Action::Slip } else { Action::Drop };
            (action, bucket.limited == 1)
        };
        match action {
            Action::Slip => self.slipped_since_log.fetch_add(1, Ordering::Relaxed),
            _ => self.dropped_since_log.fetch_add(1, Ordering::Relaxed),
        };
        self.maybe_log(network, flow, started, now_ms);
        action
    }

    /// The bucket of `key` in `set`: its own, or a new one in place of the least useful.
    fn bucket_for<'s>(&self, set: &'s mut [Bucket; WAYS], key: u64, now_ms: u64) -> &'s mut Bucket {
        if let Some(i) = set.iter().position(|b| b.key == key) {
            return &mut set[i];
        }
        let fullness = |b: &Bucket| {
            if b.key == 0 {
                u64::MAX
            } else {
                let refill = now_ms.saturating_sub(b.stamp_ms) * self.rate;
                b.tokens.saturating_add(refill).min(self.capacity)
            }
        };
        let victim = (0..WAYS).max_by_key(|&i| fullness(&set[i])).unwrap_or(0);
        set[victim] = Bucket {
            key,
            stamp_ms: now_ms,
            tokens: self.capacity,
            limited: 0,
        };
        &mut set[victim]
    }

    /// The client's network, and the hash of the flow (network, class, lower-case name).
    fn flow_hash(&self, client: IpAddr, flow: Flow<'_>) -> (Network, u64) {
        let network = Network::of(client);
        let mut key = [0u8; 2 + 16 + 256];
        key[0] = network.family;
        key[1] = flow.class as u8;
        key[2..18].copy_from_slice(&network.bits.to_be_bytes());
        let mut len = 18;
        if let Some(name) = flow.name {
            for label in name.iter() {
                // Names are at most 255 bytes on the wire, length bytes included.
                if len + 1 + label.len() > key.len() {
                    break;
                }
                key[len] = label.len() as u8;
                for (to, from) in key[len + 1..].iter_mut().zip(label) {
                    *to = from.to_ascii_lowercase();
                }
                len += 1 + label.len();
            }
        }
        (network, self.hasher.hash_one(&key[..len]))
    }

    /// Logs at most one line per [`LOG_PERIOD_MS`]: the answers limited since the last line, and
    /// the flow at hand.
    fn maybe_log(&self, network: Network, flow: Flow<'_>, started: bool, now_ms: u64) {
        let next = self.next_log_ms.load(Ordering::Relaxed);
        if now_ms < next
            || self
                .next_log_ms
                .compare_exchange(
                    next,
                    now_ms + LOG_PERIOD_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let dropped = self.dropped_since_log.swap(0, Ordering::Relaxed);
        let slipped = self.slipped_since_log.swap(0, Ordering::Relaxed);
        let name = flow.name.map_or_else(|| ".".to_string(), Name::to_string);
        tracing::warn!(
            "response rate limiting: {} answers for {name} to {network} are over {} per \
             second{}; {dropped} answers dropped and {slipped} sent truncated since the last \
             such line (at most one every {} s)",
            flow.class.as_str(),
            self.rate,
            if started { " (from now)" } else { "" },
            LOG_PERIOD_MS / 1000,
        );
    }
}

/// A client's network: the address with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    /// 4 or 6.
    family: u8,
    /// The address bits, IPv4 in the low 32.
    bits: u128,
}

impl Network {
    fn of(addr: IpAddr) -> Network {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match addr {
            IpAddr::V4(v4) => Network {
                family: 4,
                bits: u128::from(u32::from(v4) & (u32::MAX << (32 - IPV4_PREFIX))),
            },
            IpAddr::V6(v6) => Network {
                family: 6,
                bits: u128::from(v6) & (u128::MAX << (128 - IPV6_PREFIX)),
            },
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.family {
            4 => write!(
                f,
                "{}/{IPV4_PREFIX}",
                std::net::Ipv4Addr::from(self.bits as u32)
            ),
            _ => write!(f, "{}/{IPV6_PREFIX}", std::net::Ipv6Addr::from(self.bits)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limiter(rate: u32, slip: u32, window: u32, table: usize) -> RateLimiter {
        RateLimiter::new(RrlConfig {
            responses_per_sec: rate,
            slip,
            window_secs: window,
            table_size: table,
        })
        .unwrap()
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn positive(name: &Name) -> Flow<'_> {
        Flow {
            class: Class::Positive,
            name: Some(name),
        }
    }

    fn addr(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Counts the actions of `n` answers at `now_ms`.
    fn burst(rrl: &RateLimiter, client: &str, flow: Flow<'_>, n: usize, now_ms: u64) -> [usize; 3] {
        let mut counts = [0; 3];
        for _ in 0..n {
            match rrl.check_at(addr(client), flow, now_ms) {
                Action::Send => counts[0] += 1,
                Action::Slip => counts[1] += 1,
                Action::Drop => counts[2] += 1,
            }
        }
        counts
    }

    #[test]
    fn off_at_rate_zero() {
        assert!(
            RateLimiter::new(RrlConfig {
                responses_per_sec: 0,
                slip: 2,
                window_secs: 4,
                table_size: 100,
            })
            .is_none()
        );
    }

    #[test]
    fn a_flow_gets_its_window_then_its_rate_and_every_slipth_limited_answer_truncated() {
        let rrl = limiter(10, 2, 2, 1024);
        let www = name("www.example.com.");
        // A quiet flow may use two seconds' worth at once; then half the rest slip, half drop.
        assert_eq!(
            burst(&rrl, "192.0.2.1", positive(&www), 100, 1000),
            [20, 40, 40]
        );
        // Half a second later, five more answers' worth.
        assert_eq!(
            burst(&rrl, "192.0.2.1", positive(&www), 10, 1500),
            [5, 2, 3]
        );
        // The same /24 is the same flow; the name's case does not matter.
        let upper = name("WWW.Example.COM.");
        assert_eq!(
            burst(&rrl, "192.0.2.200", positive(&upper), 2, 1500),
            [0, 1, 1]
        );
        // Another network, another name, another class: their own buckets.
        assert_eq!(burst(&rrl, "192.0.3.1", positive(&www), 1, 1500), [1, 0, 0]);
        let other = name("other.example.com.");
        assert_eq!(
            burst(&rrl, "192.0.2.1", positive(&other), 1, 1500),
            [1, 0, 0]
        );
        let nx = Flow {
            class: Class::NxDomain,
            name: Some(&www),
        };
        assert_eq!(burst(&rrl, "192.0.2.1", nx, 1, 1500), [1, 0, 0]);
        // A long quiet time refills to the window, not beyond.
        assert_eq!(
            burst(&rrl, "192.0.2.1", positive(&www), 30, 100_000),
            [20, 5, 5]
        );
    }

    #[test]
    fn ipv6_networks_are_56_bits_and_mapped_ipv4_is_ipv4() {
        let rrl = limiter(1, 0, 1, 1024);
        let www = name("www.example.com.");
        assert_eq!(
            burst(&rrl, "2001:db8:0:1::1", positive(&www), 2, 0),
            [1, 0, 1]
        );
        assert_eq!(
            burst(&rrl, "2001:db8:0:ff::2", positive(&www), 1, 0),
            [0, 0, 1]
        );
        assert_eq!(
            burst(&rrl, "2001:db8:0:100::1", positive(&www), 1, 0),
            [1, 0, 0]
        );
        assert_eq!(burst(&rrl, "192.0.2.1", positive(&www), 1, 0), [1, 0, 0]);
        assert_eq!(
            burst(&rrl, "::ffff:192.0.2.9", positive(&www), 1, 0),
            [0, 0, 1]
        );
    }

    #[test]
    fn slip_one_truncates_every_limited_answer_and_slip_zero_none() {
        let www = name("www.example.com.");
        let rrl = limiter(1, 1, 1, 64);
        assert_eq!(burst(&rrl, "192.0.2.1", positive(&www), 10, 0), [1, 9, 0]);
        let rrl = limiter(1, 0, 1, 64);
        assert_eq!(burst(&rrl, "192.0.2.1", positive(&www), 10, 0), [1, 0, 9]);
    }

    #[test]
    fn a_limited_flow_keeps_its_bucket_while_many_others_come_and_go() {
        // 64 buckets, 10,000 other flows passing through: the limited flow stays limited.
        let rrl = limiter(1, 0, 4, 64);
        assert_eq!(rrl.buckets(), 64);
        let www = name("www.example.com.");
        assert_eq!(burst(&rrl, "192.0.2.1", positive(&www), 5, 0), [4, 0, 1]);
        for i in 0..10_000u32 {
            let other = name(&format!("n{i}.example.com."));
            rrl.check_at(addr("198.51.100.1"), positive(&other), 0);
        }
        assert_eq!(burst(&rrl, "192.0.2.1", positive(&www), 5, 0), [0, 0, 5]);
    }
}
