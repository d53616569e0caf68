//! `onebox status`: what runs, on which addresses, which certificate the edge serves, each
//! zone's serial, and whether the database answers. Every check is made from the outside, as a
//! client would: a DNS query, a TCP connection, a TLS handshake, a database connection.

use onebox_site::SiteFile;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long one probe may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// `onebox status`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site file.
    #[arg(long, value_name = "FILE", default_value = crate::provision::SITE_FILE)]
    pub config: PathBuf,
    /// One JSON object on standard output, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The site's domain.
    pub domain: String,
    /// Whether everything checked is up.
    pub ok: bool,
    /// systemd's view of the units, when systemd runs this machine.
    pub units: Vec<Unit>,
    /// Each listening address.
    pub listeners: Vec<Listener>,
    /// The certificate the edge serves.
    pub certificate: Check<Certificate>,
    /// Each zone onebox-dns serves.
    pub zones: Vec<Zone>,
    /// The app's database.
    pub database: Check<String>,
    /// The last backup (`null`: none yet), from `[backup] state_dir`'s state file.
    pub backup: Check<Option<crate::backup::Outcome>>,
}

/// A systemd unit's state.
#[derive(Debug, Serialize)]
pub struct Unit {
    /// The unit, e.g. `onebox-dns.service`.
    pub name: String,
    /// `systemctl is-active`'s answer (`active`, `failed`, ...).
    pub state: String,
}

/// One address a service listens on.
#[derive(Debug, Serialize)]
pub struct Listener {
    /// The service.
    pub service: &'static str,
    /// What it is (`dns udp`, `https`, ...).
    pub what: &'static str,
    /// The address probed (a wildcard address is probed on loopback).
    pub address: SocketAddr,
    /// Whether it answered.
    pub up: bool,
    /// What went wrong, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of one check: its value, or why it failed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check<T> {
    /// It worked.
    Ok(T),
    /// It did not.
    Error(String),
}

impl<T> Check<T> {
    fn is_ok(&self) -> bool {
        matches!(self, Check::Ok(_))
    }
}

/// A served certificate.
#[derive(Debug, Serialize)]
pub struct Certificate {
    /// The name sent as SNI.
    pub name: String,
    /// The certificate's subject.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// The end of its validity, RFC 3339.
    pub not_after: String,
    /// Whole days until then (negative once expired).
    pub days_left: i64,
}

/// A zone's serial as onebox-dns answers it.
#[derive(Debug, Serialize)]
pub struct Zone {
    /// The zone.
    pub name: String,
    /// Its SOA serial, or why there is none.
    pub serial: Check<u32>,
}

/// Runs every check and prints the report; returns whether everything is up.
pub async fn run(args: &Args) -> anyhow::Result<bool> {
    let site = onebox_site::load(&args.config).map_err(|e| crate::Invalid(e.to_string()))?;
    let report = report(&site, &args.config).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(report.ok)
}

/// Probes everything `site` says should run.
pub async fn report(site: &SiteFile, path: &Path) -> Report {
    let units = systemd_units();
    let mut listeners = Vec::new();
    let domain = site.site.domain.clone();
    for &addr in site.dns.listen.iter() {
        let addr = probe_address(addr);
        let udp = dns_soa(addr, domain.name(), false).map(|_| ());
        listeners.push(listener("onebox-dns", "dns udp", addr, udp));
        let tcp = dns_soa(addr, domain.name(), true).map(|_| ());
        listeners.push(listener("onebox-dns", "dns tcp", addr, tcp));
    }
    let edge = &site.edge;
    for (what, addr) in [
        ("http", edge.http_listen),
        ("https", edge.https_listen),
        ("metrics", edge.metrics_listen.get()),
    ] {
        let addr = probe_address(addr);
        listeners.push(listener("onebox-edge", what, addr, connect(addr)));
    }
    let app = probe_address(site.app.listen);
    listeners.push(listener(
        "onebox-app",
        "http",
        app,
        http_ok(app, "/healthz"),
    ));

    let sni = site.site.names().first().cloned().unwrap_or_default();
    let certificate = match certificate(probe_address(edge.https_listen), &sni) {
        Ok(c) => Check::Ok(c),
        Err(e) => Check::Error(e),
    };

    let dns_addr = site.dns.listen.first().map(|a| probe_address(*a));
    let zones = zone_names(site, path)
        .into_iter()
        .map(|name| {
            let serial = match (
                dns_addr,
                hickory_proto::rr::Name::from_ascii(format!("{name}.")),
            ) {
                (Some(addr), Ok(fqdn)) => match dns_soa(addr, &fqdn, false) {
                    Ok(serial) => Check::Ok(serial),
                    Err(e) => Check::Error(e),
                },
                _ => Check::Error("no [dns] listen address".into()),
            };
            Zone { name, serial }
        })
        .collect::<Vec<_>>();

    let database = match database(site).await {
        Ok(v) => Check::Ok(v),
        Err(e) => Check::Error(e),
    };
    let backup = match last_backup(site, path) {
        Ok(last) => Check::Ok(last),
        Err(e) => Check::Error(format!("{e:#}")),
    };
    let backup_ok =
        matches!(&backup, Check::Ok(None)) || matches!(&backup, Check::Ok(Some(o)) if o.ok);
    let ok = units.iter().all(|u| u.state == "active")
        && listeners.iter().all(|l| l.up)
        && certificate.is_ok()
        && zones.iter().all(|z| z.serial.is_ok())
        && database.is_ok()
        && backup_ok;
    Report {
        domain: domain.to_string(),
        ok,
        units,
        listeners,
        certificate,
        zones,
        database,
        backup,
    }
}

