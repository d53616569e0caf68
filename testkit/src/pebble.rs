//! Debian's pebble (a real ACME CA for tests) with pebble-challtestsrv as its DNS server, which
//! answers every name with 127.0.0.1: pebble validates the challenges for real, against the
//! ports on this machine given as [`PebblePorts::http`] and [`PebblePorts::tls`], never
//! through real DNS. `PEBBLE_VA_NOSLEEP` skips pebble's random 0–15 s pause before validating;
//! `PEBBLE_VA_ALWAYS_VALID` is never set.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::pki::TestCa;
use crate::ports::try_free_port;
use crate::process::{ChildGuard, Stop};

/// The loopback ports of one pebble and its challtestsrv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PebblePorts {
    /// pebble's ACME directory (HTTPS): `https://127.0.0.1:PORT/dir`.
    pub directory: u16,
    /// pebble's management API (HTTPS): the issuing roots at `/roots/0`.
    pub management: u16,
    /// challtestsrv's DNS (UDP and TCP), which pebble asks.
    pub dns: u16,
    /// challtestsrv's management API (HTTP).
    pub dns_management: u16,
    /// The port pebble connects to for HTTP-01 validation.
    pub http: u16,
    /// The port pebble connects to for TLS-ALPN-01 validation.
    pub tls: u16,
}

impl PebblePorts {
    /// Free ports for pebble and challtestsrv, validating against `http` and `tls`.
    pub fn free(http: u16, tls: u16) -> anyhow::Result<PebblePorts> {
        Ok(PebblePorts {
            directory: try_free_port()?,
            management: try_free_port()?,
            dns: try_free_port()?,
            dns_management: try_free_port()?,
            http,
            tls,
        })
    }
}

/// A running pebble and pebble-challtestsrv; both killed when dropped.
///
/// Its directory holds pebble's HTTPS certificate (`cert.pem`, `key.pem`, issued by a throwaway
/// CA whose certificate is `minica.pem`: what a client trusts for the directory), `pebble.json`
/// and the two logs.
pub struct Pebble {
    // The processes come first: they are dropped (killed) before the directory is removed.
    pebble: Option<ChildGuard>,
    challtestsrv: ChildGuard,
    ports: PebblePorts,
    dir: Dir,
    /// The share of good nonces pebble refuses (`badNonce`), in percent; pebble's own 5% if none.
    nonce_reject: Option<u8>,
    /// The longest pause before a validation, in seconds (a random pause up to it); none if unset.
    validation_pause: Option<u8>,
}

enum Dir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Pebble {
    /// Starts pebble and challtestsrv on free ports in a new temporary directory, validating
    /// HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
    pub fn start(http_port: u16, tls_port: u16) -> anyhow::Result<Pebble> {
        let dir = tempfile::Builder::new()
            .prefix("onebox-pebble-")
            .tempdir()
            .context("creating a temporary directory for pebble")?;
        Self::start_at(Dir::Temp(dir), PebblePorts::free(http_port, tls_port)?)
    }

