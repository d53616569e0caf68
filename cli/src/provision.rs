//! `onebox provision`: from cloud-init user-data (or a site file) to a provisioned server — the
//! site file, the ACME CA's PEM, the zones, the web root, the MariaDB database and its user, and
//! the first admin password. Everything is checked first, into a [`Plan`]; only a valid plan is
//! written. Files that exist are kept, so a second run changes nothing.

use crate::rootfs::{Outcome, Perm, Root};
use crate::userdata::{self, UserData};
use crate::zonegen::{self, Secondary, ZoneInput};
use crate::{Invalid, database};
use anyhow::Context;
use onebox_site::{Bounded, ConfigError, Domain, SiteFile};
use std::path::{Path, PathBuf};

/// The site file on a server.
pub const SITE_FILE: &str = "/etc/onebox/site.toml";
/// The ACME directory's CA from the user-data.
const ACME_CA: &str = "/etc/onebox/acme-ca.pem";
/// The zone directory provision writes to when the site file does not say.
const ZONES: &str = "/etc/onebox/zones";
/// The first admin password, root-only.
pub const ADMIN_PASSWORD: &str = "/root/onebox-admin-password";
/// The site of a server given no user-data.
const DEFAULT_DOMAIN: &str = "foobar.com";

/// `onebox provision`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// cloud-init user-data (a #cloud-config YAML document); its `onebox:` mapping says what to
    /// make. Without it and without --site: the default site, foobar.com.
    #[arg(long, value_name = "FILE", conflicts_with = "site")]
    pub user_data: Option<PathBuf>,
    /// With --user-data: a FILE that does not exist means no user-data (the default site),
    /// rather than an error (a server booted without a cloud-init datasource).
    #[arg(long, requires = "user_data")]
    pub missing_ok: bool,
    /// A site file to install as it is (its zone is generated from its [site] addresses).
    #[arg(long, value_name = "FILE")]
    pub site: Option<PathBuf>,
    /// Write under DIR as if it were `/`. Then every absolute path of the site file made from
    /// user-data (dns.zones, edge.web_root, edge.state_dir, edge.acme.directory_ca, the database
    /// socket; defaults and onebox.settings alike) is moved under DIR, so the services can run
    /// from it on this machine, and the database user is the user running this command.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The onebox-app binary that sets the first admin password. Default: `onebox-app` beside
    /// this program, else on PATH.
    #[arg(long, value_name = "FILE")]
    pub app_bin: Option<PathBuf>,
    /// Write the files only: no database, no admin password.
    #[arg(long)]
    pub no_database: bool,
    /// Everything but the first admin password, which a later run with --admin-password-only
    /// sets. Its Argon2 hash is seconds of CPU on a small server: so the services can start
    /// before it is made (the image's first boot). Until then the site has no admin account,
    /// so nobody can log in as admin.
    #[arg(long, conflicts_with_all = ["admin_password_only", "no_database"])]
    pub no_admin_password: bool,
    /// Only the first admin password (see --no-admin-password): nothing else is written; the
    /// database must exist. Checks the user-data as every run does.
    #[arg(long, conflicts_with = "no_database")]
    pub admin_password_only: bool,
    /// Everything but the database and the first admin password: the files (site file, zones,
    /// web root, secrets), so that what needs no database (onebox-dns, onebox-edge) can start
    /// while MariaDB is still starting (the image's first boot); a later run with
    /// --database-only makes the database. A first-boot restore (`restore_from`) is done whole
    /// by this run, the database's dump included (it waits for MariaDB).
    #[arg(long, conflicts_with_all = ["admin_password_only", "no_admin_password", "no_database"])]
    pub files_only: bool,
    /// Only the database and its user (see --files-only), as the installed site file's `[app]
    /// database_url` names them: nothing is written; the site file must exist. Checks the
    /// user-data as every run does.
    #[arg(long, conflicts_with_all = ["admin_password_only", "no_admin_password", "no_database", "files_only"])]
    pub database_only: bool,
}

/// Which parts of provisioning a run does: see [`Args::no_admin_password`] and
/// [`Args::files_only`]. The image's first boot runs three: files, database, admin password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// Everything (the default).
    All,
    /// Everything but the first admin password.
    AllButAdminPassword,
    /// The files only (a first-boot restore whole).
    Files,
    /// The database and its user only.
    Database,
    /// The first admin password only.
    AdminPasswordOnly,
}

