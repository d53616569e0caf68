//! The `[edge]` section: onebox-edge's settings.
//!
//! Every table denies unknown keys; every choice is an enum; every key has a default a user of
//! Caddy would expect, so `[edge]` may be empty (or absent) on a real server.

use crate::value::{At, Bounded, Email, HttpsUrl, LoopbackAddr, NonEmpty, UrlPath};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The `[edge]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address of the plain-HTTP listener (ACME HTTP-01 answers, redirects to HTTPS).
    /// Default: `[::]:80`, one socket for IPv6 and IPv4 (`0.0.0.0:80` on a host without IPv6).
    pub http_listen: SocketAddr,
    /// Address of the HTTPS listener (HTTP/1.1 and HTTP/2). Default: `[::]:443`, one socket for
    /// IPv6 and IPv4 (`0.0.0.0:443` on a host without IPv6).
    pub https_listen: SocketAddr,
    /// The HTTPS port clients see, used in redirects. Default (absent): the port of
    /// `https_listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_https_port: Option<Bounded<1, 65535>>,
    /// Directory whose files are served as the site's static files. Default: `/var/www/onebox`.
    pub web_root: At<PathBuf>,
    /// Directory for the ACME account, certificates, the pid file and the upgrade socket
    /// (created 0700). Default: `/var/lib/onebox-edge`.
    pub state_dir: PathBuf,
    /// Address of the Prometheus metrics endpoint; a loopback address. Default:
    /// `127.0.0.1:9100`.
    pub metrics_listen: LoopbackAddr,
    /// Worker threads per listener (pingora `threads`). Default (absent): the number of CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<Bounded<1, 1024>>,
    /// What to do with a request whose `Host` is not one of the site's names.
    pub unknown_host: UnknownHost,
    /// Access log format (one line per request on stdout).
    pub access_log: AccessLog,
    /// `[edge.upstream]`: the application pool.
    pub upstream: UpstreamConfig,
    /// `[edge.acme]`: certificates.
    pub acme: AcmeConfig,
    /// `[edge.headers]`: response headers for HTTPS.
    pub headers: HeadersConfig,
    /// `[edge.limits]`: request limits and timeouts.
    pub limits: LimitsConfig,
    /// `[edge.upgrade]`: graceful shutdown and zero-downtime upgrade.
    pub upgrade: UpgradeConfig,
    /// `[edge.page_cache]`: the cache of the app's public pages.
    pub page_cache: PageCacheConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            http_listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 80)),
            https_listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 443)),
            public_https_port: None,
            web_root: At::new(PathBuf::from("/var/www/onebox")),
            state_dir: PathBuf::from("/var/lib/onebox-edge"),
            metrics_listen: LoopbackAddr(SocketAddr::from(([127, 0, 0, 1], 9100))),
            threads: None,
            unknown_host: UnknownHost::default(),
            access_log: AccessLog::default(),
            upstream: UpstreamConfig::default(),
            acme: AcmeConfig::default(),
            headers: HeadersConfig::default(),
            limits: LimitsConfig::default(),
            upgrade: UpgradeConfig::default(),
            page_cache: PageCacheConfig::default(),
        }
    }
}

impl EdgeConfig {
    /// The port used in HTTP→HTTPS redirects: `public_https_port`, else `https_listen`'s.
    pub fn public_https_port(&self) -> u16 {
        self.public_https_port
            .map_or(self.https_listen.port(), Bounded::as_u16)
    }
}

/// Handling of requests for host names the site does not serve.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownHost {
    /// Answer `421 Misdirected Request` (the default: the edge never serves the site under a
    /// name it has no certificate for).
    #[default]
    Misdirected,
    /// Serve the site anyway, as if the first site name had been asked for.
    DefaultSite,
}

/// Access log format.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLog {
    /// One human-readable line per request (the default).
    #[default]
    Text,
    /// One JSON object per request.
    Json,
    /// No access log.
    Off,
}

