//! Certificates from an ACME CA through rustls-acme: the account and certificate store in the
//! state directory, and the background service that drives ordering, renewal and retries.
//!
//! rustls-acme orders a certificate when none is cached, renews it when two thirds of its
//! lifetime have passed (a timer in the running process; the point is exported as
//! `onebox_edge_certificate_renewal_timestamp_seconds`), and retries a failed order after 1, 2,
//! 4 … seconds (capped at about 18 hours): the process never exits or restarts because of the
//! CA.

use crate::acme_account::AccountRecorder;
use crate::config::{Challenge, Config};
use crate::metrics::Metrics;
use async_trait::async_trait;
use futures::StreamExt;
use onebox_site::edge::AcmeAccountRecord;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::RootCertStore;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls_acme::{
    AccountCache, AcmeConfig, AcmeState, CertCache, EventError, EventOk, ResolvesServerCertAcme,
    UseChallenge,
};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Reads a PEM file of CA certificates, refusing a file without any.
pub fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path)
        .map_err(|e| format!("acme.directory_ca `{}` cannot be read: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&data).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(format!(
            "acme.directory_ca `{}` holds no PEM certificate",
            path.display()
        )),
        Err(e) => Err(format!(
            "acme.directory_ca `{}` is not valid PEM: {e}",
            path.display()
        )),
    }
}

/// Which certificate the HTTPS listener serves: the CA's (with its validity) or the self-signed
/// stand-in. The ACME side owns it (the cache records each certificate rustls-acme loads or
/// stores, the service a cached file rustls-acme refused); HSTS and the metrics read it.
#[derive(Debug, Default)]
pub struct ServedCertificate {
    /// `notAfter` of the CA's certificate (Unix seconds); 0 while the stand-in is served.
    not_after: AtomicI64,
    /// When that certificate is due for renewal (Unix seconds); 0 while none.
    renewal_at: AtomicI64,
}

impl ServedCertificate {
    /// Whether a certificate issued by the ACME CA is served (else the self-signed stand-in).
    pub fn from_ca(&self) -> bool {
        self.not_after.load(Ordering::Relaxed) != 0
    }

    /// `notAfter` of the CA's certificate being served (Unix seconds).
    pub fn not_after(&self) -> Option<i64> {
        Some(self.not_after.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// When the CA's certificate being served is renewed (Unix seconds): two thirds into its
    /// lifetime, as rustls-acme does.
    pub fn renewal_at(&self) -> Option<i64> {
        Some(self.renewal_at.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Records that the CA's certificate valid for `validity` is served; returns the previous
    /// one's `notAfter` (0 if the stand-in was served).
    fn serve(&self, validity: Validity) -> i64 {
        self.renewal_at
            .store(validity.renewal_at(), Ordering::Relaxed);
        self.not_after
            .swap(validity.not_after.max(1), Ordering::Relaxed)
    }

    /// Records that the self-signed stand-in is served.
    fn serve_self_signed(&self) {
        self.not_after.store(0, Ordering::Relaxed);
        self.renewal_at.store(0, Ordering::Relaxed);
    }
}

/// The account key and certificates, as files in the state directory (mode 0600, written
/// atomically), keyed by the directory URL and the names so a change of either orders anew.
pub struct StateCache {
    dir: PathBuf,
    metrics: Arc<Metrics>,
    served: Arc<ServedCertificate>,
}

impl StateCache {
    /// A store in `dir`, counting issued certificates and renewals in `metrics`. Each
    /// certificate it loads or stores is the one served: see [`StateCache::served`].
    pub fn new(dir: PathBuf, metrics: Arc<Metrics>) -> Self {
        StateCache {
            dir,
            metrics,
            served: Arc::default(),
        }
    }

    /// The served certificate, as this store records it.
    pub fn served(&self) -> Arc<ServedCertificate> {
        self.served.clone()
    }

    fn file(&self, kind: &str, parts: &[String], directory_url: &str) -> PathBuf {
        // A readable, stable file name: FNV-1a of the parts (collisions only matter between a
        // site's own configurations).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in parts
            .iter()
            .flat_map(|p| p.bytes().chain([0]))
            .chain(directory_url.bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.dir.join(format!("{kind}-{h:016x}.pem"))
    }

    fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        write_private(path, data)
    }

    /// The file holding the account key for `contact` at the CA at `directory_url`.
    pub fn account_path(&self, contact: &[String], directory_url: &str) -> PathBuf {
        self.file("account", contact, directory_url)
    }

    /// The file holding the certificate (key PEM first, then the chain) for `names` from the CA
    /// at `directory_url`.
    pub fn cert_path(&self, names: &[String], directory_url: &str) -> PathBuf {
        self.file("cert", names, directory_url)
    }

    /// Records the validity of a certificate chain PEM (key first, then the chain), and logs it.
    /// `renewed` is true for a new certificate that replaces one this process was serving.
    fn note_cert(&self, pem: &[u8], renewed: bool) {
        let Some(validity) = leaf_validity(pem) else {
            return;
        };
        let previous = self.served.serve(validity);
        if !renewed && previous == validity.not_after {
            return; // read once before listening, deployed by rustls-acme now: said already
        }
        let days = (validity.not_after - crate::metrics::unix_now()) / 86_400;
        if renewed && previous != 0 {
            self.metrics.renewals.inc();
            tracing::info!(
                "renewed the certificate: the previous one was valid until {}",
                http_date(previous)
            );
        }
        tracing::info!(
            "certificate from the CA: valid until {} ({days} days), renewal due at {}",
            http_date(validity.not_after),
            http_date(validity.renewal_at())
        );
    }
}

/// Writes `data` to `path` (mode 0600) atomically: a synced `PATH.tmp`, renamed into place.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A Unix time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(unix: i64) -> String {
    httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64),
    )
}

/// The validity period of a certificate, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

impl Validity {
    /// When rustls-acme orders the replacement: two thirds into the lifetime (its
    /// `not_after - (not_after - not_before) / 3`, to the second).
    pub fn renewal_at(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before) / 3
    }
}

