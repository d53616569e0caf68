//! What every request handler shares.

use crate::config::Settings;
use crate::db::Db;
use crate::throttle::Throttle;
use std::sync::Arc;

/// The shared state of the server.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The settings the server runs with.
    pub settings: Arc<Settings>,
    /// Failed-login bookkeeping.
    pub throttle: Arc<Throttle>,
}
