//! Hostile and heavy traffic: response rate limiting of a UDP burst, the UDP threads' adaptive
//! waits, the TCP limits per client and per connection, the per-zone settings reread on SIGHUP,
//! and the metrics that count all of it.

use super::support::{Server, data, free_port, query_bytes, temp_dir};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes a site file serving the test zones with `dns` appended to its `[dns]` section, and
/// starts onebox-dns with it. Returns the server and the metrics address.
fn start_with(dir: &Path, dns: &str) -> (Server, SocketAddr) {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[site]\ndomain = \"example.test\"\n\n[dns]\nzones = \"{}\"\nmetrics_listen = \"{metrics}\"\n{dns}",
            data().join("zones").display()
        ),
    )
    .unwrap();
    let server = Server::start(Path::new(""), &["--config", config.to_str().unwrap()]);
    (server, metrics)
}

/// `GET /metrics`: the body.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the sample `series` (name and labels, as written) in a scrape; 0 if absent.
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

fn wait_for(mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A query with ID `id`.
fn query_with_id(name: &str, id: u16) -> Vec<u8> {
    let mut bytes = query_bytes(name, RecordType::A, None);
    bytes[..2].copy_from_slice(&id.to_be_bytes());
    bytes
}

/// A UDP query from `from` to `server`, and its reply if one comes within 2 s.
fn ask_from(from: IpAddr, server: SocketAddr, name: &str) -> Option<Message> {
    let socket = UdpSocket::bind((from, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(&query_with_id(name, 7), server).unwrap();
    let mut buf = [0u8; 1500];
    let len = socket.recv(&mut buf).ok()?;
    Some(Message::from_vec(&buf[..len]).unwrap())
}

#[test]
fn rrl_limits_a_udp_burst_for_one_name_from_one_network_only() {
    let tmp = temp_dir("rrl");
    // Response rate limiting is on by default: no rrl_* key here.
    let (s, metrics) = start_with(tmp.path(), "");
    let name = "web.example.test.";
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    // 30,000 queries in batches of 128, each batch's replies read before the next is sent (so
    // that no socket buffer overflows: a reply missing here was not sent).
    const QUERIES: usize = 30_000;
    const BATCH: usize = 128;
    let (mut answered, mut truncated) = (0usize, 0usize);
    let mut buf = [0u8; 1500];
    let mut id: u16 = 0;
    for _ in 0..QUERIES / BATCH + 1 {
        for _ in 0..BATCH {
            id = id.wrapping_add(1);
            socket.send_to(&query_with_id(name, id), s.addr()).unwrap();
        }
        let mut got = 0;
        while got < BATCH {
            let Ok(len) = socket.recv(&mut buf) else {
                break; // the rest of the batch was dropped
            };
            got += 1;
            let reply = Message::from_vec(&buf[..len]).unwrap();
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            if reply.metadata.truncation {
                assert!(reply.answers.is_empty());
                truncated += 1;
            } else {
                assert_eq!(reply.answers.len(), 1);
                answered += 1;
            }
        }
    }
    // Replies still on their way when a batch's wait ended.
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok(len) = socket.recv(&mut buf) {
        if Message::from_vec(&buf[..len]).unwrap().metadata.truncation {
            truncated += 1;
        } else {
            answered += 1;
        }
    }
    let sent = (QUERIES / BATCH + 1) * BATCH;
    let dropped = sent - answered - truncated;
    println!(
        "RRL burst of {sent} queries: {answered} answered, {truncated} truncated, {dropped} dropped"
    );
    // 200 a second after a window of 4 s: a small part of the burst however long it takes.
    assert!(answered * 3 < sent, "{answered} of {sent} answered in full");
    assert!(
        truncated * 4 > sent,
        "only {truncated} of {sent} truncated (slip 2)"
    );
    assert!(dropped * 4 > sent, "only {dropped} of {sent} dropped");

    // Another network is answered at once; so are another name, and TCP, from this one.
    let other = ask_from("127.0.1.2".parse().unwrap(), s.addr(), name).expect("an answer");
    assert!(
        !other.metadata.truncation && other.answers.len() == 1,
        "{other:?}"
    );
    let www =
        ask_from("127.0.0.1".parse().unwrap(), s.addr(), "www.example.test.").expect("an answer");
    assert!(
        !www.metadata.truncation && !www.answers.is_empty(),
        "{www:?}"
    );
    let tcp = s.tcp_raw(&query_with_id(name, 9));
    let tcp = Message::from_vec(&tcp[0]).unwrap();
    assert!(
        !tcp.metadata.truncation && tcp.answers.len() == 1,
        "{tcp:?}"
    );

    // The log says so in a line or two, not a line per answer.
    let log = s.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("response rate limiting"))
        .count();
    assert!((1..=5).contains(&lines), "{lines} lines:\n{log}");
    assert!(log.contains("127.0.0.0/24"), "{log}");
    // The metrics count what was limited: every truncated answer the client saw, and drops.
    let m = scrape(metrics);
    let slipped = sample(
        &m,
        r#"onebox_dns_rrl_limited_total{action="slipped",class="positive"}"#,
    );
    let rrl_dropped = sample(
        &m,
        r#"onebox_dns_rrl_limited_total{action="dropped",class="positive"}"#,
    );
    println!("metrics: {slipped} slipped, {rrl_dropped} dropped by RRL");
    assert_eq!(slipped as usize, truncated, "{m}");
    assert!(rrl_dropped as usize >= dropped * 9 / 10, "{m}");
    assert!(
        sample(
            &m,
            r#"onebox_dns_queries_total{transport="udp",rcode="dropped"}"#
        ) >= rrl_dropped,
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"onebox_dns_queries_total{transport="udp",rcode="NOERROR"}"#
        ) >= (answered + truncated) as u64,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"onebox_dns_queries_total{transport="tcp",rcode="NOERROR"}"#
        ),
        1,
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"onebox_dns_zone_serial{zone="example.test"}"#),
        1,
        "{m}"
    );
}

