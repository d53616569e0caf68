//! Prometheus metrics (the `prometheus-client` crate), served as OpenMetrics text at
//! `GET /metrics` on `[app] metrics_listen`, a loopback address:
//!
//! - `onebox_app_requests_total{route, method, status}`: answers by route template (`/posts/{id}`,
//!   never the raw path: `unmatched` for paths no route knows), method and status;
//! - `onebox_app_database_errors_total{kind}`: `unavailable` (down, too slow: 503) and `query`
//!   (refused: 500);
//! - `onebox_app_logins_total{result}`: `success`, `failure`, `throttled` (429), `busy` (every
//!   password check slot taken: 503) and `error`.
//!
//! Every label takes values from a fixed set, so the series are bounded whatever clients send.

use crate::session::LoginError;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The labels of a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: MethodLabel,
    status: u16,
}

/// The request methods counted by name; any other is `OTHER`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
enum MethodLabel {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    OTHER,
}

impl From<&Method> for MethodLabel {
    fn from(method: &Method) -> MethodLabel {
        match *method {
            Method::GET => MethodLabel::GET,
            Method::HEAD => MethodLabel::HEAD,
            Method::POST => MethodLabel::POST,
            Method::PUT => MethodLabel::PUT,
            Method::DELETE => MethodLabel::DELETE,
            _ => MethodLabel::OTHER,
        }
    }
}

/// The kind of a database error.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DbErrorKind {
    /// The database could not be reached or did not answer in time (503).
    unavailable,
    /// The database refused a query (500).
    query,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbErrorLabels {
    kind: DbErrorKind,
}

/// Database errors by kind: kept by [`crate::db::Db`], registered by [`Metrics::new`].
#[derive(Debug, Clone, Default)]
pub struct DbErrors(Family<DbErrorLabels, Counter>);

impl DbErrors {
    /// Counts one error of `kind`.
    pub fn count(&self, kind: DbErrorKind) {
        self.0.get_or_create(&DbErrorLabels { kind }).inc();
    }
}

/// What became of a login attempt.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum LoginResult {
    success,
    failure,
    throttled,
    busy,
    error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    result: LoginResult,
}

/// The app's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
}

impl Metrics {
    /// The metrics, with the database's error counters `db_errors`.
    pub fn new(db_errors: &DbErrors) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("onebox_app");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP answers by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "database_errors",
            "Database errors: unavailable (503) or query (500)",
            db_errors.0.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Login attempts by result: success, failure, throttled, busy, error",
            logins.clone(),
        );
        // Every login result shows from the start, at 0.
        for result in [
            LoginResult::success,
            LoginResult::failure,
            LoginResult::throttled,
            LoginResult::busy,
            LoginResult::error,
        ] {
            let _ = logins.get_or_create(&LoginLabels { result });
        }
        for kind in [DbErrorKind::unavailable, DbErrorKind::query] {
            let _ = db_errors.0.get_or_create(&DbErrorLabels { kind });
        }
        Arc::new(Metrics {
            registry,
            requests,
            logins,
        })
    }

    /// Counts the outcome of a login attempt.
    pub fn login<T>(&self, outcome: &Result<T, LoginError>) {
        let result = match outcome {
            Ok(_) => LoginResult::success,
            Err(LoginError::Wrong) => LoginResult::failure,
            Err(LoginError::Throttled(_)) => LoginResult::throttled,
            Err(LoginError::Busy) => LoginResult::busy,
            Err(LoginError::Db(_) | LoginError::Internal(_)) => LoginResult::error,
        };
        self.logins.get_or_create(&LoginLabels { result }).inc();
    }

    /// The metrics as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("cannot encode the metrics");
        }
        text
    }

    /// The metrics endpoint: `GET /metrics`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(self)
    }
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Middleware: counts every answer by route template, method and status.
pub async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    // The route's template (a fixed set), never the raw path.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = MethodLabel::from(request.method());
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family() {
        let db = DbErrors::default();
        let m = Metrics::new(&db);
        db.count(DbErrorKind::query);
        m.login::<()>(&Err(LoginError::Busy));
        let text = m.encode();
        assert!(
            text.contains("onebox_app_database_errors_total{kind=\"query\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("onebox_app_logins_total{result=\"busy\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("onebox_app_logins_total{result=\"success\"} 0"),
            "{text}"
        );
    }
}
