//! Prometheus metrics (prometheus-client), served as OpenMetrics text at `/metrics` on a loopback
//! address (`[dns] metrics_listen`).
//!
//! The request path only increments counters resolved once ([`Metrics`]); everything read from
//! the zones (serials) is computed at scrape time by a collector. Families:
//!
//! - `onebox_dns_queries_total{transport, rcode}`: requests by transport and the response's
//!   code; `rcode="dropped"` for requests answered with nothing (runts, responses, rate-limited);
//! - `onebox_dns_rrl_limited_total{action, class}`: answers response rate limiting dropped or
//!   sent truncated (`action="dropped"|"slipped"`), by class of answer;
//! - `onebox_dns_tcp_connections_total{outcome}`: TCP connections accepted, or refused because
//!   the server or that client was at its limit; `onebox_dns_tcp_connections_open`;
//!   `onebox_dns_tcp_connections_expired_total`: closed at their lifetime's end;
//! - `onebox_dns_udp_reads_total`: reads of a UDP socket (`recvmmsg`) that returned datagrams
//!   (the mean batch is the UDP queries over this); `onebox_dns_udp_waits_total`: waits a UDP
//!   thread took after a batch to gather the next (`udp_batch_wait_us`, [`crate::batch::Pacer`]);
//! - `onebox_dns_reloads_total{result}`: SIGHUP reloads, `ok` or `failed` (a file kept its
//!   previous version, or the site file was refused);
//! - `onebox_dns_zones`, `onebox_dns_zone_serial{zone}`: what is being served;
//! - `onebox_dns_dnssec_signature_expiry_timestamp_seconds{zone}` (the earliest signature
//!   expiry of each signed zone), `onebox_dns_dnssec_signed_timestamp_seconds{zone}`,
//!   `onebox_dns_dnssec_signatures{zone}` and `onebox_dns_dnssec_key_info{zone, role, tag,
//!   state, ds}`: the signing side;
//! - `onebox_dns_notify_sent_total`: NOTIFY datagrams sent (each try);
//!   `onebox_dns_notify_total{result="acked"|"failed"}`: NOTIFYs acknowledged, or given up;
//!   `onebox_dns_notify_received_total{result="accepted"|"refused"}`: NOTIFYs to us;
//! - `onebox_dns_transfers_total{direction="in"|"out", type="AXFR"|"IXFR", result}`: zone
//!   transfers (`ok`, `refused`, `failed`);
//!   `onebox_dns_tsig_failures_total{error="BADKEY"|"BADSIG"|"BADTIME"}`: requests refused for
//!   their TSIG;
//! - for each secondary zone, `onebox_dns_secondary_refreshed_timestamp_seconds{zone}` (the
//!   primary last confirmed our copy) and `onebox_dns_secondary_expiry_timestamp_seconds{zone}`
//!   (the copy stops being served unless refreshed).

use crate::answer::Transport;
use crate::catalog::Catalog;
use crate::rrl::{Action, Class};
use crate::served::Served;
use hickory_proto::op::ResponseCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// Response codes with a counter of their own; others count as `RCODE<n>`.
const RCODE_SLOTS: usize = 24;

/// The label set of a family with two labels.
type Labels2 = [(&'static str, &'static str); 2];
/// The label set of a family with one label.
type Labels1 = [(&'static str, &'static str); 1];
/// The label set of a family with three labels.
type Labels3 = [(&'static str, &'static str); 3];

/// The counters the server increments.
#[derive(Debug, Default)]
pub struct Metrics {
    queries: Family<Labels2, Counter>,
    /// `queries` by transport and response code (or `dropped`, the last slot), resolved once.
    query_counters: [[OnceLock<Counter>; RCODE_SLOTS + 1]; 2],
    rrl: Family<Labels2, Counter>,
    rrl_counters: [[OnceLock<Counter>; 7]; 2],
    tcp_connections: Family<Labels1, Counter>,
    tcp_open: Gauge,
    tcp_expired: Counter,
    reloads: Family<Labels1, Counter>,
    udp_reads: Counter,
    udp_waits: Counter,
    notify_sent: Counter,
    notify: Family<Labels1, Counter>,
    notify_received: Family<Labels1, Counter>,
    transfers: Family<Labels3, Counter>,
    tsig_failures: Family<Labels1, Counter>,
}

/// What became of a TCP connection at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOutcome {
    /// Served.
    Accepted,
    /// Closed at once: `tcp_max_connections` were open.
    RefusedServerFull,
    /// Closed at once: that client had `tcp_max_connections_per_client` open.
    RefusedClientFull,
}