/// The last backup's outcome from the state file (root-only: run as root).
pub fn last_backup(site: &SiteFile, path: &Path) -> anyhow::Result<Option<crate::backup::Outcome>> {
    let dir = path.parent().map_or_else(
        || site.backup.state_dir.clone(),
        |p| p.join(&site.backup.state_dir),
    );
    Ok(crate::backup::read_state(&dir.join(crate::backup::STATE_FILE))?.last)
}

fn listener(
    service: &'static str,
    what: &'static str,
    address: SocketAddr,
    result: Result<(), String>,
) -> Listener {
    Listener {
        service,
        what,
        address,
        up: result.is_ok(),
        error: result.err(),
    }
}

/// A wildcard listening address is probed on the loopback address of its family.
pub fn probe_address(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(v6) if v6.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The units' states when systemd is PID 1 (`/run/systemd/system` exists), else none.
fn systemd_units() -> Vec<Unit> {
    if !Path::new("/run/systemd/system").is_dir() {
        return Vec::new();
    }
    ["onebox-dns", "onebox-edge", "onebox-app", "mariadb"]
        .iter()
        .map(|unit| {
            let state = std::process::Command::new("systemctl")
                .args(["is-active", unit])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|e| format!("unknown ({e})"));
            Unit {
                name: format!("{unit}.service"),
                state,
            }
        })
        .collect()
}

fn connect(addr: SocketAddr) -> Result<(), String> {
    TcpStream::connect_timeout(&addr, TIMEOUT)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `GET path` over plain HTTP/1.1 answers 2xx.
fn http_ok(addr: SocketAddr, path: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    match line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        Some(code) => Err(format!("GET {path} answered {code}")),
        None => Err(format!("GET {path}: no HTTP answer")),
    }
}

/// Asks `addr` for `name`'s SOA (over TCP or UDP) and returns its serial.
fn dns_soa(addr: SocketAddr, name: &hickory_proto::rr::Name, tcp: bool) -> Result<u32, String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{RData, RecordType};
    use std::io::{Read, Write};
    let mut query = Message::query();
    query.metadata.id = fastrand::u16(..);
    query.add_query(Query::query(name.clone(), RecordType::SOA));
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    let reply = if tcp {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let len = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
        s.write_all(&len.to_be_bytes())
            .and_then(|()| s.write_all(&bytes))
            .map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        buf
    } else {
        let bind: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::LOCALHOST, 0).into()
        } else {
            (Ipv6Addr::LOCALHOST, 0).into()
        };
        let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.send_to(&bytes, addr).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        let (n, _) = s
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer: {e}"))?;
        buf.truncate(n);
        buf
    };
    let reply = Message::from_vec(&reply).map_err(|e| format!("bad answer: {e}"))?;
    if reply.metadata.id != query.metadata.id {
        return Err("an answer to another query".into());
    }
    reply
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(|| format!("no SOA in the answer ({})", reply.metadata.response_code))
}

/// The zones onebox-dns should serve: the `*.zone` files of the zone directory.
fn zone_names(site: &SiteFile, path: &Path) -> Vec<String> {
    let dir = path
        .parent()
        .map_or_else(|| site.dns.zones.clone(), |p| p.join(&site.dns.zones));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".zone"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.push(site.site.domain.to_string());
    }
    names.sort();
    names
}

