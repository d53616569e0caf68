//! The `onebox:` section of cloud-init user-data (a `#cloud-config` YAML document). Every key
//! is typed and checked as it is read; an unknown key is an error naming its path.

use onebox_site::Domain;
use onebox_site::ops::{HostPort, Repository, SmtpTls};
use onebox_site::value::{AddressMatch, Bounded, Email, HttpsUrl};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The whole cloud-config document: only `onebox:` is read; cloud-init's own keys are left to
/// cloud-init.
#[derive(Debug, Default, Deserialize)]
struct CloudConfig {
    #[serde(default)]
    onebox: Option<UserData>,
}

/// The `onebox:` mapping.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserData {
    /// The site's domain. Default: `foobar.com`.
    pub domain: Option<Domain>,
    /// The box's public IPv4 address (`[site] public_ipv4`; the generated zone's A records).
    pub public_ipv4: Option<Ipv4Addr>,
    /// The box's public IPv6 address (`[site] public_ipv6`; the generated zone's AAAA records).
    pub public_ipv6: Option<Ipv6Addr>,
    /// The HTTPS port clients see (`[edge] public_https_port`).
    pub public_https_port: Option<Bounded<1, 65535>>,
    /// Addresses or networks allowed to transfer the domain's zone.
    #[serde(default)]
    pub allow_transfer: Vec<AddressMatch>,
    /// The ACME CA.
    pub acme: Option<Acme>,
    /// The whole site file, used as given.
    pub site_toml: Option<String>,
    /// Zone files by file name (`NAME.zone`), used as given instead of the generated zone.
    pub zones: Option<BTreeMap<String, String>>,
    /// Secondary name servers of the domain's zone (issue 11).
    #[serde(default)]
    pub secondaries: Vec<SecondaryData>,
    /// Sign the domain's zone (DNSSEC, `[[dns.zone]] dnssec`). Default: true for the zone
    /// onebox generates, false for a zone file given in `zones:`.
    pub dnssec: Option<bool>,
    /// Whether the domain sends mail. Default: false, so the generated zone says no one may
    /// send mail as the domain (null MX, SPF `-all`, DMARC `p=reject`).
    #[serde(default)]
    pub sends_mail: bool,
    /// Any site-file keys, shaped like the site file (`edge: {threads: 2}`), merged over the
    /// site file provision generates and checked by the same types.
    pub settings: Option<toml::Table>,
    /// Backups (`[backup]`, and its root-only credentials).
    pub backup: Option<BackupData>,
    /// Restore this site from a repository at first boot instead of making a new one.
    pub restore_from: Option<RestoreFrom>,
    /// Alerts (`[alerts]`, and its root-only credentials).
    pub alerts: Option<AlertsData>,
}

/// `onebox.backup`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupData {
    /// The restic repository (`[backup] repository`). Default: the local `/var/backups/onebox`.
    pub repository: Option<Repository>,
    /// The repository password. Default: generated at first boot and shown on the console.
    pub password: Option<String>,
    /// Variables for restic (S3 keys, REST credentials), kept root-only in `env`.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The SSH private key of an SFTP repository (PEM/OpenSSH), kept root-only.
    pub ssh_key: Option<String>,
    /// `known_hosts` lines of the SFTP server, kept root-only.
    pub known_hosts: Option<String>,
    /// `[backup] keep_daily`.
    pub keep_daily: Option<Bounded<0, 36_500>>,
    /// `[backup] keep_weekly`.
    pub keep_weekly: Option<Bounded<0, 5_200>>,
    /// `[backup] keep_monthly`.
    pub keep_monthly: Option<Bounded<0, 1_200>>,
}

/// `onebox.restore_from`: the repository a fresh server restores the site from at first boot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreFrom {
    /// The restic repository (its credentials: `onebox.backup`'s `environment`, `ssh_key`,
    /// `known_hosts`).
    pub repository: Repository,
    /// Its password.
    pub password: String,
    /// The snapshot. Default: the latest.
    pub snapshot: Option<String>,
}

