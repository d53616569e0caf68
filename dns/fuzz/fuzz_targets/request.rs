//! Fuzzes the request path: any bytes, as a UDP datagram and as a TCP message, against the
//! integration tests' zones, with response rate limiting on at a rate the fuzzer exceeds (so
//! answers sent whole, empty with TC, and dropped are all exercised). The reply must be a
//! decodable response echoing the ID, and a UDP reply must fit the client's size.
//!
//! The answer cache (dns/src/fastpath.rs) is on; two engines without rate limiting, one with
//! the cache and one without, must agree, on every input (asked twice: the second may be a
//! hit): the cached engine's answer is byte for byte the other's (for a plain query with
//! capitals, the other's answer to the question in lower case, spelled back as asked). Both of
//! the cached engine's reused-buffer entry points are checked: `respond_into` (UDP) into a
//! buffer holding stale bytes, and `respond_buffered` (TCP) over the input read as a TCP stream
//! of length-prefixed messages (pipelined, the last perhaps cut short, one buffer reused for
//! them all, as dns/src/server.rs does). A plain query is asked once more with a label put in
//! front of its name, over UDP and TCP: when the name does not exist, the cached engine answers
//! it from the NXDOMAIN template built from the first answer (its compression pointers moved by
//! the label's length), and must again answer as the engine without the cache.
//!
//! The same zones signed (DNSSEC, NSEC; keys in a fresh directory under the temporary
//! directory) are served by a second pair, cached and not: the input over UDP, and the longer
//! name with the DNSSEC OK bit set (when the input has an OPT record) over UDP and TCP. An
//! NXDOMAIN with NSEC proofs, which the cache assembles from the zone's wire parts
//! (`fastpath::NsecParts`), must equal the other's once parsed (today's path compresses its
//! names, the assembly does not); every other answer byte for byte. So that those answers are
//! reached (the fuzzer cannot guess a zone's name: names are looked up by hash), each input is
//! also made into a query of a name in a zone ([`in_zone`]) asked of both pairs.
#![no_main]

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use onebox_dns::answer::{Reply, Transport};
use onebox_dns::query::Engine;
use onebox_dns::rrl::{RateLimiter, RrlConfig};
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/zones");
        let files = onebox_dns::catalog::zone_files(&dir).expect("test zones");
        let loaded = onebox_dns::catalog::load(&files, None);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let allow: Vec<onebox_dns::config::ZoneConfig> = toml::from_str::<Zones>(
            "[[zone]]\nname = \"example.test\"\nallow_transfer = [\"127.0.0.1\"]\n",
        )
        .expect("acl")
        .zone;
        let engine = Engine::new(loaded.catalog).with_rate_limiter(RateLimiter::new(RrlConfig {
            responses_per_sec: 1000,
            slip: 2,
            window_secs: 1,
            table_size: 1024,
        }));
        engine.set_zone_settings(&allow);
        engine.with_answer_cache(true)
    })
}

/// The same zones without rate limiting: with the answer cache, and without.
fn pair() -> &'static (Engine, Engine) {
    static PAIR: OnceLock<(Engine, Engine)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let catalog = engine().catalog().load_full().as_ref().clone();
        (
            Engine::new(catalog.clone()).with_answer_cache(true),
            Engine::new(catalog).with_answer_cache(false),
        )
    })
}

/// The same zones signed: with the answer cache, and without.
fn signed_pair() -> &'static (Engine, Engine) {
    static PAIR: OnceLock<(Engine, Engine)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let zones: Vec<onebox_dns::config::ZoneConfig> = toml::from_str::<Zones>(
            "[[zone]]\nname = \"example.test\"\ndnssec = true\n\
             [[zone]]\nname = \"foobar.com\"\ndnssec = true\n",
        )
        .expect("zones")
        .zone;
        let state = std::env::temp_dir().join(format!("onebox-dns-fuzz-{}", std::process::id()));
        let signer = onebox_dns::dnssec::Signer::new(
            state,
            onebox_dns::dnssec::Policy::default(),
            &zones,
        );
        let catalog = engine().catalog().load_full().as_ref().clone();
        let signed = signer.sign_catalog(catalog, None, onebox_dns::dnssec::now());
        assert_eq!(signed.zones().filter(|z| z.dnssec().is_some()).count(), 2);
        (
            Engine::new(signed.clone()).with_answer_cache(true),
            Engine::new(signed).with_answer_cache(false),
        )
    })
}

