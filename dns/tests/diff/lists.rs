//! The two exception lists, both in dns/tests/diff/: `allowlist.toml` (differences that are
//! RFC-permitted style, each with its reason) and `KNOWN_FAILURES.toml` (real differences of
//! onebox-dns not fixed yet; the test prints them and fails once one of them is fixed, so the
//! list can only shrink).

use serde::Deserialize;

/// An RFC-permitted difference: for queries whose label matches `query`, onebox-dns may differ
/// from the peers in `field`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Label pattern (`*` matches anything).
    pub query: String,
    /// The field that may differ (flags, rcode, question, answer, authority, additional, edns,
    /// reply, id, framing, authority+additional).
    pub field: String,
    /// Why the RFCs permit it.
    pub reason: String,
}

/// A difference onebox-dns still has, and the queries that show it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    /// What is wrong.
    pub what: String,
    /// Labels of the failing queries (exact; `*` matches anything).
    pub queries: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowFile {
    #[serde(default)]
    allow: Vec<Allow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownFile {
    #[serde(default)]
    failure: Vec<KnownFailure>,
}

fn read(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/diff/").to_string() + name;
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Loads dns/tests/diff/allowlist.toml.
pub fn allowlist() -> Vec<Allow> {
    let f: AllowFile = toml::from_str(&read("allowlist.toml"))
        .unwrap_or_else(|e| panic!("dns/tests/diff/allowlist.toml: {e}"));
    for a in &f.allow {
        assert!(
            !a.reason.trim().is_empty(),
            "allowlist entry {} / {} has no reason",
            a.query,
            a.field
        );
    }
    f.allow
}

/// Loads dns/tests/diff/KNOWN_FAILURES.toml.
pub fn known_failures() -> Vec<KnownFailure> {
    let f: KnownFile = toml::from_str(&read("KNOWN_FAILURES.toml"))
        .unwrap_or_else(|e| panic!("dns/tests/diff/KNOWN_FAILURES.toml: {e}"));
    f.failure
}
