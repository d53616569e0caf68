//! `onebox restore [SNAPSHOT]`, and the restore `onebox provision` does for user-data's
//! `restore_from`: the snapshot is restored by restic into a root-only staging directory inside
//! the root, each item its manifest names is swapped into place in one `renameat2` (the old copy
//! removed after; never through a symlink, as provision writes), the services stopped meanwhile
//! when systemd runs them, then the database is made anew from the dump.

use crate::backup::{DUMP_DIR, DUMP_FILE, MANIFEST, Manifest, Site, SiteArgs};
use crate::database::DbPlan;
use crate::restic::Restic;
use crate::rootfs::{Perm, Root};
use crate::run::bounded_to;
use anyhow::Context;
use mysql_async::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The services a restore stops and starts again (under systemd).
const SERVICES: [&str; 3] = ["onebox-app", "onebox-edge", "onebox-dns"];

/// `onebox restore`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot to restore (an id from `restic snapshots`). Default: the latest.
    #[arg(value_name = "SNAPSHOT", default_value = "latest")]
    pub snapshot: String,
    /// Where the site lives: `--root`, `--config`.
    #[command(flatten)]
    pub site: SiteArgs,
}

/// Runs `onebox restore`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let site = args.site.load()?;
    let restic = site.restic()?;
    let state = site.state_dir()?;
    let started = Instant::now();
    let manifest = restore_files(&site.root, &restic, &args.snapshot, &state, true)?;
    let restored = args.site.load()?;
    load_database(&restored, &manifest, crate::database::WAIT).await?;
    finish(&site.root, &state);
    start_services();
    println!(
        "restored {} ({} items and the database) in {:.1} s",
        manifest.domain,
        manifest.items.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether systemd runs this machine (then the services are its units).
fn systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(verb: &str) {
    if !systemd() {
        return;
    }
    let mut cmd = Command::new("systemctl");
    cmd.arg(verb).args(SERVICES);
    match bounded_to(
        cmd.stdout(std::process::Stdio::null()),
        Duration::from_secs(120),
        "systemctl",
    ) {
        Ok(out) if out.status.success() => println!("systemctl {verb} {}", SERVICES.join(" ")),
        Ok(out) => eprintln!(
            "onebox restore: systemctl {verb} failed: {}",
            out.stderr_tail(2)
        ),
        Err(e) => eprintln!("onebox restore: systemctl {verb}: {e:#}"),
    }
}

/// Starts the services again (under systemd).
pub fn start_services() {
    systemctl("start");
}

/// How long a first boot's restore waits for its repository to answer: a fresh server's network
/// may come up after provisioning starts, and a repository host may be briefly unreachable.
pub const FIRST_BOOT_WAIT: Duration = Duration::from_secs(15 * 60);

/// Waits until `restic` opens the repository (`restic cat config`), trying again after 1, 2, 4
/// … 30 s while it fails, for at most `within`; every failed try is printed with restic's words.
/// A wrong password is not waited out: it fails at once.
pub fn wait_for_repository(restic: &Restic, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_secs(1);
    let mut tries = 0u32;
    loop {
        tries += 1;
        match restic.run(&["cat", "config"], None) {
            Ok(_) => {
                if tries > 1 {
                    println!(
                        "the repository {} answered after {tries} tries ({:.0} s)",
                        restic.repository,
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            Err(e @ crate::restic::ResticError::WrongPassword { .. }) => {
                return Err(anyhow::anyhow!("{e}"));
            }
            Err(e) => {
                let waited = started.elapsed();
                if waited + pause > within {
                    anyhow::bail!(
                        "the repository {} did not answer within {} s ({tries} tries); the last error: {e}",
                        restic.repository,
                        within.as_secs()
                    );
                }
                println!(
                    "waiting for the repository {} (try {tries}, again in {} s): {e}",
                    restic.repository,
                    pause.as_secs()
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The staging directory of a restore, from the root.
fn staging(state: &Path) -> PathBuf {
    state.join("restore")
}

/// Restores `snapshot` into staging, stops the services (with `stop_services`), swaps every item
/// into place. Returns the manifest; the staging directory keeps the dump until [`finish`].
pub fn restore_files(
    root_dir: &Path,
    restic: &Restic,
    snapshot: &str,
    state: &Path,
    stop_services: bool,
) -> anyhow::Result<Manifest> {
    let root = Root::open(root_dir)?;
    let private = Perm {
        mode: 0o700,
        owner: Some((0, 0)),
    };
    root.ensure_dir(state, private)?;
    root.ensure_dir(&state.join("restic-cache"), private)?;
    let stage = staging(state);
    if root.exists(&stage)? {
        std::fs::remove_dir_all(root.host_path(&stage))
            .with_context(|| format!("removing {}", root.host_path(&stage).display()))?;
    }
    root.ensure_dir(&stage, private)?;
    restic
        .restore(snapshot, &root.host_path(&stage))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let manifest_path = root.host_path(&stage.join(state).join(DUMP_DIR).join(MANIFEST));
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).with_context(|| {
            format!("the snapshot has no manifest ({})", manifest_path.display())
        })?)
        .with_context(|| format!("{}", manifest_path.display()))?;
    if stop_services {
        systemctl("stop");
    }
    let dir = Perm {
        mode: 0o755,
        owner: Some((0, 0)),
    };
    for item in &manifest.items {
        let rel = Path::new(item);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            anyhow::bail!("the manifest names `{item}`, which is not a path from the root");
        }
        let staged = stage.join(rel);
        if !root.exists(&staged)? {
            continue;
        }
        let exchanged = root.swap_in(&staged, rel, dir)?;
        if exchanged {
            // The old copy is now at the staged path: removed without following any symlink.
            let old = root.host_path(&staged);
            let meta = std::fs::symlink_metadata(&old)?;
            if meta.is_dir() {
                std::fs::remove_dir_all(&old)
            } else {
                std::fs::remove_file(&old)
            }
            .with_context(|| format!("removing the replaced {}", old.display()))?;
        }
        println!("restored /{item}");
    }
    Ok(manifest)
}

/// Makes the app's database anew from the dump in staging: dropped, created (with its user) and
/// loaded with `mariadb`; MariaDB is waited for up to `wait`.
pub async fn load_database(
    site: &Site,
    manifest: &Manifest,
    wait: std::time::Duration,
) -> anyhow::Result<()> {
    let state = site.state_dir()?;
    let dump = site.host(&staging(&state).join(&state).join(DUMP_DIR).join(DUMP_FILE));
    let db = DbPlan::from_site(&site.file)
        .map_err(crate::Invalid)?
        .waiting(wait);
    if db.database != manifest.database {
        eprintln!(
            "onebox restore: the dump is of database `{}`; loading it into `{}` ([app] database_url)",
            manifest.database, db.database
        );
    }
    crate::database::create(&db).await?;
    let mut conn = db.connect().await?;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", db.database))
        .await?;
    conn.query_drop(format!(
        "CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        db.database
    ))
    .await?;
    conn.disconnect().await?;
    let file = std::fs::File::open(&dump)
        .with_context(|| format!("the snapshot has no database dump ({})", dump.display()))?;
    let mut cmd = Command::new("mariadb");
    cmd.arg(format!("--socket={}", db.socket.display()))
        .arg(format!("--user={}", db.admin_user))
        .arg("--default-character-set=utf8mb4")
        .arg("--")
        .arg(&db.database)
        .stdin(file)
        .stdout(std::process::Stdio::null());
    let out = bounded_to(&mut cmd, site.file.backup.timeout_secs.secs(), "mariadb")?;
    if !out.status.success() {
        anyhow::bail!(
            "loading the dump into `{}` failed ({}): {}",
            db.database,
            out.status,
            out.stderr_tail(3)
        );
    }
    println!("restored database `{}`", db.database);
    Ok(())
}

/// Removes the staging directory.
pub fn finish(root: &Path, state: &Path) {
    let _ = std::fs::remove_dir_all(root.join(staging(state)));
}
