//! Certificates from Debian's pebble (a real ACME CA, real validation through the edge's own
//! listeners; names resolved by pebble-challtestsrv to 127.0.0.1, never through real DNS).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// Whether curl verifies the edge's certificate for www.foobar.com against `root`.
fn verifies(site: &Site, root: &Path) -> bool {
    verifies_host(site, root, "www.foobar.com").status.success()
}

/// curl of `https://host:port/hello.txt`, verifying the certificate with `root` only.
fn verifies_host(site: &Site, root: &Path, host: &str) -> std::process::Output {
    site.curl(&[
        "--fail",
        "--cacert",
        root.to_str().unwrap(),
        "-o",
        "/dev/null",
        &format!("https://{host}:{}/hello.txt", site.ports.https),
    ])
}

/// A site whose edge orders its certificate by `challenge` from a pebble of its own, with
/// `/hello.txt` to fetch; the app it proxies to lives as long as it does.
struct AcmeSite {
    site: Site,
    pebble: Pebble,
    _upstream: Upstream,
}

impl AcmeSite {
    fn new(challenge: &str) -> AcmeSite {
        let ports = Ports::new();
        let (http, https) = (ports.http, ports.https);
        AcmeSite::validated_at(ports, http, https, challenge)
    }

    /// The same, with pebble's HTTP-01 validations sent to `validation_http` and its
    /// TLS-ALPN-01 validations to `validation_tls` (the edge's ports, or something in front of
    /// them).
    fn validated_at(
        ports: Ports,
        validation_http: u16,
        validation_tls: u16,
        challenge: &str,
    ) -> AcmeSite {
        let upstream = Upstream::start();
        let pebble = Pebble::start(validation_http, validation_tls);
        let site = Site::new(ports, upstream.port, "");
        std::fs::write(site.www().join("hello.txt"), "hello\n").unwrap();
        site.append(&pebble.acme_toml(challenge));
        AcmeSite {
            site,
            pebble,
            _upstream: upstream,
        }
    }
}

/// Waits (`secs` at most) until `edge` serves a certificate for www.foobar.com that verifies
/// against pebble's `root`; panics with both logs if it does not.
fn await_certificate(site: &Site, pebble: &Pebble, root: &Path, secs: u64, edge: &Proc) {
    let issued = onebox_testkit::try_wait_until(
        Duration::from_secs(secs),
        "a pebble-issued certificate",
        || verifies(site, root),
    );
    if let Err(e) = issued {
        panic!(
            "{e}; edge log:\n{}\npebble log:\n{}",
            edge.log_text(),
            pebble.log_text()
        );
    }
}

