//! The DNS differential test: Debian's NSD and Knot and onebox-dns serve the same zones
//! (dns/tests/diff/zones/, the project's zones/foobar.com.zone and a generated large zone), get
//! the same 1260 requests (dns/tests/diff/queries.rs) over UDP and TCP, and their replies are
//! compared field by field (dns/tests/diff/compare.rs).
//!
//! The rule: when NSD and Knot agree, onebox-dns must give the same reply; when they disagree
//! (RFC-permitted style, e.g. NSD adds the apex NS set to positive answers, Knot does not),
//! onebox-dns must match one of them entirely. Fields listed in dns/tests/diff/allowlist.toml
//! (each with its RFC reason) are excused; queries in dns/tests/diff/KNOWN_FAILURES.toml are
//! reported and must still fail (the test fails when one gets fixed, so the entry is removed).
//! The test then proves it can fail: a second onebox-dns serving a zone with two wrong addresses
//! (www, and ns2 which appears as additional data) must be caught.
//!
//! The signed run (`onebox_dns_signs_like_knot`): Knot and onebox-dns each sign the same zones
//! (algorithm 13, NSEC) and get 1317 DO-bit requests (`queries::signed`); onebox-dns must match
//! Knot in everything but each signer's own keys, signatures, times and serial
//! (`compare::structure`), so which RRsets carry RRSIGs, which NSEC records prove each denial
//! and the NSEC chain itself are compared. See dns/tests/diff/README.md.
//!
//! Run: `cargo test --release -p onebox-dns --test differential -- --nocapture`; the full
//! per-query report goes to target/tmp/dns-differential-report.txt.

// A test fails by panicking with a message.
#![allow(clippy::panic)]

mod diff;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use diff::compare::{Fields, cell, differing, glob, normalise_with};
use diff::lists::{Allow, KnownFailure};
use diff::queries::Case;
use diff::servers::{
    Server, TempDir, Zone, start_knot, start_knot_signed, start_nsd, start_onebox,
    start_onebox_signed,
};
use diff::transport::exchange;

/// The zones every server gets, with their transfer permission (127.0.0.1 or nobody).
fn zones() -> Vec<Zone> {
    let z = |name: &str, transfer| Zone {
        name: name.to_string(),
        file: format!("{name}.zone"),
        transfer,
    };
    vec![
        z("onebox.test", true),
        z("foobar.com", false),
        z("big.test", true),
        z("rfc3597.test", false),
    ]
}

/// Fills `dir` with the zone files: the test zones, the project's foobar.com zone, and big.test
/// (thousands of records, so that AXFR needs many messages).
fn write_zones(dir: &Path) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in fs::read_dir(manifest.join("tests/diff/zones")).expect("read tests/diff/zones") {
        let path = entry.expect("zone directory entry").path();
        if path.extension().is_some_and(|e| e == "zone") {
            fs::copy(&path, dir.join(path.file_name().expect("file name"))).expect("copy zone");
        }
    }
    fs::copy(
        manifest.join("../zones/foobar.com.zone"),
        dir.join("foobar.com.zone"),
    )
    .expect("copy zones/foobar.com.zone");
    let mut big = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\n",
    );
    for i in 0..3000 {
        let _ = writeln!(
            big,
            "host{i} IN A 10.{}.{}.{}\nhost{i} IN TXT \"record {i} of the large transfer zone\"",
            i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    fs::write(dir.join("big.test.zone"), big).expect("write big.test.zone");
}

/// Each server's normalised reply to each case, in case order. Eight cases in flight at a time.
fn ask_all(cases: &[Case], servers: &[&Server]) -> Vec<Vec<Fields>> {
    ask_all_with(cases, servers, false)
}

/// [`ask_all`]; with `signed`, DNSSEC records are compared by their structure.
fn ask_all_with(cases: &[Case], servers: &[&Server], signed: bool) -> Vec<Vec<Fields>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Vec<Fields>>>> = Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let packet = case.request.encode();
                    let ask = |srv: &Server| {
                        let reply = exchange(srv.addr, case.transport, &packet, case.transfer);
                        normalise_with(&reply, case.request.id, case.transfer, signed)
                    };
                    let mut replies: Vec<Fields> = servers.iter().map(|srv| ask(srv)).collect();
                    // A UDP datagram may be lost on a loaded machine: when one server said
                    // nothing but another answered, ask the silent one once more.
                    let someone_answered = replies.iter().any(|r| r["reply"] != "none");
                    for (reply, srv) in replies.iter_mut().zip(servers) {
                        if someone_answered && reply["reply"] == "none" {
                            *reply = ask(srv);
                        }
                    }
                    results.lock().expect("results lock")[i] = Some(replies);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every case answered"))
        .collect()
}

