//! Key rollovers, watched from outside with short configured times: the automatic ZSK
//! rollover (pre-publication, then signing, then removal) while a validating unbound keeps
//! validating, then the KSK rollover's two commands (the CDS/CDNSKEY move to the new KSK, a
//! resolver trusting the DS made from that CDS validates, the old KSK leaves); the DNSSEC
//! metrics say the same as the zone at each step; ldns-verify-zone accepts the zone at the end.

use super::support::{
    Netns, authenticated, ds_text, metrics, onebox_dns, records, rrsigs, start_onebox,
    start_unbound, status,
};
use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// DNSKEY TTL (the SOA's) 3 s, other records 1 s, propagation delay 0: a new ZSK signs 3 s
/// after it is published, the old one leaves 3 s after that (the SOA's TTL is the largest),
/// and a ZSK signs for 6 s before the next rollover.
const ZONE: &str = "$ORIGIN roll.test.\n$TTL 1\n@ 3 IN SOA ns1 hostmaster 1 3600 600 86400 1\n\
    @ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.80\n";

/// What the zone shows at one moment.
#[derive(Debug, Clone)]
struct Snapshot {
    /// The tags of the KSKs and ZSKs in the DNSKEY RRset.
    ksks: BTreeSet<u16>,
    zsks: BTreeSet<u16>,
    /// The tag of the key that signed `www A`.
    signer: u16,
    /// The key tags in CDS records.
    cds: BTreeSet<u16>,
    /// How many CDNSKEY records.
    cdnskeys: usize,
    serial: u32,
}

fn snapshot(ns: &Netns) -> Snapshot {
    // www A first: the key that signed it is in the DNSKEY RRset read after it (a ZSK leaves
    // the RRset only 3 s after it stopped signing).
    let www = ns.dig(
        "127.0.0.2",
        &["+dnssec", "+noall", "+answer", "www.roll.test", "A"],
    );
    let signer = rrsigs(&records(&www))
        .iter()
        .find(|s| s.covered == "A")
        .map_or(0, |s| s.tag);
    let keys = ns.dig(
        "127.0.0.2",
        &["+multi", "+noall", "+answer", "roll.test", "DNSKEY"],
    );
    let mut ksks = BTreeSet::new();
    let mut zsks = BTreeSet::new();
    for line in keys.lines() {
        // `) ; KSK; alg = ECDSAP256SHA256 ; key id = 12345`
        let Some(tag) = line.split("key id = ").nth(1) else {
            continue;
        };
        let tag: u16 = tag.trim().parse().unwrap();
        if line.contains("; KSK;") {
            ksks.insert(tag);
        } else if line.contains("; ZSK;") {
            zsks.insert(tag);
        }
    }
    let apex = ns.dig(
        "127.0.0.2",
        &[
            "+noall",
            "+answer",
            "roll.test",
            "CDS",
            "roll.test",
            "CDNSKEY",
            "roll.test",
            "SOA",
        ],
    );
    let apex = records(&apex);
    let cds = apex
        .iter()
        .filter(|f| f[3] == "CDS")
        .map(|f| f[4].parse().unwrap())
        .collect();
    let cdnskeys = apex.iter().filter(|f| f[3] == "CDNSKEY").count();
    let serial = apex
        .iter()
        .find(|f| f[3] == "SOA")
        .map_or(0, |f| f[6].parse().unwrap());
    Snapshot {
        ksks,
        zsks,
        signer,
        cds,
        cdnskeys,
        serial,
    }
}

/// The `state` and `ds` labels of each key in `onebox_dns_dnssec_key_info`, by tag.
fn key_states(text: &str) -> Vec<(u16, String, String, String)> {
    text.lines()
        .filter(|l| {
            l.starts_with("onebox_dns_dnssec_key_info{") && l.contains("zone=\"roll.test\"")
        })
        .map(|l| {
            let label = |name: &str| {
                l.split(&format!("{name}=\""))
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string()
            };
            (
                label("tag").parse().unwrap(),
                label("role"),
                label("state"),
                label("ds"),
            )
        })
        .collect()
}

fn has(states: &[(u16, String, String, String)], tag: u16, role: &str, state: &str) -> bool {
    states
        .iter()
        .any(|(t, r, s, _)| *t == tag && r == role && s == state)
}

fn onebox_command(site: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(onebox_dns())
        .arg("--config")
        .arg(site)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "onebox-dns {args:?}: {out:?}");
    text
}

