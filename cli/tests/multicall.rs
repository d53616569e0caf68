//! The image's one binary for four programs: `onebox` started through a hard link named
//! onebox-dns, onebox-edge or onebox-app runs that program, and is the `onebox` command under
//! any other name.
#![allow(clippy::panic)]

mod common;
use common::text;

use std::path::{Path, PathBuf};
use std::process::Command;

/// `onebox` linked into `dir` as `name` (a copy where the directory cannot hold a hard link to
/// it: the name is what matters).
fn linked(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let onebox = common::onebox_path();
    if std::fs::hard_link(&onebox, &path).is_err() {
        std::fs::copy(onebox, &path).expect("copy onebox");
    }
    path
}

#[test]
fn each_name_runs_its_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, runs) in [
        ("onebox", "onebox"),
        ("onebox-dns", "onebox-dns"),
        ("onebox-edge", "onebox-edge"),
        ("onebox-app", "onebox-app"),
        ("onebox-other", "onebox"),
    ] {
        let out = Command::new(linked(dir.path(), name))
            .arg("--version")
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.split_whitespace().next() == Some(runs),
            "started as {name}, expected {runs}'s --version: {}",
            text(&out)
        );
    }
}

#[test]
fn started_as_the_edge_it_checks_a_site_file_as_the_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        "[site]\ndomain = \"example.test\"\nno_such_key = 1\n",
    )
    .expect("write");
    let out = Command::new(linked(dir.path(), "onebox-edge"))
        .arg("--config")
        .arg(&site)
        .arg("check")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2)
            && stderr.starts_with("onebox-edge: ")
            && stderr.contains(&format!("{}:3:", site.display())),
        "onebox-edge check of a bad site file: {}",
        text(&out)
    );
}

/// Started as onebox-dns, the binary runs without transparent huge pages (its `/proc` status
/// says `THP_enabled: 0`), as every program of it does: mimalloc's arenas in 2 MiB pages cost
/// onebox-dns 11 MiB of its 26.
#[test]
fn its_programs_run_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).expect("mkdir");
    let zone = concat!(env!("CARGO_MANIFEST_DIR"), "/../zones/foobar.com.zone");
    std::fs::copy(zone, zones.join("foobar.com.zone")).expect("copy the zone");
    let site = dir.path().join("site.toml");
    std::fs::write(&site, "[site]\ndomain = \"foobar.com\"\n").expect("write");
    let log = dir.path().join("dns.log");
    let mut dns = Command::new(linked(dir.path(), "onebox-dns"))
        .args(["--listen", "127.0.0.1:0", "--zones"])
        .arg(&zones)
        .arg("--config")
        .arg(&site)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start onebox-dns");
    for _ in 0..200 {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        if log.contains("listening on") || dns.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", dns.id())).unwrap_or_default();
    let _ = dns.kill();
    let _ = dns.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains("listening on"),
        "onebox-dns did not start; its log:\n{log}"
    );
    assert!(
        status.lines().any(|l| l == "THP_enabled:\t0"),
        "onebox-dns may get transparent huge pages:\n{status}"
    );
}

/// Started as onebox-edge, the binary on an AMD processor serves with glibc's `rep movsb` and
/// `rep stosb` thresholds beyond any size, as the edge itself does (`onebox_edge::memcpy`: it
/// starts itself again in place with them, its name and so the program kept, and says so in
/// its log).
#[test]
fn started_as_the_edge_it_copies_as_the_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = onebox_testkit::free_port;
    let (http, https, metrics) = (port(), port(), port());
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[site]\ndomain = \"example.test\"\n\n[edge]\nhttp_listen = \"127.0.0.1:{http}\"\nhttps_listen = \"127.0.0.1:{https}\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\nweb_root = \"{}\"\nstate_dir = \"{}\"\nthreads = 1\n\n[edge.upstream]\nservers = [\"127.0.0.1:{}\"]\n\n[edge.acme]\nca = \"off\"\n",
            dir.path().display(),
            dir.path().join("state").display(),
            port()
        ),
    )
    .expect("write");
    let log = dir.path().join("edge.log");
    let mut edge = Command::new(linked(dir.path(), "onebox-edge"))
        .arg("--config")
        .arg(&site)
        .env_remove("GLIBC_TUNABLES")
        .env_remove(onebox_edge::memcpy::STARTED_AGAIN)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start onebox-edge");
    let listening = onebox_testkit::try_wait_until(
        std::time::Duration::from_secs(20),
        "onebox-edge to listen",
        || std::net::TcpStream::connect(("127.0.0.1", http)).is_ok(),
    );
    let _ = edge.kill();
    let _ = edge.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        listening.is_ok(),
        "onebox-edge did not start; its log:\n{log}"
    );
    let said = format!(
        "glibc copies with vector loops on this AMD processor, not rep movsb (GLIBC_TUNABLES={})",
        onebox_edge::memcpy::TUNABLES
    );
    assert_eq!(
        log.contains(&said),
        onebox_edge::memcpy::amd_processor(),
        "{said:?} in onebox-edge's log:\n{log}"
    );
}
