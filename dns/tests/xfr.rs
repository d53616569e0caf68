//! Zone transfers with real peers: onebox-dns as the primary of Debian's Knot, NSD and BIND
//! (NOTIFY, IXFR, AXFR, TSIG, the serial policy), and as the secondary of Knot (NOTIFY in, IXFR
//! in, restart) and of a misbehaving primary written here (a cut transfer, a serial going back,
//! expiry). The peers' logs and answers, and onebox-dns's own log and metrics, say what
//! happened.
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "xfr/peers.rs"]
mod peers;

#[path = "xfr/fake.rs"]
mod fake;

use peers::{BAD_KEY, BAD_SECRET_ONEBOX, KEY, Peer, SECRET, Zone, eventually};
use std::fmt::Write as _;

/// A zone file: `serial`, `www` at `www`, and `extra` lines; `hosts` A records make it large
/// enough that a small change goes by IXFR (and, large, that an AXFR takes several messages).
fn zone_text(serial: u32, www: &str, hosts: usize, extra: &str) -> String {
    let mut text = format!(
        "$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n\
         www A {www}\n{extra}"
    );
    for i in 0..hosts {
        let _ = writeln!(text, "host{i} A 198.51.100.{}", i % 250 + 1);
    }
    text
}

/// The lines of `log` that contain every one of `parts`.
fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// `GET /metrics` from onebox-dns's metrics listener.
fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    text
}

