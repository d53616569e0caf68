//! The ACME account's URL, recorded for the zone's CAA record.
//!
//! RFC 8657 lets a CAA record name the one ACME account allowed to order certificates for the
//! domain (`accounturi`), so a CA refuses anybody else who passes a challenge (a hijacked
//! route, a rogue tenant on the same address). rustls-acme keeps the account's URL to itself,
//! so once a certificate is deployed the edge asks the CA for it — `newAccount` with the
//! account key it already has returns the existing account's URL (RFC 8555 §7.3.1), creating
//! nothing — and writes it to `STATE_DIR/acme/account.json`
//! ([`onebox_site::edge::AcmeAccountRecord`]). `onebox caa` (root, started by
//! `onebox-caa.path`) puts it into the zone.

use onebox_site::edge::AcmeAccountRecord;
use rustls_acme::acme::{Account, Directory};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the account key is and where its URL goes.
#[derive(Clone)]
pub struct AccountRecorder {
    /// The TLS client configuration for the CA (its roots).
    pub client: Arc<rustls::ClientConfig>,
    /// The directory URL.
    pub directory: String,
    /// The contact URIs the account was made with.
    pub contact: Vec<String>,
    /// The account key file (PKCS#8, as rustls-acme stores it through the state cache).
    pub key_file: PathBuf,
    /// `STATE_DIR/acme/account.json`.
    pub record_file: PathBuf,
}

impl AccountRecorder {
    /// Whether the record for this directory is written already.
    pub fn recorded(&self) -> bool {
        std::fs::read_to_string(&self.record_file)
            .ok()
            .and_then(|t| AcmeAccountRecord::parse(&t).ok())
            .is_some_and(|r| r.directory == self.directory)
    }

    /// Asks the CA for the account's URL and records it; tries three times (after 10 s, then
    /// 60 s) before leaving it to the next deployed certificate.
    pub async fn record(self) {
        for pause in [0, 10, 60] {
            tokio::time::sleep(Duration::from_secs(pause)).await;
            match self.record_once().await {
                Ok(uri) => {
                    tracing::info!(
                        "ACME account {uri} recorded in {} (for the CAA record)",
                        self.record_file.display()
                    );
                    return;
                }
                Err(e) => tracing::warn!("ACME account URL for the CAA record: {e}"),
            }
        }
    }

    async fn record_once(&self) -> Result<String, String> {
        let key = std::fs::read(&self.key_file)
            .map_err(|e| format!("account key {}: {e}", self.key_file.display()))?;
        let directory = Directory::discover(&self.client, &self.directory)
            .await
            .map_err(|e| format!("directory {}: {e}", self.directory))?;
        let account = Account::create_with_keypair(&self.client, directory, &self.contact, &key)
            .await
            .map_err(|e| format!("newAccount at {}: {e}", self.directory))?;
        let record = AcmeAccountRecord {
            directory: self.directory.clone(),
            account_uri: account.kid,
        };
        let text = serde_json::to_string(&record).map_err(|e| e.to_string())?;
        // Checked as `onebox caa` will check it, so a CA's odd URL is said here.
        AcmeAccountRecord::parse(&text)?;
        crate::acme::write_private(&self.record_file, text.as_bytes())
            .map_err(|e| format!("{}: {e}", self.record_file.display()))?;
        Ok(record.account_uri)
    }
}
