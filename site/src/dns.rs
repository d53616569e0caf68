//! The `[dns]` section: onebox-dns's settings.

use crate::value::{AddressMatch, At, Bounded, Domain, LoopbackAddr, NonEmpty};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
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
    /// Keep the encoded answers of plain queries (UDP and TCP) and answer the same query again,
    /// in any mix of capitals (DNS 0x20), with a copy (its ID, RD bit and the question's spelling
    /// patched in); emptied whenever the zones served change. Bounded at 65,536 answers and
    /// 64 MiB. Off while `query_log` is on. Default: true.
    pub answer_cache: bool,
    /// Most TCP connections open at once; more are closed on accept. Default: 256.
    pub tcp_max_connections: Bounded<1, 1_000_000>,
    /// Seconds a TCP connection may stay idle (or take to send a query) before it is closed.
    /// Default: 10.
    pub tcp_idle_timeout_secs: Bounded<1, 3600>,
    /// UDP sockets per listen address (SO_REUSEPORT), each served by its own thread. Default
    /// (absent): the number of CPUs, at most 64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_sockets: Option<Bounded<1, 64>>,
    /// The longest a UDP thread waits, in microseconds, after answering a batch of datagrams
    /// and before reading again, so that the next batch is larger: fewer wake-ups and system
    /// calls per answer. The wait is adaptive: each thread estimates the arrival rate of its
    /// socket over the last few tens of milliseconds and waits only when that rate brings at
    /// least 4 datagrams within this time (at 500: from 8,000 queries per second per socket),
    /// as long as 16 are expected to take (less at higher rates, none when answering the batch
    /// took that long or it filled the 32 a read takes), and stops waiting for a while when
    /// its waits do not gather (clients that each wait for their answer). So a lightly loaded
    /// or idle server answers every query at once, and a busy one adds up to this much latency
    /// (and the timer's slack, 50 µs) for less CPU per answer (at 20,000 queries per second in
    /// `bench/dns/run`, 250 took 0.66–0.87× the CPU of never waiting, and 500 0.86× that of
    /// 250, at 0.41 ms average latency against 0.26). What arrives during a wait queues in the
    /// socket's receive buffer (`net.core.rmem_default`, 208 KiB: about 200 small queries): a
    /// wait gathers about 16. 0: never waits. Default: 500.
    pub udp_batch_wait_us: Bounded<0, 1000>,
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
    /// TSIG keys (RFC 8945) shared with secondaries and primaries, `[[dns.tsig]]` tables, named
    /// by `allow_transfer`, `notify` and `primary`. Default: none.
    pub tsig: Vec<TsigKey>,
    /// Most bytes one incoming zone transfer (AXFR/IXFR from a primary) may carry; a larger one
    /// is cut off and the zone kept as it was. Default: 16777216 (16 MiB).
    pub transfer_max_bytes: Bounded<65_536, 4_294_967_296>,
    /// Seconds an incoming zone transfer may take, from connecting to its last message.
    /// Default: 300.
    pub transfer_timeout_secs: Bounded<1, 86_400>,
    /// Incoming zone transfers (this server as a secondary) at once; more wait. Default: 4.
    pub transfers_in_max: Bounded<1, 1000>,
    /// Outgoing zone transfers (AXFR/IXFR answered) at once; more are REFUSED. Default: 10
    /// (BIND's `transfers-out`).
    pub transfers_out_max: Bounded<1, 1000>,
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
            answer_cache: true,
            tcp_max_connections: Bounded::clamped(256),
            tcp_idle_timeout_secs: Bounded::clamped(10),
            udp_sockets: None,
            udp_batch_wait_us: Bounded::clamped(500),
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
            tsig: Vec::new(),
            transfer_max_bytes: Bounded::clamped(16 * 1024 * 1024),
            transfer_timeout_secs: Bounded::clamped(300),
            transfers_in_max: Bounded::clamped(4),
            transfers_out_max: Bounded::clamped(10),
        }
    }
}

