//! What the DNSSEC tests share: a network namespace with only loopback, `dig` and `curl` run
//! inside it, onebox-dns and a validating unbound started in it, and readers of dig's output.

use onebox_testkit::{ChildGuard, Stop};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A network namespace with loopback up, removed (with its resolv.conf) when dropped. A
/// resolver primes the root at start: in here it reaches nothing but loopback.
pub struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace; `tag` tells the namespaces of tests running at once apart.
    pub fn new(tag: &str) -> Netns {
        let name = format!("onebox-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`ip netns add {name}` failed: the DNSSEC tests run as root"
        );
        let ns = Netns { name };
        let up = ns
            .cmd("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(up, "cannot bring lo up in the namespace");
        // Programs that use the system resolver (dnsviz) ask unbound in the namespace.
        let etc = PathBuf::from("/etc/netns").join(&ns.name);
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        ns
    }

    /// `program` run inside the namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` in the namespace and returns its standard output and error.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.cmd(program).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `dig @server +tries=2 +time=3 args...` in the namespace.
    pub fn dig(&self, server: &str, args: &[&str]) -> String {
        let at = format!("@{server}");
        let mut all = vec![at.as_str(), "+tries=2", "+time=3"];
        all.extend(args);
        self.run("dig", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
    }
}

/// The onebox-dns binary under test.
pub fn onebox_dns() -> std::path::PathBuf {
    onebox_testkit::program("onebox-dns", env!("CARGO_BIN_EXE_onebox-dns"))
}

/// Starts `onebox-dns --config site` in the namespace with `env` added to its environment.
pub fn spawn_onebox(
    ns: &Netns,
    site: &Path,
    dir: &Path,
    log: &str,
    env: &[(&str, &str)],
) -> ChildGuard {
    let mut cmd = ns.cmd(onebox_dns());
    cmd.arg("--config").arg(site).envs(env.iter().copied());
    ChildGuard::spawn_with(
        cmd,
        dir.join(log),
        false,
        Stop::Term(Duration::from_secs(5)),
    )
    .unwrap()
}

/// Starts `onebox-dns --config site` in the namespace and waits until it answers `zone SOA` on
/// 127.0.0.2.
pub fn start_onebox(ns: &Netns, site: &Path, dir: &Path, log: &str, zone: &str) -> ChildGuard {
    let mut child = spawn_onebox(ns, site, dir, log, &[]);
    child.wait_until(60, "onebox-dns answering in the namespace", || {
        ns.run(
            "dig",
            &["@127.0.0.2", "+short", "+tries=1", "+time=1", zone, "SOA"],
        )
        .contains("hostmaster")
    });
    child
}

/// The text `onebox-dns --config site ds zone` prints.
pub fn ds_text(site: &Path, zone: &str) -> String {
    let out = Command::new(onebox_dns())
        .arg("--config")
        .arg(site)
        .args(["ds", zone])
        .output()
        .unwrap();
    assert!(out.status.success(), "onebox-dns ds {zone}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The DS records `onebox-dns ds` prints for `zone` (comment lines left out).
pub fn ds(site: &Path, zone: &str) -> Vec<String> {
    let text = ds_text(site, zone);
    assert!(
        text.contains(" IN DNSKEY 257 3 13 "),
        "ds prints the DNSKEY: {text}"
    );
    text.lines()
        .filter(|l| !l.starts_with(';') && l.contains(" IN DS "))
        .map(str::to_string)
        .collect()
}

/// Starts a validating unbound on 127.0.0.1:53 in the namespace, trusting `anchors` (DS or
/// DNSKEY lines), with a stub to onebox-dns (127.0.0.2) for each of `zones`; waits until it
/// answers.
pub fn start_unbound(
    ns: &Netns,
    dir: &Path,
    anchors: &[String],
    zones: &[&str],
    log: &str,
) -> ChildGuard {
    let mut conf = format!(
        "server:\n  interface: 127.0.0.1\n  port: 53\n  do-daemonize: no\n  username: \"\"\n  \
         chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  \
         logfile: \"\"\n  verbosity: 1\n  val-log-level: 2\n  do-ip6: no\n  \
         access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  \
         local-zone: \"test.\" nodefault\n",
        d = dir.display()
    );
    for anchor in anchors {
        conf += &format!("  trust-anchor: \"{anchor}\"\n");
    }
    for zone in zones {
        conf += &format!("stub-zone:\n  name: \"{zone}\"\n  stub-addr: 127.0.0.2@53\n");
    }
    let path = dir.join(format!("{log}.conf"));
    fs::write(&path, conf).unwrap();
    let mut cmd = ns.cmd("unbound");
    cmd.arg("-d").arg("-c").arg(&path);
    let mut child = ChildGuard::spawn(cmd, dir.join(log)).unwrap();
    child.wait_until(30, "unbound answering", || {
        ns.run(
            "dig",
            &["@127.0.0.1", "+tries=1", "+time=1", zones[0], "SOA"],
        )
        .contains("status:")
    });
    child
}

/// The status (`NOERROR`, ...) in dig's output, or `no answer`.
pub fn status(dig: &str) -> String {
    dig.split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("no answer")
        .to_string()
}

/// Whether dig's output shows the AD flag.
pub fn authenticated(dig: &str) -> bool {
    dig.lines()
        .filter_map(|l| l.strip_prefix(";; flags: "))
        .any(|f| {
            f.split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .any(|f| f == "ad")
        })
}

/// The answer-section records of dig's output (`+noall +answer` or the full output), each as
/// its whitespace-separated fields: owner, TTL, class, type, RDATA fields.
pub fn records(dig: &str) -> Vec<Vec<String>> {
    dig.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && f[2] == "IN")
        .collect()
}

/// An RRSIG record (as [`records`] gives it): the type it covers, its expiration and
/// inception (Unix seconds) and key tag.
pub struct Rrsig {
    /// The type covered.
    pub covered: String,
    /// Expiration, Unix seconds.
    pub expiration: u64,
    /// Inception, Unix seconds.
    pub inception: u64,
    /// The signing key's tag.
    pub tag: u16,
}

/// The RRSIG records among `records`.
pub fn rrsigs(records: &[Vec<String>]) -> Vec<Rrsig> {
    records
        .iter()
        .filter(|f| f[3] == "RRSIG")
        .map(|f| Rrsig {
            covered: f[4].clone(),
            expiration: unix_time(&f[8]),
            inception: unix_time(&f[9]),
            tag: f[10].parse().unwrap(),
        })
        .collect()
}

/// dig's `YYYYMMDDHHmmSS` as Unix seconds.
fn unix_time(text: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| -> i64 { text[r].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    // Days from 1970-01-01 to the civil date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + n(8..10) * 3600 + n(10..12) * 60 + n(12..14)).unwrap()
}

/// The time now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The metrics text at `url`, fetched with curl in the namespace.
pub fn metrics(ns: &Netns, url: &str) -> String {
    ns.run("curl", &["-s", "--max-time", "5", url])
}

/// The value of the metric line starting with `prefix` (name and labels), if any.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn dig_times_read_as_unix_seconds() {
    assert_eq!(unix_time("19700101000000"), 0);
    assert_eq!(unix_time("20000301000000"), 951_868_800);
    assert_eq!(unix_time("20261129214023"), 1_795_988_423);
}
