//! The `[edge]` section of the site file, and its validation.
//!
//! Every table denies unknown keys; every choice is an enum; every key has a default a user of
//! Caddy would expect, so `[edge]` may be empty (or absent) on a real server.

use onebox_site::{ConfigError, Site};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole site file as onebox-edge reads it: its own section typed, the others kept opaque
/// (so a typo'd section name is still an error).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// The `[site]` section shared by every service.
    pub site: Site,
    /// The `[edge]` section; absent means every default.
    #[serde(default)]
    pub edge: Option<toml::Spanned<EdgeConfig>>,
    /// The `[dns]` section (onebox-dns's).
    #[serde(default)]
    pub dns: Option<toml::Value>,
    /// The `[app]` section (onebox-app's).
    #[serde(default)]
    pub app: Option<toml::Value>,
}

/// The `[edge]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address of the plain-HTTP listener (ACME HTTP-01 answers, redirects to HTTPS).
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// Address of the HTTPS listener (HTTP/1.1 and HTTP/2).
    #[serde(default = "default_https_listen")]
    pub https_listen: SocketAddr,
    /// The HTTPS port clients see, used in redirects. Default: the port of `https_listen`.
    #[serde(default)]
    pub public_https_port: Option<u16>,
    /// Directory whose files are served as the site's static files.
    #[serde(default = "default_web_root")]
    pub web_root: toml::Spanned<PathBuf>,
    /// Directory for the ACME account, certificates and the upgrade socket (created 0700).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Address of the Prometheus metrics endpoint; must be a loopback address.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: toml::Spanned<SocketAddr>,
    /// Worker threads per listener (pingora `threads`). Default: the number of CPUs.
    #[serde(default)]
    pub threads: Option<usize>,
    /// What to do with a request whose `Host` is not one of the site's names.
    #[serde(default)]
    pub unknown_host: UnknownHost,
    /// Access log format (one line per request on stdout).
    #[serde(default)]
    pub access_log: AccessLog,
    /// The application upstream pool.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Certificates.
    #[serde(default)]
    pub acme: AcmeConfig,
    /// Response headers for HTTPS.
    #[serde(default)]
    pub headers: HeadersConfig,
    /// Request limits and timeouts.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Graceful shutdown and zero-downtime upgrade.
    #[serde(default)]
    pub upgrade: UpgradeConfig,
}

/// Handling of requests for host names the site does not serve.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The app servers (plain HTTP), balanced round-robin among the healthy ones.
    #[serde(default = "default_upstreams")]
    pub servers: Vec<SocketAddr>,
    /// Path the health check asks for (`GET`, any 2xx is healthy).
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// Seconds between health checks.
    #[serde(default = "default_health_interval")]
    pub health_interval_secs: u64,
    /// Milliseconds to wait for a TCP connection to an upstream.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Seconds to wait for an upstream to answer (each read).
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: default_upstreams(),
            health_path: default_health_path(),
            health_interval_secs: default_health_interval(),
            connect_timeout_ms: default_connect_timeout(),
            read_timeout_secs: default_read_timeout(),
        }
    }
}

/// Which ACME certificate authority to use.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The certificate authority.
    #[serde(default)]
    pub ca: CertificateAuthority,
    /// The ACME directory URL; required with `ca = "custom"`, refused otherwise.
    #[serde(default)]
    pub directory_url: Option<toml::Spanned<String>>,
    /// A PEM file of extra root certificates to trust for the ACME directory's own HTTPS (e.g.
    /// pebble's test CA). The Web PKI roots are always trusted.
    #[serde(default)]
    pub directory_ca: Option<toml::Spanned<PathBuf>>,
    /// Contact e-mail address given to the CA (optional).
    #[serde(default)]
    pub email: Option<toml::Spanned<String>>,
    /// The challenge type.
    #[serde(default)]
    pub challenge: Challenge,
}

impl AcmeConfig {
    /// The directory URL to use, if ACME is on.
    pub fn directory(&self) -> Option<String> {
        match self.ca {
            CertificateAuthority::LetsEncrypt => {
                Some("https://acme-v02.api.letsencrypt.org/directory".into())
            }
            CertificateAuthority::LetsEncryptStaging => {
                Some("https://acme-staging-v02.api.letsencrypt.org/directory".into())
            }
            CertificateAuthority::Custom => {
                self.directory_url.as_ref().map(|u| u.get_ref().clone())
            }
            CertificateAuthority::Off => None,
        }
    }
}

