//! `onebox caa`: pins the zone's CAA record to the site's ACME account (RFC 8657 `accounturi`).
//!
//! `onebox provision` writes `@ CAA 0 issue "letsencrypt.org"` before any account exists. Once
//! onebox-edge has a certificate it records its account's URL in
//! `STATE_DIR/acme/account.json` ([`onebox_site::edge::AcmeAccountRecord`]); `onebox-caa.path`
//! then runs this command, which turns that line into
//! `0 issue "letsencrypt.org; accounturi=https://…"`, raises the SOA serial and reloads
//! onebox-dns. From then on the CA issues for the domain to that account only.
//!
//! The record is written by a less privileged service, so it is read as untrusted input: never
//! through a symlink, at most 4 KiB, its URL checked before it goes into the zone. A zone whose
//! CAA line is not the one onebox generated (edited by hand) is left alone, with a note.

use crate::backup::SiteArgs;
use crate::rootfs::{Perm, Root};
use onebox_site::edge::AcmeAccountRecord;
use std::io::Read;
use std::path::Path;

/// `onebox caa`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub site: SiteArgs,
    /// Do not reload onebox-dns after changing the zone (it serves the change at its next
    /// reload).
    #[arg(long)]
    pub no_reload: bool,
}

/// What [`pin`] did to a zone's text.
#[derive(Debug, PartialEq, Eq)]
pub enum Pinned {
    /// The new text.
    Changed(String),
    /// The CAA line names this account already.
    UpToDate,
    /// No CAA line as onebox generates it for this issuer.
    NoGeneratedLine,
}

/// Runs `onebox caa`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let site = args.site.load()?;
    let file = &site.file;
    let domain = file.site.domain.to_string();
    // As `onebox provision` made the record: none when ACME is off.
    let issuer = file.edge.acme.caa_issuer();
    let Some(issuer) = issuer.filter(|h| onebox_site::Domain::parse(h).is_ok()) else {
        println!("the site's CA has no CAA domain (ACME is off): no CAA record to pin");
        return Ok(());
    };
    let root = Root::open(&site.root)?;
    let record_rel = site.relative(&file.edge.state_dir.join(AcmeAccountRecord::FILE))?;
    if !root.exists(&record_rel)? {
        println!(
            "onebox-edge has no ACME account yet ({} is missing): nothing to pin",
            root.host_path(&record_rel).display()
        );
        return Ok(());
    }
    let text = read_bounded(&root, &record_rel)?;
    let record = AcmeAccountRecord::parse(&text)
        .map_err(|e| crate::Invalid(format!("{}: {e}", root.host_path(&record_rel).display())))?;
    if Some(&record.directory) != file.edge.acme.directory().as_ref() {
        println!(
            "the recorded ACME account belongs to {}, not to the site's CA: nothing to pin",
            record.directory
        );
        return Ok(());
    }
    let zone_rel = site.relative(&file.dns.zones.join(format!("{domain}.zone")))?;
    let zone = root.read(&zone_rel)?;
    let today = crate::zonegen::serial_for(time::OffsetDateTime::now_utc().date());
    match pin(&zone, &issuer, &record.account_uri, today) {
        Pinned::UpToDate => println!("the CAA record names {} already", record.account_uri),
        Pinned::NoGeneratedLine => println!(
            "{}: no line `@ IN CAA 0 issue \"{issuer}\"` as onebox generates it (edited by hand?): left alone; \
             to pin the account add `; accounturi={}` to your CAA issue value",
            root.host_path(&zone_rel).display(),
            record.account_uri
        ),
        Pinned::Changed(text) => {
            let perm = Perm {
                mode: 0o644,
                owner: Some((0, 0)),
            };
            let dir = Perm {
                mode: 0o755,
                owner: Some((0, 0)),
            };
            root.write_atomic(&zone_rel, text.as_bytes(), perm, dir, true)?;
            println!(
                "{}: CAA pinned to the ACME account {}",
                root.host_path(&zone_rel).display(),
                record.account_uri
            );
            if !args.no_reload {
                reload_dns();
            }
        }
    }
    Ok(())
}

/// Reads at most [`AcmeAccountRecord::MAX_BYTES`] (+1, to notice more) of `rel`.
fn read_bounded(root: &Root, rel: &Path) -> anyhow::Result<String> {
    let mut file = root.open_file(rel)?;
    let mut buf = Vec::new();
    let limit = u64::try_from(AcmeAccountRecord::MAX_BYTES).unwrap_or(4096) + 1;
    (&mut file)
        .take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow::anyhow!("{}: {e}", root.host_path(rel).display()))?;
    String::from_utf8(buf)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8", root.host_path(rel).display()))
}

