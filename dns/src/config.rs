//! The settings the server runs with: the site file's `[dns]` section (its types are
//! `onebox_site`'s), overridden by the command line.

use crate::cli::ServeArgs;
pub use onebox_site::dns::{DnsConfig, ZoneConfig};
pub use onebox_site::value::AddressMatch;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
        let (dns, zones_base) = match &args.config {
            Some(path) => {
                let file = onebox_site::load(path)?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (file.dns, Some(base))
            }
            None => (DnsConfig::default(), None),
        };
        let default_listen = args.listen.is_empty() && dns.listen == DnsConfig::default_listen();
        let listen = if args.listen.is_empty() {
            dns.listen.to_vec()
        } else {
            args.listen.clone()
        };
        let zones = match (&args.zones, zones_base) {
            (Some(dir), _) => dir.clone(),
            (None, Some(base)) => base.join(&dns.zones),
            (None, None) => dns.zones.clone(),
        };
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Settings {
            listen,
            default_listen,
            zones,
            query_log: args.query_log || dns.query_log,
            tcp_max_connections: dns.tcp_max_connections.as_usize(),
            tcp_idle_timeout: dns.tcp_idle_timeout_secs.secs(),
            udp_sockets: dns.udp_sockets.map_or(cpus.clamp(1, 64), |n| n.as_usize()),
            zone: dns.zone,
        })
    }
}
