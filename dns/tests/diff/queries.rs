//! The query set: every request the differential test sends to all three servers. Each case has
//! a stable label (used by the allowlist and KNOWN_FAILURES) that spells out the request:
//! `TRANSPORT NAME CLASS TYPE` followed by what differs from the default request (opcode QUERY,
//! RD clear, one question, EDNS version 0 with a 1232-byte payload and no options).

use std::collections::BTreeSet;

use super::transport::Transport;
use super::wire::{EdnsRequest, Request, class, class_name, opcode_name, rtype, type_name};

/// One request to send, and how.
#[derive(Clone, Debug)]
pub struct Case {
    /// Stable, unique, human-readable description of the request.
    pub label: String,
    /// UDP or TCP.
    pub transport: Transport,
    /// The request.
    pub request: Request,
    /// A zone transfer: read the stream of messages.
    pub transfer: bool,
}

/// Builds the label of a request.
pub fn label(transport: Transport, r: &Request) -> String {
    let mut l = format!(
        "{transport} {} {} {}",
        r.name,
        class_name(r.qclass),
        type_name(r.qtype)
    );
    if r.opcode != 0 {
        l += &format!(" op={}", opcode_name(r.opcode));
    }
    for (on, tag) in [(r.qr, "qr"), (r.rd, "rd"), (r.cd, "cd"), (r.ad, "ad")] {
        if on {
            l += &format!(" +{tag}");
        }
    }
    if r.questions != 1 {
        l += &format!(" qdcount={}", r.questions);
    }
    if let Some(s) = r.ixfr_serial {
        l += &format!(" ixfr-serial={s}");
    }
    match &r.edns {
        None => l += " noedns",
        Some(e) => {
            if e.size != 1232 {
                l += &format!(" bufsize={}", e.size);
            }
            if e.version != 0 {
                l += &format!(" ednsver={}", e.version);
            }
            if e.dnssec_ok {
                l += " +do";
            }
            for (code, _) in &e.options {
                l += &format!(" ednsopt={code}");
            }
        }
    }
    l
}

/// Names in onebox.test, each chosen for one rule (see the zone file's comments).
const ONEBOX_NAMES: &[&str] = &[
    "onebox.test",
    "www.onebox.test",
    "ns1.onebox.test",
    "ns2.onebox.test",
    "mail1.onebox.test",
    "mail2.onebox.test",
    "mailalias.onebox.test",
    "_sip._tcp.onebox.test",
    "_tcp.onebox.test",
    "sip.onebox.test",
    "chain1.onebox.test",
    "chain3.onebox.test",
    "out.onebox.test",
    "tofoobar.onebox.test",
    "dangling.onebox.test",
    "tonodata.onebox.test",
    "loop1.onebox.test",
    "child.onebox.test",
    "ns1.child.onebox.test",
    "below.child.onebox.test",
    "deep.below.child.onebox.test",
    "anything.wild.onebox.test",
    "a.b.wild.onebox.test",
    "*.wild.onebox.test",
    "wild.onebox.test",
    "exists.wild.onebox.test",
    "sub.exists.wild.onebox.test",
    "ent.wild.onebox.test",
    "x.ent.wild.onebox.test",
    "x.wcname.onebox.test",
    "x.wcout.onebox.test",
    "ent.onebox.test",
    "b.ent.onebox.test",
    "a.b.ent.onebox.test",
    "nx.b.ent.onebox.test",
    "big.onebox.test",
    "mixed.onebox.test",
    "MIXED.ONEBOX.TEST",
    "wWw.OnEbOx.TeSt",
    "ptr.onebox.test",
    "hinfo.onebox.test",
    "nonexistent.onebox.test",
    "deep.nonexistent.onebox.test",
];

/// Names in the project's own zone (zones/foobar.com.zone), other zones and no zone.
const OTHER_NAMES: &[&str] = &[
    "foobar.com",
    "www.foobar.com",
    "ns1.foobar.com",
    "nx.foobar.com",
    "rfc3597.test",
    "unk.rfc3597.test",
    "nx.rfc3597.test",
    "www.example.org",
    "test",
    "com",
    ".",
    "outside.example",
];

