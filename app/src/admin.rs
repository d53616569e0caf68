//! The admin area under `/admin`.

use crate::state::AppState;
use axum::Router;

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
