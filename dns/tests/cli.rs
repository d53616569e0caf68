//! onebox-dns end to end: the real binary on a free loopback port, asked with `dig` and from Rust.
//! Test zones and configurations are in dns/tests/data/.
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "cli/support.rs"]
mod support;

#[path = "cli/robustness.rs"]
mod robustness;

#[path = "cli/limits.rs"]
mod limits;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Server, data, query_bytes, temp_dir};

fn server() -> Server {
    Server::start(&data().join("zones"), &[])
}

#[test]
fn answers_www_with_aa_and_no_recursion() {
    let s = Server::start(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../zones"),
        &[],
    );
    for transport in ["", "+tcp"] {
        let d = s.dig(&format!("{transport} www.foobar.com A"));
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert!(
            d.has_flag("aa") && d.has_flag("rd") && !d.has_flag("ra"),
            "{}",
            d.raw
        );
        assert_eq!(
            d.answer,
            vec!["www.foobar.com. 3600 IN A 8.8.8.8"],
            "{}",
            d.raw
        );
        assert!(d.authority.is_empty(), "{}", d.raw);
    }
}

#[test]
fn refuses_names_outside_its_zones() {
    let s = server();
    for name in ["example.org", "test", ".", "nexample.test"] {
        let d = s.dig(&format!("{name} A"));
        assert_eq!(d.status, "REFUSED", "{name}: {}", d.raw);
        assert!(!d.has_flag("aa") && !d.has_flag("ra"), "{}", d.raw);
        assert!(d.answer.is_empty() && d.authority.is_empty(), "{}", d.raw);
        // RFC 8914 Extended DNS Error 20, Not Authoritative, as NSD and Knot send.
        assert!(d.raw.contains("EDE: 20 (Not Authoritative)"), "{}", d.raw);
    }
    // Classes other than IN are not served.
    assert_eq!(s.dig("version.bind TXT CH").status, "REFUSED");
}

#[test]
fn negative_answers_carry_the_soa_with_the_rfc2308_ttl() {
    let s = server();
    let soa = "example.test. 300 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300";
    // NXDOMAIN; NODATA at a name with other types; NODATA at an empty non-terminal.
    for (q, status) in [
        ("nothere.example.test A", "NXDOMAIN"),
        ("web.example.test AAAA", "NOERROR"),
        ("b.ent.example.test A", "NOERROR"),
        ("ent.example.test TXT", "NOERROR"),
    ] {
        let d = s.dig(q);
        assert_eq!(d.status, status, "{q}: {}", d.raw);
        assert!(d.has_flag("aa"), "{}", d.raw);
        assert!(d.answer.is_empty(), "{}", d.raw);
        assert_eq!(d.authority, vec![soa], "{q}: {}", d.raw);
    }
    // The SOA itself keeps its own TTL.
    let d = s.dig("example.test SOA");
    assert_eq!(
        d.answer,
        vec![soa.replace(" 300 IN", " 3600 IN")],
        "{}",
        d.raw
    );
}

#[test]
fn every_ns_and_mx_target_gets_its_addresses() {
    let s = server();
    let d = s.dig("example.test NS");
    assert_eq!(d.answer.len(), 3, "{}", d.raw);
    let mut additional = d.additional.clone();
    additional.sort();
    assert_eq!(
        additional,
        vec![
            "ns1.example.test. 3600 IN A 192.0.2.53",
            "ns2.example.test. 3600 IN A 192.0.2.54",
            "ns2.example.test. 3600 IN AAAA 2001:db8::54",
        ],
        "{}",
        d.raw
    );
    let d = s.dig("example.test MX");
    let mut additional = d.additional.clone();
    additional.sort();
    assert_eq!(
        additional,
        vec![
            "mail.example.test. 3600 IN A 192.0.2.25",
            "mail2.example.test. 3600 IN A 192.0.2.26",
            "mail2.example.test. 3600 IN AAAA 2001:db8::26",
        ],
        "{}",
        d.raw
    );
    let d = s.dig("_sip._tcp.example.test SRV");
    assert_eq!(
        d.additional,
        vec!["web.example.test. 3600 IN A 192.0.2.80"],
        "{}",
        d.raw
    );
}

