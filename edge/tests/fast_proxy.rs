//! The HTTP/1.1 fast path's proxy (`src/fast_proxy.rs`) against the real binary and a scripted
//! app: each kind of answer an app gives (a length, chunks, a body ended by closing, HTTP/1.0,
//! no content, not modified, an informational `103` first, the purge header, `HEAD`) reaches
//! the client as the full path sends it, with what the app saw of the request the same too
//! (also a body in two pieces, a large one); one cut short ends the client's connection;
//! a kept connection the app closed is replaced without the client seeing it; an app that
//! does not answer gets the full path's `502`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The header a request sends to take the full path (the fast path knows no such header); the
/// app leaves it out of what it echoes.
const FULL: &str = "X-Full-Path: 1";

/// A scripted app on its own port, with what it counts.
struct App {
    port: u16,
    counts: Arc<Counts>,
}

/// What a scripted [`App`] counts and how it answers its health checks.
#[derive(Default)]
struct Counts {
    /// The connections it accepted.
    conns: AtomicUsize,
    /// The requests it answered, but health checks.
    served: AtomicUsize,
    /// The connections that served a request for `/length` and were then closed by the edge.
    ended: AtomicUsize,
    /// The requests for `/wait` it received.
    waiting: AtomicUsize,
    /// The requests for `/wait` whose connection the edge closed within 5 s, before any
    /// answer.
    dropped: AtomicUsize,
    /// The health checks it answered.
    checks: AtomicUsize,
    /// Whether it answers its health checks `503`.
    sick: AtomicBool,
}

impl std::ops::Deref for App {
    type Target = Counts;
    fn deref(&self) -> &Counts {
        &self.counts
    }
}

impl App {
    fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                c.conns.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                std::thread::spawn(move || serve(conn, &c));
            }
        });
        App { port, counts }
    }
}

