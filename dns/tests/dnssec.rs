//! DNSSEC, checked by tools nobody here wrote. onebox-dns signs the differential suite's rich
//! zone (dns/tests/diff/zones/onebox.test.zone, plus a signed delegation) and the project's
//! foobar.com zone, inside a network namespace with only loopback (a resolver primes the root
//! at start: there it reaches nothing). Then:
//!
//! - Debian's `unbound`, a validating resolver with the trust anchors `onebox-dns ds` prints
//!   and a stub to onebox-dns, resolves every differential name with the AD bit (positive
//!   answers, CNAME chains, wildcards, NXDOMAIN, NODATA, empty non-terminals, the DS proofs of
//!   a signed and an unsigned delegation);
//! - `ldns-verify-zone` accepts an AXFR of each signed zone;
//! - `dnsviz probe` (authoritative analysis against onebox-dns) and `dnsviz print` with the
//!   trust anchor find every RRset secure and no error or warning;
//! - the keys swapped behind the resolver's back (onebox-dns restarted with new keys, the old
//!   trust anchor kept): unbound answers SERVFAIL;
//! - `dnssec/refresh.rs`: after 30 days of downtime (libfaketime) the first answer already
//!   carries fresh signatures, a running server signs again before expiry, and the DNSSEC
//!   metrics match the served zone;
//! - `dnssec/rollover.rs`: the automatic ZSK rollover and the two-command KSK rollover (CDS and
//!   CDNSKEY move, a resolver trusting the DS from the CDS validates) under a validating
//!   unbound that validates every answer meanwhile; the key-state metrics follow each step.
//!
//! `cargo test --release -p onebox-dns --test dnssec -- --nocapture` (as root: `ip netns`).

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "dnssec/refresh.rs"]
mod refresh;
#[path = "dnssec/rollover.rs"]
mod rollover;
#[path = "dnssec/support.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Netns, ds, onebox_dns, start_unbound};

/// Lines for onebox.test: a signed delegation (a DS at the cut) beside the zone's unsigned one.
const SECURE_DELEGATION: &str = "\nsecure          IN NS    ns.outside.example.\n\
    secure          IN DS    12345 13 2 \
    A7C3F1E2D4B5A69788796A5B4C3D2E1F0A1B2C3D4E5F60718293A4B5C6D7E8F9\n";

/// The zones the validation test signs.
const ZONES: [&str; 2] = ["foobar.com", "onebox.test"];

fn write_site(dir: &Path) -> PathBuf {
    let zones = dir.join("zones");
    fs::create_dir_all(&zones).unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rich = fs::read_to_string(manifest.join("tests/diff/zones/onebox.test.zone")).unwrap();
    fs::write(zones.join("onebox.test.zone"), rich + SECURE_DELEGATION).unwrap();
    fs::copy(
        manifest.join("../zones/foobar.com.zone"),
        zones.join("foobar.com.zone"),
    )
    .unwrap();
    let site = dir.join("site.toml");
    let mut text = String::from(
        "[site]\ndomain = \"foobar.com\"\n\n[dns]\nlisten = [\"127.0.0.2:53\"]\n\
         zones = \"zones\"\nstate_dir = \"state\"\n",
    );
    for zone in ["onebox.test", "foobar.com"] {
        text += &format!(
            "\n[[dns.zone]]\nname = \"{zone}\"\ndnssec = true\nallow_transfer = [\"127.0.0.0/8\"]\n"
        );
    }
    fs::write(&site, text).unwrap();
    site
}

fn start_onebox(ns: &Netns, site: &Path, dir: &Path, log: &str) -> onebox_testkit::ChildGuard {
    support::start_onebox(ns, site, dir, log, "foobar.com")
}