/// `onebox.alerts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsData {
    /// A URL alerts are POSTed to as JSON (kept root-only: such URLs carry their token).
    pub webhook: Option<String>,
    /// `[alerts] email_to`.
    #[serde(default)]
    pub email_to: Vec<Email>,
    /// `[alerts] email_from`.
    pub email_from: Option<Email>,
    /// `[alerts] smtp_relay` (`host:port`).
    pub smtp_relay: Option<HostPort>,
    /// `[alerts] smtp_tls`.
    pub smtp_tls: Option<SmtpTls>,
    /// `[alerts] smtp_username`.
    pub smtp_username: Option<String>,
    /// The relay's password, kept root-only.
    pub smtp_password: Option<String>,
}

/// `onebox.acme`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// Contact e-mail given to the CA.
    pub email: Option<Email>,
    /// Another ACME directory than Let's Encrypt's.
    pub directory: Option<HttpsUrl>,
    /// PEM of the CA that serves `directory`, if it is not a public one.
    pub ca: Option<String>,
}

/// One of `onebox.secondaries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryData {
    /// Its host name, published as an NS of the zone.
    pub name: Domain,
    /// Its address, allowed to transfer the zone and sent NOTIFY.
    pub address: IpAddr,
    /// The name of the TSIG key it uses (`[[dns.tsig]]`).
    pub key: Option<String>,
}

/// Reads the user-data file at `path`: its `onebox:` mapping, or the defaults when it has none.
/// Errors name the file, the key's path, and the line and column.
pub fn read(path: &Path) -> Result<UserData, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&path.display().to_string(), &text)
}

/// Parses user-data `text` (read from `origin`).
pub fn parse(origin: &str, text: &str) -> Result<UserData, String> {
    if text.trim().is_empty() {
        return Ok(UserData::default());
    }
    let mut key_path = String::new();
    let doc = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, Option<CloudConfig>>(de).map_err(|e| {
            key_path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let key = if key_path.is_empty() || key_path == "?" {
            String::new()
        } else {
            format!(" {key_path}:")
        };
        format!("{origin}:{key} {e}")
    })?;
    Ok(doc.and_then(|d| d.onebox).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_onebox_section_and_ignores_cloud_init_keys() {
        let ud = parse(
            "u.yaml",
            "#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAA]\nonebox:\n  domain: Example.COM\n  public_ipv4: 203.0.113.7\n  acme:\n    email: a@example.com\n  settings:\n    edge:\n      threads: 2\n",
        )
        .expect("valid");
        assert_eq!(ud.domain.expect("domain").as_str(), "example.com");
        assert_eq!(ud.public_ipv4, Some(Ipv4Addr::new(203, 0, 113, 7)));
        assert!(ud.settings.is_some());
        assert!(
            parse("u.yaml", "#cloud-config\n")
                .expect("empty")
                .domain
                .is_none()
        );
        assert!(
            parse("u.yaml", "#cloud-config\npackages: [vim]\n")
                .expect("no onebox")
                .domain
                .is_none()
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("onebox:\n  domain: ../../x\n", "onebox.domain:"),
            ("onebox:\n  domain: \"a\\nb.com\"\n", "onebox.domain:"),
            ("onebox:\n  public_ipv4: 1.2.3\n", "onebox.public_ipv4:"),
            ("onebox:\n  public_ipv6: 1.2.3.4\n", "onebox.public_ipv6:"),
            ("onebox:\n  colour: blue\n", "onebox.colour:"),
            (
                "onebox:\n  acme:\n    emial: a@b.example\n",
                "onebox.acme.emial:",
            ),
            (
                "onebox:\n  acme:\n    directory: http://x/dir\n",
                "onebox.acme.directory:",
            ),
            (
                "onebox:\n  allow_transfer: [1.2.3.4, nope]\n",
                "onebox.allow_transfer[1]:",
            ),
            (
                "onebox:\n  public_https_port: 0\n",
                "onebox.public_https_port:",
            ),
            (
                "onebox:\n  secondaries:\n    - name: ns.example.net\n      address: x\n",
                "onebox.secondaries[0].address:",
            ),
        ] {
            let e = parse("u.yaml", text).expect_err(text);
            assert!(e.starts_with(&format!("u.yaml: {key}")), "{text:?}: {e}");
        }
    }
}
