//! `onebox doctor` on a healthy and a broken site, against a "parent zone" served by a second
//! onebox-dns on loopback (its delegation, glue and DS for the site), and its alerts to a local
//! webhook receiver and a real SMTP server (Debian's aiosmtpd): one message per problem, none
//! again while it lasts, one when it is fixed. Nothing leaves the machine.
#![allow(clippy::panic)]

mod common;
use common::{bin, onebox, text};

use onebox_testkit::{ChildGuard, MariaDb, free_port, wait_until};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// A webhook receiver: every POST body, answered 204.
fn webhook() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let store = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice(&body)
            {
                store.lock().expect("lock").push(v);
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

fn events(v: &serde_json::Value) -> Vec<(String, String)> {
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["check"].as_str().expect("check").to_string(),
                e["state"].as_str().expect("state").to_string(),
            )
        })
        .collect()
}

const DOMAIN: &str = "shop.example.test";

/// The parent zone `example.test` at `serial`, delegating the site with `glue` and `ds` (zone-file
/// lines). A changed zone needs a higher serial: onebox-dns keeps the old zone otherwise.
fn parent_zone(dir: &Path, serial: u32, glue: &str, ds: &str) {
    std::fs::write(
        dir.join("example.test.zone"),
        format!(
            "$ORIGIN example.test.\n$TTL 300\n@ SOA ns.example.test. host.example.test. {serial} 3600 600 86400 300\n@ NS ns.example.test.\nns A 127.0.0.1\nshop NS ns1.shop.example.test.\nshop NS ns2.shop.example.test.\nns1.shop A {glue}\nns2.shop A {glue}\n{ds}\n"
        ),
    )
    .expect("parent zone");
}

