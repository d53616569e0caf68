//! `onebox provision` and `onebox status` as an operator runs them: the real binary, a temporary
//! root, a private MariaDB, and the three services started from the provisioned site file.

mod common;
use common::api::Api;
use common::{bin, onebox, text};

use onebox_testkit::{ChildGuard, MariaDb, free_port, wait_until};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run onebox")
}

/// The first admin password provisioning generated into `file`: long enough, root-only (0600),
/// and not in `printed` (what the run printed).
fn generated_password(file: &Path, printed: &str) -> String {
    let password = std::fs::read_to_string(file).expect("password file");
    let password = password.trim().to_string();
    assert!(password.len() >= 12, "a generated password");
    assert!(!printed.contains(&password), "the password is not printed");
    let mode = std::fs::metadata(file).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{} is root-only", file.display());
    password
}

/// Every file under `dir` with its bytes and mode, for before/after comparisons.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("ls") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                stack.push(path.clone());
                out.push((path, Vec::new(), meta.permissions().mode()));
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.push((path, bytes, meta.permissions().mode()));
            }
        }
    }
    out.sort();
    out
}

/// A user-data file in `dir` for example.test, the app listening on 127.0.0.1:`app`.
fn app_user_data(dir: &Path, app: u16) -> PathBuf {
    let ud = dir.join("user-data.yaml");
    std::fs::write(
        &ud,
        format!(
            "#cloud-config\nonebox:\n  domain: example.test\n  public_ipv4: 192.0.2.10\n  settings:\n    app:\n      listen: 127.0.0.1:{app}\n"
        ),
    )
    .expect("user-data");
    ud
}

#[test]
fn bad_user_data_exits_2_naming_the_key_and_writes_nothing() {
    let dir = onebox_testkit::temp_dir("provision-bad");
    let cases = [
        ("onebox:\n  domain: ../../x\n", "onebox.domain"),
        ("onebox:\n  domain: \"foo\\nbar.com\"\n", "onebox.domain"),
        ("onebox:\n  public_ipv4: 300.1.2.3\n", "onebox.public_ipv4"),
        ("onebox:\n  colour: blue\n", "onebox.colour"),
        (
            "onebox:\n  acme:\n    ca: not a pem\n    directory: https://ca.example/dir\n",
            "onebox.acme.ca",
        ),
        ("onebox:\n  zones:\n    ../x.zone: \"\"\n", "onebox.zones"),
        (
            "onebox:\n  domain: example.com\n  public_ipv4: 192.0.2.1\n  zones:\n    example.com.zone: \"@ IN A 1.2.3.4\\n\"\n",
            "onebox.zones",
        ),
        (
            "onebox:\n  settings:\n    edge:\n      metrics_listen: 0.0.0.0:9100\n",
            "edge.metrics_listen",
        ),
        (
            "onebox:\n  settings:\n    app:\n      posts_per_page: 0\n",
            "app.posts_per_page",
        ),
        (
            "onebox:\n  settings:\n    dns:\n      colour: blue\n",
            "dns.colour",
        ),
        (
            "onebox:\n  site_toml: \"[site]\\ndomain = 'a.com'\\n[app]\\nsession_hours = 1\\n\"\n",
            "app.session_hours",
        ),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let ud = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&ud, format!("#cloud-config\n{yaml}")).expect("write");
        let root = dir.path().join(format!("root{i}"));
        let out = run(onebox()
            .args(["provision", "--no-database", "--user-data"])
            .arg(&ud)
            .arg("--root")
            .arg(&root));
        assert_eq!(out.status.code(), Some(2), "{yaml}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key),
            "{yaml}: the error does not name {key}: {err}"
        );
        assert!(!root.exists(), "{yaml}: {} was created", root.display());
    }
}

