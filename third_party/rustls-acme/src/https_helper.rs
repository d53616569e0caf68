// onebox: the CA's HTTP client keeps its connections (PATCHES.md §6). The published crate sent
// each request with async-web-client, which opens a TCP connection and a TLS session of its own
// for every request and closes it after the answer: an order for two names was about eighteen
// handshakes with the CA. Now the requests go through hyper-util's pooling client (HTTP/1.1
// keep-alive, rustls through hyper-rustls), one per TLS client configuration, so an order
// travels over one or two kept connections. It needs a tokio runtime, which onebox's callers
// (onebox-edge, `onebox`) always are.
use bytes::Bytes;
use futures_rustls::pki_types::InvalidDnsNameError;
use futures_rustls::rustls::ClientConfig;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::io;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use thiserror::Error;

// RFC 8555§6.1:
//
// ACME clients MUST send a User-Agent header field, in accordance with
// [RFC7231].  This header field SHOULD include the name and version of
// the ACME software in addition to the name and version of the
// underlying HTTP client software.
//
// We don't have a version for `hyper` here so we only satisfy 3/4 of the SHOULD
const USER_AGENT_VALUE: &str = concat!("rustls-acme/", env!("CARGO_PKG_VERSION"), " hyper");

/// onebox: how long a connection to the CA may take to open (TCP; the TLS handshake is part of
/// the request's time).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// onebox: how long one request may take, answer read whole, connecting included. The
/// published crate had no limit: a CA that stopped answering held the order for good.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// onebox: the largest answer read (a certificate chain is a few KiB; an order for 100 names
/// some 10 KiB). The published crate read whatever came.
const MAX_BODY_BYTES: usize = 1 << 20;
/// onebox: how long an idle connection to the CA is kept for the next request. An order's
/// requests follow each other within a second or two (its polls within 16 s); renewals come
/// weeks apart, and a CA closes idle connections on its own after a while.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// onebox: the pooling clients, one per TLS client configuration in use (by identity: the
/// `Arc` an `AcmeConfig` holds), dropped once that configuration is.
static CLIENTS: Mutex<Vec<(Weak<ClientConfig>, HttpsClient)>> = Mutex::new(Vec::new());

/// onebox: the pooling client for `client_config`, made at its first request.
fn client_for(client_config: &Arc<ClientConfig>) -> HttpsClient {
    let mut clients = CLIENTS.lock().unwrap_or_else(PoisonError::into_inner);
    clients.retain(|(config, _)| config.strong_count() > 0);
    if let Some((_, client)) = clients
        .iter()
        .find(|(config, _)| std::ptr::eq(config.as_ptr(), Arc::as_ptr(client_config)))
    {
        return client.clone();
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    // The connector keeps a copy of the configuration (hyper-rustls sets its ALPN to HTTP/1.1),
    // not the caller's `Arc`, whose end is what drops this client from `CLIENTS`.
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(ClientConfig::clone(client_config))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(4)
        .build(https);
    clients.push((Arc::downgrade(client_config), client.clone()));
    client
}

pub(crate) async fn https(
    client_config: &Arc<ClientConfig>,
    url: impl AsRef<str>,
    method: Method,
    body: Option<String>,
) -> Result<Response<String>, HttpsRequestError> {
    let request = Request::builder().method(method).uri(url.as_ref()).header(USER_AGENT, USER_AGENT_VALUE);

    let request = if let Some(body) = body {
        request.header(CONTENT_TYPE, "application/jose+json").body(Full::from(body))
    } else {
        request.body(Full::default())
    };
    let request = request?;
    let client = client_for(client_config);
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            // onebox (PATCHES.md §8): no network yet, told apart from the CA's own failures.
            if e.is_connect() && no_network(&e) {
                HttpsRequestError::NoNetwork(error_chain(&e))
            } else {
                HttpsRequestError::Http(e.into())
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => HttpsRequestError::TooLarge { limit: MAX_BODY_BYTES },
                Err(e) => HttpsRequestError::Http(e),
            })?
            .to_bytes();
        let body = String::from_utf8(body.into()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok::<_, HttpsRequestError>(Response::from_parts(parts, body))
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| HttpsRequestError::Timeout {
            secs: REQUEST_TIMEOUT.as_secs(),
        })??;
    let status = response.status();
    if !status.is_success() {
        return Err(HttpsRequestError::Non2xxStatus {
            status_code: status.into(),
            body: response.into_body(),
        });
    }
    Ok(response)
}

