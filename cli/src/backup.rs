//! `onebox backup`: one restic snapshot of everything that makes the site — the site file and
//! everything beside it (zones, the ACME CA, the alerts' credentials), the zone directory, the
//! DNS state (DNSSEC keys, secondary copies, journals), the edge's ACME account and
//! certificates, the web root with every release `onebox publish` keeps, the first admin
//! password's file, and a dump of the database taken with `mariadb-dump --single-transaction`
//! (one consistent InnoDB snapshot while the site writes; a text dump that any later MariaDB
//! loads and that restic deduplicates night after night). Then the retention policy. The result
//! (time, snapshot, sizes, or the error) goes to a root-only state file that `onebox status` and
//! `onebox doctor` read.

use crate::database::DbPlan;
use crate::restic::{Restic, ResticError};
use crate::rootfs::{Perm, Root};
use crate::run::bounded_to;
use anyhow::Context;
use onebox_site::SiteFile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The state file's name in `[backup] state_dir`.
pub const STATE_FILE: &str = "backup.json";
/// The staging directory of a backup's database dump and manifest, in `[backup] state_dir`.
pub const DUMP_DIR: &str = "dump";
/// The manifest's name in the dump directory: the items a snapshot holds (paths from `/`).
pub const MANIFEST: &str = "manifest.json";
/// The dump's name in the dump directory.
pub const DUMP_FILE: &str = "database.sql";

/// `onebox backup`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the site lives: `--root`, `--config`.
    #[command(flatten)]
    pub site: SiteArgs,
}

/// One backup's result, as the state file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// Unix time it started.
    pub started_unix: i64,
    /// Seconds it took.
    pub duration_secs: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// The repository it went to.
    pub repository: String,
    /// The snapshot made (short id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Bytes added to the repository.
    #[serde(default)]
    pub bytes_added: u64,
    /// Bytes backed up.
    #[serde(default)]
    pub bytes_total: u64,
    /// Files backed up.
    #[serde(default)]
    pub files: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The state file: the last backup and the last one that succeeded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The last backup, whatever its result.
    pub last: Option<Outcome>,
    /// The last successful backup.
    pub last_success: Option<Outcome>,
}

/// Where the site lives: the root, the site file, and the site.
pub struct Site {
    /// The root (`/` on a server).
    pub root: PathBuf,
    /// The site file, a host path.
    pub config: PathBuf,
    /// The site.
    pub file: SiteFile,
}

/// Where a command finds the site: its root and its site file (backup, restore, publish, doctor).
#[derive(Debug, clap::Args)]
pub struct SiteArgs {
    /// The root the site lives under (`/` on a server; tests use a temporary one).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The site file. Default: ROOT/etc/onebox/site.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl SiteArgs {
    /// Loads the site these arguments name.
    pub fn load(&self) -> anyhow::Result<Site> {
        Site::load(&self.root, self.config.as_deref())
    }
}

