//! Assembles the pingora server: the HTTP and HTTPS listeners, the app pool with its health
//! check, the ACME service and the metrics endpoint.

use crate::EdgeError;
use crate::acme::AcmeService;
use crate::config::{self, Config};
use crate::connections::{ConnectionLimits, Limited};
use crate::metrics::{Metrics, MetricsApp};
use crate::proxy::{Edge, Shared};
use crate::tls::{EdgeResolver, TlsApp};
use pingora::apps::HttpServerOptions;
use pingora::lb::{LoadBalancer, health_check::HttpHealthCheck};
use pingora::listeners::{
    DEFAULT_L4_WRITE_BUFFER_SIZE, L4BufferSettings, ListenerConfig, TcpSocketOptions,
};
use pingora::protocols::http::v2::server::{H2Options, default_h2_options};
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::{GenBackgroundService, background_service};
use pingora::services::listening::Service;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How many idle connections to the app the edge keeps for reuse.
pub const UPSTREAM_POOL_SIZE: usize = 1024;

/// Validates the site file and everything the edge would set up from it, without listening.
pub fn check(path: &Path) -> Result<(), EdgeError> {
    let config = config::load(path)?;
    let metrics = Arc::new(Metrics::default());
    let acme = AcmeService::new(&config, metrics).map_err(EdgeError::Tls)?;
    let resolver =
        EdgeResolver::new(&config.names, acme.map(|(_, r)| r)).map_err(EdgeError::Tls)?;
    crate::tls::server_config(Arc::new(resolver)).map_err(EdgeError::Tls)?;
    println!("{}: ok (names {})", path.display(), config.names.join(", "));
    Ok(())
}