/// `[edge.upstream]`: where dynamic requests go. Requests for paths that are not a static file
/// under the web root are proxied here.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The app servers (plain HTTP), balanced round-robin among the healthy ones. Default:
    /// `["127.0.0.1:8000"]`.
    pub servers: NonEmpty<SocketAddr>,
    /// Path the health check asks for (`GET`, any 2xx is healthy). Default: `/healthz`.
    pub health_path: UrlPath,
    /// Seconds between health checks. Default: 2.
    pub health_interval_secs: Bounded<1, 3600>,
    /// Failed checks in a row (an error status, a refused connection or no answer within 2 s)
    /// that take a healthy server out of the pool, like HAProxy's `fall`. One slow answer from
    /// a busy app is not an outage. Default: 3.
    pub health_fall: Bounded<1, 100>,
    /// Passing checks in a row that bring a server back, like HAProxy's `rise`. Default: 1.
    pub health_rise: Bounded<1, 100>,
    /// Milliseconds to wait for a TCP connection to an upstream. Default: 1000.
    pub connect_timeout_ms: Bounded<1, 600_000>,
    /// Seconds to wait for an upstream to answer (each read). Default: 60.
    pub read_timeout_secs: Bounded<1, 86_400>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: NonEmpty::of(SocketAddr::from(([127, 0, 0, 1], 8000)), Vec::new()),
            health_path: UrlPath("/healthz".into()),
            health_interval_secs: Bounded::clamped(2),
            health_fall: Bounded::clamped(3),
            health_rise: Bounded::clamped(1),
            connect_timeout_ms: Bounded::clamped(1000),
            read_timeout_secs: Bounded::clamped(60),
        }
    }
}

/// Which ACME certificate authority to use.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateAuthority {
    /// Let's Encrypt production (the default).
    #[default]
    LetsEncrypt,
    /// Let's Encrypt staging (untrusted certificates, generous rate limits).
    LetsEncryptStaging,
    /// Any ACME directory, given by `directory_url`.
    Custom,
    /// No ACME: the edge serves its self-signed certificate only.
    Off,
}

/// The ACME challenge type used to prove control of the names.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01: the CA fetches a token from the HTTP listener on port 80 (the default).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// TLS-ALPN-01: the CA connects to the HTTPS listener on port 443 with ALPN `acme-tls/1`.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// `[edge.acme]`: certificates.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// The certificate authority. Default: `lets-encrypt`.
    pub ca: At<CertificateAuthority>,
    /// The ACME directory URL (`https://`); required with `ca = "custom"`, refused otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_url: Option<At<HttpsUrl>>,
    /// A PEM file of extra root certificates to trust for the ACME directory's own HTTPS (e.g.
    /// pebble's test CA). The Web PKI roots are always trusted. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_ca: Option<At<PathBuf>>,
    /// Contact e-mail address given to the CA. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// The challenge type. Default: `http-01`.
    pub challenge: Challenge,
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

impl AcmeConfig {
    /// The directory URL to use, if ACME is on.
    pub fn directory(&self) -> Option<String> {
        match *self.ca {
            CertificateAuthority::LetsEncrypt => Some(LETS_ENCRYPT.into()),
            CertificateAuthority::LetsEncryptStaging => Some(LETS_ENCRYPT_STAGING.into()),
            CertificateAuthority::Custom => self
                .directory_url
                .as_ref()
                .map(|u| u.get().as_str().to_string()),
            CertificateAuthority::Off => None,
        }
    }

    /// The domain a CAA `issue` record names for this CA: `letsencrypt.org` for Let's Encrypt,
    /// the directory's host for a custom CA, none when ACME is off.
    pub fn caa_issuer(&self) -> Option<String> {
        match *self.ca {
            CertificateAuthority::LetsEncrypt | CertificateAuthority::LetsEncryptStaging => {
                Some("letsencrypt.org".into())
            }
            CertificateAuthority::Custom => self.directory_url.as_ref().map(|u| u.host()),
            CertificateAuthority::Off => None,
        }
    }
}

/// When to send `Strict-Transport-Security`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Hsts {
    /// Only while a certificate issued by the ACME CA is served, never with the self-signed
    /// stand-in (the default).
    #[default]
    WhenCaCertificate,
    /// Never.
    Off,
}

