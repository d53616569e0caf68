use crate::is_tls_alpn_challenge;
use futures_rustls::rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::Mutex;

#[derive(Debug)]
pub struct ResolvesServerCertAcme {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    cert: Option<Arc<CertifiedKey>>,
    /// onebox: one entry per name being validated (the published crate held one: it validated
    /// the names of an order one after the other). At most the order's names: an entry goes
    /// when its authorization is settled, and all at the start of an order.
    challenge_data: Vec<(String, ChallengeData)>,
}

#[derive(Debug)]
enum ChallengeData {
    TlsAlpn01 { sni: String, cert: Arc<CertifiedKey> },
    Http01 { token: String, key_auth: String },
}

impl ResolvesServerCertAcme {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                cert: None,
                challenge_data: Vec::new(),
            }),
        })
    }
    pub(crate) fn set_cert(&self, cert: Arc<CertifiedKey>) {
        self.inner.lock().unwrap().cert = Some(cert);
    }
    /// onebox: the name's TLS-ALPN-01 certificate, beside those of the order's other names.
    pub(crate) fn set_tls_alpn_01_challenge_data(&self, domain: String, cert: Arc<CertifiedKey>) {
        self.set_challenge_data(domain.clone(), ChallengeData::TlsAlpn01 { sni: domain, cert });
    }
    /// onebox: the name's HTTP-01 token and key authorization, beside those of the order's
    /// other names.
    pub(crate) fn set_http_01_challenge_data(&self, domain: String, token: String, key_auth: String) {
        self.set_challenge_data(domain, ChallengeData::Http01 { token, key_auth });
    }
    fn set_challenge_data(&self, domain: String, data: ChallengeData) {
        let mut inner = self.inner.lock().unwrap();
        inner.challenge_data.retain(|(d, _)| *d != domain);
        inner.challenge_data.push((domain, data));
    }
    /// onebox: forgets the challenge of `domain` (its authorization is settled).
    pub(crate) fn clear_challenge_data_for(&self, domain: &str) {
        self.inner.lock().unwrap().challenge_data.retain(|(d, _)| d != domain);
    }
    /// Forgets every challenge (onebox: at the start of an order, what a failed one left).
    pub(crate) fn clear_challenge_data(&self) {
        self.inner.lock().unwrap().challenge_data.clear();
    }
    pub fn get_http_01_key_auth(&self, challenge_token: &str) -> Option<String> {
        self.inner.lock().unwrap().challenge_data.iter().find_map(|(_, data)| match data {
            ChallengeData::Http01 { token, key_auth } if token == challenge_token => Some(key_auth.clone()),
            _ => None,
        })
    }
}

impl ResolvesServerCert for ResolvesServerCertAcme {
    fn resolve(&self, client_hello: ClientHello) -> Option<Arc<CertifiedKey>> {
        let is_acme_challenge = is_tls_alpn_challenge(&client_hello);
        if is_acme_challenge {
            match client_hello.server_name() {
                None => {
                    log::debug!("client did not supply SNI");
                    None
                }
                Some(domain) => self.inner.lock().unwrap().challenge_data.iter().find_map(|(_, data)| match data {
                    ChallengeData::TlsAlpn01 { sni, cert } if sni == domain => Some(cert.clone()),
                    _ => None,
                }),
            }
        } else {
            self.inner.lock().unwrap().cert.clone()
        }
    }
}

/// onebox: the challenges of several names at once (`PATCHES.md`, 5).
#[cfg(test)]
mod onebox_tests {
    use super::*;

    #[test]
    fn every_name_of_an_order_is_answered_at_once() {
        let r = ResolvesServerCertAcme::new();
        r.set_http_01_challenge_data("a.test".into(), "token-a".into(), "auth-a".into());
        r.set_http_01_challenge_data("b.test".into(), "token-b".into(), "auth-b".into());
        assert_eq!(r.get_http_01_key_auth("token-a").as_deref(), Some("auth-a"));
        assert_eq!(r.get_http_01_key_auth("token-b").as_deref(), Some("auth-b"));
        assert_eq!(r.get_http_01_key_auth("token-c"), None);

        // A name's settled authorization forgets its challenge only.
        r.clear_challenge_data_for("a.test");
        assert_eq!(r.get_http_01_key_auth("token-a"), None);
        assert_eq!(r.get_http_01_key_auth("token-b").as_deref(), Some("auth-b"));

        // A new challenge for a name replaces its old one; a new order starts from none.
        r.set_http_01_challenge_data("b.test".into(), "token-b2".into(), "auth-b2".into());
        assert_eq!(r.get_http_01_key_auth("token-b"), None);
        assert_eq!(r.get_http_01_key_auth("token-b2").as_deref(), Some("auth-b2"));
        r.clear_challenge_data();
        assert_eq!(r.get_http_01_key_auth("token-b2"), None);
    }
}