/// How onebox-dns fared on one query.
enum Verdict {
    /// Matched; says which peer(s) and which allowlisted fields were excused.
    Pass {
        matched: String,
        excused: Vec<String>,
    },
    /// Matched no peer; the differing fields against each.
    Fail { fields: Vec<&'static str> },
}

fn judge(
    label: &str,
    nsd: &Fields,
    knot: &Fields,
    onebox: &Fields,
    allow: &[Allow],
    used: &mut [bool],
) -> Verdict {
    let allowed = |f: &str| {
        allow
            .iter()
            .position(|a| a.field == f && glob(&a.query, label))
    };
    let to_nsd = differing(onebox, nsd);
    let to_knot = differing(onebox, knot);
    let excusable = |d: &[&'static str]| d.iter().all(|f| allowed(f).is_some());
    let (matched, excused) = if to_nsd.is_empty() && to_knot.is_empty() {
        ("nsd+knot", Vec::new())
    } else if to_nsd.is_empty() {
        ("nsd", Vec::new())
    } else if to_knot.is_empty() {
        ("knot", Vec::new())
    } else if excusable(&to_nsd) {
        ("nsd", to_nsd)
    } else if excusable(&to_knot) {
        ("knot", to_knot)
    } else {
        let mut fields: Vec<&'static str> = to_nsd
            .iter()
            .chain(&to_knot)
            .copied()
            .filter(|f| allowed(f).is_none())
            .collect();
        fields.sort();
        fields.dedup();
        return Verdict::Fail { fields };
    };
    for f in &excused {
        for (i, a) in allow.iter().enumerate() {
            if a.field == *f && glob(&a.query, label) {
                used[i] = true;
            }
        }
    }
    Verdict::Pass {
        matched: matched.to_string(),
        excused: excused.iter().map(|f| f.to_string()).collect(),
    }
}

/// A text table of the differing fields of one query.
fn table(
    label: &str,
    fields: &[&'static str],
    nsd: &Fields,
    knot: &Fields,
    onebox: &Fields,
) -> String {
    table_of(label, fields, &[("nsd", nsd), ("knot", knot)], onebox)
}

/// A text table of the fields of one query where onebox-dns and the `peers` differ, one column
/// per peer and one for onebox-dns.
fn table_of(
    label: &str,
    fields: &[&'static str],
    peers: &[(&str, &Fields)],
    onebox: &Fields,
) -> String {
    let mut header = vec!["field".to_string()];
    header.extend(peers.iter().map(|(name, _)| name.to_string()));
    header.push("onebox-dns".into());
    let mut rows: Vec<Vec<String>> = vec![header];
    let mut all: Vec<&'static str> = peers
        .iter()
        .flat_map(|(_, p)| differing(p, onebox))
        .collect();
    all.extend(fields);
    all.sort();
    all.dedup();
    for f in all {
        let mut row = vec![f.to_string()];
        row.extend(peers.iter().map(|(_, p)| cell(p.get(f), onebox.get(f))));
        row.push(cell(onebox.get(f), peers[0].1.get(f)));
        rows.push(row);
    }
    let width = |i: usize| {
        rows.iter()
            .flat_map(|r| r[i].lines().map(|l| l.chars().count()))
            .max()
            .unwrap_or(0)
            .min(60)
    };
    let w: Vec<usize> = (0..rows[0].len()).map(width).collect();
    let mut out = format!("── {label}\n");
    for (n, row) in rows.iter().enumerate() {
        let cols: Vec<Vec<&str>> = row.iter().map(|c| c.lines().collect()).collect();
        let height = cols.iter().map(|c| c.len()).max().unwrap_or(1).max(1);
        for line in 0..height {
            let mut parts = Vec::new();
            for (i, c) in cols.iter().enumerate() {
                let text: String = c
                    .get(line)
                    .copied()
                    .unwrap_or("")
                    .chars()
                    .take(60)
                    .collect();
                parts.push(format!("{text:<width$}", width = w[i]));
            }
            out += &format!("   {}\n", parts.join(" │ ").trim_end());
        }
        if n == 0 {
            let rule: Vec<String> = w.iter().map(|&x| "─".repeat(x)).collect();
            out += &format!("   {}\n", rule.join("─┼─"));
        }
    }
    out
}

/// Outcome of a whole run.
struct Run {
    failures: Vec<String>,
    report: String,
    summary: String,
    failed_labels: Vec<String>,
}

fn compare_run(
    cases: &[Case],
    replies: &[Vec<Fields>],
    allow: &[Allow],
    known: &[KnownFailure],
    check_lists: bool,
) -> Run {
    let mut used = vec![false; allow.len()];
    let mut known_hit = vec![false; known.len()];
    let mut failures = Vec::new();
    let mut failed_labels = Vec::new();
    let mut known_report: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut report = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut agree = 0;
    for (case, r) in cases.iter().zip(replies) {
        let (nsd, knot, onebox) = (&r[0], &r[1], &r[2]);
        let peers_agree = differing(nsd, knot).is_empty();
        if peers_agree {
            agree += 1;
        }
        let verdict = judge(&case.label, nsd, knot, onebox, allow, &mut used);
        let known_idx = known
            .iter()
            .position(|k| k.queries.iter().any(|q| glob(q, &case.label)));
        match (&verdict, known_idx) {
            (Verdict::Pass { matched, excused }, None) => {
                *counts.entry(format!("matched {matched}")).or_default() += 1;
                let _ = write!(report, "ok    {:<10} {}", matched, case.label);
                if !excused.is_empty() {
                    let _ = write!(report, "  (allowlisted: {})", excused.join(", "));
                    *counts.entry("used the allowlist".into()).or_default() += 1;
                }
                report.push('\n');
                if !peers_agree {
                    report += &table(&case.label, &[], nsd, knot, onebox);
                }
            }
            (Verdict::Pass { matched, .. }, Some(k)) => {
                known_hit[k] = true;
                failures.push(format!(
                    "── {}\n   now matches {matched}, but KNOWN_FAILURES.toml lists it \
                     under \"{}\": remove it from there\n",
                    case.label, known[k].what
                ));
            }
            (Verdict::Fail { fields }, k) => {
                let t = table(&case.label, fields, nsd, knot, onebox);
                let _ = writeln!(report, "FAIL  {:<10} {}", "-", case.label);
                report += &t;
                failed_labels.push(case.label.clone());
                match k {
                    Some(k) => {
                        known_hit[k] = true;
                        *counts.entry("known failures".into()).or_default() += 1;
                        known_report.entry(k).or_default().push(case.label.clone());
                    }
                    None => failures.push(t),
                }
            }
        }
    }
    if check_lists {
        for (a, used) in allow.iter().zip(&used) {
            if !used {
                failures.push(format!(
                    "── allowlist entry `{}` / {} excuses nothing any more: remove it\n",
                    a.query, a.field
                ));
            }
        }
        for (k, hit) in known.iter().zip(&known_hit) {
            if !hit {
                failures.push(format!(
                    "── KNOWN_FAILURES entry \"{}\" matches no failing query: remove it\n",
                    k.what
                ));
            }
        }
    }
    let mut summary = format!(
        "{} queries; NSD and Knot agree on {agree}, differ on {}\n",
        cases.len(),
        cases.len() - agree
    );
    for (k, v) in &counts {
        let _ = writeln!(summary, "  {k}: {v}");
    }
    let _ = writeln!(summary, "  new failures: {}", failures.len());
    if !known_report.is_empty() {
        let _ = writeln!(
            summary,
            "KNOWN_FAILURES.toml: {} entries still fail (to be fixed in dns/src):",
            known_report.len()
        );
        for (k, labels) in &known_report {
            let what: String = known[*k].what.chars().take(110).collect();
            let _ = writeln!(
                summary,
                "  - {what}…\n    {} queries: {}",
                labels.len(),
                labels.join(" | ")
            );
        }
    }
    Run {
        failures,
        report,
        summary,
        failed_labels,
    }
}

/// onebox-dns, or with `ONEBOX_DIFF_CANDIDATE=nsd|knot` another instance of that peer in its
/// place: a run that validates the harness itself (peer against peer).
fn start_candidate(zone_dir: &Path, zones: &[Zone], work: &Path) -> Server {
    match std::env::var("ONEBOX_DIFF_CANDIDATE").as_deref() {
        Ok("nsd") => start_nsd(zone_dir, zones, work),
        Ok("knot") => start_knot(zone_dir, zones, work),
        Ok(other) if !other.is_empty() => {
            panic!("ONEBOX_DIFF_CANDIDATE={other}: expected nsd, knot or nothing")
        }
        _ => start_onebox(zone_dir, zones, work),
    }
}

fn report_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dns-differential-report.txt")
}

#[test]
fn onebox_dns_answers_like_nsd_and_knot() {
    let zone_dir = TempDir::new("zones");
    write_zones(&zone_dir.0);
    let zones = zones();
    let (nsd_dir, knot_dir, onebox_dir) = (
        TempDir::new("nsd"),
        TempDir::new("knot"),
        TempDir::new("onebox"),
    );
    let nsd = start_nsd(&zone_dir.0, &zones, &nsd_dir.0);
    let knot = start_knot(&zone_dir.0, &zones, &knot_dir.0);
    let onebox = start_candidate(&zone_dir.0, &zones, &onebox_dir.0);

    let cases = diff::queries::all();
    let replies = ask_all(&cases, &[&nsd, &knot, &onebox]);
    // The entries for the signed run's queries (`signed ...`) are that test's.
    let allow: Vec<Allow> = diff::lists::allowlist()
        .into_iter()
        .filter(|a| !a.query.starts_with(SIGNED))
        .collect();
    // KNOWN_FAILURES are onebox-dns's; a harness check with a peer as candidate has none.
    let peer_candidate = std::env::var("ONEBOX_DIFF_CANDIDATE").is_ok_and(|v| !v.is_empty());
    let known = if peer_candidate {
        Vec::new()
    } else {
        diff::lists::known_failures()
            .into_iter()
            .filter(|k| !k.queries.iter().all(|q| q.starts_with(SIGNED)))
            .collect()
    };
    if !peer_candidate {
        // Response rate limiting is on in onebox-dns but must not have touched an answer.
        let log = fs::read_to_string(onebox_dir.0.join("onebox.log")).unwrap_or_default();
        assert!(
            !log.contains("response rate limiting:"),
            "onebox-dns rate-limited the suite's queries:\n{log}"
        );
    }
    let run = compare_run(&cases, &replies, &allow, &known, !peer_candidate);
    let path = report_path();
    let _ = fs::write(&path, format!("{}\n{}", run.summary, run.report));
    println!("{}full report: {}", run.summary, path.display());

    // The test must be able to fail: onebox-dns serving a zone with a wrong address for www and
    // for ns2 (an apex NS target, so additional-section data) must be caught where expected.
    let broken_dir = TempDir::new("broken-zones");
    write_zones(&broken_dir.0);
    let zone_file = broken_dir.0.join("onebox.test.zone");
    let text = fs::read_to_string(&zone_file).expect("read the zone copy");
    let broken = text
        .replace(
            "www             IN A     192.0.2.80",
            "www             IN A     192.0.2.81",
        )
        .replace(
            "ns2             IN A     192.0.2.54",
            "ns2             IN A     192.0.2.55",
        );
    assert_ne!(text, broken, "the zone mutation must change the zone");
    fs::write(&zone_file, broken).expect("write the broken zone");
    let broken_work = TempDir::new("onebox-broken");
    let wrong = start_candidate(&broken_dir.0, &zones, &broken_work.0);
    let probe: Vec<usize> = (0..cases.len())
        .filter(|&i| {
            let l = &cases[i].label;
            l.contains(" www.onebox.test ")
                || l.starts_with("udp onebox.test IN NS")
                || l.contains(" AXFR")
        })
        .collect();
    let probe_cases: Vec<Case> = probe.iter().map(|&i| cases[i].clone()).collect();
    let broken_replies = ask_all(&probe_cases, &[&wrong]);
    drop(wrong);
    let combined: Vec<Vec<Fields>> = probe
        .iter()
        .zip(broken_replies)
        .map(|(&i, b)| vec![replies[i][0].clone(), replies[i][1].clone(), b[0].clone()])
        .collect();
    let caught = compare_run(&probe_cases, &combined, &allow, &[], false).failed_labels;
    for must in [
        "udp www.onebox.test IN A",
        "tcp www.onebox.test IN A",
        "udp onebox.test IN NS",
        "tcp onebox.test IN AXFR noedns",
    ] {
        assert!(
            caught.iter().any(|l| l == must),
            "self-check: onebox-dns serving a broken zone was NOT caught on `{must}` \
             (caught: {caught:?}) — the comparison is too lenient"
        );
    }
    println!(
        "self-check: a broken zone served to onebox-dns is caught on {} of {} probe queries",
        caught.len(),
        probe_cases.len()
    );

    assert!(
        run.failures.is_empty(),
        "onebox-dns differs from NSD/Knot on {} queries (full report: {}):\n{}\n{}",
        run.failures.len(),
        path.display(),
        run.failures.join("\n"),
        run.summary
    );
}

/// Labels of the signed run's queries start with this; so do the allowlist and KNOWN_FAILURES
/// entries that are the signed run's.
const SIGNED: &str = "signed ";

/// The zones of the signed run, each signed by Knot and by onebox-dns.
fn signed_zones() -> Vec<Zone> {
    zones()
        .into_iter()
        .filter(|z| z.name != "big.test")
        .collect()
}

/// The signed run's verdicts: onebox-dns against Knot, field by field, the fields of DNSSEC
/// records reduced to their structure (dns/tests/diff/compare.rs, `structure`).
fn compare_signed(
    cases: &[Case],
    replies: &[Vec<Fields>],
    allow: &[Allow],
    known: &[KnownFailure],
    check_lists: bool,
) -> Run {
    let mut used = vec![false; allow.len()];
    let mut known_hit = vec![false; known.len()];
    let mut failures = Vec::new();
    let mut failed_labels = Vec::new();
    let mut report = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (case, r) in cases.iter().zip(replies) {
        let (knot, onebox) = (&r[0], &r[1]);
        let fields = differing(knot, onebox);
        let allowed = |f: &str| {
            allow
                .iter()
                .enumerate()
                .filter(|(_, a)| a.field == f && glob(&a.query, &case.label))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        let unexcused: Vec<&'static str> = fields
            .iter()
            .copied()
            .filter(|f| allowed(f).is_empty())
            .collect();
        let known_idx = known
            .iter()
            .position(|k| k.queries.iter().any(|q| glob(q, &case.label)));
        if unexcused.is_empty() {
            for f in &fields {
                for i in allowed(f) {
                    used[i] = true;
                }
            }
            if let Some(k) = known_idx {
                known_hit[k] = true;
                failures.push(format!(
                    "── {}\n   now matches knot, but KNOWN_FAILURES.toml lists it under \"{}\": \
                     remove it from there\n",
                    case.label, known[k].what
                ));
                continue;
            }
            *counts.entry("matched knot".into()).or_default() += 1;
            let _ = write!(report, "ok    {}", case.label);
            if !fields.is_empty() {
                let _ = write!(report, "  (allowlisted: {})", fields.join(", "));
                *counts.entry("used the allowlist".into()).or_default() += 1;
            }
            report.push('\n');
            continue;
        }
        let mut t = table_of(&case.label, &unexcused, &[("knot", knot)], onebox);
        t += &line_diff(&unexcused, knot, onebox);
        let _ = writeln!(report, "FAIL  {}", case.label);
        report += &t;
        failed_labels.push(case.label.clone());
        match known_idx {
            Some(k) => {
                known_hit[k] = true;
                *counts.entry("known failures".into()).or_default() += 1;
            }
            None => failures.push(t),
        }
    }
    if check_lists {
        for (a, used) in allow.iter().zip(&used) {
            if !used {
                failures.push(format!(
                    "── allowlist entry `{}` / {} excuses nothing any more: remove it\n",
                    a.query, a.field
                ));
            }
        }
        for (k, hit) in known.iter().zip(&known_hit) {
            if !hit {
                failures.push(format!(
                    "── KNOWN_FAILURES entry \"{}\" matches no failing query: remove it\n",
                    k.what
                ));
            }
        }
    }
    let mut summary = format!("{} DO-bit queries against Knot signing\n", cases.len());
    for (k, v) in &counts {
        let _ = writeln!(summary, "  {k}: {v}");
    }
    let _ = writeln!(summary, "  new failures: {}", failures.len());
    Run {
        failures,
        report,
        summary,
        failed_labels,
    }
}

/// The lines of each field in `fields` that only Knot or only onebox-dns gave, whole (the
/// table cuts them at 60 characters).
fn line_diff(fields: &[&'static str], knot: &Fields, onebox: &Fields) -> String {
    let mut out = String::new();
    for f in fields {
        let lines = |x: &Fields| -> Vec<String> {
            x.get(f)
                .map_or(Vec::new(), |v| v.lines().map(str::to_string).collect())
        };
        let (k, o) = (lines(knot), lines(onebox));
        for l in k.iter().filter(|l| !o.contains(l)) {
            let _ = writeln!(out, "   {f} knot only:   {l}");
        }
        for l in o.iter().filter(|l| !k.contains(l)) {
            let _ = writeln!(out, "   {f} onebox only: {l}");
        }
    }
    out
}

/// onebox-dns signing, or with `ONEBOX_DIFF_CANDIDATE=knot` a second Knot signing with keys of
/// its own: the harness check of the structural comparison.
fn start_signed_candidate(zone_dir: &Path, zones: &[Zone], work: &Path) -> Server {
    match std::env::var("ONEBOX_DIFF_CANDIDATE").as_deref() {
        Ok("knot") => start_knot_signed(zone_dir, zones, work),
        Ok("nsd") => {
            panic!(
                "ONEBOX_DIFF_CANDIDATE=nsd: NSD does not sign, so the signed run has no NSD \
                 candidate; run the unsigned run alone (`-- onebox_dns_answers_like_nsd_and_knot`)"
            )
        }
        _ => start_onebox_signed(zone_dir, zones, work),
    }
}

/// The signed run: Knot (automatic signing, policy set to onebox-dns's choices) and onebox-dns
/// (`dnssec = true`) sign the same zones; every query has DO set, and the replies must agree
/// in everything but each signer's own keys, signatures and times: which RRsets carry RRSIGs
/// (type covered, algorithm, labels, original TTL, signer), the NSEC records proving each
/// denial (owner, next name, type bitmap), DNSKEY/CDS/CDNSKEY by their algorithm, flags and
/// digest type, rcodes, flags, TTLs.
#[test]
fn onebox_dns_signs_like_knot() {
    let started = std::time::Instant::now();
    let zone_dir = TempDir::new("signed-zones");
    write_zones(&zone_dir.0);
    let zones = signed_zones();
    let (knot_dir, onebox_dir) = (TempDir::new("knot-signed"), TempDir::new("onebox-signed"));
    let knot = start_knot_signed(&zone_dir.0, &zones, &knot_dir.0);
    let onebox = start_signed_candidate(&zone_dir.0, &zones, &onebox_dir.0);

    let cases = diff::queries::signed();
    let replies = ask_all_with(&cases, &[&knot, &onebox], true);
    let peer_candidate = std::env::var("ONEBOX_DIFF_CANDIDATE").is_ok_and(|v| !v.is_empty());
    let allow: Vec<Allow> = diff::lists::allowlist()
        .into_iter()
        .filter(|a| a.query.starts_with(SIGNED))
        .collect();
    let known: Vec<KnownFailure> = if peer_candidate {
        Vec::new()
    } else {
        diff::lists::known_failures()
            .into_iter()
            .filter(|k| k.queries.iter().all(|q| q.starts_with(SIGNED)))
            .collect()
    };
    let run = compare_signed(&cases, &replies, &allow, &known, !peer_candidate);
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dns-differential-signed-report.txt");
    let _ = fs::write(&path, format!("{}\n{}", run.summary, run.report));
    println!(
        "{}full report: {} ({:.1} s)",
        run.summary,
        path.display(),
        started.elapsed().as_secs_f64()
    );
    // The test must be able to fail on the proofs themselves: onebox-dns signing the zone with
    // one name more (the NSEC chain changes between www and the apex; nothing else does) must
    // be caught on the denials that chain gap proves and on the AXFR.
    if !peer_candidate {
        let broken_dir = TempDir::new("signed-broken-zones");
        write_zones(&broken_dir.0);
        let zone_file = broken_dir.0.join("onebox.test.zone");
        let mut text = fs::read_to_string(&zone_file).expect("read the zone copy");
        text.push_str("zz-extra IN TXT \"one name more\"\n");
        fs::write(&zone_file, text).expect("write the broken zone");
        let broken_work = TempDir::new("onebox-signed-broken");
        let wrong = start_onebox_signed(&broken_dir.0, &zones, &broken_work.0);
        let probe: Vec<usize> = (0..cases.len())
            .filter(|&i| {
                let l = &cases[i].label;
                l.contains(" zzz.onebox.test ")
                    || l.contains(" www.onebox.test ")
                    || l.contains(" AXFR")
            })
            .collect();
        let probe_cases: Vec<Case> = probe.iter().map(|&i| cases[i].clone()).collect();
        let broken_replies = ask_all_with(&probe_cases, &[&wrong], true);
        drop(wrong);
        let combined: Vec<Vec<Fields>> = probe
            .iter()
            .zip(broken_replies)
            .map(|(&i, b)| vec![replies[i][0].clone(), b[0].clone()])
            .collect();
        let caught = compare_signed(&probe_cases, &combined, &allow, &[], false).failed_labels;
        for must in [
            "signed udp zzz.onebox.test IN A bufsize=4096 +do",
            "signed tcp zzz.onebox.test IN A bufsize=4096 +do",
            "signed udp www.onebox.test IN NSEC bufsize=4096 +do",
            "signed udp www.onebox.test IN TXT bufsize=4096 +do",
            "signed tcp onebox.test IN AXFR bufsize=4096 +do",
        ] {
            assert!(
                caught.iter().any(|l| l == must),
                "self-check: onebox-dns signing a zone with one name more was NOT caught on \
                 `{must}` (caught: {caught:?}) — the comparison is too lenient"
            );
        }
        println!(
            "self-check: a signed zone with one name more is caught on {} of {} probe queries",
            caught.len(),
            probe_cases.len()
        );
    }

    assert!(
        run.failures.is_empty(),
        "onebox-dns signs unlike Knot on {} queries (full report: {}):\n{}\n{}",
        run.failures.len(),
        path.display(),
        run.failures.join("\n"),
        run.summary
    );
}