#[test]
fn cname_chains_are_followed_inside_the_zone() {
    let s = server();
    let d = s.dig("chain1.example.test A");
    assert_eq!(
        d.answer,
        vec![
            "chain1.example.test. 3600 IN CNAME chain2.example.test.",
            "chain2.example.test. 3600 IN CNAME www.example.test.",
            "www.example.test. 3600 IN CNAME web.example.test.",
            "web.example.test. 3600 IN A 192.0.2.80",
        ],
        "{}",
        d.raw
    );
    assert!(d.has_flag("aa"));
    // Asking for the CNAME itself does not follow it.
    let d = s.dig("www.example.test CNAME");
    assert_eq!(
        d.answer,
        vec!["www.example.test. 3600 IN CNAME web.example.test."],
        "{}",
        d.raw
    );
    // A CNAME to a missing name: the CNAME, NXDOMAIN for the target (RFC 6604), SOA.
    let d = s.dig("dangling.example.test A");
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    assert_eq!(d.answer.len(), 1, "{}", d.raw);
    assert_eq!(d.authority.len(), 1, "{}", d.raw);
    // Out of the zone: the CNAME alone.
    let d = s.dig("outside.example.test A");
    assert_eq!(
        (d.status.as_str(), d.answer.len(), d.authority.len()),
        ("NOERROR", 1, 0),
        "{}",
        d.raw
    );
    // A loop ends.
    let d = s.dig("loop1.example.test A");
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answer.len(), 2, "{}", d.raw);
}

#[test]
fn wildcards_follow_rfc4592() {
    let s = server();
    let d = s.dig("anything.wild.example.test A");
    assert_eq!(
        d.answer,
        vec!["anything.wild.example.test. 3600 IN A 192.0.2.99"],
        "{}",
        d.raw
    );
    assert!(d.has_flag("aa"));
    // Deeper names match too.
    let d = s.dig("a.b.wild.example.test TXT");
    assert_eq!(
        d.answer,
        vec!["a.b.wild.example.test. 3600 IN TXT \"wild\""],
        "{}",
        d.raw
    );
    // A wildcard does not match a name that exists: NODATA, not the wildcard's A.
    let d = s.dig("exists.wild.example.test A");
    assert_eq!(
        (d.status.as_str(), d.answer.len(), d.authority.len()),
        ("NOERROR", 0, 1),
        "{}",
        d.raw
    );
    // ... nor names below an existing name that is not the wildcard's parent.
    let d = s.dig("x.exists.wild.example.test A");
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    // The wildcard's own types only: NODATA for others.
    let d = s.dig("other.wild.example.test MX");
    assert_eq!(
        (d.status.as_str(), d.answer.len()),
        ("NOERROR", 0),
        "{}",
        d.raw
    );
    // CNAME at a wildcard, followed.
    let d = s.dig("q.cnwild.example.test A");
    assert_eq!(
        d.answer,
        vec![
            "q.cnwild.example.test. 3600 IN CNAME web.example.test.",
            "web.example.test. 3600 IN A 192.0.2.80"
        ],
        "{}",
        d.raw
    );
    // Empty non-terminals block wildcards above them: b.ent exists (empty), so x.b.ent is NXDOMAIN.
    assert_eq!(s.dig("x.b.ent.example.test A").status, "NXDOMAIN");
}

#[test]
fn delegations_are_referrals_with_glue() {
    let s = server();
    for q in [
        "host.sub.example.test A",
        "sub.example.test NS",
        "deep.host.sub.example.test MX",
    ] {
        let d = s.dig(q);
        assert_eq!(d.status, "NOERROR", "{q}: {}", d.raw);
        assert!(!d.has_flag("aa"), "{q}: {}", d.raw);
        assert!(d.answer.is_empty(), "{}", d.raw);
        let mut authority = d.authority.clone();
        authority.sort();
        assert_eq!(
            authority,
            vec![
                "sub.example.test. 3600 IN NS ns.sub.example.test.",
                "sub.example.test. 3600 IN NS ns1.example.test."
            ],
            "{}",
            d.raw
        );
        let mut additional = d.additional.clone();
        additional.sort();
        assert_eq!(
            additional,
            vec![
                "ns.sub.example.test. 3600 IN A 192.0.2.100",
                "ns1.example.test. 3600 IN A 192.0.2.53"
            ],
            "{}",
            d.raw
        );
    }
    // DS at the cut is the parent's to answer: authoritative NODATA.
    let d = s.dig("sub.example.test DS");
    assert!(d.has_flag("aa"), "{}", d.raw);
    assert_eq!((d.answer.len(), d.authority.len()), (0, 1), "{}", d.raw);
}

