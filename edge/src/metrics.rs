//! The edge's figures, kept in prometheus-client's counters and gauges and served in the
//! Prometheus text format at `/metrics` by a small pingora service on the loopback listener.
//!
//! Counters are bumped where things happen ([`Metrics`]); facts owned elsewhere are read at each
//! scrape: the served certificate from the ACME side ([`ServedCertificate`]).

use crate::acme::ServedCertificate;
use crate::connections::Refused;
use crate::proxy::AppPool;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};

/// The label of `onebox_edge_responses_total`: the status class.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusClass {
    class: &'static str,
}

/// The label of the app servers' figures: the server's address.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabel {
    server: String,
}

/// The label of `onebox_edge_connections_refused_total`: the limit a connection was over.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// The classes, by the status's first digit (index 0: anything else).
const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every figure the edge counts. One instance lives for the whole process.
#[derive(Debug)]
pub struct Metrics {
    /// Responses by status class (`onebox_edge_responses_total{class}`).
    responses: Family<StatusClass, Counter>,
    /// The family's six counters, kept so counting a response is one atomic add.
    by_class: [Counter; 6],
    /// Requests answered from the web root.
    pub static_responses: Counter,
    /// Of those, the ones answered from the small-file cache ([`crate::file_cache`]).
    pub static_cache_hits: Counter,
    /// Responses sent by the HTTP/1.1 fast path ([`crate::fast_path`]): small-file cache and
    /// page cache hits.
    pub fast_path_responses: Counter,
    /// Requests sent to the app upstream.
    pub proxied_requests: Counter,
    /// Of those, the ones sent by the edge's own client ([`crate::fast_proxy`]: the HTTP/1.1
    /// fast path's and HTTP/2's plain `GET`/`HEAD`), not by pingora's proxy.
    pub proxied_directly: Counter,
    /// Requests that could not be proxied (no healthy upstream, connect or read failure).
    pub upstream_errors: Counter,
    /// Requests given to each of the app's servers (`onebox_edge_app_server_requests_total
    /// {server}`).
    app_server_requests: Family<ServerLabel, Counter>,
    /// Requests answered from the page cache.
    pub page_cache_hits: Counter,
    /// Of those, the ones answered before pingora's cache was enabled
    /// ([`crate::page_cache::PageCache::route`]).
    pub page_cache_fast_hits: Counter,
    /// Cacheable requests the page cache did not hold (sent to the app, the answer stored if
    /// it may be).
    pub page_cache_misses: Counter,
    /// Purges of the page cache the app asked for.
    pub page_cache_purges: Counter,
    /// Cacheable-looking requests sent to the app without the page cache, because their URL's
    /// last answer may not be cached ([`crate::page_cache::PageCache::remembers_uncacheable`]).
    pub page_cache_remembered_uncacheable: Counter,
    /// Certificates obtained by this process.
    pub certs_issued: Counter,
    /// Certificates obtained by this process to replace one it was serving (renewals).
    pub renewals: Counter,
    /// ACME failures since start.
    pub acme_errors: Counter,
    /// Time of the last ACME failure (Unix seconds), 0 if none.
    acme_last_error_time: Gauge,
    /// The wait after the last ACME failure before the next try (seconds), 0 once one succeeded.
    acme_retry_in: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Text of the last ACME failure, empty if none.
    acme_last_error: Arc<Mutex<String>>,
    /// Client connections open now (HTTP and HTTPS listeners).
    pub connections_open: Gauge,
    /// Connections closed on arrival, by the limit they were over.
    connections_refused: Family<LimitLabel, Counter>,
    /// The family's three counters: over `max_connections`, over
    /// `max_connections_per_client`, over the memory budget.
    refused_by_limit: [Counter; 3],
    /// The edge's anonymous resident memory at the memory guard's last look ([`crate::memory`]).
    pub memory_bytes: Gauge,
    /// The memory guard's budget (0: no guard).
    pub memory_budget_bytes: Gauge,
    /// Connections the memory guard closed.
    pub memory_closed_connections: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let responses = Family::<StatusClass, Counter>::default();
        let by_class = CLASSES.map(|class| responses.get_or_create(&StatusClass { class }).clone());
        let connections_refused = Family::<LimitLabel, Counter>::default();
        let refused_by_limit = ["total", "per_client", "memory"].map(|limit| {
            connections_refused
                .get_or_create(&LimitLabel { limit })
                .clone()
        });
        Metrics {
            responses,
            by_class,
            static_responses: Counter::default(),
            static_cache_hits: Counter::default(),
            fast_path_responses: Counter::default(),
            proxied_requests: Counter::default(),
            proxied_directly: Counter::default(),
            upstream_errors: Counter::default(),
            app_server_requests: Family::default(),
            page_cache_hits: Counter::default(),
            page_cache_fast_hits: Counter::default(),
            page_cache_misses: Counter::default(),
            page_cache_purges: Counter::default(),
            page_cache_remembered_uncacheable: Counter::default(),
            certs_issued: Counter::default(),
            renewals: Counter::default(),
            acme_errors: Counter::default(),
            acme_last_error_time: Gauge::default(),
            acme_retry_in: Gauge::default(),
            acme_last_error: Arc::default(),
            connections_open: Gauge::default(),
            connections_refused,
            refused_by_limit,
            memory_bytes: Gauge::default(),
            memory_budget_bytes: Gauge::default(),
            memory_closed_connections: Counter::default(),
        }
    }
}

