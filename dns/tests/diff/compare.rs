//! Normalising replies into comparable fields, and the verdict for one query: onebox-dns must
//! match a peer field for field, except for fields the allowlist excuses for that query.
//!
//! Normalisation (what may differ without being a difference; see dns/tests/diff/README.md):
//! - the message ID is not compared, only whether it was echoed;
//! - records within a section are compared as a sorted multiset (order carries no meaning,
//!   RFC 2181 §5), TTLs included;
//! - "no reply" is one outcome whether it was a UDP timeout or a closed TCP connection;
//! - a zone transfer is compared as the multiset of its records plus its framing (first and
//!   last record the SOA), not by how the records were split into messages (RFC 5936 §2.2).

use std::collections::BTreeMap;

use super::transport::Reply;
use super::wire::{Response, class_name, opcode_name, parse, rcode_name, rtype, type_name};

/// A reply reduced to named, comparable fields.
pub type Fields = BTreeMap<&'static str, String>;

fn flags(r: &Response) -> String {
    let mut f = vec![format!("opcode={}", opcode_name(r.opcode))];
    for (on, name) in [
        (r.qr, "qr"),
        (r.aa, "aa"),
        (r.tc, "tc"),
        (r.rd, "rd"),
        (r.ra, "ra"),
        (r.z, "z"),
        (r.ad, "ad"),
    ] {
        if on {
            f.push(name.to_string());
        }
    }
    f.join(" ")
}