fn issue_and_reuse(challenge: &str) {
    let AcmeSite {
        site,
        mut pebble,
        _upstream,
    } = AcmeSite::new(challenge);
    let mut edge = site.start_edge("edge1.log");
    let root = pebble.root();
    // Before issuance the self-signed stand-in is served: HTTPS works, but does not verify.
    // (Issuance can be quick, so only the eventual state is asserted.)
    await_certificate(&site, &pebble, &root, 90, &edge);
    // The validation really went through the edge's own listener for this challenge type.
    let expected = if challenge == "http-01" {
        "answered an ACME HTTP-01 validation"
    } else {
        "answered an ACME TLS-ALPN-01 validation"
    };
    assert!(edge.log_text().contains(expected), "{}", edge.log_text());
    // Both names are on the certificate.
    let apex = verifies_host(&site, &root, "foobar.com");
    assert!(
        apex.status.success(),
        "apex: {}",
        String::from_utf8_lossy(&apex.stderr)
    );
    let m = site.metrics();
    assert_eq!(metric(&m, "onebox_edge_certificate_from_ca"), 1.0, "{m}");
    assert!(
        metric(&m, "onebox_edge_certificate_expiry_timestamp_seconds") > 1.0e9,
        "{m}"
    );
    assert_eq!(
        metric(&m, "onebox_edge_acme_certificates_issued_total"),
        1.0,
        "{m}"
    );
    // HSTS once the CA's certificate is served.
    let head = site.curl(&[
        "-i",
        "--cacert",
        root.to_str().unwrap(),
        &site.https("/hello.txt"),
    ]);
    let text = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        text.contains("strict-transport-security: max-age="),
        "{text}"
    );
    // The same over HTTP/1.1 from the fast path (a cached file: asked twice) as from the full
    // path (a header the fast path does not know), HSTS included (`src/fast_path.rs`).
    let h1 = |extra: &[&str]| {
        let url = site.https("/hello.txt");
        let mut args = vec!["-i", "--http1.1", "--cacert", root.to_str().unwrap(), &url];
        args.extend(extra);
        let out = site.curl(&args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                !l.starts_with("date:") && !l.starts_with("x-request-id:")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    h1(&[]);
    let fast_before = metric(&site.metrics(), "onebox_edge_fast_path_responses_total");
    let fast = h1(&[]);
    assert_eq!(
        metric(&site.metrics(), "onebox_edge_fast_path_responses_total") - fast_before,
        1.0
    );
    assert!(
        fast.contains("Strict-Transport-Security: max-age="),
        "{fast}"
    );
    assert_eq!(fast, h1(&["-H", "X-Full-Path: 1"]));
    // The account and certificate are private files.
    for entry in std::fs::read_dir(site.path("state/acme")).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077,
            0
        );
    }
    edge.kill();

    // Restart with pebble stopped: the cached certificate is served at once, no new order.
    pebble.stop();
    let edge2 = site.start_edge("edge2.log");
    wait_until(10, "the cached certificate", || verifies(&site, &root));
    let m = site.metrics();
    assert_eq!(
        metric(&m, "onebox_edge_acme_certificates_issued_total"),
        0.0,
        "{m}"
    );
    assert_eq!(metric(&m, "onebox_edge_acme_errors_total"), 0.0, "{m}");
    assert!(
        edge2.log_text().contains("using the cached certificate"),
        "{}",
        edge2.log_text()
    );
}

#[test]
fn http_01_issues_verifies_and_restart_reuses_the_certificate() {
    issue_and_reuse("http-01");
}

#[test]
fn tls_alpn_01_issues_verifies_and_restart_reuses_the_certificate() {
    issue_and_reuse("tls-alpn-01");
}

/// A CA that refuses a request's nonce (`badNonce`: pebble at 30% here, its default 5%; Let's
/// Encrypt now and then) gets that request again with a new nonce (RFC 8555 §6.5): the first
/// order brings the certificate, no ACME error. Before (rustls-acme as published), the whole
/// order failed and was made again after the backoff: with about a dozen signed requests an
/// order, 30% refused, almost every first order failed.
#[test]
fn a_refused_nonce_costs_a_request_not_the_order() {
    first_order_issues(AcmeSite::new("http-01"), |pebble| pebble.reject_nonces(30));
}

/// A CA that takes its time to validate (pebble pausing up to 4 s first: under load, or
/// validating from far away) finds the challenge answered once and the authorization polled
/// (RFC 8555 §7.5.1): the first order brings the certificate, no ACME error. Before, rustls-acme
/// sent the challenge again at each look that found the authorization pending; pebble validated
/// again for each, and a validation that came after the first had succeeded found the token
/// gone (404): the authorization invalid, the order failed and made again after the backoff
/// (seen in the image's seeded boots under TCG).
#[test]
fn a_slow_validation_is_polled_not_asked_for_again() {
    first_order_issues(AcmeSite::new("http-01"), |pebble| {
        pebble.pause_validations(4)
    });
}

