use crate::is_tls_alpn_challenge;
use futures_rustls::rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::Mutex;
use tokio::sync::Notify;

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
    challenges: Vec<Challenge>,
}

/// onebox: the challenge of one name being validated.
#[derive(Debug)]
struct Challenge {
    /// The name (for TLS-ALPN-01, the SNI the CA's validation asks for).
    domain: String,
    data: ChallengeData,
    /// What wakes the poll of the name's authorization when the CA's validation of it has come
    /// (`validation_seen`).
    seen: Arc<Notify>,
}

#[derive(Debug)]
enum ChallengeData {
    TlsAlpn01 { cert: Arc<CertifiedKey> },
    Http01 { token: String, key_auth: String },
}

impl ResolvesServerCertAcme {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                cert: None,
                challenges: Vec::new(),
            }),
        })
    }
    pub(crate) fn set_cert(&self, cert: Arc<CertifiedKey>) {
        self.inner.lock().unwrap().cert = Some(cert);
    }
    /// onebox: the name's TLS-ALPN-01 certificate, beside those of the order's other names.
    pub(crate) fn set_tls_alpn_01_challenge_data(&self, domain: String, cert: Arc<CertifiedKey>) {
        self.set_challenge_data(domain, ChallengeData::TlsAlpn01 { cert });
    }
    /// onebox: the name's HTTP-01 token and key authorization, beside those of the order's
    /// other names.
    pub(crate) fn set_http_01_challenge_data(&self, domain: String, token: String, key_auth: String) {
        self.set_challenge_data(domain, ChallengeData::Http01 { token, key_auth });
    }
    fn set_challenge_data(&self, domain: String, data: ChallengeData) {
        let mut inner = self.inner.lock().unwrap();
        inner.challenges.retain(|c| c.domain != domain);
        inner.challenges.push(Challenge {
            domain,
            data,
            seen: Arc::new(Notify::new()),
        });
    }
    /// onebox: what is notified each time the CA's validation of `domain`'s challenge comes (an
    /// HTTP-01 token or a TLS-ALPN-01 certificate asked for; a validation that came while
    /// nobody waited is kept, one): RFC 8555 §7.5.1 has a client that can tell when the CA
    /// validated look at the authorization then. `None` when no challenge is set for it.
    pub(crate) fn validation_seen(&self, domain: &str) -> Option<Arc<Notify>> {
        self.inner
            .lock()
            .unwrap()
            .challenges
            .iter()
            .find(|c| c.domain == domain)
            .map(|c| c.seen.clone())
    }
    /// onebox: forgets the challenge of `domain` (its authorization is settled).
    pub(crate) fn clear_challenge_data_for(&self, domain: &str) {
        self.inner.lock().unwrap().challenges.retain(|c| c.domain != domain);
    }
    /// Forgets every challenge (onebox: at the start of an order, what a failed one left).
    pub(crate) fn clear_challenge_data(&self) {
        self.inner.lock().unwrap().challenges.clear();
    }
    pub fn get_http_01_key_auth(&self, challenge_token: &str) -> Option<String> {
        let inner = self.inner.lock().unwrap();
        let (challenge, key_auth) = inner.challenges.iter().find_map(|c| match &c.data {
            ChallengeData::Http01 { token, key_auth } if token == challenge_token => Some((c, key_auth)),
            _ => None,
        })?;
        // onebox: the name whose token it is has its validation seen.
        challenge.seen.notify_one();
        Some(key_auth.clone())
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
                Some(domain) => {
                    let inner = self.inner.lock().unwrap();
                    let challenge = inner.challenges.iter().find(|c| c.domain == domain)?;
                    let ChallengeData::TlsAlpn01 { cert } = &challenge.data else {
                        return None;
                    };
                    // onebox: the name's validation seen.
                    challenge.seen.notify_one();
                    Some(cert.clone())
                }
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

    /// The CA's validation of a name's challenge wakes that name's poll and no other's; one that
    /// came while nobody waited is kept for the next wait.
    #[test]
    fn a_validation_wakes_its_names_poll() {
        use futures::FutureExt;
        let r = ResolvesServerCertAcme::new();
        r.set_http_01_challenge_data("a.test".into(), "token-a".into(), "auth-a".into());
        r.set_http_01_challenge_data("b.test".into(), "token-b".into(), "auth-b".into());
        let (a, b) = (r.validation_seen("a.test").unwrap(), r.validation_seen("b.test").unwrap());
        assert!(a.notified().now_or_never().is_none(), "nothing seen yet");

        assert!(r.get_http_01_key_auth("token-a").is_some());
        assert!(b.notified().now_or_never().is_none(), "b's poll stays asleep");
        assert!(a.notified().now_or_never().is_some(), "a's poll wakes");
        assert!(a.notified().now_or_never().is_none(), "once per validation");

        // An unknown token wakes nobody; a settled name has nothing to wake.
        assert!(r.get_http_01_key_auth("token-c").is_none());
        assert!(a.notified().now_or_never().is_none() && b.notified().now_or_never().is_none());
        r.clear_challenge_data_for("a.test");
        assert!(r.validation_seen("a.test").is_none());
    }
}