/// What provisioning will do, all of it checked.
#[derive(Debug)]
pub struct Plan {
    /// The root directory (`/` on a server).
    pub root: PathBuf,
    /// Whether the root is not `/`.
    pub rooted: bool,
    /// The site file's text, as it is written.
    pub site_text: String,
    /// The ACME directory's CA (PEM), written to `/etc/onebox/acme-ca.pem`.
    pub acme_ca: Option<String>,
    /// The zone directory, as a path on the server.
    pub zones_dir: PathBuf,
    /// Zone files to write there: file name and text.
    pub zones: Vec<(String, String)>,
    /// The web root, as a path on the server.
    pub web_root: PathBuf,
    /// The database to create, unless --no-database.
    pub database: Option<database::DbPlan>,
    /// The onebox-app binary.
    pub app_bin: PathBuf,
    /// Root-only files to write (server path, contents): the backup and alert credentials.
    pub secrets: Vec<(PathBuf, String)>,
    /// The backup repository's password file, as a path on the server.
    pub backup_password: PathBuf,
    /// onebox's state directory (`[backup] state_dir`), as a path on the server.
    pub state_dir: PathBuf,
    /// Restore the site from this repository instead of making it (when no site file exists).
    pub restore: Option<userdata::RestoreFrom>,
    /// Which parts this run does.
    pub parts: Parts,
}

/// Checks everything and returns the plan; an [`Invalid`] error names the key.
pub fn plan(args: &Args) -> anyhow::Result<Plan> {
    let root = std::path::absolute(&args.root)
        .with_context(|| format!("--root {}", args.root.display()))?;
    let rooted = root != Path::new("/");
    let mut plan = if let Some(path) = &args.site {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Invalid(format!("{}: cannot read: {e}", path.display())))?;
        let site = onebox_site::parse(path, &text).map_err(|e| Invalid(e.to_string()))?;
        from_site(&root, rooted, text, site, &UserData::default(), "--site")?
    } else {
        let (origin, ud) = match &args.user_data {
            Some(path) if args.missing_ok && !path.exists() => {
                eprintln!(
                    "onebox provision: no user-data at {}: the default site, {DEFAULT_DOMAIN}",
                    path.display()
                );
                (path.display().to_string(), UserData::default())
            }
            Some(path) => (
                path.display().to_string(),
                userdata::read(path).map_err(Invalid)?,
            ),
            None => ("the default user-data".to_string(), UserData::default()),
        };
        from_user_data(&root, rooted, &origin, ud)?
    };
    plan.app_bin = match &args.app_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("onebox-app")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("onebox-app")),
    };
    if args.no_database {
        plan.database = None;
    }
    plan.parts = if args.no_admin_password {
        Parts::AllButAdminPassword
    } else if args.admin_password_only {
        Parts::AdminPasswordOnly
    } else if args.files_only {
        Parts::Files
    } else if args.database_only {
        Parts::Database
    } else {
        Parts::All
    };
    Ok(plan)
}

/// The user running this command (its name in /etc/passwd, else `$USER`).
pub fn current_user() -> String {
    let uid = rustix::process::geteuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".to_string())
}

/// The keys of the site file that name a path on the server.
const PATH_KEYS: [&[&str]; 9] = [
    &["dns", "zones"],
    &["dns", "state_dir"],
    &["backup", "credentials_dir"],
    &["backup", "state_dir"],
    &["alerts", "credentials_dir"],
    &["edge", "web_root"],
    &["edge", "state_dir"],
    &["edge", "acme", "directory_ca"],
    &["app", "database_url"],
];

