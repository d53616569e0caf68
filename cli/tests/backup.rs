//! `onebox backup` and `onebox restore` as an operator runs them: the real binaries, real
//! restic, a private MariaDB, pebble for a real certificate, onebox-dns signing the zone.
#![allow(clippy::panic)]

mod common;
use common::api::Api;
use common::site::{Site, ok};
use common::{onebox, text};

use onebox_testkit::{MariaDb, Pebble, free_port, wait_until};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every file under `dir` (relative path → bytes), symlinks as their target.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            let rel = path.strip_prefix(dir).expect("under").to_path_buf();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                out.insert(rel, target.display().to_string().into_bytes());
            } else if meta.is_file() {
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// A site with posts, a certificate from pebble and a signed zone is backed up while a writer
/// posts, then the root is wiped and a fresh MariaDB takes over: provision with `restore_from`
/// brings back the same site — every post committed before the backup began, the same admin
/// password, the same certificate and DNSSEC keys byte for byte, no new ACME order.
#[test]
fn a_fresh_box_restores_the_same_site() {
    let site = Site::new("backup-restore");
    let pebble = Pebble::start(site.http, free_port()).expect("pebble");
    let first_db = MariaDb::start().expect("MariaDB");
    site.link_database(&first_db);
    let out = site.provision(&site.user_data(Some(&pebble), ""));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("backup repository password is in"),
        "{stdout}"
    );
    let repo_password = std::fs::read_to_string(site.root.join("etc/onebox/backup/password"))
        .expect("the repository password");
    assert!(repo_password.trim().len() >= 32);
    assert!(
        !stdout.contains(repo_password.trim()),
        "the password on stdout"
    );
    let admin = std::fs::read_to_string(site.root.join("root/onebox-admin-password"))
        .expect("admin password");
    let admin = admin.trim().to_string();

    let mut dns = site.spawn("onebox-dns");
    let mut app = site.spawn("onebox-app");
    let mut edge = site.spawn("onebox-edge");
    dns.wait_until(30, "a signed zone", || {
        !site.dig(&["+dnssec", "example.test", "DNSKEY"]).is_empty()
    });
    let dnskey = site.dig(&["example.test", "DNSKEY"]);
    // Generous: on a 2-core CI machine a booted VM and the other tests share the CPUs.
    // The edge's own wait: its error has the edge's log, and it ends early if the edge exits.
    let issued = edge.try_wait_until(
        Duration::from_secs(150),
        "the certificate from pebble",
        || {
            site.status()["certificate"]["ok"]["issuer"]
                .as_str()
                .is_some_and(|i| i.contains("Pebble"))
        },
    );
    if let Err(e) = issued {
        panic!(
            "{e}\nstatus: {}\npebble log:\n{}",
            site.status(),
            pebble.log_text()
        );
    }
    let certificate = site.status()["certificate"]["ok"].clone();
    let mut api = None;
    wait_until(30, "the app", || {
        api = Api::login(site.app, site.dir.path(), &admin).ok();
        api.is_some()
    });
    let api = api.expect("logged in");
    for i in 0..5 {
        api.post(&format!("before {i}")).expect("a post");
    }

    // A bounded writer posts while the backup runs.
    let acked: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let api = Api::login(site.app, site.dir.path(), &admin).expect("login");
        std::thread::spawn(move || {
            for i in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let title = format!("during {i}");
                if api.post(&title).is_some() {
                    acked.lock().expect("lock").push((Instant::now(), title));
                }
            }
        })
    };
    wait_until(20, "the writer's first posts", || {
        acked.lock().expect("lock").len() >= 3
    });
    let began = Instant::now();
    let started = Instant::now();
    let out = ok(&mut site.onebox("backup"));
    let backup_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    println!(
        "backup: {backup_secs:.1} s: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let before_backup: Vec<String> = acked
        .lock()
        .expect("lock")
        .iter()
        .filter(|(t, _)| *t < began)
        .map(|(_, title)| title.clone())
        .collect();
    assert!(before_backup.len() >= 3);
    let status = site.status();
    assert_eq!(status["backup"]["ok"]["ok"], true, "{status:#}");
    let state = std::fs::metadata(site.root.join("var/lib/onebox/backup.json")).expect("state");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&state.permissions()) & 0o777,
        0o600
    );

    let kept = |root: &Path| {
        let mut all = BTreeMap::new();
        for dir in [
            "var/lib/onebox-edge/acme",
            "var/lib/onebox-dns",
            "etc/onebox",
        ] {
            for (p, bytes) in files(&root.join(dir)) {
                if dir == "etc/onebox" && p.starts_with("backup") {
                    continue; // the repository's own credentials are not in it
                }
                all.insert(Path::new(dir).join(p), bytes);
            }
        }
        all.insert(
            PathBuf::from("root/onebox-admin-password"),
            std::fs::read(root.join("root/onebox-admin-password")).expect("password"),
        );
        all
    };
    // The services stop first so the files compared are the ones backed up.
    edge.kill();
    dns.kill();
    app.kill();
    let original = kept(&site.root);
    assert!(
        original
            .keys()
            .any(|p| p.starts_with("var/lib/onebox-dns/dnssec")),
        "DNSSEC keys: {:?}",
        original.keys().collect::<Vec<_>>()
    );
    assert!(
        original
            .keys()
            .any(|p| p.starts_with("var/lib/onebox-edge/acme")),
        "ACME files: {:?}",
        original.keys().collect::<Vec<_>>()
    );

    // The box is gone: a fresh root, a fresh MariaDB, no ACME CA (any order would fail).
    drop(pebble);
    drop(first_db);
    std::fs::remove_dir_all(&site.root).expect("wipe the root");
    let second_db = MariaDb::start().expect("MariaDB");
    site.link_database(&second_db);
    let restore_ud = site.user_data(
        None,
        &format!(
            "  restore_from:\n    repository: {}\n    password: {}\n",
            site.repository().display(),
            repo_password.trim()
        ),
    );
    // The repository is out of reach when provisioning starts (a first boot's network may come
    // up later): the restore waits for it instead of failing.
    let away = site.dir.path().join("repository-away");
    std::fs::rename(site.repository(), &away).expect("move the repository away");
    let back = {
        let (away, repo) = (away.clone(), site.repository());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            std::fs::rename(away, repo).expect("put the repository back");
        })
    };
    let started = Instant::now();
    let out = site.provision(&restore_ud);
    back.join().expect("the repository back");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("waiting for the repository"),
        "{}",
        text(&out)
    );
    println!(
        "restore at provision: {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restoring the site from"),
        "{}",
        text(&out)
    );
    assert_eq!(original, kept(&site.root), "the restored files differ");

    let mut dns = site.spawn("onebox-dns");
    let _app = site.spawn("onebox-app");
    let _edge = site.spawn("onebox-edge");
    dns.wait_until(30, "the restored zone", || {
        !site.dig(&["example.test", "DNSKEY"]).is_empty()
    });
    assert_eq!(
        site.dig(&["example.test", "DNSKEY"]),
        dnskey,
        "the same DNSKEY (same DS)"
    );
    wait_until(30, "the restored certificate", || {
        site.status()["certificate"]["ok"] == certificate
    });
    let mut restored = None;
    wait_until(30, "the restored app, with the same admin password", || {
        restored = Api::login(site.app, site.dir.path(), &admin).ok();
        restored.is_some()
    });
    let titles = restored.expect("login").titles();
    for want in (0..5).map(|i| format!("before {i}")).chain(before_backup) {
        assert!(titles.contains(&want), "{want} was lost: {titles:?}");
    }
    // A consistent snapshot: the writer's posts that made it are a prefix of what it wrote.
    let number = |t: &str| t.strip_prefix("during ")?.parse::<u32>().ok();
    let max = titles.iter().filter_map(|t| number(t)).max().unwrap_or(0);
    for (_, title) in acked.lock().expect("lock").iter() {
        if number(title).is_some_and(|i| i <= max) {
            assert!(
                titles.contains(title),
                "{title} missing though `during {max}` is there"
            );
        }
    }
}