/// The value of the metric line starting with `name` (labels included), 0 if absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn knot_nsd_and_bind_follow_a_onebox_primary_by_notify_and_ixfr_with_and_without_tsig() {
    let dir = onebox_testkit::temp_dir("xfr-primary");
    let dir = dir.path();
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    // plain.test: no TSIG; keyed.test: only with the key, large enough for several messages;
    // wrongkey.test: the peers have another secret for bad-key.
    let write_zones = |serial: u32, www: &str| {
        std::fs::write(
            zones.join("plain.test.zone"),
            zone_text(serial, www, 60, ""),
        )
        .unwrap();
        std::fs::write(
            zones.join("keyed.test.zone"),
            zone_text(serial, www, 2000, ""),
        )
        .unwrap();
    };
    write_zones(1, "192.0.2.10");
    std::fs::write(
        zones.join("wrongkey.test.zone"),
        zone_text(1, "192.0.2.10", 10, ""),
    )
    .unwrap();
    std::fs::write(dir.join("xfr.key"), format!("{SECRET}\n")).unwrap();

    let port = onebox_testkit::free_port();
    let metrics_port = onebox_testkit::free_port();
    let secondary_dirs: Vec<_> = ["knot", "nsd", "bind"]
        .iter()
        .map(|n| onebox_testkit::temp_dir(&format!("xfr-{n}")))
        .collect();
    let peer_zones = [
        Zone {
            name: "plain.test",
            key: None,
        },
        Zone {
            name: "keyed.test",
            key: Some(KEY),
        },
        Zone {
            name: "wrongkey.test",
            key: Some(BAD_KEY),
        },
    ];
    // The peers' ports are needed in onebox-dns's site file, and onebox-dns's in theirs: the
    // peers start first (they retry until their primary answers).
    let knot = peers::knot_secondary(secondary_dirs[0].path(), port, &peer_zones);
    let nsd = peers::nsd_secondary(secondary_dirs[1].path(), port, &peer_zones[..2]);
    let bind = peers::bind_secondary(secondary_dirs[2].path(), port, &peer_zones[..2]);
    let targets = |key: Option<&str>, all: bool| {
        let peers: Vec<&Peer> = if all {
            vec![&knot, &nsd, &bind]
        } else {
            vec![&knot]
        };
        let key = key.map_or(String::new(), |k| format!(" key {k}"));
        peers
            .iter()
            .map(|p| format!("\"127.0.0.1:{}{key}\"", p.port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let site = format!(
        "[site]\ndomain = \"plain.test\"\n[dns]\nlisten = [\"127.0.0.1:{port}\"]\nzones = \"zones\"\n\
         state_dir = \"state\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
         [[dns.tsig]]\nname = \"{KEY}\"\nsecret_file = \"xfr.key\"\n\
         [[dns.tsig]]\nname = \"{BAD_KEY}\"\nsecret = \"{BAD_SECRET_ONEBOX}\"\n\
         [[dns.zone]]\nname = \"plain.test\"\nallow_transfer = [\"127.0.0.0/8\"]\nnotify = [{}]\n\
         [[dns.zone]]\nname = \"keyed.test\"\nallow_transfer = [\"key {KEY}\"]\nnotify = [{}]\n\
         [[dns.zone]]\nname = \"wrongkey.test\"\nallow_transfer = [\"127.0.0.0/8 key {BAD_KEY}\"]\n\
         notify = [{}]\n",
        targets(None, true),
        targets(Some(KEY), true),
        targets(Some(BAD_KEY), false),
    );
    let mut onebox = peers::onebox(dir, port, &site);
    let mut peers = [knot, nsd, bind];

    // Serial 1 reaches every peer (their first transfer: AXFR).
    for peer in &mut peers {
        for zone in ["plain.test", "keyed.test"] {
            let p = peer.port;
            peer.wait(60, &format!("to serve {zone} serial 1"), || {
                peers::serial(p, zone) == Some(1)
            });
        }
    }
    // A change on onebox-dns: NOTIFY, then IXFR, to each peer.
    write_zones(2, "192.0.2.20");
    onebox.hangup();
    for peer in &mut peers {
        for zone in ["plain.test", "keyed.test"] {
            let p = peer.port;
            peer.wait(30, &format!("to serve {zone} serial 2 by NOTIFY"), || {
                peers::dig(p, &format!("+short www.{zone} A")).trim() == "192.0.2.20"
            });
        }
    }
    let log = onebox.log();
    for (peer, source) in peers.iter().zip(["127.0.0.2", "127.0.0.3", "127.0.0.4"]) {
        for zone in ["plain.test.", "keyed.test."] {
            let ixfr = lines_with(
                &log,
                &[
                    &format!("IXFR of {zone} to {source}:"),
                    "the differences of serial 2",
                ],
            );
            assert!(
                !ixfr.is_empty(),
                "{} got no IXFR of {zone} serial 2; onebox-dns's log:\n{log}\n{}'s log:\n{}",
                peer.name,
                peer.name,
                peer.log()
            );
            let acked = lines_with(
                &log,
                &[
                    &format!("zone {zone}: NOTIFY of serial 2 to 127.0.0.1:{}", peer.port),
                    "acknowledged",
                ],
            );
            assert!(
                !acked.is_empty(),
                "no NOTIFY acknowledged by {}:\n{log}",
                peer.name
            );
        }
        // keyed.test was signed: every message of its first AXFR (several) and the IXFR.
        assert!(
            !lines_with(&log, &[&format!("to {source}:"), &format!("(key {KEY}.)")]).is_empty(),
            "{log}"
        );
    }
    // The peers' own words.
    let knot_log = peers[0].log();
    assert!(
        !lines_with(&knot_log, &["[keyed.test.] IXFR, incoming", "finished"]).is_empty(),
        "{knot_log}"
    );
    let bind_log = peers[2].log();
    assert!(
        !lines_with(&bind_log, &["keyed.test", "Transfer completed"]).is_empty(),
        "{bind_log}"
    );

    // The wrong key, both ways: Knot's queries signed with its bad-key are refused (BADSIG),
    // and so is onebox-dns's NOTIFY signed with ours; Knot never gets the zone.
    assert!(
        eventually(20, || !lines_with(
            &onebox.log(),
            &["NOTIFY of serial 1 to", "wrongkey.test", "failed"]
        )
        .is_empty()),
        "{}",
        onebox.log()
    );
    assert_ne!(peers[0].serial("wrongkey.test"), Some(1));
    // And dig with a wrong secret, an unknown key, no key.
    let wrong = peers::dig(
        port,
        &format!("-y hmac-sha256:{KEY}:{BAD_SECRET_ONEBOX} keyed.test AXFR"),
    );
    assert!(
        wrong.contains("BADSIG") || wrong.contains("tsig"),
        "{wrong}"
    );
    let unknown = peers::dig(
        port,
        &format!("-y hmac-sha256:other-key:{SECRET} keyed.test AXFR"),
    );
    assert!(
        unknown.contains("BADKEY") || unknown.contains("tsig"),
        "{unknown}"
    );
    let unsigned = peers::dig(port, "keyed.test AXFR");
    assert!(unsigned.contains("Transfer failed"), "{unsigned}");
    let signed = peers::dig(
        port,
        &format!("-y hmac-sha256:{KEY}:{SECRET} keyed.test AXFR"),
    );
    assert!(
        signed.contains("www.keyed.test.") && !signed.contains("failed"),
        "{signed}"
    );

    // The serial policy: a changed zone with the same serial is refused, loudly; the previous
    // version keeps being served.
    std::fs::write(
        zones.join("plain.test.zone"),
        zone_text(2, "192.0.2.99", 60, ""),
    )
    .unwrap();
    onebox.hangup();
    assert!(
        eventually(10, || !lines_with(
            &onebox.log(),
            &[
                "plain.test",
                "changed but its SOA serial 2 is not larger than 2"
            ]
        )
        .is_empty()),
        "{}",
        onebox.log()
    );
    assert_eq!(
        peers::dig(port, "+short www.plain.test A").trim(),
        "192.0.2.20"
    );

    // The reload logs the refused serial while it runs and counts itself when it ends.
    assert!(
        eventually(10, || metric(
            &metrics(metrics_port),
            "onebox_dns_reloads_total{result=\"failed\"}"
        ) >= 1.0),
        "{}",
        metrics(metrics_port)
    );
    let m = metrics(metrics_port);
    assert!(
        metric(&m, "onebox_dns_notify_total{result=\"acked\"}") >= 6.0,
        "{m}"
    );
    assert!(
        metric(&m, "onebox_dns_notify_total{result=\"failed\"}") >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "onebox_dns_transfers_total{direction=\"out\",type=\"IXFR\",result=\"ok\"}"
        ) >= 6.0,
        "{m}"
    );
    assert!(
        metric(&m, "onebox_dns_tsig_failures_total{error=\"BADSIG\"}") >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "onebox_dns_tsig_failures_total{error=\"BADKEY\"}") >= 1.0,
        "{m}"
    );
    // The secrets are in no log.
    let log = onebox.log();
    assert!(!log.contains(SECRET) && !log.contains(BAD_SECRET_ONEBOX));
}

