//! `onebox-dns ds ZONE`: the DS record(s) to give the registrar, and the DNSKEY they are made
//! from, read from the zone's state file (onebox-dns need not run).

use super::keys::{KeyState, Role, ZoneKeys};
use super::now;
use hickory_proto::dnssec::{PublicKey as _, Verifier as _};
use hickory_proto::rr::Name;
use std::fmt::Write as _;
use std::path::Path;

/// The text `onebox-dns ds` prints for `zone`: for each active KSK, a comment, its DS record
/// (SHA-256 digest) and its DNSKEY record, in zone-file syntax.
pub fn text(state_dir: &Path, zone: &Name) -> Result<String, String> {
    let mut apex = zone.to_lowercase();
    apex.set_fqdn(true);
    let keys = ZoneKeys::read(state_dir, &apex)?.ok_or_else(|| {
        format!(
            "{}: no DNSSEC keys for {apex} yet: onebox-dns makes them when it first serves the \
             zone with [[dns.zone]] dnssec = true",
            super::keys::state_file(state_dir, &apex).display()
        )
    })?;
    let now = now();
    let mut ksks: Vec<_> = keys
        .keys()
        .iter()
        .filter(|k| k.role() == Role::Ksk && k.state(now) == KeyState::Active)
        .collect();
    ksks.sort_by_key(|k| k.publish_time());
    if ksks.is_empty() {
        return Err(format!("{apex} has no active key-signing key"));
    }
    let mut out = String::new();
    for (i, key) in ksks.iter().enumerate() {
        let ds = key.ds(&apex)?;
        let what = match (ksks.len(), i) {
            (1, _) => "the DS record for the registrar".to_string(),
            (_, 0) => "the DS record of the current key (replaced by the next one)".to_string(),
            _ => format!(
                "the DS record of the new key (published {}; give it to the registrar, then run \
                 `onebox-dns ksk-submitted {}`)",
                key.publish_time(),
                apex.to_ascii().trim_end_matches('.')
            ),
        };
        let _ = writeln!(
            out,
            "; {apex} {what}: KSK {}, algorithm 13 (ECDSA P-256 SHA-256), digest type 2 (SHA-256)",
            key.tag()
        );
        let digest: String = ds.digest().iter().map(|b| format!("{b:02X}")).collect();
        let _ = writeln!(
            out,
            "{apex} IN DS {} {} {} {digest}",
            ds.key_tag(),
            u8::from(ds.algorithm()),
            u8::from(ds.digest_type())
        );
        let _ = writeln!(
            out,
            "; the DNSKEY it is made from (some registrars ask for it)"
        );
        let dnskey = key.dnskey();
        let _ = writeln!(
            out,
            "{apex} IN DNSKEY {} 3 {} {}",
            dnskey.flags(),
            u8::from(dnskey.algorithm()),
            data_encoding::BASE64.encode(dnskey.public_key().public_bytes())
        );
    }
    Ok(out)
}