/// Loads the site file and serves until SIGTERM (graceful stop) or SIGQUIT (hand the sockets
/// to a new process started with `upgrade`, then stop). In a daemon (`--daemon`, already
/// forked), writes `<state_dir>/edge.pid` and lets the launcher exit once the sockets are taken
/// and the services are set up.
pub fn run(
    path: &Path,
    upgrade: bool,
    daemon: Option<crate::daemon::Ready>,
) -> Result<(), EdgeError> {
    let config = config::load(path)?;
    let edge = &config.edge;
    std::fs::create_dir_all(&edge.state_dir)
        .and_then(|()| {
            std::fs::set_permissions(&edge.state_dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|source| EdgeError::StateDir {
            path: edge.state_dir.clone(),
            source,
        })?;
    let web_root = crate::web_root::WebRoot::new(edge.web_root.get()).map_err(|source| {
        EdgeError::WebRoot {
            path: edge.web_root.get().clone(),
            source,
        }
    })?;

    let http_listen = listen_address(edge.http_listen);
    let https_listen = listen_address(edge.https_listen);
    if !upgrade {
        // Fail with a clear message rather than pingora's endless "in use, will try again".
        for addr in [http_listen, https_listen, edge.metrics_listen.get()] {
            bind_check(addr).map_err(|source| EdgeError::Listen { addr, source })?;
        }
    }
    raise_open_files_limit(edge.limits.max_connections.as_usize());
    let mut conf =
        ServerConf::new().ok_or_else(|| EdgeError::Server("default configuration".into()))?;
    conf.threads = edge.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n.as_usize(),
    );
    // One single-threaded runtime per worker thread, as nginx's workers: pingora's work stealing
    // moved connections between threads for no gain and cost CPU per request (measured).
    conf.work_stealing = false;
    // Idle app connections kept for reuse (pingora's default: 128). With the page cache's
    // predictor sending concurrent requests for one uncacheable URL to the app side by side,
    // 320 HTTP/2 streams to /api (h2load -c32 -m10) needed more than 128 app connections at
    // once, and every release past 128 closed one: 15,000 new app connections per 40,000
    // requests and 45% more CPU per request, against 35 with 1024 (measured). A connection is
    // a socket and a small task; the app closes idle ones after its own keep-alive.
    conf.upstream_keepalive_pool_size = UPSTREAM_POOL_SIZE;
    conf.grace_period_seconds = Some(edge.upgrade.grace_period_secs.get());
    conf.graceful_shutdown_timeout_seconds = Some(edge.upgrade.shutdown_timeout_secs.get());
    conf.upgrade_sock = edge.state_dir.join("upgrade.sock").display().to_string();
    // pingora's own daemon mode is not used (see `daemon`): it forks with its timer thread running.
    let opt = Opt {
        upgrade,
        daemon: false,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::default());
    let acme = AcmeService::new(&config, metrics.clone()).map_err(EdgeError::Tls)?;
    let (acme_service, acme_certs) = match acme {
        Some((s, c)) => (Some(s), Some(c)),
        None => (None, None),
    };
    let acme_resolver = acme_certs.as_ref().map(|c| c.resolver.clone());
    // With ACME off the self-signed stand-in is served for good.
    let certificate = acme_certs
        .as_ref()
        .map(|c| c.served.clone())
        .unwrap_or_default();
    let resolver = Arc::new(EdgeResolver::new(&config.names, acme_certs).map_err(EdgeError::Tls)?);
    let tls_config = crate::tls::server_config(resolver).map_err(EdgeError::Tls)?;

    let upstreams = upstream_pool(&config)?;
    let app_pool = Arc::new(crate::proxy::AppPool::new(
        upstreams.task(),
        &edge.upstream,
        &metrics,
    ));

    let security_headers = if edge.headers.security_headers {
        crate::proxy::SECURITY_HEADERS
            .iter()
            .map(|(_, name, value)| (*name, *value))
            .collect()
    } else {
        Vec::new()
    };
    let shared = Arc::new(Shared {
        web_root,
        file_cache: crate::file_cache::FileCache::new(
            edge.web_root.get(),
            security_headers.clone(),
        ),
        app_pool: app_pool.clone(),
        acme: acme_resolver,
        metrics: metrics.clone(),
        certificate: certificate.clone(),
        hsts: crate::proxy::hsts_value(edge.headers.hsts_max_age_secs.get()),
        next_id: Default::default(),
        id_prefix: std::process::id() ^ (crate::metrics::unix_now() as u32).rotate_left(16),
        page_cache: crate::page_cache::PageCache::new(&edge.page_cache, security_headers)
            .map(|c| &*Box::leak(Box::new(c))),
        config: config.clone(),
        app_client: crate::fast_proxy::FastProxy::new(),
    });

    let limits = &edge.limits;
    let header_limit = limits.client_timeout_secs.secs();
    let max_header_bytes = limits.max_header_bytes.as_usize();
    let connections = ConnectionLimits::new(
        limits.max_connections.as_usize(),
        limits.max_connections_per_client.as_u32(),
        metrics.clone(),
    );
    let mut http_proxy = pingora::proxy::http_proxy(
        &server.configuration,
        Edge {
            shared: shared.clone(),
            tls: false,
        },
    );
    http_proxy.server_options = Some(server_options(&config));
    let mut http = Service::new(
        "http".to_string(),
        Limited::new(
            crate::header_deadline::Guarded::new(
                http_proxy,
                header_limit,
                max_header_bytes,
                limits.keepalive_secs.secs(),
            ),
            connections.clone(),
        ),
    );
    http.add_listener(listener(http_listen, DEFAULT_L4_WRITE_BUFFER_SIZE));

    let fast_path = crate::fast_path::FastPath::new(shared.clone());
    let mut https_proxy =
        pingora::proxy::http_proxy(&server.configuration, Edge { shared, tls: true });
    https_proxy.server_options = Some(server_options(&config));
    https_proxy.h2_options = Some(h2_options(&config));
    let mut https = Service::new(
        "https".to_string(),
        Limited::new(
            TlsApp::new(
                tls_config,
                https_proxy,
                header_limit,
                max_header_bytes,
                limits.keepalive_secs.secs(),
                server.configuration.threads,
            )
            .with_fast_path(fast_path),
            connections.clone(),
        ),
    );
    https.add_listener(listener(https_listen, 0));

    server.add_service(http);
    server.add_service(https);
    server.add_service(upstreams);
    if let Some(acme) = acme_service {
        server.add_service(background_service("acme", acme));
    }
    if let Some(guard) = memory_guard(&config, connections, metrics.clone()) {
        server.add_service(background_service("memory guard", guard));
    }
    let mut metrics_service = Service::new(
        "metrics".to_string(),
        MetricsApp::new(metrics.registry(certificate, app_pool)),
    );
    metrics_service.add_tcp(&edge.metrics_listen.get().to_string());
    server.add_service(metrics_service);
    tracing::info!(
        "onebox-edge: http {}, https {}, names {}, web root {}, app {:?}",
        http_listen,
        https_listen,
        config.names.join(" "),
        edge.web_root.get().display(),
        edge.upstream.servers
    );
    if let Some(daemon) = daemon {
        daemon.ready(&edge.state_dir.join("edge.pid"))?;
    }
    server.run_forever()
}

/// The memory guard ([`crate::memory`]) with its budget, `None` without one (logged either
/// way). A budget that leaves less than 32 MiB beside the caches' largest sizes is warned of:
/// with full caches the guard would close connections all the time.
fn memory_guard(
    config: &Config,
    connections: Arc<ConnectionLimits>,
    metrics: Arc<Metrics>,
) -> Option<crate::memory::MemoryGuard> {
    let edge = &config.edge;
    let Some((budget, source)) = crate::memory::budget(edge.limits.max_memory_mib.map(|m| m.get()))
    else {
        tracing::info!(
            "memory guard off: no [edge.limits] max_memory_mib and no cgroup memory limit"
        );
        return None;
    };
    let mib = |b: u64| b / (1024 * 1024);
    let caches = if edge.page_cache.enabled {
        edge.page_cache.max_bytes.get()
    } else {
        0
    } + crate::file_cache::MAX_TOTAL as u64;
    if budget < caches + (32 << 20) {
        tracing::warn!(
            "memory budget {} MiB ({source}) leaves less than 32 MiB beside the caches' {} MiB \
             ([edge.page_cache] max_bytes and the file cache's 32): lower max_bytes or raise \
             [edge.limits] max_memory_mib",
            mib(budget),
            mib(caches)
        );
    }
    tracing::info!("memory guard: budget {} MiB ({source})", mib(budget));
    match crate::memory::MemoryGuard::new(budget, connections, metrics) {
        Ok(guard) => Some(guard),
        Err(e) => {
            tracing::error!(
                "memory guard off: cannot read the edge's memory (/proc/self/statm): {e}"
            );
            None
        }
    }
}

/// HTTP/1 keep-alive and HTTP/2 idle limits of both listeners.
fn server_options(config: &Config) -> HttpServerOptions {
    let limits = &config.edge.limits;
    let mut options = HttpServerOptions::default();
    // An HTTP/2 connection with no stream open is closed after this (pingora's default: never).
    options.h2_idle_timeout = Some(limits.keepalive_secs.secs());
    options.keepalive_request_limit = Some(limits.keepalive_requests.as_u32());
    options
}

/// The header-list size the HTTP/2 layer announces (`SETTINGS_MAX_HEADER_LIST_SIZE`) and
/// enforces while decoding: `max_header_bytes` plus HTTP/2's 32 bytes of accounting per field
/// for `max_headers` fields (RFC 9113 §6.5.2 counts each field as name + value + 32). A larger
/// header list is answered `431` by the h2 layer as it arrives, without being stored; one
/// within it but over `max_header_bytes` gets `431` from `limits::check`.
pub fn h2_header_list_limit(max_header_bytes: usize, max_headers: usize) -> u32 {
    max_header_bytes
        .saturating_add(max_headers.saturating_mul(32))
        .min(u32::MAX as usize) as u32
}

/// How long an HTTP/2 connection waits idle (no stream open) before the h2 layer gives its
/// read and write buffers back (`third_party/h2`, PATCHES.md there): about 8 KiB of resident
/// memory a connection. Not at once: a busy client's connection goes idle between its batches
/// of requests, and making the buffers again for each batch cost more CPU than it saved.
pub const H2_IDLE_BUFFERS_RELEASE: Duration = Duration::from_secs(1);

/// HTTP/2 settings of the HTTPS listener: pingora's bounded defaults (100 streams) with the
/// header-list limit, at most 64 KiB of response buffered per stream (h2's default, 400
/// KiB, let a client that opens 100 streams and reads nothing hold 40 MB of the edge's memory
/// per connection), and the buffers of a connection idle for [`H2_IDLE_BUFFERS_RELEASE`]
/// given back.
fn h2_options(config: &Config) -> H2Options {
    let limits = &config.edge.limits;
    let mut options = default_h2_options();
    options.max_send_buffer_size(64 * 1024);
    options.idle_buffers_release(H2_IDLE_BUFFERS_RELEASE);
    options.max_header_list_size(h2_header_list_limit(
        limits.max_header_bytes.as_usize(),
        limits.max_headers.as_usize(),
    ));
    options
}

/// Where to listen for `configured`: as is, except `[::]` on a host without IPv6, which
/// becomes `0.0.0.0` (with a warning), as onebox-dns skips its `[::]` address there.
fn listen_address(configured: SocketAddr) -> SocketAddr {
    let any_v6 = matches!(configured.ip(), IpAddr::V6(v6) if v6.is_unspecified());
    if !any_v6 {
        return configured;
    }
    match socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None) {
        Ok(_) => configured,
        Err(e) => {
            let fallback = SocketAddr::from((Ipv4Addr::UNSPECIFIED, configured.port()));
            tracing::warn!(
                "no IPv6 on this host ({e}): listening on {fallback} instead of {configured}"
            );
            fallback
        }
    }
}

