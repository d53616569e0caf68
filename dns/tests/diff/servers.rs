//! Starting the three servers — Debian's NSD and Knot as the reference peers, and onebox-dns —
//! directly (no systemd), each with generated configuration in its own temporary directory, on a
//! free loopback port, one worker each; stopping them (the whole process group) when dropped
//! (the test kit's [`ChildGuard`]).

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use onebox_testkit::{ChildGuard, Stop};

use super::transport::{Reply, Transport, exchange};
use super::wire::{Request, rtype};

/// A zone every server serves, and whether 127.0.0.1 may transfer it.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The origin without the trailing dot.
    pub name: String,
    /// The zone file's name inside the zone directory.
    pub file: String,
    /// AXFR allowed to 127.0.0.1.
    pub transfer: bool,
}

/// A running server.
pub struct Server {
    /// "nsd", "knot" or "onebox".
    pub name: &'static str,
    /// Its UDP and TCP address.
    pub addr: SocketAddr,
    /// Leads a process group of its own. Dropping it sends SIGTERM to the main process only:
    /// NSD's main process then stops and reaps its server and xfrd children itself (a
    /// whole-group SIGTERM leaves them as zombies of PID 1 on a machine without an init that
    /// reaps); SIGKILL to the whole group after 5 s is the fallback.
    child: ChildGuard,
}

impl Server {
    /// The server's log so far (for failure messages).
    pub fn log_tail(&self) -> String {
        self.child.log_tail()
    }
}

/// A directory removed when dropped; `.0` is its path.
pub struct TempDir(
    pub PathBuf,
    #[allow(dead_code)] // Held for its drop, which removes the directory.
    tempfile::TempDir,
);

impl TempDir {
    /// A fresh directory under the system's temporary directory.
    pub fn new(tag: &str) -> TempDir {
        let dir = onebox_testkit::temp_dir(&format!("diff-{tag}"));
        TempDir(dir.path().to_path_buf(), dir)
    }
}

/// A loopback port free for both UDP and TCP right now.
pub use onebox_testkit::free_port;

fn find_program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed: the DNS differential test needs Debian's nsd and knot \
         as reference peers — run `just deps` (it installs them from deps/apt-packages.txt)"
    );
}

