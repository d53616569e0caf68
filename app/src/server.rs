//! The HTTP server: routes, security headers, `/healthz`, start-up, reload and shutdown.
//!
//! Stopping (SIGTERM, Ctrl-C, or the old process at the end of a reload) drains: the process
//! stops accepting at once (with an inherited socket, new connections wait in the kernel for the
//! next process), every answer from then on carries `Connection: close`, keep-alive connections
//! are served for up to [`KEEPALIVE_GRACE`] more so that a proxy's idle connections end after an
//! answer rather than under a request, then idle connections are closed, and requests in
//! flight get `[app] shutdown_timeout_secs` in all to finish.

use crate::config::Settings;
use crate::db::{Db, DbError, UrlError};
use crate::handover::{self, Reloader};
use crate::metrics::{self, Metrics};
use crate::migrate::{self, MigrateError};
use crate::password::Verifier;
use crate::state::AppState;
use crate::throttle::Throttle;
use crate::{admin, api, pages};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONNECTION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How long start-up waits for the database to answer before giving up.
const STARTUP_WAIT: Duration = Duration::from_secs(30);

/// While draining, keep-alive connections are served this long more (each answer closing its
/// connection) before the idle ones are closed.
pub const KEEPALIVE_GRACE: Duration = Duration::from_secs(1);

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database URL is not usable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The schema could not be brought up to date.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The socket passed in (socket activation or a reload) is not usable.
    #[error("the listening socket passed in (LISTEN_FDS) cannot be used: {0}")]
    Inherited(std::io::Error),
}

/// Whether the server is draining, shared by the listener, the middleware and the metrics.
pub struct Drain {
    draining: AtomicBool,
    signal: tokio::sync::watch::Sender<bool>,
}