impl Metrics {
    /// Counts a request over `transport` answered with `rcode` (`None`: nothing was sent).
    pub fn query(&self, transport: Transport, rcode: Option<ResponseCode>) {
        let t = match transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
        };
        let slot = rcode.map_or(RCODE_SLOTS, |r| {
            usize::from(u16::from(r)).min(RCODE_SLOTS - 1)
        });
        self.query_counters[t][slot]
            .get_or_init(|| {
                let transport = if t == 0 { "udp" } else { "tcp" };
                let rcode = match rcode {
                    None => "dropped",
                    Some(r) => rcode_label(r),
                };
                self.queries
                    .get_or_create(&[("transport", transport), ("rcode", rcode)])
                    .clone()
            })
            .inc();
    }

    /// Counts an answer response rate limiting did not send as it was.
    pub fn rate_limited(&self, action: Action, class: Class) {
        let a = match action {
            Action::Send => return,
            Action::Drop => 0,
            Action::Slip => 1,
        };
        self.rrl_counters[a][class as usize]
            .get_or_init(|| {
                let action = if a == 0 { "dropped" } else { "slipped" };
                self.rrl
                    .get_or_create(&[("action", action), ("class", class.as_str())])
                    .clone()
            })
            .inc();
    }

    /// Counts a TCP connection at accept (and an accepted one as open until
    /// [`Metrics::tcp_closed`]).
    pub fn tcp_accept(&self, outcome: TcpOutcome) {
        let label = match outcome {
            TcpOutcome::Accepted => {
                self.tcp_open.inc();
                "accepted"
            }
            TcpOutcome::RefusedServerFull => "refused_server_full",
            TcpOutcome::RefusedClientFull => "refused_client_full",
        };
        self.tcp_connections
            .get_or_create(&[("outcome", label)])
            .inc();
    }

    /// Counts the end of an accepted TCP connection; `expired`: closed at its lifetime's end.
    pub fn tcp_closed(&self, expired: bool) {
        self.tcp_open.dec();
        if expired {
            self.tcp_expired.inc();
        }
    }

    /// Counts a read of a UDP socket that returned datagrams.
    pub fn udp_read(&self) {
        self.udp_reads.inc();
    }

    /// Counts a wait of a UDP thread before its next read.
    pub fn udp_wait(&self) {
        self.udp_waits.inc();
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&[("result", result)]).inc();
    }
}

impl Metrics {
    /// Counts a NOTIFY datagram sent.
    pub fn notify_sent(&self) {
        self.notify_sent.inc();
    }

    /// Counts a NOTIFY acknowledged or given up.
    pub fn notify_out(&self, outcome: crate::xfr::notify::Outcome) {
        let result = match outcome {
            crate::xfr::notify::Outcome::Acked => "acked",
            crate::xfr::notify::Outcome::Failed => "failed",
        };
        self.notify.get_or_create(&[("result", result)]).inc();
    }

    /// Counts a NOTIFY received.
    pub fn notify_received(&self, accepted: bool) {
        let result = if accepted { "accepted" } else { "refused" };
        self.notify_received
            .get_or_create(&[("result", result)])
            .inc();
    }

    /// Counts a transfer in (from our primary), done or failed.
    pub fn transfer_in(&self, kind: crate::transfer::Kind, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.transfers
            .get_or_create(&[
                ("direction", "in"),
                ("type", kind.as_str()),
                ("result", result),
            ])
            .inc();
    }

    /// Counts a transfer out: `ok`, or `refused` (by the access list, or too many at once).
    pub fn transfer_out(&self, kind: crate::transfer::Kind, result: &'static str) {
        self.transfers
            .get_or_create(&[
                ("direction", "out"),
                ("type", kind.as_str()),
                ("result", result),
            ])
            .inc();
    }

    /// Counts a request refused for its TSIG (`BADKEY`, `BADSIG`, `BADTIME`).
    pub fn tsig_failure(&self, error: &'static str) {
        self.tsig_failures.get_or_create(&[("error", error)]).inc();
    }
}

/// The response code's name as DNS tools print it.
fn rcode_label(rcode: ResponseCode) -> &'static str {
    match u16::from(rcode) {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => "OTHER",
    }
}

/// The registry to serve: `metrics`' families, and the zones of `catalog` read at each scrape.
pub fn registry(metrics: &Metrics, catalog: Arc<Served<Catalog>>) -> Registry {
    let mut registry = Registry::with_prefix("onebox_dns");
    registry.register(
        "queries",
        "Requests by transport and response code (dropped: no response sent)",
        metrics.queries.clone(),
    );
    registry.register(
        "rrl_limited",
        "Answers response rate limiting dropped or sent truncated (slipped), by class",
        metrics.rrl.clone(),
    );
    registry.register(
        "tcp_connections",
        "TCP connections accepted or refused at accept",
        metrics.tcp_connections.clone(),
    );
    registry.register(
        "tcp_connections_open",
        "TCP connections open now",
        metrics.tcp_open.clone(),
    );
    registry.register(
        "tcp_connections_expired",
        "TCP connections closed at the end of their lifetime (tcp_max_connection_secs)",
        metrics.tcp_expired.clone(),
    );
    registry.register(
        "udp_reads",
        "Reads of a UDP socket (recvmmsg) that returned datagrams: UDP queries / this = mean batch",
        metrics.udp_reads.clone(),
    );
    registry.register(
        "udp_waits",
        "Waits a UDP thread took after a batch to gather the next (udp_batch_wait_us)",
        metrics.udp_waits.clone(),
    );
    registry.register(
        "reloads",
        "SIGHUP reloads; failed: a zone file or the site file was refused",
        metrics.reloads.clone(),
    );
    registry.register(
        "notify_sent",
        "NOTIFY datagrams sent (each try)",
        metrics.notify_sent.clone(),
    );
    registry.register(
        "notify",
        "NOTIFYs sent that were acknowledged, or given up after the last try",
        metrics.notify.clone(),
    );
    registry.register(
        "notify_received",
        "NOTIFYs received, accepted (from a secondary zone's primary) or refused",
        metrics.notify_received.clone(),
    );
    registry.register(
        "transfers",
        "Zone transfers in (from a primary) and out, by type and result",
        metrics.transfers.clone(),
    );
    registry.register(
        "tsig_failures",
        "Requests refused for their TSIG signature, by TSIG error",
        metrics.tsig_failures.clone(),
    );
    registry.register_collector(Box::new(Zones(catalog)));
    registry
}

