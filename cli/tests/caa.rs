//! `onebox caa`: once onebox-edge has an ACME account (pebble, real validation), the generated
//! zone's CAA record names that account (RFC 8657 `accounturi`), the SOA serial rises and the
//! signed zone serves it; a second run changes nothing; a zone edited by hand is left alone.
#![allow(clippy::panic)]

mod common;
use common::site::{Site, ok};
use common::text;

use onebox_testkit::{MariaDb, Pebble, Signal, free_port};

#[test]
fn the_caa_record_is_pinned_to_the_edges_acme_account() {
    let site = Site::new("caa");
    let pebble = Pebble::start(site.http, free_port()).expect("pebble");
    let db = MariaDb::start().expect("MariaDB");
    site.link_database(&db);
    // The CA's CAA domain is its directory's host: `localhost`, a name as a real CA's would be
    // (pebble's certificate names it).
    let user_data = site.user_data(Some(&pebble), "");
    let text_ud = std::fs::read_to_string(&user_data).expect("user-data");
    std::fs::write(
        &user_data,
        text_ud.replace("https://127.0.0.1:", "https://localhost:"),
    )
    .expect("user-data");
    site.provision(&user_data);
    let zone_file = site.root.join("etc/onebox/zones/example.test.zone");
    let generated = std::fs::read_to_string(&zone_file).expect("zone");
    assert!(
        generated.contains("CAA   0 issue \"localhost\"\n"),
        "{generated}"
    );

    // Before the edge has an account there is nothing to pin.
    let out = ok(&mut site.onebox("caa"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no ACME account yet"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&zone_file).expect("zone"),
        generated
    );

    let mut dns = site.spawn("onebox-dns");
    let mut edge = site.spawn("onebox-edge");
    dns.wait_until(30, "the signed zone", || {
        site.dig(&["example.test", "CAA"]) == "0 issue \"localhost\""
    });
    let serial = |site: &Site| -> u64 {
        let soa = site.dig(&["example.test", "SOA"]);
        soa.split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("SOA: {soa}"))
    };
    let before = serial(&site);
    let record = site.root.join("var/lib/onebox-edge/acme/account.json");
    edge.wait_until(90, "the edge's certificate and its account's URL", || {
        record.exists()
    });
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).expect("record")).expect("json");
    let uri = recorded["account_uri"]
        .as_str()
        .expect("account_uri")
        .to_string();
    let prefix = format!(
        "https://localhost:{}/my-account/",
        pebble
            .directory_url()
            .rsplit_once(':')
            .expect("port")
            .1
            .trim_end_matches("/dir")
    );
    assert!(
        uri.starts_with(&prefix),
        "{uri} is not one of pebble's accounts ({prefix}…)"
    );
    assert_eq!(
        std::fs::metadata(&record)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .expect("mode"),
        0o600
    );

    let out = ok(&mut site.onebox("caa"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CAA pinned to the ACME account"),
        "{}",
        text(&out)
    );
    dns.signal(Signal::HUP).expect("SIGHUP");
    let want = format!("0 issue \"localhost; accounturi={uri}\"");
    dns.wait_until(30, "the pinned CAA record", || {
        site.dig(&["example.test", "CAA"]) == want
    });
    assert!(serial(&site) > before, "the serial did not rise");
    let signed = site.dig(&["+dnssec", "example.test", "CAA"]);
    assert!(
        signed.lines().any(|l| l.starts_with("CAA 13 2 ")),
        "the new CAA record is signed: {signed}"
    );

    // Again: nothing changes.
    let pinned = std::fs::read_to_string(&zone_file).expect("zone");
    let out = ok(&mut site.onebox("caa"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("names https://"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&zone_file).expect("zone"), pinned);

    // A zone whose CAA line the operator wrote is theirs.
    let edited = generated.replace("0 issue \"localhost\"", "0 issue \"ca.example\"");
    std::fs::write(&zone_file, &edited).expect("edit");
    let out = ok(&mut site.onebox("caa"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("left alone"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&zone_file).expect("zone"), edited);
}