fn spawn(name: &'static str, cmd: Command, log: PathBuf, zone: &str, port: u16) -> Server {
    let child = ChildGuard::spawn_with(cmd, log, true, Stop::Term(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut server = Server {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child,
    };
    wait_ready(&mut server, zone);
    server
}

/// Waits until the server answers an SOA query for `zone` over UDP and TCP.
fn wait_ready(server: &mut Server, zone: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut req = Request::new(zone, rtype::SOA);
    req.id = 4242;
    let packet = req.encode();
    loop {
        if let Some(status) = server.child.exited() {
            panic!(
                "{} exited during start-up ({status}); its log:\n{}",
                server.name,
                server.log_tail()
            );
        }
        let ok = [Transport::Udp, Transport::Tcp].iter().all(|&t| {
            matches!(exchange(server.addr, t, &packet, false), Reply::Messages(m)
                if super::wire::parse(&m[0]).is_ok_and(|r| r.rcode == 0 && !r.answer.is_empty()))
        });
        if ok {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{} did not answer `{zone} SOA` on {} within 30 s; its log:\n{}",
                server.name,
                server.addr,
                server.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts NSD serving `zones` from `zone_dir`: one server process, rate limiting off, version and
/// identity hidden (CH TXT version.bind/id.server are REFUSED, as onebox-dns has none to give).
pub fn start_nsd(zone_dir: &Path, zones: &[Zone], work: &Path) -> Server {
    let nsd = find_program("nsd");
    let port = free_port();
    let d = work.display();
    let mut conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  server-count: 1\n  \
         username: \"\"\n  chroot: \"\"\n  zonesdir: \"{}\"\n  database: \"\"\n  \
         pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
         xfrdir: \"{d}\"\n  verbosity: 1\n  hide-version: yes\n  hide-identity: yes\n  \
         do-ip6: no\n  rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n\
         remote-control:\n  control-enable: no\n",
        zone_dir.display()
    );
    for z in zones {
        let _ = write!(conf, "zone:\n  name: {}\n  zonefile: {}\n", z.name, z.file);
        if z.transfer {
            conf.push_str("  provide-xfr: 127.0.0.1 NOKEY\n");
        }
    }
    let conf_path = work.join("nsd.conf");
    fs::write(&conf_path, conf).expect("write nsd.conf");
    let mut cmd = Command::new(nsd);
    cmd.arg("-d").arg("-c").arg(&conf_path);
    spawn("nsd", cmd, work.join("nsd.log"), &zones[0].name, port)
}

/// Starts knotd serving `zones` from `zone_dir`: one UDP and one TCP worker, no journal, no
/// zone-file writes back, identity and version empty (CH TXT queries refused).
pub fn start_knot(zone_dir: &Path, zones: &[Zone], work: &Path) -> Server {
    start_knot_with(zone_dir, zones, work, false)
}

/// Starts knotd as [`start_knot`] does, every zone signed by Knot's automatic signing with
/// onebox-dns's choices (see [`KNOT_POLICY`]); returns once each zone's SOA comes signed.
pub fn start_knot_signed(zone_dir: &Path, zones: &[Zone], work: &Path) -> Server {
    let server = start_knot_with(zone_dir, zones, work, true);
    wait_signed(&server, zones);
    server
}

/// Knot's signing policy, set to what onebox-dns does (dns/src/dnssec): ECDSA P-256/SHA-256
/// (algorithm 13) with a KSK and a ZSK, NSEC (not NSEC3), DNSKEY TTL the SOA TTL (Knot's
/// default), signatures valid 14 days and renewed 7 days before they expire, a ZSK for 30 days,
/// the KSK until rolled by hand, an hour of propagation delay, and CDS (SHA-256) and CDNSKEY
/// always published for the KSK the parent should point at.
const KNOT_POLICY: &str = "policy:\n  - id: onebox\n    algorithm: ecdsap256sha256\n    \
     nsec3: off\n    single-type-signing: off\n    ksk-lifetime: 0\n    zsk-lifetime: 30d\n    \
     propagation-delay: 1h\n    rrsig-lifetime: 14d\n    rrsig-refresh: 7d\n    \
     cds-cdnskey-publish: always\n    cds-digest-type: sha256\n";

fn start_knot_with(zone_dir: &Path, zones: &[Zone], work: &Path, signed: bool) -> Server {
    // The KASP database (keys) lives in the storage directory, which signing needs to exist.
    fs::create_dir_all(work.join("db")).expect("create Knot's storage directory");
    let knotd = find_program("knotd");
    let port = free_port();
    let d = work.display();
    let mut conf = format!(
        "server:\n  rundir: \"{d}\"\n  pidfile: \"{d}/knot.pid\"\n  listen: 127.0.0.1@{port}\n  \
         udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n  identity: \"\"\n  \
         version: \"\"\n  nsid: \"\"\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n  storage: \"{d}/db\"\n\
         control:\n  listen: \"{d}/knot.sock\"\n\
         acl:\n  - id: xfr\n    address: 127.0.0.1\n    action: transfer\n\
         template:\n  - id: default\n    storage: \"{}\"\n    zonefile-sync: -1\n    \
         zonefile-load: whole\n    journal-content: none\n\
         {}zone:\n",
        zone_dir.display(),
        if signed { KNOT_POLICY } else { "" }
    );
    for z in zones {
        let _ = writeln!(conf, "  - domain: {}\n    file: {}", z.name, z.file);
        if z.transfer {
            conf.push_str("    acl: xfr\n");
        }
        if signed {
            conf.push_str("    dnssec-signing: on\n    dnssec-policy: onebox\n");
        }
    }
    let conf_path = work.join("knot.conf");
    fs::write(&conf_path, conf).expect("write knot.conf");
    let mut cmd = Command::new(knotd);
    cmd.arg("-c").arg(&conf_path);
    spawn("knot", cmd, work.join("knot.log"), &zones[0].name, port)
}

/// Starts onebox-dns serving every zone file in `zone_dir`, transfers configured per zone
/// through `--config`.
pub fn start_onebox(zone_dir: &Path, zones: &[Zone], work: &Path) -> Server {
    start_onebox_with(zone_dir, zones, work, false)
}

/// Starts onebox-dns as [`start_onebox`] does, every zone in `zones` with `dnssec = true` (keys
/// made at start in `work`/state); returns once each zone's SOA comes signed.
pub fn start_onebox_signed(zone_dir: &Path, zones: &[Zone], work: &Path) -> Server {
    let server = start_onebox_with(zone_dir, zones, work, true);
    wait_signed(&server, zones);
    server
}

fn start_onebox_with(zone_dir: &Path, zones: &[Zone], work: &Path, signed: bool) -> Server {
    let port = free_port();
    let conf_path = work.join("site.toml");
    let mut conf = onebox_config(zones, signed);
    if signed {
        conf = conf.replacen(
            "[dns]\n",
            &format!("[dns]\nstate_dir = \"{}\"\n", work.join("state").display()),
            1,
        );
    }
    fs::write(&conf_path, conf).expect("write the onebox site file");
    let mut cmd = Command::new(onebox_testkit::program(
        "onebox-dns",
        env!("CARGO_BIN_EXE_onebox-dns"),
    ));
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--zones")
        .arg(zone_dir)
        .arg("--config")
        .arg(&conf_path);
    spawn("onebox", cmd, work.join("onebox.log"), &zones[0].name, port)
}

/// The site file's `[dns]` section: one UDP socket (one worker, like the peers), response rate
/// limiting on but at a rate the suite's queries, all from 127.0.0.1, never reach (NSD's is off,
/// Knot has none without its module), and AXFR of the transfer zones allowed to 127.0.0.1.
/// With `signed`, every zone in `zones` has `dnssec = true`.
fn onebox_config(zones: &[Zone], signed: bool) -> String {
    let mut s = String::from(
        "[site]\ndomain = \"foobar.com\"\n\n[dns]\nudp_sockets = 1\nrrl_responses_per_sec = 100000\n",
    );
    for z in zones.iter().filter(|z| z.transfer || signed) {
        let _ = write!(s, "\n[[dns.zone]]\nname = \"{}\"\n", z.name);
        if z.transfer {
            s.push_str("allow_transfer = [\"127.0.0.1\"]\n");
        }
        if signed {
            s.push_str("dnssec = true\n");
        }
    }
    s
}

/// Waits until `server` answers each zone's SOA with DO set with its RRSIG (the zone signed).
fn wait_signed(server: &Server, zones: &[Zone]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for z in zones {
        let mut req = Request::new(&z.name, rtype::SOA);
        req.id = 4243;
        if let Some(e) = req.edns.as_mut() {
            e.dnssec_ok = true;
            e.size = 4096;
        }
        let packet = req.encode();
        loop {
            let signed = matches!(exchange(server.addr, Transport::Tcp, &packet, false),
            Reply::Messages(m) if super::wire::parse(&m[0]).is_ok_and(|r| {
                r.answer.iter().any(|rr| rr.rtype == rtype::RRSIG)
            }));
            if signed {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not serve `{} SOA` signed within 30 s; its log:\n{}",
                    server.name,
                    z.name,
                    server.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