/// Moves every absolute path of the site file `file` under `root` (the database URL's socket
/// too), so that the services can run from the root on this machine.
fn relocate(file: &mut toml::Table, root: &Path) -> anyhow::Result<()> {
    let under = |p: &str| root.join(p.trim_start_matches('/')).display().to_string();
    for keys in PATH_KEYS {
        let Some((last, tables)) = keys.split_last() else {
            continue;
        };
        let mut table = Some(&mut *file);
        for key in tables {
            table = table
                .and_then(|t| t.get_mut(*key))
                .and_then(toml::Value::as_table_mut);
        }
        let Some(value) = table.and_then(|t| t.get_mut(*last)) else {
            continue;
        };
        let Some(text) = value.as_str() else {
            continue; // the wrong type: the site file's check names it
        };
        let moved = if *last == "database_url" {
            let Some((base, query)) = text.split_once('?') else {
                continue;
            };
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.strip_prefix("socket=") {
                    Some(socket) if socket.starts_with('/') => format!("socket={}", under(socket)),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", pairs.join("&"))
        } else if text.starts_with('/') {
            under(text)
        } else {
            continue;
        };
        *value = toml::Value::String(moved);
    }
    Ok(())
}

fn from_user_data(
    root: &Path,
    rooted: bool,
    origin: &str,
    mut ud: UserData,
) -> anyhow::Result<Plan> {
    if let Some(text) = &ud.site_toml {
        let conflicts = [
            ("public_ipv4", ud.public_ipv4.is_some()),
            ("public_ipv6", ud.public_ipv6.is_some()),
            ("public_https_port", ud.public_https_port.is_some()),
            ("allow_transfer", !ud.allow_transfer.is_empty()),
            ("secondaries", !ud.secondaries.is_empty()),
            ("dnssec", ud.dnssec.is_some()),
            ("settings", ud.settings.is_some()),
            (
                "acme.email",
                ud.acme.as_ref().is_some_and(|a| a.email.is_some()),
            ),
            (
                "acme.directory",
                ud.acme.as_ref().is_some_and(|a| a.directory.is_some()),
            ),
            (
                "backup.repository",
                ud.backup.as_ref().is_some_and(|b| b.repository.is_some()),
            ),
            (
                "alerts.email_to",
                ud.alerts.as_ref().is_some_and(|a| !a.email_to.is_empty()),
            ),
            (
                "alerts.smtp_relay",
                ud.alerts.as_ref().is_some_and(|a| a.smtp_relay.is_some()),
            ),
        ];
        if let Some((key, _)) = conflicts.iter().find(|(_, set)| *set) {
            return Err(Invalid(format!(
                "{origin}: onebox.{key}: not used with onebox.site_toml, which is the whole site file: set it there"
            ))
            .into());
        }
        let site = onebox_site::parse(Path::new("onebox.site_toml"), text)
            .map_err(|e| Invalid(format!("{origin}: {e}")))?;
        if let Some(domain) = &ud.domain
            && *domain != site.site.domain
        {
            return Err(Invalid(format!(
                "{origin}: onebox.domain `{domain}` is not onebox.site_toml's [site] domain `{}`",
                site.site.domain
            ))
            .into());
        }
        return from_site(root, rooted, text.clone(), site, &ud, origin);
    }
    let domain = ud
        .domain
        .clone()
        .map_or_else(|| Domain::parse(DEFAULT_DOMAIN), Ok)
        .map_err(Invalid)?;
    // The default site publishes www A 8.8.8.8: a record value only, never an address used.
    let (ipv4, ipv6) =
        if ud.domain.is_none() && ud.public_ipv4.is_none() && ud.public_ipv6.is_none() {
            (Some(std::net::Ipv4Addr::new(8, 8, 8, 8)), None)
        } else {
            (ud.public_ipv4, ud.public_ipv6)
        };
    let host = |p: &str| toml::Value::String(p.to_string());
    let mut file = toml::Table::new();
    let mut site = toml::Table::new();
    site.insert("domain".into(), domain.as_str().into());
    if let Some(v4) = ipv4 {
        site.insert("public_ipv4".into(), v4.to_string().into());
    }
    if let Some(v6) = ipv6 {
        site.insert("public_ipv6".into(), v6.to_string().into());
    }
    file.insert("site".into(), site.into());

    let mut dns = toml::Table::new();
    dns.insert("zones".into(), host(ZONES));
    if rooted {
        dns.insert("state_dir".into(), host("/var/lib/onebox-dns"));
    }
    let mut transfer: Vec<toml::Value> = ud
        .allow_transfer
        .iter()
        .map(|a| a.to_string().into())
        .collect();
    // The secondaries are sent NOTIFY and may transfer the zone, signed with their TSIG key
    // when they name one (defined by a [[dns.tsig]] table in onebox.settings).
    let tsig_defined = |key: &str| {
        let norm = |k: &str| k.trim_end_matches('.').to_ascii_lowercase();
        ud.settings
            .as_ref()
            .and_then(|s| s.get("dns"))
            .and_then(|d| d.get("tsig"))
            .and_then(toml::Value::as_array)
            .is_some_and(|keys| {
                keys.iter()
                    .filter_map(|k| k.get("name").and_then(toml::Value::as_str))
                    .any(|name| norm(name) == norm(key))
            })
    };
    let mut notify: Vec<toml::Value> = Vec::new();
    for (i, s) in ud.secondaries.iter().enumerate() {
        let peer = match &s.key {
            Some(key) => {
                if !tsig_defined(key) {
                    return Err(Invalid(format!(
                        "{origin}: onebox.secondaries[{i}].key: the TSIG key `{key}` is not \
                         defined: add it to onebox.settings.dns.tsig (name, secret or secret_file)"
                    ))
                    .into());
                }
                format!("{} key {key}", s.address)
            }
            None => s.address.to_string(),
        };
        let peer = toml::Value::from(peer);
        if !transfer.contains(&peer) {
            transfer.push(peer.clone());
        }
        if !notify.contains(&peer) {
            notify.push(peer);
        }
    }
    // The zone onebox generates is signed (issue 11); a zone file the user gives is signed
    // only when the user-data says so (`dnssec: true`).
    let sign = ud.dnssec.unwrap_or(ud.zones.is_none());
    if !transfer.is_empty() || !notify.is_empty() || sign {
        let mut zone = toml::Table::new();
        zone.insert("name".into(), domain.as_str().into());
        if !transfer.is_empty() {
            zone.insert("allow_transfer".into(), transfer.into());
        }
        if !notify.is_empty() {
            zone.insert("notify".into(), notify.into());
        }
        if sign {
            zone.insert("dnssec".into(), true.into());
        }
        dns.insert("zone".into(), vec![toml::Value::from(zone)].into());
    }
    file.insert("dns".into(), dns.into());

    let mut edge = toml::Table::new();
    if rooted {
        edge.insert("web_root".into(), host("/var/www/onebox"));
    }
    edge.insert("state_dir".into(), host("/var/lib/onebox-edge"));
    if let Some(port) = ud.public_https_port {
        edge.insert(
            "public_https_port".into(),
            toml::Value::Integer(i64::from(port.as_u16())),
        );
    }
    backup_and_alerts(&mut file, &ud, root, rooted);
    let acme = ud.acme.take().unwrap_or_default();
    let mut acme_table = toml::Table::new();
    if let Some(directory) = &acme.directory {
        acme_table.insert("ca".into(), "custom".into());
        acme_table.insert("directory_url".into(), directory.as_str().into());
        if acme.ca.is_some() {
            acme_table.insert("directory_ca".into(), host(ACME_CA));
        }
    } else if acme.ca.is_some() {
        return Err(Invalid(format!(
            "{origin}: onebox.acme.ca: a CA's PEM needs onebox.acme.directory (Let's Encrypt's is public)"
        ))
        .into());
    }
    if let Some(email) = &acme.email {
        acme_table.insert("email".into(), email.as_str().into());
    }
    if !acme_table.is_empty() {
        edge.insert("acme".into(), acme_table.into());
    }
    file.insert("edge".into(), edge.into());

    let user = if rooted {
        current_user()
    } else {
        "onebox-app".to_string()
    };
    let mut app = toml::Table::new();
    app.insert(
        "database_url".into(),
        format!("mysql://{user}@localhost/onebox?socket=/run/mysqld/mysqld.sock").into(),
    );
    file.insert("app".into(), app.into());

    if let Some(settings) = &ud.settings {
        if settings
            .get("site")
            .and_then(toml::Value::as_table)
            .is_some_and(|s| s.contains_key("domain"))
        {
            return Err(Invalid(format!(
                "{origin}: onebox.settings.site.domain: set onebox.domain instead"
            ))
            .into());
        }
        merge(&mut file, settings);
    }
    if rooted {
        relocate(&mut file, root)?;
    }
    let body = toml::to_string(&file).context("writing the site file")?;
    let text = format!(
        "# The site file, written by `onebox provision` from the user-data. Edit it, then\n\
         # `systemctl reload onebox-edge` (no connection dropped) and\n\
         # `systemctl restart onebox-dns onebox-app`. Keys: see the README's Configuration.\n\n{body}"
    );
    let site = onebox_site::parse(Path::new(SITE_FILE), &text).map_err(|e| match e {
        ConfigError::Invalid { key, message, .. } | ConfigError::Default { key, message, .. } => {
            Invalid(format!(
                "{origin}: the site file made from it is not valid: {key}: {message}"
            ))
        }
        e => Invalid(format!("{origin}: {e}")),
    })?;
    let ud_rest = UserData {
        zones: ud.zones,
        secondaries: ud.secondaries,
        sends_mail: ud.sends_mail,
        backup: ud.backup,
        restore_from: ud.restore_from,
        alerts: ud.alerts,
        acme: Some(userdata::Acme {
            ca: acme.ca,
            ..Default::default()
        }),
        ..Default::default()
    };
    from_site(root, rooted, text, site, &ud_rest, origin)
}

/// The `[backup]` and `[alerts]` tables from the user-data (their secrets go elsewhere). Under
/// a root, the default local repository and the state and credentials directories are written
/// out so that they are moved under it.
fn backup_and_alerts(file: &mut toml::Table, ud: &UserData, root: &Path, rooted: bool) {
    let host = |p: &str| toml::Value::String(p.to_string());
    let mut backup = toml::Table::new();
    let defaults = onebox_site::BackupConfig::default();
    if rooted {
        let local = root.join(onebox_site::ops::DEFAULT_REPOSITORY.trim_start_matches('/'));
        backup.insert("repository".into(), local.display().to_string().into());
        backup.insert(
            "credentials_dir".into(),
            host(&defaults.credentials_dir.display().to_string()),
        );
        backup.insert(
            "state_dir".into(),
            host(&defaults.state_dir.display().to_string()),
        );
    }
    if let Some(b) = &ud.backup {
        if let Some(repo) = &b.repository {
            backup.insert("repository".into(), repo.as_str().into());
        }
        for (key, value) in [
            ("keep_daily", b.keep_daily.map(Bounded::get)),
            ("keep_weekly", b.keep_weekly.map(Bounded::get)),
            ("keep_monthly", b.keep_monthly.map(Bounded::get)),
        ] {
            if let Some(v) = value {
                backup.insert(key.into(), toml::Value::Integer(v.cast_signed()));
            }
        }
    }
    if !backup.is_empty() {
        file.insert("backup".into(), backup.into());
    }
    let mut alerts = toml::Table::new();
    if rooted {
        let defaults = onebox_site::AlertsConfig::default();
        alerts.insert(
            "credentials_dir".into(),
            host(&defaults.credentials_dir.display().to_string()),
        );
    }
    if let Some(a) = &ud.alerts {
        if !a.email_to.is_empty() {
            let to: Vec<toml::Value> = a.email_to.iter().map(|e| e.as_str().into()).collect();
            alerts.insert("email_to".into(), to.into());
        }
        if let Some(from) = &a.email_from {
            alerts.insert("email_from".into(), from.as_str().into());
        }
        if let Some(relay) = &a.smtp_relay {
            alerts.insert(
                "smtp_relay".into(),
                format!("{}:{}", relay_host(relay), relay.port()).into(),
            );
        }
        if let Some(tls) = a.smtp_tls {
            let word = match tls {
                onebox_site::ops::SmtpTls::Starttls => "starttls",
                onebox_site::ops::SmtpTls::Tls => "tls",
                onebox_site::ops::SmtpTls::None => "none",
            };
            alerts.insert("smtp_tls".into(), word.into());
        }
        if let Some(user) = &a.smtp_username {
            alerts.insert("smtp_username".into(), user.as_str().into());
        }
    }
    if !alerts.is_empty() {
        file.insert("alerts".into(), alerts.into());
    }
}

/// A relay's host as written in `host:port` (an IPv6 address in brackets).
fn relay_host(relay: &onebox_site::ops::HostPort) -> String {
    if relay.host().contains(':') {
        format!("[{}]", relay.host())
    } else {
        relay.host().to_string()
    }
}

/// The root-only files the user-data gives: the repository password (or `restore_from`'s), the
/// backend's environment, the SFTP key and known hosts, the webhook URL and SMTP password.
fn secrets(
    ud: &UserData,
    backup_dir: &Path,
    alerts_dir: &Path,
    origin: &str,
) -> Result<Vec<(PathBuf, String)>, Invalid> {
    let bad = |key: &str, msg: &str| Invalid(format!("{origin}: onebox.{key}: {msg}"));
    let one_line = |key: &str, value: &str| -> Result<String, Invalid> {
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(bad(key, "must be one line, not empty"));
        }
        Ok(format!("{value}\n"))
    };
    let mut out = Vec::new();
    let given = ud.backup.as_ref().and_then(|b| b.password.as_deref());
    let restore = ud.restore_from.as_ref().map(|r| r.password.as_str());
    let password = match (given, restore) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(
                "backup.password",
                "differs from onebox.restore_from.password (the same repository needs the same password)",
            ));
        }
        (Some(p), _) => Some(("backup.password", p)),
        (None, Some(p)) => Some(("restore_from.password", p)),
        (None, None) => None,
    };
    if let Some((key, p)) = password {
        out.push((backup_dir.join("password"), one_line(key, p)?));
    }
    if let Some(b) = &ud.backup {
        if !b.environment.is_empty() {
            let mut env = String::new();
            for (k, v) in &b.environment {
                let name_ok = k
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !name_ok {
                    return Err(bad(
                        "backup.environment",
                        &format!(
                            "`{}` is not a variable name (A-Z, 0-9, _)",
                            k.escape_debug()
                        ),
                    ));
                }
                env += &format!("{k}={}", one_line(&format!("backup.environment.{k}"), v)?);
            }
            out.push((backup_dir.join("env"), env));
        }
        if let Some(key) = &b.ssh_key {
            if !key.contains("PRIVATE KEY-----") {
                return Err(bad("backup.ssh_key", "is not a PEM/OpenSSH private key"));
            }
            let mut key = key.clone();
            if !key.ends_with('\n') {
                key.push('\n');
            }
            out.push((backup_dir.join("ssh_key"), key));
        }
        if let Some(known) = &b.known_hosts {
            let mut known = known.clone();
            if !known.ends_with('\n') {
                known.push('\n');
            }
            out.push((backup_dir.join("known_hosts"), known));
        }
    }
    if let Some(a) = &ud.alerts {
        if let Some(url) = &a.webhook {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(bad("alerts.webhook", "must be an http:// or https:// URL"));
            }
            out.push((
                alerts_dir.join("webhook_url"),
                one_line("alerts.webhook", url)?,
            ));
        }
        if let Some(p) = &a.smtp_password {
            out.push((
                alerts_dir.join("smtp_password"),
                one_line("alerts.smtp_password", p)?,
            ));
        }
    }
    Ok(out)
}