#[test]
fn keys_roll_over_while_a_validating_resolver_keeps_validating() {
    let ns = Netns::new("roll");
    let tmp = onebox_testkit::temp_dir("dnssec-roll");
    let dir = tmp.path();
    fs::create_dir_all(dir.join("zones")).unwrap();
    fs::write(dir.join("zones/roll.test.zone"), ZONE).unwrap();
    let site = dir.join("site.toml");
    fs::write(
        &site,
        "[site]\ndomain = \"roll.test\"\n\n[dns]\nlisten = [\"127.0.0.2:53\"]\n\
         metrics_listen = \"127.0.0.1:9153\"\nzones = \"zones\"\nstate_dir = \"state\"\n\
         dnssec_zsk_lifetime_secs = 6\ndnssec_propagation_delay_secs = 0\n\n\
         [[dns.zone]]\nname = \"roll.test\"\ndnssec = true\nallow_transfer = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let mut server = start_onebox(&ns, &site, dir, "onebox.log", "roll.test");
    let url = "http://127.0.0.1:9153/metrics";

    let first = snapshot(&ns);
    assert_eq!(
        (first.ksks.len(), first.zsks.len()),
        (1, 1),
        "one KSK and one ZSK at start: {first:?}"
    );
    let ksk1 = *first.ksks.first().unwrap();
    let zsk1 = *first.zsks.first().unwrap();
    assert_eq!(first.signer, zsk1, "the ZSK signs www A: {first:?}");
    assert_eq!(first.cds, BTreeSet::from([ksk1]), "the CDS is the KSK's");
    let anchors = super::support::ds(&site, "roll.test");
    assert_eq!(anchors.len(), 1, "{anchors:?}");

    // A validating resolver trusting the first KSK, asked every 200 ms from now until the KSK
    // rollover's CDS has moved: every answer must be validated (AD).
    let unbound = start_unbound(&ns, dir, &anchors, &["roll.test"], "unbound.log");
    let stop = AtomicBool::new(false);
    let answers: Mutex<Vec<(String, bool, u16)>> = Mutex::new(Vec::new());
    let every: Mutex<Vec<Snapshot>> = Mutex::new(Vec::new());
    let mut zsk2 = 0;
    let mut ksk2 = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let out = ns.dig("127.0.0.1", &["+dnssec", "www.roll.test", "A"]);
                let signer = rrsigs(&records(&out)).first().map_or(0, |r| r.tag);
                answers
                    .lock()
                    .unwrap()
                    .push((status(&out), authenticated(&out), signer));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        // Stops the asking thread however this closure ends (a failed wait panics).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);
        let mut watch = |what: &str, f: &mut dyn FnMut(&Snapshot) -> bool| {
            server.wait_until(40, what, || {
                let snap = snapshot(&ns);
                every.lock().unwrap().push(snap.clone());
                f(&snap)
            });
        };

        // The ZSK rollover: a second ZSK published while the first still signs...
        watch(
            "a new ZSK published beside the signing one (metrics: published, active)",
            &mut |s| {
                let ok = s.zsks.len() == 2 && s.zsks.contains(&zsk1) && s.signer == zsk1;
                if ok {
                    zsk2 = *s.zsks.iter().find(|&&t| t != zsk1).unwrap();
                    let m = key_states(&metrics(&ns, url));
                    return has(&m, zsk1, "zsk", "active") && has(&m, zsk2, "zsk", "published");
                }
                false
            },
        );
        // ... then it signs while the old one is still published...
        watch(
            "the new ZSK signing, the old one still published (metrics: retired, active)",
            &mut |s| {
                s.zsks == BTreeSet::from([zsk1, zsk2]) && s.signer == zsk2 && {
                    let m = key_states(&metrics(&ns, url));
                    has(&m, zsk1, "zsk", "retired") && has(&m, zsk2, "zsk", "active")
                }
            },
        );
        // ... then the old one leaves.
        watch("the old ZSK gone", &mut |s| {
            !s.zsks.contains(&zsk1) && s.zsks.contains(&zsk2) && s.signer == zsk2
        });

        // The KSK rollover: a second KSK signs the DNSKEY RRset at once; the CDS stays the old
        // key's until caches know the new one (the DNSKEY TTL), then moves.
        let text = onebox_command(&site, &["ksk-rollover", "roll.test"]);
        assert!(
            text.contains(" IN DS ") && text.matches(" IN DNSKEY 257 ").count() == 2,
            "ksk-rollover prints both keys' DS and DNSKEY: {text}"
        );
        watch(
            "a second KSK published, the CDS still the old one's",
            &mut |s| {
                s.ksks.len() == 2 && s.cds == BTreeSet::from([ksk1]) && {
                    ksk2 = *s.ksks.iter().find(|&&t| t != ksk1).unwrap();
                    let m = key_states(&metrics(&ns, url));
                    m.iter()
                        .any(|(t, r, _, ds)| *t == ksk1 && r == "ksk" && ds == "yes")
                }
            },
        );
        watch("the CDS and CDNSKEY moved to the new KSK", &mut |s| {
            s.ksks == BTreeSet::from([ksk1, ksk2])
                && s.cds == BTreeSet::from([ksk2])
                && s.cdnskeys == 1
                && {
                    let m = key_states(&metrics(&ns, url));
                    m.iter()
                        .any(|(t, r, _, ds)| *t == ksk2 && r == "ksk" && ds == "yes")
                        && m.iter().any(|(t, _, _, ds)| *t == ksk1 && ds == "no")
                }
        });
    });
    drop(unbound);

    let answers = answers.into_inner().unwrap();
    let bad: Vec<_> = answers
        .iter()
        .filter(|(status, ad, _)| status != "NOERROR" || !ad)
        .collect();
    let signers: BTreeSet<u16> = answers.iter().map(|a| a.2).collect();
    assert!(
        bad.is_empty() && !answers.is_empty(),
        "unbound must validate every answer across the rollovers; {} of {} were not: {bad:?}",
        bad.len(),
        answers.len()
    );
    assert!(
        signers.contains(&zsk1) && signers.contains(&zsk2),
        "unbound validated answers signed by both ZSKs: {signers:?}"
    );
    // Never a signature by a key that is not published, at any moment watched.
    let every = every.into_inner().unwrap();
    for s in &every {
        assert!(
            s.zsks.contains(&s.signer),
            "signed by an unpublished key: {s:?}"
        );
    }
    assert!(
        every.last().unwrap().serial > first.serial,
        "each signing serves a new serial"
    );
    println!(
        "ZSK {zsk1} -> {zsk2}: {} answers from unbound, all validated (AD), signed by {signers:?}",
        answers.len()
    );

    // The registry polls the CDS and publishes the DS made from it: a resolver trusting that
    // DS validates.
    let cds = ns.dig("127.0.0.2", &["+noall", "+answer", "roll.test", "CDS"]);
    let cds = records(&cds);
    assert_eq!(cds.len(), 1, "{cds:?}");
    // dig splits the digest in chunks; onebox-dns prints it whole.
    let new_ds = format!(
        "roll.test. IN DS {} {}",
        cds[0][4..7].join(" "),
        cds[0][7..].concat()
    );
    assert!(
        ds_text(&site, "roll.test").contains(&new_ds),
        "onebox-dns ds prints the DS of the CDS ({new_ds})"
    );
    let unbound = start_unbound(
        &ns,
        dir,
        std::slice::from_ref(&new_ds),
        &["roll.test"],
        "unbound2.log",
    );
    let out = ns.dig("127.0.0.1", &["ns1.roll.test", "A"]);
    assert!(
        status(&out) == "NOERROR" && authenticated(&out),
        "unbound trusting the new DS validates: {out}"
    );

    // The parent serves the new DS: the old KSK leaves after its DS TTL (here 1 s).
    onebox_command(&site, &["ksk-submitted", "roll.test", "--ds-ttl", "1"]);
    server.wait_until(30, "the old KSK gone", || {
        let s = snapshot(&ns);
        s.ksks == BTreeSet::from([ksk2]) && s.cds == BTreeSet::from([ksk2])
    });
    let text = ds_text(&site, "roll.test");
    assert!(
        text.contains(&new_ds) && text.matches(" IN DS ").count() == 1,
        "ds prints only the new key's DS: {text}"
    );
    let mut unbound = unbound;
    unbound.wait_until(
        20,
        "unbound validating the DNSKEY RRset without the old KSK",
        || {
            let out = ns.dig("127.0.0.1", &["+dnssec", "roll.test", "DNSKEY"]);
            status(&out) == "NOERROR"
                && authenticated(&out)
                && records(&out)
                    .iter()
                    .filter(|f| f[3] == "DNSKEY" && f[4] == "257")
                    .count()
                    == 1
        },
    );

    let axfr = ns.dig("127.0.0.2", &["+nocmd", "+nostats", "roll.test", "AXFR"]);
    let file = dir.join("roll.axfr");
    fs::write(&file, &axfr).unwrap();
    let out = Command::new("ldns-verify-zone")
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("Zone is verified and complete"),
        "ldns-verify-zone after the rollovers: {text}\n{axfr}"
    );
    println!(
        "KSK {ksk1} -> {ksk2}: CDS moved, unbound validates with the DS from the CDS, the old \
         KSK left; ldns-verify-zone: {}",
        text.trim()
    );
}
