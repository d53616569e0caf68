//! restic, as `onebox backup` and `onebox restore` run it: the repository and its password from
//! the site file and the root-only credentials directory (never on a command line, never in a
//! log), a cache in onebox's state directory, every run bounded in time.

use crate::run::{Finished, bounded};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The tag every onebox snapshot carries (retention and `latest` look at these only).
pub const TAG: &str = "onebox";

/// How to reach one repository.
#[derive(Debug, Clone)]
pub struct Restic {
    /// The repository location (`--repo`).
    pub repository: String,
    /// The root-only file holding its password.
    pub password_file: PathBuf,
    /// The root-only credentials directory (`env`, `ssh_key`, `known_hosts`).
    pub credentials_dir: PathBuf,
    /// restic's cache directory.
    pub cache_dir: PathBuf,
    /// The longest one run may take.
    pub timeout: Duration,
}

/// Why a restic run failed, as a person can act on it.
#[derive(Debug, thiserror::Error)]
pub enum ResticError {
    /// The password file does not open the repository.
    #[error("the repository password in {file} does not open {repository}: {detail}")]
    WrongPassword {
        /// The password file.
        file: String,
        /// The repository.
        repository: String,
        /// restic's words.
        detail: String,
    },
    /// There is no repository there.
    #[error("no restic repository at {repository}: {detail}")]
    Missing {
        /// The repository.
        repository: String,
        /// restic's words.
        detail: String,
    },
    /// Anything else (unreachable, full disk, timeout).
    #[error("{0}")]
    Other(String),
}

/// The summary restic prints at the end of `backup --json`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct Summary {
    /// The new snapshot's id (short form).
    pub snapshot_id: String,
    /// Bytes added to the repository (after deduplication and compression).
    #[serde(default)]
    pub data_added: u64,
    /// Bytes of the files backed up.
    #[serde(default)]
    pub total_bytes_processed: u64,
    /// Files backed up.
    #[serde(default)]
    pub total_files_processed: u64,
}

/// One snapshot, as `restic snapshots --json` lists it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Snapshot {
    /// Its id.
    pub id: String,
    /// Its short id.
    pub short_id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Its host.
    #[serde(default)]
    pub hostname: String,
}

