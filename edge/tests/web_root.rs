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