    /// Starts them with their files in `dir` (created if missing; the private key and the
    /// configuration are removed when dropped) on `ports`.
    pub fn start_in(dir: &Path, ports: PebblePorts) -> anyhow::Result<Pebble> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        Self::start_at(Dir::Kept(dir), ports)
    }

    fn start_at(dir: Dir, ports: PebblePorts) -> anyhow::Result<Pebble> {
        let path = match &dir {
            Dir::Temp(t) => t.path().to_path_buf(),
            Dir::Kept(p) => p.clone(),
        };
        // A port someone else listens on would pass for ours in the waits below.
        for (what, port) in [
            ("directory", ports.directory),
            ("management", ports.management),
            ("challtestsrv DNS", ports.dns),
            ("challtestsrv management", ports.dns_management),
        ] {
            if crate::ports::in_use(port) {
                bail!("the {what} port 127.0.0.1:{port} is in use already (another pebble?)");
            }
        }
        // pebble's own HTTPS certificate (Debian ships no test certificates).
        let ca = TestCa::new("onebox test minica")?;
        ca.write_cert(&path.join("minica.pem"))?;
        ca.leaf(&["localhost", "127.0.0.1"])?
            .write(&path.join("cert.pem"), &path.join("key.pem"))?;
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{}", "managementListenAddress": "127.0.0.1:{}", "certificate": "{}", "privateKey": "{}", "httpPort": {}, "tlsPort": {}, "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            ports.directory,
            ports.management,
            json_path(&path.join("cert.pem"))?,
            json_path(&path.join("key.pem"))?,
            ports.http,
            ports.tls,
        );
        std::fs::write(path.join("pebble.json"), config).context("writing pebble.json")?;

        let mut cmd = Command::new("pebble-challtestsrv");
        cmd.args(["-dns01", &format!("127.0.0.1:{}", ports.dns)])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args([
                "-management",
                &format!("127.0.0.1:{}", ports.dns_management),
            ])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]);
        let mut challtestsrv = ChildGuard::spawn(cmd, path.join("challtestsrv.log"))
            .context("pebble-challtestsrv (Debian package pebble; `just deps` installs it)")?;
        challtestsrv.try_wait_until(
            Duration::from_secs(20),
            "pebble-challtestsrv to listen",
            || accepts(ports.dns) && accepts(ports.dns_management),
        )?;
        let mut pebble = Pebble {
            pebble: None,
            challtestsrv,
            ports,
            dir,
            nonce_reject: None,
            validation_pause: None,
        };
        pebble.resume()?;
        Ok(pebble)
    }

    /// Starts pebble again after [`stop`](Self::stop) (a new CA: pebble keeps nothing), and
    /// waits until it listens; nothing to do while it runs.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        if let Some(p) = self.pebble.as_mut()
            && p.running()
        {
            return Ok(());
        }
        let dir = self.dir().to_path_buf();
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.ports.dns)])
            .env_remove("PEBBLE_VA_ALWAYS_VALID");
        match self.validation_pause {
            None => cmd.env("PEBBLE_VA_NOSLEEP", "1"),
            Some(secs) => cmd.env("PEBBLE_VA_SLEEPTIME", secs.to_string()),
        };
        if let Some(percent) = self.nonce_reject {
            cmd.env("PEBBLE_WFE_NONCEREJECT", percent.to_string());
        }
        let mut pebble = ChildGuard::spawn_with(cmd, dir.join("pebble.log"), false, Stop::Kill)
            .context("pebble (Debian package pebble; `just deps` installs it)")?;
        let ports = self.ports;
        pebble.try_wait_until(Duration::from_secs(20), "pebble to listen", || {
            accepts(ports.directory) && accepts(ports.management)
        })?;
        self.pebble = Some(pebble);
        Ok(())
    }

    /// Starts pebble again (a new CA) refusing `percent` of the good nonces it is sent with
    /// `badNonce` (`PEBBLE_WFE_NONCEREJECT`; pebble's default is 5).
    pub fn reject_nonces(&mut self, percent: u8) -> anyhow::Result<()> {
        self.nonce_reject = Some(percent);
        self.stop();
        self.resume()
    }

    /// Starts pebble again (a new CA) pausing a random time of up to `secs` seconds before each
    /// validation (`PEBBLE_VA_SLEEPTIME`; otherwise it does not pause: `PEBBLE_VA_NOSLEEP`), as
    /// a CA under load or validating from far away takes its time.
    pub fn pause_validations(&mut self, secs: u8) -> anyhow::Result<()> {
        self.validation_pause = Some(secs);
        self.stop();
        self.resume()
    }

    /// Whether pebble and challtestsrv are both running.
    pub fn running(&mut self) -> bool {
        self.challtestsrv.running() && self.pebble.as_mut().is_some_and(ChildGuard::running)
    }

    /// Stops pebble (challtestsrv keeps running): the CA becomes unreachable.
    pub fn stop(&mut self) {
        self.pebble = None;
    }

    /// Its directory (certificates, configuration, logs).
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Dir::Temp(t) => t.path(),
            Dir::Kept(p) => p,
        }
    }

    /// Its ports.
    pub fn ports(&self) -> PebblePorts {
        self.ports
    }

    /// The ACME directory URL: `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.ports.directory)
    }

    /// The PEM file of the CA that issued pebble's HTTPS certificate: what a client trusts for
    /// the directory URL (the edge's `directory_ca`, `curl --cacert`).
    pub fn directory_ca(&self) -> PathBuf {
        self.dir().join("minica.pem")
    }

    /// The certificates of the roots pebble issues from (PEM), fetched from its management
    /// API: what a client trusts for the certificates the edge gets from pebble.
    pub fn roots_pem(&self) -> anyhow::Result<String> {
        let url = format!("https://127.0.0.1:{}/roots/0", self.ports.management);
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(self.directory_ca())
            .arg(&url)
            .output()
            .context("running curl")?;
        if !out.status.success() {
            bail!(
                "fetching pebble's root from {url}: {}\npebble's log:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_tail()
            );
        }
        let pem = String::from_utf8_lossy(&out.stdout).into_owned();
        let count = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{url} sent no PEM certificate: {pem}"))?
            .len();
        if count == 0 {
            bail!("{url} sent no certificate: {pem}");
        }
        Ok(pem)
    }

    /// Writes [`roots_pem`](Self::roots_pem) to `path`.
    pub fn write_roots(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.roots_pem()?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// What pebble logged (since its last start).
    pub fn log_text(&self) -> String {
        self.pebble
            .as_ref()
            .map(ChildGuard::log_text)
            .unwrap_or_else(|| {
                std::fs::read_to_string(self.dir().join("pebble.log")).unwrap_or_default()
            })
    }

    fn log_tail(&self) -> String {
        crate::tail(&self.log_text(), 30)
    }

    /// What challtestsrv logged.
    pub fn challtestsrv_log(&self) -> String {
        self.challtestsrv.log_text()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.pebble = None;
        self.challtestsrv.kill();
        if let Dir::Kept(dir) = &self.dir {
            for file in ["key.pem", "pebble.json"] {
                let _ = std::fs::remove_file(dir.join(file));
            }
        }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// `path` as a JSON string's content.
fn json_path(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    if text.contains(['"', '\\']) || text.chars().any(char::is_control) {
        bail!("pebble cannot take the path {text}");
    }
    Ok(text.to_string())
}
