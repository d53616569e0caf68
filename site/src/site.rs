//! The `[site]` section: what the site is, shared by every service.

use crate::value::Domain;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The `[site]` section of the site file. `domain` is required: there is no default site name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The site's registered domain, e.g. `foobar.com`: compared case-insensitively, a trailing
    /// dot allowed.
    pub domain: Domain,
    /// Host names the site answers to and gets certificates for. Empty (the default) means the
    /// domain and `www.` + the domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<Domain>,
    /// The server's public IPv4 address, published in the zone `onebox provision` generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv4: Option<Ipv4Addr>,
    /// The server's public IPv6 address, published in the zone `onebox provision` generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv6: Option<Ipv6Addr>,
}

impl Site {
    /// A site for `domain` with every other key at its default.
    pub fn new(domain: Domain) -> Site {
        Site {
            domain,
            names: Vec::new(),
            public_ipv4: None,
            public_ipv6: None,
        }
    }

    /// The domain as text, lower-case, without a trailing dot.
    pub fn domain(&self) -> &str {
        self.domain.as_str()
    }

    /// The host names the site serves: the configured list, or the domain and its `www`.
    pub fn host_names(&self) -> Vec<Domain> {
        if self.names.is_empty() {
            let www = Domain::parse(&format!("www.{}", self.domain));
            // `www.` + a valid domain is valid unless the domain is at the length limit.
            std::iter::once(self.domain.clone())
                .chain(www.ok())
                .collect()
        } else {
            self.names.clone()
        }
    }

    /// [`Site::host_names`] as text.
    pub fn names(&self) -> Vec<String> {
        self.host_names()
            .iter()
            .map(|n| n.as_str().to_string())
            .collect()
    }
}