/// Every differential name in onebox.test (dns/tests/diff/queries.rs) and foobar.com, with the
/// type to ask. Left out: names whose answer leads out of the served zones or into the
/// delegated child (out, x.wcout, the child's names: nothing answers for them in the
/// namespace) and the CNAME loop; the delegations are asked for their DS instead.
const QUESTIONS: &[(&str, &str)] = &[
    ("onebox.test", "SOA"),
    ("onebox.test", "DNSKEY"),
    ("onebox.test", "CDS"),
    ("onebox.test", "MX"),
    ("www.onebox.test", "A"),
    ("www.onebox.test", "TXT"),
    ("ns1.onebox.test", "AAAA"),
    ("ns2.onebox.test", "A"),
    ("mail1.onebox.test", "A"),
    ("mail2.onebox.test", "AAAA"),
    ("mailalias.onebox.test", "A"),
    ("_sip._tcp.onebox.test", "SRV"),
    ("_tcp.onebox.test", "A"),
    ("sip.onebox.test", "A"),
    ("chain1.onebox.test", "A"),
    ("chain3.onebox.test", "AAAA"),
    ("tofoobar.onebox.test", "A"),
    ("dangling.onebox.test", "A"),
    ("tonodata.onebox.test", "AAAA"),
    ("child.onebox.test", "DS"),
    ("secure.onebox.test", "DS"),
    ("anything.wild.onebox.test", "A"),
    ("anything.wild.onebox.test", "AAAA"),
    ("a.b.wild.onebox.test", "TXT"),
    ("*.wild.onebox.test", "MX"),
    ("wild.onebox.test", "A"),
    ("exists.wild.onebox.test", "A"),
    ("exists.wild.onebox.test", "TXT"),
    ("sub.exists.wild.onebox.test", "A"),
    ("ent.wild.onebox.test", "A"),
    ("x.ent.wild.onebox.test", "A"),
    ("x.wcname.onebox.test", "A"),
    ("ent.onebox.test", "A"),
    ("b.ent.onebox.test", "A"),
    ("a.b.ent.onebox.test", "A"),
    ("nx.b.ent.onebox.test", "A"),
    ("big.onebox.test", "TXT"),
    ("mixed.onebox.test", "A"),
    ("MIXED.ONEBOX.TEST", "TXT"),
    ("wWw.OnEbOx.TeSt", "A"),
    ("ptr.onebox.test", "PTR"),
    ("hinfo.onebox.test", "HINFO"),
    ("nonexistent.onebox.test", "A"),
    ("deep.nonexistent.onebox.test", "A"),
    ("foobar.com", "A"),
    ("foobar.com", "MX"),
    ("foobar.com", "TXT"),
    ("foobar.com", "CAA"),
    ("www.foobar.com", "A"),
    ("www.foobar.com", "AAAA"),
    ("ns1.foobar.com", "A"),
    ("_dmarc.foobar.com", "TXT"),
    ("nx.foobar.com", "A"),
];

/// Asks unbound every question in one `dig -f` run; returns (question, status, flags).
fn resolve_all(ns: &Netns, dir: &Path) -> Vec<(String, String, String)> {
    let batch: String = QUESTIONS
        .iter()
        .map(|(name, rtype)| {
            format!("@127.0.0.1 +tries=2 +time=3 +noall +comments {name} {rtype}\n")
        })
        .collect();
    let file = dir.join("questions.txt");
    fs::write(&file, batch).unwrap();
    let out = ns.run("dig", &["-f", file.to_str().unwrap()]);
    let mut results = Vec::new();
    let mut status = String::new();
    for line in out.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            status = rest.split(',').next().unwrap_or("").to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or("").to_string();
            let (name, rtype) = QUESTIONS[results.len().min(QUESTIONS.len() - 1)];
            results.push((format!("{name} {rtype}"), status.clone(), flags));
        }
    }
    assert_eq!(
        results.len(),
        QUESTIONS.len(),
        "dig answered {} of {} questions:\n{out}",
        results.len(),
        QUESTIONS.len()
    );
    results
}