/// `[edge.headers]`: response headers added on HTTPS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadersConfig {
    /// Strict-Transport-Security policy. Default: `when-ca-certificate`.
    pub hsts: Hsts,
    /// `max-age` of Strict-Transport-Security, in seconds. Default: 31536000 (a year).
    pub hsts_max_age_secs: Bounded<0, 1_000_000_000>,
    /// Add `X-Content-Type-Options: nosniff`, `X-Frame-Options: SAMEORIGIN` and
    /// `Referrer-Policy: strict-origin-when-cross-origin` unless the app set them. Default: true.
    pub security_headers: bool,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig {
            hsts: Hsts::default(),
            hsts_max_age_secs: Bounded::clamped(31_536_000),
            security_headers: true,
        }
    }
}

/// `[edge.limits]`: request limits and timeouts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request header block in bytes (request line included); larger gets 431.
    /// Default: 16384.
    pub max_header_bytes: Bounded<256, 1_048_576>,
    /// Most request header fields; more gets 431. Default: 100.
    pub max_headers: Bounded<1, 10_000>,
    /// Largest request body in bytes; larger gets 413. Default: 10485760 (10 MiB).
    pub max_body_bytes: Bounded<0, { i64::MAX as u64 }>,
    /// Seconds for the TLS handshake, and for each HTTP/1 request header from its first byte;
    /// defeats slowloris. Default: 10.
    pub client_timeout_secs: Bounded<1, 3600>,
    /// Seconds a connection may stay idle between requests before it is closed: an HTTP/1
    /// keep-alive connection, or an HTTP/2 connection with no stream open (PINGs do not count).
    /// Default: 30 (nginx: 75).
    pub keepalive_secs: Bounded<1, 86_400>,
    /// Requests one HTTP/1 connection may carry before it is closed (nginx's
    /// `keepalive_requests`). Default: 1000.
    pub keepalive_requests: Bounded<1, 4_000_000_000>,
    /// Client connections open at once, on the HTTP and HTTPS listeners together; more are
    /// closed as they arrive. Each takes a file descriptor (see the unit's `LimitNOFILE`) and
    /// 18 KiB (HTTP/1.1) to 40 KiB (HTTP/2) while idle (4096 idle HTTP/2 connections: about
    /// 160 MiB). Default: 4096.
    pub max_connections: Bounded<1, 1_000_000>,
    /// Connections open at once from one client (an IPv4 address, an IPv6 /64); more are
    /// closed as they arrive, so one client cannot take `max_connections`. Default: 256.
    pub max_connections_per_client: Bounded<1, 1_000_000>,
    /// The edge's memory budget in MiB, against its anonymous resident memory (`RssAnon`, read
    /// ten times a second): over it, new connections are closed as they arrive and the
    /// connections of the client holding the most are closed, one client at a time, until the
    /// memory is back under nine tenths of the budget (an HTTP/2 client that opens 100 streams
    /// and reads none of them holds about 20 MiB per connection). Default (absent): the edge's
    /// cgroup limit, `memory.high` (the unit's `MemoryHigh=`, 20% of the machine in the image)
    /// or three quarters of `memory.max`, whichever is lower; outside a limited cgroup (`just
    /// up`), none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_mib: Option<Bounded<16, 1_048_576>>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_header_bytes: Bounded::clamped(16 * 1024),
            max_headers: Bounded::clamped(100),
            max_body_bytes: Bounded::clamped(10 * 1024 * 1024),
            client_timeout_secs: Bounded::clamped(10),
            keepalive_secs: Bounded::clamped(30),
            keepalive_requests: Bounded::clamped(1000),
            max_connections: Bounded::clamped(4096),
            max_connections_per_client: Bounded::clamped(256),
            max_memory_mib: None,
        }
    }
}

/// `[edge.upgrade]`: graceful shutdown and zero-downtime upgrade.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradeConfig {
    /// Seconds the old process keeps accepting after SIGQUIT/SIGTERM before it stops. Default: 1.
    pub grace_period_secs: Bounded<0, 3600>,
    /// Seconds in-flight requests get to finish after that, before the process exits.
    /// Default: 10.
    pub shutdown_timeout_secs: Bounded<0, 3600>,
}

