//! The DNS differential test's machinery (dns/tests/differential.rs is the test itself).

pub mod compare;
pub mod lists;
pub mod queries;
pub mod servers;
pub mod transport;
pub mod wire;
