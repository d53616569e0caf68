//! The `[backup]` and `[alerts]` sections: what `onebox backup`, `onebox restore` and
//! `onebox doctor --alert` do. The site file is readable by the services' group, so no secret is
//! ever in it: the repository password, the backend's credentials, the webhook URL and the SMTP
//! password live in root-only files of the `credentials_dir` directories.

use crate::value::{Bounded, Email};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `[backup]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// The restic repository: a local directory (`/var/backups/onebox`), `sftp:user@host:/path`
    /// (or `sftp://user@host:port//path`), `s3:https://host/bucket/path` or
    /// `rest:https://host:port/path`. Never with a password in it: credentials go in
    /// `credentials_dir`. Default: `/var/backups/onebox`.
    pub repository: Repository,
    /// Root-only directory (0700) of the repository's secrets: `password` (the repository
    /// password, made at first boot), `env` (`KEY=VALUE` lines given to restic, e.g.
    /// `AWS_ACCESS_KEY_ID`, `RESTIC_REST_PASSWORD`), `ssh_key` and `known_hosts` (SFTP). Default:
    /// `/etc/onebox/backup`.
    pub credentials_dir: PathBuf,
    /// Root-only directory (0700) of onebox's own state: the last backup's result
    /// (`backup.json`), the alerts sent (`alerts.json`), the database dump while a backup runs.
    /// Default: `/var/lib/onebox`.
    pub state_dir: PathBuf,
    /// Daily snapshots kept (restic `--keep-daily`). Default: 7.
    pub keep_daily: Bounded<0, 36_500>,
    /// Weekly snapshots kept (restic `--keep-weekly`). Default: 4.
    pub keep_weekly: Bounded<0, 5_200>,
    /// Monthly snapshots kept (restic `--keep-monthly`). Default: 6.
    pub keep_monthly: Bounded<0, 1_200>,
    /// Seconds one restic or mariadb-dump run may take before it is stopped and the backup
    /// counted as failed. Default: 21600 (6 hours).
    pub timeout_secs: Bounded<60, 604_800>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            repository: Repository(DEFAULT_REPOSITORY.to_string()),
            credentials_dir: PathBuf::from("/etc/onebox/backup"),
            state_dir: PathBuf::from("/var/lib/onebox"),
            keep_daily: Bounded::clamped(7),
            keep_weekly: Bounded::clamped(4),
            keep_monthly: Bounded::clamped(6),
            timeout_secs: Bounded::clamped(21_600),
        }
    }
}

/// The local repository used when the site file names none.
pub const DEFAULT_REPOSITORY: &str = "/var/backups/onebox";

/// A restic repository location, checked when read: a local absolute path or an `sftp:`, `s3:`
/// or `rest:` location, with no credentials and no whitespace or control characters in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Repository(String);