/// Reads the zones being served at each scrape.
#[derive(Debug)]
struct Zones(Arc<Served<Catalog>>);

impl Collector for Zones {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let catalog = self.0.load();
        let count = ConstGauge::new(catalog.len() as i64);
        count.encode(encoder.encode_descriptor(
            "zones",
            "Zones being served",
            None,
            count.metric_type(),
        )?)?;
        let mut zones: Vec<_> = catalog.zones().collect();
        zones.sort_by(|a, b| a.origin().cmp(b.origin()));
        let mut family = encoder.encode_descriptor(
            "zone_serial",
            "The SOA serial of each zone being served",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for zone in &zones {
            let name = zone.origin().to_string();
            let labels = [("zone", name.trim_end_matches('.'))];
            ConstGauge::new(i64::from(zone.serial())).encode(family.encode_family(&labels)?)?;
        }
        encode_dnssec(&zones, &mut encoder)
    }
}

/// Reads one figure of a signed zone.
type Read = fn(&crate::dnssec::ZoneDnssec) -> i64;

/// The DNSSEC families: per signed zone, its earliest signature expiry, when it was signed and
/// how many signatures it has; per key, its state.
fn encode_dnssec(
    zones: &[&Arc<crate::zone::Zone>],
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    use prometheus_client::metrics::MetricType;
    let signed: Vec<(String, &crate::dnssec::ZoneDnssec)> = zones
        .iter()
        .filter_map(|z| {
            let name = z.origin().to_string().trim_end_matches('.').to_string();
            z.dnssec().map(|d| (name, d))
        })
        .collect();
    let gauges: [(&str, &str, Read); 3] = [
        (
            "dnssec_signature_expiry_timestamp_seconds",
            "The earliest expiration of a signature in each signed zone (Unix time)",
            |d| i64::try_from(d.earliest_expiry).unwrap_or(i64::MAX),
        ),
        (
            "dnssec_signed_timestamp_seconds",
            "When each signed zone was last signed (Unix time)",
            |d| i64::try_from(d.signed_at).unwrap_or(i64::MAX),
        ),
        (
            "dnssec_signatures",
            "Signatures (RRSIG records) in each signed zone",
            |d| i64::try_from(d.signatures).unwrap_or(i64::MAX),
        ),
    ];
    for (metric, help, value) in gauges {
        let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
        for (name, d) in &signed {
            ConstGauge::new(value(d)).encode(family.encode_family(&[("zone", name.as_str())])?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "dnssec_key_info",
        "Each DNSSEC key of a signed zone: role (ksk, zsk), tag, state (published: not signing \
         yet; active; retired: leaving), ds (yes: its CDS/CDNSKEY are published)",
        None,
        MetricType::Gauge,
    )?;
    for (name, d) in &signed {
        for k in &d.keys {
            let tag = k.tag.to_string();
            let labels = [
                ("zone", name.as_str()),
                ("role", k.role.as_str()),
                ("tag", tag.as_str()),
                ("state", k.state.as_str()),
                ("ds", if k.submitted { "yes" } else { "no" }),
            ];
            ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The OpenMetrics text of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        text.clear();
    }
    text
}

/// Serves `registry` at `http://ADDR/metrics` until the process ends: HTTP/1.1 (hyper), at
/// most 16 connections at once, 5 s to send a request's header.
pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Method, Request, Response, StatusCode};
    let connections = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue; // dropped: closed
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let registry = registry.clone();
                async move {
                    let (status, content_type, body) =
                        match (request.method(), request.uri().path()) {
                            (&Method::GET, "/metrics") => (
                                StatusCode::OK,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                render(&registry),
                            ),
                            (&Method::GET, _) => (
                                StatusCode::NOT_FOUND,
                                "text/plain; charset=utf-8",
                                "not found: the metrics are at /metrics\n".to_string(),
                            ),
                            _ => (
                                StatusCode::METHOD_NOT_ALLOWED,
                                "text/plain; charset=utf-8",
                                "only GET\n".to_string(),
                            ),
                        };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(content_type),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

/// Binds the metrics listener on `addr`, which must be a loopback address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("metrics_listen {addr} is not a loopback address"),
        ));
    }
    tokio::net::TcpListener::bind(addr).await
}