/// The validity of the first certificate in `pem`.
pub fn leaf_validity(pem: &[u8]) -> Option<Validity> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[async_trait]
impl CertCache for StateCache {
    type EC = std::io::Error;
    async fn load_cert(
        &self,
        domains: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, Self::EC> {
        let path = self.file("cert", domains, directory_url);
        let data = Self::read(&path)?;
        if let Some(pem) = &data {
            tracing::info!("using the cached certificate {}", path.display());
            self.note_cert(pem, false);
        }
        Ok(data)
    }
    async fn store_cert(
        &self,
        domains: &[String],
        directory_url: &str,
        cert: &[u8],
    ) -> Result<(), Self::EC> {
        let path = self.file("cert", domains, directory_url);
        self.note_cert(cert, true);
        self.metrics.certs_issued.inc();
        self.write(&path, cert)
    }
}

#[async_trait]
impl AccountCache for StateCache {
    type EA = std::io::Error;
    async fn load_account(
        &self,
        contact: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, Self::EA> {
        let path = self.file("account", contact, directory_url);
        Self::read(&path)
    }
    async fn store_account(
        &self,
        contact: &[String],
        directory_url: &str,
        account: &[u8],
    ) -> Result<(), Self::EA> {
        let path = self.file("account", contact, directory_url);
        self.write(&path, account)
    }
}

/// Reads the certificate that rustls-acme would deploy from `pem` (its cache format: the PKCS#8
/// key, then the chain), or `None` if it would refuse it.
fn parse_cached(pem: &[u8]) -> Option<CertifiedKey> {
    let mut sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(pem);
    let Some(Ok((SectionKind::PrivateKey, key))) = sections.next() else {
        return None;
    };
    let key =
        rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&PrivateKeyDer::Pkcs8(key.into())).ok()?;
    let chain = sections
        .map(|section| match section {
            Ok((SectionKind::Certificate, der)) => Some(CertificateDer::from(der)),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    (!chain.is_empty()).then(|| CertifiedKey::new(chain, key))
}

/// What the HTTPS listener takes from ACME.
#[derive(Debug, Clone)]
pub struct AcmeCerts {
    /// rustls-acme's resolver: the `acme-tls/1` challenge certificates, and the certificate
    /// once the background service has deployed it (from the cache or a new order).
    pub resolver: Arc<ResolvesServerCertAcme>,
    /// The cached certificate, read before the listeners start. The background service deploys
    /// it a moment later; until then (milliseconds, longer on a slow or loaded machine) the
    /// first handshakes after a start or a reload get it from here rather than the self-signed
    /// stand-in, which clients would refuse.
    pub cached: Option<Arc<CertifiedKey>>,
    /// Which certificate is served, as the ACME side records it.
    pub served: Arc<ServedCertificate>,
}

/// The ACME state machine, run as a pingora background service.
pub struct AcmeService {
    state: Mutex<Option<AcmeState<std::io::Error>>>,
    account: AccountRecorder,
    metrics: Arc<Metrics>,
    served: Arc<ServedCertificate>,
}

impl AcmeService {
    /// Builds the ACME client for `config`, or `None` when ACME is off. Also returns what the
    /// HTTPS listener serves: the resolver and the cached certificate.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<Option<(Self, AcmeCerts)>, String> {
        let acme = &config.edge.acme;
        let Some(directory) = acme.directory() else {
            return Ok(None);
        };
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots_store());
        if let Some(ca) = &acme.directory_ca {
            for cert in read_roots(ca.get())? {
                roots
                    .add(cert)
                    .map_err(|e| format!("acme.directory_ca `{}`: {e}", ca.get().display()))?;
            }
        }
        let client = Arc::new(
            rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS client setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let cache = StateCache::new(config.edge.state_dir.join("acme"), metrics.clone());
        let contact: Vec<String> = acme
            .email
            .iter()
            .map(|e| format!("mailto:{}", e.as_str()))
            .collect();
        let account = AccountRecorder {
            client: client.clone(),
            directory: directory.clone(),
            contact: contact.clone(),
            key_file: cache.account_path(&contact, &directory),
            record_file: config.edge.state_dir.join(AcmeAccountRecord::FILE),
        };
        let served = cache.served();
        let cached = StateCache::read(&cache.cert_path(&config.names, &directory))
            .ok()
            .flatten()
            .and_then(|pem| {
                let cert = parse_cached(&pem)?;
                cache.note_cert(&pem, false);
                Some(Arc::new(cert))
            });
        let mut cfg = AcmeConfig::new_with_client_config(config.names.clone(), client)
            .directory(&directory)
            .challenge_type(match acme.challenge {
                Challenge::Http01 => UseChallenge::Http01,
                Challenge::TlsAlpn01 => UseChallenge::TlsAlpn01,
            })
            .cache(cache);
        for c in contact {
            cfg = cfg.contact_push(c);
        }
        let state = cfg.state();
        let resolver = state.resolver();
        tracing::info!(
            "ACME: directory {directory}, challenge {:?}, names {:?}",
            acme.challenge,
            config.names
        );
        Ok(Some((
            AcmeService {
                state: Mutex::new(Some(state)),
                account,
                metrics,
                served: served.clone(),
            },
            AcmeCerts {
                resolver,
                cached,
                served,
            },
        )))
    }
}

/// The Web PKI roots, for talking to public CAs.
fn webpki_roots_store() -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.to_vec()
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut state) = self.state.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        // When orders without a network to the CA were last said (rustls-acme counts them).
        let mut said_at = None::<std::time::Instant>;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                event = state.next() => match event {
                    Some(Ok(ok)) => {
                        tracing::info!("ACME: {ok:?}");
                        // A certificate is served, so the account exists: record its URL for
                        // the CAA record once per directory.
                        let deployed = matches!(
                            ok,
                            EventOk::DeployedNewCert | EventOk::DeployedCachedCert
                        );
                        if deployed {
                            self.metrics.acme_ordered();
                        }
                        if deployed && !self.account.recorded() {
                            tokio::spawn(self.account.clone().record());
                        }
                    }
                    Some(Err(err)) => {
                        if matches!(err, EventError::CachedCertParse(_)) {
                            // Not served after all: the self-signed stand-in is, until the CA's.
                            self.served.serve_self_signed();
                        }
                        let text = err.to_string();
                        // Exponential backoff, or soon while the machine has no network to the
                        // CA (a first boot before DHCP, an outage: rustls-acme §8), which is
                        // said at the first such try and once a minute after.
                        let again = match &err {
                            EventError::Order(_) => state.retry_in(),
                            _ => None,
                        };
                        if matches!(&err, EventError::Order(o) if o.no_network()) {
                            let no_network = state.no_network_tries();
                            let now = std::time::Instant::now();
                            if no_network == 1
                                || said_at.is_none_or(|at| now.duration_since(at).as_secs() >= 60)
                            {
                                said_at = Some(now);
                                let s = again.unwrap_or_default().as_secs_f64();
                                tracing::warn!(
                                    "ACME error (try {no_network} without a network to the CA; trying again in {s} s): {text}"
                                );
                            }
                        } else if let Some(wait) = again {
                            let s = wait.as_secs_f64();
                            tracing::warn!("ACME error (trying again in {s} s): {text}");
                        } else {
                            tracing::warn!("ACME error: {text}");
                        }
                        self.metrics.acme_failed(&text, again);
                    }
                    None => return,
                },
            }
        }
    }
}