#[test]
fn onebox_follows_a_knot_primary_and_keeps_its_copy_across_a_restart() {
    let dir = onebox_testkit::temp_dir("xfr-secondary");
    let dir = dir.path();
    let knot_dir = dir.join("knot");
    std::fs::create_dir_all(&knot_dir).unwrap();
    std::fs::write(
        knot_dir.join("sec.test.zone"),
        zone_text(1, "192.0.2.10", 60, ""),
    )
    .unwrap();
    std::fs::write(
        knot_dir.join("wrongsec.test.zone"),
        zone_text(1, "192.0.2.10", 5, ""),
    )
    .unwrap();
    let port = onebox_testkit::free_port();
    let mut knot = peers::knot_primary(
        &knot_dir,
        port,
        &[
            Zone {
                name: "sec.test",
                key: Some(KEY),
            },
            Zone {
                name: "wrongsec.test",
                key: Some(BAD_KEY),
            },
        ],
    );
    let site = format!(
        "[site]\ndomain = \"sec.test\"\n[dns]\nlisten = [\"127.0.0.1:{port}\"]\nzones = \"zones\"\n\
         state_dir = \"state\"\n\
         [[dns.tsig]]\nname = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
         [[dns.tsig]]\nname = \"{BAD_KEY}\"\nsecret = \"{BAD_SECRET_ONEBOX}\"\n\
         [[dns.zone]]\nname = \"sec.test\"\nprimary = \"127.0.0.1:{} key {KEY}\"\n",
        knot.port
    );
    // wrongsec.test comes with a reload, below.
    let with_wrongsec = format!(
        "{site}[[dns.zone]]\nname = \"wrongsec.test\"\nprimary = \"127.0.0.1:{} key {BAD_KEY}\"\n",
        knot.port
    );
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    let mut onebox = peers::onebox(dir, port, &site);
    let p = onebox.port;
    onebox.wait(20, "to serve sec.test serial 1", || {
        peers::serial(p, "sec.test") == Some(1)
    });
    assert!(!lines_with(&onebox.log(), &["zone sec.test.: AXFR from", "serial 1"]).is_empty());

    // A change on Knot: its NOTIFY, then IXFR.
    std::fs::write(
        knot_dir.join("sec.test.zone"),
        zone_text(2, "192.0.2.20", 60, ""),
    )
    .unwrap();
    knot.hangup();
    onebox.wait(30, "to serve sec.test serial 2", || {
        peers::dig(p, "+short www.sec.test A").trim() == "192.0.2.20"
    });
    let log = onebox.log();
    assert!(
        !lines_with(&log, &["zone sec.test.: NOTIFY from its primary"]).is_empty(),
        "{log}"
    );
    assert!(
        !lines_with(&log, &["zone sec.test.: IXFR from", "serial 1 -> 2"]).is_empty(),
        "{log}"
    );
    let knot_log = knot.log();
    assert!(
        !lines_with(&knot_log, &["[sec.test.] IXFR, outgoing", "1 -> 2"]).is_empty(),
        "{knot_log}"
    );

    // A secondary zone added by a reload (the settings' change wakes the secondaries'
    // supervisor), with the wrong key: Knot refuses our SOA query and transfer; nothing is
    // served for the zone (SERVFAIL: a secondary zone with no copy).
    assert_eq!(peers::status(port, "wrongsec.test SOA"), "REFUSED");
    std::fs::write(dir.join("site.toml"), &with_wrongsec).unwrap();
    onebox.hangup();
    onebox.wait(10, "to take wrongsec.test as a secondary zone", || {
        peers::status(port, "wrongsec.test SOA") == "SERVFAIL"
    });
    assert!(
        eventually(10, || !lines_with(
            &onebox.log(),
            &["zone wrongsec.test.: refresh failed"]
        )
        .is_empty()),
        "{}",
        onebox.log()
    );
    // ... and taken out by the next.
    std::fs::write(dir.join("site.toml"), &site).unwrap();
    onebox.hangup();
    onebox.wait(10, "to drop wrongsec.test", || {
        peers::status(port, "wrongsec.test SOA") == "REFUSED"
    });
    assert!(
        !lines_with(
            &onebox.log(),
            &["zone wrongsec.test.: no longer a secondary zone"]
        )
        .is_empty(),
        "{}",
        onebox.log()
    );
    // NOTIFY from a stranger, or unsigned from the primary's address: refused.
    assert_eq!(
        fake::notify(port, "sec.test", 3, [127, 0, 0, 2], None),
        Some(5)
    );
    assert_eq!(
        fake::notify(port, "sec.test", 3, [127, 0, 0, 1], None),
        Some(5)
    );

    // A restart with the primary gone: the copy in the state directory is served at once.
    drop(knot);
    drop(onebox);
    let onebox = peers::onebox(dir, port, &site);
    assert!(
        eventually(5, || peers::dig(port, "+short www.sec.test A").trim()
            == "192.0.2.20"),
        "{}",
        onebox.log()
    );
    assert!(
        !lines_with(
            &onebox.log(),
            &["zone sec.test.: serving the copy in", "serial 2"]
        )
        .is_empty(),
        "{}",
        onebox.log()
    );
}

