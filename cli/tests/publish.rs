//! `onebox publish DIR` and `--rollback` under load through a real onebox-edge: every answer is
//! entirely one release's file, none is missing, and the edge serves each new release at once.
#![allow(clippy::panic)]

mod common;
use common::{bin, onebox, text};

use onebox_testkit::{ChildGuard, free_port, wait_until};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const FILES: usize = 40;

/// File `i` of release `v`: its name says which file, its text which release, and it is large
/// enough that copying a release takes a while.
fn body(v: &str, i: usize) -> String {
    format!("{v}:{i}:{}\n", v.repeat(8 * 1024))
}

fn release(dir: &Path, v: &str) -> PathBuf {
    let out = dir.join(format!("site-{v}"));
    std::fs::create_dir_all(out.join("sub")).expect("mkdir");
    for i in 0..FILES {
        std::fs::write(out.join(format!("sub/f{i}.html")), body(v, i)).expect("write");
    }
    std::fs::write(out.join("index.html"), body(v, 999)).expect("write");
    out
}

#[test]
fn publish_and_rollback_under_load_serve_whole_releases() {
    let dir = onebox_testkit::temp_dir("publish");
    let root = dir.path().join("root");
    let (http, https, metrics, app) = (free_port(), free_port(), free_port(), free_port());
    let ud = dir.path().join("user-data.yaml");
    std::fs::write(
        &ud,
        format!(
            "#cloud-config\nonebox:\n  domain: example.test\n  public_ipv4: 192.0.2.10\n  settings:\n    edge:\n      http_listen: 127.0.0.1:{http}\n      https_listen: 127.0.0.1:{https}\n      metrics_listen: 127.0.0.1:{metrics}\n      access_log: \"off\"\n      acme:\n        ca: \"off\"\n      upstream:\n        servers: [\"127.0.0.1:{app}\"]\n"
        ),
    )
    .expect("user-data");
    let out = onebox()
        .args(["provision", "--no-database", "--user-data"])
        .arg(&ud)
        .arg("--root")
        .arg(&root)
        .output()
        .expect("provision");
    assert!(out.status.success(), "{}", text(&out));
    let site = root.join("etc/onebox/site.toml");
    let publish = |args: &[&str]| {
        let out = onebox()
            .arg("publish")
            .args(args)
            .arg("--root")
            .arg(&root)
            .output()
            .expect("publish");
        assert!(out.status.success(), "{}", text(&out));
        out
    };
    let v1 = release(dir.path(), "a");
    publish(&[v1.to_str().expect("utf-8")]);
    let web_root = root.join("var/www/onebox");
    assert!(
        std::fs::symlink_metadata(&web_root)
            .expect("web root")
            .file_type()
            .is_symlink(),
        "the web root is a symlink to the release"
    );

    let mut cmd = Command::new(bin("onebox-edge"));
    cmd.arg("--config").arg(&site);
    let _edge = ChildGuard::spawn(cmd, dir.path().join("edge.log")).expect("edge");
    let get = move |path: &str| -> (u16, String) {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "10",
                "-w",
                "\n%{http_code}",
                "--resolve",
            ])
            .arg(format!("www.example.test:{https}:127.0.0.1"))
            .arg(format!("https://www.example.test:{https}{path}"))
            .output()
            .expect("curl");
        let t = String::from_utf8_lossy(&out.stdout).to_string();
        let (b, code) = t.rsplit_once('\n').unwrap_or(("", "0"));
        (code.parse().unwrap_or(0), b.to_string())
    };
    wait_until(20, "the edge serves release a", || {
        get("/") == (200, body("a", 999))
    });

    // Four clients fetch files while releases b and c are published and rolled back.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(usize, u16, String)>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, answers) = (stop.clone(), answers.clone());
            std::thread::spawn(move || {
                for n in 0..3000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = (c * 7 + n) % FILES;
                    let (code, b) = get(&format!("/sub/f{i}.html"));
                    answers.lock().expect("lock").push((i, code, b));
                }
            })
        })
        .collect();
    let seen = |v: &str| {
        let answers = answers.clone();
        let v = v.to_string();
        move || {
            answers
                .lock()
                .expect("lock")
                .iter()
                .rev()
                .take(8)
                .any(|(i, _, b)| *b == body(&v, *i))
        }
    };
    wait_until(30, "answers from release a", seen("a"));
    let v2 = release(dir.path(), "b");
    publish(&[v2.to_str().expect("utf-8")]);
    wait_until(30, "answers from release b", seen("b"));
    let v3 = release(dir.path(), "c");
    publish(&[v3.to_str().expect("utf-8")]);
    wait_until(30, "answers from release c", seen("c"));
    let out = publish(&["--rollback"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("now serves release"));
    wait_until(30, "answers from release b again", seen("b"));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }

    let answers = answers.lock().expect("lock");
    let mut bad = Vec::new();
    for (i, code, b) in answers.iter() {
        let whole = ["a", "b", "c"].iter().any(|v| *b == body(v, *i));
        if *code != 200 || !whole {
            bad.push(format!("f{i}: {code} {:.40}", b));
        }
    }
    println!(
        "{} answers under load, {} not a whole release's file",
        answers.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{} of {} answers were not whole: {:?}",
        bad.len(),
        answers.len(),
        &bad[..bad.len().min(5)]
    );

    // The first publish kept the provisioned directory as the oldest release; --keep prunes.
    let releases = root.join("var/www/onebox-releases");
    let count = || std::fs::read_dir(&releases).expect("ls").count();
    assert_eq!(count(), 4, "initial, a, b, c");
    publish(&[v1.to_str().expect("utf-8"), "--keep", "2"]);
    assert_eq!(count(), 2);
    assert_eq!(get("/sub/f1.html"), (200, body("a", 1)));
}
