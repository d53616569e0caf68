//! Assembles the pingora server: the HTTP and HTTPS listeners, the app pool with its health
//! check, the ACME service and the metrics endpoint.

use crate::EdgeError;
use crate::acme::AcmeService;
use crate::config::{self, Config};
use crate::metrics::{Metrics, MetricsApp};
use crate::proxy::{Edge, Shared};
use crate::tls::{EdgeResolver, TlsApp};
use pingora::lb::{LoadBalancer, health_check::HttpHealthCheck};
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::{GenBackgroundService, background_service};
use pingora::services::listening::Service;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
/// to a new process started with `upgrade`, then stop). With `daemon`, forks into the
/// background after taking the sockets (pid in `<state_dir>/edge.pid`).
pub fn run(path: &Path, upgrade: bool, daemon: bool) -> Result<(), EdgeError> {
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
    let web_root =
        std::fs::canonicalize(edge.web_root.get()).map_err(|source| EdgeError::WebRoot {
            path: edge.web_root.get().clone(),
            source,
        })?;

    if !upgrade {
        // Fail with a clear message rather than pingora's endless "in use, will try again".
        for addr in [
            edge.http_listen,
            edge.https_listen,
            edge.metrics_listen.get(),
        ] {
            std::net::TcpListener::bind(addr)
                .map_err(|source| EdgeError::Listen { addr, source })?;
        }
    }
    let mut conf =
        ServerConf::new().ok_or_else(|| EdgeError::Server("default configuration".into()))?;
    conf.threads = edge.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n.as_usize(),
    );
    conf.grace_period_seconds = Some(edge.upgrade.grace_period_secs.get());
    conf.graceful_shutdown_timeout_seconds = Some(edge.upgrade.shutdown_timeout_secs.get());
    conf.upgrade_sock = edge.state_dir.join("upgrade.sock").display().to_string();
    conf.pid_file = edge.state_dir.join("edge.pid").display().to_string();
    let opt = Opt {
        upgrade,
        daemon,
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
    let upstream_task = upstreams.task();

    let shared = Arc::new(Shared {
        web_root,
        upstreams: upstream_task,
        acme: acme_resolver,
        metrics: metrics.clone(),
        certificate: certificate.clone(),
        next_id: Default::default(),
        id_prefix: std::process::id() ^ (crate::metrics::unix_now() as u32).rotate_left(16),
        config: config.clone(),
    });

    let header_limit = edge.limits.client_timeout_secs.secs();
    let http_proxy = pingora::proxy::http_proxy(
        &server.configuration,
        Edge {
            shared: shared.clone(),
            tls: false,
        },
    );
    let mut http = Service::new(
        "http".to_string(),
        crate::header_deadline::Guarded::new(http_proxy, header_limit),
    );
    http.add_tcp(&edge.http_listen.to_string());

    let https_proxy = pingora::proxy::http_proxy(&server.configuration, Edge { shared, tls: true });
    let handshake_timeout = edge.limits.client_timeout_secs.secs();
    let mut https = Service::new(
        "https".to_string(),
        TlsApp::new(tls_config, https_proxy, handshake_timeout),
    );
    https.add_tcp(&edge.https_listen.to_string());

    server.add_service(http);
    server.add_service(https);
    server.add_service(upstreams);
    if let Some(acme) = acme_service {
        server.add_service(background_service("acme", acme));
    }
    let mut metrics_service = Service::new(
        "metrics".to_string(),
        MetricsApp::new(metrics.registry(certificate)),
    );
    metrics_service.add_tcp(&edge.metrics_listen.get().to_string());
    server.add_service(metrics_service);
    tracing::info!(
        "onebox-edge: http {}, https {}, names {}, web root {}, app {:?}",
        edge.http_listen,
        edge.https_listen,
        config.names.join(" "),
        edge.web_root.get().display(),
        edge.upstream.servers
    );
    server.run_forever()
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
    pool.set_health_check(Box::new(check));
    pool.health_check_frequency = Some(up.health_interval_secs.secs());
    Ok(background_service("app health check", pool))
}