/// A `[[dns.zone]]` table: settings for one zone. `name` is required.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone's apex, e.g. `foobar.com` (its file is `NAME.zone` in the zone directory).
    pub name: At<Domain>,
    /// Clients allowed to transfer the zone (AXFR/IXFR over TCP): addresses or networks, TSIG
    /// keys, or both (`["192.0.2.53", "2001:db8::/64", "key xfr-key", "192.0.2.54 key xfr-key"]`;
    /// an entry with both needs both). Default: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_transfer: Vec<TransferAllow>,
    /// Secondaries sent a NOTIFY whenever the zone's serial changes (a reload, a re-signing, a
    /// transfer from the primary), retried until they answer: `"ADDR[:PORT]"`, or
    /// `"ADDR[:PORT] key NAME"` to sign it with a `[[dns.tsig]]` key. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Remote>,
    /// Makes this server a secondary for the zone: its primary, `"ADDR[:PORT]"` or
    /// `"ADDR[:PORT] key NAME"` (transfers and SOA queries signed with that key, and NOTIFY
    /// accepted only from that address, signed with it). The zone is then pulled by IXFR/AXFR,
    /// kept in `[dns] state_dir`, and has no file in the zone directory. Default: none (the zone
    /// is read from its file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<Remote>,
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
            notify: Vec::new(),
            primary: None,
            dnssec: false,
        }
    }
}

