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
    let onebox = env!("CARGO_BIN_EXE_onebox");
    if std::fs::hard_link(onebox, &path).is_err() {
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
