//! The HTTPS listener: the edge does the rustls handshake itself (so it can offer ALPN `h2`,
//! `http/1.1` and `acme-tls/1` on one port) and hands every HTTP connection to pingora's proxy.
//!
//! Certificates come from the ACME resolver; until the CA has issued one, a self-signed
//! certificate for the site's names stands in, so HTTPS never fails for lack of a certificate.

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_acme::ResolvesServerCertAcme;
use std::sync::Arc;

/// Picks the certificate for a handshake: the ACME challenge certificate for `acme-tls/1`
/// handshakes, otherwise the CA-issued certificate, otherwise the self-signed stand-in.
#[derive(Debug)]
pub struct EdgeResolver {
    acme: Option<Arc<ResolvesServerCertAcme>>,
    self_signed: Arc<CertifiedKey>,
}

impl EdgeResolver {
    /// A resolver for `names`, using `acme`'s certificates when it has them.
    pub fn new(
        names: &[String],
        acme: Option<Arc<ResolvesServerCertAcme>>,
    ) -> Result<Self, String> {
        Ok(EdgeResolver {
            acme,
            self_signed: Arc::new(self_signed(names)?),
        })
    }
}

impl ResolvesServerCert for EdgeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match &self.acme {
            Some(acme) if rustls_acme::is_tls_alpn_challenge(&hello) => acme.resolve(hello),
            Some(acme) => acme
                .resolve(hello)
                .or_else(|| Some(self.self_signed.clone())),
            None => Some(self.self_signed.clone()),
        }
    }
}

/// A fresh self-signed certificate (ECDSA P-256) for `names`.
fn self_signed(names: &[String]) -> Result<CertifiedKey, String> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| format!("cannot make the self-signed certificate: {e}"))?;
    let key_der =
        rustls::pki_types::PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into());
    let key = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("cannot use the self-signed key: {e}"))?;
    Ok(CertifiedKey::new(vec![generated.cert.der().clone()], key))
}

/// Builds the rustls server configuration of the HTTPS listener.
pub fn server_config(resolver: Arc<EdgeResolver>) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| format!("TLS server setup: {e}"))?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"acme-tls/1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTPS application: TLS handshake, then the HTTP application `A` (pingora's proxy).
pub struct TlsApp<A> {
    acceptor: Acceptor,
    http: Arc<A>,
    handshake_timeout: std::time::Duration,
}

impl<A> TlsApp<A> {
    /// Serves `http` over TLS with `config`; a handshake slower than `handshake_timeout` is cut.
    pub fn new(
        config: Arc<rustls::ServerConfig>,
        http: A,
        handshake_timeout: std::time::Duration,
    ) -> Self {
        TlsApp {
            acceptor: Acceptor::from_server_config(config),
            http: Arc::new(http),
            handshake_timeout,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The listener is plain TCP: the stream is a pingora L4 stream, which the TLS acceptor
        // needs by its concrete type.
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            tracing::error!("HTTPS listener got a stream that is not TCP");
            return None;
        };
        let tls =
            match tokio::time::timeout(self.handshake_timeout, self.acceptor.tls_handshake(*l4))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return None;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return None;
                }
            };
        if let Some(ALPN::Custom(custom)) = pingora::protocols::Ssl::selected_alpn_proto(&tls) {
            // `acme-tls/1`: the handshake itself was the answer to the CA's TLS-ALPN-01 check.
            tracing::info!(
                "answered an ACME TLS-ALPN-01 validation ({:?})",
                String::from_utf8_lossy(custom.protocol())
            );
            return None;
        }
        // HTTP/1 requests are each timed; on HTTP/2 only the preface is.
        let per_request = !matches!(
            pingora::protocols::Ssl::selected_alpn_proto(&tls),
            Some(ALPN::H2)
        );
        self.http
            .process_new(
                Box::new(crate::header_deadline::HeaderDeadline::new(
                    tls,
                    self.handshake_timeout,
                    per_request,
                )),
                shutdown,
            )
            .await
    }

    async fn cleanup(&self) {
        self.http.cleanup().await;
    }
}