impl DnsConfig {
    /// The rules that tie the transfer keys together: TSIG key names are unique, each has one
    /// secret, and every key named by `allow_transfer`, `notify` or `primary` is defined. On
    /// error: the offending value's span, its key path, and the message.
    pub fn check_transfer_keys(&self) -> Result<(), (std::ops::Range<usize>, String, String)> {
        let mut names = std::collections::HashSet::new();
        for (i, key) in self.tsig.iter().enumerate() {
            if !names.insert(key.name.get().clone()) {
                return Err((
                    key.name.span(),
                    format!("dns.tsig[{i}].name"),
                    format!("the key `{}` is defined twice", *key.name),
                ));
            }
            match (&key.secret, &key.secret_file) {
                (Some(_), None) | (None, Some(_)) => {}
                (None, None) => {
                    return Err((
                        key.name.span(),
                        format!("dns.tsig[{i}]"),
                        format!("the key `{}` needs `secret` or `secret_file`", *key.name),
                    ));
                }
                (Some(_), Some(file)) => {
                    return Err((
                        file.span(),
                        format!("dns.tsig[{i}].secret_file"),
                        "give `secret` or `secret_file`, not both".into(),
                    ));
                }
            }
        }
        let undefined = |name: &KeyName| !names.contains(name);
        for (i, zone) in self.zone.iter().enumerate() {
            if zone.primary.is_some() && zone.dnssec {
                return Err((
                    zone.name.span(),
                    format!("dns.zone[{i}].dnssec"),
                    "a secondary zone (with `primary`) is signed by its primary, not here".into(),
                ));
            }
            let used = zone
                .allow_transfer
                .iter()
                .filter_map(|a| a.key.as_ref().map(|k| (k, "allow_transfer")))
                .chain(
                    zone.notify
                        .iter()
                        .filter_map(|r| r.key.as_ref().map(|k| (k, "notify"))),
                )
                .chain(
                    zone.primary
                        .iter()
                        .filter_map(|r| r.key.as_ref().map(|k| (k, "primary"))),
                );
            for (key, field) in used {
                if undefined(key) {
                    return Err((
                        zone.name.span(),
                        format!("dns.zone[{i}].{field}"),
                        format!("the TSIG key `{key}` is not defined by a [[dns.tsig]] table"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The name of a TSIG key, as both sides of a transfer spell it (`xfr-key`,
/// `onebox.example.com`): a domain name of letters, digits, `-` and `_`, compared without case.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyName {
    text: String,
    name: hickory_proto::rr::Name,
}

impl KeyName {
    /// Parses a key name (one trailing dot allowed; case is folded).
    pub fn parse(text: &str) -> Result<KeyName, String> {
        let shown: String = text.escape_debug().collect();
        let lower = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 253 {
            return Err(format!(
                "`{shown}` is not a key name: empty or over 253 characters"
            ));
        }
        if lower.parse::<IpAddr>().is_ok() {
            return Err(format!("`{shown}` is an address, not a key name"));
        }
        for label in lower.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!(
                    "`{shown}` is not a key name: labels are 1 to 63 characters"
                ));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(format!(
                    "`{shown}` is not a key name: `{}` is not allowed (letters, digits, `-`, `_` \
                     and `.` only)",
                    c.escape_debug()
                ));
            }
        }
        let name = hickory_proto::rr::Name::from_ascii(format!("{lower}."))
            .map_err(|e| format!("`{shown}` is not a key name: {e}"))?;
        Ok(KeyName { text: lower, name })
    }

    /// The name as text: lower case, no trailing dot.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name as a fully qualified DNS name, as the TSIG record carries it.
    pub fn name(&self) -> &hickory_proto::rr::Name {
        &self.name
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyName({})", self.text)
    }
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        KeyName::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for KeyName {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&self.text)
    }
}

/// `ADDR[:PORT]` followed by `key NAME`, or not: the text of [`Remote`] and [`TransferAllow`].
fn split_key(text: &str) -> Result<(Option<&str>, Option<KeyName>), String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [addr] => Ok((Some(addr), None)),
        ["key", name] => Ok((None, Some(KeyName::parse(name)?))),
        [addr, "key", name] => Ok((Some(addr), Some(KeyName::parse(name)?))),
        _ => Err(format!(
            "`{}` is not `ADDRESS`, `ADDRESS key NAME` or `key NAME`",
            text.escape_debug()
        )),
    }
}

/// A peer of a zone transfer: its address (port 53 unless given) and the TSIG key, if any, that
/// signs what goes to it and must sign what comes from it. Written `"192.0.2.53"`,
/// `"192.0.2.53:5353"`, `"[2001:db8::53]:53"`, `"192.0.2.53 key xfr-key"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Its address and port.
    pub addr: SocketAddr,
    /// The `[[dns.tsig]]` key, if any.
    pub key: Option<KeyName>,
}

impl Remote {
    /// Parses `ADDR[:PORT] [key NAME]`.
    pub fn parse(text: &str) -> Result<Remote, String> {
        let (Some(addr), key) = split_key(text)? else {
            return Err(format!(
                "`{}` has no address (write `ADDRESS[:PORT] key NAME`)",
                text.escape_debug()
            ));
        };
        let addr = match addr.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => SocketAddr::new(
                addr.parse::<IpAddr>().map_err(|_| {
                    format!(
                        "`{}` is not an address like 192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53",
                        addr.escape_debug()
                    )
                })?,
                53,
            ),
        };
        if addr.port() == 0 {
            return Err(format!("`{}`: port 0", text.escape_debug()));
        }
        Ok(Remote { addr, key })
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)?;
        if let Some(key) = &self.key {
            write!(f, " key {key}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Remote {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        Remote::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Remote {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

/// Who may transfer a zone: an address or network, a TSIG key, or both (then a request needs
/// both). Written `"192.0.2.53"`, `"192.0.2.0/24"`, `"key xfr-key"`, `"192.0.2.53 key xfr-key"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferAllow {
    /// The address or network the request must come from, if any.
    pub addr: Option<AddressMatch>,
    /// The key the request must be signed with, if any.
    pub key: Option<KeyName>,
}

impl TransferAllow {
    /// Parses `ADDR[/LEN]`, `key NAME` or `ADDR[/LEN] key NAME`.
    pub fn parse(text: &str) -> Result<TransferAllow, String> {
        let (addr, key) = split_key(text)?;
        let addr = addr.map(AddressMatch::parse).transpose()?;
        Ok(TransferAllow { addr, key })
    }

    /// Whether a request from `client`, signed with the key `signed_with` (a verified TSIG key
    /// name, `None` when unsigned), is allowed by this entry.
    pub fn allows(&self, client: IpAddr, signed_with: Option<&hickory_proto::rr::Name>) -> bool {
        let addr_ok = self.addr.is_none_or(|a| a.matches(client));
        let key_ok = match &self.key {
            None => true,
            Some(key) => signed_with.is_some_and(|name| name == key.name()),
        };
        addr_ok && key_ok
    }
}

impl From<AddressMatch> for TransferAllow {
    fn from(addr: AddressMatch) -> Self {
        TransferAllow {
            addr: Some(addr),
            key: None,
        }
    }
}

impl fmt::Display for TransferAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.addr, &self.key) {
            (Some(addr), Some(key)) => write!(f, "{addr} key {key}"),
            (Some(addr), None) => addr.fmt(f),
            (None, Some(key)) => write!(f, "key {key}"),
            (None, None) => Ok(()),
        }
    }
}