impl Site {
    /// Loads the site file of `root` (or `config`).
    pub fn load(root: &Path, config: Option<&Path>) -> anyhow::Result<Site> {
        let root = std::path::absolute(root).with_context(|| format!("{}", root.display()))?;
        let config = config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.join(crate::provision::SITE_FILE.trim_start_matches('/')));
        let file = onebox_site::load(&config).map_err(|e| crate::Invalid(e.to_string()))?;
        Ok(Site { root, config, file })
    }

    /// `path` (a host path from the site file; a relative one is relative to the site file's
    /// directory) as a path from the root, without the leading `/`.
    pub fn relative(&self, path: &Path) -> anyhow::Result<PathBuf> {
        let dir = self.config.parent().unwrap_or(Path::new("/"));
        let full = dir.join(path);
        let rel = full.strip_prefix(&self.root).map_err(|_| {
            anyhow::anyhow!(
                "{} is not under the root {}",
                full.display(),
                self.root.display()
            )
        })?;
        Ok(rel.to_path_buf())
    }

    /// The host path of `rel`.
    pub fn host(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// onebox's own state directory, from the root.
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        self.relative(&self.file.backup.state_dir)
    }

    /// restic for the site's own repository.
    pub fn restic(&self) -> anyhow::Result<Restic> {
        let backup = &self.file.backup;
        let repository = match backup.repository.local_path() {
            // A local repository of a rooted site file is already under the root.
            Some(p) => p.display().to_string(),
            None => backup.repository.as_str().to_string(),
        };
        self.restic_for(repository)
    }

    /// restic for `repository`, with the site's credentials directory.
    pub fn restic_for(&self, repository: String) -> anyhow::Result<Restic> {
        let backup = &self.file.backup;
        let credentials = self.host(&self.relative(&backup.credentials_dir)?);
        Ok(Restic {
            repository,
            password_file: credentials.join("password"),
            credentials_dir: credentials,
            cache_dir: self.host(&self.state_dir()?).join("restic-cache"),
            timeout: backup.timeout_secs.secs(),
        })
    }

    /// The items a snapshot holds, as paths from the root: every entry beside the site file
    /// (but the backup credentials), the zone directory, the DNS and edge state, the web root
    /// and its releases, the admin password file. Missing ones are left out.
    pub fn items(&self) -> anyhow::Result<Vec<PathBuf>> {
        let f = &self.file;
        let site_dir = self.relative(self.config.parent().unwrap_or(Path::new("/")))?;
        let credentials = self.relative(&f.backup.credentials_dir)?;
        let mut items = Vec::new();
        let mut children: Vec<PathBuf> = std::fs::read_dir(self.host(&site_dir))
            .with_context(|| format!("{}", self.host(&site_dir).display()))?
            .filter_map(Result::ok)
            .map(|e| site_dir.join(e.file_name()))
            .filter(|p| *p != credentials && !is_temporary(p))
            .collect();
        children.sort();
        items.extend(children);
        let web_root = self.relative(f.edge.web_root.get())?;
        for path in [
            self.relative(&f.dns.zones)?,
            self.relative(&f.dns.state_dir)?,
            self.relative(&f.edge.state_dir)?,
            crate::publish::releases_dir(&web_root),
            web_root,
            PathBuf::from(crate::provision::ADMIN_PASSWORD.trim_start_matches('/')),
        ] {
            if !items.iter().any(|i| path.starts_with(i)) {
                items.push(path);
            }
        }
        items.retain(|p| self.host(p).symlink_metadata().is_ok());
        Ok(items)
    }
}

/// A temporary file a writer left (never worth backing up).
fn is_temporary(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(".onebox-tmp-"))
}

/// Runs `onebox backup`; returns whether it succeeded (the state file says why not).
pub fn run(args: &Args) -> anyhow::Result<bool> {
    let site = args.site.load()?;
    let started = time::OffsetDateTime::now_utc();
    let clock = Instant::now();
    let restic = site.restic()?;
    let result = take(&site, &restic);
    let outcome = Outcome {
        started: started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        started_unix: started.unix_timestamp(),
        duration_secs: clock.elapsed().as_secs_f64(),
        ok: result.is_ok(),
        repository: site.file.backup.repository.as_str().to_string(),
        snapshot: result.as_ref().ok().map(|s| s.snapshot_id.clone()),
        bytes_added: result.as_ref().map_or(0, |s| s.data_added),
        bytes_total: result.as_ref().map_or(0, |s| s.total_bytes_processed),
        files: result.as_ref().map_or(0, |s| s.total_files_processed),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    record(&site, &outcome)?;
    match &result {
        Ok(s) => println!(
            "backup {} of {} to {}: {} files, {} bytes, {} bytes added, {:.1} s",
            s.snapshot_id,
            site.file.site.domain,
            outcome.repository,
            s.total_files_processed,
            s.total_bytes_processed,
            s.data_added,
            outcome.duration_secs
        ),
        Err(e) => eprintln!("onebox backup: FAILED: {e:#}"),
    }
    Ok(result.is_ok())
}

/// Dumps the database, backs everything up, applies the retention policy.
fn take(site: &Site, restic: &Restic) -> anyhow::Result<crate::restic::Summary> {
    let root = Root::open(&site.root)?;
    let state = site.state_dir()?;
    let private = Perm {
        mode: 0o700,
        owner: Some((0, 0)),
    };
    root.ensure_dir(&state, private)?;
    root.ensure_dir(&state.join("restic-cache"), private)?;
    let dump_dir = state.join(DUMP_DIR);
    // A dump left by a run that was killed goes first.
    if root.exists(&dump_dir)? {
        std::fs::remove_dir_all(site.host(&dump_dir))
            .with_context(|| format!("removing {}", site.host(&dump_dir).display()))?;
    }
    root.ensure_dir(&dump_dir, private)?;
    let result = (|| {
        if !restic.password_file.exists() {
            anyhow::bail!(
                "no repository password at {} (`onebox provision` makes it at first boot)",
                restic.password_file.display()
            );
        }
        let items = site.items()?;
        let db = DbPlan::from_site(&site.file).map_err(crate::Invalid)?;
        dump(site, &root, &dump_dir.join(DUMP_FILE), &db)?;
        let manifest = serde_json::to_vec_pretty(&Manifest {
            domain: site.file.site.domain.to_string(),
            database: db.database.clone(),
            items: items.iter().map(|p| p.display().to_string()).collect(),
        })?;
        root.write_atomic(
            &dump_dir.join(MANIFEST),
            &manifest,
            Perm {
                mode: 0o600,
                owner: Some((0, 0)),
            },
            private,
            true,
        )?;
        if restic.open_or_init()? {
            println!("made the restic repository {}", restic.repository);
        }
        let mut paths: Vec<String> = items.iter().map(|p| p.display().to_string()).collect();
        paths.push(dump_dir.display().to_string());
        let exclude = [
            site.host(&site.relative(&site.file.backup.credentials_dir)?),
            site.host(&site.relative(&site.file.edge.state_dir)?)
                .join("upgrade.sock"),
        ];
        let summary = restic
            .backup(&site.root, &paths, &exclude, site.file.site.domain.as_str())
            .map_err(explain)?;
        let b = &site.file.backup;
        restic
            .forget(
                b.keep_daily.get(),
                b.keep_weekly.get(),
                b.keep_monthly.get(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "snapshot {} made, but retention failed: {}",
                    summary.snapshot_id,
                    explain(e)
                )
            })?;
        Ok(summary)
    })();
    // The dump is not left lying around (the database has it; the repository has it).
    let _ = std::fs::remove_dir_all(site.host(&dump_dir));
    result
}