#[test]
fn a_secondary_keeps_its_last_good_copy_through_bad_transfers_until_it_expires() {
    let dir = onebox_testkit::temp_dir("xfr-negative");
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    let primary = fake::Primary::start("neg.test");
    let port = onebox_testkit::free_port();
    let site = format!(
        "[site]\ndomain = \"neg.test\"\n[dns]\nlisten = [\"127.0.0.1:{port}\"]\nzones = \"zones\"\n\
         state_dir = \"state\"\n[[dns.zone]]\nname = \"neg.test\"\nprimary = \"127.0.0.1:{}\"\n",
        primary.port
    );
    primary.set(fake::Mode::Serve(10));
    let mut onebox = peers::onebox(dir, port, &site);
    let p = port;
    onebox.wait(20, "to serve neg.test serial 10", || {
        peers::serial(p, "neg.test") == Some(10)
    });

    // A transfer cut in the middle: logged, serial 10 still served.
    primary.set(fake::Mode::Cut(11));
    assert_eq!(
        fake::notify(port, "neg.test", 11, [127, 0, 0, 1], None),
        Some(0)
    );
    assert!(
        eventually(20, || !lines_with(
            &onebox.log(),
            &["neg.test", "closed in the middle"]
        )
        .is_empty()),
        "{}",
        onebox.log()
    );
    assert_eq!(peers::serial(port, "neg.test"), Some(10));

    // A serial that went back: logged, ours kept.
    primary.set(fake::Mode::Serve(9));
    assert_eq!(
        fake::notify(port, "neg.test", 9, [127, 0, 0, 1], None),
        Some(0)
    );
    assert!(
        eventually(20, || !lines_with(
            &onebox.log(),
            &["neg.test", "serial 9, not newer than ours (10)"]
        )
        .is_empty()),
        "{}",
        onebox.log()
    );
    assert_eq!(peers::serial(port, "neg.test"), Some(10));

    // The primary goes silent: after SOA expire (8 s since it last answered), SERVFAIL.
    primary.set(fake::Mode::Silent);
    onebox.wait(30, "to expire neg.test", || {
        peers::status(port, "neg.test SOA") == "SERVFAIL"
    });
    assert!(!lines_with(&onebox.log(), &["zone neg.test.: expired"]).is_empty());
    // It comes back: the zone is served again.
    primary.set(fake::Mode::Serve(12));
    onebox.wait(30, "to serve neg.test serial 12", || {
        peers::serial(p, "neg.test") == Some(12)
    });
}
