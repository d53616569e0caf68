//! The processes of the transfer tests: onebox-dns with a site file, and Debian's Knot, NSD
//! and BIND as its secondaries or its primary, each on free loopback ports with configuration
//! in its own temporary directory, killed when dropped (the test kit's [`ChildGuard`]). The
//! secondaries fetch from distinct loopback source addresses (Knot 127.0.0.2, NSD 127.0.0.3,
//! BIND 127.0.0.4), so onebox-dns's log says which peer got which transfer.

use onebox_testkit::{ChildGuard, Signal, Stop};
use std::fmt::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The TSIG key both sides have.
pub const KEY: &str = "xfr-key";
/// Its secret (32 bytes, base64).
pub const SECRET: &str = "qmJ0MUm0b6XyAoNZbSy+nuyLrBHDbWbvG1iK4oZ8RkQ=";
/// A key onebox-dns and the peers spell alike but with different secrets: refused both ways.
pub const BAD_KEY: &str = "bad-key";
/// onebox-dns's secret for it.
pub const BAD_SECRET_ONEBOX: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The peers' secret for it.
pub const BAD_SECRET_PEER: &str = "HxwdHhscGRoXGBUWExQREg8QDQ4LDAkKBwgFBgMEAQI=";

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed: the transfer tests need Debian's knot, nsd and bind9 (just deps)"
    );
}

/// A running server.
pub struct Peer {
    /// "onebox", "knot", "nsd", "bind".
    pub name: &'static str,
    /// Its UDP and TCP port on 127.0.0.1.
    pub port: u16,
    /// The process.
    pub child: ChildGuard,
}

impl Peer {
    /// Everything it logged.
    pub fn log(&self) -> String {
        self.child.log_text()
    }

    /// Sends SIGHUP.
    pub fn hangup(&mut self) {
        self.child.signal(Signal::HUP).expect("SIGHUP");
    }

    /// The serial of `zone` it serves, if it serves it.
    pub fn serial(&self, zone: &str) -> Option<u32> {
        serial(self.port, zone)
    }

    /// Waits up to `secs` for `f`, failing with `what` and the log.
    pub fn wait(&mut self, secs: u64, what: &str, f: impl FnMut() -> bool) {
        self.child
            .wait_until(secs, &format!("{} {what}", self.name), f);
    }
}

/// The serial of `zone` the server on `port` serves, if it serves it.
pub fn serial(port: u16, zone: &str) -> Option<u32> {
    dig(port, &format!("+short {zone} SOA"))
        .lines()
        .find(|l| !l.starts_with(';'))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|s| s.parse().ok())
}

/// The status dig prints for `args` (`NOERROR`, `SERVFAIL`, ...) against `port`.
pub fn status(port: u16, args: &str) -> String {
    let out = dig(port, args);
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string()
}

/// Runs dig against 127.0.0.1:`port`.
pub fn dig(port: u16, args: &str) -> String {
    let out = Command::new("dig")
        .args(["+time=2", "+tries=1", "@127.0.0.1", "-p", &port.to_string()])
        .args(args.split_whitespace())
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(name: &'static str, cmd: Command, dir: &Path, port: u16) -> Peer {
    let child = ChildGuard::spawn_with(
        cmd,
        dir.join(format!("{name}.log")),
        true,
        Stop::Term(Duration::from_secs(5)),
    )
    .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut peer = Peer { name, port, child };
    // Up when it answers anything over UDP.
    peer.wait(30, "to answer over UDP", || {
        let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        let query = [0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1];
        socket.send_to(&query, ("127.0.0.1", port)).is_ok() && socket.recv(&mut [0u8; 512]).is_ok()
    });
    peer
}

/// Starts onebox-dns with the site file `site` (its `[dns] listen` must be 127.0.0.1:`port`).
pub fn onebox(dir: &Path, port: u16, site: &str) -> Peer {
    let conf = dir.join("site.toml");
    std::fs::write(&conf, site).expect("write site.toml");
    let mut cmd = Command::new(onebox_testkit::program(
        "onebox-dns",
        env!("CARGO_BIN_EXE_onebox-dns"),
    ));
    cmd.arg("--config").arg(&conf);
    spawn("onebox", cmd, dir, port)
}

/// A secondary zone of a peer: its name, and whether it is fetched with the TSIG key
/// (`Some(KEY)`, `Some(BAD_KEY)`) or not.
pub struct Zone<'a> {
    /// The zone.
    pub name: &'a str,
    /// The key the peer signs with.
    pub key: Option<&'a str>,
}