/// Deep-merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A path of the site file (`path`, relative ones relative to `/etc/onebox`) as a path on the
/// server: under the root when the site file names the root's copy.
fn server_path(root: &Path, rooted: bool, path: &Path) -> PathBuf {
    let path = Path::new("/etc/onebox").join(path);
    if rooted && let Ok(rest) = path.strip_prefix(root) {
        return Path::new("/").join(rest);
    }
    path
}

/// The rest of the plan, once the site file is known: zones, CA, database.
fn from_site(
    root: &Path,
    rooted: bool,
    text: String,
    site: SiteFile,
    ud: &UserData,
    origin: &str,
) -> anyhow::Result<Plan> {
    let zones_dir = server_path(root, rooted, &site.dns.zones);
    let web_root = server_path(root, rooted, site.edge.web_root.get());
    let acme_ca = match ud.acme.as_ref().and_then(|a| a.ca.clone()) {
        Some(pem) => {
            check_pem(&pem).map_err(|e| Invalid(format!("{origin}: onebox.acme.ca: {e}")))?;
            Some(pem)
        }
        None => None,
    };
    let mut zones = Vec::new();
    if let Some(given) = &ud.zones {
        for (name, zone_text) in given {
            let stem = name.strip_suffix(".zone").ok_or_else(|| {
                Invalid(format!(
                    "{origin}: onebox.zones: `{}`: a zone file's name is DOMAIN.zone",
                    name.escape_debug()
                ))
            })?;
            let domain = Domain::parse(stem).map_err(|e| {
                Invalid(format!(
                    "{origin}: onebox.zones: `{}`: {e}",
                    name.escape_debug()
                ))
            })?;
            zones.push((format!("{domain}.zone"), zone_text.clone()));
        }
    } else {
        let domain = &site.site.domain;
        let zone_file = zones_dir.join(format!("{domain}.zone"));
        let exists = root
            .join(zone_file.strip_prefix("/").unwrap_or(&zone_file))
            .symlink_metadata()
            .is_ok();
        if !exists {
            if site.site.public_ipv4.is_none() && site.site.public_ipv6.is_none() {
                return Err(Invalid(format!(
                    "{origin}: no zone for {domain}: give public_ipv4 or public_ipv6 to generate it, or zones:"
                ))
                .into());
            }
            let input = ZoneInput {
                domain: domain.clone(),
                ipv4: site.site.public_ipv4,
                ipv6: site.site.public_ipv6,
                secondaries: ud
                    .secondaries
                    .iter()
                    .map(|s| Secondary {
                        name: s.name.clone(),
                        address: s.address,
                    })
                    .collect(),
                caa_issuer: site
                    .edge
                    .acme
                    .caa_issuer()
                    .filter(|h| Domain::parse(h).is_ok()),
                sends_mail: ud.sends_mail,
                serial: zonegen::serial_for(time::OffsetDateTime::now_utc().date()),
            };
            zones.push((format!("{domain}.zone"), zonegen::zone_text(&input)));
        }
    }
    check_zones(&zones).map_err(|e| Invalid(format!("{origin}: onebox.zones: {e}")))?;
    let database = Some(database::DbPlan::from_site(&site).map_err(Invalid)?);
    let backup_dir = server_path(root, rooted, &site.backup.credentials_dir);
    let alerts_dir = server_path(root, rooted, &site.alerts.credentials_dir);
    let secrets = secrets(ud, &backup_dir, &alerts_dir, origin)?;
    let restore = ud.restore_from.as_ref().map(|r| userdata::RestoreFrom {
        repository: r.repository.clone(),
        password: r.password.clone(),
        snapshot: r.snapshot.clone(),
    });
    Ok(Plan {
        root: root.to_path_buf(),
        rooted,
        site_text: text,
        acme_ca,
        zones_dir,
        zones,
        web_root,
        database,
        app_bin: PathBuf::new(),
        secrets,
        backup_password: backup_dir.join("password"),
        state_dir: server_path(root, rooted, &site.backup.state_dir),
        restore,
        parts: Parts::All,
    })
}

