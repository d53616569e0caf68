//! Bad input: malformed, truncated, oversized and random packets, in process through the request
//! path and over the wire to the real binary.

use super::support::{Server, data, query_bytes};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use onebox_dns::answer::{Reply, Transport};
use onebox_dns::query::Engine;
use onebox_dns::rrl::{RateLimiter, RrlConfig};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A TSIG key the engine knows, and the transfers it allows with it.
const TSIG: &str = "[[tsig]]\nname = \"xfr-key\"\nsecret = \"qmJ0MUm0b6XyAoNZbSy+nuyLrBHDbWbvG1iK4oZ8RkQ=\"\n\
                    [[zone]]\nname = \"example.test\"\nallow_transfer = [\"key xfr-key\"]\n";

fn engine() -> Engine {
    let files = onebox_dns::catalog::zone_files(&data().join("zones")).unwrap();
    let loaded = onebox_dns::catalog::load(&files, None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let engine = Engine::new(loaded.catalog);
    let dns: onebox_dns::config::DnsConfig = toml::from_str(TSIG).unwrap();
    engine
        .set_tsig_keys(onebox_dns::xfr::tsig::Keys::load(&dns, std::path::Path::new(".")).unwrap());
    engine.set_zone_settings(&dns.zone);
    engine
}

/// `query_bytes` signed with the engine's TSIG key (the mutations then hit the TSIG checks:
/// BADSIG, BADKEY, BADTIME, and the signing of answers).
fn signed_query_bytes(name: &str, rtype: RecordType) -> Vec<u8> {
    let message = Message::from_vec(&query_bytes(name, rtype, None)).unwrap();
    let signer = hickory_proto::rr::TSigner::new(
        onebox_site::dns::Secret::parse("qmJ0MUm0b6XyAoNZbSy+nuyLrBHDbWbvG1iK4oZ8RkQ=")
            .unwrap()
            .bytes()
            .to_vec(),
        hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
        hickory_proto::rr::Name::from_ascii("xfr-key.").unwrap(),
        300,
    )
    .unwrap();
    onebox_dns::xfr::tsig::sign_request(&message, &signer)
        .unwrap()
        .0
}

/// Valid queries to mutate: every interesting name and type, with and without EDNS.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for name in [
        "example.test.",
        "www.example.test.",
        "x.wild.example.test.",
        "host.sub.example.test.",
        "huge.example.test.",
        "nothere.example.test.",
        "chain1.example.test.",
    ] {
        for rtype in [
            RecordType::A,
            RecordType::ANY,
            RecordType::TXT,
            RecordType::NS,
            RecordType::AXFR,
            RecordType::MX,
        ] {
            seeds.push(query_bytes(name, rtype, None));
            seeds.push(query_bytes(name, rtype, Some(1232)));
            seeds.push(signed_query_bytes(name, rtype));
        }
    }
    seeds
}

/// Checks a reply the way a client would: it decodes, echoes the ID and is a response.
fn check_reply(request: &[u8], reply: &Reply) {
    let messages = match reply {
        Reply::Drop => return,
        Reply::One(bytes) => vec![bytes],
        Reply::Many(all) => all.iter().collect(),
    };
    for bytes in messages {
        assert!(bytes.len() <= 65_535);
        assert_eq!(&bytes[..2], &request[..2], "ID echoed");
        assert!(bytes[2] & 0x80 != 0, "QR set");
        Message::from_vec(bytes)
            .unwrap_or_else(|e| panic!("undecodable reply {bytes:?} to {request:?}: {e}"));
    }
}

#[test]
fn thousands_of_random_and_mutated_packets_never_break_the_request_path() {
    let unlimited = random_packets(engine(), "no rate limiting");
    // With rate limiting at 5 answers a second, most UDP answers are dropped or slipped (sent
    // empty with TC): those must be as well-formed as the rest.
    let limited = engine().with_rate_limiter(RateLimiter::new(RrlConfig {
        responses_per_sec: 5,
        slip: 2,
        window_secs: 1,
        table_size: 64,
    }));
    let limited = random_packets(limited, "rate limiting");
    assert!(
        limited > unlimited + 5_000,
        "rate limiting dropped too few: {limited} UDP requests unanswered, {unlimited} without"
    );
}