#[test]
fn doctor_sees_healthy_and_broken_and_alerts_once_per_problem_and_fix() {
    let mariadb = MariaDb::start().expect("MariaDB");
    let dir = onebox_testkit::temp_dir("doctor");
    let root = dir.path().join("root");
    let (dns, http, https, metrics, app, parent, smtp) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let (hook, posts) = webhook();
    let ud = dir.path().join("user-data.yaml");
    std::fs::write(
        &ud,
        format!(
            "#cloud-config\nonebox:\n  domain: {DOMAIN}\n  public_ipv4: 192.0.2.10\n  alerts:\n    webhook: http://127.0.0.1:{hook}/hook\n    email_to: [ops@example.test]\n    email_from: onebox@example.test\n    smtp_relay: 127.0.0.1:{smtp}\n    smtp_tls: none\n  settings:\n    dns:\n      listen: [\"127.0.0.1:{dns}\"]\n      zone:\n        - name: {DOMAIN}\n          dnssec: true\n    edge:\n      http_listen: 127.0.0.1:{http}\n      https_listen: 127.0.0.1:{https}\n      metrics_listen: 127.0.0.1:{metrics}\n      acme:\n        ca: \"off\"\n      upstream:\n        servers: [\"127.0.0.1:{app}\"]\n        health_interval_secs: 1\n    app:\n      listen: 127.0.0.1:{app}\n"
        ),
    )
    .expect("user-data");
    std::fs::create_dir_all(root.join("run/mysqld")).expect("mkdir");
    std::os::unix::fs::symlink(mariadb.socket(), root.join("run/mysqld/mysqld.sock"))
        .expect("socket link");
    let out = onebox()
        .args(["provision", "--user-data"])
        .arg(&ud)
        .arg("--root")
        .arg(&root)
        .arg("--app-bin")
        .arg(bin("onebox-app"))
        .output()
        .expect("provision");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/onebox/alerts/webhook_url")).expect("webhook file"),
        format!("http://127.0.0.1:{hook}/hook\n")
    );
    let site_text = std::fs::read_to_string(root.join("etc/onebox/site.toml")).expect("site");
    assert!(
        !site_text.contains(&hook.to_string()),
        "the webhook URL is in the site file"
    );

    let site = root.join("etc/onebox/site.toml");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let spawn = |name: &str, tag: &str| {
        let mut cmd = Command::new(bin(name));
        cmd.arg("--config").arg(&site);
        ChildGuard::spawn(cmd, logs.join(format!("{name}-{tag}.log"))).expect("spawn")
    };
    let _dns = spawn("onebox-dns", "1");
    let mut app_server = spawn("onebox-app", "1");
    let _edge = spawn("onebox-edge", "1");
    let mut smtp_cmd = Command::new("/usr/bin/python3");
    smtp_cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{smtp}")]);
    let smtp_server = ChildGuard::spawn(smtp_cmd, logs.join("smtp.log")).expect("aiosmtpd");
    let mails = || {
        std::fs::read_to_string(smtp_server.log_path())
            .unwrap_or_default()
            .matches("---------- MESSAGE FOLLOWS ----------")
            .count()
    };

    // The parent zone, with the DS of the box's key.
    wait_until(30, "the signed zone", || {
        Command::new(bin("onebox-dns"))
            .arg("--config")
            .arg(&site)
            .args(["ds", DOMAIN])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let ds_out = Command::new(bin("onebox-dns"))
        .arg("--config")
        .arg(&site)
        .args(["ds", DOMAIN])
        .output()
        .expect("ds");
    let ds_line = String::from_utf8_lossy(&ds_out.stdout)
        .lines()
        .find(|l| !l.starts_with(';') && l.contains(" IN DS "))
        .map(|l| l.split_once(" IN DS ").expect("DS").1.to_string())
        .expect("a DS line");
    let good_ds = format!("shop DS {ds_line}");
    // The same key tag and algorithm, another digest (its last hex digit changed).
    let bad_digest = {
        let mut d = ds_line.trim_end().to_string();
        let last = if d.ends_with('0') { '1' } else { '0' };
        d.pop();
        d.push(last);
        d
    };
    let bad_ds = format!("shop DS {bad_digest}");
    let parent_dir = dir.path().join("parent");
    std::fs::create_dir_all(&parent_dir).expect("mkdir");
    parent_zone(&parent_dir, 1, "192.0.2.10", &good_ds);
    let mut parent_cmd = Command::new(bin("onebox-dns"));
    parent_cmd
        .arg("--listen")
        .arg(format!("127.0.0.1:{parent}"))
        .arg("--zones")
        .arg(&parent_dir);
    let mut parent_dns = ChildGuard::spawn(parent_cmd, logs.join("parent.log")).expect("parent");
    wait_until(20, "the parent zone", || {
        Command::new("dig")
            .args([
                "+short",
                "+time=1",
                "+tries=1",
                "@127.0.0.1",
                "-p",
                &parent.to_string(),
                "example.test",
                "SOA",
            ])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty())
    });

    let doctor = |extra: &[&str]| {
        let mut cmd = onebox();
        cmd.args(["doctor", "--root"]).arg(&root).args(extra);
        let out = cmd.output().expect("doctor");
        let report: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
        (out, report)
    };
    let status_of = |r: &serde_json::Value, name: &str| -> String {
        r["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().expect("status").to_string())
            .unwrap_or_else(|| panic!("no check {name}: {r:#}"))
    };
    let parent_arg = format!("127.0.0.1:{parent}");

    // Healthy (a backup taken, the app answering): exit 0, nothing to send.
    let out = onebox()
        .args(["backup", "--root"])
        .arg(&root)
        .output()
        .expect("backup");
    assert!(out.status.success(), "{}", text(&out));
    wait_until(30, "the app behind the edge", || {
        doctor(&["--json", "--parent", &parent_arg])
            .0
            .status
            .success()
    });
    let (out, report) = doctor(&["--json", "--alert", "--parent", &parent_arg]);
    let report = report.unwrap_or_else(|| panic!("{}", text(&out)));
    assert!(out.status.success(), "{report:#}");
    for (name, want) in [
        ("dns.parent", "ok"),
        ("dns.ds", "ok"),
        ("dns.address", "ok"),
        ("dns.ns", "warn"),
        ("backup", "ok"),
        ("service.onebox-app", "ok"),
        ("service.database", "ok"),
        ("certificate", "warn"),
        ("edge.memory", "ok"),
    ] {
        assert_eq!(status_of(&report, name), want, "{name}: {report:#}");
    }
    println!(
        "healthy:\n{}",
        String::from_utf8_lossy(&doctor(&["--parent", &parent_arg]).0.stdout)
    );
    assert!(posts.lock().expect("lock").is_empty());

    // Offline: the parent cannot be asked; doctor says so and does not fail over it.
    let closed = free_port();
    let (_, report) = doctor(&["--json", "--resolver", &format!("127.0.0.1:{closed}")]);
    let report = report.expect("json");
    assert_eq!(status_of(&report, "dns.parent"), "unknown", "{report:#}");

    // Broken: the app is down, the backup fails, the parent's DS matches no key and its glue is
    // wrong.
    app_server.kill();
    let password = root.join("etc/onebox/backup/password");
    let right = std::fs::read_to_string(&password).expect("password");
    std::fs::write(&password, "not the password\n").expect("write");
    let out = onebox()
        .args(["backup", "--root"])
        .arg(&root)
        .output()
        .expect("backup");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    parent_zone(&parent_dir, 2, "192.0.2.99", &bad_ds);
    parent_dns.signal(onebox_testkit::Signal::HUP).expect("HUP");
    wait_until(20, "the parent's new glue", || {
        Command::new("dig")
            .args([
                "+noall",
                "+additional",
                "+norecurse",
                "+time=1",
                "+tries=1",
                "@127.0.0.1",
                "-p",
                &parent.to_string(),
                "shop.example.test",
                "NS",
            ])
            .output()
            // The glue comes with the referral, in the additional section.
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("192.0.2.99"))
    });
    let (out, report) = doctor(&["--json", "--alert", "--parent", &parent_arg]);
    let report = report.unwrap_or_else(|| panic!("{}", text(&out)));
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    for name in ["service.onebox-app", "backup", "dns.ds", "dns.parent"] {
        assert_eq!(status_of(&report, name), "fail", "{name}: {report:#}");
    }
    println!(
        "broken:\n{}",
        String::from_utf8_lossy(&doctor(&["--parent", &parent_arg]).0.stdout)
    );
    wait_until(20, "the alert e-mail", || mails() == 1);
    {
        let got = posts.lock().expect("lock");
        assert_eq!(got.len(), 1, "{got:#?}");
        let mut ev = events(&got[0]);
        ev.sort();
        assert_eq!(
            ev,
            [
                ("backup".to_string(), "problem".to_string()),
                ("dns.ds".into(), "problem".into()),
                ("dns.parent".into(), "problem".into()),
                ("service.onebox-app".into(), "problem".into()),
            ]
        );
        assert_eq!(got[0]["domain"], DOMAIN);
    }
    let mail = std::fs::read_to_string(smtp_server.log_path()).expect("smtp log");
    assert!(
        mail.contains("PROBLEM") && mail.contains("service.onebox-app"),
        "{mail}"
    );

    // Still broken: nothing sent again.
    let (out, _) = doctor(&["--json", "--alert", "--parent", &parent_arg]);
    assert_eq!(out.status.code(), Some(1));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        posts.lock().expect("lock").len(),
        1,
        "a problem was sent twice"
    );
    assert_eq!(mails(), 1, "a problem was mailed twice");

    // Fixed: once, as fixed.
    std::fs::write(&password, right).expect("write");
    let out = onebox()
        .args(["backup", "--root"])
        .arg(&root)
        .output()
        .expect("backup");
    assert!(out.status.success(), "{}", text(&out));
    parent_zone(&parent_dir, 3, "192.0.2.10", &good_ds);
    parent_dns.signal(onebox_testkit::Signal::HUP).expect("HUP");
    let _app = spawn("onebox-app", "2");
    wait_until(30, "healthy again", || {
        doctor(&["--json", "--parent", &parent_arg])
            .0
            .status
            .success()
    });
    let (out, report) = doctor(&["--json", "--alert", "--parent", &parent_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let report = report.expect("json");
    assert_eq!(
        report["alerts"]["channels"],
        serde_json::json!(["webhook", "email"]),
        "{report:#}"
    );
    wait_until(20, "the fixed e-mail", || mails() == 2);
    let got = posts.lock().expect("lock");
    assert_eq!(got.len(), 2);
    let mut ev = events(&got[1]);
    ev.sort();
    assert_eq!(
        ev,
        [
            ("backup".to_string(), "fixed".to_string()),
            ("dns.ds".into(), "fixed".into()),
            ("dns.parent".into(), "fixed".into()),
            ("service.onebox-app".into(), "fixed".into()),
        ]
    );
}
