//! The settings the server runs with: the site file's `[dns]` section (its types are
//! `onebox_site`'s), overridden by the command line.

use crate::cli::ServeArgs;
use crate::rrl::RrlConfig;
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
    /// Cache the answers of plain UDP queries.
    pub answer_cache: bool,
    /// Most TCP connections at once.
    pub tcp_max_connections: usize,
    /// Most TCP connections at once from one client.
    pub tcp_max_connections_per_client: usize,
    /// TCP idle timeout.
    pub tcp_idle_timeout: std::time::Duration,
    /// How long a TCP connection may live.
    pub tcp_max_connection_time: std::time::Duration,
    /// UDP sockets per listen address.
    pub udp_sockets: usize,
    /// The longest a UDP thread waits after a batch before it reads again (its waits are
    /// adaptive: [`crate::batch::Pacer`]); zero: never.
    pub udp_batch_wait: std::time::Duration,
    /// Response rate limiting (off when its rate is 0).
    pub rrl: RrlConfig,
    /// Where to serve metrics, if anywhere (a loopback address).
    pub metrics_listen: Option<SocketAddr>,
    /// Per-zone settings.
    pub zone: Vec<ZoneConfig>,
    /// onebox-dns's state directory (DNSSEC keys, control socket).
    pub state_dir: PathBuf,
    /// The DNSSEC signing policy.
    pub dnssec: crate::dnssec::Policy,
    /// The site file and its `[dns]` section as read at start (SIGHUP rereads the file's
    /// per-zone settings); `None` without `--config`.
    pub site_file: Option<(PathBuf, DnsConfig)>,
    /// The TSIG keys (`[[dns.tsig]]`, their secret files read).
    pub tsig_keys: crate::xfr::tsig::Keys,
    /// The bounds on transfers in.
    pub transfers_in: crate::xfr::Limits,
    /// Transfers out at once.
    pub transfers_out_max: usize,
}

impl Settings {
    /// Builds the settings from the command line and, with `--config`, the site file.
    pub fn from_args(args: &ServeArgs) -> Result<Settings, onebox_site::ConfigError> {
        let (dns, zones_base, tsig_keys) = match &args.config {
            Some(path) => {
                let file = onebox_site::load(path)?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let keys = crate::xfr::tsig::Keys::load(&file.dns, &base)
                    .map_err(|e| file.error_at(e.span, &e.key, e.message))?;
                (file.dns, Some(base), keys)
            }
            None => (
                DnsConfig::default(),
                None,
                crate::xfr::tsig::Keys::default(),
            ),
        };
        let site_file = args.config.clone().map(|path| (path, dns.clone()));
        let default_listen = args.listen.is_empty() && dns.listen == DnsConfig::default_listen();
        let listen = if args.listen.is_empty() {
            dns.listen.to_vec()
        } else {
            args.listen.clone()
        };
        let zones = match (&args.zones, &zones_base) {
            (Some(dir), _) => dir.clone(),
            (None, Some(base)) => base.join(&dns.zones),
            (None, None) => dns.zones.clone(),
        };
        let state_dir = match &zones_base {
            Some(base) => base.join(&dns.state_dir),
            None => dns.state_dir.clone(),
        };
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Settings {
            listen,
            default_listen,
            zones,
            query_log: args.query_log || dns.query_log,
            answer_cache: dns.answer_cache,
            tcp_max_connections: dns.tcp_max_connections.as_usize(),
            tcp_max_connections_per_client: dns.tcp_max_connections_per_client.as_usize(),
            tcp_idle_timeout: dns.tcp_idle_timeout_secs.secs(),
            tcp_max_connection_time: dns.tcp_max_connection_secs.secs(),
            udp_sockets: dns.udp_sockets.map_or(cpus.clamp(1, 64), |n| n.as_usize()),
            udp_batch_wait: std::time::Duration::from_micros(dns.udp_batch_wait_us.get()),
            rrl: RrlConfig {
                responses_per_sec: dns.rrl_responses_per_sec.as_u32(),
                slip: dns.rrl_slip.as_u32(),
                window_secs: dns.rrl_window_secs.as_u32(),
                table_size: dns.rrl_table_size.as_usize(),
            },
            metrics_listen: dns.metrics_listen.map(|a| a.get()),
            state_dir,
            dnssec: crate::dnssec::Policy {
                signature_lifetime: dns.dnssec_signature_lifetime_secs.get(),
                signature_refresh: dns.dnssec_signature_refresh_secs.get(),
                zsk_lifetime: dns.dnssec_zsk_lifetime_secs.get(),
                propagation_delay: dns.dnssec_propagation_delay_secs.get(),
            },
            tsig_keys,
            transfers_in: crate::xfr::Limits {
                transfer_max_bytes: dns.transfer_max_bytes.get(),
                transfer_timeout: dns.transfer_timeout_secs.secs(),
                transfers_in: dns.transfers_in_max.as_usize(),
            },
            transfers_out_max: dns.transfers_out_max.as_usize(),
            zone: dns.zone,
            site_file,
        })
    }
}
