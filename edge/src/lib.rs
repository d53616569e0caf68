//! onebox-edge: the onebox HTTP/HTTPS front door on pingora, with certificates from ACME
//! (rustls-acme), static files from a web root, and a health-checked reverse proxy to the app.
//!
//! One module per concept: [`config`] (the `[edge]` section), [`server`] (assembling the pingora
//! server), [`proxy`] (the request logic as pingora phase hooks), [`static_files`],
//! [`file_cache`] (small static files in memory), [`limits`] (per request), [`connections`]
//! (per connection), [`header_deadline`] (slowloris and oversized HTTP/1 headers), [`tls`] (the
//! HTTPS listener and certificate choice), [`acme`] (ordering and storing certificates),
//! [`page_cache`] (the app's pages in pingora's cache) and [`page_store`] (its storage),
//! [`metrics`].

pub mod acme;
pub mod acme_account;
pub mod config;
pub mod connections;
pub mod error;
pub mod file_cache;
pub mod header_deadline;
pub mod limits;
pub mod metrics;
pub mod page_cache;
pub mod page_store;
pub mod proxy;
pub mod server;
pub mod static_files;
pub mod tls;
pub mod web_root;

pub use error::EdgeError;