/// Connects to `to` from the address `from`.
fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends a query on `stream` and reads the answer; `None` if the server closed the connection.
fn ask_tcp(stream: &mut TcpStream, id: u16) -> Option<Message> {
    let query = query_with_id("web.example.test.", id);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).ok()?;
    Some(Message::from_vec(&message).unwrap())
}

#[test]
fn tcp_connections_are_capped_per_client_and_live_a_bounded_time() {
    let tmp = temp_dir("tcp-client");
    let (s, metrics) = start_with(
        tmp.path(),
        "tcp_max_connections_per_client = 2\ntcp_max_connection_secs = 1\ntcp_idle_timeout_secs = 30\n",
    );
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect_from(local, s.addr())).collect();
    for (i, stream) in held.iter_mut().enumerate() {
        assert!(ask_tcp(stream, i as u16).is_some(), "{}", s.log());
    }
    // A third connection from the same address is closed unanswered; one from another address
    // is served.
    let mut third = connect_from(local, s.addr());
    assert!(
        ask_tcp(&mut third, 3).is_none(),
        "a third connection was served"
    );
    let mut other = connect_from("127.0.0.2".parse().unwrap(), s.addr());
    assert!(ask_tcp(&mut other, 4).is_some(), "{}", s.log());

    // A connection that never idles is still closed at the end of its lifetime (1 s; the idle
    // timeout is 30 s): within 100 queries 100 ms apart.
    let mut busy = held.pop().unwrap();
    let mut answered = 0;
    for id in 0..100u16 {
        if ask_tcp(&mut busy, 100 + id).is_none() {
            break;
        }
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        answered < 100,
        "a busy connection lived on past its lifetime"
    );
    drop(held);
    drop(busy);
    // Its place, and the other's, are given back: two new connections from the same address.
    let mut again: Vec<TcpStream> = (0..2).map(|_| connect_from(local, s.addr())).collect();
    for (i, stream) in again.iter_mut().enumerate() {
        assert!(
            wait_for(|| ask_tcp(stream, 200 + i as u16).is_some() || {
                *stream = connect_from(local, s.addr());
                false
            }),
            "{}",
            s.log()
        );
    }
    let m = scrape(metrics);
    assert!(
        sample(
            &m,
            r#"onebox_dns_tcp_connections_total{outcome="refused_client_full"}"#
        ) >= 1,
        "{m}"
    );
    assert!(
        sample(&m, "onebox_dns_tcp_connections_expired_total") >= 1,
        "{m}"
    );
}