/// Whether `got`, the cached engine's reply, agrees with `want`, the reference: byte for
/// byte, or, for an NXDOMAIN with NSEC proofs (more than the SOA and its RRSIG in the authority
/// section), once parsed with the question spelled alike.
fn agrees(got: &Reply, want: &Reply) -> bool {
    match (got, want) {
        (Reply::One(a), Reply::One(b)) if a != b => {
            let proofs = a.len() > 12 && a[3] & 0x0f == 3 && u16::from_be_bytes([a[8], a[9]]) > 2;
            let question = onebox_dns::fastpath::parse(a).map_or(12, |p| p.question_end);
            proofs
                && a.get(12..question) == b.get(12..question)
                && matches!(
                    (Message::from_vec(a), Message::from_vec(b)),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        _ => got == want,
    }
}

/// A query made from `data`: 1 to 3 labels of its bytes (letters, digits, `-`, `*`, either
/// case) in front of example.test, foobar.com or a name of theirs, the type and the DO bit, RD
/// and EDNS from its bytes too.
fn in_zone(data: &[u8]) -> Option<Vec<u8>> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-*_";
    const BASES: [&[&str]; 6] = [
        &["example", "test"],
        &["foobar", "com"],
        &["www", "example", "test"],
        &["www", "foobar", "com"],
        &["sub", "example", "test"],
        &["ns1", "example", "test"],
    ];
    let (&[t0, t1, flags, shape], rest) = data.split_first_chunk::<4>()? else {
        return None;
    };
    let mut q = vec![0x12, 0x34, flags & 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    let labels = usize::from(shape % 4);
    let mut bytes = rest.iter();
    for _ in 0..labels {
        let len = 1 + usize::from(*bytes.next()? % 20);
        q.push(u8::try_from(len).ok()?);
        for _ in 0..len {
            q.push(CHARS[usize::from(*bytes.next()?) % CHARS.len()]);
        }
    }
    for label in BASES[usize::from(shape / 4) % BASES.len()] {
        q.push(u8::try_from(label.len()).ok()?);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[t0 % 2 * t0, t1, 0, 1]); // mostly types below 256
    if flags & 0x02 == 0 {
        q[11] = 1;
        let dnssec = if flags & 0x04 == 0 { 0x80 } else { 0 };
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, dnssec, 0, 0, 0]);
    }
    Some(q)
}

/// `request` (a plain query with an OPT record) with the DNSSEC OK bit set; else as it is.
fn with_do(request: &[u8]) -> Vec<u8> {
    let mut out = request.to_vec();
    if let Some(plain) = onebox_dns::fastpath::parse(request)
        && plain.edns
        && let Some(flags) = out.get_mut(plain.question_end + 7)
    {
        *flags |= 0x80;
    }
    out
}

#[derive(serde::Deserialize)]
struct Zones {
    zone: Vec<onebox_dns::config::ZoneConfig>,
}

/// The answer without the cache to `request`, as the cache should give it: for a plain query
/// with capitals, the answer to the question in lower case with the question spelled as asked.
fn reference(engine: &Engine, request: &[u8], transport: Transport) -> Reply {
    let client = "127.0.0.1:5300".parse().expect("addr");
    let Some(plain) = onebox_dns::fastpath::parse(request) else {
        return engine.respond(request, transport, client);
    };
    let mut lowered = Vec::new();
    if !onebox_dns::fastpath::lowered(request, plain, &mut lowered) {
        return engine.respond(request, transport, client);
    }
    let mut reply = engine.respond(&lowered, transport, client);
    if let Reply::One(bytes) = &mut reply {
        onebox_dns::fastpath::spell(bytes, request, plain.question_end);
    }
    reply
}

/// `request` (a plain query) with a label of `len` bytes (taken from the request, lower-case
/// letters) put in front of its question's name, if the name stays within 255 bytes.
fn prefixed(request: &[u8], len: usize) -> Option<Vec<u8>> {
    let plain = onebox_dns::fastpath::parse(request)?;
    if plain.question_end - 16 + len + 1 > 255 {
        return None;
    }
    let mut out = request.get(..12)?.to_vec();
    out.push(u8::try_from(len).ok()?);
    out.extend((0..len).map(|i| b'a' + request.get(i).map_or(0, |b| b % 26)));
    out.extend_from_slice(request.get(12..)?);
    Some(out)
}

