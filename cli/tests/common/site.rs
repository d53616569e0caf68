//! A provisioned test site: a root directory, its user-data (pebble, backups, a signed zone),
//! free loopback ports for its services, and what the tests do with it.

#![allow(clippy::panic)]
use super::{bin, onebox, text};
use onebox_testkit::{ChildGuard, MariaDb, Pebble, free_port};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `cmd`; panics with its output unless it succeeds.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    out
}

/// The test's site: a root, a user-data file, the ports its services listen on.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub dns: u16,
    pub http: u16,
    pub https: u16,
    pub app: u16,
}

impl Site {
    pub fn new(what: &str) -> Site {
        let dir = onebox_testkit::temp_dir(what);
        let root = dir.path().join("root");
        Site {
            root,
            dir,
            dns: free_port(),
            http: free_port(),
            https: free_port(),
            app: free_port(),
        }
    }

    pub fn repository(&self) -> PathBuf {
        self.dir.path().join("off-box-repository")
    }

    /// The user-data: the site with its own ports, ACME from `acme`, the zone signed, backups
    /// to a repository outside the root; `extra` is added to the `onebox:` mapping.
    pub fn user_data(&self, acme: Option<&Pebble>, extra: &str) -> PathBuf {
        let acme = match acme {
            Some(p) => {
                let pem = std::fs::read_to_string(p.directory_ca()).expect("pebble CA");
                let pem = pem.replace('\n', "\n      ");
                format!(
                    "  acme:\n    directory: {}\n    email: admin@example.test\n    ca: |\n      {pem}\n",
                    p.directory_url()
                )
            }
            None => String::new(),
        };
        let (dns, http, https, app) = (self.dns, self.http, self.https, self.app);
        let metrics = free_port();
        let text = format!(
            "#cloud-config\nonebox:\n  domain: example.test\n  public_ipv4: 192.0.2.10\n{acme}  backup:\n    repository: {repo}\n    keep_daily: 3\n{extra}  settings:\n    dns:\n      listen: [\"127.0.0.1:{dns}\"]\n      zone:\n        - name: example.test\n          dnssec: true\n    edge:\n      http_listen: 127.0.0.1:{http}\n      https_listen: 127.0.0.1:{https}\n      metrics_listen: 127.0.0.1:{metrics}\n      upstream:\n        servers: [\"127.0.0.1:{app}\"]\n        health_interval_secs: 1\n    app:\n      listen: 127.0.0.1:{app}\n",
            repo = self.repository().display()
        );
        let text = if acme.is_empty() {
            text.replace(
                "      upstream:",
                "      acme:\n        ca: \"off\"\n      upstream:",
            )
        } else {
            text
        };
        let path = self
            .dir
            .path()
            .join(format!("user-data-{}.yaml", fastrand_name()));
        std::fs::write(&path, text).expect("user-data");
        path
    }

    pub fn link_database(&self, db: &MariaDb) {
        let run = self.root.join("run/mysqld");
        std::fs::create_dir_all(&run).expect("mkdir");
        let link = run.join("mysqld.sock");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(db.socket(), link).expect("socket link");
    }

    pub fn provision(&self, user_data: &Path) -> Output {
        ok(onebox()
            .args(["provision", "--user-data"])
            .arg(user_data)
            .arg("--root")
            .arg(&self.root)
            .arg("--app-bin")
            .arg(bin("onebox-app")))
    }

    pub fn site_file(&self) -> PathBuf {
        self.root.join("etc/onebox/site.toml")
    }

    pub fn spawn(&self, name: &str) -> ChildGuard {
        let logs = self.dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("logs");
        let mut cmd = Command::new(bin(name));
        cmd.arg("--config").arg(self.site_file());
        ChildGuard::spawn(cmd, logs.join(format!("{name}-{}.log", fastrand_name()))).expect("spawn")
    }

    pub fn onebox(&self, sub: &str) -> Command {
        let mut cmd = onebox();
        cmd.arg(sub).arg("--root").arg(&self.root);
        cmd
    }

    pub fn status(&self) -> serde_json::Value {
        let out = onebox()
            .args(["status", "--json", "--config"])
            .arg(self.site_file())
            .output()
            .expect("status");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    }

    pub fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .args(["+short", "+time=2", "+tries=1", "@127.0.0.1", "-p"])
            .arg(self.dns.to_string())
            .args(args)
            .output()
            .expect("dig");
        if !out.status.success() {
            // No answer at all (refused, timed out): dig says so on stdout, which is not an answer.
            return String::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(";;"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn fastrand_name() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos()
    )
}