#[test]
fn default_site_files_are_the_generated_zone_and_a_second_run_changes_nothing() {
    let dir = onebox_testkit::temp_dir("provision-files");
    let root = dir.path().join("root");
    let out = run(onebox()
        .args(["provision", "--no-database", "--root"])
        .arg(&root));
    assert!(out.status.success(), "{}", text(&out));

    let site_path = root.join("etc/onebox/site.toml");
    let site = onebox_site::load(&site_path).expect("the site file parses");
    assert_eq!(site.site.domain(), "foobar.com");
    assert_eq!(site.site.public_ipv4, Some("8.8.8.8".parse().expect("ip")));
    assert_eq!(
        site.dns.zones,
        root.join("etc/onebox/zones"),
        "a rooted site file names the root's paths"
    );
    // The generated zone is signed (issue 11), its keys in the root's DNS state directory.
    assert_eq!(site.dns.zone.len(), 1, "{:?}", site.dns.zone);
    assert_eq!(site.dns.zone[0].name.as_str(), "foobar.com");
    assert!(site.dns.zone[0].dnssec, "the generated zone is signed");
    assert_eq!(site.dns.state_dir, root.join("var/lib/onebox-dns"));
    let site_text = std::fs::read_to_string(&site_path).expect("site file");
    assert!(site_text.contains("dnssec = true"), "{site_text}");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&site_path), 0o640);
    let zone = root.join("etc/onebox/zones/foobar.com.zone");
    assert_eq!(mode(&zone), 0o644);
    assert_eq!(mode(&root.join("etc/onebox/zones")), 0o755);
    assert!(root.join("var/www/onebox").is_dir());
    assert!(
        !root.join("var/lib/onebox-dns").exists(),
        "root never writes the DNS state"
    );

    // named-checkzone (BIND) accepts the generated zone.
    let check = Command::new("named-checkzone")
        .args(["-k", "fail", "-n", "fail", "foobar.com"])
        .arg(&zone)
        .output()
        .expect("named-checkzone");
    assert!(check.status.success(), "{}", text(&check));
    let zone_text = std::fs::read_to_string(&zone).expect("zone");
    for want in [
        "ns2.foobar.com.",
        "CAA   0 issue \"letsencrypt.org\"",
        "MX    0 .",
    ] {
        assert!(zone_text.contains(want), "{want} missing:\n{zone_text}");
    }

    let before = tree(&root);
    let out = run(onebox()
        .args(["provision", "--no-database", "--root"])
        .arg(&root));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("wrote"), "second run wrote: {stdout}");
    assert!(stdout.contains("kept"), "{stdout}");
    assert_eq!(before, tree(&root), "a second run changed the tree");
}

#[test]
fn never_writes_through_a_symlink() {
    let dir = onebox_testkit::temp_dir("provision-symlink");
    let root = dir.path().join("root");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, root.join("etc/onebox")).expect("symlink");
    let out = run(onebox()
        .args(["provision", "--no-database", "--root"])
        .arg(&root));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symlink"),
        "{}",
        text(&out)
    );
    assert!(
        std::fs::read_dir(&elsewhere).expect("ls").next().is_none(),
        "a file was written through the symlink"
    );
}