/// When to send `Strict-Transport-Security`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    /// Strict-Transport-Security policy.
    #[serde(default)]
    pub hsts: Hsts,
    /// `max-age` of Strict-Transport-Security, in seconds.
    #[serde(default = "default_hsts_max_age")]
    pub hsts_max_age_secs: u64,
    /// Add `X-Content-Type-Options: nosniff`, `X-Frame-Options: SAMEORIGIN` and
    /// `Referrer-Policy: strict-origin-when-cross-origin` unless the app set them.
    #[serde(default = "yes")]
    pub security_headers: bool,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig {
            hsts: Hsts::default(),
            hsts_max_age_secs: default_hsts_max_age(),
            security_headers: true,
        }
    }
}

/// `[edge.limits]`: request limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request header block in bytes (request line included); larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most request header fields; more gets 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Largest request body in bytes; larger gets 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Seconds a client may take between reads of its request (header or body) before the
    /// connection is closed; defeats slowloris.
    #[serde(default = "default_client_timeout")]
    pub client_timeout_secs: u64,
    /// Seconds an idle keep-alive connection is kept open.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_body_bytes: default_max_body_bytes(),
            client_timeout_secs: default_client_timeout(),
            keepalive_secs: default_keepalive(),
        }
    }
}

/// `[edge.upgrade]`: graceful shutdown and zero-downtime upgrade.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeConfig {
    /// Seconds the old process keeps accepting after SIGQUIT/SIGTERM before it stops.
    #[serde(default = "default_grace")]
    pub grace_period_secs: u64,
    /// Seconds in-flight requests get to finish after that, before the process exits.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
}

impl Default for UpgradeConfig {
    fn default() -> Self {
        UpgradeConfig {
            grace_period_secs: default_grace(),
            shutdown_timeout_secs: default_shutdown_timeout(),
        }
    }
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 80))
}
fn default_https_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 443))
}
fn default_web_root() -> toml::Spanned<PathBuf> {
    toml::Spanned::new(0..0, PathBuf::from("/var/www/onebox"))
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/onebox/edge")
}
fn default_metrics_listen() -> toml::Spanned<SocketAddr> {
    toml::Spanned::new(0..0, SocketAddr::from(([127, 0, 0, 1], 9100)))
}
fn default_upstreams() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 8000))]
}
fn default_health_path() -> String {
    "/healthz".into()
}
fn default_health_interval() -> u64 {
    2
}
fn default_connect_timeout() -> u64 {
    1000
}
fn default_read_timeout() -> u64 {
    60
}
fn default_hsts_max_age() -> u64 {
    31_536_000
}
fn yes() -> bool {
    true
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_client_timeout() -> u64 {
    10
}
fn default_keepalive() -> u64 {
    30
}
fn default_grace() -> u64 {
    1
}
fn default_shutdown_timeout() -> u64 {
    10
}

impl Default for EdgeConfig {
    fn default() -> Self {
        // An empty table takes every default.
        toml::from_str("").unwrap_or_else(|_| unreachable_default())
    }
}

#[allow(clippy::panic)]
fn unreachable_default() -> EdgeConfig {
    panic!("the empty [edge] table always deserializes")
}

/// A loaded and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The names the site serves (and gets certificates for), lower-case.
    pub names: Vec<String>,
    /// The `[edge]` section.
    pub edge: EdgeConfig,
}

impl Config {
    /// The port used in HTTP→HTTPS redirects.
    pub fn public_https_port(&self) -> u16 {
        self.edge
            .public_https_port
            .unwrap_or(self.edge.https_listen.port())
    }
}