impl Default for UpgradeConfig {
    fn default() -> Self {
        UpgradeConfig {
            grace_period_secs: Bounded::clamped(1),
            shutdown_timeout_secs: Bounded::clamped(10),
        }
    }
}

/// `[edge.page_cache]`: the app's public pages kept in the edge's memory (pingora's cache).
///
/// Only anonymous `GET`/`HEAD` requests are cached (no `Cookie`, no `Authorization`), and only
/// `200` answers the app marks cacheable with `Cache-Control` (`s-maxage`/`max-age`; never
/// `private`, `no-store`, `no-cache` or with `Set-Cookie`/`Vary`). The app purges the whole
/// cache with its answer to every change of a post or the settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PageCacheConfig {
    /// Whether the edge caches the app's pages at all. Default: true.
    pub enabled: bool,
    /// Body bytes the cache holds in all (and at most one page per KiB of it); the least
    /// recently used pages are dropped beyond it. Default: 67108864 (64 MiB).
    pub max_bytes: Bounded<0, { 1 << 40 }>,
    /// Largest body cached, in bytes; larger answers pass through uncached. Default: 1048576
    /// (1 MiB).
    pub max_object_bytes: Bounded<0, { 1 << 32 }>,
}

impl Default for PageCacheConfig {
    fn default() -> Self {
        PageCacheConfig {
            enabled: true,
            max_bytes: Bounded::clamped(64 * 1024 * 1024),
            max_object_bytes: Bounded::clamped(1024 * 1024),
        }
    }
}

/// What onebox-edge records in `STATE_DIR/acme/account.json` once its ACME account exists, so
/// `onebox caa` can pin the zone's CAA record to that account (RFC 8657 `accounturi`). The
/// edge writes it; `onebox caa` (root) reads it as untrusted input: see
/// [`AcmeAccountRecord::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeAccountRecord {
    /// The ACME directory URL the account belongs to.
    pub directory: String,
    /// The account's URL (the `Location` the CA gave at `newAccount`).
    pub account_uri: String,
}

impl AcmeAccountRecord {
    /// The record's file, relative to the edge's `state_dir`.
    pub const FILE: &'static str = "acme/account.json";
    /// The largest record read.
    pub const MAX_BYTES: usize = 4096;

    /// Parses a record and checks that its account URI can stand in a CAA value: an `https://`
    /// URL of at most 512 bytes of printable ASCII without whitespace, quotes, `;` or `\`.
    pub fn parse(text: &str) -> Result<AcmeAccountRecord, String> {
        if text.len() > Self::MAX_BYTES {
            return Err(format!("larger than {} bytes", Self::MAX_BYTES));
        }
        let record: AcmeAccountRecord = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let uri = &record.account_uri;
        let plain = uri
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b';' | b'\\'));
        if !uri.starts_with("https://") || uri.len() > 512 || !plain {
            return Err(format!(
                "account_uri `{}` is not an https URL usable in a CAA record",
                uri.escape_debug()
            ));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod account_record_tests {
    use super::AcmeAccountRecord;

    #[test]
    fn an_account_uri_that_could_break_the_caa_value_is_refused() {
        let ok =
            r#"{"directory":"https://ca.example/dir","account_uri":"https://ca.example/acct/12"}"#;
        assert_eq!(
            AcmeAccountRecord::parse(ok).expect("ok").account_uri,
            "https://ca.example/acct/12"
        );
        for bad in [
            r#"{"directory":"d","account_uri":"https://ca.example/a\" ; x"}"#,
            r#"{"directory":"d","account_uri":"https://ca.example/a;b"}"#,
            r#"{"directory":"d","account_uri":"https://ca.example/a\nb"}"#,
            r#"{"directory":"d","account_uri":"http://ca.example/a"}"#,
            r#"{"directory":"d","account_uri":"https://ca.example/a","x":1}"#,
        ] {
            assert!(AcmeAccountRecord::parse(bad).is_err(), "{bad}");
        }
        let long = format!(
            r#"{{"directory":"d","account_uri":"https://{}"}}"#,
            "a".repeat(600)
        );
        assert!(AcmeAccountRecord::parse(&long).is_err());
    }
}