/// The names of an order are validated at once: every name's challenge is answered before any
/// of them is valid, so a certificate for several names waits for the slowest validation, not
/// for their sum (a second or two each at Let's Encrypt; half a second each under the image's
/// TCG boots). pebble's validations go through a [`ValidationGate`] that holds each until one
/// has come for each of the site's two names: the first order brings the certificate, no ACME
/// error. Before (rustls-acme as published), the second name's challenge was answered only once
/// the first name's authorization was valid, which the gate never lets happen: no certificate.
#[test]
fn the_names_of_an_order_are_validated_at_once() {
    let ports = Ports::new();
    let gate = ValidationGate::start(Validation::Http01, ports.http, 2, Duration::ZERO);
    let https = ports.https;
    first_order_issues(
        AcmeSite::validated_at(ports, gate.port, https, "http-01"),
        |_| {},
    );
    assert_eq!(gate.names(), 2, "one order, two names");
}

/// An authorization is looked at once the edge has answered its validation (RFC 8555 §7.5.1:
/// a client that can tell when the CA validated polls then), not only when the schedule of
/// looks (250 ms, 500 ms, 1 s, 2 s, 4 s ... after the challenge) comes to it. A
/// [`ValidationGate`] holds pebble's HTTP-01 validations for 4 s: the schedule's looks at
/// 0.25-3.75 s find both authorizations pending and its next is at 7.75 s; each is found valid
/// by the look that follows its validation. Before, by the 7.75 s look.
#[test]
fn an_authorization_is_looked_at_once_its_validation_came() {
    let ports = Ports::new();
    let gate = ValidationGate::start(Validation::Http01, ports.http, 2, Duration::from_secs(4));
    let https = ports.https;
    let acme = AcmeSite::validated_at(ports, gate.port, https, "http-01");
    looked_at_after_validation(first_order_issues(acme, |_| {}));
}

/// The same for TLS-ALPN-01, where the validation is a TLS handshake with `acme-tls/1` that the
/// edge's certificate resolver answers: the gate holds pebble's handshakes (told apart by their
/// SNI) for 4 s, and each authorization is found valid by the look that follows its
/// validation. Before, by the 7.75 s look.
#[test]
fn an_authorization_is_looked_at_once_its_tls_alpn_validation_came() {
    let ports = Ports::new();
    let gate = ValidationGate::start(
        Validation::TlsAlpn01,
        ports.https,
        2,
        Duration::from_secs(4),
    );
    let http = ports.http;
    let acme = AcmeSite::validated_at(ports, http, gate.port, "tls-alpn-01");
    let log = first_order_issues(acme, |_| {});
    assert_eq!(gate.names(), 2, "one order, two names");
    looked_at_after_validation(log);
}

/// Asserts that the edge's `log` says each of the site's two authorizations was found valid by
/// the look that followed its validation.
fn looked_at_after_validation(log: String) {
    for name in ["foobar.com", "www.foobar.com"] {
        let found =
            format!("authorization for {name} valid (found by a look after its validation)");
        assert!(log.contains(&found), "no {found:?} in the edge log:\n{log}");
    }
}

/// What a [`ValidationGate`] stands in front of, and how it tells the names apart.
#[derive(Clone, Copy)]
enum Validation {
    /// The edge's HTTP port: a validation is a request for its challenge's token.
    Http01,
    /// The edge's HTTPS port: a validation is a TLS handshake whose ClientHello names (SNI)
    /// the name being validated.
    TlsAlpn01,
}

impl Validation {
    /// Whether `head` (what was read of a validation connection) is whole: an HTTP request's
    /// head, or the TLS record carrying the ClientHello.
    fn complete(self, head: &[u8]) -> bool {
        match self {
            Validation::Http01 => head.windows(4).any(|w| w == b"\r\n\r\n"),
            Validation::TlsAlpn01 => {
                head.len() >= 5
                    && head.len() >= 5 + usize::from(u16::from_be_bytes([head[3], head[4]]))
            }
        }
    }