impl Restic {
    /// A `restic` command with the repository, password and credentials in its environment.
    fn command(&self) -> anyhow::Result<Command> {
        let mut cmd = Command::new("restic");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RESTIC_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env("RESTIC_CACHE_DIR", &self.cache_dir)
            .env("RESTIC_PROGRESS_FPS", "0.016")
            .stdin(std::process::Stdio::null());
        let env_file = self.credentials_dir.join("env");
        if env_file.exists() {
            let text = std::fs::read_to_string(&env_file)
                .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", env_file.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((key, value)) = line.split_once('=') else {
                    // The line is not shown: it may hold a secret.
                    anyhow::bail!("{}:{}: not KEY=VALUE", env_file.display(), n + 1);
                };
                cmd.env(key.trim(), value.trim());
            }
        }
        if let Some(ssh) = self.sftp_command() {
            cmd.arg("-o").arg(format!("sftp.command={ssh}"));
        }
        Ok(cmd)
    }

    /// For an SFTP repository: the ssh command restic runs, with the key and known hosts of the
    /// credentials directory, no questions asked, and bounded waits.
    fn sftp_command(&self) -> Option<String> {
        let rest = self.repository.strip_prefix("sftp:")?;
        let (user_host, port) = if let Some(url) = rest.strip_prefix("//") {
            let authority = url.split('/').next().unwrap_or_default();
            match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                    (h.to_string(), Some(p.to_string()))
                }
                _ => (authority.to_string(), None),
            }
        } else {
            (rest.split(':').next().unwrap_or_default().to_string(), None)
        };
        let mut ssh = String::from(
            "ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=4",
        );
        let key = self.credentials_dir.join("ssh_key");
        if key.exists() {
            ssh += &format!(" -o IdentitiesOnly=yes -i {}", key.display());
        }
        let known = self.credentials_dir.join("known_hosts");
        if known.exists() {
            ssh += &format!(
                " -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                known.display()
            );
        } else {
            ssh += &format!(
                " -o UserKnownHostsFile={} -o StrictHostKeyChecking=accept-new",
                known.display()
            );
        }
        if let Some(port) = port {
            ssh += &format!(" -p {port}");
        }
        ssh += &format!(" {user_host} -s sftp");
        Some(ssh)
    }

    /// Runs restic with `args`; a failure becomes a [`ResticError`] with restic's own words.
    pub fn run(&self, args: &[&str], cwd: Option<&Path>) -> Result<Finished, ResticError> {
        let mut cmd = self
            .command()
            .map_err(|e| ResticError::Other(format!("{e:#}")))?;
        cmd.args(args);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let what = format!("restic {}", args.first().copied().unwrap_or_default());
        let out = bounded(&mut cmd, self.timeout, &what)
            .map_err(|e| ResticError::Other(format!("{e:#}")))?;
        if out.status.success() {
            return Ok(out);
        }
        let detail = out.stderr_tail(3);
        let detail = if detail.is_empty() {
            format!("{what} failed ({})", out.status)
        } else {
            detail
        };
        let lower = detail.to_lowercase();
        Err(
            if lower.contains("wrong password") || lower.contains("no key found") {
                ResticError::WrongPassword {
                    file: self.password_file.display().to_string(),
                    repository: self.repository.clone(),
                    detail,
                }
            } else if lower.contains("is there a repository at the following location") {
                ResticError::Missing {
                    repository: self.repository.clone(),
                    detail,
                }
            } else {
                ResticError::Other(format!("{what} ({}): {detail}", self.repository))
            },
        )
    }

    /// Opens the repository, creating it when there is none (only then: an unreachable one is
    /// an error, never a reason to make a new one).
    pub fn open_or_init(&self) -> Result<bool, ResticError> {
        match self.run(&["cat", "config"], None) {
            Ok(_) => Ok(false),
            Err(ResticError::Missing { .. }) => {
                self.run(&["init"], None)?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Backs up `paths` (relative to `cwd`, so the snapshot holds them as `/path` whatever the
    /// root), leaving out `exclude` (absolute paths).
    pub fn backup(
        &self,
        cwd: &Path,
        paths: &[String],
        exclude: &[PathBuf],
        host: &str,
    ) -> Result<Summary, ResticError> {
        let mut args: Vec<String> = vec![
            "backup".into(),
            "--json".into(),
            "--tag".into(),
            TAG.into(),
            "--host".into(),
            host.into(),
        ];
        for e in exclude {
            args.push("--exclude".into());
            args.push(e.display().to_string());
        }
        args.push("--".into());
        args.extend(paths.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&refs, Some(cwd))?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"summary\""))
            .find_map(|l| serde_json::from_str::<Summary>(l).ok())
            .ok_or_else(|| ResticError::Other("restic backup printed no summary".into()))
    }

    /// Applies the retention policy and prunes what it drops.
    pub fn forget(&self, daily: u64, weekly: u64, monthly: u64) -> Result<(), ResticError> {
        let (d, w, m) = (daily.to_string(), weekly.to_string(), monthly.to_string());
        self.run(
            &[
                "forget",
                "--tag",
                TAG,
                "--group-by",
                "tags",
                "--keep-daily",
                &d,
                "--keep-weekly",
                &w,
                "--keep-monthly",
                &m,
                "--keep-last",
                "1",
                "--prune",
            ],
            None,
        )
        .map(|_| ())
    }

    /// The onebox snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, ResticError> {
        let out = self.run(&["snapshots", "--json", "--tag", TAG], None)?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| ResticError::Other(format!("restic snapshots: unreadable list: {e}")))
    }

    /// Restores `snapshot` (an id, or `latest`) into the directory `target`.
    pub fn restore(&self, snapshot: &str, target: &Path) -> Result<(), ResticError> {
        let target = target.display().to_string();
        let spec = if snapshot == "latest" {
            // `latest` of the onebox snapshots, whichever host took them.
            let list = self.snapshots()?;
            list.last()
                .map(|s| s.id.clone())
                .ok_or_else(|| ResticError::Other(format!("{}: no snapshot", self.repository)))?
        } else {
            snapshot.to_string()
        };
        self.run(&["restore", &spec, "--target", &target], None)
            .map(|_| ())
    }
}
