//! A web root that is a symlink to a release directory (what `onebox publish` makes): the edge
//! serves the release the symlink names at each request, so swapping the symlink publishes.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;

#[test]
fn a_swapped_web_root_symlink_is_served_from_the_next_request() {
    let upstream = Upstream::start();
    let site = Site::new(Ports::new(), upstream.port, "\n[edge.acme]\nca = \"off\"\n");
    let www = site.www();
    std::fs::remove_dir_all(&www).unwrap();
    for (release, text) in [("r1", "old site\n"), ("r2", "new site\n")] {
        let dir = site.path(&format!("releases/{release}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("page.html"), text).unwrap();
    }
    std::os::unix::fs::symlink("releases/r1", &www).unwrap();
    let _edge = site.start_edge("edge.log");
    let page = || {
        let out = site.curl(&["-k", &site.https("/page.html")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(page(), "old site\n");
    // The swap `onebox publish` makes: a new symlink renamed over the old one.
    std::os::unix::fs::symlink("releases/r2", site.path("www.new")).unwrap();
    std::fs::rename(site.path("www.new"), &www).unwrap();
    assert_eq!(
        page(),
        "new site\n",
        "the edge still serves the old release"
    );
    // And back (a rollback).
    std::os::unix::fs::symlink("releases/r1", site.path("www.new")).unwrap();
    std::fs::rename(site.path("www.new"), &www).unwrap();
    assert_eq!(page(), "old site\n");
}

#[test]
fn a_path_only_the_new_release_has_is_served_at_once_and_proxied_again_after_a_rollback() {
    let upstream = Upstream::start();
    let site = Site::new(Ports::new(), upstream.port, "\n[edge.acme]\nca = \"off\"\n");
    let www = site.www();
    std::fs::remove_dir_all(&www).unwrap();
    std::fs::create_dir_all(site.path("releases/r1")).unwrap();
    let r2 = site.path("releases/r2");
    std::fs::create_dir_all(r2.join("docs")).unwrap();
    std::fs::write(r2.join("new.html"), "only in r2\n").unwrap();
    std::fs::write(r2.join("docs/a.txt"), "a doc of r2\n").unwrap();
    std::os::unix::fs::symlink("releases/r1", &www).unwrap();
    let _edge = site.start_edge("edge.log");
    let get = |path: &str| {
        let out = site.curl(&["-k", &site.https(path)]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let swap = |to: &str| {
        std::os::unix::fs::symlink(to, site.path("www.new")).unwrap();
        std::fs::rename(site.path("www.new"), &www).unwrap();
    };
    // Not in r1: the app answers (the test upstream echoes the request).
    for path in ["/new.html", "/docs/a.txt"] {
        assert!(get(path).starts_with("upstream saw:"), "{path} not proxied");
    }
    swap("releases/r2");
    assert_eq!(get("/new.html"), "only in r2\n");
    assert_eq!(get("/docs/a.txt"), "a doc of r2\n");
    swap("releases/r1");
    for path in ["/new.html", "/docs/a.txt"] {
        let got = get(path);
        assert!(
            got.starts_with("upstream saw:"),
            "{path} not proxied after the rollback: {got}"
        );
    }
    // A dotfile or an escape is refused, never proxied, whatever the first segment.
    for path in ["/.env", "/missing/../new.html", "/missing/%2e%2e/x"] {
        let out = site.curl(&[
            "-k",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &site.https(path),
        ]);
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(status == "404" || status == "400", "{path}: {status}");
    }
}