/// The request head as the app saw it, without the full path's marker and with the request
/// id's value blanked (it differs per request).
fn echo(head: &str) -> String {
    head.split("\r\n")
        .filter(|l| !l.eq_ignore_ascii_case(FULL))
        .map(|l| match l.split_once(':') {
            Some((k, _)) if k.eq_ignore_ascii_case("x-request-id") => format!("{k}: ..."),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn serve(mut conn: TcpStream, counts: &Counts) {
    conn.set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let mut buf = Vec::new();
    let mut length = false;
    loop {
        let Some(head) = read_request(&mut conn, &mut buf) else {
            if length {
                counts.ended.fetch_add(1, Ordering::SeqCst);
            }
            return;
        };
        length |= head.starts_with("GET /length ");
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or_default().to_string();
        let target = words.next().unwrap_or_default().to_string();
        let path = target.split('?').next().unwrap_or_default().to_string();
        if path != "/healthz" {
            counts.served.fetch_add(1, Ordering::SeqCst);
        }
        let body = echo(&head);
        let head_only = method == "HEAD";
        let with_length = |status: &str, extra: &str| {
            let mut a = format!(
                "{status}\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n",
                body.len()
            );
            if !head_only {
                a.push_str(&body);
            }
            a
        };
        let (answer, close) = match path.as_str() {
            "/healthz" => {
                counts.checks.fetch_add(1, Ordering::SeqCst);
                let status = if counts.sick.load(Ordering::SeqCst) {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 3\r\n\r\nok\n");
                (answer, false)
            }
            "/length" => (
                with_length(
                    "HTTP/1.1 200 OK",
                    "X-App: a\r\nSet-Cookie: a=1; HttpOnly\r\nSet-Cookie: b=2\r\n",
                ),
                false,
            ),
            "/chunks" => {
                let (a, b) = body.split_at(body.len() / 2);
                let mut out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string();
                if !head_only {
                    out.push_str(&format!(
                        "{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    ));
                }
                (out, false)
            }
            // No length: the body ends when the connection does.
            "/until-close" => {
                let mut out = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_string();
                if !head_only {
                    out.push_str(&body);
                }
                (out, true)
            }
            "/http10" => (with_length("HTTP/1.0 200 OK", ""), true),
            "/no-content" => (
                "HTTP/1.1 204 No Content\r\nX-App: b\r\n\r\n".to_string(),
                false,
            ),
            "/etag" if head.contains("If-None-Match: \"v1\"") => (
                "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_string(),
                false,
            ),
            "/etag" => (with_length("HTTP/1.1 200 OK", "ETag: \"v1\"\r\n"), false),
            "/early" => (
                format!(
                    "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n{}",
                    with_length("HTTP/1.1 200 OK", "")
                ),
                false,
            ),
            // Fields the edge sets too (lower case, as hyper writes them), and one name twice
            // with another between.
            "/own" => (
                with_length(
                    "HTTP/1.1 200 OK",
                    "date: Mon, 01 Jan 2024 00:00:00 GMT\r\nset-cookie: a=1\r\nX-Request-Id: app\r\nx-cache: app\r\nConnection: keep-alive\r\nset-cookie: b=2\r\nX-Frame-Options: DENY\r\n",
                ),
                false,
            ),
            "/purge" => (
                with_length("HTTP/1.1 200 OK", "X-Onebox-Purge: all\r\n"),
                false,
            ),
            // A length, and the body in two writes 0.3 s apart.
            "/halves" => {
                let (a, b) = body.split_at(body.len() / 2);
                let first = format!(
                    "HTTP/1.1 200 Fine\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n\r\n{a}",
                    body.len()
                );
                if conn.write_all(first.as_bytes()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
                (b.to_string(), false)
            }
            // A body of 300,000 bytes, more than one read of the edge.
            "/big" => {
                let big: String = (0..300_000u32)
                    .map(|i| char::from(b'a' + (i % 26) as u8))
                    .collect();
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len());
                out.push_str(&big);
                (out, false)
            }
            // Half the body its length promised, then the connection closed; or the rest 3 s
            // later (past the edge's read timeout).
            "/short" | "/stall" => {
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let (a, b) = body.split_at(body.len() / 2);
                out.push_str(a);
                if path == "/short" {
                    (out, true)
                } else {
                    if conn.write_all(out.as_bytes()).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(3));
                    (b.to_string(), false)
                }
            }
            // Answers, then closes the connection without saying so.
            "/once" => (with_length("HTTP/1.1 200 OK", ""), true),
            // A first chunk at once, the end 3 s later.
            "/slowly" => {
                let first =
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\nfirst piece\n\r\n";
                if conn.write_all(first.as_bytes()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(3));
                ("0\r\n\r\n".to_string(), false)
            }
            // No answer; counts the edge closing the connection within 5 s.
            "/wait" => {
                counts.waiting.fetch_add(1, Ordering::SeqCst);
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                if matches!(std::io::Read::read(&mut conn, &mut [0; 1]), Ok(0)) {
                    counts.dropped.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
            // Never answers (within the edge's read timeout).
            "/hang" => {
                std::thread::sleep(Duration::from_secs(3));
                return;
            }
            _ => (with_length("HTTP/1.1 404 Not Found", ""), false),
        };
        if conn.write_all(answer.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// An edge (self-signed, no ACME) in front of the scripted app, with `[edge.page_cache]`
/// `enabled = page_cache` and the app's answers due within a second.
fn edge(page_cache: bool) -> (Site, App, Proc) {
    edge_with(page_cache, 1)
}

/// [`edge`] with the app's answers (each read of them) due within `read_timeout_secs`.
fn edge_with(page_cache: bool, read_timeout_secs: u64) -> (Site, App, Proc) {
    let app = App::start();
    let site = Site::new(
        Ports::new(),
        app.port,
        &format!("\n[edge.acme]\nca = \"off\"\n\n[edge.page_cache]\nenabled = {page_cache}\n"),
    );
    site.append(&format!("read_timeout_secs = {read_timeout_secs}\n"));
    let edge = site.start_edge("edge.log");
    (site, app, edge)
}

/// curl's `-i` output of a request for `path` with `args`, in the HTTP version curl's
/// `version` flag asks for.
fn curl_i(site: &Site, version: &str, path: &str, args: &[&str]) -> String {
    let url = site.https(path);
    let mut all = vec!["-k", "-i", version];
    all.extend_from_slice(args);
    all.push(&url);
    let out = site.curl(&all);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl's `-i` output of an HTTP/1.1 request for `path` with `args`.
fn request(site: &Site, path: &str, args: &[&str]) -> String {
    curl_i(site, "--http1.1", path, args)
}

fn fast_count(site: &Site) -> f64 {
    metric(&site.metrics(), "onebox_edge_fast_path_responses_total")
}

/// curl's `-i` output of an HTTP/2 request for `path` with `args`.
fn request_h2(site: &Site, path: &str, args: &[&str]) -> String {
    curl_i(site, "--http2", path, args)
}

fn direct_count(site: &Site) -> f64 {
    metric(&site.metrics(), "onebox_edge_proxied_directly_total")
}

/// The header that sends an HTTP/2 request the full way: `TE` is hop-by-hop in HTTP/1.1, so
/// pingora's proxy would take it out, and the edge's own client leaves such requests to it.
const FULL_H2: &str = "TE: trailers";

/// Every kind of answer, with the page cache on and off: the fast path's (counted by
/// `onebox_edge_fast_path_responses_total`) is byte for byte the full path's but for `Date`
/// and the request id, with the same access log line, and the app saw the same request
/// (echoed in the body: `X-Forwarded-*`, the request id, the client's other headers, `Host`
/// as the app gets it, no `Connection`).
#[test]
fn the_fast_path_proxies_every_kind_of_answer_as_the_full_path_does() {
    every_kind_of_answer_as_the_full_path(false);
}

/// HTTP/2 requests for the app go by the edge's own client too (`Edge::h2_to_app`, counted by
/// `onebox_edge_proxied_directly_total`): every kind of answer, with the page cache on and
/// off, reaches the client as pingora's proxy sends it (but for `date` and the request id),
/// the app saw the same request, and the access log line is the same.
#[test]
fn http2_requests_for_the_app_are_proxied_as_the_full_path_does() {
    every_kind_of_answer_as_the_full_path(true);
}

/// The check of the two tests above, over HTTP/1.1 or HTTP/2 (`h2`).
fn every_kind_of_answer_as_the_full_path(h2: bool) {
    type Ask = fn(&Site, &str, &[&str]) -> String;
    type Count = fn(&Site) -> f64;
    let (ask, full, count): (Ask, _, Count) = if h2 {
        (request_h2, FULL_H2, direct_count)
    } else {
        (request, FULL, fast_count)
    };
    for page_cache in [true, false] {
        let (site, _app, _edge) = edge(page_cache);
        for (path, args) in [
            (
                "/length?a=1&b=%20",
                vec!["-H", "Cookie: s=1", "-H", "Accept-Language: en"],
            ),
            ("/length", vec!["-H", "Host: WWW.foobar.com:443"]),
            // Two fields of one name: pingora's header map writes them together.
            (
                "/length",
                vec![
                    "-H",
                    "Cookie: a=1",
                    "-H",
                    "Accept: */*",
                    "-H",
                    "Cookie: b=2",
                ],
            ),
            ("/length", vec!["-I"]),
            ("/chunks", vec![]),
            ("/chunks", vec!["-I"]),
            ("/until-close", vec![]),
            ("/http10", vec![]),
            ("/no-content", vec![]),
            ("/etag", vec![]),
            ("/etag", vec!["-H", "If-None-Match: \"v1\""]),
            ("/early", vec![]),
            ("/own", vec![]),
            ("/halves", vec![]),
            ("/big", vec![]),
            // With a cookie: a purge also clears what the page cache remembers, so a request
            // without one would go through the cache again.
            ("/purge", vec!["-H", "Cookie: s=1"]),
            // (curl leaves `Connection` out of an HTTP/2 request.)
            ("/missing", vec!["-H", "Connection: keep-alive"]),
        ] {
            let what = format!("HTTP/2 {h2}, page cache {page_cache}: {path} {args:?}");
            // The first request for a URL goes through the page cache, which learns that it
            // may not keep its answers; the next ones go to the app without it.
            ask(&site, path, &[&args[..], &["-H", full]].concat());
            let before = count(&site);
            let purges = metric(&site.metrics(), "onebox_edge_page_cache_purges_total");
            let fast = ask(&site, path, &args);
            assert_eq!(count(&site) - before, 1.0, "{what}: not the fast path");
            if page_cache && path == "/purge" {
                // The purge header was taken out (compared below) and acted on.
                let now = metric(&site.metrics(), "onebox_edge_page_cache_purges_total");
                assert_eq!(now - purges, 1.0, "{what}");
            }
            let full = ask(&site, path, &[&args[..], &["-H", full]].concat());
            assert_eq!(count(&site) - before, 1.0, "{what}: not the full path");
            let version = if h2 { "HTTP/2 " } else { "HTTP/1." };
            assert!(fast.starts_with(version), "{what}: {fast}");
            if path.starts_with("/length") && args.len() > 1 {
                // What the app saw, as it echoed it (HTTP/2's names are lower case).
                let echo = fast.to_ascii_lowercase();
                for line in [
                    "x-forwarded-for: 127.0.0.1",
                    "x-forwarded-proto: https",
                    "x-forwarded-host: www.foobar.com",
                    "x-request-id: ...",
                ] {
                    assert!(echo.contains(line), "{what}: {fast}");
                }
                assert!(!fast.contains("X-Forwarded-Host: WWW"), "{what}: {fast}");
            }
            assert_eq!(blanked(&fast), blanked(&full), "{what}");
            assert_eq!(
                access_log_line(&site, &fast),
                access_log_line(&site, &full),
                "{what}"
            );
            assert!(
                access_log_line(&site, &fast).ends_with(" proxy ID"),
                "{what}"
            );
        }
    }
}

/// An HTTP/2 request the app does not answer gets the full path's `502`, with its log line.
#[test]
fn an_http2_request_the_app_does_not_answer_gets_the_full_paths_502() {
    let (site, _app, _edge) = edge(false);
    let before = direct_count(&site);
    let direct = request_h2(&site, "/hang", &[]);
    assert_eq!(direct_count(&site) - before, 1.0, "not direct");
    let full = request_h2(&site, "/hang", &["-H", FULL_H2]);
    assert!(direct.starts_with("HTTP/2 502"), "{direct}");
    assert_eq!(blanked(&direct), blanked(&full));
    assert_eq!(
        access_log_line(&site, &direct),
        access_log_line(&site, &full)
    );
}

/// A client that gives up on a request (curl's `--max-time 1`: it closes the connection)
/// while the app has not answered: the edge closes its connection to the app then, not when
/// the app's answer is due (10 s here), by either path, over HTTP/1.1 and HTTP/2 — requests
/// sent and given up in a loop do not hold the app's connections — and logs it alike.
#[test]
fn a_request_the_client_gives_up_on_is_dropped_at_the_app() {
    let (site, app, _edge) = edge_with(false, 10);
    for (version, full) in [("--http1.1", FULL), ("--http2", FULL_H2)] {
        let mut lines = vec![];
        for (how, extra) in [("direct", vec![]), ("full", vec!["-H", full])] {
            let before = app.dropped.load(Ordering::SeqCst);
            let direct = direct_count(&site);
            let args = [&["--max-time", "1"][..], &extra].concat();
            curl_i(&site, version, "/wait", &args);
            // The app's 5 s wait ends at the edge's close, or after it without one.
            std::thread::sleep(Duration::from_secs(6));
            assert_eq!(
                app.dropped.load(Ordering::SeqCst) - before,
                1,
                "{version} {how}: the edge kept the app's connection after the client left"
            );
            let direct_now = direct_count(&site) - direct;
            assert_eq!(
                direct_now,
                f64::from(u8::from(how == "direct")),
                "{version} {how}"
            );
            lines.push(last_access_log_line(&site, " /wait "));
        }
        assert_eq!(lines[0], lines[1], "{version}: the access log lines");
    }
}

/// An HTTP/1.1 client that sends more bytes (the start of a pipelined request, which pingora's
/// proxy does not take) while the app has not answered: by either path the request gets the
/// full path's `400`, the connection ends, the edge drops its connection to the app at once,
/// and the access log lines are alike.
#[test]
fn bytes_sent_while_the_app_is_awaited_get_the_full_paths_400() {
    let (site, app, _edge) = edge_with(false, 10);
    let mut answers = vec![];
    for (how, extra) in [("direct", String::new()), ("full", format!("{FULL}\r\n"))] {
        let (waiting, dropped) = (&app.waiting, &app.dropped);
        let (before, dropped_before) = (
            waiting.load(Ordering::SeqCst),
            dropped.load(Ordering::SeqCst),
        );
        let direct = direct_count(&site);
        let mut tls = tls_connect(&site, client_config(b"http/1.1", &[]));
        let head = format!("GET /wait HTTP/1.1\r\nHost: www.foobar.com\r\n{extra}\r\n");
        tls.write_all(head.as_bytes()).unwrap();
        tls.flush().unwrap();
        wait_until(5, "the app to get the request", || {
            waiting.load(Ordering::SeqCst) > before
        });
        tls.write_all(b"GET /length HTTP/1.1\r\n").unwrap();
        tls.flush().unwrap();
        let mut out = Vec::new();
        // The edge closes the connection after its answer (with or without `close_notify`).
        let _ = tls.read_to_end(&mut out);
        let answer = String::from_utf8_lossy(&out).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{how}: {answer}");
        wait_until(3, "the edge to drop the app's connection", || {
            dropped.load(Ordering::SeqCst) > dropped_before
        });
        let direct_now = direct_count(&site) - direct;
        assert_eq!(direct_now, f64::from(u8::from(how == "direct")), "{how}");
        answers.push((blanked(&answer), access_log_line(&site, &answer)));
    }
    assert_eq!(answers[0], answers[1]);
}

/// A pool of two app servers: requests for the app take turns between them by every path —
/// the HTTP/1.1 fast path, HTTP/2's direct proxy (both counted by
/// `onebox_edge_proxied_directly_total`) and pingora's proxy — each server's kept connections
/// serving its own turns; while one server's health checks fail every request goes to the
/// other, none failing, and the pool takes it back once they pass; the metrics say each
/// server's state (`onebox_edge_app_server_up`) and count its requests
/// (`onebox_edge_app_server_requests_total`).
#[test]
fn a_pool_of_two_servers_takes_turns_by_every_path() {
    let apps = [App::start(), App::start()];
    let site = Site::with_servers(
        Ports::new(),
        &[apps[0].port, apps[1].port],
        "\n[edge.acme]\nca = \"off\"\n\n[edge.page_cache]\nenabled = false\n",
    );
    site.append("health_fall = 1\n");
    let _edge = site.start_edge("edge.log");
    let served = || apps.each_ref().map(|app| app.served.load(Ordering::SeqCst));
    let paths: [(&str, &[&str], f64); 3] = [
        ("--http1.1", &[], 1.0),
        ("--http2", &[], 1.0),
        ("--http1.1", &["-H", FULL], 0.0),
    ];
    for round in 0..2 {
        for (version, args, direct) in paths {
            let (before, direct_before) = (served(), direct_count(&site));
            for _ in 0..4 {
                let out = curl_i(&site, version, "/length", args);
                assert!(
                    out.starts_with(&format!("HTTP/{} 200", &version[6..])),
                    "{out}"
                );
            }
            let now = served();
            let turns = [now[0] - before[0], now[1] - before[1]];
            assert_eq!(
                turns,
                [2, 2],
                "round {round}, {version} {args:?}: not in turn"
            );
            assert_eq!(
                direct_count(&site) - direct_before,
                4.0 * direct,
                "{version} {args:?}"
            );
        }
    }
    // The second server's checks fail: every request goes to the first; then they pass again,
    // and it is back in turn. (Checks run in rounds, one each `health_interval_secs`: a check
    // received after another answered since the change says that one's answer was taken.)
    let sick = |sick: bool| {
        apps[1].sick.store(sick, Ordering::SeqCst);
        let checks = apps[1].checks.load(Ordering::SeqCst);
        wait_until(10, "two health checks", || {
            apps[1].checks.load(Ordering::SeqCst) > checks + 1
        });
    };
    // What the metrics say of each server: whether it is up, and its requests (each one the
    // app served).
    let figures = || {
        let text = site.metrics();
        apps.each_ref().map(|app| {
            let label = format!("server=\"127.0.0.1:{}\"", app.port);
            (
                labelled(&text, "onebox_edge_app_server_up", &label),
                labelled(&text, "onebox_edge_app_server_requests_total", &label),
            )
        })
    };
    let counted = |up: [f64; 2]| {
        let served = served();
        [(up[0], served[0] as f64), (up[1], served[1] as f64)]
    };
    assert_eq!(figures(), counted([1.0, 1.0]));
    for (ill, expected) in [(true, [6, 0]), (false, [3, 3])] {
        sick(ill);
        let up = [1.0, if ill { 0.0 } else { 1.0 }];
        let before = served();
        for (version, args, _) in paths {
            for _ in 0..2 {
                let out = curl_i(&site, version, "/length", args);
                assert!(out.contains(" 200"), "{version} {args:?}: {out}");
            }
        }
        let now = served();
        let turns = [now[0] - before[0], now[1] - before[1]];
        assert_eq!(turns, expected, "the second server sick: {ill}");
        assert_eq!(figures(), counted(up), "the second server sick: {ill}");
    }
}

/// The fast path keeps its connections to the app; one the app closed since (without saying
/// so) fails before any answer and the request goes again on a new connection: the client
/// sees every answer.
#[test]
fn a_kept_connection_the_app_closed_is_replaced_unseen() {
    let (site, app, _edge) = edge(false);
    let before = fast_count(&site);
    let conns = app.conns.load(Ordering::SeqCst);
    for i in 0..4 {
        let a = request(&site, "/once", &[]);
        assert!(a.starts_with("HTTP/1.1 200 OK"), "request {i}: {a}");
    }
    assert_eq!(fast_count(&site) - before, 4.0);
    // A new connection each time (after the first, a kept one failed first).
    assert!(app.conns.load(Ordering::SeqCst) - conns >= 4);
    // A connection the app keeps is used again.
    let conns = app.conns.load(Ordering::SeqCst);
    for _ in 0..4 {
        assert!(request(&site, "/length", &[]).starts_with("HTTP/1.1 200"));
    }
    assert!(app.conns.load(Ordering::SeqCst) - conns <= 1);
}

/// An answer whose body ends before its length (the app closed the connection) or stops for
/// longer than the app's read timeout: the client gets the head and what came, then its
/// connection is closed (curl: a partial transfer) and the app's failure logged; over HTTP/2
/// its stream is reset, as by the full path; and the next request is answered in full.
#[test]
fn an_answer_cut_short_ends_the_clients_connection() {
    let (site, _app, _edge) = edge(false);
    for path in ["/short", "/stall"] {
        let before = fast_count(&site);
        let failures = || {
            let log = std::fs::read_to_string(site.path("edge.log")).unwrap();
            log.matches("upstream failed").count()
        };
        let failed = failures();
        let url = site.https(path);
        let out = site.curl(&["-k", "-i", "--http1.1", "--max-time", "5", &url]);
        assert_eq!(out.status.code(), Some(18), "{path}: {out:?}");
        assert_eq!(fast_count(&site) - before, 1.0, "{path}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{path}: {text}");
        // The body's first half: the app's echo of the request from its first line.
        assert!(
            text.contains(&format!("\r\n\r\nGET {path} HTTP/1.1")),
            "{path}: {text}"
        );
        assert_eq!(failures() - failed, 1, "{path}");
        assert!(request(&site, "/halves", &[]).contains("X-Forwarded-Host: www.foobar.com"));
        // Over HTTP/2, the edge's own client ends the stream as the full path does: reset
        // (curl's exit status the same; the head and what came are sent if they left before
        // the reset, which drops what is still queued).
        let before = direct_count(&site);
        let direct = site.curl(&["-k", "-i", "--http2", "--max-time", "5", &url]);
        assert_eq!(direct_count(&site) - before, 1.0, "{path}: not direct");
        let full = site.curl(&[
            "-k",
            "-i",
            "--http2",
            "--max-time",
            "5",
            "-H",
            FULL_H2,
            &url,
        ]);
        assert_eq!(direct.status.code(), Some(92), "{path}: {direct:?}");
        assert_eq!(full.status.code(), Some(92), "{path}: {full:?}");
        let text = String::from_utf8_lossy(&direct.stdout);
        assert!(
            text.is_empty() || text.starts_with("HTTP/2 200"),
            "{path}: {text}"
        );
        assert!(request_h2(&site, "/halves", &[]).contains("x-forwarded-host: www.foobar.com"));
    }
}

/// An app that does not answer within `read_timeout_secs`: the full path's `502`, the same
/// from both paths, and the connection closed.
#[test]
fn an_app_that_does_not_answer_gets_the_full_paths_502() {
    let (site, _app, _edge) = edge(false);
    let before = fast_count(&site);
    let fast = request(&site, "/hang", &[]);
    assert_eq!(fast_count(&site) - before, 1.0);
    let full = request(&site, "/hang", &["-H", FULL]);
    assert!(fast.starts_with("HTTP/1.1 502"), "{fast}");
    assert!(fast.contains("Connection: close"), "{fast}");
    assert_eq!(blanked(&fast), blanked(&full));
    assert_eq!(access_log_line(&site, &fast), access_log_line(&site, &full));
}

/// A connection to the app the fast path keeps is closed once idle for 20 s (`IDLE_FOR`), even
/// with no request after it (one the app closed is not held until the next request).
#[test]
fn kept_connections_to_the_app_are_closed_once_idle() {
    let (site, app, _edge) = edge(false);
    let before = fast_count(&site);
    assert!(request(&site, "/length", &[]).starts_with("HTTP/1.1 200"));
    assert_eq!(fast_count(&site) - before, 1.0);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(app.ended.load(Ordering::SeqCst), 0, "closed before 20 s");
    let deadline = std::time::Instant::now() + Duration::from_secs(35);
    while app.ended.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(app.ended.load(Ordering::SeqCst), 1, "still kept after 45 s");
}

/// A streamed answer's pieces reach the client as they come (the HTTPS stream holds small
/// writes until a flush): its first chunk is there long before its end.
#[test]
fn a_streamed_answer_is_sent_as_it_comes() {
    let (site, _app, _edge) = edge_with(false, 10);
    let before = fast_count(&site);
    let url = site.https("/slowly");
    let out = site.curl(&["-k", "-N", "--http1.1", "--max-time", "2", &url]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first piece\n",
        "{out:?}"
    );
    // Counted once answered, 3 s later.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fast_count(&site) - before, 1.0);
}
