//! Counters and gauges, and the Prometheus text endpoint that serves them on loopback.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every figure the edge exports. One instance lives for the whole process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status class: index 1..=5 for 1xx..5xx, 0 for anything else.
    responses: [AtomicU64; 6],
    /// Requests answered from the web root.
    pub static_responses: AtomicU64,
    /// Requests sent to the app upstream.
    pub proxied_requests: AtomicU64,
    /// Requests that could not be proxied (no healthy upstream, connect or read failure).
    pub upstream_errors: AtomicU64,
    /// `notAfter` of the certificate from the CA, as a Unix timestamp; 0 while none.
    pub cert_not_after: AtomicI64,
    /// When the certificate from the CA is due for renewal (two thirds into its lifetime), as a
    /// Unix timestamp; 0 while none.
    pub cert_renewal_at: AtomicI64,
    /// Whether a certificate issued by the ACME CA is being served (else the self-signed one).
    pub cert_from_ca: AtomicBool,
    /// Certificates obtained by this process.
    pub certs_issued: AtomicU64,
    /// Certificates obtained by this process to replace one it was serving (renewals).
    pub renewals: AtomicU64,
    /// ACME failures since start.
    pub acme_errors: AtomicU64,
    /// Time of the last ACME failure (Unix seconds), 0 if none.
    pub acme_last_error_time: AtomicI64,
    /// Text of the last ACME failure.
    pub acme_last_error: Mutex<String>,
}

impl Metrics {
    /// Counts one response with `status`.
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100);
        let idx = if (1..=5).contains(&class) { class } else { 0 };
        self.responses[idx].fetch_add(1, Ordering::Relaxed);
    }

    /// Records an ACME failure.
    pub fn acme_failed(&self, message: &str) {
        self.acme_errors.fetch_add(1, Ordering::Relaxed);
        self.acme_last_error_time
            .store(unix_now(), Ordering::Relaxed);
        if let Ok(mut last) = self.acme_last_error.lock() {
            *last = message.to_string();
        }
    }

    /// The Prometheus text exposition of every figure.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |o: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP onebox_edge_responses_total Responses sent, by status class."
        );
        let _ = writeln!(out, "# TYPE onebox_edge_responses_total counter");
        for (i, c) in self.responses.iter().enumerate() {
            let class = if i == 0 {
                "other".to_string()
            } else {
                format!("{i}xx")
            };
            let _ = writeln!(
                out,
                "onebox_edge_responses_total{{class=\"{class}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        g(
            &mut out,
            "onebox_edge_static_responses_total",
            "Requests answered from the web root.",
            "counter",
            load(&self.static_responses),
        );
        g(
            &mut out,
            "onebox_edge_proxied_requests_total",
            "Requests proxied to the app.",
            "counter",
            load(&self.proxied_requests),
        );
        g(
            &mut out,
            "onebox_edge_upstream_errors_total",
            "Requests the app upstream could not answer.",
            "counter",
            load(&self.upstream_errors),
        );
        g(
            &mut out,
            "onebox_edge_certificate_expiry_timestamp_seconds",
            "notAfter of the CA-issued certificate being served (0: none yet).",
            "gauge",
            self.cert_not_after.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut out,
            "onebox_edge_certificate_renewal_timestamp_seconds",
            "When the CA-issued certificate is renewed: two thirds into its lifetime (0: none yet).",
            "gauge",
            self.cert_renewal_at.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut out,
            "onebox_edge_certificate_from_ca",
            "1 if a certificate from the ACME CA is served, 0 for the self-signed stand-in.",
            "gauge",
            u8::from(self.cert_from_ca.load(Ordering::Relaxed)).to_string(),
        );
        g(
            &mut out,
            "onebox_edge_acme_certificates_issued_total",
            "Certificates obtained from the CA by this process.",
            "counter",
            load(&self.certs_issued),
        );
        g(
            &mut out,
            "onebox_edge_acme_renewals_total",
            "Certificates obtained by this process to replace one it was serving.",
            "counter",
            load(&self.renewals),
        );
        g(
            &mut out,
            "onebox_edge_acme_errors_total",
            "ACME failures (each is retried with exponential backoff).",
            "counter",
            load(&self.acme_errors),
        );
        g(
            &mut out,
            "onebox_edge_acme_last_error_timestamp_seconds",
            "Time of the last ACME failure (0: none).",
            "gauge",
            self.acme_last_error_time
                .load(Ordering::Relaxed)
                .to_string(),
        );
        let last = self
            .acme_last_error
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        if !last.is_empty() {
            let escaped: String = last
                .chars()
                .take(300)
                .map(|c| {
                    if c == '"' || c == '\\' || c == '\n' {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "# HELP onebox_edge_acme_last_error_info The last ACME failure, as a label.\n# TYPE onebox_edge_acme_last_error_info gauge\nonebox_edge_acme_last_error_info{{error=\"{escaped}\"}} 1"
            );
        }
        out
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The `/metrics` endpoint as a pingora background service (a minimal HTTP/1.1 responder: every
/// request gets the metrics text, then the connection closes).
pub struct MetricsService {
    /// Where to listen (validated to be loopback).
    pub addr: SocketAddr,
    /// The figures to serve.
    pub metrics: std::sync::Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for MetricsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // SO_REUSEPORT lets the new process of a graceful upgrade bind while the old one drains.
        let bound = (|| {
            let socket = if self.addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(self.addr)?;
            socket.listen(64)
        })();
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(
                    "metrics: cannot listen on {}: {e}; metrics are off",
                    self.addr
                );
                return;
            }
        };
        tracing::info!("metrics on http://{}/metrics", self.addr);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                accepted = listener.accept() => {
                    let Ok((mut conn, _)) = accepted else { continue };
                    let metrics = self.metrics.clone();
                    tokio::spawn(async move {
                        let mut buf = [0u8; 2048];
                        let read = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf)).await;
                        if !matches!(read, Ok(Ok(n)) if n > 0) {
                            return;
                        }
                        let body = metrics.render();
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = conn.write_all(head.as_bytes()).await;
                        let _ = conn.write_all(body.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    });
                }
            }
        }
    }
}
