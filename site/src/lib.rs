//! The site file shared by every onebox service, and its one owner.
//!
//! One TOML file describes a site: [`SiteFile`], with the `[site]` section (what the site is)
//! and one section per service, `[dns]`, `[edge]` and `[app]`. Every table denies unknown keys
//! and has its real defaults in its `impl Default`; units are in key names (`_secs`, `_ms`,
//! `_bytes`); values are checked while they are read, so every error names the file, the line
//! and column and the key (`site.toml:12:22: edge.limits.max_headers: must be at least 1, not 0`).
//! Checks that need the machine (a directory exists, a PEM file parses) are the services';
//! they name the key's line with [`SiteFile::error_at`].
//!
//! ```toml
//! [site]
//! domain = "foobar.com"
//! public_ipv4 = "8.8.8.8"
//! ```

pub mod app;
pub mod dns;
pub mod edge;
mod error;
pub mod ops;
mod site;
pub mod value;

pub use app::{AppConfig, DatabaseUrl};
pub use dns::{DnsConfig, ZoneConfig};
pub use edge::EdgeConfig;
pub use error::{ConfigError, key_path_at};
pub use ops::{AlertsConfig, BackupConfig};
pub use site::Site;
pub use value::{AddressMatch, At, Bounded, Domain};

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The whole site file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// `[site]`: what the site is (required: it names the domain).
    pub site: Site,
    /// `[dns]`: onebox-dns's settings.
    #[serde(default)]
    pub dns: DnsConfig,
    /// `[edge]`: onebox-edge's settings.
    #[serde(default)]
    pub edge: EdgeConfig,
    /// `[app]`: onebox-app's settings.
    #[serde(default)]
    pub app: AppConfig,
    /// `[backup]`: `onebox backup` and `onebox restore` (restic).
    #[serde(default)]
    pub backup: BackupConfig,
    /// `[alerts]`: where `onebox doctor --alert` sends problems.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The file it was read from, for the errors found later.
    #[serde(skip)]
    source: Source,
}

/// Where a site file was read from: its path and text.
#[derive(Clone, Default)]
struct Source {
    path: PathBuf,
    text: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path.fmt(f)
    }
}

impl PartialEq for Source {
    /// Where two site files came from does not make them different.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl SiteFile {
    /// A site file for `site` with every section at its defaults.
    pub fn new(site: Site) -> SiteFile {
        SiteFile {
            site,
            dns: DnsConfig::default(),
            edge: EdgeConfig::default(),
            app: AppConfig::default(),
            backup: BackupConfig::default(),
            alerts: AlertsConfig::default(),
            source: Source::default(),
        }
    }

    /// The file this was read from (empty when it was not read from a file).
    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// The error "the value of `key` at `span` is wrong: `message`", naming the file, line and
    /// column; for a value left at its default (an empty span), the file and the key.
    pub fn error_at(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        if span.is_empty() {
            return ConfigError::Default {
                path: self.source.path.clone(),
                key: key.to_string(),
                message: message.into(),
            };
        }
        let (line, column) = error::line_column(&self.source.text, span.start);
        ConfigError::Invalid {
            path: self.source.path.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The rules that tie several keys together.
    fn check(&self) -> Result<(), ConfigError> {
        use edge::CertificateAuthority;
        let acme = &self.edge.acme;
        match (*acme.ca, &acme.directory_url) {
            (CertificateAuthority::Custom, None) => {
                return Err(self.error_at(
                    acme.ca.span(),
                    "edge.acme.ca",
                    "ca = \"custom\" needs edge.acme.directory_url",
                ));
            }
            (CertificateAuthority::Custom, Some(_)) | (_, None) => {}
            (_, Some(url)) => {
                return Err(self.error_at(
                    url.span(),
                    "edge.acme.directory_url",
                    "only used with edge.acme.ca = \"custom\"",
                ));
            }
        }
        if let Err((span, key, message)) = self.dns.check_transfer_keys() {
            return Err(self.error_at(span, &key, message));
        }
        if !self.alerts.email_to.is_empty() && self.alerts.smtp_relay.is_none() {
            return Err(self.error_at(
                0..0,
                "alerts.smtp_relay",
                "alerts.email_to needs an SMTP relay (host:port) to send through",
            ));
        }
        let mut zones = HashSet::new();
        for (i, zone) in self.dns.zone.iter().enumerate() {
            if !zones.insert(zone.name.get()) {
                return Err(self.error_at(
                    zone.name.span(),
                    &format!("dns.zone[{i}].name"),
                    format!("zone `{}` has two [[dns.zone]] tables", *zone.name),
                ));
            }
        }
        Ok(())
    }
}

/// Reads and checks the site file at `path`.
pub fn load(path: &Path) -> Result<SiteFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and checks the site file `text`, which was read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<SiteFile, ConfigError> {
    let mut file: SiteFile =
        toml::from_str(text).map_err(|err| ConfigError::from_toml(path, text, &err))?;
    file.source = Source {
        path: path.to_path_buf(),
        text: text.to_string(),
    };
    file.check()?;
    Ok(file)
}

#[cfg(test)]
mod tests;