/// Accepts any certificate: status shows what is served, it does not judge it.
#[derive(Debug)]
struct ShowAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ShowAnything {
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

/// Handshakes with `addr` sending `sni` and describes the leaf certificate it serves.
fn certificate(addr: SocketAddr, sni: &str) -> Result<Certificate, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ShowAnything(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string())
        .map_err(|e| format!("{sni}: {e}"))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut sock = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate served")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| e.to_string())?;
    let not_after = cert.validity().not_after.to_datetime();
    let now = time::OffsetDateTime::now_utc();
    Ok(Certificate {
        name: sni.to_string(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        days_left: (not_after - now).whole_days(),
    })
}

/// Connects to the app's database (as the user running this, over its socket, or with the
/// URL's password) and runs `SELECT 1`.
async fn database(site: &SiteFile) -> Result<String, String> {
    use mysql_async::prelude::Queryable;
    let url = site.app.resolved_database_url();
    let opts = match url.socket() {
        Some(socket) if !url.has_password() => mysql_async::OptsBuilder::default()
            .socket(Some(socket.display().to_string()))
            .user(Some(crate::provision::current_user()))
            .db_name(url.database()),
        _ => mysql_async::OptsBuilder::from_opts(
            mysql_async::Opts::from_url(url.as_str()).map_err(|e| e.to_string())?,
        ),
    };
    let attempt = async {
        let mut conn = mysql_async::Conn::new(opts).await?;
        let one: Option<u8> = conn.query_first("SELECT 1").await?;
        let _ = conn.disconnect().await;
        Ok::<_, mysql_async::Error>(one)
    };
    match tokio::time::timeout(TIMEOUT * 2, attempt).await {
        Ok(Ok(Some(1))) => Ok(format!("{url} answers")),
        Ok(Ok(_)) => Err(format!("{url}: SELECT 1 gave no 1")),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Err(_) => Err(format!(
            "{url}: no answer within {} s",
            (TIMEOUT * 2).as_secs()
        )),
    }
}

/// The report for people.
pub fn human(r: &Report) -> String {
    let mut out = format!(
        "onebox status for {}: {}\n",
        r.domain,
        if r.ok {
            "everything is up"
        } else {
            "SOMETHING IS DOWN"
        }
    );
    let mark = |up: bool| if up { "up  " } else { "DOWN" };
    for u in &r.units {
        out += &format!(
            "  {} unit {} ({})\n",
            mark(u.state == "active"),
            u.name,
            u.state
        );
    }
    for l in &r.listeners {
        out += &format!(
            "  {} {:<12} {:<8} {}",
            mark(l.up),
            l.service,
            l.what,
            l.address
        );
        if let Some(e) = &l.error {
            out += &format!(": {e}");
        }
        out.push('\n');
    }
    match &r.certificate {
        Check::Ok(c) => {
            out += &format!(
                "  {} certificate for {}: {}, issued by {}, {} days left (until {})\n",
                mark(c.days_left > 0),
                c.name,
                c.subject,
                c.issuer,
                c.days_left,
                c.not_after
            )
        }
        Check::Error(e) => out += &format!("  DOWN certificate: {e}\n"),
    }
    for z in &r.zones {
        match &z.serial {
            Check::Ok(s) => out += &format!("  up   zone {} serial {s}\n", z.name),
            Check::Error(e) => out += &format!("  DOWN zone {}: {e}\n", z.name),
        }
    }
    match &r.database {
        Check::Ok(s) => out += &format!("  up   database: {s}\n"),
        Check::Error(e) => out += &format!("  DOWN database: {e}\n"),
    }
    match &r.backup {
        Check::Ok(None) => {
            out += "  --   backup: none yet (`onebox backup`, or wait for the nightly timer)\n"
        }
        Check::Ok(Some(b)) if b.ok => {
            out += &format!(
                "  ok   backup: {} at {} to {} ({} bytes, {} added)\n",
                b.snapshot.as_deref().unwrap_or("?"),
                b.started,
                b.repository,
                b.bytes_total,
                b.bytes_added
            )
        }
        Check::Ok(Some(b)) => {
            out += &format!(
                "  FAIL backup at {} to {} FAILED: {}\n",
                b.started,
                b.repository,
                b.error.as_deref().unwrap_or("?")
            )
        }
        Check::Error(e) => out += &format!("  FAIL backup state: {e}\n"),
    }
    out
}