/// Unmounts a filesystem the test mounted, whatever happens.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn restic(repo: &Path, password: &Path, args: &[&str]) -> Output {
    Command::new("restic")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", password)
        .arg("--no-cache")
        .args(args)
        .output()
        .expect("restic")
}

/// A wrong password, an unreachable repository and a full disk: each backup fails with a clear
/// error, the state file and `onebox status` say it failed, and the repository keeps its earlier
/// snapshot intact (`restic check` passes, it restores).
#[test]
fn failed_backups_are_clear_recorded_and_damage_nothing() {
    let site = Site::new("backup-failures");
    let db = MariaDb::start().expect("MariaDB");
    site.link_database(&db);
    // A small filesystem for the repository (tests run as root).
    let small = site.dir.path().join("small");
    std::fs::create_dir_all(&small).expect("mkdir");
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "onebox-test"])
        .arg(&small)
        .output()
        .expect("mount");
    assert!(mount.status.success(), "mount tmpfs: {}", text(&mount));
    let _mounted = Mounted(small.clone());
    let repo = small.join("repo");
    let ud = site.user_data(None, "");
    let ud_text = std::fs::read_to_string(&ud).expect("ud").replace(
        &site.repository().display().to_string(),
        &repo.display().to_string(),
    );
    std::fs::write(&ud, ud_text).expect("ud");
    site.provision(&ud);
    let password = site.root.join("etc/onebox/backup/password");
    let right = std::fs::read_to_string(&password).expect("password");

    let out = ok(&mut site.onebox("backup"));
    println!("first backup: {}", String::from_utf8_lossy(&out.stdout));
    let first = site.status()["backup"]["ok"]["snapshot"]
        .as_str()
        .expect("a snapshot")
        .to_string();

    let failed = |why: &str, want: &str| {
        let out = site.onebox("backup").output().expect("backup");
        assert_eq!(out.status.code(), Some(1), "{why}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            err.contains(want),
            "{why}: the error does not say `{want}`: {err}"
        );
        let status = site.status();
        assert_eq!(status["backup"]["ok"]["ok"], false, "{why}: {status:#}");
        assert_eq!(status["ok"], false);
        assert!(
            status["backup"]["ok"]["error"]
                .as_str()
                .is_some_and(|e| e.contains(want)),
            "{why}: {status:#}"
        );
        let human = onebox()
            .args(["status", "--config"])
            .arg(site.site_file())
            .output()
            .expect("status");
        assert!(
            String::from_utf8_lossy(&human.stdout).contains("FAILED"),
            "{why}: {}",
            text(&human)
        );
        println!("{why}: {}", err.trim());
    };

    // A wrong repository password.
    std::fs::write(&password, "not-the-password\n").expect("write");
    failed("wrong password", "does not open");
    std::fs::write(&password, &right).expect("write");

    // An unreachable repository: SFTP to a closed loopback port.
    let site_file = site.site_file();
    let original = std::fs::read_to_string(&site_file).expect("site");
    let closed = free_port();
    std::fs::write(
        &site_file,
        original.replace(
            &format!("repository = \"{}\"", repo.display()),
            &format!("repository = \"sftp://onebox@127.0.0.1:{closed}//srv/repo\""),
        ),
    )
    .expect("site");
    assert_ne!(std::fs::read_to_string(&site_file).expect("site"), original);
    failed("unreachable repository", "127.0.0.1");
    std::fs::write(&site_file, &original).expect("site");

    // A full disk: 8 MB that does not compress, for a 6 MB filesystem.
    let mut noise = vec![0u8; 8 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(site.root.join("var/www/onebox/big.bin"), noise).expect("write");
    failed("full disk", "no space left on device");

    // What was stored is intact.
    let check = restic(&repo, &password, &["check"]);
    assert!(check.status.success(), "restic check: {}", text(&check));
    let snaps = restic(&repo, &password, &["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&snaps.stdout).expect("json");
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["short_id"].as_str())
        .collect();
    assert_eq!(ids, [first.as_str()], "{}", text(&snaps));
    let target = site.dir.path().join("restored");
    let out = restic(
        &repo,
        &password,
        &[
            "restore",
            &first,
            "--target",
            target.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(target.join("etc/onebox/site.toml")).expect("restored site file"),
        original.as_bytes()
    );
}
