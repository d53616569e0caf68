//! Certificates from Debian's pebble (a real ACME CA, real validation through the edge's own
//! listeners; names resolved by pebble-challtestsrv to 127.0.0.1, never through real DNS).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::path::Path;

/// Whether curl verifies the edge's certificate for www.foobar.com against `root`.
fn verifies(site: &Site, root: &Path) -> bool {
    let out = site.curl(&[
        "--fail",
        "--cacert",
        root.to_str().unwrap(),
        "-o",
        "/dev/null",
        &site.https("/hello.txt"),
    ]);
    out.status.success()
}

fn issue_and_reuse(challenge: &str) {
    let ports = Ports::new();
    let upstream = Upstream::start();
    let mut pebble = Pebble::start(ports.http, ports.https);
    let site = Site::new(ports, upstream.port, "");
    std::fs::write(site.www().join("hello.txt"), "hello\n").unwrap();
    site.append(&pebble.acme_toml(challenge));

    let mut edge = site.start_edge("edge1.log");
    let root = pebble.root();
    // Before issuance the self-signed stand-in is served: HTTPS works, but does not verify.
    // (Issuance can be quick, so only the eventual state is asserted.)
    wait_until(
        90,
        &format!(
            "a pebble-issued certificate ({challenge}); edge log:\n{}\npebble log:\n{}",
            edge.log_text(),
            pebble.log_text()
        ),
        || verifies(&site, &root),
    );
    // The validation really went through the edge's own listener for this challenge type.
    let expected = if challenge == "http-01" {
        "answered an ACME HTTP-01 validation"
    } else {
        "answered an ACME TLS-ALPN-01 validation"
    };
    assert!(edge.log_text().contains(expected), "{}", edge.log_text());
    // Both names are on the certificate.
    let apex = site.curl(&[
        "--fail",
        "--cacert",
        root.to_str().unwrap(),
        "-o",
        "/dev/null",
        &format!("https://foobar.com:{}/hello.txt", ports.https),
    ]);
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

#[test]
fn ca_down_keeps_serving_self_signed_and_retries_with_backoff() {
    let ports = Ports::new();
    let upstream = Upstream::start();
    let mut pebble = Pebble::start(ports.http, ports.https);
    let site = Site::new(ports, upstream.port, "");
    std::fs::write(site.www().join("hello.txt"), "hello\n").unwrap();
    site.append(&pebble.acme_toml("http-01"));
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
