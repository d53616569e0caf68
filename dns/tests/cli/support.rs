//! Starting the real onebox-dns binary on a free loopback port, and asking it with `dig` and
//! from Rust.

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use onebox_testkit::{ChildGuard, Signal};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// dns/tests/data.
pub fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A fresh, empty temporary directory, removed when dropped.
pub fn temp_dir(what: &str) -> tempfile::TempDir {
    onebox_testkit::temp_dir(&format!("dns-test-{what}"))
}

/// Copies every file of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

/// A loopback port free for both UDP and TCP.
pub use onebox_testkit::free_port;

/// A running onebox-dns, killed on drop.
pub struct Server {
    child: ChildGuard,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Holds the log's directory until the server is dropped.
    _log_dir: tempfile::TempDir,
}

impl Server {
    /// Starts onebox-dns serving `zones` with extra arguments, and waits until it answers.
    pub fn start(zones: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let log_dir = temp_dir("log");
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--listen", &listen];
        let zones = zones.to_str().expect("utf-8 path");
        if !zones.is_empty() {
            args.extend(["--zones", zones]);
        }
        args.extend(extra);
        let mut cmd = Command::new(onebox_testkit::program(
            "onebox-dns",
            env!("CARGO_BIN_EXE_onebox-dns"),
        ));
        cmd.args(&args);
        let mut child = ChildGuard::spawn(cmd, log_dir.path().join("onebox-dns.log"))
            .expect("start onebox-dns");
        child.wait_until(20, "onebox-dns to answer over UDP", || {
            UdpSocket::bind("127.0.0.1:0").is_ok_and(|s| {
                s.set_read_timeout(Some(Duration::from_millis(200))).is_ok()
                    && s.send_to(
                        &query_bytes("probe.invalid.", RecordType::A, None),
                        ("127.0.0.1", port),
                    )
                    .is_ok()
                    && s.recv(&mut [0u8; 512]).is_ok()
            })
        });
        Server {
            child,
            port,
            _log_dir: log_dir,
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.child.log_text()
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        onebox_testkit::signal(self.child.pid(), Signal::HUP).expect("SIGHUP to onebox-dns");
    }

    /// Its UDP/TCP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.running()
    }

    /// Runs `dig @127.0.0.1 -p PORT ARGS...` and parses its output.
    pub fn dig(&self, args: &str) -> Dig {
        let output = Command::new("dig")
            .args([
                "+time=2",
                "+tries=1",
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(args.split_whitespace())
            .output()
            .expect("run dig");
        Dig::parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// Sends raw bytes over UDP and returns the reply, if any within a second.
    pub fn udp_raw(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        socket.send_to(bytes, self.addr()).expect("send");
        let mut buf = vec![0u8; 65_535];
        let len = socket.recv(&mut buf).ok()?;
        buf.truncate(len);
        Some(buf)
    }

    /// Sends one framed message over a new TCP connection and reads every reply message until
    /// the server has sent `count` messages or stops.
    pub fn tcp_raw(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut stream = TcpStream::connect(self.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).expect("write");
        let mut out = Vec::new();
        loop {
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).is_err() {
                return out;
            }
            let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if stream.read_exact(&mut message).is_err() {
                return out;
            }
            out.push(message);
        }
    }
}

/// A query's wire bytes, with EDNS of `payload` if given.
pub fn query_bytes(name: &str, rtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 0x1234;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message.to_vec().expect("encode")
}

/// dig's output, split into its parts.
#[derive(Debug, Default)]
pub struct Dig {
    /// `NOERROR`, `NXDOMAIN`, ...
    pub status: String,
    /// The header flags (`qr`, `aa`, ...).
    pub flags: Vec<String>,
    /// The question line(s).
    pub question: Vec<String>,
    /// Answer records, whitespace normalised.
    pub answer: Vec<String>,
    /// Authority records.
    pub authority: Vec<String>,
    /// Additional records (without the OPT pseudo-section).
    pub additional: Vec<String>,
    /// The OPT pseudo-section's `; EDNS:` line, if any.
    pub edns: Option<String>,
    /// The whole output.
    pub raw: String,
}

impl Dig {
    fn parse(text: &str) -> Dig {
        let mut dig = Dig {
            raw: text.to_string(),
            ..Dig::default()
        };
        let mut section = "";
        for line in text.lines() {
            if let Some(rest) = line.split("status: ").nth(1) {
                dig.status = rest.split(',').next().unwrap_or_default().to_string();
            }
            if let Some(rest) = line.strip_prefix(";; flags: ") {
                let flags = rest.split(';').next().unwrap_or_default();
                dig.flags = flags.split_whitespace().map(String::from).collect();
            }
            if line.starts_with("; EDNS:") {
                dig.edns = Some(line.to_string());
            }
            if line.starts_with(";; ") && line.ends_with("SECTION:") {
                section = line;
                continue;
            }
            if line.trim().is_empty() {
                section = "";
                continue;
            }
            let normal = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match section {
                ";; QUESTION SECTION:" => dig.question.push(normal),
                ";; ANSWER SECTION:" => dig.answer.push(normal),
                ";; AUTHORITY SECTION:" => dig.authority.push(normal),
                ";; ADDITIONAL SECTION:" => dig.additional.push(normal),
                _ => {}
            }
        }
        dig
    }

    /// Whether header flag `flag` is set.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}