impl Repository {
    /// Parses `text` as a repository location.
    pub fn parse(text: &str) -> Result<Repository, String> {
        let shown = text.escape_debug();
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{shown}` is not a repository location (empty, or with spaces or control characters)"
            ));
        }
        if text.starts_with('/') {
            if text.split('/').any(|part| part == "..") {
                return Err(format!("`{shown}`: `..` is not allowed in the path"));
            }
            return Ok(Repository(text.to_string()));
        }
        let credentials =
            "credentials go in [backup] credentials_dir's `env` file, never in the site file";
        if let Some(rest) = text.strip_prefix("sftp:") {
            if let Some(url) = rest.strip_prefix("//") {
                let authority = url.split('/').next().unwrap_or_default();
                if authority.split('@').next().is_some_and(|u| u.contains(':'))
                    && authority.contains('@')
                {
                    return Err(format!("`{shown}`: a password in the URL: {credentials}"));
                }
                if authority.is_empty() {
                    return Err(format!("`{shown}`: no host"));
                }
            } else if !rest.contains(':') || rest.starts_with(':') {
                return Err(format!(
                    "`{shown}`: an SFTP repository is sftp:user@host:/path or sftp://user@host:port//path"
                ));
            }
            return Ok(Repository(text.to_string()));
        }
        for scheme in ["s3:", "rest:"] {
            if let Some(rest) = text.strip_prefix(scheme) {
                let url = if scheme == "s3:" && !rest.contains("://") {
                    format!("https://{rest}")
                } else {
                    rest.to_string()
                };
                let parsed = url::Url::parse(&url)
                    .map_err(|e| format!("`{shown}`: not a URL after `{scheme}`: {e}"))?;
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(format!(
                        "`{shown}`: a user or password in the URL: {credentials}"
                    ));
                }
                if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
                    return Err(format!("`{shown}`: needs an http(s):// URL with a host"));
                }
                return Ok(Repository(text.to_string()));
            }
        }
        Err(format!(
            "`{shown}`: a repository is a local absolute path, sftp:user@host:/path, s3:https://host/bucket or rest:https://host/path"
        ))
    }

    /// The location as written (what restic's `--repo` gets).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The directory, for a local repository.
    pub fn local_path(&self) -> Option<&Path> {
        self.0.starts_with('/').then(|| Path::new(&self.0))
    }
}

impl<'de> Deserialize<'de> for Repository {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        Repository::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How the SMTP relay is reached.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpTls {
    /// Plain SMTP upgraded with STARTTLS, which must succeed (port 587; the default).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No TLS at all: only for a relay on this machine or a private network.
    None,
}

/// The `[alerts]` section: where `onebox doctor --alert` sends a problem when a check turns bad,
/// and again when it is fixed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Root-only directory (0700) of the alerts' secrets: `webhook_url` (the URL a JSON POST
    /// goes to; such URLs carry their token) and `smtp_password`. Alerts go to the webhook when
    /// that file exists. Default: `/etc/onebox/alerts`.
    pub credentials_dir: PathBuf,
    /// Addresses alert e-mails go to; none (the default) means no e-mail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub email_to: Vec<Email>,
    /// The sender of alert e-mails. Default (absent): `onebox@` + the site's domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_from: Option<Email>,
    /// The SMTP relay, `host:port` (e.g. `smtp.example.com:587`). Required with `email_to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_relay: Option<HostPort>,
    /// How the relay is reached: `starttls` (the default), `tls` or `none`.
    pub smtp_tls: SmtpTls,
    /// The user name to log in to the relay with (its password: `credentials_dir/smtp_password`).
    /// Default (absent): no login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_username: Option<String>,
    /// Seconds before a problem still there is sent again. Default: 86400 (once a day).
    pub repeat_secs: Bounded<60, 31_536_000>,
    /// The certificate check fails (and alerts) when fewer days than this are left: renewal
    /// starts with 30 days left, so 21 means it has failed for 9 days. Default: 21.
    pub certificate_min_days: Bounded<1, 365>,
    /// The backup check fails when the last successful backup is older than this. Default:
    /// 172800 (2 days).
    pub backup_max_age_secs: Bounded<3600, 31_536_000>,
    /// The disk check fails when a filesystem the site uses is fuller than this. Default: 90.
    pub disk_max_percent: Bounded<1, 100>,
    /// Seconds one webhook POST or SMTP conversation may take. Default: 20.
    pub timeout_secs: Bounded<1, 600>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            credentials_dir: PathBuf::from("/etc/onebox/alerts"),
            email_to: Vec::new(),
            email_from: None,
            smtp_relay: None,
            smtp_tls: SmtpTls::default(),
            smtp_username: None,
            repeat_secs: Bounded::clamped(86_400),
            certificate_min_days: Bounded::clamped(21),
            backup_max_age_secs: Bounded::clamped(172_800),
            disk_max_percent: Bounded::clamped(90),
            timeout_secs: Bounded::clamped(20),
        }
    }
}

/// `host:port`: a host name or an IP address (IPv6 in brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HostPort(String);

impl HostPort {
    /// Parses `text` as `host:port`.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let bad = || format!("`{}` is not host:port", text.escape_debug());
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.parse::<std::net::Ipv4Addr>().is_ok() || crate::Domain::parse(host).is_ok()
        };
        if port == 0 || !host_ok {
            return Err(bad());
        }
        Ok(HostPort(text.to_string()))
    }

    /// The host (without brackets).
    pub fn host(&self) -> &str {
        let host = self.0.rsplit_once(':').map_or("", |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.0
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        HostPort::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        for good in [
            "/var/backups/onebox",
            "sftp:backup@192.0.2.5:/srv/restic",
            "sftp://backup@host.example:2222//srv/restic",
            "s3:https://s3.example.com/bucket/onebox",
            "s3:s3.amazonaws.com/bucket",
            "rest:https://backup.example:8000/onebox",
        ] {
            assert!(
                Repository::parse(good).is_ok(),
                "{good}: {:?}",
                Repository::parse(good).err()
            );
        }
        for bad in [
            "",
            "relative/dir",
            "/a/../b",
            "rest:https://user:secret@host/x",
            "s3:https://key:secret@host/bucket",
            "sftp://u:pw@host//x",
            "sftp:nohostpath",
            "b2:bucket",
            "/with space",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(Repository::parse("/x").expect("ok").local_path().is_some());
    }

    #[test]
    fn host_ports() {
        let h = HostPort::parse("smtp.example.com:587").expect("ok");
        assert_eq!((h.host(), h.port()), ("smtp.example.com", 587));
        let h = HostPort::parse("[::1]:25").expect("ok");
        assert_eq!((h.host(), h.port()), ("::1", 25));
        for bad in ["smtp.example.com", "x:0", "a b:25", ":25"] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }
}