/// Types asked for every name.
const TYPES: &[u16] = &[
    rtype::A,
    rtype::AAAA,
    rtype::NS,
    rtype::MX,
    rtype::TXT,
    rtype::SOA,
    rtype::CNAME,
    rtype::CAA,
    rtype::SRV,
    rtype::PTR,
    rtype::DS,
    rtype::DNSKEY,
    65000,
    rtype::ANY,
];

fn edns(size: u16) -> Option<EdnsRequest> {
    Some(EdnsRequest {
        size,
        version: 0,
        dnssec_ok: false,
        options: Vec::new(),
    })
}

/// The whole query set, labels unique.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |transport: Transport, request: Request| {
        let transfer = matches!(request.qtype, rtype::AXFR | rtype::IXFR);
        cases.push(Case {
            label: label(transport, &request),
            transport,
            request,
            transfer,
        });
    };
    use Transport::{Tcp, Udp};

    // 1. Every name × every type, UDP, EDNS 1232.
    for name in ONEBOX_NAMES.iter().chain(OTHER_NAMES) {
        for &t in TYPES {
            add(Udp, Request::new(name, t));
        }
    }

    // 2. The same names over TCP for the address and "give me everything" types.
    for name in ONEBOX_NAMES.iter().chain(OTHER_NAMES) {
        for t in [rtype::A, rtype::ANY] {
            add(Tcp, Request::new(name, t));
        }
    }

    // 3. EDNS variants and no EDNS, on a positive answer, a negative one, a referral and the big
    //    name that does not fit 512 or 1232 bytes (TC over UDP, complete over TCP).
    let probes: &[(&str, u16)] = &[
        ("www.onebox.test", rtype::A),
        ("onebox.test", rtype::MX),
        ("nonexistent.onebox.test", rtype::A),
        ("below.child.onebox.test", rtype::A),
        ("big.onebox.test", rtype::TXT),
        ("big.onebox.test", rtype::ANY),
        ("onebox.test", rtype::ANY),
        ("www.example.org", rtype::A),
    ];
    for &(name, t) in probes {
        for transport in [Udp, Tcp] {
            let mut r = Request::new(name, t);
            r.edns = None;
            add(transport, r);
            for size in [0u16, 100, 512, 1400, 4096, 65535] {
                let mut r = Request::new(name, t);
                r.edns = edns(size);
                add(transport, r);
            }
            let mut r = Request::new(name, t);
            r.edns = Some(EdnsRequest {
                size: 1232,
                version: 1,
                dnssec_ok: false,
                options: Vec::new(),
            });
            add(transport, r);
            let mut r = Request::new(name, t);
            r.edns = Some(EdnsRequest {
                size: 4096,
                version: 0,
                dnssec_ok: true,
                options: Vec::new(),
            });
            add(transport, r);
            // An unknown option (must be ignored, RFC 6891 §6.1.2), a cookie (RFC 7873; a
            // server without cookie support ignores it) and an NSID request (RFC 5001; none
            // configured anywhere, so no NSID option in the answer).
            for (code, data) in [
                (65001u16, vec![1, 2, 3]),
                (10, vec![0x11; 8]),
                (3, Vec::new()),
            ] {
                let mut r = Request::new(name, t);
                r.edns = Some(EdnsRequest {
                    size: 1232,
                    version: 0,
                    dnssec_ok: false,
                    options: vec![(code, data)],
                });
                add(transport, r);
            }
        }
    }

    // 4. Header flags: RD (recursion desired, never available), CD, AD, all three.
    for &(name, t) in probes {
        for transport in [Udp, Tcp] {
            for (rd, cd, ad) in [
                (true, false, false),
                (false, true, false),
                (false, false, true),
                (true, true, true),
            ] {
                let mut r = Request::new(name, t);
                (r.rd, r.cd, r.ad) = (rd, cd, ad);
                add(transport, r);
            }
        }
    }

    // 5. Classes other than IN: CH (incl. the server-identity names), HS, NONE, ANY.
    for (name, t) in [
        ("www.onebox.test", rtype::A),
        ("onebox.test", rtype::SOA),
        ("version.bind", rtype::TXT),
        ("id.server", rtype::TXT),
        ("hostname.bind", rtype::TXT),
        ("nonexistent.onebox.test", rtype::A),
        ("www.example.org", rtype::A),
    ] {
        for c in [class::CH, class::HS, class::NONE, class::ANY] {
            for transport in [Udp, Tcp] {
                let mut r = Request::new(name, t);
                r.qclass = c;
                add(transport, r);
            }
        }
    }

    // 6. Opcodes other than QUERY: IQUERY (obsolete, RFC 3425), STATUS, the unassigned 3,
    //    NOTIFY from a host that is no primary, UPDATE (not supported), DSO (6), 15.
    for op in [1u8, 2, 3, 4, 5, 6, 15] {
        for transport in [Udp, Tcp] {
            let mut r = Request::new("onebox.test", rtype::SOA);
            r.opcode = op;
            add(transport, r);
            let mut r = Request::new("www.onebox.test", rtype::A);
            r.opcode = op;
            r.edns = None;
            add(transport, r);
        }
    }

    // 7. Parseable but malformed requests: no question, two questions, QR set.
    for transport in [Udp, Tcp] {
        for (name, t) in [
            ("www.onebox.test", rtype::A),
            ("nonexistent.onebox.test", rtype::A),
        ] {
            for with_edns in [true, false] {
                for qd in [0u8, 2] {
                    let mut r = Request::new(name, t);
                    r.questions = qd;
                    if !with_edns {
                        r.edns = None;
                    }
                    add(transport, r);
                }
                let mut r = Request::new(name, t);
                r.qr = true;
                if !with_edns {
                    r.edns = None;
                }
                add(transport, r);
            }
        }
    }

    // 8. Meta types in the wrong place: AXFR/IXFR over UDP, MAILB/MAILA (obsolete), OPT, RRSIG.
    for t in [rtype::AXFR, rtype::IXFR, 253, 254, rtype::OPT, rtype::RRSIG] {
        let mut r = Request::new("onebox.test", t);
        if t == rtype::IXFR {
            r.ixfr_serial = Some(2026112100);
        }
        add(Udp, r);
    }

    // 9. Zone transfers over TCP: allowed (onebox.test, and big.test in many messages), denied
    //    (foobar.com: no transfer permission anywhere), not a zone apex, not our zone, IXFR from
    //    an older serial (no history: a full transfer, RFC 1995 §4), from the current serial (up
    //    to date: one SOA) and AXFR with the wrong class.
    for (name, t, serial) in [
        ("onebox.test", rtype::AXFR, None),
        ("ONEBOX.test", rtype::AXFR, None),
        ("big.test", rtype::AXFR, None),
        ("foobar.com", rtype::AXFR, None),
        ("www.onebox.test", rtype::AXFR, None),
        ("example.org", rtype::AXFR, None),
        ("onebox.test", rtype::IXFR, Some(2026112100u32)),
        ("onebox.test", rtype::IXFR, Some(2026112201)),
        ("foobar.com", rtype::IXFR, Some(2026112100)),
    ] {
        let mut r = Request::new(name, t);
        r.ixfr_serial = serial;
        r.edns = None;
        add(Tcp, r);
    }
    let mut r = Request::new("onebox.test", rtype::AXFR);
    r.qclass = class::CH;
    r.edns = None;
    add(Tcp, r);

    finish(&mut cases);
    cases
}

