//! The `[dns]` section of the site file, and the settings the server runs with.

use crate::cli::ServeArgs;
use ipnet::IpNet;
use onebox_site::Site;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The whole site file as onebox-dns reads it: its own `[dns]` section, the shared `[site]`,
/// and the other services' sections (not looked at, but a misspelled section is an error).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// The `[site]` section.
    pub site: Site,
    /// The `[dns]` section.
    pub dns: Option<DnsConfig>,
    /// onebox-edge's section.
    pub edge: Option<toml::Value>,
    /// onebox-app's section.
    pub app: Option<toml::Value>,
}

/// The `[dns]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Addresses to serve on, UDP and TCP each. Default: `[::]:53` and `0.0.0.0:53`.
    pub listen: Option<Vec<SocketAddr>>,
    /// The directory of zone files, one `NAME.zone` per zone. Relative to the site file's
    /// directory. Default: `/etc/onebox/zones`.
    pub zones: Option<PathBuf>,
    /// Log every query (client, name, type, response code) at INFO. Default: false.
    #[serde(default)]
    pub query_log: bool,
    /// Most TCP connections open at once; more are closed on accept. Default: 256.
    pub tcp_max_connections: Option<usize>,
    /// Seconds a TCP connection may stay idle (or take to send a query) before it is closed.
    /// Default: 10.
    pub tcp_idle_timeout: Option<u64>,
    /// UDP sockets per listen address (SO_REUSEPORT), each served by its own task.
    /// Default: the number of CPUs.
    pub udp_sockets: Option<usize>,
    /// Per-zone settings.
    #[serde(default)]
    pub zone: Vec<ZoneConfig>,
}

/// A `[[dns.zone]]` table: settings for one zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone's apex, e.g. `foobar.com`.
    pub name: String,
    /// Clients allowed to transfer the zone (AXFR/IXFR over TCP): addresses or networks, e.g.
    /// `["127.0.0.1", "2001:db8::/64"]`. Default: nobody.
    #[serde(default)]
    pub allow_transfer: Vec<AddressMatch>,
}

/// An address or a network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressMatch(pub IpNet);

impl AddressMatch {
    /// Whether `addr` is this address or inside this network.
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&addr)
    }
}

impl<'de> Deserialize<'de> for AddressMatch {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(AddressMatch(IpNet::from(addr)));
        }
        text.parse::<IpNet>().map(AddressMatch).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{text}` is not an IP address or a network like 10.0.0.0/8"
            ))
        })
    }
}

/// The settings the server runs with: the config file's, overridden by the command line's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen, UDP and TCP each.
    pub listen: Vec<SocketAddr>,
    /// Whether `listen` is the built-in default (then an address family the host lacks is
    /// skipped with a warning instead of failing).
    pub default_listen: bool,
    /// The zone directory.
    pub zones: PathBuf,
    /// Log each query.
    pub query_log: bool,
    /// Most TCP connections at once.
    pub tcp_max_connections: usize,
    /// TCP idle timeout.
    pub tcp_idle_timeout: std::time::Duration,
    /// UDP sockets per listen address.
    pub udp_sockets: usize,
    /// Per-zone settings.
    pub zone: Vec<ZoneConfig>,
}

impl Settings {
    /// Builds the settings from the command line and, with `--config`, the site file.
    pub fn from_args(args: &ServeArgs) -> Result<Settings, onebox_site::ConfigError> {
        let (dns, base) = match &args.config {
            Some(path) => {
                let file: SiteFile = onebox_site::load(path)?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (file.dns.unwrap_or_default(), base)
            }
            None => (DnsConfig::default(), PathBuf::new()),
        };
        let default_listen = args.listen.is_empty() && dns.listen.is_none();
        let listen = if !args.listen.is_empty() {
            args.listen.clone()
        } else {
            dns.listen.clone().unwrap_or_else(|| {
                vec![
                    SocketAddr::from(([0u16; 8], 53)),
                    SocketAddr::from(([0u8; 4], 53)),
                ]
            })
        };
        let zones = match (&args.zones, &dns.zones) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => base.join(dir),
            (None, None) => PathBuf::from("/etc/onebox/zones"),
        };
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Settings {
            listen,
            default_listen,
            zones,
            query_log: args.query_log || dns.query_log,
            tcp_max_connections: dns.tcp_max_connections.unwrap_or(256).max(1),
            tcp_idle_timeout: std::time::Duration::from_secs(
                dns.tcp_idle_timeout.unwrap_or(10).max(1),
            ),
            udp_sockets: dns.udp_sockets.unwrap_or(cpus).clamp(1, 64),
            zone: dns.zone,
        })
    }
}