/// A site provisioned from user-data into a temporary root, served by the three services started
/// from the provisioned site file: DNS answers from the generated zone, the edge serves the app,
/// `onebox status` sees it all and notices an outage.
#[test]
fn provisioned_site_serves_and_status_sees_it() {
    let mariadb = MariaDb::start().expect("MariaDB");
    let dir = onebox_testkit::temp_dir("provision-stack");
    let root = dir.path().join("root");
    let (dns, http, https, metrics, app) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let ud = dir.path().join("user-data.yaml");
    std::fs::write(
        &ud,
        format!(
            "#cloud-config\nonebox:\n  domain: example.test\n  public_ipv4: 192.0.2.10\n  public_ipv6: 2001:db8::10\n  \
             allow_transfer: [127.0.0.1]\n  settings:\n    dns:\n      listen: [\"127.0.0.1:{dns}\"]\n    \
             edge:\n      http_listen: 127.0.0.1:{http}\n      https_listen: 127.0.0.1:{https}\n      \
             metrics_listen: 127.0.0.1:{metrics}\n      upstream:\n        servers: [\"127.0.0.1:{app}\"]\n        \
             health_interval_secs: 1\n      acme:\n        ca: \"off\"\n    app:\n      listen: 127.0.0.1:{app}\n"
        ),
    )
    .expect("user-data");
    // The server's MariaDB socket, where the rooted site file looks for it.
    std::fs::create_dir_all(root.join("run/mysqld")).expect("mkdir");
    std::os::unix::fs::symlink(mariadb.socket(), root.join("run/mysqld/mysqld.sock"))
        .expect("socket link");
    let provision = || {
        run(onebox()
            .args(["provision", "--user-data"])
            .arg(&ud)
            .arg("--root")
            .arg(&root)
            .arg("--app-bin")
            .arg(bin("onebox-app")))
    };
    let out = provision();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let password_file = root.join("root/onebox-admin-password");
    assert!(
        stdout.contains(&password_file.display().to_string()),
        "{stdout}"
    );
    let password = generated_password(&password_file, &text(&out));
    let password = password.as_str();

    let site = root.join("etc/onebox/site.toml");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let spawn = |name: &str| {
        let mut cmd = Command::new(bin(name));
        cmd.arg("--config").arg(&site);
        ChildGuard::spawn(cmd, logs.join(format!("{name}.log"))).expect("spawn")
    };
    let _dns = spawn("onebox-dns");
    let mut app_server = spawn("onebox-app");
    let _edge = spawn("onebox-edge");

    let dig = |args: &[&str]| {
        let out = Command::new("dig")
            .args([
                "+short",
                "+time=1",
                "+tries=1",
                "@127.0.0.1",
                "-p",
                &dns.to_string(),
            ])
            .args(args)
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // dig +short prints its errors on standard output too: wait for the SOA itself.
    wait_until(20, "onebox-dns answers", || {
        dig(&["example.test", "SOA"]).contains("hostmaster")
    });
    assert_eq!(dig(&["www.example.test", "A"]), "192.0.2.10");
    assert_eq!(dig(&["ns2.example.test", "AAAA"]), "2001:db8::10");
    assert_eq!(dig(&["example.test", "MX"]), "0 .");
    // Signed: www's A comes with its RRSIG (algorithm 13), the apex has a KSK and a ZSK.
    let signed = dig(&["+dnssec", "www.example.test", "A"]);
    assert!(
        signed.lines().any(|l| l.starts_with("A 13 3 ")),
        "an RRSIG with the A record: {signed}"
    );
    let keys = dig(&["example.test", "DNSKEY"]);
    let mut flags: Vec<&str> = keys.lines().filter_map(|l| l.split(' ').next()).collect();
    flags.sort_unstable();
    assert_eq!(flags, ["256", "257"], "{keys}");

    let curl = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--resolve")
            .arg(format!("www.example.test:{https}:127.0.0.1"))
            .arg(format!("https://www.example.test:{https}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wait_until(30, "the edge serves the app's home page", || {
        curl("/") == "200"
    });

    let status = |json: bool| {
        let mut cmd = onebox();
        cmd.args(["status", "--config"]).arg(&site);
        if json {
            cmd.arg("--json");
        }
        run(&mut cmd)
    };
    let out = status(true);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["zones"][0]["name"], "example.test");
    assert!(
        report["zones"][0]["serial"]["ok"].as_u64().is_some(),
        "{report:#}"
    );
    let days = report["certificate"]["ok"]["days_left"]
        .as_i64()
        .expect("days_left");
    assert!(days > 0, "{report:#}");
    assert!(
        report["certificate"]["ok"]["subject"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(report["database"]["ok"].is_string(), "{report:#}");

    // A second provision changes nothing, and the admin keeps the first password.
    let out = provision();
    assert!(out.status.success(), "{}", text(&out));
    let again = String::from_utf8_lossy(&out.stdout);
    assert!(!again.contains("wrote"), "{again}");
    assert_eq!(
        std::fs::read_to_string(&password_file)
            .expect("password")
            .trim(),
        password
    );

    // The app goes down: status says so and fails.
    app_server.kill();
    let out = status(false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("DOWN onebox-app"),
        "status did not see the app down:\n{human}"
    );
}

/// The image's first boot: `--no-admin-password` provisions everything but the first admin
/// password (the app serves, and nobody can log in as admin); `--admin-password-only`, run once
/// the app serves, sets it and writes nothing else; the admin then logs in with it.
#[test]
fn the_admin_password_can_come_after_the_services_start() {
    let mariadb = MariaDb::start().expect("MariaDB");
    let dir = onebox_testkit::temp_dir("provision-later");
    let root = dir.path().join("root");
    let app = free_port();
    let ud = app_user_data(dir.path(), app);
    std::fs::create_dir_all(root.join("run/mysqld")).expect("mkdir");
    std::os::unix::fs::symlink(mariadb.socket(), root.join("run/mysqld/mysqld.sock"))
        .expect("socket link");
    let provision = |flag: &str| {
        run(onebox()
            .args(["provision", flag, "--user-data"])
            .arg(&ud)
            .arg("--root")
            .arg(&root)
            .arg("--app-bin")
            .arg(bin("onebox-app")))
    };
    let password_file = root.join("root/onebox-admin-password");

    let out = provision("--no-admin-password");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--admin-password-only"),
        "{}",
        text(&out)
    );
    assert!(!password_file.exists(), "no admin password yet");
    let before = tree(&root);

    let site = root.join("etc/onebox/site.toml");
    let mut cmd = Command::new(bin("onebox-app"));
    cmd.arg("--config").arg(&site);
    let _app = ChildGuard::spawn(cmd, dir.path().join("onebox-app.log")).expect("spawn");
    let api = Api::new(app, dir.path());
    let login = |password: &str| api.login_status(password);
    // The app serves (its migrations applied) without an admin account: no login.
    wait_until(30, "the app answers a login", || {
        matches!(login("not-the-password"), 401 | 403)
    });

    let out = provision("--admin-password-only");
    assert!(out.status.success(), "{}", text(&out));
    let password = generated_password(&password_file, &text(&out));
    let password = password.as_str();
    // Nothing else was written: the tree is the same but for the password file and its directory.
    let after: Vec<_> = tree(&root)
        .into_iter()
        .filter(|(p, _, _)| p != &password_file && p != &root.join("root"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _, _)| p != &root.join("root"))
        .collect();
    assert_eq!(after, before);
    assert_eq!(
        login(password),
        200,
        "the admin logs in with the first password"
    );

    // Run again: the admin account is kept, and so is its password.
    let out = provision("--admin-password-only");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&password_file)
            .expect("password")
            .trim(),
        password
    );
}