/// Names only the signed run asks for, beyond [`ONEBOX_NAMES`]: the signed delegation (DS at
/// the cut), below it, and names that fall in the NSEC chain's gaps at its ends and middle.
const SIGNED_EXTRA_NAMES: &[&str] = &[
    "secure.onebox.test",
    "ns1.secure.onebox.test",
    "x.secure.onebox.test",
    "a.onebox.test",
    "zzz.onebox.test",
    "*.onebox.test",
    "x.b.wild.onebox.test",
    "x.deep.ent.wild.onebox.test",
    "x.a.b.ent.onebox.test",
    "x.www.onebox.test",
];

/// Names of the signed run in the other signed zones (foobar.com, rfc3597.test) and in none.
const SIGNED_OTHER_NAMES: &[&str] = &[
    "foobar.com",
    "www.foobar.com",
    "ns1.foobar.com",
    "nx.foobar.com",
    "rfc3597.test",
    "unk.rfc3597.test",
    "nx.rfc3597.test",
    "www.example.org",
];

/// Types the signed run asks for: the unsigned run's, and the DNSSEC types.
const SIGNED_TYPES: &[u16] = &[
    rtype::RRSIG,
    rtype::NSEC,
    rtype::NSEC3,
    rtype::NSEC3PARAM,
    rtype::CDS,
    rtype::CDNSKEY,
];

