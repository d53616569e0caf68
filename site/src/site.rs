//! The `[site]` section: what the site is, shared by every service.

use serde::Deserialize;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The `[site]` section of the site TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The site's registered domain, e.g. `foobar.com`. Compared case-insensitively; a trailing
    /// dot is allowed.
    #[serde(deserialize_with = "domain")]
    domain: String,
    /// Host names the site answers to and gets certificates for. Default: the domain and
    /// `www.` + the domain.
    #[serde(default)]
    names: Vec<String>,
    /// The server's public IPv4 address, published in the generated zone.
    #[serde(default)]
    pub public_ipv4: Option<Ipv4Addr>,
    /// The server's public IPv6 address, published in the generated zone.
    #[serde(default)]
    pub public_ipv6: Option<Ipv6Addr>,
}

impl Site {
    /// The domain, lower-case, without a trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The host names the site serves: the configured list, or the domain and its `www`.
    pub fn names(&self) -> Vec<String> {
        if self.names.is_empty() {
            vec![self.domain.clone(), format!("www.{}", self.domain)]
        } else {
            self.names
                .iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect()
        }
    }
}

/// Deserializes and normalises a domain name, refusing text that is not a host name.
fn domain<'de, D: serde::Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    let raw = String::deserialize(de)?;
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(name)
    } else {
        Err(serde::de::Error::custom(format!(
            "`{raw}` is not a valid domain name"
        )))
    }
}