impl Metrics {
    /// Counts one response with `status`.
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100);
        let idx = if (1..=5).contains(&class) { class } else { 0 };
        self.by_class[idx].inc();
    }

    /// Counts a connection closed on arrival for being over `limit`.
    pub fn refused_connection(&self, limit: Refused) {
        self.refused_by_limit[match limit {
            Refused::Total => 0,
            Refused::PerClient => 1,
            Refused::Memory => 2,
        }]
        .inc();
    }

    /// Records a certificate served from an order or the cache: no try is pending.
    pub fn acme_ordered(&self) {
        self.acme_retry_in.set(0.0);
    }

    /// Records an ACME failure; an order's says when the next try comes.
    pub fn acme_failed(&self, message: &str, retry_in: Option<std::time::Duration>) {
        self.acme_errors.inc();
        self.acme_last_error_time.set(unix_now());
        if let Some(wait) = retry_in {
            self.acme_retry_in.set(wait.as_secs_f64());
        }
        if let Ok(mut last) = self.acme_last_error.lock() {
            // A label value: one line, bounded.
            *last = message
                .chars()
                .take(300)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
        }
    }

    /// The counter of the requests given to the app's server `server` (its address), made
    /// once for it: counting one is an atomic add.
    pub fn app_server_requests(&self, server: &str) -> Counter {
        let label = ServerLabel {
            server: server.to_string(),
        };
        self.app_server_requests.get_or_create(&label).clone()
    }

    /// Every figure, named `onebox_edge_*`, with the certificate's read from `served` and the
    /// app servers' health from `app_pool` at each scrape.
    pub fn registry(&self, served: Arc<ServedCertificate>, app_pool: Arc<AppPool>) -> Registry {
        let mut r = Registry::with_prefix("onebox_edge");
        r.register(
            "responses",
            "Responses sent, by status class",
            self.responses.clone(),
        );
        r.register(
            "static_responses",
            "Requests answered from the web root",
            self.static_responses.clone(),
        );
        r.register(
            "static_cache_hits",
            "Static responses answered from the small-file cache",
            self.static_cache_hits.clone(),
        );
        r.register(
            "fast_path_responses",
            "Responses sent by the HTTP/1.1 fast path (small-file cache and page cache hits), before pingora made a session",
            self.fast_path_responses.clone(),
        );
        r.register(
            "proxied_requests",
            "Requests proxied to the app",
            self.proxied_requests.clone(),
        );
        r.register(
            "proxied_directly",
            "Of the requests proxied to the app, those sent by the edge's own client (HTTP/1.1 fast path and HTTP/2 plain GET/HEAD), not pingora's proxy",
            self.proxied_directly.clone(),
        );
        r.register(
            "upstream_errors",
            "Requests the app upstream could not answer",
            self.upstream_errors.clone(),
        );
        r.register(
            "app_server_requests",
            "Requests given to each of the app's servers (round-robin among the ready ones)",
            self.app_server_requests.clone(),
        );
        r.register(
            "page_cache_hits",
            "Requests answered from the page cache",
            self.page_cache_hits.clone(),
        );
        r.register(
            "page_cache_fast_hits",
            "Of the page cache's hits, those answered from the stored page at once, without pingora's cache",
            self.page_cache_fast_hits.clone(),
        );
        r.register(
            "page_cache_misses",
            "Cacheable requests sent to the app because the page cache did not hold them",
            self.page_cache_misses.clone(),
        );
        r.register(
            "page_cache_purges",
            "Purges of the page cache the app asked for (X-Onebox-Purge)",
            self.page_cache_purges.clone(),
        );
        r.register(
            "page_cache_remembered_uncacheable",
            "Requests sent to the app without the page cache: their URL's last answer may not be cached",
            self.page_cache_remembered_uncacheable.clone(),
        );
        r.register(
            "acme_certificates_issued",
            "Certificates obtained from the CA by this process",
            self.certs_issued.clone(),
        );
        r.register(
            "acme_renewals",
            "Certificates obtained by this process to replace one it was serving",
            self.renewals.clone(),
        );
        r.register(
            "acme_errors",
            "ACME failures (each is retried: exponential backoff; without a network to the CA, after 250 ms, after a minute every 5 s)",
            self.acme_errors.clone(),
        );
        r.register(
            "acme_last_error_timestamp_seconds",
            "Time of the last ACME failure (0: none)",
            self.acme_last_error_time.clone(),
        );
        r.register(
            "acme_retry_in_seconds",
            "The wait after the last ACME failure before the next try (0 once an order succeeded)",
            self.acme_retry_in.clone(),
        );
        r.register(
            "connections",
            "Client connections open now (HTTP and HTTPS listeners)",
            self.connections_open.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed on arrival: over max_connections (total), max_connections_per_client (per_client) or the memory budget (memory)",
            self.connections_refused.clone(),
        );
        r.register(
            "memory_bytes",
            "The edge's anonymous resident memory (RssAnon) at the memory guard's last look",
            self.memory_bytes.clone(),
        );
        r.register(
            "memory_budget_bytes",
            "The memory guard's budget (max_memory_mib or the cgroup's limit; 0: no guard)",
            self.memory_budget_bytes.clone(),
        );
        r.register(
            "memory_closed_connections",
            "Connections the memory guard closed (those of the client with the most, while over the budget)",
            self.memory_closed_connections.clone(),
        );
        r.register_collector(Box::new(AcmeLastError(self.acme_last_error.clone())));
        r.register_collector(Box::new(CertificateFigures(served)));
        r.register_collector(Box::new(AppServersUp(app_pool)));
        r
    }
}