/// What `respond_into` / `respond_buffered` gave, as a [`Reply`].
fn written(reply: Option<Reply>, out: &[u8]) -> Reply {
    reply.unwrap_or_else(|| Reply::One(out.to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let client = "127.0.0.1:5300".parse().expect("addr");
    let (cached, uncached) = pair();
    // UDP: respond_into, a buffer with stale bytes, twice (the second may be a hit).
    let mut out = vec![0xa5; 3];
    for _ in 0..2 {
        let sent = cached.respond_into(data, Transport::Udp, client, &mut out);
        match reference(uncached, data, Transport::Udp) {
            Reply::One(want) => assert!(sent && out == want, "udp: {out:?} != {want:?}"),
            _ => assert!(!sent),
        }
    }
    // The name one label longer (1 to 63 bytes): an NXDOMAIN template's answer, if it does not
    // exist.
    let len = 1 + usize::from(data.first().copied().unwrap_or(0)) % 63;
    if let Some(longer) = prefixed(data, len) {
        for transport in [Transport::Udp, Transport::Tcp] {
            let got = written(
                cached.respond_buffered(&longer, transport, client, &mut out),
                &out,
            );
            assert_eq!(
                got,
                reference(uncached, &longer, transport),
                "{transport:?}"
            );
        }
    }
    // Signed zones: the input, then the longer name with DO.
    let (signed_cached, signed_uncached) = signed_pair();
    for _ in 0..2 {
        let got = written(
            signed_cached.respond_buffered(data, Transport::Udp, client, &mut out),
            &out,
        );
        let want = reference(signed_uncached, data, Transport::Udp);
        assert!(agrees(&got, &want), "signed udp: {got:?} != {want:?}");
    }
    if let Some(longer) = prefixed(data, len) {
        let longer = with_do(&longer);
        for transport in [Transport::Udp, Transport::Tcp] {
            for _ in 0..2 {
                let got = written(
                    signed_cached.respond_buffered(&longer, transport, client, &mut out),
                    &out,
                );
                let want = reference(signed_uncached, &longer, transport);
                assert!(agrees(&got, &want), "signed {transport:?}: {got:?} != {want:?}");
            }
        }
    }
    // A name in a zone, made from the input: unsigned and signed, twice each (the second may be
    // a hit, or a template's).
    if let Some(query) = in_zone(data) {
        for transport in [Transport::Udp, Transport::Tcp] {
            for _ in 0..2 {
                let got = written(
                    cached.respond_buffered(&query, transport, client, &mut out),
                    &out,
                );
                assert_eq!(got, reference(uncached, &query, transport), "{transport:?}");
                let got = written(
                    signed_cached.respond_buffered(&query, transport, client, &mut out),
                    &out,
                );
                let want = reference(signed_uncached, &query, transport);
                assert!(agrees(&got, &want), "signed {transport:?}: {got:?} != {want:?}");
            }
        }
    }
    // TCP: the input as a stream of length-prefixed messages, one buffer reused for all.
    let mut buffered = vec![0x5a; 5];
    let mut at = 0usize;
    while let Some(&[hi, lo]) = data.get(at..at + 2) {
        let end = at + 2 + usize::from(u16::from_be_bytes([hi, lo]));
        let Some(request) = data.get(at + 2..end) else {
            break; // cut short: the start of a message not yet read
        };
        at = end;
        for _ in 0..2 {
            let got = written(
                cached.respond_buffered(request, Transport::Tcp, client, &mut buffered),
                &buffered,
            );
            assert_eq!(got, reference(uncached, request, Transport::Tcp));
        }
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let reply = engine().respond(data, transport, client);
        let messages = match &reply {
            Reply::Drop => continue,
            Reply::One(bytes) => vec![bytes],
            Reply::Many(all) => all.iter().collect(),
        };
        for bytes in messages {
            assert_eq!(&bytes[..2], &data[..2]);
            let message = Message::from_vec(bytes).expect("replies decode");
            if transport == Transport::Udp {
                let limit = Message::from_vec(data)
                    .ok()
                    .and_then(|m| m.edns)
                    .map_or(512, |e| e.max_payload().clamp(512, 1232));
                assert!(bytes.len() <= usize::from(limit));
            }
            drop(message);
        }
    }
});