/// The image's first boot in three steps: `--files-only` writes every file while MariaDB is not
/// up yet (onebox-dns and onebox-edge start from them) and does not wait for it;
/// `--database-only`, started before MariaDB too, waits for it, makes the database and writes
/// nothing; the app then serves from it. `--database-only` before any site file exists is an
/// error naming it.
#[test]
fn the_first_boot_writes_the_files_before_the_database_is_up() {
    let dir = onebox_testkit::temp_dir("provision-split");
    let root = dir.path().join("root");
    let app = free_port();
    let ud = app_user_data(dir.path(), app);
    let command = |flag: &str| {
        let mut cmd = onebox();
        cmd.args(["provision", flag, "--user-data"])
            .arg(&ud)
            .arg("--root")
            .arg(&root);
        cmd
    };
    let provision = |flag: &str| run(&mut command(flag));
    let site = root.join("etc/onebox/site.toml");

    let out = provision("--database-only");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--files-only") && text(&out).contains("site.toml"),
        "{}",
        text(&out)
    );
    assert!(!site.exists(), "--database-only wrote the site file");

    // No MariaDB to reach (its socket does not exist): the files are written all the same, at once.
    let started = std::time::Instant::now();
    let out = provision("--files-only");
    assert!(out.status.success(), "{}", text(&out));
    println!(
        "--files-only without MariaDB: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--database-only"),
        "{}",
        text(&out)
    );
    assert!(site.exists(), "the site file");
    assert!(
        root.join("etc/onebox/zones/example.test.zone").exists(),
        "the zone"
    );

    // --database-only starts before MariaDB (as at first boot, where it is not ordered after it).
    let before = tree(&root);
    let waiting = command("--database-only")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn provision");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mariadb = MariaDb::start().expect("MariaDB");
    std::fs::create_dir_all(root.join("run/mysqld")).expect("mkdir");
    std::os::unix::fs::symlink(mariadb.socket(), root.join("run/mysqld/mysqld.sock"))
        .expect("socket link");
    let out = waiting.wait_with_output().expect("provision");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for MariaDB"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("database `onebox`"),
        "{}",
        text(&out)
    );
    let run_dir = root.join("run");
    let after: Vec<_> = tree(&root)
        .into_iter()
        .filter(|(p, _, _)| !p.starts_with(&run_dir))
        .collect();
    assert_eq!(after, before, "--database-only wrote a file");

    // The app's migrations need the database: it serves, without an admin account yet.
    let mut cmd = Command::new(bin("onebox-app"));
    cmd.arg("--config").arg(&site);
    let _app = ChildGuard::spawn(cmd, dir.path().join("onebox-app.log")).expect("spawn");
    wait_until(30, "the app answers a login", || {
        matches!(
            Api::new(app, dir.path()).login_status("not-the-password"),
            401 | 403
        )
    });
}