/// A client listener on `addr`. `[::]` is one socket for IPv6 and IPv4 (IPv4 clients appear as
/// `::ffff:a.b.c.d`, which the edge reads as the IPv4 address). Its connections have no L4 read
/// buffer (pingora's default, 64 KiB allocated at accept, was most of an idle connection's
/// memory, and 16 KiB later still a third of it): TLS reads into rustls' own buffer, which it
/// shrinks to 4 KiB while idle, and plain HTTP (redirects to HTTPS) reads into pingora's 4 KiB
/// header buffer, a system call more per request (the first byte alone,
/// [`crate::keepalive`]) rather than 4 KiB held by every connection. The L4 write buffer is
/// `write_buffer` bytes: pingora's 1460 on the HTTP listener, where it joins a response's
/// header and body into one `send`; none on HTTPS, where [`crate::tls::TlsStream`] joins them
/// into one TLS record (as on the streams moved to their serving thread,
/// [`crate::tls::on_this_thread`], which never had L4 buffers).
fn listener(addr: SocketAddr, write_buffer: usize) -> ListenerConfig {
    let mut options = TcpSocketOptions::default();
    if addr.is_ipv6() {
        options.ipv6_only = Some(!addr.ip().is_unspecified());
    }
    ListenerConfig::tcp(addr.to_string())
        .tcp_socket_options(options)
        .l4_buffer(L4BufferSettings::new(0, write_buffer))
}

