//! What every request handler shares.

use crate::config::Settings;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::password::Verifier;
use crate::throttle::Throttle;
use ipnet::IpNet;
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
    /// The password check slots.
    pub verifier: Arc<Verifier>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The peers whose `X-Forwarded-For` is believed (the edge).
    pub trusted_proxies: Arc<Vec<IpNet>>,
}