/// A restic error, as the operator reads it.
fn explain(e: ResticError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// What a snapshot holds, written into it beside the dump.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The site's domain.
    pub domain: String,
    /// The database the dump is of.
    pub database: String,
    /// The items, as paths from the root.
    pub items: Vec<String>,
}

/// Dumps the app's database with `mariadb-dump --single-transaction` into `rel`.
fn dump(site: &Site, root: &Root, rel: &Path, db: &DbPlan) -> anyhow::Result<()> {
    let file = root.create_private(rel)?;
    let mut cmd = Command::new("mariadb-dump");
    cmd.arg(format!("--socket={}", db.socket.display()))
        .arg(format!("--user={}", db.admin_user))
        .args([
            "--single-transaction",
            "--quick",
            "--routines",
            "--triggers",
            "--hex-blob",
            "--skip-dump-date",
            "--default-character-set=utf8mb4",
            "--",
            &db.database,
        ])
        .stdin(std::process::Stdio::null());
    // The dump goes straight into the private file, not through memory.
    cmd.stdout(file);
    let out = bounded_to(
        &mut cmd,
        site.file.backup.timeout_secs.secs(),
        "mariadb-dump",
    )?;
    if !out.status.success() {
        anyhow::bail!(
            "mariadb-dump of `{}` failed ({}): {}",
            db.database,
            out.status,
            out.stderr_tail(3)
        );
    }
    Ok(())
}

/// Writes the outcome into the state file (root-only), keeping the last success.
fn record(site: &Site, outcome: &Outcome) -> anyhow::Result<()> {
    let root = Root::open(&site.root)?;
    let state_dir = site.state_dir()?;
    let path = state_dir.join(STATE_FILE);
    let mut state = read_state(&site.host(&path)).unwrap_or_default();
    if outcome.ok {
        state.last_success = Some(outcome.clone());
    }
    state.last = Some(outcome.clone());
    let private = Perm {
        mode: 0o700,
        owner: Some((0, 0)),
    };
    root.write_atomic(
        &path,
        &serde_json::to_vec_pretty(&state)?,
        Perm {
            mode: 0o600,
            owner: Some((0, 0)),
        },
        private,
        true,
    )?;
    Ok(())
}

/// Reads a state file (`None` when there is none).
pub fn read_state(path: &Path) -> anyhow::Result<State> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a backup state file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}
