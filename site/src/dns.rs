//! The `[dns]` section: onebox-dns's settings.

use crate::value::{AddressMatch, At, Bounded, Domain, LoopbackAddr, NonEmpty};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The `[dns]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Addresses to serve on, UDP and TCP each. Default: `[::]:53` and `0.0.0.0:53` (when the
    /// value is the default, an address family the host lacks is skipped with a warning).
    pub listen: NonEmpty<SocketAddr>,
    /// The directory of zone files, one `NAME.zone` per zone; a relative path is relative to the
    /// site file's directory. Default: `/etc/onebox/zones`.
    pub zones: PathBuf,
    /// Log every query (client, name, type, response code) at INFO. Default: false.
    pub query_log: bool,
    /// Most TCP connections open at once; more are closed on accept. Default: 256.
    pub tcp_max_connections: Bounded<1, 1_000_000>,
    /// Seconds a TCP connection may stay idle (or take to send a query) before it is closed.
    /// Default: 10.
    pub tcp_idle_timeout_secs: Bounded<1, 3600>,
    /// UDP sockets per listen address (SO_REUSEPORT), each served by its own task. Default
    /// (absent): the number of CPUs, at most 64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_sockets: Option<Bounded<1, 64>>,
    /// Most TCP connections open at once from one client (an IPv4 address, or an IPv6 /64);
    /// more are closed on accept. Default: 16.
    pub tcp_max_connections_per_client: Bounded<1, 1_000_000>,
    /// Seconds a TCP connection may live: after this no new query is read from it and it is
    /// closed (answers already asked for are sent). Default: 120.
    pub tcp_max_connection_secs: Bounded<1, 86_400>,
    /// Response rate limiting of UDP answers: how many answers per second each flow — one
    /// client network (IPv4 /24, IPv6 /56) and one kind of answer about one name — may get;
    /// 0 turns it off. Default: 200 (NSD's).
    pub rrl_responses_per_sec: Bounded<0, 1_000_000>,
    /// Every `rrl_slip`th answer over the limit is sent empty with TC (a real resolver asks
    /// again over TCP, which is never limited); the others are dropped. 0: all dropped; 1: all
    /// truncated. Default: 2.
    pub rrl_slip: Bounded<0, 100>,
    /// Seconds' worth of `rrl_responses_per_sec` a flow that was quiet may use at once (its
    /// token bucket's depth). Default: 4.
    pub rrl_window_secs: Bounded<1, 3600>,
    /// Flows response rate limiting tracks at once: a table of this many buckets (about 34
    /// bytes each) allocated at start, whatever the traffic. Default: 65536.
    pub rrl_table_size: Bounded<64, 16_777_216>,
    /// Where to serve Prometheus metrics (`GET /metrics`, OpenMetrics text): a loopback
    /// address. Default (absent): not served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<LoopbackAddr>,
    /// onebox-dns's own writable state: DNSSEC keys and signing state (`dnssec/ZONE.toml`,
    /// made at the first start that signs the zone; directory 0700, files 0600) and the control
    /// socket of `onebox-dns dnssec ...`. A relative path is relative to the site file's
    /// directory. Default: `/var/lib/onebox-dns`.
    pub state_dir: PathBuf,
    /// Seconds a new DNSSEC signature is valid for (its expiration, less up to a tenth of this
    /// as jitter; its inception is an hour back, for clocks behind ours). Default: 1209600 (14
    /// days, Knot's).
    pub dnssec_signature_lifetime_secs: Bounded<60, 31_536_000>,
    /// A signed zone is signed again when its earliest signature expires within this many
    /// seconds; must be below `dnssec_signature_lifetime_secs`. Default: 604800 (7 days).
    pub dnssec_signature_refresh_secs: Bounded<30, 31_536_000>,
    /// Seconds a zone-signing key signs before it is replaced (a pre-publish rollover: the new
    /// key is published first, signs once caches know it, and the old one is removed once its
    /// signatures are out of caches). Default: 2592000 (30 days, Knot's).
    pub dnssec_zsk_lifetime_secs: Bounded<1, 315_360_000>,
    /// Seconds an update takes to reach every secondary and a cache, added to TTLs when a key
    /// rollover waits for caches. Default: 3600 (Knot's).
    pub dnssec_propagation_delay_secs: Bounded<0, 604_800>,
    /// Per-zone settings, `[[dns.zone]]` tables. Default: none.
    pub zone: Vec<ZoneConfig>,
}

impl DnsConfig {
    /// The default `listen`: `[::]:53` and `0.0.0.0:53`.
    pub fn default_listen() -> NonEmpty<SocketAddr> {
        NonEmpty::of(
            SocketAddr::from(([0u16; 8], 53)),
            vec![SocketAddr::from(([0u8; 4], 53))],
        )
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: DnsConfig::default_listen(),
            zones: PathBuf::from("/etc/onebox/zones"),
            query_log: false,
            tcp_max_connections: Bounded::clamped(256),
            tcp_idle_timeout_secs: Bounded::clamped(10),
            udp_sockets: None,
            tcp_max_connections_per_client: Bounded::clamped(16),
            tcp_max_connection_secs: Bounded::clamped(120),
            rrl_responses_per_sec: Bounded::clamped(200),
            rrl_slip: Bounded::clamped(2),
            rrl_window_secs: Bounded::clamped(4),
            rrl_table_size: Bounded::clamped(65_536),
            metrics_listen: None,
            state_dir: PathBuf::from("/var/lib/onebox-dns"),
            dnssec_signature_lifetime_secs: Bounded::clamped(1_209_600),
            dnssec_signature_refresh_secs: Bounded::clamped(604_800),
            dnssec_zsk_lifetime_secs: Bounded::clamped(2_592_000),
            dnssec_propagation_delay_secs: Bounded::clamped(3600),
            zone: Vec::new(),
        }
    }
}

/// A `[[dns.zone]]` table: settings for one zone. `name` is required.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone's apex, e.g. `foobar.com` (its file is `NAME.zone` in the zone directory).
    pub name: At<Domain>,
    /// Clients allowed to transfer the zone (AXFR/IXFR over TCP): addresses or networks, e.g.
    /// `["192.0.2.53", "2001:db8::/64"]`. Default: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_transfer: Vec<AddressMatch>,
    /// Sign the zone (DNSSEC: ECDSA P-256 keys made in `[dns] state_dir` at the first start,
    /// NSEC denial, signatures renewed before they expire). `onebox-dns ds ZONE` prints the DS
    /// record for the registrar. Default: false (`onebox provision` sets it for the zone it
    /// generates).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dnssec: bool,
}

impl ZoneConfig {
    /// Settings for the zone `name` with every other key at its default.
    pub fn new(name: Domain) -> ZoneConfig {
        ZoneConfig {
            name: At::new(name),
            allow_transfer: Vec::new(),
            dnssec: false,
        }
    }
}