/// Starts knotd as a secondary of `primary` for `zones`, fetching from 127.0.0.2.
pub fn knot_secondary(dir: &Path, primary: u16, zones: &[Zone<'_>]) -> Peer {
    let port = onebox_testkit::free_port();
    let d = dir.display();
    std::fs::create_dir_all(dir.join("db")).expect("knot db dir");
    let mut conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  udp-workers: 1\n  tcp-workers: 1\n  \
         background-workers: 1\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n  storage: \"{d}/db\"\n\
         key:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {SECRET}\n  \
         - id: {BAD_KEY}\n    algorithm: hmac-sha256\n    secret: {BAD_SECRET_PEER}\n\
         remote:\n  - id: plain\n    address: 127.0.0.1@{primary}\n    via: 127.0.0.2\n"
    );
    for key in [KEY, BAD_KEY] {
        let _ = write!(
            conf,
            "  - id: r-{key}\n    address: 127.0.0.1@{primary}\n    via: 127.0.0.2\n    key: {key}\n"
        );
    }
    conf.push_str("acl:\n  - id: notify-plain\n    address: 127.0.0.1\n    action: notify\n");
    for key in [KEY, BAD_KEY] {
        let _ = write!(
            conf,
            "  - id: notify-{key}\n    address: 127.0.0.1\n    key: {key}\n    action: notify\n"
        );
    }
    let _ = write!(
        conf,
        "template:\n  - id: default\n    storage: \"{d}\"\nzone:\n"
    );
    for z in zones {
        let (remote, acl) = match z.key {
            None => ("plain".to_string(), "notify-plain".to_string()),
            Some(key) => (format!("r-{key}"), format!("notify-{key}")),
        };
        let _ = write!(
            conf,
            "  - domain: {}\n    master: {remote}\n    acl: {acl}\n",
            z.name
        );
    }
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).expect("write knot.conf");
    let mut cmd = Command::new(program("knotd"));
    cmd.arg("-c").arg(&path);
    spawn("knot", cmd, dir, port)
}

/// Starts NSD as a secondary of `primary` for `zones`, fetching from 127.0.0.3.
pub fn nsd_secondary(dir: &Path, primary: u16, zones: &[Zone<'_>]) -> Peer {
    let port = onebox_testkit::free_port();
    let d = dir.display();
    let mut conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  server-count: 1\n  \
         username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  \
         pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
         xfrdir: \"{d}\"\n  verbosity: 2\n  do-ip6: no\n\
         remote-control:\n  control-enable: no\n\
         key:\n  name: {KEY}\n  algorithm: hmac-sha256\n  secret: \"{SECRET}\"\n\
         key:\n  name: {BAD_KEY}\n  algorithm: hmac-sha256\n  secret: \"{BAD_SECRET_PEER}\"\n"
    );
    for z in zones {
        let key = z.key.unwrap_or("NOKEY");
        let _ = write!(
            conf,
            "zone:\n  name: {0}\n  zonefile: {0}.zone\n  request-xfr: 127.0.0.1@{primary} {key}\n  \
             allow-notify: 127.0.0.1 {key}\n  outgoing-interface: 127.0.0.3\n",
            z.name
        );
    }
    let path = dir.join("nsd.conf");
    std::fs::write(&path, conf).expect("write nsd.conf");
    let mut cmd = Command::new(program("nsd"));
    cmd.arg("-d").arg("-c").arg(&path);
    spawn("nsd", cmd, dir, port)
}