#[test]
fn a_validating_resolver_and_zone_checkers_accept_the_signed_zones() {
    let ns = Netns::new("dnssec");
    let tmp = onebox_testkit::temp_dir("dnssec");
    let dir = tmp.path();
    let site = write_site(dir);
    let onebox = start_onebox(&ns, &site, dir, "onebox.log");
    let mut anchors = ds(&site, "onebox.test");
    anchors.extend(ds(&site, "foobar.com"));
    assert_eq!(anchors.len(), 2, "one DS per zone: {anchors:?}");

    // The key state is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("state/dnssec")), 0o700);
    assert_eq!(mode(&dir.join("state/dnssec/onebox.test.toml")), 0o600);

    // A validating resolver: every answer authenticated (AD).
    let unbound = start_unbound(&ns, dir, &anchors, &ZONES, "unbound.log");
    let results = resolve_all(&ns, dir);
    let bad: Vec<String> = results
        .iter()
        .filter(|(_, status, flags)| {
            !(status == "NOERROR" || status == "NXDOMAIN")
                || !flags.split_whitespace().any(|f| f == "ad")
        })
        .map(|(q, s, f)| format!("{q}: {s} [{f}]"))
        .collect();
    assert!(
        bad.is_empty(),
        "unbound did not validate {} of {} answers:\n{}\nunbound's log:\n{}",
        bad.len(),
        results.len(),
        bad.join("\n"),
        unbound.log_tail()
    );
    let nxdomain = results.iter().filter(|r| r.1 == "NXDOMAIN").count();
    assert!(nxdomain >= 4, "the NXDOMAIN cases are in: {results:?}");
    println!(
        "unbound: {} answers validated (AD), {nxdomain} of them NXDOMAIN",
        results.len()
    );

    // ldns-verify-zone on an AXFR of each signed zone.
    for zone in ["onebox.test", "foobar.com"] {
        let axfr = ns.run("dig", &["@127.0.0.2", "+nocmd", "+nostats", zone, "AXFR"]);
        assert!(axfr.contains("RRSIG") && axfr.contains("NSEC"), "{axfr}");
        let file = dir.join(format!("{zone}.axfr"));
        fs::write(&file, &axfr).unwrap();
        let out = Command::new("ldns-verify-zone")
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("Zone is verified and complete"),
            "ldns-verify-zone {zone}: {text}"
        );
        println!("ldns-verify-zone {zone}: {}", text.trim());
    }

    // dnsviz: authoritative analysis against onebox-dns, then its verdict with the anchor.
    let probe = dir.join("probe.json");
    let names = [
        "onebox.test",
        "www.onebox.test",
        "nonexistent.onebox.test",
        "x.wild.onebox.test",
        "ent.onebox.test",
        "chain1.onebox.test",
    ];
    let mut args = vec!["probe", "-A", "-x", "onebox.test+:127.0.0.2", "-o"];
    let probe_arg = probe.to_str().unwrap().to_string();
    args.push(&probe_arg);
    args.extend(names);
    let out = ns.run("dnsviz", &args);
    assert!(probe.exists(), "dnsviz probe wrote nothing: {out}");
    let anchor_file = dir.join("anchor.txt");
    let dnskey: String = Command::new(onebox_dns())
        .arg("--config")
        .arg(&site)
        .args(["ds", "onebox.test"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap()
        .lines()
        .filter(|l| l.contains(" IN DNSKEY "))
        .collect();
    fs::write(&anchor_file, dnskey + "\n").unwrap();
    let printed = Command::new("dnsviz")
        .args([
            "print",
            "-t",
            anchor_file.to_str().unwrap(),
            "-r",
            &probe_arg,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout).into_owned();
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("[!]")
                || l.contains("[?]")
                || l.contains("[-]")
                || l.contains("ERROR")
                || l.contains("WARNING")
        })
        .collect();
    assert!(
        printed.status.success() && text.contains("onebox.test [.]") && problems.is_empty(),
        "dnsviz print found problems:\n{}\n\nfull output:\n{text}\n{}",
        problems.join("\n"),
        String::from_utf8_lossy(&printed.stderr)
    );
    println!(
        "dnsviz: {} lines, every RRset and proof secure, no error or warning",
        text.lines().count()
    );

    // The keys swapped behind the resolver's back: the old trust anchor no longer matches.
    drop(onebox);
    drop(unbound);
    fs::remove_file(dir.join("state/dnssec/onebox.test.toml")).unwrap();
    let _onebox = start_onebox(&ns, &site, dir, "onebox2.log");
    assert_ne!(ds(&site, "onebox.test"), anchors[..1].to_vec(), "new keys");
    let _unbound = start_unbound(&ns, dir, &anchors, &ZONES, "unbound2.log");
    let answer = ns.run(
        "dig",
        &["@127.0.0.1", "+tries=1", "+time=5", "www.onebox.test", "A"],
    );
    assert!(
        answer.contains("status: SERVFAIL"),
        "unbound must refuse a zone signed by keys its anchor does not know:\n{answer}"
    );
    let other = ns.run(
        "dig",
        &["@127.0.0.1", "+tries=1", "+time=5", "www.foobar.com", "A"],
    );
    assert!(
        other.contains("status: NOERROR") && other.contains(" ad"),
        "foobar.com (keys unchanged) still validates:\n{other}"
    );
    println!("keys swapped: unbound answers SERVFAIL for onebox.test, foobar.com still validates");
}