    /// What `head` validates: the challenge token, or the name in the ClientHello's SNI.
    fn name(self, head: &[u8]) -> Option<String> {
        match self {
            Validation::Http01 => String::from_utf8_lossy(head)
                .split_whitespace()
                .nth(1)
                .and_then(|path| path.strip_prefix("/.well-known/acme-challenge/"))
                .map(str::to_owned),
            Validation::TlsAlpn01 => client_hello_sni(head),
        }
    }
}

/// The host name of the server_name extension of the ClientHello in the TLS record `record`
/// (RFC 8446 §4.1.2, RFC 6066 §3), if there is one.
fn client_hello_sni(record: &[u8]) -> Option<String> {
    // record header (5), handshake type and length (4), version (2), random (32)
    let mut at = 5 + 4 + 2 + 32;
    let byte = |at: usize| record.get(at).copied().map(usize::from);
    let u16_at = |at: usize| Some(byte(at)? << 8 | byte(at + 1)?);
    at += 1 + byte(at)?; // session id
    at += 2 + u16_at(at)?; // cipher suites
    at += 1 + byte(at)?; // compression methods
    let end = at + 2 + u16_at(at)?;
    at += 2;
    while at + 4 <= end {
        let (kind, len) = (u16_at(at)?, u16_at(at + 2)?);
        if kind == 0 {
            // server_name list (2), name type (1: host_name = 0), name length (2), name
            let name_len = u16_at(at + 4 + 3)?;
            let name = record.get(at + 4 + 5..at + 4 + 5 + name_len)?;
            return String::from_utf8(name.to_vec()).ok();
        }
        at += 4 + len;
    }
    None
}

/// Between pebble's validations and the edge's port: holds every validation until validations
/// for `names` different names (challenge tokens, or SNI names) have come and `hold` has passed
/// since the first, then forwards them all, and every later one, to the edge.
struct ValidationGate {
    port: u16,
    state: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    names: HashSet<String>,
    first: Option<std::time::Instant>,
    open: bool,
    closed: bool,
}

impl ValidationGate {
    fn start(kind: Validation, edge_port: u16, names: usize, hold: Duration) -> ValidationGate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new((Mutex::new(GateState::default()), Condvar::new()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let state = shared.clone();
                if state.0.lock().unwrap().closed {
                    return;
                }
                std::thread::spawn(move || Self::pass(kind, conn, edge_port, names, hold, &state));
            }
        });
        ValidationGate { port, state }
    }

    /// One validation: its request (or ClientHello) read, held until the gate opens, then
    /// relayed.
    fn pass(
        kind: Validation,
        mut from: TcpStream,
        edge_port: u16,
        names: usize,
        hold: Duration,
        state: &(Mutex<GateState>, Condvar),
    ) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !kind.complete(&head) && head.len() < 16 * 1024 {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let name = kind.name(&head);
        {
            let (lock, opened) = state;
            let mut gate = lock.lock().unwrap();
            if let Some(name) = name {
                gate.names.insert(name);
            }
            let first = *gate.first.get_or_insert_with(std::time::Instant::now);
            while !gate.open && !gate.closed {
                let held = first.elapsed();
                if gate.names.len() >= names && held >= hold {
                    gate.open = true;
                    opened.notify_all();
                } else if gate.names.len() >= names {
                    gate = opened.wait_timeout(gate, hold - held).unwrap().0;
                } else {
                    gate = opened.wait(gate).unwrap();
                }
            }
            if gate.closed {
                return;
            }
        }
        relay(from, edge_port, &head);
    }

    /// How many different names (challenge tokens, SNI names) were validated through it.
    fn names(&self) -> usize {
        self.state.0.lock().unwrap().names.len()
    }
}