#[test]
fn edns_is_rfc6891() {
    let s = server();
    let d = s.dig("web.example.test A");
    assert!(
        d.edns
            .as_deref()
            .is_some_and(|e| e.contains("version: 0") && e.contains("udp: 1232")),
        "{}",
        d.raw
    );
    let d = s.dig("+noedns web.example.test A");
    assert!(d.edns.is_none(), "{}", d.raw);
    let d = s.dig("+edns=1 +noednsnegotiation web.example.test A");
    assert_eq!(d.status, "BADVERS", "{}", d.raw);
    assert!(
        d.edns.as_deref().is_some_and(|e| e.contains("version: 0")),
        "{}",
        d.raw
    );
    assert!(d.answer.is_empty(), "{}", d.raw);
    // DO is echoed.
    let d = s.dig("+dnssec web.example.test A");
    assert!(
        d.edns.as_deref().is_some_and(|e| e.contains("flags: do")),
        "{}",
        d.raw
    );

    // Two OPT records: FORMERR.
    let mut bytes = query_bytes("web.example.test.", RecordType::A, Some(1232));
    let opt = bytes[bytes.len() - 11..].to_vec();
    bytes.extend_from_slice(&opt);
    bytes[11] = 2; // ARCOUNT
    let reply = Message::from_vec(&s.udp_raw(&bytes).expect("reply")).expect("decode");
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(reply.metadata.id, 0x1234);
}

#[test]
fn big_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let s = server();
    // 10 TXT records of ~100 bytes: over 512, under 1232.
    let d = s.dig("+noedns +ignore big.example.test TXT");
    assert!(d.has_flag("tc"), "{}", d.raw);
    assert!(d.answer.is_empty(), "{}", d.raw);
    let d = s.dig("+ignore big.example.test TXT");
    assert!(!d.has_flag("tc"), "{}", d.raw);
    assert_eq!(d.answer.len(), 10, "{}", d.raw);
    // 30 TXT records of ~200 bytes: over 1232 too; dig retries over TCP and gets them all.
    let d = s.dig("+ignore huge.example.test TXT");
    assert!(d.has_flag("tc"), "{}", d.raw);
    let d = s.dig("huge.example.test TXT");
    assert!(!d.has_flag("tc"), "{}", d.raw);
    assert_eq!(d.answer.len(), 30, "{}", d.raw);
    assert!(d.raw.contains("(TCP)"), "{}", d.raw);
    // A client asking for a small payload gets 512 at least; one asking 4096 gets at most 1232.
    let reply = s
        .udp_raw(&query_bytes(
            "huge.example.test.",
            RecordType::TXT,
            Some(4096),
        ))
        .expect("reply");
    assert!(reply.len() <= 1232);
    assert!(
        Message::from_vec(&reply)
            .expect("decode")
            .metadata
            .truncation
    );
}

#[test]
fn names_are_case_insensitive_and_the_question_keeps_its_case() {
    let s = server();
    let d = s.dig("WeB.ExAmPlE.tEsT A");
    assert_eq!(d.question, vec![";WeB.ExAmPlE.tEsT. IN A"], "{}", d.raw);
    assert_eq!(
        d.answer,
        vec!["WeB.ExAmPlE.tEsT. 3600 IN A 192.0.2.80"],
        "{}",
        d.raw
    );
    assert!(d.has_flag("aa"));
}