/// `onebox_edge_app_server_up{server}`: 1 while a server's health checks say it is ready, read
/// from the pool at each scrape.
#[derive(Debug)]
struct AppServersUp(Arc<AppPool>);

impl Collector for AppServersUp {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let help =
            "1 while the app server's health checks say it is ready, 0 while it is out of the pool";
        let mut family = encoder.encode_descriptor(
            "app_server_up",
            help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (server, up) in self.0.health() {
            let label = ServerLabel {
                server: server.to_string(),
            };
            ConstGauge::new(i64::from(up)).encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// The certificate gauges, read from the ACME side's [`ServedCertificate`] at each scrape.
#[derive(Debug)]
struct CertificateFigures(Arc<ServedCertificate>);

impl Collector for CertificateFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let served = &self.0;
        for (name, help, value) in [
            (
                "certificate_expiry_timestamp_seconds",
                "notAfter of the CA-issued certificate being served (0: none yet).",
                served.not_after().unwrap_or(0),
            ),
            (
                "certificate_renewal_timestamp_seconds",
                "When the CA-issued certificate is renewed: two thirds into its lifetime (0: none yet).",
                served.renewal_at().unwrap_or(0),
            ),
            (
                "certificate_from_ca",
                "1 if a certificate from the ACME CA is served, 0 for the self-signed stand-in.",
                i64::from(served.from_ca()),
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// `onebox_edge_acme_last_error_info{error="…"} 1`, present once an ACME step has failed.
#[derive(Debug)]
struct AcmeLastError(Arc<Mutex<String>>);

impl Collector for AcmeLastError {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let text = self.0.lock().map(|s| s.clone()).unwrap_or_default();
        if text.is_empty() {
            return Ok(());
        }
        let info = Info::new([("error", text)]);
        info.encode(encoder.encode_descriptor(
            "acme_last_error",
            "The last ACME failure, as a label.",
            None,
            info.metric_type(),
        )?)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The `/metrics` endpoint: a pingora HTTP app on the loopback listener (its socket passes to
/// the new process on an upgrade like the others). `GET /metrics` gets the registry in the
/// Prometheus text format; anything else 404.
pub struct MetricsApp {
    registry: Registry,
}

impl MetricsApp {
    /// Serves `registry`.
    pub fn new(registry: Registry) -> Self {
        MetricsApp { registry }
    }

    /// The registry in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!("metrics: cannot encode: {e}");
        }
        out
    }
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let req = session.req_header();
        let (status, content_type, body) =
            if req.uri.path() == "/metrics" && req.method == http::Method::GET {
                (
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.render().into_bytes(),
                )
            } else {
                (
                    404,
                    "text/plain; charset=utf-8",
                    b"Not Found: the metrics are at /metrics\n".to_vec(),
                )
            };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}
