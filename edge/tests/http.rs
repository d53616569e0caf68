//! The edge's HTTP behaviour against the real binary, with curl and raw sockets: redirects,
//! static files (traversal, validators, ranges, precompressed siblings), the proxy, limits.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One edge (self-signed certificate, no ACME) with a web root and a live upstream.
fn edge_with_files(extra: &str) -> (Site, Upstream, Proc) {
    let upstream = Upstream::start();
    let site = Site::new(
        Ports::new(),
        upstream.port,
        &format!("{extra}\n[edge.acme]\nca = \"off\"\n"),
    );
    let www = site.www();
    std::fs::create_dir_all(www.join("docs")).unwrap();
    std::fs::create_dir_all(www.join("empty")).unwrap();
    std::fs::write(www.join("hello.txt"), "hello world\n").unwrap();
    std::fs::write(www.join("docs/index.html"), "<h1>docs</h1>\n").unwrap();
    std::fs::write(www.join("app.js"), "console.log(1)\n").unwrap();
    std::fs::write(www.join("app.js.br"), "BROTLI").unwrap();
    std::fs::write(www.join("app.js.gz"), "GZIP").unwrap();
    std::fs::write(www.join(".env"), "SECRET=1\n").unwrap();
    std::fs::write(site.path("outside.txt"), "outside\n").unwrap();
    std::os::unix::fs::symlink(site.path("outside.txt"), www.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(www.join("hello.txt"), www.join("inside.txt")).unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(www.join("big.bin"), &big).unwrap();
    let edge = site.start_edge("edge.log");
    (site, upstream, edge)
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Sends raw bytes to `port` and returns everything read until close or timeout.
fn raw(port: u16, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn http_redirects_to_https_and_answers_only_known_acme_tokens() {
    let (site, _up, _edge) = edge_with_files("");
    let out = site.curl(&["-i", &site.http("/a/b?c=d")]);
    let t = text(&out);
    assert_eq!(status_of(&out), 308, "{t}");
    assert_eq!(
        header(&t, "location"),
        Some(format!("https://www.foobar.com:{}/a/b?c=d", site.ports.https).as_str()),
        "{t}"
    );
    let out = site.curl(&[
        "-i",
        &site.http("/.well-known/acme-challenge/unknown-token"),
    ]);
    assert_eq!(status_of(&out), 404, "{}", text(&out));
    // An unknown Host is not redirected anywhere.
    let out = site.curl(&["-i", &format!("http://other.example:{}/", site.ports.http)]);
    assert_eq!(status_of(&out), 421, "{}", text(&out));
}

#[test]
fn static_files_with_types_validators_and_index() {
    let (site, _up, edge) = edge_with_files("");
    let out = site.curl(&["-k", "-i", &site.https("/hello.txt")]);
    let t = text(&out);
    assert_eq!(status_of(&out), 200, "{t}");
    assert!(t.ends_with("hello world\n"), "{t}");
    assert_eq!(
        header(&t, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&t, "content-length"), Some("12"));
    assert_eq!(header(&t, "x-content-type-options"), Some("nosniff"));
    // No HSTS with the self-signed stand-in.
    assert_eq!(header(&t, "strict-transport-security"), None, "{t}");
    let etag = header(&t, "etag").unwrap().to_string();
    let lm = header(&t, "last-modified").unwrap().to_string();

    let out = site.curl(&[
        "-k",
        "-i",
        "-H",
        &format!("If-None-Match: {etag}"),
        &site.https("/hello.txt"),
    ]);
    assert_eq!(status_of(&out), 304, "{}", text(&out));
    let out = site.curl(&[
        "-k",
        "-i",
        "-H",
        "If-None-Match: \"other\"",
        &site.https("/hello.txt"),
    ]);
    assert_eq!(status_of(&out), 200);
    let out = site.curl(&[
        "-k",
        "-i",
        "-H",
        &format!("If-Modified-Since: {lm}"),
        &site.https("/hello.txt"),
    ]);
    assert_eq!(status_of(&out), 304, "{}", text(&out));
    let out = site.curl(&[
        "-k",
        "-i",
        "-H",
        "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT",
        &site.https("/hello.txt"),
    ]);
    assert_eq!(status_of(&out), 200);

    // Directories: index.html, and a redirect to add the slash.
    let out = site.curl(&["-k", "-i", &site.https("/docs/")]);
    assert_eq!(status_of(&out), 200);
    assert!(text(&out).contains("<h1>docs</h1>"));
    assert_eq!(
        header(&text(&out), "content-type"),
        Some("text/html; charset=utf-8")
    );
    let out = site.curl(&["-k", "-i", &site.https("/docs?x=1")]);
    assert_eq!(status_of(&out), 308);
    assert_eq!(header(&text(&out), "location"), Some("/docs/?x=1"));
    // HEAD: headers only.
    let out = site.curl(&["-k", "-I", &site.https("/hello.txt")]);
    assert_eq!(status_of(&out), 200);
    assert_eq!(header(&text(&out), "content-length"), Some("12"));
    // A symlink inside the root is fine.
    let out = site.curl(&["-k", &site.https("/inside.txt")]);
    assert_eq!(text(&out), "hello world\n");
    // One access log line per request on stdout.
    assert!(
        edge.log_text().contains("\"GET /hello.txt HTTP/2.0\" 200")
            || edge.log_text().contains("/hello.txt HTTP/2.0\" 200"),
        "{}",
        edge.log_text()
    );
}

/// Over HTTP/2, the fields every answer repeats (the security headers, `Content-Type`, ...) stay
/// in the connection's HPACK table, an index each: the request id, new on every answer, goes
/// "never indexed" and pushes none of them out. (Indexed, 4 KiB of table held fewer than 60
/// ids: from then on answers sent the repeated fields whole again, each time they came back.)
#[test]
fn http2_answers_keep_their_repeated_fields_indexed() {
    let (site, _upstream, _edge) = edge_with_files("");
    let url = format!("https://127.0.0.1:{}/hello.txt", site.ports.https);
    // nghttp: 150 requests on one connection, each HEADERS frame received printed with its
    // length.
    let out = std::process::Command::new("nghttp")
        .args([
            "-nvy",
            "-m",
            "150",
            "-H",
            ":authority: www.foobar.com",
            &url,
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nghttp failed: {log}");
    let lengths: Vec<usize> = log
        .lines()
        .filter(|l| l.contains("recv HEADERS frame <length="))
        .map(|l| {
            let rest = l.split("length=").nth(1).unwrap();
            rest[..rest.find(',').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(lengths.len(), 150, "{log}");
    assert_eq!(log.matches(":status: 200").count(), 150, "{log}");
    assert!(log.contains("x-request-id: "), "{log}");
    // The first answer sends every field; the later ones, indexes, the length, the request id
    // and, when the second changes, the date.
    let first = lengths[0];
    let most = *lengths[1..].iter().max().unwrap();
    assert!(
        most * 2 < first,
        "an answer after the first sent {most} bytes of header block (the first {first}): {lengths:?}"
    );
}

#[test]
fn ranges_precompressed_siblings_and_streaming() {
    let (site, _up, _edge) = edge_with_files("");
    let out = site.curl(&["-k", "-i", "-r", "0-4", &site.https("/hello.txt")]);
    let t = text(&out);
    assert_eq!(status_of(&out), 206, "{t}");
    assert_eq!(header(&t, "content-range"), Some("bytes 0-4/12"));
    assert!(t.ends_with("\r\n\r\nhello"), "{t}");
    let out = site.curl(&["-k", "-i", "-r", "-6", &site.https("/hello.txt")]);
    assert!(text(&out).ends_with("world\n"));
    let out = site.curl(&["-k", "-i", "-r", "100-", &site.https("/hello.txt")]);
    assert_eq!(status_of(&out), 416);
    assert_eq!(header(&text(&out), "content-range"), Some("bytes */12"));

    let out = site.curl(&[
        "-k",
        "-i",
        "-H",
        "Accept-Encoding: gzip, br",
        &site.https("/app.js"),
    ]);
    let t = text(&out);
    assert_eq!(header(&t, "content-encoding"), Some("br"), "{t}");
    assert_eq!(header(&t, "vary"), Some("Accept-Encoding"));
    assert_eq!(
        header(&t, "content-type"),
        Some("text/javascript; charset=utf-8"),
        "{t}"
    );
    assert!(t.ends_with("BROTLI"));
    let out = site.curl(&[
        "-k",
        "-i",
        "-H",
        "Accept-Encoding: gzip",
        &site.https("/app.js"),
    ]);
    assert_eq!(header(&text(&out), "content-encoding"), Some("gzip"));
    let out = site.curl(&[
        "-k",
        "-i",
        "-H",
        "Accept-Encoding: gzip;q=0, identity",
        &site.https("/app.js"),
    ]);
    assert_eq!(header(&text(&out), "content-encoding"), None);
    assert!(text(&out).ends_with("console.log(1)\n"));

    // A 3 MiB file arrives whole and intact, and a range of it too.
    let dest = site.path("big.out");
    let out = site.curl(&["-k", "-o", dest.to_str().unwrap(), &site.https("/big.bin")]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(site.www().join("big.bin")).unwrap()
    );
    let out = site.curl(&["-k", "-r", "2000000-2000009", &site.https("/big.bin")]);
    let want: Vec<u8> = (2_000_000u32..2_000_010).map(|i| (i % 251) as u8).collect();
    assert_eq!(out.stdout, want);
}

#[test]
fn paths_cannot_escape_the_web_root_or_reach_dotfiles() {
    let (site, _up, _edge) = edge_with_files("");
    for path in [
        "/../outside.txt",
        "/docs/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E%2Foutside.txt",
        "/docs/..%2f..%2foutside.txt",
        "/..%5coutside.txt",
        "/docs%5c..%5c..%5coutside.txt",
        "/hello.txt%00.html",
        "/escape.txt",
        "/.env",
        "/%2eenv",
        "/docs/../.env",
    ] {
        let out = site.curl(&["-k", "-i", "--path-as-is", &site.https(path)]);
        let t = text(&out);
        assert_eq!(status_of(&out), 404, "{path}: {t}");
        assert!(
            !t.contains("outside") && !t.contains("SECRET") && !t.contains("upstream saw"),
            "{path}: {t}"
        );
    }
}

#[test]
fn proxy_forwards_with_headers_and_fails_fast_when_the_app_is_down() {
    let (site, up, _edge) = edge_with_files("");
    // Not a static file: goes to the app, with forwarding headers set by the edge (a client's
    // own X-Forwarded-For is replaced).
    let out = site.curl(&[
        "-k",
        "-i",
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        &site.https("/posts/1?x=y"),
    ]);
    let t = text(&out);
    assert_eq!(status_of(&out), 200, "{t}");
    assert!(
        t.contains("upstream saw:\nGET /posts/1?x=y HTTP/1.1"),
        "{t}"
    );
    let lower = t.to_ascii_lowercase();
    assert!(lower.contains("x-forwarded-for: 127.0.0.1\r\n"), "{t}");
    assert!(!lower.contains("6.6.6.6"), "{t}");
    assert!(lower.contains("x-forwarded-proto: https"), "{t}");
    assert!(lower.contains("x-forwarded-host: www.foobar.com"), "{t}");
    let id = header(&t, "x-request-id").unwrap();
    assert!(lower.contains(&format!("x-request-id: {id}")), "{t}");
    // POST with a body.
    let out = site.curl(&["-k", "-i", "--data", "a=1", &site.https("/form")]);
    assert_eq!(status_of(&out), 200);
    assert!(text(&out).contains("POST /form"));

    // The app goes away: a clean 502/503, not a hang (curl would time out after 10 s).
    drop(up);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let out = site.curl(&["-k", "-i", &site.https("/posts/1")]);
        let code = status_of(&out);
        assert!(code == 502 || code == 503, "{code}: {}", text(&out));
    }
    // After the health check notices, the pool is empty: 503.
    wait_until(10, "503 from an empty pool", || {
        status_of(&site.curl(&["-k", "-i", &site.https("/x")])) == 503
    });
    let m = site.metrics();
    assert!(
        metric(&m, "onebox_edge_upstream_errors_total") >= 1.0,
        "{m}"
    );
    // Static files are still served.
    assert_eq!(
        status_of(&site.curl(&["-k", "-i", &site.https("/hello.txt")])),
        200
    );
}

#[test]
fn a_failed_health_check_or_two_do_not_take_the_app_out_of_the_pool() {
    // health_fall defaults to 3: a busy app that misses one or two checks (an error, or no
    // answer within 2 s) keeps getting requests; only the third failure in a row empties the
    // pool (503), and the first passing check (health_rise = 1) refills it.
    let (site, up, _edge) = edge_with_files("");
    let get = || status_of(&site.curl(&["-k", "-i", &site.https("/posts/1")]));
    assert_eq!(get(), 200);

    // Two failed checks, then a passing one: every request in between reaches the app.
    let start = up.health_checks_answered();
    up.fail_health_checks(2);
    let mut codes = Vec::new();
    wait_until(30, "two failed health checks and a passing one", || {
        codes.push(get());
        up.health_checks_answered() >= start + 3
    });
    assert!(
        codes.iter().all(|&c| c == 200),
        "answers while the app missed two checks: {codes:?}"
    );

    // Failing for good: out of the pool after the third failure, not before.
    let start = up.health_checks_answered();
    up.fail_health_checks(usize::MAX);
    wait_until(30, "503 once the app fails its checks", || {
        let code = get();
        let answered = up.health_checks_answered() - start;
        assert!(
            code == 200 || answered >= 3,
            "{code} after only {answered} failed checks"
        );
        code == 503
    });
    up.fail_health_checks(0);
    wait_until(30, "200 after one passing check", || get() == 200);
}

#[test]
fn limits_unknown_host_and_smuggling() {
    let (site, _up, _edge) = edge_with_files(
        "\n[edge.limits]\nmax_headers = 20\nmax_header_bytes = 4096\nmax_body_bytes = 1000\n",
    );
    // Header count and size: 431.
    let mut args = vec!["-k".to_string(), "-i".to_string()];
    for i in 0..30 {
        args.push("-H".into());
        args.push(format!("X-Extra-{i}: v"));
    }
    args.push(site.https("/hello.txt"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(status_of(&site.curl(&refs)), 431);
    let big = format!("X-Big: {}", "a".repeat(5000));
    assert_eq!(
        status_of(&site.curl(&["-k", "-i", "-H", &big, &site.https("/hello.txt")])),
        431
    );
    assert_eq!(
        status_of(&site.curl(&[
            "-k",
            "-i",
            "--http1.1",
            "-H",
            &big,
            &site.https("/hello.txt")
        ])),
        431
    );
    // Body: 413 on a declared length and on a chunked body that grows past the limit.
    let body = "a".repeat(2000);
    assert_eq!(
        status_of(&site.curl(&["-k", "-i", "--data", &body, &site.https("/form")])),
        413
    );
    assert_eq!(
        status_of(&site.curl(&[
            "-k",
            "-i",
            "--http1.1",
            "--data",
            &body,
            &site.https("/form")
        ])),
        413
    );
    // Over HTTP/2, a body far past the limit (declared, then streamed without a length) still
    // gets a visible 413: the edge answers, then drops the rest of the body instead of
    // resetting the stream (which discarded the queued answer: curl saw a stream error).
    let huge = site.path("huge.bin");
    std::fs::write(&huge, vec![b'a'; 3 * 1024 * 1024]).unwrap();
    let huge_arg = format!("@{}", huge.display());
    for args in [
        vec!["--data-binary", huge_arg.as_str()],
        vec!["--data-binary", huge_arg.as_str(), "-H", "Content-Length:"],
    ] {
        let mut all = vec!["-k", "-i", "--http2"];
        all.extend(args);
        let page = site.https("/form");
        all.push(&page);
        let out = site.curl(&all);
        assert!(out.status.success(), "curl failed: {out:?}");
        assert_eq!(status_of(&out), 413, "{}", text(&out));
        assert!(text(&out).starts_with("HTTP/2 413"), "{}", text(&out));
    }
    let small = "a".repeat(500);
    assert_eq!(
        status_of(&site.curl(&["-k", "-i", "--data", &small, &site.https("/form")])),
        200
    );
    let chunked = site.curl(&[
        "-k",
        "-i",
        "--http1.1",
        "-H",
        "Transfer-Encoding: chunked",
        "--data",
        &body,
        &site.https("/form"),
    ]);
    assert_eq!(status_of(&chunked), 413, "{}", text(&chunked));
    // Unknown Host: 421 (documented choice), on HTTPS too.
    let out = site.curl(&[
        "-k",
        "-i",
        &format!("https://other.example:{}/hello.txt", site.ports.https),
    ]);
    assert_eq!(status_of(&out), 421);
    // Request smuggling: Content-Length with Transfer-Encoding is refused and the connection closed.
    let req = b"POST /form HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n";
    let answer = raw(site.ports.http, req, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "a second (smuggled) response: {answer}"
    );
    let req = b"POST /form HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde";
    let answer = raw(site.ports.http, req, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[test]
fn check_reports_config_errors_with_file_and_line() {
    let site = Site::new(Ports::new(), 1, "bogus_key = 1\n");
    let out = std::process::Command::new(common::edge_binary())
        .args(["check", "--config"])
        .arg(site.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:11:", site.config().display())) && err.contains("bogus_key"),
        "{err}"
    );
    let good = Site::new(Ports::new(), 1, "");
    let out = std::process::Command::new(common::edge_binary())
        .args(["check", "--config"])
        .arg(good.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends a header line every 300 ms (each well within any per-read timeout) for up to 10 s;
/// whether the edge closed the connection. An answer to the never-ending header fails the test.
fn trickle_until_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < Duration::from_secs(10) {
        if s.write_all(b"X-Slow: 1\r\n").is_err() {
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => panic!(
                "answered a request whose header never ended: {}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn slowloris_header_trickle_is_cut_off() {
    let (site, _up, _edge) = edge_with_files("\n[edge.limits]\nclient_timeout_secs = 2\n");
    let mut s = TcpStream::connect(("127.0.0.1", site.ports.http)).unwrap();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: www.foobar.com\r\n")
        .unwrap();
    let closed = trickle_until_closed(&mut s);
    assert!(closed, "the edge kept a trickling connection open for 10 s");
    // A normal client is unaffected.
    assert_eq!(
        status_of(&site.curl(&["-i", &site.http("/hello.txt")])),
        308
    );
}

/// Reads from `s` until the whole of one response with a `Content-Length` body has arrived.
fn read_one_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && let Some(len) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok())
            && body.len() >= len
        {
            return text;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed mid-response: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn slowloris_on_a_kept_alive_connection_is_cut_off_too() {
    let (site, _up, _edge) = edge_with_files("\n[edge.limits]\nclient_timeout_secs = 2\n");
    // Plain HTTP: a first, normal request is answered and the connection kept alive …
    let mut s = TcpStream::connect(("127.0.0.1", site.ports.http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
        .unwrap();
    let first = read_one_response(&mut s);
    assert!(first.starts_with("HTTP/1.1 308"), "{first}");
    // … then an idle second (under the keep-alive timeout) does not count against the next
    // header, which is answered when it comes whole …
    std::thread::sleep(Duration::from_millis(2500));
    s.write_all(b"GET /b HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
        .unwrap();
    let second = read_one_response(&mut s);
    assert!(second.starts_with("HTTP/1.1 308"), "{second}");
    // … but a third header trickled in a line every 300 ms is cut off at its deadline.
    s.write_all(b"GET /c HTTP/1.1\r\nHost: www.foobar.com\r\n")
        .unwrap();
    let closed = trickle_until_closed(&mut s);
    assert!(
        closed,
        "the edge kept a trickling keep-alive request open for 10 s"
    );

    // HTTPS, HTTP/1.1: the same trickle on the second request of a TLS connection.
    let mut ssl = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-alpn", "http/1.1", "-servername"])
        .arg("www.foobar.com")
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", site.ports.https))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut to_edge = ssl.stdin.take().unwrap();
    to_edge
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
        .unwrap();
    to_edge
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: www.foobar.com\r\n")
        .unwrap();
    let start = std::time::Instant::now();
    let mut exited = None;
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(status) = ssl.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        let _ = to_edge.write_all(b"X-Slow: 1\r\n");
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = ssl.kill();
    let mut answers = String::new();
    ssl.stdout
        .take()
        .unwrap()
        .read_to_string(&mut answers)
        .unwrap();
    let _ = ssl.wait();
    assert!(
        exited.is_some(),
        "the edge kept a trickling HTTPS keep-alive request open for 10 s"
    );
    assert_eq!(
        answers.matches("HTTP/1.1 200").count(),
        1,
        "exactly the first request is answered: {answers}"
    );

    // A slow request *body* on a kept-alive connection is not a slow header: an upload at
    // 1 KiB/s that takes longer than the 2 s header deadline goes through.
    let upload = site.path("upload.bin");
    std::fs::write(&upload, vec![b'u'; 4096]).unwrap();
    let upload_arg = format!("@{}", upload.display());
    let first_url = site.https("/hello.txt");
    let form_url = site.https("/form");
    let out = site.curl(&[
        "-k",
        "--http1.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\n",
        &first_url,
        "--next",
        "-k",
        "--http1.1",
        "-o",
        "/dev/null",
        "--limit-rate",
        "1K",
        "--data-binary",
        &upload_arg,
        "-w",
        "%{http_code} %{num_connects} %{size_upload}\n",
        &form_url,
    ]);
    assert_eq!(
        text(&out),
        "200 1\n200 0 4096\n",
        "one connection, both answered: {out:?}"
    );
}

#[test]
fn a_taken_port_is_a_clear_error_not_a_retry_loop() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ports = Ports::new();
    ports.https = taken.local_addr().unwrap().port();
    let site = Site::new(ports, 1, "\n[edge.acme]\nca = \"off\"\n");
    let out = std::process::Command::new(common::edge_binary())
        .arg("--config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{}", ports.https)),
        "{err}"
    );
}