#[derive(Error, Debug)]
pub enum HttpsRequestError {
    #[error("io error: {0:?}")]
    Io(#[from] io::Error),
    #[error("invalid dns name: {0:?}")]
    InvalidDnsName(#[from] InvalidDnsNameError),
    #[error("http error: {0:?}")]
    Http(Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("non 2xx http status: {status_code} {body:?}")]
    Non2xxStatus { status_code: u16, body: String },
    #[error("could not determine host from url")]
    UndefinedHost,
    /// onebox: the CA did not answer within the request's time.
    #[error("no answer from the CA within {secs} s")]
    Timeout { secs: u64 },
    /// onebox: the CA's answer was larger than any an ACME exchange needs.
    #[error("the CA's answer is over {limit} bytes")]
    TooLarge { limit: usize },
    /// onebox (PATCHES.md §8): this machine has no network to the CA yet — no route to its
    /// address, or no answer for its name from a resolver — so the request never left it.
    #[error("no network to the CA yet: {0}")]
    NoNetwork(String),
}

/// onebox: whether a connection that could not be made failed on this machine's own network: no
/// route (`ENETUNREACH`, `EHOSTUNREACH`), no source address (`EADDRNOTAVAIL`), or the CA's name
/// not resolved (hyper-util's "dns error": no resolver answering yet). A refused or timed-out
/// connection reached the CA's side: the CA is down, not the machine's network.
fn no_network(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable | io::ErrorKind::AddrNotAvailable
            ) {
                return true;
            }
        }
        if err.to_string() == "dns error" {
            return true;
        }
        cause = err.source();
    }
    false
}

/// onebox: an error and its causes, `: `-separated (hyper-util's own says only "client error (Connect)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
}

impl From<http::Error> for HttpsRequestError {
    fn from(e: http::Error) -> Self {
        Self::Http(e.into())
    }
}

/// onebox (PATCHES.md §8): a machine without a network is told from a CA that is down, on the
/// errors hyper-util really gives. (With a crypto provider: as the workspace builds it.)
#[cfg(all(test, any(feature = "ring", feature = "aws-lc-rs")))]
mod onebox_tests {
    use super::*;

    /// In a network namespace of this thread's own (root only: the tests run as root), whose
    /// loopback is down: no route anywhere, and no resolver answers (glibc's `dns` sends its
    /// query nowhere), so nothing leaves the machine. Then, loopback up, a port nobody listens
    /// on refuses: a CA that is down.
    #[test]
    fn no_network_is_told_from_a_ca_that_is_down() {
        // SAFETY: a new network namespace for this thread only; it shares no file table.
        #[allow(unsafe_code)] // One unshare(CLONE_NEWNET) of this thread.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.expect("unshare(CLONE_NEWNET): the tests run as root");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        // No connection gets as far as TLS: no roots needed.
        let config = Arc::new(
            ClientConfig::builder_with_provider(crate::crypto_provider().into())
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(futures_rustls::rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let get = |url: &'static str| rt.block_on(https(&config, url, Method::GET, None));

        match get("https://127.0.0.1:14000/dir") {
            Err(HttpsRequestError::NoNetwork(text)) => assert!(text.contains("unreachable"), "{}", text),
            other => panic!("no route: {:?}", other),
        }
        match get("https://ca.onebox.invalid:14000/dir") {
            Err(HttpsRequestError::NoNetwork(text)) => assert!(text.contains("dns error"), "{}", text),
            other => panic!("no resolver: {:?}", other),
        }

        let up = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
        assert!(matches!(up, Ok(s) if s.success()), "ip link set lo up: {:?}", up);
        match get("https://127.0.0.1:14000/dir") {
            Err(HttpsRequestError::Http(e)) => assert!(error_chain(&*e).contains("refused"), "{:?}", e),
            other => panic!("refused: {:?}", other),
        }
    }
}
