//! The Prometheus metrics on `[app] metrics_listen`: requests by route template and status,
//! logins by result, database errors; loopback only.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use std::process::Command;

/// The value of the series `series` (name and labels, exactly as exposed) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn counts_requests_by_route_logins_and_database_errors() {
    let port = onebox_testkit::free_port();
    let (_db, app) = app_with_admin(&format!("metrics_listen = \"127.0.0.1:{port}\"")).await;
    let c = client();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let r = send(c.get(&metrics_url)).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/openmetrics-text"));
    let before = r.text().await.unwrap();
    for result in ["success", "failure", "throttled", "busy", "error"] {
        let series = format!("onebox_app_logins_total{{result=\"{result}\"}}");
        assert_eq!(value(&before, &series), Some(0.0), "{series} in {before}");
    }
    for kind in ["unavailable", "query"] {
        let series = format!("onebox_app_database_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(value(&before, &series), Some(0.0), "{series} in {before}");
    }

    assert_eq!(status(c.get(app.url("/"))).await, 200);
    for id in ["1", "2", "zzz"] {
        assert_eq!(status(c.get(app.url(&format!("/posts/{id}")))).await, 404);
    }
    for path in ["/nowhere", "/secret-12345"] {
        assert_eq!(status(c.get(app.url(path))).await, 404);
    }
    assert_eq!(
        status(api_login(&c, &app, "admin", "wrong-password")).await,
        401
    );
    assert_eq!(
        status(api_login(&c, &app, "admin", "admin-password-1")).await,
        200
    );
    // The metrics are not on the site's own port.
    assert_eq!(status(c.get(app.url("/metrics"))).await, 404);

    let text = text(c.get(&metrics_url)).await;
    let requests = |route: &str, method: &str, status: u16| {
        value(
            &text,
            &format!(
                "onebox_app_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("/", "GET", 200), Some(1.0), "{text}");
    assert_eq!(requests("/posts/{id}", "GET", 404), Some(3.0), "{text}");
    assert_eq!(requests("unmatched", "GET", 404), Some(3.0), "{text}");
    assert_eq!(requests("/api/login", "POST", 401), Some(1.0), "{text}");
    assert_eq!(requests("/api/login", "POST", 200), Some(1.0), "{text}");
    assert!(
        !text.contains("secret-12345") && !text.contains("zzz"),
        "raw paths: {text}"
    );
    assert_eq!(
        value(&text, "onebox_app_logins_total{result=\"failure\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "onebox_app_logins_total{result=\"success\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_metrics_address_off_loopback_is_refused_naming_the_key() {
    let dir = TempDir::new("metrics");
    let config = write_config(&dir.0, "metrics_listen = \"0.0.0.0:9102\"");
    let out = Command::new(binary())
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("app.metrics_listen") && err.contains("loopback"),
        "{err}"
    );
}
