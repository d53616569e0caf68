//! Test fixtures: the real onebox-edge binary, a tiny upstream HTTP server, and curl; free ports,
//! child processes, pebble + challtestsrv and the throwaway CA come from the test kit
//! (onebox-testkit).
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

#[allow(unused_imports)]
pub use onebox_testkit::{free_port, wait_until};

/// A free port for both TCP and UDP: the kit's ports all are.
pub fn free_udp_tcp_port() -> u16 {
    free_port()
}

/// A process killed on drop (the test kit's guard: its log, `pid()`, `kill()`, `exited()`).
pub type Proc = onebox_testkit::ChildGuard;

/// Starts `cmd` with its output in `log`, killed on drop.
pub fn spawn(cmd: Command, log: &Path) -> Proc {
    Proc::spawn(cmd, log).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends a signal (`"QUIT"`, `"HUP"`, ...) to a process.
pub fn signal(pid: u32, sig: &str) {
    let signal = onebox_testkit::signal_named(sig).unwrap_or_else(|| panic!("no signal {sig}"));
    onebox_testkit::signal(pid, signal).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// Ports of one edge instance.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub http: u16,
    pub https: u16,
    pub metrics: u16,
}

impl Ports {
    pub fn new() -> Self {
        Ports {
            http: free_port(),
            https: free_port(),
            metrics: free_port(),
        }
    }
}

/// A working directory with a web root and a site file.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub ports: Ports,
}

/// The onebox-edge under test: the shipped build's under `just test` (`onebox_testkit::program`).
pub fn edge_binary() -> std::path::PathBuf {
    onebox_testkit::program("onebox-edge", env!("CARGO_BIN_EXE_onebox-edge"))
}

impl Site {
    /// A site for foobar.com with `[edge]` extra lines (TOML, appended after the listeners).
    pub fn new(ports: Ports, upstream: u16, extra: &str) -> Site {
        Site::with_servers(ports, &[upstream], extra)
    }

    /// [`Site::new`] with the app servers on loopback's `upstreams` ports.
    pub fn with_servers(ports: Ports, upstreams: &[u16], extra: &str) -> Site {
        let servers = upstreams
            .iter()
            .map(|port| format!("\"127.0.0.1:{port}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        let toml = format!(
            "[site]\ndomain = \"foobar.com\"\n\n[edge]\nhttp_listen = \"127.0.0.1:{}\"\nhttps_listen = \"127.0.0.1:{}\"\nmetrics_listen = \"127.0.0.1:{}\"\nweb_root = \"{}\"\nstate_dir = \"{}\"\nthreads = 1\n{extra}\n[edge.upstream]\nservers = [{servers}]\nhealth_interval_secs = 1\n",
            ports.http,
            ports.https,
            ports.metrics,
            www.display(),
            dir.path().join("state").display()
        );
        std::fs::write(dir.path().join("site.toml"), toml).unwrap();
        Site { dir, ports }
    }
    pub fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("site.toml")
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The site's names, and the file where the edge caches their certificate from the CA at
    /// `directory`.
    pub fn cert_cache(&self, directory: &str) -> (Vec<String>, PathBuf) {
        let names = onebox_edge::config::load(&self.config()).unwrap().names;
        let file = onebox_edge::acme::StateCache::new(
            self.path("state/acme"),
            Arc::new(onebox_edge::metrics::Metrics::default()),
        )
        .cert_path(&names, directory);
        (names, file)
    }
    /// Appends text to the site file.
    pub fn append(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.config())
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
    /// Starts onebox-edge on this site and waits until its listeners accept (HTTP, HTTPS and
    /// metrics).
    pub fn start_edge(&self, log: &str) -> Proc {
        let mut cmd = Command::new(edge_binary());
        cmd.arg("--config").arg(self.config());
        let mut p = spawn(cmd, &self.path(log));
        self.wait_listening(&mut p);
        p
    }
    /// Whether the site's three listeners accept (HTTP, HTTPS, metrics). The metrics listener is
    /// a service of its own, bound on its own thread: it may come after HTTPS, and a test that
    /// scraped it at once found nothing there (CI, under load).
    pub fn listening(&self) -> bool {
        [self.ports.http, self.ports.https, self.ports.metrics]
            .iter()
            .all(|&port| TcpStream::connect(("127.0.0.1", port)).is_ok())
    }
    /// Waits until the site's listeners accept ([`Site::listening`]).
    pub fn wait_listening(&self, p: &mut Proc) {
        p.wait_until(20, "onebox-edge to listen", || self.listening());
    }
    /// The metrics text.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{}/metrics", self.ports.metrics),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// curl against the edge with www.foobar.com and foobar.com resolved to 127.0.0.1.
    pub fn curl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10"]);
        for name in ["www.foobar.com", "foobar.com", "other.example"] {
            for port in [self.ports.http, self.ports.https] {
                cmd.arg("--resolve").arg(format!("{name}:{port}:127.0.0.1"));
            }
        }
        cmd.args(args).output().unwrap()
    }
    pub fn https(&self, path: &str) -> String {
        format!("https://www.foobar.com:{}{path}", self.ports.https)
    }
    pub fn http(&self, path: &str) -> String {
        format!("http://www.foobar.com:{}{path}", self.ports.http)
    }
}