#[test]
fn other_opcodes_get_notimp_and_any_gets_one_rrset() {
    let s = server();
    // IQUERY, STATUS, UPDATE, unassigned: NOTIMP, header only (NSD).
    for (opcode, rcode) in [
        (1u8, ResponseCode::NotImp),
        (2, ResponseCode::NotImp),
        (5, ResponseCode::NotImp),
        (15, ResponseCode::NotImp),
    ] {
        let mut bytes = query_bytes("example.test.", RecordType::SOA, None);
        bytes[2] = (bytes[2] & 0x87) | (opcode << 3);
        let reply = Message::from_vec(&s.udp_raw(&bytes).expect("reply")).expect("decode");
        assert_eq!(reply.metadata.response_code, rcode, "opcode {opcode}");
        assert!(reply.answers.is_empty() && reply.queries.is_empty());
    }
    // NOTIFY (we are no secondary): NOTAUTH with the question (Knot).
    let mut bytes = query_bytes("example.test.", RecordType::SOA, None);
    bytes[2] = (bytes[2] & 0x87) | (4 << 3);
    let reply = Message::from_vec(&s.udp_raw(&bytes).expect("reply")).expect("decode");
    assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(reply.queries.len(), 1);
    // RFC 8482: one RRset (the lowest type, as Knot), over UDP and TCP.
    for transport in ["", "+tcp"] {
        let d = s.dig(&format!("{transport} example.test ANY"));
        assert_eq!(
            d.answer,
            vec!["example.test. 3600 IN A 192.0.2.1"],
            "{}",
            d.raw
        );
        assert!(d.has_flag("aa"));
    }
    let d = s.dig("ns2.example.test ANY");
    assert_eq!(
        d.answer,
        vec!["ns2.example.test. 3600 IN A 192.0.2.54"],
        "{}",
        d.raw
    );
    let d = s.dig("ent.example.test ANY");
    assert_eq!(
        (d.status.as_str(), d.answer.len(), d.authority.len()),
        ("NOERROR", 0, 1),
        "{}",
        d.raw
    );
}

