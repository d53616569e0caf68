//! Signatures that cannot expire: after days of downtime the first answer already carries
//! fresh signatures (the zone is signed at start, before it is served), and a running server
//! signs again before its signatures come near their expiry; the DNSSEC metrics say what the
//! served zone shows.
//!
//! The downtime is real as far as onebox-dns can tell: its first run lives 30 days in the past
//! (Debian's libfaketime, preloaded), so the signatures it made expired long ago when the
//! second run starts at the real time with the same keys and state.

use super::support::{Netns, metric, metrics, now, records, rrsigs, spawn_onebox};
use std::fs;
use std::path::Path;

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The served zone's RRSIGs, its SOA serial (from an AXFR).
fn axfr(ns: &Netns) -> (Vec<super::support::Rrsig>, u32) {
    let out = ns.dig("127.0.0.2", &["+nocmd", "+nostats", "refresh.test", "AXFR"]);
    let all = records(&out);
    let serial = all
        .iter()
        .find(|f| f[3] == "SOA")
        .map_or(0, |f| f[6].parse().unwrap());
    (rrsigs(&all), serial)
}

#[test]
fn signatures_are_fresh_after_downtime_and_renewed_while_serving() {
    assert!(
        Path::new(FAKETIME_LIB).exists(),
        "{FAKETIME_LIB} is missing: install Debian's libfaketime"
    );
    let ns = Netns::new("refresh");
    let tmp = onebox_testkit::temp_dir("dnssec-refresh");
    let dir = tmp.path();
    fs::create_dir_all(dir.join("zones")).unwrap();
    fs::write(
        dir.join("zones/refresh.test.zone"),
        "$ORIGIN refresh.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 7 3600 600 86400 60\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.80\nwww IN TXT \"hello\"\n",
    )
    .unwrap();
    // Signatures valid 60 s (less up to 6 s of jitter), signed again when the earliest expires
    // within 50 s: every 4 to 10 s.
    let site = dir.join("site.toml");
    fs::write(
        &site,
        "[site]\ndomain = \"refresh.test\"\n\n[dns]\nlisten = [\"127.0.0.2:53\"]\n\
         metrics_listen = \"127.0.0.1:9153\"\nzones = \"zones\"\nstate_dir = \"state\"\n\
         dnssec_signature_lifetime_secs = 60\ndnssec_signature_refresh_secs = 50\n\
         dnssec_zsk_lifetime_secs = 31536000\n\n\
         [[dns.zone]]\nname = \"refresh.test\"\ndnssec = true\nallow_transfer = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let www = |ns: &Netns| {
        let out = ns.dig(
            "127.0.0.2",
            &["+dnssec", "+noall", "+answer", "www.refresh.test", "A"],
        );
        rrsigs(&records(&out))
    };

    // The first run, 30 days ago.
    let env = [
        ("LD_PRELOAD", FAKETIME_LIB),
        ("FAKETIME", "-30d"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut past = spawn_onebox(&ns, &site, dir, "onebox-past.log", &env);
    let mut old = Vec::new();
    past.wait_until(60, "onebox-dns (30 days ago) answering", || {
        old = www(&ns);
        !old.is_empty()
    });
    let (_, old_serial) = axfr(&ns);
    assert!(
        old[0].expiration + 20 * 86_400 < now(),
        "the first run's signatures expired long ago: {} (now {})",
        old[0].expiration,
        now()
    );
    drop(past);

    // The second run, at the real time: its very first answer is signed afresh.
    let started = now();
    let mut server = spawn_onebox(&ns, &site, dir, "onebox.log", &[]);
    let mut first = Vec::new();
    server.wait_until(60, "onebox-dns answering", || {
        first = www(&ns);
        !first.is_empty()
    });
    let sig = &first[0];
    assert!(
        sig.inception + 3600 >= started && sig.expiration > now(),
        "the first answer after the downtime carries a fresh signature (inception {}, \
         expiration {}, started {started})",
        sig.inception,
        sig.expiration
    );
    let (before, serial) = axfr(&ns);
    assert!(
        serial > old_serial,
        "the serial kept growing across the restart"
    );
    let earliest = before.iter().map(|s| s.expiration).min().unwrap();
    let inception = sig.inception;
    println!(
        "after 30 days down: the first answer's RRSIG runs from {} to {} (now {})",
        sig.inception,
        sig.expiration,
        now()
    );

    // While serving, the signatures are renewed before they come near their expiry: every
    // served expiration moves past the first ones, and none is ever in the past.
    server.wait_until(60, "the zone signed again with later expirations", || {
        let (sigs, _) = axfr(&ns);
        let www_now = www(&ns);
        assert!(
            sigs.iter().all(|s| s.expiration > now()),
            "an expired signature served"
        );
        !sigs.is_empty()
            && sigs.iter().map(|s| s.expiration).min().unwrap() > earliest
            && www_now.first().is_some_and(|s| s.inception > inception)
    });

    // The metrics say what the zone serves: the earliest expiration, when it was signed, how
    // many signatures, the serial (read between two transfers of the same version).
    let url = "http://127.0.0.1:9153/metrics";
    server.wait_until(60, "metrics matching the served zone", || {
        let (a, serial_a) = axfr(&ns);
        let text = metrics(&ns, url);
        let (b, serial_b) = axfr(&ns);
        let www_sig = www(&ns);
        if serial_a != serial_b || a.len() != b.len() || www_sig.is_empty() {
            return false; // signed again in between
        }
        let zone = "{zone=\"refresh.test\"}";
        let get = |name: &str| metric(&text, &format!("onebox_dns_{name}{zone}"));
        get("zone_serial") == Some(f64::from(serial_a))
            && get("dnssec_signature_expiry_timestamp_seconds")
                == a.iter().map(|s| s.expiration as f64).reduce(f64::min)
            && get("dnssec_signatures") == Some(a.len() as f64)
            && get("dnssec_signed_timestamp_seconds") == Some((www_sig[0].inception + 3600) as f64)
    });
    println!("signed again while serving; the metrics match the served zone");
}