/// Sends 40,000 random and mutated packets through `engine`, half as UDP, checking every reply.
/// Returns how many UDP requests got no reply.
fn random_packets(engine: Engine, what: &str) -> usize {
    let client: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x0b0c_5d05);
    let seeds = seeds();
    let mut answered = 0;
    let mut udp_unanswered = 0;
    for round in 0..40_000 {
        let packet: Vec<u8> = if round % 4 == 0 {
            (0..rng.usize(0..600)).map(|_| rng.u8(..)).collect()
        } else {
            let mut p = seeds[rng.usize(..seeds.len())].clone();
            for _ in 0..rng.usize(1..6) {
                match rng.u8(0..4) {
                    0 if !p.is_empty() => {
                        let i = rng.usize(..p.len());
                        p[i] = rng.u8(..);
                    }
                    1 if !p.is_empty() => p.truncate(rng.usize(..p.len())),
                    2 => {
                        let i = rng.usize(..=p.len());
                        p.insert(i, rng.u8(..));
                    }
                    _ => {
                        // Counts and flags are where parsers go wrong.
                        let i = rng.usize(2..12);
                        if i < p.len() {
                            p[i] = rng.u8(..);
                        }
                    }
                }
            }
            p
        };
        let transport = if round % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let reply = engine.respond(&packet, transport, client);
        if reply != Reply::Drop {
            answered += 1;
        } else if transport == Transport::Udp {
            udp_unanswered += 1;
        }
        check_reply(&packet, &reply);
        if let (Transport::Udp, Reply::One(bytes)) = (transport, &reply) {
            let edns = Message::from_vec(&packet).ok().and_then(|m| m.edns);
            let limit = edns.map_or(512, |e| e.max_payload().clamp(512, 1232));
            assert!(
                bytes.len() <= usize::from(limit),
                "UDP reply of {} bytes over {limit}",
                bytes.len()
            );
        }
    }
    assert!(answered > 10_000, "{what}: only {answered} answered");
    udp_unanswered
}

#[test]
fn the_server_survives_malformed_packets_and_abusive_connections() {
    let mut s = Server::start(&data().join("zones"), &[]);
    let good = query_bytes("web.example.test.", RecordType::A, None);
    // A runt and a response are dropped; garbage with a header gets FORMERR.
    assert_eq!(s.udp_raw(&[1, 2, 3]), None);
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(s.udp_raw(&response), None);
    let truncated = &good[..good.len() - 3];
    let reply = Message::from_vec(&s.udp_raw(truncated).expect("FORMERR")).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(reply.metadata.id, 0x1234);
    // An oversized datagram (header claims 1 question, then 60 KB of junk labels).
    let mut big = good[..12].to_vec();
    big.extend(std::iter::repeat_n(63u8, 60_000));
    let _ = s.udp_raw(&big);
    // A compression-pointer loop in the question.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let reply = Message::from_vec(&s.udp_raw(&looped).expect("FORMERR")).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // TCP: a length prefix with nothing behind it, half a message, garbage, then many idle
    // connections (from other addresses: one address may hold only a few); the server keeps
    // answering.
    let mut idle = Vec::new();
    for bytes in [
        &[0u8, 40][..],
        &[0, 40, 1, 2, 3],
        &[255, 255, 0, 0, 0],
        &[0, 3, 1, 2, 3],
    ] {
        let mut stream = TcpStream::connect(s.addr()).unwrap();
        stream.write_all(bytes).unwrap();
        idle.push(stream);
    }
    for i in 0..50u8 {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let from = SocketAddr::from(([127, 0, 2, i], 0));
        socket.bind(&from.into()).unwrap();
        socket.connect(&s.addr().into()).unwrap();
        idle.push(socket.into());
    }
    // Pipelined queries on one connection are all answered, in order.
    let mut stream = TcpStream::connect(s.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut framed = Vec::new();
    for _ in 0..3 {
        framed.extend_from_slice(&(good.len() as u16).to_be_bytes());
        framed.extend_from_slice(&good);
    }
    stream.write_all(&framed).unwrap();
    for _ in 0..3 {
        let mut len = [0u8; 2];
        std::io::Read::read_exact(&mut stream, &mut len).unwrap();
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
        std::io::Read::read_exact(&mut stream, &mut message).unwrap();
        assert_eq!(Message::from_vec(&message).unwrap().answers.len(), 1);
    }

    assert!(s.alive(), "{}", s.log());
    let d = s.dig("web.example.test A");
    assert_eq!(
        d.answer,
        vec!["web.example.test. 3600 IN A 192.0.2.80"],
        "{}",
        d.raw
    );
    let d = s.dig("+tcp web.example.test A");
    assert_eq!(
        d.answer,
        vec!["web.example.test. 3600 IN A 192.0.2.80"],
        "{}",
        d.raw
    );
}

#[test]
fn tcp_connections_are_bounded_and_idle_ones_closed() {
    use std::io::Read;
    let tmp = super::support::temp_dir("tcp-limits");
    let dir = tmp.path();
    let config = dir.join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[site]\ndomain = \"example.test\"\n[dns]\nzones = \"{}\"\ntcp_max_connections = 2\ntcp_idle_timeout_secs = 1\n",
            data().join("zones").display()
        ),
    )
    .unwrap();
    let s = Server::start(
        std::path::Path::new(""),
        &["--config", config.to_str().unwrap()],
    );
    let hold: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(s.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A third connection is closed at once: its query gets EOF (or a reset), never an answer.
    let good = query_bytes("web.example.test.", RecordType::A, None);
    let mut framed = (good.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&good);
    let mut third = TcpStream::connect(s.addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = third.write_all(&framed);
    let mut buf = [0u8; 2];
    assert!(
        matches!(third.read(&mut buf), Ok(0) | Err(_)),
        "a connection over the limit was served"
    );
    // The idle ones are closed by the server after the idle timeout.
    for mut stream in hold {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            matches!(stream.read(&mut buf), Ok(0)),
            "idle connection not closed"
        );
    }
    // Then new connections are served again.
    let replies = s.tcp_raw(&good);
    assert_eq!(Message::from_vec(&replies[0]).unwrap().answers.len(), 1);
}
