//! A primary that misbehaves on demand, for the secondary side's negative cases: it serves a
//! small zone (SOA refresh 60, retry 2, expire 8) over UDP and TCP, and can cut its transfer in
//! the middle or fall silent. And [`notify`], a NOTIFY sent from a chosen loopback address.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the primary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serves the zone at this serial.
    Serve(u32),
    /// Says this serial, then cuts every transfer after its first message.
    Cut(u32),
    /// Answers nothing.
    Silent,
}

/// The misbehaving primary; stops when dropped.
pub struct Primary {
    /// Its UDP and TCP port on 127.0.0.1.
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
}

impl Primary {
    /// Starts serving `zone` (silent until [`Primary::set`]).
    pub fn start(zone: &str) -> Primary {
        let port = onebox_testkit::free_port();
        let mode = Arc::new(Mutex::new(Mode::Silent));
        let stop = Arc::new(AtomicBool::new(false));
        let apex = Name::from_ascii(format!("{zone}.")).unwrap();
        let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        {
            let (mode, stop, apex) = (mode.clone(), stop.clone(), apex.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    let serial = match *mode.lock().unwrap() {
                        Mode::Serve(s) | Mode::Cut(s) => s,
                        Mode::Silent => continue,
                    };
                    let mut answer = reply(&query);
                    answer.answers.push(soa(&apex, serial));
                    let _ = udp.send_to(&answer.to_vec().unwrap(), from);
                }
            });
        }
        {
            let (mode, stop) = (mode.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut message).is_err() {
                        continue;
                    }
                    let Ok(query) = Message::from_vec(&message) else {
                        continue;
                    };
                    let current = *mode.lock().unwrap();
                    let (serial, cut) = match current {
                        Mode::Serve(s) => (s, false),
                        Mode::Cut(s) => (s, true),
                        Mode::Silent => continue,
                    };
                    let records = zone_records(&apex, serial);
                    let mut first = reply(&query);
                    let mut second = reply(&query);
                    second.queries.clear();
                    let half = records.len() / 2;
                    first.answers = records[..half].to_vec();
                    second.answers = records[half..].to_vec();
                    let mut out = Vec::new();
                    for m in [first, second] {
                        let bytes = m.to_vec().unwrap();
                        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                        out.extend_from_slice(&bytes);
                        if cut {
                            break;
                        }
                    }
                    let _ = stream.write_all(&out);
                    // Dropped: closed, complete or not.
                }
            });
        }
        Primary { port, mode, stop }
    }

    /// Changes what it does.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn reply(query: &Message) -> Message {
    let mut m = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    m.metadata.authoritative = true;
    m.queries = query.queries.clone();
    m
}

fn soa(apex: &Name, serial: u32) -> Record {
    let ns = Name::from_ascii("ns1")
        .unwrap()
        .append_domain(apex)
        .unwrap();
    let mail = Name::from_ascii("hostmaster")
        .unwrap()
        .append_domain(apex)
        .unwrap();
    Record::from_rdata(
        apex.clone(),
        300,
        RData::SOA(SOA::new(ns, mail, serial, 60, 2, 8, 300)),
    )
}

/// The zone at `serial`, as an AXFR sends it (the SOA first and last).
fn zone_records(apex: &Name, serial: u32) -> Vec<Record> {
    let ns = Name::from_ascii("ns1")
        .unwrap()
        .append_domain(apex)
        .unwrap();
    let mut records = vec![
        soa(apex, serial),
        Record::from_rdata(apex.clone(), 300, RData::NS(NS(ns.clone()))),
        Record::from_rdata(ns, 300, RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))),
    ];
    for i in 0..20 {
        let name = Name::from_ascii(format!("t{i}"))
            .unwrap()
            .append_domain(apex)
            .unwrap();
        records.push(Record::from_rdata(
            name,
            300,
            RData::TXT(TXT::new(vec![format!("serial {serial}")])),
        ));
    }
    records.push(soa(apex, serial));
    records
}

/// Sends a NOTIFY for `zone` at `serial` to 127.0.0.1:`port` from `from`; its answer's rcode.
pub fn notify(port: u16, zone: &str, serial: u32, from: [u8; 4], _key: Option<&str>) -> Option<u8> {
    let socket = UdpSocket::bind(SocketAddr::from((from, 0))).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let apex = Name::from_ascii(format!("{zone}.")).unwrap();
    let mut m = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Notify);
    m.metadata.authoritative = true;
    m.queries.push(Query::query(apex.clone(), RecordType::SOA));
    m.answers.push(soa(&apex, serial));
    socket
        .send_to(&m.to_vec().unwrap(), ("127.0.0.1", port))
        .ok()?;
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf).ok()?;
    (len >= 12).then_some(buf[3] & 0x0f)
}