/// Starts BIND's named as a secondary of `primary` for `zones`, fetching from 127.0.0.4.
pub fn bind_secondary(dir: &Path, primary: u16, zones: &[Zone<'_>]) -> Peer {
    let port = onebox_testkit::free_port();
    let d = dir.display();
    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
         listen-on-v6 {{ none; }};\n  pid-file \"{d}/named.pid\";\n  \
         session-keyfile \"{d}/session.key\";\n  recursion no;\n  notify no;\n  \
         dnssec-validation no;\n  transfer-source 127.0.0.4;\n}};\n\
         controls {{ }};\n\
         key \"{KEY}\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
         key \"{BAD_KEY}\" {{ algorithm hmac-sha256; secret \"{BAD_SECRET_PEER}\"; }};\n"
    );
    for z in zones {
        let key = z.key.map_or(String::new(), |k| format!(" key \"{k}\""));
        let _ = writeln!(
            conf,
            "zone \"{0}\" {{ type secondary; primaries port {primary} {{ 127.0.0.1{key}; }}; \
             file \"{0}.db\"; allow-notify {{ 127.0.0.1; }}; }};",
            z.name
        );
    }
    let path = dir.join("named.conf");
    std::fs::write(&path, conf).expect("write named.conf");
    let mut cmd = Command::new(program("named"));
    cmd.args(["-g", "-n", "1", "-c"]).arg(&path);
    spawn("bind", cmd, dir, port)
}

/// Starts knotd as the primary of the zone files `zones` in `dir` (file NAME.zone), notifying
/// `secondary` (signed with `key` when given) and letting 127.0.0.1 transfer them with that key;
/// zone file changes are turned into IXFR differences (`zonefile-load: difference`).
pub fn knot_primary(dir: &Path, secondary: u16, zones: &[Zone<'_>]) -> Peer {
    let port = onebox_testkit::free_port();
    let d = dir.display();
    std::fs::create_dir_all(dir.join("db")).expect("knot db dir");
    let mut conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  udp-workers: 1\n  tcp-workers: 1\n  \
         background-workers: 1\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n  storage: \"{d}/db\"\n\
         key:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {SECRET}\n  \
         - id: {BAD_KEY}\n    algorithm: hmac-sha256\n    secret: {BAD_SECRET_PEER}\n\
         remote:\n  - id: plain\n    address: 127.0.0.1@{secondary}\n"
    );
    for key in [KEY, BAD_KEY] {
        let _ = write!(
            conf,
            "  - id: r-{key}\n    address: 127.0.0.1@{secondary}\n    key: {key}\n"
        );
    }
    conf.push_str("acl:\n  - id: xfr-plain\n    address: 127.0.0.1\n    action: transfer\n");
    for key in [KEY, BAD_KEY] {
        let _ = write!(
            conf,
            "  - id: xfr-{key}\n    address: 127.0.0.1\n    key: {key}\n    action: transfer\n"
        );
    }
    let _ = write!(
        conf,
        "template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    \
         zonefile-load: difference\n    journal-content: changes\nzone:\n"
    );
    for z in zones {
        let (remote, acl) = match z.key {
            None => ("plain".to_string(), "xfr-plain".to_string()),
            Some(key) => (format!("r-{key}"), format!("xfr-{key}")),
        };
        let _ = write!(
            conf,
            "  - domain: {0}\n    file: {0}.zone\n    notify: {remote}\n    acl: {acl}\n",
            z.name
        );
    }
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).expect("write knot.conf");
    let mut cmd = Command::new(program("knotd"));
    cmd.arg("-c").arg(&path);
    spawn("knot", cmd, dir, port)
}

/// Polls `f` every 100 ms for up to `secs` seconds; false if it never held.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