/// Under systemd, `systemctl try-reload-or-restart onebox-dns`; otherwise says what to do.
fn reload_dns() {
    if !Path::new("/run/systemd/system").is_dir() {
        println!("reload onebox-dns (SIGHUP) to serve it");
        return;
    }
    match std::process::Command::new("systemctl")
        .args(["try-reload-or-restart", "onebox-dns"])
        .status()
    {
        Ok(s) if s.success() => println!("onebox-dns reloaded"),
        Ok(s) => eprintln!("onebox caa: systemctl reload onebox-dns: {s}"),
        Err(e) => eprintln!("onebox caa: systemctl: {e}"),
    }
}

/// The zone text with its generated CAA `issue` line for `issuer` naming `account_uri`, and the
/// SOA serial raised to `today` (`YYYYMMDD01`) or by one, whichever is larger.
pub fn pin(zone: &str, issuer: &str, account_uri: &str, today: u32) -> Pinned {
    let want = format!("0 issue \"{issuer}; accounturi={account_uri}\"");
    let mut lines: Vec<String> = zone.lines().map(str::to_string).collect();
    let caa = lines.iter().position(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 6
            && f[0] == "@"
            && f[1] == "IN"
            && f[2] == "CAA"
            && f[3] == "0"
            && f[4] == "issue"
            && (f[5..].join(" ") == format!("\"{issuer}\"")
                || f[5..]
                    .join(" ")
                    .starts_with(&format!("\"{issuer}; accounturi=")))
    });
    let Some(caa) = caa else {
        return Pinned::NoGeneratedLine;
    };
    if lines[caa].ends_with(&want) {
        return Pinned::UpToDate;
    }
    // The SOA as onebox generates it: `@ IN SOA mname rname ( SERIAL …`.
    let soa = lines.iter().position(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 7 && f[1] == "IN" && f[2] == "SOA" && f[5] == "(" && f[6].parse::<u32>().is_ok()
    });
    let Some(soa) = soa else {
        return Pinned::NoGeneratedLine;
    };
    lines[caa] = format!("{:<8} IN {:<5} {want}", "@", "CAA");
    let fields: Vec<&str> = lines[soa].split_whitespace().collect();
    let old: u32 = fields[6].parse().unwrap_or(0);
    let new = today.max(old.wrapping_add(1));
    let needle = format!("( {old} ");
    lines[soa] = lines[soa].replacen(&needle, &format!("( {new} "), 1);
    let mut text = lines.join("\n");
    text.push('\n');
    Pinned::Changed(text)
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use crate::zonegen::{ZoneInput, zone_text};
    use onebox_site::Domain;

    fn generated() -> String {
        zone_text(&ZoneInput {
            domain: Domain::parse("foobar.com").expect("domain"),
            ipv4: Some("192.0.2.10".parse().expect("ip")),
            ipv6: None,
            secondaries: vec![],
            caa_issuer: Some("letsencrypt.org".into()),
            sends_mail: false,
            serial: 2026113001,
        })
    }

    #[test]
    fn the_generated_caa_line_names_the_account_and_the_serial_rises() {
        let uri = "https://acme-v02.api.letsencrypt.org/acme/acct/123";
        let Pinned::Changed(text) = pin(&generated(), "letsencrypt.org", uri, 2026113001) else {
            panic!("not changed");
        };
        assert!(text.contains(&format!(
            "@        IN CAA   0 issue \"letsencrypt.org; accounturi={uri}\"\n"
        )));
        assert!(text.contains("( 2026113002 7200"), "{text}");
        assert_eq!(text.lines().count(), generated().lines().count());
        // Again: nothing to do. Another account (a new key): the line is replaced.
        assert_eq!(
            pin(&text, "letsencrypt.org", uri, 2026113001),
            Pinned::UpToDate
        );
        let Pinned::Changed(again) = pin(&text, "letsencrypt.org", "https://x/acct/9", 2026120101)
        else {
            panic!("not changed");
        };
        assert!(again.contains("accounturi=https://x/acct/9\""));
        assert!(!again.contains("acct/123"));
        assert!(again.contains("( 2026120101 7200"), "{again}");
    }

    #[test]
    fn a_zone_edited_by_hand_is_left_alone() {
        let edited = generated().replace("0 issue \"letsencrypt.org\"", "0 issue \"sectigo.com\"");
        assert_eq!(
            pin(&edited, "letsencrypt.org", "https://x/acct/1", 2026113001),
            Pinned::NoGeneratedLine
        );
    }
}