impl<'de> Deserialize<'de> for TransferAllow {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        TransferAllow::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TransferAllow {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

/// A `[[dns.tsig]]` table: a TSIG key (RFC 8945). Give its secret in a file only onebox-dns can
/// read (`secret_file`, e.g. `/etc/onebox/tsig/NAME.key`, root:onebox-dns 0640); `secret` in the
/// site file itself is readable by every onebox service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKey {
    /// The key's name, the same on both sides (`xfr-key`). Required.
    pub name: At<KeyName>,
    /// The MAC algorithm: `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default)]
    pub algorithm: TsigAlgorithm,
    /// The shared secret, base64 (as `tsig-keygen` and `keymgr -t` print it), at least 16
    /// bytes. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// A file holding the base64 secret (a relative path is relative to the site file),
    /// read at start and on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<At<PathBuf>>,
}

/// A TSIG MAC algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TsigAlgorithm {
    /// HMAC-SHA256 (RFC 4635), what `tsig-keygen` and Knot use by default.
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// HMAC-SHA384.
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    /// HMAC-SHA512.
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

impl TsigAlgorithm {
    /// Its name in the site file and in `tsig-keygen`/Knot configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// A TSIG secret: bytes, written in base64. Its `Debug` shows only its length, so it never
/// reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Decodes base64 `text` (whitespace ignored); at least 16 bytes.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let compact: String = text.split_whitespace().collect();
        let bytes = data_encoding::BASE64
            .decode(compact.as_bytes())
            .map_err(|_| "the secret is not base64 (as tsig-keygen prints it)".to_string())?;
        if bytes.len() < 16 {
            return Err(format!(
                "the secret is {} bytes; a TSIG secret needs at least 16 (tsig-keygen makes 32)",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// The secret's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        Secret::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&data_encoding::BASE64.encode(&self.0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod transfer_tests {
    use super::*;

    fn error(text: &str) -> String {
        match crate::parse(std::path::Path::new("site.toml"), text) {
            Ok(file) => format!("no error: {:?}", file.dns),
            Err(e) => e.to_string(),
        }
    }

    const SITE: &str = "[site]\ndomain = \"a.com\"\n";
    const SECRET: &str = "qmJ0MUm0b6XyAoNZbSy+nuyLrBHDbWbvG1iK4oZ8RkQ=";

    #[test]
    fn remotes_and_access_entries_parse_with_or_without_a_key() {
        let r = Remote::parse("192.0.2.53").unwrap();
        assert_eq!((r.addr.to_string(), r.key), ("192.0.2.53:53".into(), None));
        let r = Remote::parse("[2001:db8::53]:5353 key Xfr-Key.").unwrap();
        assert_eq!(r.addr.port(), 5353);
        assert_eq!(r.key.as_ref().unwrap().as_str(), "xfr-key");
        assert_eq!(r.to_string(), "[2001:db8::53]:5353 key xfr-key");
        for bad in [
            "",
            "key x",
            "192.0.2.1 x y",
            "host.example",
            "192.0.2.1:0",
            "1.2.3.4 key 1.2.3.4",
        ] {
            assert!(Remote::parse(bad).is_err(), "{bad}");
        }
        let a = TransferAllow::parse("192.0.2.0/24").unwrap();
        assert!(a.allows("192.0.2.9".parse().unwrap(), None));
        assert!(!a.allows("192.0.3.9".parse().unwrap(), None));
        let k = TransferAllow::parse("key xfr-key").unwrap();
        let key = KeyName::parse("xfr-key").unwrap();
        assert!(!k.allows("192.0.2.9".parse().unwrap(), None));
        assert!(k.allows("203.0.113.1".parse().unwrap(), Some(key.name())));
        let both = TransferAllow::parse("192.0.2.9 key xfr-key").unwrap();
        assert!(both.allows("192.0.2.9".parse().unwrap(), Some(key.name())));
        assert!(!both.allows("192.0.2.9".parse().unwrap(), None));
        assert!(!both.allows("192.0.2.8".parse().unwrap(), Some(key.name())));
        assert_eq!(both.to_string(), "192.0.2.9 key xfr-key");
    }

    #[test]
    fn transfer_settings_errors_name_their_key() {
        let zone = |body: &str| format!("{SITE}[[dns.zone]]\nname = \"a.com\"\n{body}");
        let e = error(&zone("notify = [\"nowhere\"]\n"));
        assert!(e.starts_with("site.toml:5:10: dns.zone[0].notify: "), "{e}");
        let e = error(&zone("primary = \"192.0.2.1 key k\"\n"));
        assert!(
            e.contains("dns.zone[0].primary") && e.contains("`k` is not defined"),
            "{e}"
        );
        let e = error(&format!(
            "{SITE}[[dns.tsig]]\nname = \"k\"\nsecret = \"c2hvcnQ=\"\n"
        ));
        assert!(
            e.contains("dns.tsig[0].secret") && e.contains("at least 16"),
            "{e}"
        );
        let e = error(&format!(
            "{SITE}[[dns.tsig]]\nname = \"k\"\nalgorithm = \"hmac-md5\"\nsecret = \"{SECRET}\"\n"
        ));
        assert!(e.contains("dns.tsig[0].algorithm"), "{e}");
        let e = error(&zone("primary = \"192.0.2.1\"\ndnssec = true\n"));
        assert!(
            e.contains("dns.zone[0].dnssec") && e.contains("signed by its primary"),
            "{e}"
        );
        let e = error(&format!("{SITE}[[dns.tsig]]\nname = \"k\"\n"));
        assert!(e.contains("needs `secret` or `secret_file`"), "{e}");
        let e = error(&format!(
            "{SITE}[[dns.tsig]]\nname = \"k\"\nsecret = \"{SECRET}\"\n[[dns.tsig]]\nname = \"K\"\nsecret = \"{SECRET}\"\n"
        ));
        assert!(
            e.contains("dns.tsig[1].name") && e.contains("defined twice"),
            "{e}"
        );
        // A key the transfer settings name is defined: fine; its secret is never shown.
        let file = crate::parse(
            std::path::Path::new("site.toml"),
            &format!(
                "{SITE}[[dns.tsig]]\nname = \"k\"\nsecret = \"{SECRET}\"\n\
                 [[dns.zone]]\nname = \"a.com\"\nallow_transfer = [\"key k\"]\nnotify = [\"192.0.2.1 key k\"]\n"
            ),
        )
        .unwrap();
        assert!(!format!("{:?}", file.dns).contains(SECRET));
    }
}
