//! `onebox ds`: the real onebox-dns makes the keys of a signed zone in a temporary state
//! directory; `onebox ds` prints its DS record (digest type 2) and DNSKEY, checked against the
//! DNSKEY onebox-dns serves and against the DS that ldns-key2ds (ldnsutils) computes from it.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::bin;

use onebox_testkit::{ChildGuard, free_port, wait_until};
use std::path::Path;
use std::process::{Command, Output};

fn ds(site: &Path, zone: Option<&str>) -> Output {
    let mut cmd = common::onebox();
    cmd.args(["ds", "--config"]).arg(site);
    cmd.args(zone);
    cmd.output().unwrap()
}

#[test]
fn ds_prints_the_registrars_ds_of_the_served_dnskey() {
    let dir = onebox_testkit::temp_dir("onebox-ds");
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(
        dir.join("zones/example.test.zone"),
        "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.80\n",
    )
    .unwrap();
    let port = free_port();
    let site = dir.join("site.toml");
    // Relative paths: relative to the site file, for onebox-dns and `onebox ds` alike.
    std::fs::write(
        &site,
        format!(
            "[site]\ndomain = \"example.test\"\n\n[dns]\nlisten = [\"127.0.0.1:{port}\"]\n\
             zones = \"zones\"\nstate_dir = \"state\"\n\n\
             [[dns.zone]]\nname = \"example.test\"\ndnssec = true\n"
        ),
    )
    .unwrap();

    // Before onebox-dns has served the zone there are no keys: an error, nothing printed.
    let out = ds(&site, None);
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no DNSSEC keys"),
        "{out:?}"
    );

    let mut cmd = Command::new(bin("onebox-dns"));
    cmd.arg("--config").arg(&site);
    let _server = ChildGuard::spawn(cmd, dir.join("onebox-dns.log")).unwrap();
    let dig = |args: &[&str]| {
        let out = Command::new("dig")
            .args([
                "+time=1",
                "+tries=1",
                "+noall",
                "+answer",
                "@127.0.0.1",
                "-p",
            ])
            .arg(port.to_string())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(30, "onebox-dns serving the signed zone", || {
        dig(&["example.test", "DNSKEY"]).contains("DNSKEY")
    });

    // The default zone is the site's domain; naming it gives the same.
    let out = ds(&site, None);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let again = ds(&site, Some("Example.Test."));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
    let ds_lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains(" IN DS "))
        .collect();
    let key_lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains(" IN DNSKEY "))
        .collect();
    assert_eq!((ds_lines.len(), key_lines.len()), (1, 1), "{text}");
    let ds_fields: Vec<&str> = ds_lines[0].split_whitespace().collect();
    // example.test. IN DS TAG 13 2 DIGEST
    assert_eq!(ds_fields[..3], ["example.test.", "IN", "DS"], "{text}");
    assert_eq!(
        ds_fields[4..6],
        ["13", "2"],
        "algorithm 13, digest type 2: {text}"
    );
    assert_eq!(ds_fields[6].len(), 64, "a SHA-256 digest: {text}");

    // The DNSKEY printed is the KSK onebox-dns serves (flags 257, protocol 3, algorithm 13).
    let key_fields: Vec<&str> = key_lines[0].split_whitespace().collect();
    assert_eq!(key_fields[3..6], ["257", "3", "13"], "{text}");
    let served = dig(&["+nosplit", "example.test", "DNSKEY"]);
    assert!(
        served
            .lines()
            .any(|l| l.split_whitespace().skip(4).collect::<Vec<_>>() == key_fields[3..]),
        "the printed DNSKEY is served: {served}\n{text}"
    );

    // ldns-key2ds computes the same DS (SHA-256) from that DNSKEY.
    let key_file = dir.join("ksk.key");
    std::fs::write(&key_file, format!("{}\n", key_lines[0])).unwrap();
    let out = Command::new("ldns-key2ds")
        .args(["-n", "-2"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "ldns-key2ds: {out:?}");
    let theirs = String::from_utf8(out.stdout).unwrap();
    let theirs: Vec<&str> = theirs.split_whitespace().collect();
    // example.test. 3600 IN DS TAG 13 2 digest
    assert_eq!(theirs[3], "DS", "{theirs:?}");
    assert_eq!(theirs[4..7], ds_fields[3..6], "tag, algorithm, digest type");
    assert!(
        theirs[7].eq_ignore_ascii_case(ds_fields[6]),
        "ldns-key2ds {} vs onebox ds {}",
        theirs[7],
        ds_fields[6]
    );

    // A zone the site file does not sign: an error saying so.
    let out = ds(&site, Some("other.test"));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dnssec = true"),
        "{out:?}"
    );
}