/// An edge (self-signed certificate, no ACME) with `hello.txt` ("hello world\n"), `[edge.limits]`
/// set to `limits`, and a live upstream.
pub fn edge(limits: &str) -> (Site, Upstream, Proc) {
    let upstream = Upstream::start();
    let site = Site::new(
        Ports::new(),
        upstream.port,
        &format!("\n[edge.limits]\n{limits}\n[edge.acme]\nca = \"off\"\n"),
    );
    std::fs::write(site.www().join("hello.txt"), "hello world\n").unwrap();
    let edge = site.start_edge("edge.log");
    (site, upstream, edge)
}

/// The sample of `name` with `label` (e.g. `limit="per_client"`) in the metrics text.
pub fn labelled(text: &str, name: &str, label: &str) -> f64 {
    let prefix = format!("{name}{{{label}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

/// The value of metric `name` (first sample) in `text`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Status code and headers+body of a curl `-i` output.
pub fn status_of(out: &Output) -> u16 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A tiny upstream HTTP/1.1 server on a free port: answers `/healthz` with 200 "ok" (or 503
/// when told to fail checks), and every other request with 200 and a body echoing the request
/// head, so tests can see the forwarded headers.
pub struct Upstream {
    pub port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<TcpStream>>>,
    health: Arc<HealthChecks>,
}

/// What the upstream does with `/healthz`: how many of the next checks fail, and how many it
/// has answered.
#[derive(Default)]
struct HealthChecks {
    fail_next: AtomicUsize,
    answered: AtomicUsize,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let health = Arc::new(HealthChecks::default());
        let (s, c, h) = (stop.clone(), conns.clone(), health.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Ok(clone) = conn.try_clone() {
                            c.lock().unwrap().push(clone);
                        }
                        let h = h.clone();
                        std::thread::spawn(move || serve_upstream(conn, &h));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Upstream {
            port,
            stop,
            conns,
            health,
        }
    }

    /// The next `n` health checks are answered 503 (the rest 200 again).
    pub fn fail_health_checks(&self, n: usize) {
        self.health.fail_next.store(n, Ordering::SeqCst);
    }

    /// How many health checks this upstream has answered.
    pub fn health_checks_answered(&self) -> usize {
        self.health.answered.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The app dies: its open (keep-alive) connections close too.
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The longest request head [`read_request`] reads.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// The longest request (head and body) [`read_request`] reads.
pub const MAX_REQUEST: usize = 64 * 1024 * 1024;

/// Reads one HTTP/1.1 request from `conn` (the head, then a Content-Length or chunked body),
/// removes it from `buf` (bytes already read beyond it stay for the next request) and returns
/// its head; `None` when the connection ends first, or when the head passes
/// [`MAX_REQUEST_HEAD`] or the request [`MAX_REQUEST`] bytes (the test upstreams' bound).
pub fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    // The head, then the body (per Content-Length, or to its last chunk).
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    // A chunked body is read to its last chunk, as an app would before answering.
    let body_end = loop {
        let end = if chunked {
            chunked_end(&buf[head_end..]).map(|n| head_end + n)
        } else {
            (buf.len() >= head_end + len).then_some(head_end + len)
        };
        if let Some(end) = end {
            break end;
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    buf.drain(..body_end);
    Some(head)
}

fn serve_upstream(mut conn: TcpStream, health: &HealthChecks) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_request(&mut conn, &mut buf) else {
            return;
        };
        let (status, body) = if head.starts_with("GET /healthz ") {
            let fail = health
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            // Counted before the answer leaves, so a test that sees the edge act on a check's
            // answer always sees the check counted.
            health.answered.fetch_add(1, Ordering::SeqCst);
            if fail {
                ("503 Service Unavailable", "down\n".to_string())
            } else {
                ("200 OK", "ok\n".to_string())
            }
        } else {
            ("200 OK", format!("upstream saw:\n{head}"))
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The length of a complete chunked body at the start of `data` (without trailers), if it has
/// all arrived.
fn chunked_end(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + data[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[at..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return (data.len() >= at + 2).then_some(at + 2);
        }
        at += size + 2;
        if data.len() < at {
            return None;
        }
    }
}

/// Debian's pebble with pebble-challtestsrv as its DNS (every name → 127.0.0.1), validating
/// against the edge's ports for real: the test kit's, with the edge's `[edge.acme]` lines.
pub struct Pebble(onebox_testkit::Pebble);

impl std::ops::Deref for Pebble {
    type Target = onebox_testkit::Pebble;
    fn deref(&self) -> &onebox_testkit::Pebble {
        &self.0
    }
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        Pebble(
            onebox_testkit::Pebble::start(http_port, tls_port)
                .unwrap_or_else(|e| panic!("pebble did not start: {e:#}")),
        )
    }
    /// Stops pebble (challtestsrv keeps running).
    pub fn stop(&mut self) {
        self.0.stop();
    }
    /// Starts pebble again (a new CA) pausing up to `secs` seconds before each validation.
    pub fn pause_validations(&mut self, secs: u8) {
        self.0
            .pause_validations(secs)
            .unwrap_or_else(|e| panic!("pebble did not start again: {e:#}"));
    }
    /// Starts pebble again (a new CA) refusing `percent` of the nonces it gets (`badNonce`).
    pub fn reject_nonces(&mut self, percent: u8) {
        self.0
            .reject_nonces(percent)
            .unwrap_or_else(|e| panic!("pebble did not start again: {e:#}"));
    }
    pub fn directory(&self) -> String {
        self.0.directory_url()
    }
    pub fn minica(&self) -> PathBuf {
        self.0.directory_ca()
    }
    /// `[edge.acme]` lines for this pebble.
    pub fn acme_toml(&self, challenge: &str) -> String {
        format!(
            "\n[edge.acme]\nca = \"custom\"\ndirectory_url = \"{}\"\ndirectory_ca = \"{}\"\nemail = \"admin@foobar.com\"\nchallenge = \"{challenge}\"\n",
            self.directory(),
            self.minica().display()
        )
    }
    /// Fetches pebble's issuing root from its management API into a file and returns its path.
    pub fn root(&self) -> PathBuf {
        let path = self.0.dir().join("root.pem");
        self.0
            .write_roots(&path)
            .unwrap_or_else(|e| panic!("{e:#}"));
        path
    }
}

pub const DAY: i64 = 86_400;
/// The common name of the throwaway CA whose certificates tests put in the edge's cache.
pub const TEST_CA: &str = "onebox renewal test CA";

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A throwaway CA, standing in for whichever CA issued the certificate the edge has cached.
pub struct TestCa(onebox_testkit::TestCa);

impl TestCa {
    pub fn new() -> TestCa {
        TestCa(onebox_testkit::TestCa::new(TEST_CA).unwrap())
    }

    /// Writes to `path`, as the edge's cache stores it (the ECDSA P-256 PKCS#8 key rustls-acme
    /// requires, then the leaf and the CA), a certificate for `names` valid from `not_before`
    /// to `not_after` (Unix seconds). The file gets the default mode (0644 here), so a 0600
    /// file later shows that the edge wrote it.
    pub fn seed(&self, path: &Path, names: &[String], not_before: i64, not_after: i64) {
        let leaf = self.0.leaf_valid(names, not_before, not_after).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, leaf.key_chain_pem(&self.0)).unwrap();
    }

    /// Writes the CA certificate to `path` (for `curl --cacert`) and returns the path.
    pub fn write_root(&self, path: PathBuf) -> PathBuf {
        self.0.write_cert(&path).unwrap();
        path
    }
}

/// Accepts any server certificate: for tests that look at what the edge presents (a fresh
/// self-signed certificate, or the one whose issuer they check), not whether it verifies.
#[derive(Debug)]
pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration offering `alpn` and only the key exchange groups `groups` (all
/// of aws-lc-rs's when empty).
pub fn client_config(
    alpn: &[u8],
    groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if !groups.is_empty() {
        provider.kx_groups = groups.to_vec();
    }
    let provider = Arc::new(provider);
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A blocking TLS connection to the edge's HTTPS port for www.foobar.com, handshake done.
pub fn tls_connect(
    site: &Site,
    config: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = TcpStream::connect(("127.0.0.1", site.ports.https)).unwrap();
    tls_over(sock, config).unwrap()
}

/// TLS for www.foobar.com over `sock` (reads time out after 10 s), handshake done.
pub fn tls_over(
    sock: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("www.foobar.com").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// An answer (curl `-i` output or raw bytes as text) with the values that differ from response
/// to response (`Date`, `Age`, the request id) blanked, in order, for comparing the fast path's
/// answers with the full path's.
pub fn blanked(text: &str) -> String {
    text.lines()
        .map(|l| match l.split_once(':') {
            Some((k, _))
                if ["date", "age", "x-request-id"]
                    .iter()
                    .any(|n| k.trim().eq_ignore_ascii_case(n)) =>
            {
                format!("{k}: ...")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The access log line (in `site`'s `edge.log`) of the answer `text` (curl `-i` output, or
/// raw bytes as text), found by its `X-Request-Id`, with its time (`…ms`) and id blanked. The
/// line is written once the answer is: the client may have it a moment before, so this waits
/// for it (5 s at most).
pub fn access_log_line(site: &Site, text: &str) -> String {
    let id = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-request-id")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no request id in: {text}"));
    let mut line = None;
    for _ in 0..100 {
        let log = std::fs::read_to_string(site.path("edge.log")).unwrap();
        line = log
            .lines()
            .find(|l| l.ends_with(&format!(" {id}")))
            .map(str::to_string);
        if line.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = line.unwrap_or_else(|| panic!("no access log line for request {id}"));
    blank_log_line(&line)
}

/// The last access log line (in `site`'s `edge.log`) that has `needle`, blanked as
/// [`access_log_line`] blanks it, waiting for one (5 s at most) if none is there.
pub fn last_access_log_line(site: &Site, needle: &str) -> String {
    for _ in 0..100 {
        let log = std::fs::read_to_string(site.path("edge.log")).unwrap();
        if let Some(line) = log.lines().rev().find(|l| l.contains(needle)) {
            return blank_log_line(line);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no access log line with {needle:?}")
}

/// An access log line with its time (`…ms`) and its request id (the last word) blanked.
fn blank_log_line(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let last = words.len() - 1;
    words
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            if i == last {
                "ID"
            } else if w.ends_with("ms") && w[..w.len() - 2].parse::<f64>().is_ok() {
                "MS"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
