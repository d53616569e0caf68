//! The small-file cache against the real binary and real files: a cached file is served from
//! memory, and every change on disk (a file replaced, deleted, a sibling added, the web root
//! switched by a publish, a symlink swapped to leave the root) is seen by the very next request.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// An edge whose web root is `www -> releases/r1` (as `onebox publish` makes it).
struct Published {
    site: Site,
    _upstream: Upstream,
    _edge: Proc,
}

impl Published {
    fn start(files: &[(&str, &str)]) -> Published {
        let upstream = Upstream::start();
        let site = Site::new(Ports::new(), upstream.port, "\n[edge.acme]\nca = \"off\"\n");
        std::fs::remove_dir_all(site.www()).unwrap();
        let r1 = site.path("releases/r1");
        std::fs::create_dir_all(&r1).unwrap();
        for (name, text) in files {
            std::fs::write(r1.join(name), text).unwrap();
        }
        std::os::unix::fs::symlink("releases/r1", site.www()).unwrap();
        let edge = site.start_edge("edge.log");
        Published {
            site,
            _upstream: upstream,
            _edge: edge,
        }
    }

    /// The current release directory.
    fn release(&self, name: &str) -> std::path::PathBuf {
        self.site.path(&format!("releases/{name}"))
    }

    /// `curl -i` of `path` with `headers`: (status, head, body).
    fn get(&self, path: &str, headers: &[&str]) -> (u16, String, String) {
        let url = self.site.https(path);
        let mut args = vec!["-k", "-i", url.as_str()];
        for h in headers {
            args.extend(["-H", h]);
        }
        let out = self.site.curl(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (status_of(&out), head.to_string(), body.to_string())
    }

    fn body(&self, path: &str) -> String {
        self.get(path, &[]).2
    }

    fn hits(&self) -> f64 {
        metric(&self.site.metrics(), "onebox_edge_static_cache_hits_total")
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Writes `text` to a new file and renames it over `path` (a new inode), keeping `mtime`.
fn replace(path: &Path, text: &str, mtime: SystemTime) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&staged, path).unwrap();
}

#[test]
fn a_small_file_is_served_from_the_cache() {
    let p = Published::start(&[("page.html", "cached page\n")]);
    assert_eq!(p.body("/page.html"), "cached page\n");
    let before = p.hits();
    for _ in 0..3 {
        let (status, head, body) = p.get("/page.html", &[]);
        assert_eq!((status, body.as_str()), (200, "cached page\n"));
        assert_eq!(header(&head, "content-length"), Some("12"));
        assert_eq!(
            header(&head, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
        assert!(header(&head, "x-request-id").is_some());
    }
    assert_eq!(p.hits() - before, 3.0, "not answered from the cache");
}

#[test]
fn a_file_replaced_with_the_same_size_and_time_is_seen_at_once() {
    let p = Published::start(&[("page.html", "version one\n")]);
    let path = p.release("r1").join("page.html");
    assert_eq!(p.body("/page.html"), "version one\n");
    assert_eq!(p.body("/page.html"), "version one\n");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    replace(&path, "version two\n", mtime);
    assert_eq!(p.body("/page.html"), "version two\n");
    // Rewritten in place, same size, the time set back: the change time still differs.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, "version 3!!\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(p.body("/page.html"), "version 3!!\n");
}

#[test]
fn a_deleted_file_goes_to_the_app_at_once() {
    let p = Published::start(&[("page.html", "soon gone\n")]);
    assert_eq!(p.body("/page.html"), "soon gone\n");
    assert_eq!(p.body("/page.html"), "soon gone\n");
    std::fs::remove_file(p.release("r1").join("page.html")).unwrap();
    let body = p.body("/page.html");
    assert!(
        body.contains("GET /page.html HTTP/1.1"),
        "not sent to the app: {body}"
    );
}

#[test]
fn a_sibling_added_after_it_was_remembered_absent_is_served() {
    let p = Published::start(&[("app.js", "plain js\n")]);
    let gzip = "Accept-Encoding: gzip";
    let (_, head, body) = p.get("/app.js", &[gzip]);
    assert_eq!(body, "plain js\n");
    assert_eq!(header(&head, "vary"), None);
    assert_eq!(p.get("/app.js", &[gzip]).2, "plain js\n");
    std::fs::write(p.release("r1").join("app.js.gz"), "GZIPPED").unwrap();
    let (status, head, body) = p.get("/app.js", &[gzip]);
    assert_eq!((status, body.as_str()), (200, "GZIPPED"));
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
    assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
    // And from the cache, with the identity for a client that takes no gzip.
    let before = p.hits();
    assert_eq!(p.get("/app.js", &[gzip]).2, "GZIPPED");
    let (_, head, body) = p.get("/app.js", &[]);
    assert_eq!(body, "plain js\n");
    assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
    assert_eq!(p.hits() - before, 2.0);
    // The sibling removed: the identity again.
    std::fs::remove_file(p.release("r1").join("app.js.gz")).unwrap();
    assert_eq!(p.get("/app.js", &[gzip]).2, "plain js\n");
}

#[test]
fn a_symlinked_file_sees_a_sibling_added_next_to_its_target() {
    let p = Published::start(&[("real.js", "plain js\n")]);
    let r1 = p.release("r1");
    std::os::unix::fs::symlink("real.js", r1.join("link.js")).unwrap();
    let gzip = "Accept-Encoding: gzip";
    assert_eq!(p.get("/link.js", &[gzip]).2, "plain js\n");
    assert_eq!(p.get("/link.js", &[gzip]).2, "plain js\n");
    // The full path serves the target's sibling: so must the next request.
    std::fs::write(r1.join("real.js.gz"), "GZIPPED").unwrap();
    let (_, head, body) = p.get("/link.js", &[gzip]);
    assert_eq!(body, "GZIPPED");
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
}

#[test]
fn a_publish_is_served_from_the_next_request() {
    let p = Published::start(&[("page.html", "release one\n")]);
    let r2 = p.release("r2");
    std::fs::create_dir_all(&r2).unwrap();
    std::fs::write(r2.join("page.html"), "release two\n").unwrap();
    // The same size and modification time as the cached file.
    let mtime = std::fs::metadata(p.release("r1").join("page.html"))
        .unwrap()
        .modified()
        .unwrap();
    replace(&r2.join("page.html"), "release two\n", mtime);
    assert_eq!(p.body("/page.html"), "release one\n");
    assert_eq!(p.body("/page.html"), "release one\n");
    let swap = |to: &str| {
        std::os::unix::fs::symlink(to, p.site.path("www.new")).unwrap();
        std::fs::rename(p.site.path("www.new"), p.site.www()).unwrap();
    };
    swap("releases/r2");
    assert_eq!(p.body("/page.html"), "release two\n");
    assert_eq!(p.body("/page.html"), "release two\n");
    swap("releases/r1");
    assert_eq!(p.body("/page.html"), "release one\n");
}

#[test]
fn a_symlink_swapped_to_leave_the_root_is_refused_after_its_target_was_cached() {
    let p = Published::start(&[("real.txt", "inside file\n")]);
    let r1 = p.release("r1");
    std::os::unix::fs::symlink("real.txt", r1.join("link.txt")).unwrap();
    // Outside the root: the same size and time as the file inside.
    let outside = p.site.path("outside.txt");
    let mtime = std::fs::metadata(r1.join("real.txt"))
        .unwrap()
        .modified()
        .unwrap();
    replace(&outside, "secret file\n", mtime);
    assert_eq!(p.body("/link.txt"), "inside file\n");
    assert_eq!(p.body("/link.txt"), "inside file\n");
    std::os::unix::fs::symlink(&outside, r1.join("link.new")).unwrap();
    std::fs::rename(r1.join("link.new"), r1.join("link.txt")).unwrap();
    let (status, _, body) = p.get("/link.txt", &[]);
    assert_eq!(
        (status, body.as_str()),
        (404, "Not Found\n"),
        "served through a symlink leaving the root"
    );
}

#[test]
fn a_directory_swapped_for_a_symlink_leaving_the_root_is_refused_after_caching() {
    let p = Published::start(&[]);
    let sub = p.release("r1").join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("page.txt"), "inside file\n").unwrap();
    let outside = p.site.path("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    let mtime = std::fs::metadata(sub.join("page.txt"))
        .unwrap()
        .modified()
        .unwrap();
    replace(&outside.join("page.txt"), "secret file\n", mtime);
    assert_eq!(p.body("/sub/page.txt"), "inside file\n");
    let before = p.hits();
    assert_eq!(p.body("/sub/page.txt"), "inside file\n");
    assert_eq!(p.hits() - before, 1.0, "not cached");
    std::fs::rename(&sub, p.release("r1").join("sub.old")).unwrap();
    std::os::unix::fs::symlink(&outside, &sub).unwrap();
    let (status, _, body) = p.get("/sub/page.txt", &[]);
    assert_eq!(
        (status, body.as_str()),
        (404, "Not Found\n"),
        "served through a directory symlink leaving the root"
    );
}

#[test]
fn ranges_and_conditions_on_a_cached_file() {
    let p = Published::start(&[("digits.txt", "0123456789")]);
    let (_, head, _) = p.get("/digits.txt", &[]);
    let etag = header(&head, "etag").unwrap().to_string();
    let last_modified = header(&head, "last-modified").unwrap().to_string();
    let before = p.hits();
    let (status, head, body) = p.get("/digits.txt", &["Range: bytes=2-4"]);
    assert_eq!((status, body.as_str()), (206, "234"));
    assert_eq!(header(&head, "content-range"), Some("bytes 2-4/10"));
    assert_eq!(header(&head, "content-length"), Some("3"));
    let (status, _, body) = p.get("/digits.txt", &["Range: bytes=-3"]);
    assert_eq!((status, body.as_str()), (206, "789"));
    let (status, head, _) = p.get("/digits.txt", &["Range: bytes=20-"]);
    assert_eq!(status, 416);
    assert_eq!(header(&head, "content-range"), Some("bytes */10"));
    let inm = format!("If-None-Match: {etag}");
    let (status, head, body) = p.get("/digits.txt", &[&inm]);
    assert_eq!((status, body.as_str()), (304, ""));
    assert_eq!(header(&head, "etag"), Some(etag.as_str()));
    assert_eq!(header(&head, "last-modified"), Some(last_modified.as_str()));
    let (status, _, body) = p.get("/digits.txt", &["If-None-Match: \"other\""]);
    assert_eq!((status, body.as_str()), (200, "0123456789"));
    let (status, _, _) = p.get("/digits.txt", &["If-Match: \"other\""]);
    assert_eq!(status, 412);
    assert_eq!(p.hits() - before, 6.0, "not answered from the cache");
}

/// Every line of `head` named `name` (case-insensitive), trimmed.
fn all_headers<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

#[test]
fn prebuilt_headers_get_this_response_s_request_id_date_and_connection() {
    let p = Published::start(&[("page.html", "cached page\n")]);
    let modified = std::fs::metadata(p.release("r1").join("page.html"))
        .unwrap()
        .modified()
        .unwrap();
    let (_, head, _) = p.get("/page.html", &[]);
    let etag = header(&head, "etag").unwrap().to_string();
    let inm = format!("If-None-Match: {etag}");
    let before = p.hits();
    let mut ids = Vec::new();
    // A 200 and a 304 from the cache's prebuilt headers, twice each, over HTTP/1.1 and HTTP/2.
    for (version, conditional) in [
        ("--http1.1", false),
        ("--http1.1", true),
        ("--http2", false),
        ("--http2", true),
        ("--http1.1", false),
        ("--http2", true),
    ] {
        let headers: Vec<&str> = if conditional { vec![&inm] } else { vec![] };
        let mut args = vec![version];
        for h in &headers {
            args.extend(["-H", h]);
        }
        let url = p.site.https("/page.html");
        args.extend(["-k", "-i", url.as_str()]);
        let out = p.site.curl(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let expected = if conditional {
            (304, "")
        } else {
            (200, "cached page\n")
        };
        assert_eq!((status_of(&out), body), expected, "{version}: {head}");
        let id = all_headers(head, "x-request-id");
        assert_eq!(id.len(), 1, "one request id: {head}");
        assert_ne!(id[0], "-", "the placeholder request id was sent: {head}");
        ids.push(id[0].to_string());
        let date = all_headers(head, "date");
        assert_eq!(date.len(), 1, "one Date: {head}");
        let date = httpdate::parse_http_date(date[0]).unwrap();
        assert!(
            date >= modified - Duration::from_secs(1),
            "a Date before the file was written (the placeholder?): {head}"
        );
        let connection = all_headers(head, "connection");
        if version == "--http2" {
            assert!(connection.is_empty(), "Connection on HTTP/2: {head}");
        } else {
            assert_eq!(connection, ["keep-alive"], "{head}");
        }
        for name in [
            "x-content-type-options",
            "x-frame-options",
            "referrer-policy",
        ] {
            assert_eq!(all_headers(head, name).len(), 1, "{name}: {head}");
        }
        assert_eq!(all_headers(head, "etag"), [etag.as_str()], "{head}");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "request ids repeat");
    assert_eq!(p.hits() - before, 6.0, "not answered from the cache");
}

/// The HTTP/1.1 fast path (`src/fast_path.rs`) answers a cached file's plain requests
/// byte for byte as the full path does: each request is sent as it is (which the fast path
/// answers, counted by its metric) and with one more header it does not know (which sends it
/// the full way through pingora), and the two answers and their access log lines must be the
/// same but for the date and the request id.
#[test]
fn the_fast_path_answers_as_the_full_path_does() {
    let p = Published::start(&[
        ("small.txt", "a small file\n"),
        ("page.html", "<p>a page</p>\n"),
        ("index.html", "home\n"),
        ("empty.txt", ""),
    ]);
    std::fs::write(p.release("r1").join("page.html.gz"), "(the page, gzipped)").unwrap();
    let etag = {
        let (_, head, _) = p.get("/small.txt", &["X-Warm: 1"]);
        header(&head, "etag").unwrap().to_string()
    };
    let if_none_match = format!("If-None-Match: W/\"x\", {etag}");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("/small.txt", vec![]),
        ("/small.txt?v=2&x=%20", vec![]),
        ("/small.txt", vec![&if_none_match]),
        ("/small.txt", vec!["If-None-Match: \"other\""]),
        (
            "/small.txt",
            vec!["Accept-Encoding: gzip", "Connection: keep-alive"],
        ),
        (
            "/small.txt",
            vec![
                "Host: WWW.FOOBAR.COM.",
                "Accept-Language: en",
                "Cookie: a=b",
            ],
        ),
        ("/page.html", vec!["Accept-Encoding: gzip, br"]),
        ("/page.html", vec![]),
        ("/page.html", vec!["HEAD"]),
        ("/", vec!["User-Agent: test", "Accept: */*"]),
        ("/empty.txt", vec![]),
    ];
    let fast_count = || metric(&p.site.metrics(), "onebox_edge_fast_path_responses_total");
    for (path, headers) in &cases {
        let request = |extra: Option<&str>| {
            let url = p.site.https(path);
            let mut args = vec!["-k", "-i", "--http1.1", url.as_str()];
            for h in headers {
                match *h {
                    "HEAD" => args.push("-I"),
                    h => args.extend(["-H", h]),
                }
            }
            if let Some(extra) = extra {
                args.extend(["-H", extra]);
            }
            let out = p.site.curl(&args);
            assert!(out.status.success(), "curl {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // Filled by the full path first.
        request(Some("X-Warm: 1"));
        let before = fast_count();
        let fast = request(None);
        assert_eq!(
            fast_count() - before,
            1.0,
            "{path} {headers:?}: not answered by the fast path"
        );
        let full = request(Some("X-Full-Path: 1"));
        assert_eq!(
            fast_count() - before,
            1.0,
            "{path} {headers:?}: the full path was not taken"
        );
        assert_eq!(
            blanked(&fast),
            blanked(&full),
            "{path} {headers:?}: the fast path's answer differs from the full path's"
        );
        assert_eq!(
            access_log_line(&p.site, &fast),
            access_log_line(&p.site, &full),
            "{path} {headers:?}"
        );
    }
    // Requests the fast path leaves to the full path: a body, a range, another precondition,
    // an unknown host, userinfo in the host (pingora's 400), HTTP/1.0.
    let before = fast_count();
    for args in [
        vec!["-d", "x=1"],
        vec!["-H", "Range: bytes=0-3"],
        vec!["-H", "If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT"],
        vec!["-H", "Host: other.example"],
        vec!["-H", "Host: www.foobar.com:1@other.example"],
        vec!["--http1.0"],
    ] {
        let url = p.site.https("/small.txt");
        let mut all = vec!["-k", "-s", "-o", "/dev/null", "--http1.1", url.as_str()];
        all.extend(args);
        p.site.curl(&all);
    }
    assert_eq!(
        fast_count() - before,
        0.0,
        "the fast path answered a request it must leave"
    );
}

/// `keepalive_requests` holds for requests the fast path answers as for the others: with a limit
/// of 3 reuses, 12 requests on one kept-alive connection take 3 connections either way.
#[test]
fn the_fast_path_keeps_the_request_limit_per_connection() {
    let (site, _upstream, _edge) = edge("keepalive_requests = 3");
    let connects = |extra: &[&str]| -> u32 {
        let url = site.https("/hello.txt");
        let mut args = vec!["-k", "--http1.1", "-w", "%{num_connects}\n"];
        args.extend(extra);
        for _ in 0..12 {
            args.extend(["-o", "/dev/null", url.as_str()]);
        }
        let out = site.curl(&args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|n| n.trim().parse::<u32>().unwrap())
            .sum()
    };
    connects(&[]);
    let fast = connects(&[]);
    let full = connects(&["-H", "X-Full-Path: 1"]);
    assert_eq!(
        (fast, full),
        (3, 3),
        "connections for 12 requests, fast path and full path"
    );
    assert!(metric(&site.metrics(), "onebox_edge_fast_path_responses_total") >= 12.0);
}
