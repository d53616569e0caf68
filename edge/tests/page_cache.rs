//! The page cache against the real binary and a scripted app that counts what reaches it: what
//! is cached and served again without the app, what never is (cookies, `Authorization`,
//! `Set-Cookie`, `no-store`, `private`, streamed or large answers), `HEAD` after `GET`, the
//! app's purge header, requests for an uncacheable page not held behind each other and sent
//! without the cache once its answer is known, a page cached again once its answer may be, and
//! fresh hits answered before pingora's cache exactly as pingora's hit path answers them.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests that reached the app, by "METHOD /path".
type Seen = Arc<Mutex<HashMap<String, usize>>>;

/// A scripted app: every answer's body names how many requests for its path it has had, so a
/// test tells a fresh answer from a cached one.
struct App {
    port: u16,
    seen: Seen,
}

impl App {
    fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, s));
            }
        });
        App { port, seen }
    }

    /// Requests for `path` with `method` the app has answered.
    fn count(&self, method: &str, path: &str) -> usize {
        let key = format!("{method} {path}");
        self.seen.lock().unwrap().get(&key).copied().unwrap_or(0)
    }
}

fn serve(mut conn: TcpStream, seen: Seen) {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_request(&mut conn, &mut buf) else {
            return;
        };
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or_default().to_string();
        let target = words.next().unwrap_or_default().to_string();
        let path = target.split('?').next().unwrap_or_default().to_string();
        let n = {
            let mut seen = seen.lock().unwrap();
            let n = seen.entry(format!("{method} {path}")).or_default();
            *n += 1;
            *n
        };
        if path == "/together" && n > 1 {
            // After its first answer: waits (at most 3 s) until another request for it is in
            // the app too, and says whether one was.
            let body = if together() { "together\n" } else { "alone\n" };
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if conn.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        if path == "/slow" {
            // A page that takes a while: a burst of requests arrives while it is being filled.
            std::thread::sleep(Duration::from_secs(1));
        }
        if path == "/healthz" {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
            continue;
        }
        let body = if path == "/host" {
            // The `Host` the app saw.
            let host = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            format!("{method} {target} {host} #{n}\n")
        } else {
            format!("{method} {target} #{n}\n")
        };
        let public = "Cache-Control: public, max-age=0, s-maxage=60\r\n";
        let extra = match path.as_str() {
            "/purge" => "X-Onebox-Purge: all\r\n".to_string(),
            "/cookie" => format!("{public}Set-Cookie: onebox_session=new; HttpOnly\r\n"),
            "/no-store" => "Cache-Control: no-store\r\n".into(),
            "/private" => "Cache-Control: private, max-age=60\r\n".into(),
            "/no-cache-control" | "/together" => String::new(),
            "/not-found" => public.into(),
            "/etag" => format!("{public}ETag: \"v1\"\r\n"),
            // Fresh for a second only.
            "/short" => "Cache-Control: public, s-maxage=1\r\n".into(),
            // Not to be kept by a shared cache for its first three answers, then public.
            "/turns" if n <= 3 => String::new(),
            _ => public.into(),
        };
        let status = if path == "/not-found" {
            "404 Not Found"
        } else {
            "200 OK"
        };
        let answer = if path == "/stream" {
            let mut a = format!(
                "HTTP/1.1 200 OK\r\n{extra}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
                body.len()
            );
            a.push_str("0\r\n\r\n");
            a.into_bytes()
        } else {
            let body = if path == "/big" {
                format!("{body}{}", "x".repeat(2048))
            } else if path == "/kb" {
                format!("{body}{}", "k".repeat(900))
            } else {
                body
            };
            let mut a = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\n{extra}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if method != "HEAD" {
                a.extend_from_slice(body.as_bytes());
            }
            a
        };
        if conn.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Requests for `/together` in the app now, and whether two ever were at once.
static TOGETHER_NOW: AtomicUsize = AtomicUsize::new(0);
static TOGETHER_SEEN: AtomicBool = AtomicBool::new(false);

/// For one request for `/together` in the app: whether another one was in the app with it
/// (waiting at most 3 s for one).
fn together() -> bool {
    if TOGETHER_NOW.fetch_add(1, Ordering::SeqCst) + 1 >= 2 {
        TOGETHER_SEEN.store(true, Ordering::SeqCst);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !TOGETHER_SEEN.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    TOGETHER_NOW.fetch_sub(1, Ordering::SeqCst);
    TOGETHER_SEEN.load(Ordering::SeqCst)
}

/// An edge (self-signed, no ACME) in front of the scripted app, caching objects of at most
/// 1 KiB.
fn edge() -> (Site, App, Proc) {
    edge_with("")
}

/// [`edge`] with more `[edge.page_cache]` settings.
fn edge_with(page_cache: &str) -> (Site, App, Proc) {
    let app = App::start();
    let site = Site::new(
        Ports::new(),
        app.port,
        &format!(
            "\n[edge.acme]\nca = \"off\"\n\n[edge.page_cache]\nmax_object_bytes = 1024\n{page_cache}"
        ),
    );
    let edge = site.start_edge("edge.log");
    (site, app, edge)
}

/// An answer's head and body, as curl `-i` printed them.
struct Answer {
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("none")
    }
}

/// The bodies of `n` GETs of `path` sent at once, each from its own thread.
fn at_once(site: Site, n: usize, path: &'static str) -> Vec<String> {
    let site = Arc::new(site);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let site = site.clone();
            std::thread::spawn(move || get(&site, path, &[]).body)
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// A request through the edge's HTTPS listener with curl's `args` before the URL.
fn get(site: &Site, path: &str, args: &[&str]) -> Answer {
    let url = site.https(path);
    let mut all = vec!["-k", "-i"];
    all.extend_from_slice(args);
    all.push(&url);
    let out = site.curl(&all);
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    Answer {
        head: head.to_string(),
        body: body.to_string(),
    }
}

#[test]
fn a_public_page_is_served_from_the_cache_until_the_app_purges_it() {
    let (site, app, _edge) = edge();
    let first = get(&site, "/page?x=1", &[]);
    assert_eq!(first.body, "GET /page?x=1 #1\n", "{}", first.head);
    assert_eq!(first.cache(), "MISS");
    let second = get(&site, "/page?x=1", &[]);
    assert_eq!(second.body, first.body, "served again without the app");
    assert_eq!(second.cache(), "HIT", "{}", second.head);
    // Over HTTP/2 too (the :authority is the Host).
    let h2 = get(&site, "/page?x=1", &["--http2"]);
    assert!(h2.head.starts_with("HTTP/2 200"), "{}", h2.head);
    assert_eq!((h2.cache(), h2.body.as_str()), ("HIT", first.body.as_str()));
    assert_eq!(app.count("GET", "/page"), 1);
    // Another query is another page.
    assert_eq!(get(&site, "/page?x=2", &[]).body, "GET /page?x=2 #2\n");
    // Each hit carries its own request id, not the stored one.
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
    let metrics = site.metrics();
    assert_eq!(metric(&metrics, "onebox_edge_page_cache_hits_total"), 2.0);
    assert_eq!(metric(&metrics, "onebox_edge_page_cache_misses_total"), 2.0);

    // The app's answer to a change asks for a purge; the header never reaches the client.
    let purge = get(&site, "/purge", &["-X", "POST", "-d", "x=1"]);
    assert!(purge.head.starts_with("HTTP/"), "{}", purge.head);
    assert_eq!(purge.header("x-onebox-purge"), None, "{}", purge.head);
    assert_eq!(purge.cache(), "BYPASS");
    let after = get(&site, "/page?x=1", &[]);
    assert_eq!(
        after.body, "GET /page?x=1 #3\n",
        "the next request goes to the app"
    );
    assert_eq!(after.cache(), "MISS");
    assert_eq!(get(&site, "/page?x=1", &[]).cache(), "HIT");
    assert_eq!(app.count("GET", "/page"), 3);
    let metrics = site.metrics();
    assert_eq!(metric(&metrics, "onebox_edge_page_cache_purges_total"), 1.0);
}

#[test]
fn requests_with_cookies_or_credentials_never_use_the_cache() {
    let (site, app, _edge) = edge();
    // A logged-in request does not fill the cache: the anonymous one after it goes to the app.
    let admin = get(&site, "/home", &["-H", "Cookie: onebox_session=secret"]);
    assert_eq!(admin.body, "GET /home #1\n");
    assert_eq!(admin.cache(), "BYPASS");
    let anonymous = get(&site, "/home", &[]);
    assert_eq!(anonymous.body, "GET /home #2\n", "not the logged-in answer");
    assert_eq!(anonymous.cache(), "MISS");
    // Now cached for anonymous readers, and still never served to a logged-in one.
    assert_eq!(get(&site, "/home", &[]).cache(), "HIT");
    let admin = get(&site, "/home", &["-H", "Cookie: onebox_session=secret"]);
    assert_eq!(admin.body, "GET /home #3\n");
    assert_eq!(admin.cache(), "BYPASS");
    let basic = get(&site, "/home", &["-u", "a:b"]);
    assert_eq!(basic.body, "GET /home #4\n");
    assert_eq!(basic.cache(), "BYPASS");
    assert_eq!(app.count("GET", "/home"), 4);
}

#[test]
fn answers_the_app_does_not_allow_to_keep_are_not_cached() {
    let (site, app, _edge) = edge();
    for path in [
        "/cookie",
        "/no-store",
        "/private",
        "/no-cache-control",
        "/not-found",
        "/stream",
        "/big",
    ] {
        for n in 1..=2 {
            let a = get(&site, path, &[]);
            assert!(
                a.body.starts_with(&format!("GET {path} #{n}\n")),
                "{path}: {}\n{}",
                a.head,
                a.body
            );
            assert_ne!(a.cache(), "HIT", "{path}");
        }
        assert_eq!(app.count("GET", path), 2, "{path}");
    }
    // Passed through whole, though not cached.
    assert_eq!(
        get(&site, "/big", &[]).body.len(),
        "GET /big #3\n".len() + 2048
    );
    assert_eq!(
        get(&site, "/cookie", &[]).header("set-cookie"),
        Some("onebox_session=new; HttpOnly")
    );
}

#[test]
fn head_shares_the_get_entry_and_has_no_body() {
    let (site, app, _edge) = edge();
    let get_first = get(&site, "/article", &[]);
    assert_eq!(get_first.cache(), "MISS");
    let head = get(&site, "/article", &["-I"]);
    assert_eq!(head.cache(), "HIT", "{}", head.head);
    assert_eq!(head.body, "", "no body");
    assert_eq!(
        head.header("content-length"),
        Some(get_first.body.len().to_string().as_str())
    );
    assert_eq!(app.count("GET", "/article"), 1);
    assert_eq!(app.count("HEAD", "/article"), 0);

    // A HEAD miss fetches (and stores) the whole page: the GET after it has the body.
    let head = get(&site, "/other", &["-I"]);
    assert_eq!(head.cache(), "MISS", "{}", head.head);
    assert_eq!(head.body, "");
    let body = get(&site, "/other", &[]);
    assert_eq!(body.cache(), "HIT", "{}", body.head);
    assert_eq!(body.body, "GET /other #1\n");
    assert_eq!(app.count("HEAD", "/other"), 0);
}

#[test]
fn conditional_and_range_requests_are_answered_from_the_cached_page() {
    let (site, app, _edge) = edge();
    let full = get(&site, "/etag", &[]);
    assert_eq!(full.cache(), "MISS");
    assert_eq!(full.body, "GET /etag #1\n");
    // The client's If-None-Match and Range never reach the app: the cached 200 answers them.
    let not_modified = get(&site, "/etag", &["-H", "If-None-Match: \"v1\""]);
    assert!(
        not_modified.head.starts_with("HTTP/2 304"),
        "{}",
        not_modified.head
    );
    assert_eq!(not_modified.cache(), "HIT");
    assert_eq!(not_modified.body, "");
    let changed = get(&site, "/etag", &["-H", "If-None-Match: \"v0\""]);
    assert!(changed.head.starts_with("HTTP/2 200"), "{}", changed.head);
    assert_eq!(changed.body, full.body);
    let part = get(&site, "/etag", &["-H", "Range: bytes=4-8"]);
    assert!(part.head.starts_with("HTTP/2 206"), "{}", part.head);
    assert_eq!(part.cache(), "HIT");
    assert_eq!(part.body, "/etag");
    assert_eq!(part.header("content-range"), Some("bytes 4-8/13"));
    let tail = get(&site, "/etag", &["-H", "Range: bytes=-3"]);
    assert_eq!(tail.body, "#1\n", "{}", tail.head);
    let outside = get(&site, "/etag", &["-H", "Range: bytes=100-200"]);
    assert!(outside.head.starts_with("HTTP/2 416"), "{}", outside.head);
    assert_eq!(app.count("GET", "/etag"), 1);
}

#[test]
fn the_byte_bound_drops_the_least_recently_used_page() {
    // Room for two pages of ~915 body bytes, not three.
    let (site, app, _edge) = edge_with("max_bytes = 2500\n");
    for q in ["a", "b"] {
        assert_eq!(get(&site, &format!("/kb?{q}"), &[]).cache(), "MISS");
    }
    assert_eq!(
        get(&site, "/kb?a", &[]).cache(),
        "HIT",
        "a is now the newest"
    );
    assert_eq!(get(&site, "/kb?c", &[]).cache(), "MISS");
    // Storing c passed the bound: b, the least recently used, was dropped; a and c stay.
    let b = get(&site, "/kb?b", &[]);
    assert_eq!(b.cache(), "MISS", "{}", b.head);
    assert!(b.body.starts_with("GET /kb?b #4\n"), "{}", b.body);
    // (Storing b again dropped the least recently used of a and c: a.)
    assert_eq!(get(&site, "/kb?c", &[]).cache(), "HIT");
    assert_eq!(app.count("GET", "/kb"), 4);
}

#[test]
fn a_burst_of_misses_for_one_page_sends_one_request_to_the_app() {
    let (site, app, _edge) = edge();
    for answer in at_once(site, 6, "/slow") {
        assert_eq!(answer, "GET /slow #1\n");
    }
    assert_eq!(
        app.count("GET", "/slow"),
        1,
        "the others waited for the fill"
    );
}

/// Once the app has answered a URL with an answer a shared cache may not keep (here: no
/// `Cache-Control`), requests for it go to the app side by side (pingora's cacheability
/// predictor, `page_cache::PageCache`). Without it each took the URL's cache lock, and the
/// next one waited for its answer before going to the app itself: the app would see the two
/// requests one after the other ("alone").
#[test]
fn requests_for_an_uncacheable_page_go_to_the_app_side_by_side() {
    let (site, app, _edge) = edge();
    let first = get(&site, "/together", &[]);
    assert_eq!(first.body, "GET /together #1\n");
    assert_ne!(first.cache(), "HIT");
    for answer in at_once(site, 2, "/together") {
        assert_eq!(answer, "together\n");
    }
    assert_eq!(app.count("GET", "/together"), 3);
}

/// Once a URL's answer that went through the cache may not be kept, the requests after it go to
/// the app without the cache being enabled (`page_cache::PageCache::remembers_uncacheable`,
/// counted by `onebox_edge_page_cache_remembered_uncacheable_total`); a purge forgets that, and
/// the next request goes through the cache again.
#[test]
fn an_uncacheable_url_is_sent_to_the_app_without_the_cache() {
    let (site, app, _edge) = edge();
    let counted = |site: &Site| {
        metric(
            &site.metrics(),
            "onebox_edge_page_cache_remembered_uncacheable_total",
        )
    };
    // Looked up (nothing known yet), then not stored: X-Cache says BYPASS either way.
    let first = get(&site, "/no-cache-control", &[]);
    assert_eq!(first.cache(), "BYPASS");
    assert_eq!(counted(&site), 0.0);
    for n in 2..=4 {
        let a = get(&site, "/no-cache-control", &[]);
        assert_eq!(a.body, format!("GET /no-cache-control #{n}\n"));
        assert_eq!(a.cache(), "BYPASS", "{}", a.head);
    }
    assert_eq!(counted(&site), 3.0, "three requests without the cache");
    // HEAD is the same URL; a request with a cookie never uses the cache and is not counted.
    assert_eq!(get(&site, "/no-cache-control", &["-I"]).cache(), "BYPASS");
    get(&site, "/no-cache-control", &["-H", "Cookie: a=b"]);
    assert_eq!(counted(&site), 4.0);
    // Cacheable pages are not affected.
    assert_eq!(get(&site, "/page", &[]).cache(), "MISS");
    assert_eq!(get(&site, "/page", &[]).cache(), "HIT");
    // A purge forgets every URL: the next request is looked up again, then remembered again.
    get(&site, "/purge", &["-X", "POST", "-d", "x=1"]);
    assert_eq!(get(&site, "/no-cache-control", &[]).cache(), "BYPASS");
    assert_eq!(counted(&site), 4.0, "looked up again");
    assert_eq!(get(&site, "/no-cache-control", &[]).cache(), "BYPASS");
    assert_eq!(counted(&site), 5.0);
    assert_eq!(app.count("GET", "/no-cache-control"), 7);
}

/// A URL whose answer turns cacheable is cached again at once: the first answer that may be
/// kept makes the memory of uncacheable URLs forget it, the request after it fills the cache
/// (over HTTP/2, curl's default).
#[test]
fn a_page_whose_answer_turns_cacheable_is_cached_again() {
    answer_turns_cacheable("--http2");
}

/// The same over HTTP/1.1, whose fast path sends the app's plain answers itself
/// (`src/app_answer.rs`): not one the page cache may keep, for a URL it remembers.
#[test]
fn a_page_whose_answer_turns_cacheable_is_cached_again_over_http1() {
    answer_turns_cacheable("--http1.1");
}

/// The check of the two tests above, with curl's `version` flag.
fn answer_turns_cacheable(version: &str) {
    let (site, app, _edge) = edge();
    for _ in 1..=3 {
        assert_eq!(get(&site, "/turns", &[version]).cache(), "BYPASS");
    }
    let counted = metric(
        &site.metrics(),
        "onebox_edge_page_cache_remembered_uncacheable_total",
    );
    assert_eq!(
        counted, 2.0,
        "the first was looked up, the next two were not"
    );
    // The fourth answer is public: sent to the client (not stored: it went without the cache).
    let fourth = get(&site, "/turns", &[version]);
    assert_eq!(fourth.body, "GET /turns #4\n");
    assert_eq!(fourth.cache(), "BYPASS");
    let fifth = get(&site, "/turns", &[version]);
    assert_eq!(fifth.body, "GET /turns #5\n");
    assert_eq!(fifth.cache(), "MISS", "{}", fifth.head);
    let sixth = get(&site, "/turns", &[version]);
    assert_eq!(
        (sixth.cache(), sixth.body.as_str()),
        ("HIT", "GET /turns #5\n")
    );
    assert_eq!(app.count("GET", "/turns"), 5);
}

/// The page cache's hits: (all, answered before pingora's cache).
/// A page is one entry whatever form its host takes: HTTP/1.1's `Host` (with the listener's port,
/// with the default port `:443`, in another case) and HTTP/2's `:authority` give the same key,
/// on the fast path and on pingora's, and the app sees that one `Host`.
#[test]
fn the_host_with_its_default_port_or_in_another_case_is_one_page() {
    let (site, app, _edge) = edge();
    // The listener's own port, which curl puts in both: one page over HTTP/1.1 and HTTP/2.
    let port = site.https("").rsplit(':').next().unwrap().to_string();
    let first = get(&site, "/host", &["--http1.1"]);
    assert_eq!(first.cache(), "MISS", "{}", first.head);
    assert_eq!(first.body, format!("GET /host www.foobar.com:{port} #1\n"));
    let h2 = get(&site, "/host", &["--http2"]);
    assert!(h2.head.starts_with("HTTP/2 200"), "{}", h2.head);
    assert_eq!((h2.cache(), h2.body.as_str()), ("HIT", first.body.as_str()));
    // The default port, named or not, in any case: one other page, which the app sees as
    // `www.foobar.com`.
    let forms: [(&str, &str); 5] = [
        ("--http1.1", "www.foobar.com:443"),
        ("--http1.1", "www.foobar.com"),
        ("--http1.1", "WWW.FooBar.com:443"),
        ("--http2", "www.foobar.com:443"),
        ("--http2", "www.foobar.com"),
    ];
    for (i, (version, host)) in forms.into_iter().enumerate() {
        let host_header = format!("Host: {host}");
        let a = get(&site, "/host", &[version, "-H", &host_header]);
        assert_eq!(
            a.body, "GET /host www.foobar.com #2\n",
            "{version} {host}: {}",
            a.head
        );
        let want = if i == 0 { "MISS" } else { "HIT" };
        assert_eq!(a.cache(), want, "{version} {host}: {}", a.head);
        // pingora's hit path (an `If-None-Match` the fast path leaves to it) has the same key.
        let slow = get(
            &site,
            "/host",
            &[version, "-H", &host_header, "-H", "If-None-Match: \"x\""],
        );
        assert_eq!(
            (slow.cache(), slow.body.as_str()),
            ("HIT", a.body.as_str()),
            "{version} {host}"
        );
    }
    assert_eq!(app.count("GET", "/host"), 2);
}

fn hits(site: &Site) -> (f64, f64) {
    let m = site.metrics();
    (
        metric(&m, "onebox_edge_page_cache_hits_total"),
        metric(&m, "onebox_edge_page_cache_fast_hits_total"),
    )
}

/// An answer's status line and headers, lower-case names, without the ones that differ per
/// response (`Date`, `X-Request-Id`) and with `Age` only as present or not, sorted.
fn comparable(a: &Answer) -> Vec<String> {
    let mut lines = a.head.lines();
    let status = lines.next().unwrap_or_default().trim().to_string();
    let mut out: Vec<String> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim().to_ascii_lowercase();
            match k.as_str() {
                "date" | "x-request-id" => None,
                "age" => Some("age: present".to_string()),
                _ => Some(format!("{k}: {}", v.trim())),
            }
        })
        .collect();
    out.sort();
    out.insert(0, status);
    out
}

/// A fresh hit is answered in the edge's first hook from the stored page (counted by
/// `onebox_edge_page_cache_fast_hits_total`) with the status, headers and body pingora's hit
/// path gives: compared here with a hit that goes through it (an `If-None-Match` that does not
/// match), over HTTP/1.1 and HTTP/2, and for `HEAD`.
#[test]
fn a_fresh_hit_is_answered_at_once_as_pingoras_hit_path_answers_it() {
    let (site, app, _edge) = edge();
    for version in ["--http1.1", "--http2"] {
        // Stored by the first request (HTTP/1.1's `Host` and HTTP/2's `:authority` are one key).
        let first = get(&site, "/etag", &[version]);
        let stored = if version == "--http1.1" {
            "MISS"
        } else {
            "HIT"
        };
        assert_eq!(first.cache(), stored, "{version}");
        let before = hits(&site);
        let fast = get(&site, "/etag", &[version]);
        assert_eq!(hits(&site), (before.0 + 1.0, before.1 + 1.0), "{version}");
        let slow = get(&site, "/etag", &[version, "-H", "If-None-Match: \"v0\""]);
        assert_eq!(hits(&site), (before.0 + 2.0, before.1 + 1.0), "{version}");
        assert_eq!(comparable(&fast), comparable(&slow), "{version}");
        assert_eq!(fast.body, first.body);
        assert_eq!(fast.body, slow.body);
        for (name, value) in [
            ("cache-control", "public, max-age=0, s-maxage=60"),
            ("etag", "\"v1\""),
            ("content-type", "text/html"),
            ("content-length", "13"),
            ("x-cache", "HIT"),
            ("x-content-type-options", "nosniff"),
        ] {
            assert_eq!(fast.header(name), Some(value), "{version}: {}", fast.head);
        }
        let age: u64 = fast.header("age").unwrap().parse().unwrap();
        assert!(age < 60, "{}", fast.head);
        assert_ne!(fast.header("x-request-id"), slow.header("x-request-id"));
        assert!(fast.header("date").is_some(), "{}", fast.head);
    }
    // HEAD: the same header, no body.
    let before = hits(&site);
    let head = get(&site, "/etag", &["-I"]);
    assert_eq!(hits(&site), (before.0 + 1.0, before.1 + 1.0));
    assert_eq!(head.body, "");
    assert_eq!(head.header("content-length"), Some("13"), "{}", head.head);
    assert_eq!(head.cache(), "HIT");
    assert_eq!(app.count("GET", "/etag"), 1);
}

/// A purge, and a page stored again after it went stale, are seen by the very next request: the
/// fast path reads the key the purge changed and the entry the new fill replaced.
#[test]
fn a_purge_or_a_new_fill_is_seen_by_the_next_hit() {
    let (site, app, _edge) = edge();
    assert_eq!(get(&site, "/page", &[]).cache(), "MISS");
    let hit = get(&site, "/page", &[]);
    assert_eq!((hit.cache(), hit.body.as_str()), ("HIT", "GET /page #1\n"));
    assert_eq!(hits(&site), (1.0, 1.0));
    get(&site, "/purge", &["-X", "POST", "-d", "x=1"]);
    let after = get(&site, "/page", &[]);
    assert_eq!(
        (after.cache(), after.body.as_str()),
        ("MISS", "GET /page #2\n")
    );
    let hit = get(&site, "/page", &[]);
    assert_eq!((hit.cache(), hit.body.as_str()), ("HIT", "GET /page #2\n"));
    assert_eq!(hits(&site), (2.0, 2.0));
    assert_eq!(app.count("GET", "/page"), 2);

    // A page fresh for a second: served at once while fresh, then fetched again and replaced.
    assert_eq!(get(&site, "/short", &[]).cache(), "MISS");
    let hit = get(&site, "/short", &[]);
    assert_eq!((hit.cache(), hit.body.as_str()), ("HIT", "GET /short #1\n"));
    assert_eq!(hits(&site), (3.0, 3.0));
    std::thread::sleep(Duration::from_millis(2500));
    let stale = get(&site, "/short", &[]);
    assert_eq!(stale.body, "GET /short #2\n", "{}", stale.head);
    assert_ne!(stale.cache(), "HIT");
    let hit = get(&site, "/short", &[]);
    assert_eq!((hit.cache(), hit.body.as_str()), ("HIT", "GET /short #2\n"));
    assert_eq!(hits(&site), (4.0, 4.0));
    assert_eq!(app.count("GET", "/short"), 2);
}

/// Requests pingora answers otherwise than with the whole stored page (ranges, conditionals)
/// or the cache may not answer (cookies, credentials, other methods) are not fast hits and are
/// answered as before.
#[test]
fn requests_the_fast_path_must_not_take_are_answered_as_before() {
    let (site, app, _edge) = edge();
    assert_eq!(get(&site, "/etag", &[]).cache(), "MISS");
    let part = get(&site, "/etag", &["-H", "Range: bytes=4-8"]);
    assert!(part.head.starts_with("HTTP/2 206"), "{}", part.head);
    assert_eq!((part.cache(), part.body.as_str()), ("HIT", "/etag"));
    let if_range = get(
        &site,
        "/etag",
        &["-H", "Range: bytes=4-8", "-H", "If-Range: \"v1\""],
    );
    assert!(if_range.head.starts_with("HTTP/2 206"), "{}", if_range.head);
    let not_modified = get(&site, "/etag", &["-H", "If-None-Match: \"v1\""]);
    assert!(
        not_modified.head.starts_with("HTTP/2 304"),
        "{}",
        not_modified.head
    );
    // The page has no Last-Modified: pingora answers the whole page.
    let since = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
    let whole = get(
        &site,
        "/etag",
        &["-H", &format!("If-Modified-Since: {since}")],
    );
    assert!(whole.head.starts_with("HTTP/2 200"), "{}", whole.head);
    assert_eq!(
        (whole.cache(), whole.body.as_str()),
        (
            "HIT",
            "GET /etag #1
"
        )
    );
    assert_eq!(hits(&site), (4.0, 0.0), "pingora's hits, none at once");
    for args in [
        &["-H", "Cookie: onebox_session=secret"][..],
        &["-u", "a:b"][..],
    ] {
        let a = get(&site, "/etag", args);
        assert_eq!(a.cache(), "BYPASS", "{args:?}");
        assert!(a.body.starts_with("GET /etag #"), "{args:?}: {}", a.body);
    }
    let post = get(&site, "/etag", &["-X", "POST", "-d", "x=1"]);
    assert_eq!(post.body, "POST /etag #1\n");
    assert_eq!(hits(&site), (4.0, 0.0));
    assert_eq!(app.count("GET", "/etag"), 3);
    // The plain request after them is one.
    assert_eq!(get(&site, "/etag", &[]).cache(), "HIT");
    assert_eq!(hits(&site), (5.0, 1.0));
}

/// The HTTP/1.1 fast path (`src/fast_path.rs`) answers a fresh hit byte for byte as the edge's
/// first hook does once pingora made a session (a header the fast path does not know sends the
/// request there), with the same access log line; a request with a cookie goes to the app
/// without the cache, and a path that names a file in the web root (put there after the page was
/// stored) is that file's, as on the full path.
#[test]
fn the_fast_path_answers_a_fresh_hit_as_the_full_path_does() {
    let (site, app, _edge) = edge();
    let fast_count = || metric(&site.metrics(), "onebox_edge_fast_path_responses_total");
    let request = |path: &str, args: &[&str]| {
        let url = site.https(path);
        let mut all = vec!["-k", "-i", "--http1.1"];
        all.extend_from_slice(args);
        all.push(&url);
        let out = site.curl(&all);
        assert!(out.status.success(), "{all:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (path, args) in [
        ("/etag", vec![]),
        ("/page?x=1", vec!["-H", "Accept-Encoding: gzip"]),
        ("/etag", vec!["-I"]),
        ("/etag", vec!["-H", "Host: WWW.foobar.com:443"]),
    ] {
        request(path, &[&args[..], &["-H", "X-Warm: 1"]].concat());
        let before = fast_count();
        let fast = request(path, &args);
        assert_eq!(
            fast_count() - before,
            1.0,
            "{path} {args:?}: not the fast path"
        );
        let full = request(path, &[&args[..], &["-H", "X-Full-Path: 1"]].concat());
        assert_eq!(
            fast_count() - before,
            1.0,
            "{path} {args:?}: not the full path"
        );
        assert!(fast.contains("X-Cache: HIT"), "{fast}");
        assert_eq!(blanked(&fast), blanked(&full), "{path} {args:?}");
        let line = |text: &str| access_log_line(&site, text);
        assert_eq!(line(&fast), line(&full), "{path} {args:?}");
        assert!(line(&fast).ends_with(" cache ID"), "{}", line(&fast));
    }
    // Stored twice: `www.foobar.com:443` is another key than `www.foobar.com:PORT`.
    assert_eq!(app.count("GET", "/etag"), 2);
    // A cookie: to the app without the cache (by the fast path's proxy, `tests/fast_proxy.rs`).
    let before = fast_count();
    let with_cookie = request("/etag", &["-H", "Cookie: a=b"]);
    assert_eq!(fast_count() - before, 1.0);
    assert!(with_cookie.contains("X-Cache: BYPASS"), "{with_cookie}");
    assert_eq!(app.count("GET", "/etag"), 3);
    // A file put in the web root under the page's path is served, not the stored page.
    std::fs::write(site.www().join("etag"), "a file\n").unwrap();
    let file = request("/etag", &[]);
    assert!(file.ends_with("\r\n\r\na file\n"), "{file}");
    assert_eq!(app.count("GET", "/etag"), 3);
}