impl Drop for ValidationGate {
    fn drop(&mut self) {
        let (lock, opened) = &*self.state;
        lock.lock().unwrap().closed = true;
        opened.notify_all();
        // Wakes the accepting thread, which then ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// An order travels over kept connections to the CA (HTTP/1.1 keep-alive), not a connection
/// and TLS handshake per request: a [`ConnectionCounter`] between the edge and pebble's ACME
/// port counts the TCP connections of the first order (directory, account, order, two
/// authorizations polled side by side, challenges, finalize, certificate: about fifteen
/// requests, and the account's URL asked for afterwards for the CAA record): 3-4, one more for
/// each request made while the others' connections are busy (7 once in the CI, with the image's
/// boots and the other test binaries beside it, so the bound is 10). Before (rustls-acme's own
/// HTTP client, async-web-client), each request opened one: 18-19.
#[test]
fn an_order_keeps_its_connections_to_the_ca() {
    let acme = AcmeSite::new("http-01");
    let counter = ConnectionCounter::start(acme.pebble.ports().directory);
    let config = std::fs::read_to_string(acme.site.config())
        .unwrap()
        .replace(
            &acme.pebble.directory(),
            &format!("https://127.0.0.1:{}/dir", counter.port),
        );
    std::fs::write(acme.site.config(), config).unwrap();
    first_order_issues(acme, |_| {});
    let connections = counter.connections();
    eprintln!("{connections} connections to the CA for the first order");
    assert!(
        (1..=10).contains(&connections),
        "{connections} connections to the CA for one order"
    );
}

/// A TCP relay in front of `port` on 127.0.0.1 that counts the connections it relays.
struct ConnectionCounter {
    port: u16,
    accepted: Arc<Mutex<usize>>,
}

impl ConnectionCounter {
    fn start(to: u16) -> ConnectionCounter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(from) = conn else { continue };
                *count.lock().unwrap() += 1;
                std::thread::spawn(move || relay(from, to, &[]));
            }
        });
        ConnectionCounter { port, accepted }
    }

    /// How many connections came so far.
    fn connections(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

/// Relays `from` to 127.0.0.1:`to`, `head` (what was read of `from` already) first, until either
/// side closes.
fn relay(mut from: TcpStream, to: u16, head: &[u8]) {
    let Ok(mut to) = TcpStream::connect(("127.0.0.1", to)) else {
        return;
    };
    if to.write_all(head).is_err() {
        return;
    }
    let (Ok(mut from_rest), Ok(mut to_back)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || std::io::copy(&mut from_rest, &mut to));
    let _ = std::io::copy(&mut to_back, &mut from);
}

/// `acme`'s pebble set up by `setup`; the edge's first order brings the certificate, with no
/// ACME error. Returns the edge's log.
fn first_order_issues(acme: AcmeSite, setup: impl FnOnce(&mut Pebble)) -> String {
    let AcmeSite {
        site,
        mut pebble,
        _upstream,
    } = acme;
    setup(&mut pebble);
    let edge = site.start_edge("edge.log");
    let root = pebble.root();
    await_certificate(&site, &pebble, &root, 90, &edge);
    let m = site.metrics();
    assert_eq!(
        metric(&m, "onebox_edge_acme_errors_total"),
        0.0,
        "{m}\nedge log:\n{}",
        edge.log_text()
    );
    assert_eq!(
        metric(&m, "onebox_edge_acme_certificates_issued_total"),
        1.0,
        "{m}"
    );
    edge.log_text()
}

#[test]
fn ca_down_keeps_serving_self_signed_and_retries_with_backoff() {
    let AcmeSite {
        site,
        mut pebble,
        _upstream,
    } = AcmeSite::new("http-01");
    pebble.stop();

    let edge = site.start_edge("edge.log");
    // HTTPS is served (self-signed stand-in) while the CA is unreachable; no HSTS with it.
    let out = site.curl(&["-k", "-i", &site.https("/hello.txt")]);
    assert_eq!(
        status_of(&out),
        200,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout)
            .to_ascii_lowercase()
            .contains("strict-transport-security")
    );
    // Failures are counted and retried with growing delays (1 s, 2 s, 4 s …): after ~4 s
    // there are a few, not hundreds, and the process is still the same one.
    wait_until(20, "ACME errors to be recorded", || {
        metric(&site.metrics(), "onebox_edge_acme_errors_total") >= 2.0
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let m = site.metrics();
    let errors = metric(&m, "onebox_edge_acme_errors_total");
    assert!(
        (2.0..=5.0).contains(&errors),
        "{errors} errors: backoff is not exponential\n{m}"
    );
    assert!(m.contains("onebox_edge_acme_last_error_info{error="), "{m}");
    assert_eq!(metric(&m, "onebox_edge_certificate_from_ca"), 0.0);
    assert!(
        edge.log_text().contains("ACME error"),
        "{}",
        edge.log_text()
    );
    let out = site.curl(&[
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &site.https("/hello.txt"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

/// The variable that tells [`in_a_namespace_without_a_route_to_the_ca`] the namespace it runs in.
const ACME_NETNS: &str = "ONEBOX_TEST_ACME_NETNS";

/// A first boot's edge starts before DHCP has given the machine its address: its orders find no
/// route to the CA, and are tried again four times a second (rustls-acme's PATCHES.md §8), not on
/// the doubling backoff that a CA which answers (or is down: `ca_down_...` above) gets, so the
/// certificate follows the network within a quarter second. The edge runs in a network namespace
/// this test makes (root only: the tests run as root) with its loopback up and no route to
/// 127.0.0.2, its CA's address: the test binary runs the test below in it, whose spawner thread,
/// and so every program it starts, is in it. Nothing could leave the machine even outside it
/// (127.0.0.2 is this machine's, where nothing listens).
#[test]
fn without_a_network_to_the_ca_an_order_is_tried_four_times_a_second() {
    let ns = format!("onebox-test-acme-{}", std::process::id());
    let ip = |args: &[&str]| {
        let st = std::process::Command::new("ip").args(args).status();
        assert!(matches!(st, Ok(s) if s.success()), "ip {args:?}: {st:?}");
    };
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    ip(&["netns", "add", &ns]);
    let _gone = Gone(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        &ns,
        "route",
        "add",
        "unreachable",
        "127.0.0.2/32",
        "table",
        "local",
    ]);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "in_a_namespace_without_a_route_to_the_ca",
            "--ignored",
            "--nocapture",
        ])
        .env(
            ACME_NETNS,
            format!(
                "{ns}:{}",
                std::fs::read_link("/proc/thread-self/ns/net")
                    .unwrap()
                    .to_string_lossy()
            ),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "{text}"
    );
}

/// The body of the test above, in its namespace (never outside one: it checks).
#[test]
#[ignore = "run by without_a_network_to_the_ca_an_order_is_tried_four_times_a_second, in a network namespace"]
fn in_a_namespace_without_a_route_to_the_ca() {
    // ONEBOX_TEST_ACME_NETNS=name:the outer test's network namespace (`net:[inode]`).
    let given = std::env::var(ACME_NETNS).expect("run by the test above, which sets it");
    let (ns, outer) = given.split_once(':').expect("name:namespace");
    let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_ne!(
        own.to_string_lossy(),
        outer,
        "not in a network namespace of its own ({ns})"
    );
    let upstream = Upstream::start();
    let site = Site::new(
        Ports::new(),
        upstream.port,
        "\n[edge.acme]\nca = \"custom\"\ndirectory_url = \"https://127.0.0.2:14000/dir\"\nemail = \"admin@foobar.com\"\n",
    );
    let edge = site.start_edge("edge.log");
    // Four failed orders: 0.75 s on this schedule, 7 s on the backoff (1, 2, 4 s).
    wait_until(30, "four failed orders", || {
        metric(&site.metrics(), "onebox_edge_acme_errors_total") >= 4.0
    });
    let log = edge.log_text();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("ACME error")).collect();
    assert!(
        said.first().is_some_and(|l| l.contains(
            "(try 1 without a network to the CA; trying again in 0.25 s): order: acme error: http request error: no network to the CA yet"
        )),
        "{log}"
    );
    // Said once a minute, not at every try; each try waited a quarter second (on the backoff the
    // fourth would wait 8 s).
    assert_eq!(said.len(), 1, "{log}");
    let m = site.metrics();
    assert_eq!(metric(&m, "onebox_edge_acme_retry_in_seconds"), 0.25, "{m}");
    // HTTPS is served meanwhile, with the self-signed stand-in.
    assert_eq!(status_of(&site.curl(&["-k", "-i", &site.https("/")])), 200);
}

/// The leaf certificate a client gets for www.foobar.com.
#[derive(Debug, Clone, PartialEq)]
struct Leaf {
    issuer: String,
    not_before: i64,
    not_after: i64,
    der: Vec<u8>,
}

fn parse_leaf(der: &[u8]) -> Leaf {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    Leaf {
        issuer: cert
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("")
            .to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        der: der.to_vec(),
    }
}

/// The certificate the edge serves for www.foobar.com, read with a rustls client.
fn served(site: &Site) -> Leaf {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("www.foobar.com").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", site.ports.https)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    parse_leaf(conn.peer_certificates().unwrap()[0].as_ref())
}

/// The leaf certificate in the cache file (key PEM first, then the chain).
fn cached(path: &Path) -> Leaf {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).unwrap();
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    parse_leaf(der.as_ref())
}

/// The ACME account file, which rustls-acme writes the moment it starts its first order (the
/// state directory starts without one).
fn account_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("account-"))
        })
}