#[test]
fn check_reports_every_error_with_file_and_line() {
    let bin = onebox_testkit::program("onebox-dns", env!("CARGO_BIN_EXE_onebox-dns"));
    let out = Command::new(&bin)
        .args(["check"])
        .arg(data().join("broken"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let file = data().join("broken/bad.test.zone");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for (line, n) in lines.iter().zip([7, 8, 9, 11]) {
        assert!(
            line.starts_with(&format!("{}:{n}: ", file.display())),
            "{line}"
        );
    }
    assert!(lines[3].contains("outside the zone"), "{stdout}");
    // The good zones pass, one file or the directory.
    let out = Command::new(&bin)
        .args(["check"])
        .arg(data().join("zones"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(&bin)
        .args(["check"])
        .arg(data().join("zones/example.test.zone"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // Zone-level errors: no SOA, CNAME and other data, name server without address.
    let tmp = temp_dir("check");
    let dir = tmp.path();
    std::fs::write(
        dir.join("z.test.zone"),
        "$TTL 60\n@ IN NS ns\nwww IN CNAME web\nwww IN A 192.0.2.1\n",
    )
    .unwrap();
    let out = Command::new(&bin).arg("check").arg(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("no SOA record"), "{stdout}");
    std::fs::write(
        dir.join("z.test.zone"),
        "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.1\nwww IN CNAME web\nwww IN A 192.0.2.1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("y.test.zone"),
        "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\n@ IN NS ns\n",
    )
    .unwrap();
    let out = Command::new(&bin).arg("check").arg(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("z.test.zone:5: www.z.test. has a CNAME and other data"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "y.test.zone:3: the name server ns.y.test. of y.test. has no A or AAAA record"
        ),
        "{stdout}"
    );
}

#[test]
fn a_config_file_gives_the_same_settings_and_typos_are_errors() {
    let bin = onebox_testkit::program("onebox-dns", env!("CARGO_BIN_EXE_onebox-dns"));
    let out = Command::new(&bin)
        .arg("--config")
        .arg(data().join("typo.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:6:", data().join("typo.toml").display())),
        "{stderr}"
    );
    assert!(stderr.contains("allow_transfers"), "{stderr}");
    // zones = "zones" in transfer.toml is relative to the file.
    let config = data().join("transfer.toml");
    let s = Server::start(
        std::path::Path::new(""),
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(
        s.dig("web.example.test A").answer,
        vec!["web.example.test. 3600 IN A 192.0.2.80"]
    );
}

#[test]
fn zone_transfers_are_tcp_only_and_denied_by_default() {
    let s = server();
    let d = s.dig("+tcp example.test AXFR");
    assert!(
        d.raw.contains("Transfer failed") || d.raw.contains("REFUSED"),
        "{}",
        d.raw
    );
    let reply = s.tcp_raw(&query_bytes("example.test.", RecordType::AXFR, None));
    assert_eq!(reply.len(), 1);
    assert_eq!(
        Message::from_vec(&reply[0]).unwrap().metadata.response_code,
        ResponseCode::Refused
    );

    let config = data().join("transfer.toml");
    let s = Server::start(
        &data().join("zones"),
        &["--config", config.to_str().unwrap()],
    );
    let messages = s.tcp_raw(&query_bytes("example.test.", RecordType::AXFR, None));
    let records: Vec<_> = messages
        .iter()
        .flat_map(|m| Message::from_vec(m).unwrap().answers)
        .collect();
    assert_eq!(records.len(), 72, "71 records and the closing SOA");
    let d = s.dig("example.test AXFR");
    assert!(d.raw.contains("XFR size: 72 records"), "{}", d.raw);
    // Over UDP: NOTIMP (as NSD and Knot), never the zone.
    let reply = Message::from_vec(
        &s.udp_raw(&query_bytes("example.test.", RecordType::AXFR, None))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    assert!(reply.answers.is_empty());
    // IXFR: an up-to-date client gets the SOA alone; an older one the whole zone (RFC 1995 §4).
    let d = s.dig("example.test ixfr=1");
    assert_eq!(
        d.raw.lines().filter(|l| l.contains("\tIN\tSOA\t")).count(),
        1,
        "{}",
        d.raw
    );
    assert!(!d.raw.contains("192.0.2.80"), "{}", d.raw);
    let d = s.dig("example.test ixfr=0");
    assert!(d.raw.contains("XFR size: 72 records"), "{}", d.raw);
    // A zone we do not serve: NOTAUTH (RFC 5936 §2.2.1).
    let reply = s.tcp_raw(&query_bytes("example.org.", RecordType::AXFR, None));
    assert_eq!(
        Message::from_vec(&reply[0]).unwrap().metadata.response_code,
        ResponseCode::NotAuth
    );
    // foobar.com has no allow_transfer: refused even from 127.0.0.1.
    let reply = s.tcp_raw(&query_bytes("foobar.com.", RecordType::AXFR, None));
    assert_eq!(
        Message::from_vec(&reply[0]).unwrap().metadata.response_code,
        ResponseCode::Refused
    );
}

#[test]
fn a_large_zone_transfers_completely_in_several_messages() {
    let tmp = temp_dir("large");
    let dir = tmp.path();
    let mut zone = String::from(
        "$TTL 3600\n@ IN SOA ns1 hostmaster 7 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n",
    );
    for i in 0..5000 {
        zone.push_str(&format!(
            "host{i} IN A 10.{}.{}.{}\nhost{i} IN TXT \"record number {i}\"\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    std::fs::write(dir.join("large.test.zone"), zone).unwrap();
    let config = dir.join("site.toml");
    std::fs::write(&config, "[site]\ndomain = \"large.test\"\n[dns]\nzones = \".\"\n[[dns.zone]]\nname = \"large.test\"\nallow_transfer = [\"127.0.0.0/8\"]\n").unwrap();
    let s = Server::start(
        std::path::Path::new(""),
        &["--config", config.to_str().unwrap()],
    );
    let messages = s.tcp_raw(&query_bytes("large.test.", RecordType::AXFR, None));
    assert!(messages.len() > 5, "{} messages", messages.len());
    let records: Vec<_> = messages
        .iter()
        .flat_map(|m| Message::from_vec(m).unwrap().answers)
        .collect();
    assert_eq!(records.len(), 10_002 + 2, "SOA + NS + ns1 A + 10000 + SOA");
    assert_eq!(records[0].record_type(), RecordType::SOA);
    assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count(),
        2
    );
    let names: std::collections::HashSet<String> =
        records.iter().map(|r| r.name.to_string()).collect();
    assert!((0..5000).all(|i| names.contains(&format!("host{i}.large.test."))));
    // dig agrees.
    let d = s.dig("large.test AXFR");
    assert!(
        d.raw.contains("XFR size: 10004 records"),
        "{}",
        &d.raw[d.raw.len().saturating_sub(300)..]
    );
}

fn wait_for(mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sighup_reloads_good_zones_and_keeps_broken_ones() {
    let tmp = temp_dir("reload");
    let dir = tmp.path();
    support::copy_dir(&data().join("zones"), dir);
    let s = Server::start(dir, &[]);
    assert_eq!(
        s.dig("www.foobar.com A").answer,
        vec!["www.foobar.com. 3600 IN A 8.8.8.8"]
    );
    // A plain UDP query, asked twice: the second answer comes from the answer cache.
    let www = query_bytes("www.foobar.com.", RecordType::A, Some(1232));
    let address = |a: [u8; 4]| {
        s.udp_raw(&www)
            .is_some_and(|reply| reply.windows(4).any(|w| w == a))
    };
    assert!(address([8, 8, 8, 8]) && address([8, 8, 8, 8]));
    // Change foobar.com, break example.test, add a new zone.
    let foobar = std::fs::read_to_string(dir.join("foobar.com.zone")).unwrap();
    std::fs::write(
        dir.join("foobar.com.zone"),
        foobar.replace("www     IN A    8.8.8.8", "www     IN A    192.0.2.8"),
    )
    .unwrap();
    let example = std::fs::read_to_string(dir.join("example.test.zone")).unwrap();
    std::fs::write(
        dir.join("example.test.zone"),
        example.replace("web\tIN A 192.0.2.80", "web\tIN A 192.0.2.800"),
    )
    .unwrap();
    std::fs::write(
        dir.join("new.test.zone"),
        "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.9\n",
    )
    .unwrap();
    s.hangup();
    assert!(
        wait_for(|| s.dig("www.foobar.com A").answer == vec!["www.foobar.com. 3600 IN A 192.0.2.8"]),
        "{}",
        s.log()
    );
    // The cached answer went with the old zone.
    assert!(address([192, 0, 2, 8]) && !address([8, 8, 8, 8]));
    // The broken zone keeps serving its previous version; the new one is served.
    assert_eq!(
        s.dig("web.example.test A").answer,
        vec!["web.example.test. 3600 IN A 192.0.2.80"]
    );
    assert_eq!(
        s.dig("ns.new.test A").answer,
        vec!["ns.new.test. 60 IN A 192.0.2.9"]
    );
    let log = s.log();
    let line = example
        .lines()
        .position(|l| l.starts_with("web\t"))
        .unwrap()
        + 1;
    assert!(
        log.contains(&format!("example.test.zone:{line}: ")),
        "{log}"
    );
    assert!(log.contains("still serving the previous version"), "{log}");
    // Removing a zone file stops serving it.
    std::fs::remove_file(dir.join("new.test.zone")).unwrap();
    s.hangup();
    assert!(
        wait_for(|| s.dig("ns.new.test A").status == "REFUSED"),
        "{}",
        s.log()
    );
}

#[test]
fn startup_with_a_broken_zone_serves_the_others() {
    let tmp = temp_dir("broken-start");
    let dir = tmp.path();
    support::copy_dir(&data().join("broken"), dir);
    std::fs::copy(
        data().join("zones/foobar.com.zone"),
        dir.join("foobar.com.zone"),
    )
    .unwrap();
    let s = Server::start(dir, &[]);
    assert_eq!(
        s.dig("www.foobar.com A").answer,
        vec!["www.foobar.com. 3600 IN A 8.8.8.8"]
    );
    assert_eq!(s.dig("ok.bad.test A").status, "REFUSED");
    assert!(s.log().contains("bad.test.zone:7: "), "{}", s.log());
}

#[test]
fn the_query_log_is_off_by_default_and_on_with_a_flag() {
    let s = server();
    s.dig("web.example.test A");
    assert!(!s.log().contains("web.example.test"), "{}", s.log());
    let s = Server::start(&data().join("zones"), &["--query-log"]);
    s.dig("web.example.test A");
    assert!(
        wait_for(|| s.log().contains("web.example.test")),
        "{}",
        s.log()
    );
}

#[test]
fn a_burst_of_udp_queries_is_answered_in_full() {
    // Datagrams are taken and answered in batches (recvmmsg/sendmmsg): 200 queries sent at
    // once, half of them for a name that does not exist, each get their own answer once.
    let s = server();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut waiting = std::collections::BTreeMap::new();
    for id in 0..200u16 {
        let name = if id % 2 == 0 {
            "www.foobar.com."
        } else {
            "nowhere.foobar.com."
        };
        let mut q = query_bytes(name, RecordType::A, Some(1232));
        q[..2].copy_from_slice(&id.to_be_bytes());
        socket.send_to(&q, s.addr()).unwrap();
        waiting.insert(id, name);
    }
    let mut buf = [0u8; 4096];
    while let Ok(len) = socket.recv(&mut buf) {
        let reply = Message::from_vec(&buf[..len]).unwrap();
        let name = waiting
            .remove(&reply.metadata.id)
            .unwrap_or_else(|| panic!("an answer to {} twice or never asked", reply.metadata.id));
        assert_eq!(reply.queries[0].name.to_string(), name);
        let want = if name.starts_with("www") {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        assert_eq!(reply.metadata.response_code, want);
        if waiting.is_empty() {
            break;
        }
    }
    assert!(waiting.is_empty(), "unanswered: {:?}", waiting.keys());
}

#[test]
fn udp_clients_asking_at_once_each_get_their_own_answers() {
    // The UDP threads (one per SO_REUSEPORT socket) take datagrams of several clients in one
    // recvmmsg batch and answer them with one sendmmsg: four clients ask at once, in three
    // waves of 25 queries each; every answer reaches the client that asked, with its ID and
    // its question, once.
    let s = server();
    let addr = s.addr();
    let clients: Vec<_> = (0..4u16)
        .map(|c| {
            std::thread::spawn(move || {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut unanswered = Vec::new();
                for wave in 0..3u16 {
                    let mut waiting = std::collections::BTreeMap::new();
                    for i in 0..25u16 {
                        let id = c * 1000 + wave * 100 + i;
                        let name = if i % 2 == 0 {
                            "www.foobar.com."
                        } else {
                            "nowhere.foobar.com."
                        };
                        let mut q = query_bytes(name, RecordType::A, Some(1232));
                        q[..2].copy_from_slice(&id.to_be_bytes());
                        socket.send_to(&q, addr).unwrap();
                        waiting.insert(id, name);
                    }
                    let mut buf = [0u8; 4096];
                    while !waiting.is_empty() {
                        let Ok(len) = socket.recv(&mut buf) else {
                            break;
                        };
                        let reply = Message::from_vec(&buf[..len]).unwrap();
                        let name = waiting.remove(&reply.metadata.id).unwrap_or_else(|| {
                            panic!(
                                "client {c}: an answer to {} twice, or another's",
                                reply.metadata.id
                            )
                        });
                        assert_eq!(reply.queries[0].name.to_string(), name);
                    }
                    unanswered.extend(waiting.into_keys());
                }
                unanswered
            })
        })
        .collect();
    for (c, client) in clients.into_iter().enumerate() {
        let unanswered = client.join().unwrap();
        assert!(
            unanswered.is_empty(),
            "client {c}: unanswered {unanswered:?}"
        );
    }
}

/// `query` framed for TCP: its two-byte length, then the message.
fn framed(query: &[u8]) -> Vec<u8> {
    let mut out = (query.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(query);
    out
}

/// Reads one framed message from `stream` and decodes it.
fn read_framed(stream: &mut std::net::TcpStream) -> Message {
    use std::io::Read;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).unwrap();
    Message::from_vec(&message).unwrap()
}

#[test]
fn pipelined_tcp_queries_in_one_write_are_all_answered_in_order() {
    use std::io::Write;
    let s = server();
    let mut stream = std::net::TcpStream::connect(s.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let names = ["www.foobar.com.", "nowhere.foobar.com.", "foobar.com."];
    let mut all = Vec::new();
    for id in 0..12u16 {
        let mut q = query_bytes(names[usize::from(id) % 3], RecordType::A, None);
        q[..2].copy_from_slice(&(500 + id).to_be_bytes());
        all.extend(framed(&q));
    }
    stream.write_all(&all).unwrap();
    for id in 0..12u16 {
        let reply = read_framed(&mut stream);
        assert_eq!(reply.metadata.id, 500 + id, "answers in the order asked");
        assert_eq!(
            reply.queries[0].name.to_string(),
            names[usize::from(id) % 3]
        );
    }
}

#[test]
fn a_tcp_query_split_across_segments_is_answered() {
    use std::io::Write;
    let s = server();
    let mut stream = std::net::TcpStream::connect(s.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut first = query_bytes("www.foobar.com.", RecordType::A, None);
    first[..2].copy_from_slice(&7u16.to_be_bytes());
    let mut second = query_bytes("foobar.com.", RecordType::A, None);
    second[..2].copy_from_slice(&8u16.to_be_bytes());
    let (first, second) = (framed(&first), framed(&second));
    // The first query in three pieces (its length's first byte alone), the last piece with
    // the second query's first byte; then the rest of the second.
    let mut pieces = vec![
        first[..1].to_vec(),
        first[1..6].to_vec(),
        first[6..].to_vec(),
    ];
    pieces[2].push(second[0]);
    pieces.push(second[1..].to_vec());
    for piece in &pieces {
        stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(read_framed(&mut stream).metadata.id, 7);
    let reply = read_framed(&mut stream);
    assert_eq!(reply.metadata.id, 8);
    assert_eq!(reply.answers.len(), 1);
}