fn question(r: &Response) -> String {
    if r.question.is_empty() {
        return "(none)".into();
    }
    r.question
        .iter()
        .map(|(n, t, c)| format!("{n} {} {}", class_name(*c), type_name(*t)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Names in records compare case-insensitively (RFC 4343 §3): servers echo the question's
/// spelling or the zone's, and name compression mixes the two (NSD writes `mailalias.ONEBOX.test`
/// for an AXFR of `ONEBOX.test`). The question section keeps its case and is compared exactly.
///
/// With `signed` (two servers signing the same zone with keys of their own), the records that
/// hold keys, signatures or times are reduced to their structure: see [`structure`].
fn section(rrs: &[super::wire::Rr], signed: bool) -> String {
    let mut lines: Vec<String> = rrs
        .iter()
        .map(|rr| {
            let mut rr = rr.clone();
            rr.name = rr.name.to_ascii_lowercase();
            if rr.rtype != rtype::TXT && rr.rtype != rtype::HINFO && rr.rtype != rtype::CAA {
                rr.rdata = rr.rdata.to_ascii_lowercase();
            }
            if signed {
                rr.rdata = structure(rr.rtype, &rr.rdata);
                let covered = rr.rdata.split(' ').next().unwrap_or("");
                let cds = matches!(rr.rtype, rtype::CDS | rtype::CDNSKEY)
                    || (rr.rtype == rtype::RRSIG && matches!(covered, "cds" | "cdnskey"));
                if cds {
                    // CDS and CDNSKEY: the TTL is the signer's choice (RFC 7344 and RFC 8078
                    // set none; Knot gives 0, onebox-dns the DNSKEY's, the SOA TTL).
                    if rr.rtype == rtype::RRSIG {
                        let f: Vec<&str> = rr.rdata.split(' ').collect();
                        rr.rdata = [f[0], f[1], f[2], "(ttl)", f[4]].join(" ");
                    }
                    return format!(
                        "{} (ttl) {} {} {}",
                        rr.name,
                        class_name(rr.class),
                        type_name(rr.rtype),
                        rr.rdata
                    );
                }
            }
            rr.to_string()
        })
        .collect();
    lines.sort();
    if lines.is_empty() {
        "(empty)".into()
    } else {
        lines.join("\n")
    }
}

/// The part of a DNSSEC record's RDATA that two signers of one zone must agree on:
/// - RRSIG: type covered, algorithm, labels, original TTL and signer — not the expiration,
///   inception, key tag or signature, which are each signer's own;
/// - DNSKEY and CDNSKEY: flags, protocol and algorithm — not the public key;
/// - CDS: algorithm and digest type — not the key tag and digest of a key of its own;
/// - SOA: all but the serial, which each signer sets by its own serial policy (Knot keeps the
///   file's serial when it first signs a zone, onebox-dns serves the file's plus one; the
///   unsigned run's AXFR and IXFR comparisons check onebox-dns's serial handling);
/// - NSEC and DS (from the zone file) whole: the chain and its type bitmaps must be the same.
fn structure(rtype: u16, rdata: &str) -> String {
    let fields: Vec<&str> = rdata.split(' ').collect();
    let pick = |idx: &[usize]| {
        idx.iter()
            .filter_map(|&i| fields.get(i).copied())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match rtype {
        rtype::RRSIG => pick(&[0, 1, 2, 3, 7]),
        rtype::DNSKEY | rtype::CDNSKEY => pick(&[0, 1, 2]),
        rtype::CDS => pick(&[1, 2]),
        rtype::SOA => pick(&[0, 1, 3, 4, 5, 6]),
        _ => rdata.to_string(),
    }
}

fn edns(r: &Response) -> String {
    match &r.edns {
        None => "none".into(),
        Some(e) => {
            let mut s = format!("version={} udp={}", e.version, e.size);
            if e.flags & 0x8000 != 0 {
                s += " do";
            }
            if e.flags & 0x7fff != 0 {
                s += &format!(" z={:#06x}", e.flags & 0x7fff);
            }
            for (code, data) in e.options.iter().filter(|(c, _)| *c != 15) {
                s += &format!(" option{code}={}", hex(data));
            }
            if e.owner != "." {
                s += &format!(" owner={}", e.owner);
            }
            if r.opt_count > 1 {
                s += &format!(" ({} OPT records)", r.opt_count);
            }
            s
        }
    }
}

/// Extended DNS Errors (RFC 8914, option 15) as their INFO-CODEs, a field of their own so that
/// an allowlist entry for them excuses nothing else of the OPT record.
fn ede(r: &Response) -> String {
    let codes: Vec<String> = r
        .edns
        .iter()
        .flat_map(|e| &e.options)
        .filter(|(c, _)| *c == 15)
        .map(|(_, d)| match d.get(..2) {
            Some(b) => {
                let code = u16::from_be_bytes([b[0], b[1]]);
                let text = String::from_utf8_lossy(&d[2..]);
                if text.is_empty() {
                    format!("{code}")
                } else {
                    format!("{code} \"{text}\"")
                }
            }
            None => format!("malformed {}", hex(d)),
        })
        .collect();
    if codes.is_empty() {
        "none".into()
    } else {
        codes.join(", ")
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises a reply to `sent_id`. `transfer` replies are compared as a whole transfer; with
/// `signed`, DNSSEC records are reduced to their structure ([`structure`]).
pub fn normalise_with(reply: &Reply, sent_id: u16, transfer: bool, signed: bool) -> Fields {
    let mut f = Fields::new();
    let msgs = match reply {
        Reply::Nothing(why) => {
            // Why (timeout, closed connection) is not compared: all mean "no answer".
            let _ = why;
            f.insert("reply", "none".into());
            return f;
        }
        Reply::Messages(m) => m,
    };
    let parsed: Result<Vec<Response>, String> = msgs.iter().map(|m| parse(m)).collect();
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            f.insert("reply", format!("unparseable: {e}"));
            return f;
        }
    };
    let first = &parsed[0];
    f.insert("reply", "message".into());
    f.insert(
        "id",
        if parsed.iter().all(|r| r.id == sent_id) {
            "echoed".into()
        } else {
            format!("{:#06x} (sent {sent_id:#06x})", first.id)
        },
    );
    f.insert("flags", flags(first));
    // CD apart from the other flags: RFC 4035 §3.1.6 has a security-aware server copy it, a
    // server without DNSSEC may clear it; the allowlist can excuse exactly this.
    f.insert("cd", if first.cd { "set" } else { "clear" }.into());
    f.insert("rcode", rcode_name(first.rcode));
    f.insert("question", question(first));
    f.insert("edns", edns(first));
    f.insert("ede", ede(first));
    if !transfer || first.rcode != 0 {
        f.insert("answer", section(&first.answer, signed));
        f.insert("authority", section(&first.authority, signed));
        f.insert("additional", section(&first.additional, signed));
        return f;
    }
    // A transfer: every record of every message, and the SOA framing.
    let all: Vec<super::wire::Rr> = parsed.iter().flat_map(|r| r.answer.clone()).collect();
    let rcodes: Vec<String> = parsed
        .iter()
        .filter(|r| r.rcode != 0)
        .map(|r| rcode_name(r.rcode))
        .collect();
    if !rcodes.is_empty() {
        f.insert("rcode", format!("NOERROR then {}", rcodes.join(",")));
    }
    let soa = |rr: Option<&super::wire::Rr>| {
        rr.filter(|r| r.rtype == rtype::SOA)
            .map_or("not the SOA".to_string(), |r| {
                section(std::slice::from_ref(r), signed)
            })
    };
    f.insert(
        "framing",
        format!(
            "first: {}\nlast: {}\nrecords: {}",
            soa(all.first()),
            soa(all.last()),
            all.len()
        ),
    );
    f.insert("answer", section(&all, signed));
    let extra: Vec<super::wire::Rr> = parsed
        .iter()
        .flat_map(|r| r.authority.iter().chain(&r.additional).cloned())
        .collect();
    f.insert("authority+additional", section(&extra, signed));
    f
}

/// The fields where two normalised replies differ.
pub fn differing(a: &Fields, b: &Fields) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = a.keys().chain(b.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
}

/// Shell-style match: `*` matches any run of characters, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Renders one field's value for a table cell: whole when short, else the lines that differ
/// from `other`.
pub fn cell(value: Option<&String>, other: Option<&String>) -> String {
    let v = value.map_or("(absent)", |s| s.as_str());
    let lines: Vec<&str> = v.lines().collect();
    if lines.len() <= 8 {
        return v.to_string();
    }
    let theirs: Vec<&str> = other.map_or(Vec::new(), |o| o.lines().collect());
    let only: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !theirs.contains(l))
        .collect();
    let mut s = format!("({} lines, {} not in the other)\n", lines.len(), only.len());
    for l in only.iter().take(12) {
        s += l;
        s.push('\n');
    }
    if only.len() > 12 {
        s += &format!("... {} more\n", only.len() - 12);
    }
    s
}
