//! The `[app]` section: onebox-app's settings.

use crate::value::{AddressMatch, Bounded, LoopbackAddr};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// The `[app]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Address and port to serve HTTP on. Default: `127.0.0.1:8000` (the edge forwards to it).
    pub listen: SocketAddr,
    /// Where the database is: see [`DatabaseUrl`]. Default (absent): the database `onebox` as
    /// the current system user over `/run/mysqld/mysqld.sock`
    /// ([`AppConfig::resolved_database_url`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<DatabaseUrl>,
    /// Published posts per page on the home page and in `GET /api/posts`. Default: 20.
    pub posts_per_page: Bounded<1, 500>,
    /// Largest accepted request body in bytes; a post body may use all of it. Default: 1048576.
    pub max_body_bytes: Bounded<1024, 67_108_864>,
    /// How long a login session lasts, in seconds. Default: 1209600 (two weeks).
    pub session_lifetime_secs: Bounded<60, 31_622_400>,
    /// Failed logins for one user name from one client before further attempts at that name
    /// from that client are refused (429). Default: 5.
    pub login_max_failures: Bounded<1, 1_000_000>,
    /// Failed logins from one client (an IPv4 address or an IPv6 /64), at any names, before
    /// all its further attempts are refused (429). Default: 30.
    pub login_max_failures_per_client: Bounded<1, 1_000_000>,
    /// Seconds failed logins are remembered and further attempts refused once the limit is
    /// reached. Default: 300.
    pub login_lockout_secs: Bounded<1, 31_622_400>,
    /// The peers whose `X-Forwarded-For` names the client (the edge): addresses or networks.
    /// From any other peer the header is ignored. Default: `["127.0.0.1", "::1"]`.
    pub trusted_proxies: Vec<AddressMatch>,
    /// Where to serve Prometheus metrics (`GET /metrics`); loopback only. Default: none (off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<LoopbackAddr>,
    /// Seconds a request that finds the database unreachable waits for it to come back (a
    /// MariaDB restart takes a few) before answering 503. Once an outage has lasted longer,
    /// requests answer 503 at once until the database is back. 0: never wait. Default: 10.
    pub database_wait_secs: Bounded<0, 300>,
    /// Seconds the requests in flight get to finish when the app stops (SIGTERM, or the old
    /// process at the end of a reload); then it exits anyway. Default: 10.
    pub shutdown_timeout_secs: Bounded<1, 3600>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            database_url: None,
            posts_per_page: Bounded::clamped(20),
            max_body_bytes: Bounded::clamped(1 << 20),
            session_lifetime_secs: Bounded::clamped(14 * 24 * 3600),
            login_max_failures: Bounded::clamped(5),
            login_max_failures_per_client: Bounded::clamped(30),
            login_lockout_secs: Bounded::clamped(300),
            trusted_proxies: vec![
                AddressMatch(IpAddr::from([127, 0, 0, 1]).into()),
                AddressMatch(IpAddr::from(Ipv6Addr::LOCALHOST).into()),
            ],
            metrics_listen: None,
            database_wait_secs: Bounded::clamped(10),
            shutdown_timeout_secs: Bounded::clamped(10),
        }
    }
}

impl AppConfig {
    /// The database URL: `database_url`, or the database `onebox` as the current system user
    /// (`$USER`, else `root`) over Debian's MariaDB socket `/run/mysqld/mysqld.sock`.
    pub fn resolved_database_url(&self) -> DatabaseUrl {
        self.database_url.clone().unwrap_or_else(|| {
            let user = std::env::var("USER").unwrap_or_else(|_| "root".to_string());
            DatabaseUrl::parse(&format!(
                "mysql://{user}@localhost/onebox?socket=/run/mysqld/mysqld.sock"
            ))
            .unwrap_or_else(|_| DatabaseUrl::debian_root())
        })
    }
}

/// A MariaDB/MySQL URL: `mysql://USER@localhost/DATABASE?socket=/run/mysqld/mysqld.sock` (the
/// unix socket with `unix_socket` authentication: no password anywhere) or
/// `mysql://USER:PASSWORD@HOST:PORT/DATABASE`.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Parses `text`: a `mysql://` URL naming a user and a database.
    pub fn parse(text: &str) -> Result<DatabaseUrl, String> {
        let shown = redact(text);
        let url = url::Url::parse(text).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
        if url.scheme() != "mysql" {
            return Err(format!("`{shown}` must be a mysql:// URL"));
        }
        let this = DatabaseUrl(text.to_string());
        if this.user().is_none() {
            return Err(format!("`{shown}` names no user (mysql://USER@...)"));
        }
        if this.database().is_none() {
            return Err(format!(
                "`{shown}` names no database (mysql://.../DATABASE)"
            ));
        }
        Ok(this)
    }

    /// `mysql://root@localhost/onebox?socket=/run/mysqld/mysqld.sock`.
    fn debian_root() -> DatabaseUrl {
        DatabaseUrl("mysql://root@localhost/onebox?socket=/run/mysqld/mysqld.sock".into())
    }

    /// The URL, password included: for connecting, never for logs (use `Display`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn url(&self) -> Option<url::Url> {
        url::Url::parse(&self.0).ok()
    }

    /// The database user (percent-decoded).
    pub fn user(&self) -> Option<String> {
        let url = self.url()?;
        let user = percent_decode(url.username())?;
        (!user.is_empty()).then_some(user)
    }

    /// The database name (percent-decoded).
    pub fn database(&self) -> Option<String> {
        let url = self.url()?;
        let name = percent_decode(url.path().trim_start_matches('/'))?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }

    /// The unix socket of the `socket` query parameter, if any.
    pub fn socket(&self) -> Option<PathBuf> {
        let url = self.url()?;
        url.query_pairs()
            .find(|(k, _)| k == "socket")
            .map(|(_, v)| PathBuf::from(v.into_owned()))
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        self.url().is_some_and(|u| u.password().is_some())
    }
}

/// `text` with the password of a URL replaced by `***`.
fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.escape_debug().collect(),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for DatabaseUrl {
    /// The URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        DatabaseUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        let u = DatabaseUrl::parse(
            "mysql://onebox-app@localhost/onebox?socket=/run/mysqld/mysqld.sock",
        )
        .expect("valid");
        assert_eq!(u.user().as_deref(), Some("onebox-app"));
        assert_eq!(u.database().as_deref(), Some("onebox"));
        assert_eq!(u.socket(), Some(PathBuf::from("/run/mysqld/mysqld.sock")));
        let p = DatabaseUrl::parse("mysql://u:secret@127.0.0.1:3306/db").expect("valid");
        assert!(p.has_password());
        assert!(!p.to_string().contains("secret"), "{p}");
        assert!(!format!("{p:?}").contains("secret"));
        for bad in [
            "postgres://u@h/db",
            "mysql://localhost/db",
            "mysql://u@localhost/",
            "nope",
        ] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