impl Drain {
    /// A server that is not draining.
    pub fn new() -> Arc<Drain> {
        Arc::new(Drain {
            draining: AtomicBool::new(false),
            signal: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Starts draining.
    pub fn start(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.signal.send_replace(true);
    }

    /// Whether draining has started.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A receiver that turns true when draining starts.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.signal.subscribe()
    }

    /// Completes once draining has started.
    pub async fn started(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// Opens the database, waiting up to [`STARTUP_WAIT`] for it to answer, and migrates the schema.
pub async fn open_database(settings: &Settings) -> Result<Db, ServeError> {
    let db = Db::with_wait(&settings.database_url, settings.database_wait)?;
    let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
    loop {
        match migrate::migrate(&db).await {
            Ok(applied) => {
                if !applied.is_empty() {
                    tracing::info!(?applied, "database schema migrated");
                }
                return Ok(db);
            }
            Err(MigrateError::Db(DbError::Unavailable(why)))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!("waiting for the database: {why}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// The whole application's routes.
pub fn router(state: AppState, drain: Arc<Drain>) -> Router {
    let limit = state.settings.max_body_bytes + 64 * 1024;
    Router::new()
        .merge(pages::routes())
        .merge(admin::routes())
        .nest("/api", api::routes())
        .route("/healthz", get(healthz))
        .fallback(|| async {
            pages::PageError::new(StatusCode::NOT_FOUND, "There is no such page.")
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(drain, close_when_draining))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            metrics::count_requests,
        ))
        .with_state(state)
}

/// While draining, every answer says `Connection: close`: the client (the edge) does not send
/// another request on a connection that is about to close.
async fn close_when_draining(
    State(drain): State<Arc<Drain>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if drain.draining() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Serves until SIGTERM or Ctrl-C, or until SIGHUP has handed the socket to a new process
/// (see [`crate::handover`]). `inherited` is the listening socket systemd or the previous
/// process passed in, if any; otherwise the app binds `settings.listen` itself.
pub async fn serve(
    settings: Settings,
    inherited: Option<std::net::TcpListener>,
) -> Result<(), ServeError> {
    // Handled from the start: a SIGHUP while the database is awaited must not kill the process.
    let signals = Signals::new().map_err(ServeError::Serve)?;
    let predecessor = handover::predecessor();
    let db = open_database(&settings).await?;
    let listener = match inherited {
        Some(listener) => {
            listener
                .set_nonblocking(true)
                .map_err(ServeError::Inherited)?;
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(ServeError::Inherited)?;
            let addr = listener.local_addr().map_err(ServeError::Inherited)?;
            match predecessor {
                Some(pid) => tracing::info!("serving on the socket of pid {pid} ({addr})"),
                None => tracing::info!("serving on the socket systemd passed ({addr})"),
            }
            if settings.listen.port() != 0 && addr != settings.listen {
                tracing::warn!(
                    "the socket passed in is {addr}, not [app] listen = {}: the socket unit \
                     decides where the app listens",
                    settings.listen
                );
            }
            listener
        }
        None => tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: settings.listen,
                source,
            })?,
    };
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    let reloader = Reloader::new(&listener).map_err(ServeError::Serve)?;
    let drain = Drain::new();
    let throttle = Throttle::new(
        settings.login_max_failures,
        settings.login_max_failures_per_client,
        Duration::from_secs(settings.login_lockout_secs),
    );
    let slots = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let metrics = Metrics::new(db.errors());
    if let Some(addr) = settings.metrics_listen {
        serve_metrics(
            addr,
            Arc::clone(&metrics),
            drain.subscribe(),
            predecessor.is_some(),
        )
        .await?;
    }
    let shutdown_timeout = settings.shutdown_timeout;
    let state = AppState {
        db: db.clone(),
        metrics,
        trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
        settings: Arc::new(settings),
        throttle: Arc::new(throttle),
        verifier: Verifier::new(slots),
    };
    tracing::info!(
        "listening on http://{addr}; at most {} password checks at once",
        state.verifier.slots()
    );
    // The one line on standard output: tests, scripts and the previous process (a reload) read
    // the address from it.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}http://{addr}", handover::LISTENING);
    let _ = out.flush();
    if predecessor.is_none() {
        // (After a reload the old process tells systemd about this one: MAINPID.)
        let status = format!("serving on {addr}");
        handover::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    }
    let app = router(state, Arc::clone(&drain))
        .into_make_service_with_connect_info::<crate::linger::PeerAddr>();
    let listener = crate::linger::LingeringListener::new(listener, drain.subscribe())
        .map_err(ServeError::Serve)?;
    let graceful = {
        let drain = Arc::clone(&drain);
        async move {
            drain.started().await;
            tokio::time::sleep(KEEPALIVE_GRACE.min(shutdown_timeout)).await;
        }
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(graceful)
        .into_future();
    tokio::spawn(control(signals, reloader, Arc::clone(&drain)));
    let deadline = {
        let drain = Arc::clone(&drain);
        async move {
            drain.started().await;
            tokio::time::sleep(shutdown_timeout).await;
        }
    };
    tokio::select! {
        served = server => served.map_err(ServeError::Serve)?,
        () = deadline => tracing::warn!(
            "requests still in flight {} s after the stop began: exiting anyway",
            shutdown_timeout.as_secs()
        ),
    }
    if tokio::time::timeout(Duration::from_secs(2), db.close())
        .await
        .is_err()
    {
        tracing::warn!("the database connections did not close within 2 s");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The signals the server acts on.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// Waits for SIGTERM or Ctrl-C (stop), or SIGHUP (reload: hand the socket to a new process,
/// then stop; if that fails, keep serving), then starts draining.
async fn control(mut signals: Signals, reloader: Reloader, drain: Arc<Drain>) {
    let me = std::process::id();
    loop {
        tokio::select! {
            _ = signals.terminate.recv() => break,
            _ = signals.interrupt.recv() => break,
            _ = signals.hangup.recv() => {
                tracing::info!("reload: starting {}", reloader.exe().display());
                handover::notify(&[sd_notify::NotifyState::Status("reloading")]);
                let started = tokio::select! {
                    started = reloader.start_successor() => started,
                    _ = signals.terminate.recv() => break,
                    _ = signals.interrupt.recv() => break,
                };
                match started {
                    Ok(pid) => {
                        let status = format!("pid {me} handed over to pid {pid}");
                        handover::notify(&[
                            sd_notify::NotifyState::MainPid(pid),
                            sd_notify::NotifyState::Ready,
                            sd_notify::NotifyState::Status(&status),
                        ]);
                        tracing::info!(
                            "reload: pid {pid} serves now; pid {me} finishes its requests and exits"
                        );
                        break;
                    }
                    Err(why) => {
                        let status = format!("reload failed: {why}; pid {me} keeps serving");
                        tracing::error!("{status}");
                        handover::notify(&[sd_notify::NotifyState::Status(&status)]);
                    }
                }
            }
        }
    }
    tracing::info!("shutting down: no new connections, finishing the requests in flight");
    drain.start();
}

/// Starts the metrics endpoint on the loopback address `addr`, until draining starts. After a
/// reload (`successor`) the old process may still hold the port for a moment: binding is tried
/// again in the background for up to 30 s.
async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    successor: bool,
) -> Result<(), ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::Bind {
            addr,
            source: std::io::Error::other("[app] metrics_listen must be a loopback address"),
        });
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Some(listener),
        Err(err) if successor && err.kind() == std::io::ErrorKind::AddrInUse => None,
        Err(source) => return Err(ServeError::Bind { addr, source }),
    };
    tokio::spawn(async move {
        let listener = match listener {
            Some(listener) => listener,
            None => {
                let mut tries = 0;
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => break listener,
                        Err(err) if tries < 300 => {
                            tries += 1;
                            tracing::debug!("metrics on {addr}: {err}; trying again");
                        }
                        Err(err) => {
                            tracing::error!("cannot serve the metrics on {addr}: {err}");
                            return;
                        }
                    }
                }
            }
        };
        if let Ok(bound) = listener.local_addr() {
            tracing::info!("metrics on http://{bound}/metrics");
        }
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(err) = axum::serve(listener, metrics.router())
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("the metrics endpoint failed: {err}");
        }
    });
    Ok(())
}

/// `GET /healthz`: 200 `ok` when the database answers. When it does not, the answer is what a
/// request would get: through the first `database_wait_secs` of the outage requests wait for the
/// database, so the app is still up (200 `waiting for the database`: an edge's health check
/// must not take it out of the pool during a MariaDB restart the requests ride out); past that,
/// 503 `database unavailable`. The reason goes to the log, never into the answer.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.db.healthy().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => match state.db.wait_left() {
            Some(left) => {
                tracing::warn!(
                    "health check: {err}; requests wait for it ({} s more)",
                    left.as_secs_f32().ceil()
                );
                (StatusCode::OK, "waiting for the database\n").into_response()
            }
            None => {
                tracing::warn!("health check: {err}");
                (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
            }
        },
    }
}

/// Headers on every answer: no sniffing, a strict content security policy (no scripts at all),
/// no caching of the admin area and the API, and a short shared-cache lifetime for the public
/// HTML pages ([`pages::PUBLIC_CACHE_CONTROL`]).
async fn security_headers(request: Request, next: Next) -> Response {
    let private = {
        let path = request.uri().path();
        path.starts_with("/admin") || path.starts_with("/api/")
    };
    let read = request.method() == Method::GET || request.method() == Method::HEAD;
    let mut response = next.run(request).await;
    let status = response.status();
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    if private {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else if read
        && status == StatusCode::OK
        && !headers.contains_key(CACHE_CONTROL)
        && !headers.contains_key(SET_COOKIE)
        && headers
            .get(CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/html"))
    {
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static(pages::PUBLIC_CACHE_CONTROL),
        );
    }
    // A body too large was not read: the connection ends after this answer, and says so, so
    // that a client which finished sending does not reuse it for its next request.
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