/// The signed run's query set (dns/tests/differential.rs, `onebox_dns_signs_like_knot`): every
/// request has DO set; labels start with `signed `.
pub fn signed() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |transport: Transport, mut request: Request| {
        if let Some(e) = request.edns.as_mut() {
            e.dnssec_ok = true;
        }
        let transfer = matches!(request.qtype, rtype::AXFR | rtype::IXFR);
        cases.push(Case {
            label: format!("signed {}", label(transport, &request)),
            transport,
            request,
            transfer,
        });
    };
    use Transport::{Tcp, Udp};
    let names = || {
        ONEBOX_NAMES
            .iter()
            .chain(SIGNED_EXTRA_NAMES)
            .chain(SIGNED_OTHER_NAMES)
    };
    let big = |name: &str, t: u16| {
        let mut r = Request::new(name, t);
        r.edns = edns(4096);
        r
    };

    // 1. Every name × every type and the DNSSEC types, UDP with a 4096-byte payload (room for
    //    the signatures and proofs).
    for name in names() {
        for &t in TYPES.iter().chain(SIGNED_TYPES) {
            add(Udp, big(name, t));
        }
    }

    // 2. Over TCP: every name for A (positive, NODATA, NXDOMAIN, referral, wildcard, CNAME) and
    //    the apex key RRsets.
    for name in names() {
        add(Tcp, big(name, rtype::A));
    }
    for name in ["onebox.test", "foobar.com", "rfc3597.test"] {
        for t in [
            rtype::DNSKEY,
            rtype::CDS,
            rtype::CDNSKEY,
            rtype::NSEC,
            rtype::ANY,
        ] {
            add(Tcp, big(name, t));
        }
    }

    // 3. The default 1232-byte payload and 512 over UDP (what does not fit: TC, or additional
    //    data left out), on answers whose proofs make them large.
    for (name, t) in [
        ("www.onebox.test", rtype::A),
        ("onebox.test", rtype::MX),
        ("onebox.test", rtype::DNSKEY),
        ("nonexistent.onebox.test", rtype::A),
        ("anything.wild.onebox.test", rtype::A),
        ("x.ent.wild.onebox.test", rtype::AAAA),
        ("below.child.onebox.test", rtype::A),
        ("secure.onebox.test", rtype::A),
        ("big.onebox.test", rtype::TXT),
    ] {
        for size in [512u16, 1232] {
            let mut r = Request::new(name, t);
            r.edns = edns(size);
            add(Udp, r);
        }
    }

    // 4. CD set, as a validating resolver asks.
    for (name, t) in [
        ("www.onebox.test", rtype::A),
        ("nonexistent.onebox.test", rtype::A),
    ] {
        let mut r = big(name, t);
        r.cd = true;
        add(Udp, r);
    }

    // 5. The signed zone whole: the NSEC chain, every RRSIG's structure.
    let mut r = Request::new("onebox.test", rtype::AXFR);
    r.edns = edns(4096);
    add(Tcp, r);

    finish(&mut cases);
    cases
}

/// Checks the labels are unique and gives each case its ID.
fn finish(cases: &mut [Case]) {
    // Unique labels and IDs.
    let mut seen = BTreeSet::new();
    for c in cases.iter() {
        assert!(
            seen.insert(c.label.clone()),
            "duplicate query label {}",
            c.label
        );
    }
    for (i, c) in cases.iter_mut().enumerate() {
        c.request.id = (i as u16).wrapping_mul(7919).wrapping_add(1);
    }
}