/// Secondaries from the user-data are sent NOTIFY and may transfer the generated zone, with
/// their TSIG key when they name one; a key no [[dns.tsig]] defines is an error naming it; zone
/// files the user gives are not signed unless the user-data says so.
#[test]
fn secondaries_get_notify_and_transfer_with_their_keys() {
    let dir = onebox_testkit::temp_dir("provision-secondaries");
    let provision = |name: &str, yaml: &str| {
        let ud = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&ud, format!("#cloud-config\nonebox:\n{yaml}")).expect("write");
        let root = dir.path().join(name);
        let out = run(onebox()
            .args(["provision", "--no-database", "--user-data"])
            .arg(&ud)
            .arg("--root")
            .arg(&root));
        (out, root)
    };
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"; // base64 of 27 bytes
    let (out, root) = provision(
        "keys",
        &format!(
            "  domain: example.test\n  public_ipv4: 192.0.2.10\n  allow_transfer: [192.0.2.99]\n  \
             secondaries:\n    - name: ns.one.example\n      address: 192.0.2.53\n    \
             - name: ns.two.example\n      address: 2001:db8::53\n      key: xfr-key\n  \
             settings:\n    dns:\n      tsig:\n        - name: xfr-key\n          secret: \"{secret}\"\n"
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let site = onebox_site::load(&root.join("etc/onebox/site.toml")).expect("the site file parses");
    assert_eq!(site.dns.zone.len(), 1);
    let zone = &site.dns.zone[0];
    assert_eq!(zone.name.as_str(), "example.test");
    assert!(zone.dnssec, "the generated zone is signed");
    let shown = |v: Vec<String>| v;
    assert_eq!(
        shown(zone.notify.iter().map(ToString::to_string).collect()),
        ["192.0.2.53:53", "[2001:db8::53]:53 key xfr-key"]
    );
    assert_eq!(
        shown(
            zone.allow_transfer
                .iter()
                .map(ToString::to_string)
                .collect()
        ),
        ["192.0.2.99", "192.0.2.53", "2001:db8::53 key xfr-key"]
    );
    let zone_text =
        std::fs::read_to_string(root.join("etc/onebox/zones/example.test.zone")).expect("zone");
    for ns in ["ns.one.example.", "ns.two.example."] {
        assert!(zone_text.contains(ns), "{ns} missing:\n{zone_text}");
    }

    // A key that no [[dns.tsig]] defines: exit 2, naming the secondary's key, nothing written.
    let (out, root) = provision(
        "nokey",
        "  domain: example.test\n  public_ipv4: 192.0.2.10\n  secondaries:\n    \
         - name: ns.one.example\n      address: 192.0.2.53\n      key: missing-key\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("onebox.secondaries[0].key") && err.contains("missing-key"),
        "{err}"
    );
    assert!(!root.exists());

    // A zone file the user gives keeps what the user-data says: not signed by default, signed
    // with `dnssec: true`.
    let given = "  domain: example.test\n  zones:\n    example.test.zone: |\n      \
         $ORIGIN example.test.\n      @ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n      \
         @ 300 IN NS ns1\n      ns1 300 IN A 192.0.2.1\n";
    for (name, extra, signed) in [
        ("given", "", false),
        ("given-signed", "  dnssec: true\n", true),
    ] {
        let (out, root) = provision(name, &format!("{given}{extra}"));
        assert!(out.status.success(), "{}", text(&out));
        let site =
            onebox_site::load(&root.join("etc/onebox/site.toml")).expect("the site file parses");
        assert_eq!(
            site.dns.zone.iter().any(|z| z.dnssec),
            signed,
            "{name}: {:?}",
            site.dns.zone
        );
    }
}