/// Reads, parses and validates the site file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: SiteFile = onebox_site::parse(path, &text)?;
    let invalid = |span: std::ops::Range<usize>, message: String| {
        let offset = span.start.min(text.len());
        let before = &text[..offset];
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
            message,
        }
    };
    let (edge, edge_span) = match file.edge {
        Some(spanned) => {
            let span = spanned.span();
            (spanned.into_inner(), span)
        }
        None => (EdgeConfig::default(), 0..0),
    };
    // A key left at its default has an empty span: point at the [edge] table instead.
    let at = |span: std::ops::Range<usize>| {
        if span.is_empty() {
            edge_span.clone()
        } else {
            span
        }
    };

    let root = edge.web_root.get_ref();
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(invalid(
                at(edge.web_root.span()),
                format!("web_root `{}` is not a directory", root.display()),
            ));
        }
        Err(e) => {
            return Err(invalid(
                at(edge.web_root.span()),
                format!("web_root `{}` cannot be used: {e}", root.display()),
            ));
        }
    }
    if !edge.metrics_listen.get_ref().ip().is_loopback() {
        return Err(invalid(
            at(edge.metrics_listen.span()),
            format!(
                "metrics_listen `{}` must be a loopback address (metrics are private)",
                edge.metrics_listen.get_ref()
            ),
        ));
    }
    if edge.upstream.servers.is_empty() {
        return Err(invalid(
            edge_span.clone(),
            "upstream.servers must name at least one server".into(),
        ));
    }
    if !edge.upstream.health_path.starts_with('/') {
        return Err(invalid(
            edge_span.clone(),
            format!(
                "upstream.health_path `{}` must start with `/`",
                edge.upstream.health_path
            ),
        ));
    }
    if edge.threads == Some(0) {
        return Err(invalid(
            edge_span.clone(),
            "threads must be at least 1".into(),
        ));
    }
    match (edge.acme.ca, &edge.acme.directory_url) {
        (CertificateAuthority::Custom, None) => {
            return Err(invalid(
                edge_span.clone(),
                "acme.ca = \"custom\" needs acme.directory_url".into(),
            ));
        }
        (CertificateAuthority::Custom, Some(url)) => {
            if !url.get_ref().starts_with("https://") {
                return Err(invalid(
                    url.span(),
                    format!(
                        "acme.directory_url `{}` must be an https:// URL",
                        url.get_ref()
                    ),
                ));
            }
        }
        (_, Some(url)) => {
            return Err(invalid(
                url.span(),
                "acme.directory_url is only used with acme.ca = \"custom\"".into(),
            ));
        }
        (_, None) => {}
    }
    if let Some(ca) = &edge.acme.directory_ca
        && let Err(message) = crate::acme::read_roots(ca.get_ref())
    {
        return Err(invalid(ca.span(), message));
    }
    if let Some(email) = &edge.acme.email {
        let e = email.get_ref();
        let ok = e.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !e.chars().any(|c| c.is_whitespace())
        });
        if !ok {
            return Err(invalid(
                email.span(),
                format!("acme.email `{e}` is not an e-mail address"),
            ));
        }
    }
    if edge.limits.max_headers == 0 || edge.limits.max_header_bytes < 256 {
        return Err(invalid(
            edge_span.clone(),
            "limits.max_headers must be at least 1 and limits.max_header_bytes at least 256".into(),
        ));
    }
    if edge.limits.client_timeout_secs == 0 || edge.limits.keepalive_secs == 0 {
        return Err(invalid(
            edge_span,
            "limits.client_timeout_secs and limits.keepalive_secs must be at least 1".into(),
        ));
    }
    Ok(Config {
        path: path.to_path_buf(),
        names: file.site.names(),
        edge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("site.toml");
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().display().to_string();
        let p = write(
            dir.path(),
            &format!("[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\n"),
        );
        let c = load(&p).expect("valid");
        assert_eq!(c.edge.https_listen.port(), 443);
        assert_eq!(
            c.edge.acme.directory().as_deref(),
            Some("https://acme-v02.api.letsencrypt.org/directory")
        );
        assert_eq!(c.names, vec!["foobar.com", "www.foobar.com"]);

        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\nlisten = 1\n"
            ),
        );
        let e = load(&p).expect_err("unknown key").to_string();
        assert!(e.contains("site.toml:5:"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().display().to_string();
        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\nmetrics_listen = \"0.0.0.0:9100\"\n"
            ),
        );
        let e = load(&p).expect_err("public metrics").to_string();
        assert!(e.contains("site.toml:5:") && e.contains("loopback"), "{e}");

        let p = write(
            dir.path(),
            "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"/nonexistent/x\"\n",
        );
        let e = load(&p).expect_err("missing root").to_string();
        assert!(e.contains("site.toml:4:") && e.contains("web_root"), "{e}");

        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\n[edge.acme]\nca = \"custom\"\ndirectory_url = \"http://x/dir\"\n"
            ),
        );
        let e = load(&p).expect_err("http directory").to_string();
        assert!(e.contains("site.toml:7:") && e.contains("https://"), "{e}");

        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\n[edge.acme]\nchallenge = \"dns-01\"\n"
            ),
        );
        let e = load(&p).expect_err("bad challenge").to_string();
        assert!(e.contains("site.toml:6:"), "{e}");
    }
}