/// `pem` holds at least one certificate and nothing unreadable.
fn check_pem(pem: &str) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        cert.map_err(|e| format!("not valid PEM: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("holds no PEM certificate".into());
    }
    Ok(())
}

/// Checks zone files as onebox-dns will load them (a private temporary directory, not the root).
fn check_zones(zones: &[(String, String)]) -> Result<(), String> {
    if zones.is_empty() {
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    for (name, text) in zones {
        std::fs::write(dir.path().join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    onebox_dns::check::check(dir.path())
        .map(|_| ())
        .map_err(|errors| {
            errors
                .0
                .iter()
                .map(|e| {
                    let shown = e.to_string();
                    shown
                        .strip_prefix(&format!("{}/", dir.path().display()))
                        .unwrap_or(&shown)
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
}

/// The group `onebox` of the root's /etc/group, if there is one.
fn onebox_gid(root: &Root) -> Option<u32> {
    let text = root.read(Path::new("etc/group")).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == "onebox").then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// A fresh server's first boot with `restore_from`: the site comes back from the repository
/// (files, then the database from the dump) instead of being made.
async fn restore_at_first_boot(
    plan: &Plan,
    root: &Root,
    from: &userdata::RestoreFrom,
) -> anyhow::Result<()> {
    let rel = |p: &Path| p.strip_prefix("/").unwrap_or(p).to_path_buf();
    let state = rel(&plan.state_dir);
    let password = root.host_path(&rel(&plan.backup_password));
    let restic = crate::restic::Restic {
        repository: from.repository.as_str().to_string(),
        credentials_dir: password.parent().unwrap_or(Path::new("/")).to_path_buf(),
        password_file: password,
        cache_dir: root.host_path(&state.join("restic-cache")),
        timeout: std::time::Duration::from_secs(6 * 3600),
    };
    let snapshot = from.snapshot.as_deref().unwrap_or("latest");
    println!(
        "restoring the site from {} ({snapshot}) instead of making a new one",
        from.repository.as_str()
    );
    let started = std::time::Instant::now();
    crate::restore::wait_for_repository(&restic, crate::restore::FIRST_BOOT_WAIT)?;
    // The services are not stopped: at first boot they have not started, their start jobs wait
    // for this unit (After=onebox-provision), and a `systemctl stop` would cancel those jobs, so
    // that the restored box came up with none of them running (seen in the VM suite).
    let manifest = crate::restore::restore_files(&plan.root, &restic, snapshot, &state, false)?;
    if plan.database.is_some() {
        let site = crate::backup::Site::load(&plan.root, None)?;
        // Not ordered after MariaDB at first boot (--files-only): wait as the first boot's steps do.
        crate::restore::load_database(&site, &manifest, database::FIRST_BOOT_WAIT).await?;
    }
    crate::restore::finish(&plan.root, &state);
    println!(
        "restored {} from {} in {:.1} s",
        manifest.domain,
        from.repository.as_str(),
        started.elapsed().as_secs_f64()
    );
    let _ = root;
    Ok(())
}

/// `--database-only`: the database and its user as the installed site file names them (after a
/// first-boot restore that is the restored site's, whose dump `--files-only` loaded); MariaDB is
/// waited for up to [`database::FIRST_BOOT_WAIT`]. (--no-database cannot be given with it.)
async fn database_only(plan: &Plan) -> anyhow::Result<()> {
    let site = crate::backup::Site::load(&plan.root, None).map_err(|e| {
        Invalid(format!(
            "--database-only makes the database the installed site file names, and it cannot be read (run `onebox provision --files-only` first): {e}"
        ))
    })?;
    let db = database::DbPlan::from_site(&site.file)
        .map_err(|e| Invalid(format!("{}: {e}", site.config.display())))?
        // Not ordered after mariadb.service at first boot: it starts while MariaDB starts.
        .waiting(database::FIRST_BOOT_WAIT);
    database::create(&db).await
}

/// Carries out `plan`. Prints one line per thing made or kept.
pub async fn apply(plan: &Plan) -> anyhow::Result<()> {
    std::fs::create_dir_all(&plan.root)
        .with_context(|| format!("creating {}", plan.root.display()))?;
    let root = Root::open(&plan.root)?;
    if plan.parts == Parts::AdminPasswordOnly {
        if let Some(db) = &plan.database {
            crate::admin::first_password(plan, &root, db).await?;
        }
        return Ok(());
    }
    if plan.parts == Parts::Database {
        return database_only(plan).await;
    }
    let say = |outcome: Outcome, path: &Path| {
        let shown = root.host_path(path.strip_prefix("/").unwrap_or(path));
        match outcome {
            Outcome::Wrote => println!("wrote {}", shown.display()),
            Outcome::Kept => println!("kept {} (it exists)", shown.display()),
        }
    };
    let dir = Perm {
        mode: 0o755,
        owner: Some((0, 0)),
    };
    let site_perm = Perm {
        mode: 0o640,
        owner: onebox_gid(&root).map(|gid| (0, gid)),
    };
    if site_perm.owner.is_none() && rustix::process::geteuid().is_root() && !plan.rooted {
        eprintln!(
            "onebox provision: no group `onebox` in /etc/group: the site file stays root:root 0640"
        );
    }
    let private_dir = Perm {
        mode: 0o700,
        owner: Some((0, 0)),
    };
    let private = Perm {
        mode: 0o600,
        owner: Some((0, 0)),
    };
    for (path, text) in &plan.secrets {
        // Only the credentials directory is private: the directories above it (/etc/onebox, which
        // the services read the site file from) are made first as ordinary ones, not 0700.
        if let Some(above) = path.parent().and_then(Path::parent) {
            root.ensure_dir(above, dir)?;
        }
        say(
            root.write_new(path, text.as_bytes(), private, private_dir)?,
            path,
        );
    }
    let site_path = Path::new(SITE_FILE);
    if let Some(from) = &plan.restore
        && !root.exists(site_path)?
    {
        return restore_at_first_boot(plan, &root, from).await;
    }
    say(
        root.write_new(site_path, plan.site_text.as_bytes(), site_perm, dir)?,
        site_path,
    );
    if !root.exists(&plan.backup_password)? {
        let password = crate::admin::random_password(32)?;
        root.write_new(
            &plan.backup_password,
            format!("{password}\n").as_bytes(),
            private,
            private_dir,
        )?;
        let shown = root.host_path(
            plan.backup_password
                .strip_prefix("/")
                .unwrap_or(&plan.backup_password),
        );
        if plan.rooted {
            println!("the backup repository password is in {}", shown.display());
        } else {
            crate::admin::show_on_console("the backup repository password", &password, &shown);
        }
    }
    if let Some(pem) = &plan.acme_ca {
        let path = Path::new(ACME_CA);
        say(
            root.write_new(
                path,
                pem.as_bytes(),
                Perm {
                    mode: 0o644,
                    owner: Some((0, 0)),
                },
                dir,
            )?,
            path,
        );
    }
    root.ensure_dir(&plan.zones_dir, dir)?;
    for (name, text) in &plan.zones {
        let path = plan.zones_dir.join(name);
        say(
            root.write_new(
                &path,
                text.as_bytes(),
                Perm {
                    mode: 0o644,
                    owner: Some((0, 0)),
                },
                dir,
            )?,
            &path,
        );
    }
    root.ensure_dir(&plan.web_root, dir)?;
    if plan.parts == Parts::Files {
        // (--no-database cannot be given with --files-only: there is always a database to leave.)
        println!("the database is left to `onebox provision --database-only`");
        return Ok(());
    }
    if let Some(db) = &plan.database {
        database::create(db).await?;
        if plan.parts == Parts::AllButAdminPassword {
            println!(
                "the first admin password is left to `onebox provision --admin-password-only`"
            );
        } else {
            crate::admin::first_password(plan, &root, db).await?;
        }
    }
    Ok(())
}
