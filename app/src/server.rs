//! The HTTP server: routes, security headers, `/healthz`, start-up and shutdown.

use crate::config::Settings;
use crate::db::{Db, DbError, UrlError};
use crate::metrics::{self, Metrics};
use crate::migrate::{self, MigrateError};
use crate::password::Verifier;
use crate::state::AppState;
use crate::throttle::Throttle;
use crate::{admin, api, pages};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONNECTION, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long start-up waits for the database to answer before giving up.
const STARTUP_WAIT: Duration = Duration::from_secs(30);

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
}

/// Opens the database, waiting up to [`STARTUP_WAIT`] for it to answer, and migrates the schema.
pub async fn open_database(settings: &Settings) -> Result<Db, ServeError> {
    let db = Db::new(&settings.database_url)?;
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
pub fn router(state: AppState) -> Router {
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
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            metrics::count_requests,
        ))
        .with_state(state)
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let db = open_database(&settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    let throttle = Throttle::new(
        settings.login_max_failures,
        settings.login_max_failures_per_client,
        Duration::from_secs(settings.login_lockout_secs),
    );
    let slots = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let metrics = Metrics::new(db.errors());
    if let Some(addr) = settings.metrics_listen {
        serve_metrics(addr, Arc::clone(&metrics)).await?;
    }
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
    // The one line on standard output: tests and scripts read the address from it.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "onebox-app: listening on http://{addr}");
    let _ = out.flush();
    let app = router(state).into_make_service_with_connect_info::<crate::linger::PeerAddr>();
    axum::serve(crate::linger::LingeringListener(listener), app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(ServeError::Serve)?;
    db.close().await;
    Ok(())
}

/// Starts the metrics endpoint on the loopback address `addr`.
async fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<(), ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::Bind {
            addr,
            source: std::io::Error::other("[app] metrics_listen must be a loopback address"),
        });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!("metrics on http://{bound}/metrics");
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, metrics.router()).await {
            tracing::error!("the metrics endpoint failed: {err}");
        }
    });
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// `GET /healthz`: 200 `ok` when the database answers, 503 `database unavailable` otherwise;
/// the reason goes to the log, never into the answer.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.db.healthy().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => {
            tracing::warn!("health check: {err}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// Headers on every answer: no sniffing, a strict content security policy (no scripts at all),
/// and no caching of the admin area and the API.
async fn security_headers(request: Request, next: Next) -> Response {
    let private = {
        let path = request.uri().path();
        path.starts_with("/admin") || path.starts_with("/api/")
    };
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
    }
    // A body too large was not read: the connection ends after this answer, and says so, so
    // that a client which finished sending does not reuse it for its next request.
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
