//! A throwaway certificate authority for tests (rcgen): a CA and leaf certificates for names.

use std::path::Path;

use anyhow::Context as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throwaway CA: a self-signed certificate and its key, issuing [`Leaf`] certificates.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

/// A certificate issued by a [`TestCa`], with its key.
pub struct Leaf {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    /// A new CA whose subject's common name is `common_name`.
    pub fn new(common_name: &str) -> anyhow::Result<TestCa> {
        let key = rcgen::KeyPair::generate().context("generating the CA key")?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.self_signed(&key).context("signing the CA")?;
        Ok(TestCa { key, cert })
    }

    /// A leaf certificate for `names` (DNS names; a name that parses as an IP address becomes
    /// an IP address entry) with an ECDSA P-256 key, valid from a day ago for a year.
    pub fn leaf<S: AsRef<str>>(&self, names: &[S]) -> anyhow::Result<Leaf> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.leaf_valid(names, now - 86_400, now + 365 * 86_400)
    }

    /// [`leaf`](Self::leaf), valid from `not_before` to `not_after` (Unix seconds).
    pub fn leaf_valid<S: AsRef<str>>(
        &self,
        names: &[S],
        not_before: i64,
        not_after: i64,
    ) -> anyhow::Result<Leaf> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_string()).collect();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating a leaf key")?;
        let mut params = rcgen::CertificateParams::new(names.clone())
            .with_context(|| format!("certificate names {names:?}"))?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before)?;
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after)?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing a leaf")?;
        Ok(Leaf { key, cert })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Writes the CA certificate (PEM) to `path`, for `curl --cacert` or a server's trust store.
    pub fn write_cert(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.cert_pem()).with_context(|| format!("writing {}", path.display()))
    }
}

impl Leaf {
    /// The certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The private key, PKCS#8 DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The key, the certificate and the CA's certificate in one PEM text (rustls-acme's cache
    /// format).
    pub fn key_chain_pem(&self, ca: &TestCa) -> String {
        format!("{}{}{}", self.key_pem(), self.cert_pem(), ca.cert_pem())
    }

    /// Writes the certificate to `cert` and the key to `key` (mode 0600), PEM.
    pub fn write(&self, cert: &Path, key: &Path) -> anyhow::Result<()> {
        std::fs::write(cert, self.cert_pem())
            .with_context(|| format!("writing {}", cert.display()))?;
        write_private(key, &self.key_pem())
    }
}

/// Writes `text` to a new file `path` readable by its owner only.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