/// Binds `addr` as the listener will, and lets it go: a taken or forbidden address is a clear
/// error now rather than pingora's retries later.
fn bind_check(addr: SocketAddr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1)
}

/// Raises the soft limit of open files to the hard limit (systemd's `LimitNOFILE=` sets both;
/// a login shell's soft limit is often 1024), and warns when `max_connections` does not fit:
/// each connection takes a descriptor, a proxied request another, and pingora stops accepting
/// for a second whenever accept() runs out of them.
fn raise_open_files_limit(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("cannot raise the open-files limit: {e}");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let needed = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(1024);
    if soft < needed {
        tracing::warn!(
            "open-files limit {soft} is below the {needed} that limits.max_connections = \
             {max_connections} may need (two per connection and 1024 more): raise LimitNOFILE \
             or lower max_connections"
        );
    }
}

/// The app pool with an HTTP health check on `health_path`.
fn upstream_pool(
    config: &Config,
) -> Result<GenBackgroundService<LoadBalancer<pingora::lb::selection::RoundRobin>>, EdgeError> {
    let up = &config.edge.upstream;
    let mut pool = LoadBalancer::try_from_iter(up.servers.iter().map(|a| a.to_string()))
        .map_err(EdgeError::Upstreams)?;
    let host = config
        .names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let mut check = HttpHealthCheck::new(&host, false);
    check.req.set_uri(
        up.health_path
            .as_str()
            .parse()
            .map_err(|e| EdgeError::Server(format!("upstream.health_path: {e}")))?,
    );
    check.peer_template.options.connection_timeout = Some(up.connect_timeout_ms.millis());
    check.peer_template.options.read_timeout = Some(Duration::from_secs(2));
    check.consecutive_failure = up.health_fall.as_usize();
    check.consecutive_success = up.health_rise.as_usize();
    pool.set_health_check(Box::new(check));
    pool.health_check_frequency = Some(up.health_interval_secs.secs());
    Ok(background_service("app health check", pool))
}