/// A cached certificate from another CA is served as it is until two thirds of its lifetime
/// have passed, then replaced from the CA by the running process, without a restart.
///
/// TLS-ALPN-01 is the harder case for a renewal: while the old certificate is being served,
/// the HTTPS listener must hand the CA's `acme-tls/1` handshakes the challenge certificate.
#[test]
fn renews_the_cached_certificate_at_two_thirds_of_its_lifetime_without_restart() {
    let AcmeSite {
        site,
        pebble,
        _upstream,
    } = AcmeSite::new("tls-alpn-01");
    // Where the edge keeps the certificate for these names from this CA.
    let (names, cert_file) = site.cert_cache(&pebble.directory());
    let acme_dir = site.path("state/acme");
    let test_ca = TestCa::new();
    let root = pebble.root();

    // 1. Not due: a 90-day certificate issued yesterday (renewal due in 59 days) is served
    //    and left alone: no order, not even an account, while pebble stands ready.
    let t = now();
    let (nb, na) = (t - DAY, t + 89 * DAY);
    test_ca.seed(&cert_file, &names, nb, na);
    let mut edge = site.start_edge("edge-not-due.log");
    // From the very first handshake: not the self-signed stand-in until the ACME service has
    // read the cache (after a reload, clients would refuse those first connections).
    assert_eq!(
        served(&site).issuer,
        TEST_CA,
        "the first handshake after start"
    );
    assert_eq!(served(&site).not_after, na);
    let m = site.metrics();
    assert_eq!(
        metric(&m, "onebox_edge_certificate_expiry_timestamp_seconds"),
        na as f64,
        "{m}"
    );
    assert_eq!(
        metric(&m, "onebox_edge_certificate_renewal_timestamp_seconds"),
        (na - 30 * DAY) as f64,
        "{m}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(served(&site).issuer, TEST_CA);
    assert_eq!(cached(&cert_file).not_after, na);
    assert_eq!(
        account_file(&acme_dir),
        None,
        "an order was started for a certificate not due; log:\n{}",
        edge.log_text()
    );
    let m = site.metrics();
    assert_eq!(
        metric(&m, "onebox_edge_acme_certificates_issued_total"),
        0.0,
        "{m}"
    );
    edge.kill();

    // 2. Due in a few seconds: a 3-day certificate whose two-thirds point is `due`. It is
    //    served until then and replaced from pebble after, by the same process.
    let due = now() + 8;
    let (nb, na) = (due - 2 * DAY, due + DAY);
    test_ca.seed(&cert_file, &names, nb, na);
    let edge = site.start_edge("edge-due.log");
    wait_until(
        10,
        "the near-expiry cached certificate to be served",
        || served(&site).issuer == TEST_CA,
    );
    assert!(
        now() < due - 1,
        "the edge took too long to start to see the certificate before its renewal point"
    );
    let m = site.metrics();
    assert_eq!(
        metric(&m, "onebox_edge_certificate_renewal_timestamp_seconds"),
        due as f64,
        "{m}"
    );
    assert_eq!(
        metric(&m, "onebox_edge_certificate_expiry_timestamp_seconds"),
        na as f64,
        "{m}"
    );
    assert_eq!(served(&site).not_after, na);
    // Just before the renewal point: still the old certificate (which pebble's root does not
    // verify), still no order. Woken 2 s before it to the sub-second (`now()` counts whole
    // seconds: sleeping `due - 1 - now()` seconds woke up to a second late, and the two
    // handshakes below then sometimes ran past the renewal point).
    let before_due = std::time::UNIX_EPOCH + Duration::from_secs((due - 2) as u64);
    if let Ok(wait) = before_due.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(wait);
    }
    assert_eq!(served(&site).issuer, TEST_CA);
    assert!(!verifies(&site, &root));
    assert_eq!(
        account_file(&acme_dir),
        None,
        "ordered before the renewal point; log:\n{}",
        edge.log_text()
    );

    // After it: pebble's certificate, verified by curl, without a restart. (Usually a few
    // seconds; the bound is generous: a failed order is made again after 1, 2, 4 … s.)
    await_certificate(&site, &pebble, &root, 120, &edge);
    let account = account_file(&acme_dir).unwrap();
    // File times come from a coarse clock (a few ms behind): hence the 1 s of slack.
    let ordered_at_ms = std::fs::metadata(&account)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        ordered_at_ms >= (due - 1) * 1000,
        "the order started at {ordered_at_ms} ms, before the renewal point {due} s"
    );
    let new = served(&site);
    let m = site.metrics();
    eprintln!(
        "renewal: order started {} ms after the renewal point, new certificate served within {} s of it ({} ACME errors on the way, pebble rejects 5% of nonces); issued by {:?}, valid {} days",
        ordered_at_ms - due * 1000,
        now() - due,
        metric(&m, "onebox_edge_acme_errors_total"),
        new.issuer,
        (new.not_after - new.not_before) / DAY
    );
    assert_ne!(new.issuer, TEST_CA);
    assert!(new.not_after > na, "{new:?}");
    let apex = verifies_host(&site, &root, "foobar.com");
    assert!(
        apex.status.success(),
        "apex: {}",
        String::from_utf8_lossy(&apex.stderr)
    );
    assert!(
        edge.log_text()
            .contains("answered an ACME TLS-ALPN-01 validation"),
        "{}",
        edge.log_text()
    );
    // The cache holds the new certificate, written by the edge (0600).
    wait_until(10, "the cache file to hold the new certificate", || {
        cached(&cert_file) == new
    });
    let mode = std::fs::metadata(&cert_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // The metrics and the log tell.
    let m = site.metrics();
    assert_eq!(
        metric(&m, "onebox_edge_certificate_expiry_timestamp_seconds"),
        new.not_after as f64,
        "{m}"
    );
    assert_eq!(
        metric(&m, "onebox_edge_certificate_renewal_timestamp_seconds"),
        (new.not_after - (new.not_after - new.not_before) / 3) as f64,
        "{m}"
    );
    assert_eq!(
        metric(&m, "onebox_edge_acme_certificates_issued_total"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "onebox_edge_acme_renewals_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "onebox_edge_certificate_from_ca"), 1.0, "{m}");
    assert!(
        edge.log_text().contains("renewed the certificate"),
        "{}",
        edge.log_text()
    );
}