#[test]
fn sighup_rereads_the_per_zone_settings() {
    let tmp = temp_dir("sighup-zone");
    let dir = tmp.path();
    let (s, metrics) = start_with(dir, "");
    let config = dir.join("site.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    let axfr = || {
        let messages = s.tcp_raw(&query_bytes("example.test.", RecordType::AXFR, None));
        Message::from_vec(&messages[0])
            .unwrap()
            .metadata
            .response_code
    };
    assert_eq!(axfr(), ResponseCode::Refused);
    // Allowed after a reload.
    let allowed = format!(
        "{base}\n[[dns.zone]]\nname = \"example.test\"\nallow_transfer = [\"127.0.0.1\"]\n"
    );
    std::fs::write(&config, &allowed).unwrap();
    s.hangup();
    assert!(wait_for(|| axfr() == ResponseCode::NoError), "{}", s.log());
    // A broken site file is reported with its line and changes nothing; the server serves on.
    let broken = allowed.replace("\"127.0.0.1\"]", "\"127.0.0.1\", \"not an address\"]");
    std::fs::write(&config, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("not an address"))
        .unwrap()
        + 1;
    s.hangup();
    let wanted = format!("{}:{line}:", config.display());
    assert!(
        wait_for(|| s.log().contains(&wanted)),
        "no `{wanted}` in:\n{}",
        s.log()
    );
    assert_eq!(axfr(), ResponseCode::NoError);
    assert_eq!(s.dig("web.example.test A").status, "NOERROR");
    // Taking the permission away applies too; a key that needs a restart is named.
    std::fs::write(&config, format!("{base}query_log = true\n")).unwrap();
    s.hangup();
    assert!(wait_for(|| axfr() == ResponseCode::Refused), "{}", s.log());
    assert!(
        wait_for(|| s
            .log()
            .contains("[dns] query_log changed; restart onebox-dns")),
        "{}",
        s.log()
    );
    let m = scrape(metrics);
    assert_eq!(
        sample(&m, r#"onebox_dns_reloads_total{result="failed"}"#),
        1,
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"onebox_dns_reloads_total{result="ok"}"#),
        2,
        "{m}"
    );
}

#[test]
fn metrics_are_served_on_loopback_only() {
    let tmp = temp_dir("metrics-public");
    let config = tmp.path().join("site.toml");
    std::fs::write(
        &config,
        "[site]\ndomain = \"example.test\"\n\n[dns]\nmetrics_listen = \"0.0.0.0:9153\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(onebox_testkit::program(
        "onebox-dns",
        env!("CARGO_BIN_EXE_onebox-dns"),
    ))
    .arg("--config")
    .arg(&config)
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:5:", config.display())) && stderr.contains("metrics_listen"),
        "{stderr}"
    );
    // Anything but GET /metrics is refused.
    let (_s, metrics) = start_with(tmp.path(), "");
    let mut stream = TcpStream::connect(metrics).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
}

/// The UDP threads' adaptive waits (`udp_batch_wait_us`, on by default), counted by
/// `onebox_dns_udp_waits_total`: none at a trickle (a query every 2 ms, each answered), few for a
/// client that sends each query only after its answer (its waits gather nothing: they pause,
/// longer each time), some under bursts of 1,000 queries sent back to back.
#[test]
fn udp_threads_wait_under_bursts_not_at_a_trickle() {
    let tmp = temp_dir("udp-waits");
    // One UDP socket, so one thread sees all of it; no rate limiting of the bursts.
    let (s, metrics) = start_with(tmp.path(), "udp_sockets = 1\nrrl_responses_per_sec = 0");
    let waits = || sample(&scrape(metrics), "onebox_dns_udp_waits_total");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let mut ask = |id: u16| {
        socket
            .send_to(&query_with_id("web.example.test.", id), s.addr())
            .unwrap();
        let len = socket.recv(&mut buf).expect("an answer");
        let reply = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(reply.metadata.id, id);
    };
    let start = waits();
    for id in 0..100 {
        ask(id);
        std::thread::sleep(Duration::from_millis(2));
    }
    let trickle = waits() - start;
    assert_eq!(trickle, 0, "waits at a trickle of 500 queries per second");
    for id in 0..2000 {
        ask(id);
    }
    let one_by_one = waits() - start;
    println!("{one_by_one} waits in 2000 queries one after the other");
    assert!(
        one_by_one <= 20,
        "{one_by_one} waits for a client that sends each query after the last answer"
    );
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut reads = 0;
    for round in 0..10u16 {
        for i in 0..1000u16 {
            let id = round.wrapping_mul(1000).wrapping_add(i);
            socket
                .send_to(&query_with_id("web.example.test.", id), s.addr())
                .unwrap();
        }
        while socket.recv(&mut buf).is_ok() {
            reads += 1;
        }
    }
    let m = scrape(metrics);
    let bursts = sample(&m, "onebox_dns_udp_waits_total") - start - one_by_one;
    println!(
        "{bursts} waits under 10 bursts of 1000 queries ({reads} answers read; {} reads of the \
         socket in all)",
        sample(&m, "onebox_dns_udp_reads_total")
    );
    assert!(bursts > 0, "no wait under bursts");
}
