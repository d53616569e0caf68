//! The answer cache's proof of equality (dns/src/fastpath.rs): for every request of the
//! differential suite (dns/tests/diff/queries.rs, the unsigned set against the differential
//! zones and the signed set against the same zones signed), sent over UDP and over TCP, an
//! engine with the cache answers byte for byte as one without: the first time (a miss, which fills the cache),
//! again with another ID and RD flipped (a hit), with the question's name in other capitals (a
//! hit of the same entry: equal once parsed, names compared case-insensitively, the question
//! spelled as asked) and once more (a hit again); a request with EDNS is asked once more with a client
//! COOKIE and once with a client and server COOKIE (RFC 7873), each a hit of the first entry. Rate limiting slips and drops hits as it does answers
//! built today, and the metrics count the same. A new catalog empties the cache. An NXDOMAIN
//! with NSEC proofs (DO, signed zone), which the cache assembles from the zone's wire parts, is
//! compared once parsed (today's path compresses its names, the assembly writes them out).

// A test fails by panicking with a message.
#![allow(clippy::panic, clippy::unwrap_used)]

#[allow(dead_code)]
mod diff;

use onebox_dns::answer::{Reply, Transport};
use onebox_dns::catalog::{self, Catalog};
use onebox_dns::config::ZoneConfig;
use onebox_dns::metrics::{self, Metrics};
use onebox_dns::query::Engine;
use onebox_dns::rrl::{RateLimiter, RrlConfig};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

const CLIENT: &str = "192.0.2.77:5300";

/// The differential zones (dns/tests/diff/zones, the project's foobar.com, a large big.test).
fn load_zones(dir: &Path) -> Catalog {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(manifest.join("tests/diff/zones")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "zone") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(
        manifest.join("../zones/foobar.com.zone"),
        dir.join("foobar.com.zone"),
    )
    .unwrap();
    let mut big = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\n",
    );
    for i in 0..300 {
        let _ = writeln!(big, "host{i} IN A 10.0.{}.{}", i / 256, i % 256);
    }
    std::fs::write(dir.join("big.test.zone"), big).unwrap();
    let loaded = catalog::load(&catalog::zone_files(dir).unwrap(), None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.catalog
}

/// The differential zones, onebox.test, foobar.com and rfc3597.test signed as the signed
/// differential run signs them.
fn signed_zones(dir: &Path, state: &Path) -> Catalog {
    #[derive(serde::Deserialize)]
    struct Zones {
        zone: Vec<ZoneConfig>,
    }
    let zones: Vec<ZoneConfig> = toml::from_str::<Zones>(
        "[[zone]]\nname = \"onebox.test\"\ndnssec = true\n\
         [[zone]]\nname = \"foobar.com\"\ndnssec = true\n\
         [[zone]]\nname = \"rfc3597.test\"\ndnssec = true\n",
    )
    .unwrap()
    .zone;
    let signer = onebox_dns::dnssec::Signer::new(
        state.to_path_buf(),
        onebox_dns::dnssec::Policy::default(),
        &zones,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let catalog = signer.sign_catalog(load_zones(dir), None, now);
    assert!(
        catalog.zones().filter(|z| z.dnssec().is_some()).count() == 3,
        "three zones signed"
    );
    catalog
}

/// The requests of `cases`, each once (UDP and TCP cases ask the same bytes).
fn requests(cases: &[diff::queries::Case]) -> Vec<Vec<u8>> {
    let mut seen = BTreeSet::new();
    cases
        .iter()
        .map(|c| c.request.encode())
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

/// `request` with the question's letters in other capitals (every other letter flipped).
fn recased(request: &[u8]) -> Vec<u8> {
    let mut out = request.to_vec();
    let mut at = 12;
    let mut flip = true;
    while let Some(&len) = out.get(at) {
        if len == 0 || len > 63 {
            break;
        }
        for b in out.iter_mut().skip(at + 1).take(usize::from(len)) {
            if b.is_ascii_alphabetic() {
                if flip {
                    *b ^= 0x20;
                }
                flip = !flip;
            }
        }
        at += 1 + usize::from(len);
    }
    out
}

/// `request` with another ID and RD flipped.
fn other_id(request: &[u8], id: u16) -> Vec<u8> {
    let mut out = request.to_vec();
    if out.len() >= 3 {
        out[..2].copy_from_slice(&id.to_be_bytes());
        out[2] ^= 0x01;
    }
    out
}

/// `request` (a plain query with EDNS and no option) with a COOKIE option of `len` bytes and
/// another ID; `None` for other requests.
fn with_cookie(request: &[u8], len: usize, id: u16) -> Option<Vec<u8>> {
    let plain = onebox_dns::fastpath::parse(request)?;
    if !plain.edns || plain.key_end != request.len() {
        return None;
    }
    let mut out = other_id(request, id);
    out[2] ^= 0x01; // RD as asked
    let at = out.len() - 2;
    out[at..].copy_from_slice(&((4 + len) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 10]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend((0..len).map(|i| (i as u8).wrapping_mul(37)));
    Some(out)
}

/// Whether the question's name of `request` (a plain query) has a capital letter.
fn has_capitals(request: &[u8]) -> bool {
    onebox_dns::fastpath::parse(request).is_some_and(|plain| {
        request
            .get(12..plain.question_end - 4)
            .is_some_and(|name| name.iter().any(u8::is_ascii_uppercase))
    })
}

/// `request` (a plain query) with its question's name in lower case.
fn lowercased(request: &[u8]) -> Vec<u8> {
    let mut out = request.to_vec();
    if let Some(plain) = onebox_dns::fastpath::parse(request) {
        out[12..plain.question_end - 4].make_ascii_lowercase();
    }
    out
}

/// Whether `a` and `b`, two replies to `request`, are the same message once parsed (names
/// compared case-insensitively, as hickory's `Name` compares them) and `a`'s question is
/// spelled exactly as `request`'s (so a hit with other capitals echoes them).
fn same_but_for_case(a: &Reply, b: &Reply, request: &[u8]) -> bool {
    use hickory_proto::op::Message;
    match (a, b) {
        (Reply::One(x), Reply::One(y)) => {
            let question_spelled = match onebox_dns::fastpath::parse(request) {
                Some(plain) => x.get(12..plain.question_end) == request.get(12..plain.question_end),
                None => true,
            };
            let parsed = match (Message::from_vec(x), Message::from_vec(y)) {
                (Ok(p), Ok(q)) if p == q => true,
                // Today's path compresses other capitals less well (hickory compares label
                // bytes case-sensitively): at a small payload size fewer additional records
                // fit. All else is the same, and what it does send is among `a`'s.
                (Ok(mut p), Ok(mut q)) => {
                    let pa = std::mem::take(&mut p.additionals);
                    let qa = std::mem::take(&mut q.additionals);
                    p == q && qa.iter().all(|r| pa.contains(r))
                }
                _ => x == y,
            };
            question_spelled && parsed
        }
        _ => a == b,
    }
}

/// Whether `reply` is an NXDOMAIN answer with NSEC proofs (DO on a signed zone: more than the
/// SOA and its RRSIG in the authority section): the fast path assembles those from the zone's
/// parts (dns/src/fastpath.rs `NsecParts`), equal to today's answer once parsed, not byte for
/// byte (today's path compresses the NSEC owners and the SOA's names).
fn nsec_denial(reply: &Reply) -> bool {
    matches!(reply, Reply::One(b) if b.len() > 12
        && b[3] & 0x0f == 3
        && u16::from_be_bytes([b[8], b[9]]) > 2)
}

/// Whether the cached engine's reply `a` to `request` is `b`, today's: byte for byte, or, for
/// an NXDOMAIN with NSEC proofs ([`nsec_denial`]), once parsed (with the question spelled as
/// asked).
fn same(a: &Reply, b: &Reply, request: &[u8]) -> bool {
    if nsec_denial(a) || nsec_denial(b) {
        same_but_for_case(a, b, request)
    } else {
        a == b
    }
}

/// The metrics rendered, lines sorted (the order of labelled series is the hash map's).
fn metrics_text(engine: &Engine, metrics: &Metrics) -> Vec<String> {
    let text = metrics::render(&metrics::registry(metrics, engine.catalog().clone()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The engines the equality tests compare: `on` with the answer cache, `off` without it (each
/// with its metrics), and `reference`, without the cache and uncounted, which answers the
/// questions in lower case.
struct Engines {
    on: Engine,
    m_on: Arc<Metrics>,
    off: Engine,
    m_off: Arc<Metrics>,
    reference: Engine,
}

fn engines(catalog: Catalog) -> Engines {
    let (m_on, m_off) = (Arc::new(Metrics::default()), Arc::new(Metrics::default()));
    Engines {
        on: Engine::new(catalog.clone())
            .with_answer_cache(true)
            .with_metrics(m_on.clone()),
        reference: Engine::new(catalog.clone()).with_answer_cache(false),
        off: Engine::new(catalog)
            .with_answer_cache(false)
            .with_metrics(m_off.clone()),
        m_on,
        m_off,
    }
}

/// Both engines' answers to every request of `cases`, in four rounds; returns how many requests
/// there were and how many were cached the first time (and so answered from the cache in the
/// second and fourth rounds).
fn compare(catalog: Catalog, cases: &[diff::queries::Case], what: &str) -> (usize, usize) {
    let mut cookie_hits = 0;
    let mut recased_differ = 0;
    let client: SocketAddr = CLIENT.parse().unwrap();
    let Engines {
        on,
        m_on,
        off,
        m_off,
        reference,
    } = engines(catalog);
    let requests = requests(cases);
    let mut hits = 0;
    for (n, request) in requests.iter().enumerate() {
        for transport in [Transport::Udp, Transport::Tcp] {
            let second = other_id(request, 0xbeef ^ n as u16);
            let third = recased(&second);
            let fourth = other_id(&third, 0x0f0f ^ n as u16);
            let cookies = [8, 24].map(|len| with_cookie(request, len, 0xc00c ^ n as u16));
            let rounds = [request, &second, &third, &fourth]
                .into_iter()
                .chain(cookies.iter().flatten());
            let mut first_cached = false;
            for (round, r) in rounds.enumerate() {
                let before = on.cached_answers();
                let a = on.respond(r, transport, client);
                let b = off.respond(r, transport, client);
                let label = || {
                    cases
                        .iter()
                        .find(|c| c.request.encode() == *request)
                        .map_or("", |c| c.label.as_str())
                        .to_string()
                };
                if has_capitals(r) {
                    // Capitals: byte for byte the answer to the question in lower case with
                    // the question spelled as asked, and equal to today's answer once parsed.
                    let mut lower = reference.respond(&lowercased(r), transport, client);
                    if let (Reply::One(bytes), Some(plain)) =
                        (&mut lower, onebox_dns::fastpath::parse(r))
                    {
                        onebox_dns::fastpath::spell(bytes, r, plain.question_end);
                    }
                    assert!(
                        same(&a, &lower, r),
                        "{what}: request {n} ({}) over {transport:?}, round {round}: not the \
                         answer in lower case",
                        label()
                    );
                    if !same_but_for_case(&a, &b, r) {
                        panic!(
                            "{what}: request {n} ({}) over {transport:?}, round {round}: the \
                             cached engine answers otherwise:\n{a:?}\n{b:?}",
                            label()
                        );
                    }
                    if a != b {
                        recased_differ += 1;
                    }
                } else {
                    assert!(
                        same(&a, &b, r),
                        "{what}: request {n} ({}) over {transport:?}, round {round}: the cached \
                         engine answers otherwise:\n{a:?}\n{b:?}",
                        label()
                    );
                }
                let added = on.cached_answers() - before;
                match round {
                    0 => {
                        hits += added;
                        first_cached = added > 0;
                    }
                    // Same key as the first (other capitals, a COOKIE): a hit, nothing new.
                    _ => assert_eq!(added, 0, "{what}: request {n} round {round}"),
                }
                if round >= 4 && first_cached {
                    cookie_hits += 1;
                }
            }
        }
    }
    assert_eq!(
        metrics_text(&on, &m_on),
        metrics_text(&off, &m_off),
        "{what}: the metrics count the same"
    );
    println!("{what}: {cookie_hits} requests with a COOKIE answered from the cache");
    println!("{what}: {recased_differ} answers to other capitals equal only once parsed");
    assert!(cookie_hits > 100, "{what}: {cookie_hits} cookie hits");
    (requests.len(), hits)
}

#[test]
fn cached_answers_are_byte_identical_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let (requests, hits) = compare(load_zones(dir.path()), &diff::queries::all(), "unsigned");
    println!("unsigned: {requests} requests, {hits} answered from the cache the second time");
    assert!(
        requests > 600 && hits > 400,
        "{requests} requests, {hits} hits"
    );
}

#[test]
fn cached_answers_are_byte_identical_signed() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let catalog = signed_zones(dir.path(), state.path());
    let (requests, hits) = compare(catalog, &diff::queries::signed(), "signed");
    println!("signed: {requests} requests, {hits} answered from the cache the second time");
    assert!(
        requests > 600 && hits > 400,
        "{requests} requests, {hits} hits"
    );
}

/// A plain query for `name` (labels) and `qtype`, EDNS 1232, DO as given.
fn query(id: u16, name: &str, qtype: u16, dnssec: bool) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0]);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[
        0,
        1,
        0,
        0,
        41,
        4,
        0xd0,
        0,
        0,
        if dnssec { 0x80 } else { 0 },
        0,
        0,
        0,
    ]);
    q
}

#[test]
fn rate_limiting_slips_and_drops_hits_as_it_does_answers() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = load_zones(dir.path());
    let client: SocketAddr = CLIENT.parse().unwrap();
    let rrl = || {
        RateLimiter::new(RrlConfig {
            responses_per_sec: 1,
            slip: 2,
            window_secs: 1,
            table_size: 1024,
        })
    };
    let (m_on, m_off) = (Arc::new(Metrics::default()), Arc::new(Metrics::default()));
    let on = Engine::new(catalog.clone())
        .with_answer_cache(true)
        .with_rate_limiter(rrl())
        .with_metrics(m_on.clone());
    let off = Engine::new(catalog)
        .with_answer_cache(false)
        .with_rate_limiter(rrl())
        .with_metrics(m_off.clone());
    let asked = [
        query(1, "www.onebox.test", 1, false),
        query(2, "nothing-here.onebox.test", 1, false),
        query(3, "www.onebox.test", 28, false),
        query(4, "onebox.test", 6, true),
    ];
    let mut kinds = BTreeSet::new();
    for round in 0..7u16 {
        for request in &asked {
            let request = other_id(request, 100 + round);
            let a = on.respond(&request, Transport::Udp, client);
            let b = off.respond(&request, Transport::Udp, client);
            assert_eq!(a, b, "round {round}");
            kinds.insert(match &a {
                Reply::Drop => "dropped",
                Reply::One(bytes) if bytes[2] & 0x02 != 0 => "slipped",
                _ => "sent",
            });
        }
    }
    assert_eq!(kinds.len(), 3, "sent, slipped and dropped: {kinds:?}");
    assert!(on.cached_answers() > 0);
    assert_eq!(metrics_text(&on, &m_on), metrics_text(&off, &m_off));
}

#[test]
fn a_new_catalog_empties_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = load_zones(dir.path());
    let client: SocketAddr = CLIENT.parse().unwrap();
    let engine = Engine::new(catalog).with_answer_cache(true);
    let ask = || {
        engine.respond(
            &query(7, "www.onebox.test", 1, false),
            Transport::Udp,
            client,
        )
    };
    let first = ask();
    assert_eq!(ask(), first);
    assert_eq!(engine.cached_answers(), 1);
    // The zone changes (a reload, a transfer, signing again: each stores a new catalog).
    let zone = std::fs::read_to_string(dir.path().join("onebox.test.zone")).unwrap();
    let www = zone
        .lines()
        .find(|l| l.starts_with("www") && l.contains(" A  "))
        .unwrap_or_else(|| panic!("www's A record in onebox.test.zone"));
    std::fs::write(
        dir.path().join("onebox.test.zone"),
        zone.replace(www, "www 300 IN A 198.51.100.99"),
    )
    .unwrap();
    let loaded = catalog::load(&catalog::zone_files(dir.path()).unwrap(), None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    engine.catalog().store(Arc::new(loaded.catalog));
    let Reply::One(bytes) = ask() else {
        panic!("no answer")
    };
    assert!(
        bytes.windows(4).any(|w| w == [198, 51, 100, 99]),
        "the new address is served: {bytes:?}"
    );
    assert_eq!(
        engine.cached_answers(),
        1,
        "the new generation holds the new answer"
    );
}

/// `request` (a plain query) with `labels` put in front of its question's name.
fn prefixed(request: &[u8], labels: &[Vec<u8>]) -> Option<Vec<u8>> {
    let plain = onebox_dns::fastpath::parse(request)?;
    let mut out = request[..12].to_vec();
    for label in labels {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.extend_from_slice(&request[12..]);
    (plain.question_end - 16 + labels.iter().map(|l| l.len() + 1).sum::<usize>() <= 255)
        .then_some(out)
}

/// `request` (a plain query) with its DO bit cleared, if it had it.
fn without_do(request: &[u8]) -> Option<Vec<u8>> {
    let plain = onebox_dns::fastpath::parse(request)?;
    let at = plain.question_end + 7; // the OPT record's flags
    let mut out = request.to_vec();
    (plain.edns && out[at] & 0x80 != 0).then(|| {
        out[at] &= 0x7f;
        out
    })
}

/// A random label of 1 to 30 letters (either case), digits and hyphens.
fn random_label(rng: &mut fastrand::Rng) -> Vec<u8> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";
    (0..rng.usize(1..=30))
        .map(|_| CHARS[rng.usize(..CHARS.len())])
        .collect()
}

/// The NXDOMAIN templates (dns/src/fastpath.rs `Denial`): every request of the differential
/// suite whose answer is NXDOMAIN, and every request at all with random labels put in front of
/// its name (names that mostly do not exist, of every length, in either case; `hostmaster`, the
/// SOA's RNAME; 50 to 80 one-letter labels), over UDP and
/// TCP, with and without DO, unsigned and signed: the cached engine answers each as the engine
/// without the cache answers the question in lower case (spelled as asked), byte for byte (an
/// NXDOMAIN with NSEC proofs, assembled from the zone's parts: once parsed), and
/// as the engine without the cache answers the request itself (equal once parsed). The random
/// names fill neither the answer cache nor the templates: a few templates serve them all.
fn compare_random_names(catalog: Catalog, cases: &[diff::queries::Case], what: &str) {
    let client: SocketAddr = CLIENT.parse().unwrap();
    let Engines {
        on,
        m_on,
        off,
        m_off,
        reference,
    } = engines(catalog);
    let mut rng = fastrand::Rng::with_seed(0x0b0c5);
    let (mut nxdomain, mut asked, mut others, mut soa_only) = (0usize, 0usize, 0usize, 0usize);
    let mut assembled = 0usize;
    let requests = requests(cases);
    for request in &requests {
        if onebox_dns::fastpath::parse(request).is_none() {
            continue;
        }
        for transport in [Transport::Udp, Transport::Tcp] {
            // The request itself (and without DO, if it has it), then 6 random names under it
            // (1 to 3 labels in front).
            let mut asks = vec![request.clone()];
            asks.extend(without_do(request));
            for base in asks.clone() {
                for _ in 0..6 {
                    let labels: Vec<Vec<u8>> = (0..rng.usize(1..=3))
                        .map(|_| random_label(&mut rng))
                        .collect();
                    asks.extend(prefixed(&other_id(&base, rng.u16(..)), &labels));
                }
                // A name that may be the SOA's RNAME (today's path then compresses the SOA into
                // the question: no template serves it).
                asks.extend(prefixed(
                    &other_id(&base, rng.u16(..)),
                    &[b"hostmaster".to_vec()],
                ));
                // Names of 50 to 80 labels: today's path runs out of compression candidates
                // (hickory keeps 64) and compresses less; no template serves those.
                let many = vec![b"x".to_vec(); rng.usize(50..=80)];
                asks.extend(prefixed(&other_id(&base, rng.u16(..)), &many));
            }
            for r in &asks {
                asked += 1;
                let a = on.respond(r, transport, client);
                let b = off.respond(r, transport, client);
                let mut want = reference.respond(&lowercased(r), transport, client);
                if let (Reply::One(bytes), Some(plain)) =
                    (&mut want, onebox_dns::fastpath::parse(r))
                {
                    onebox_dns::fastpath::spell(bytes, r, plain.question_end);
                }
                assert!(
                    same(&a, &want, r),
                    "{what}: {r:?} over {transport:?}: not today's answer in lower case"
                );
                if nsec_denial(&a) && a != want {
                    assembled += 1;
                }
                assert!(
                    same_but_for_case(&a, &b, r),
                    "{what}: {r:?} over {transport:?}: the cached engine answers otherwise:\n{a:?}\n{b:?}"
                );
                if let Reply::One(bytes) = &a
                    && bytes[3] & 0x0f == 3
                {
                    nxdomain += 1;
                    // The SOA alone (no NSEC proofs): what a template can serve.
                    if bytes[6..10] == [0, 0, 0, 1] {
                        soa_only += 1;
                    }
                } else if r != request {
                    // A wildcard's answer, a referral, an error: cached (or not) as before.
                    others += 1;
                }
            }
        }
    }
    assert_eq!(
        metrics_text(&on, &m_on),
        metrics_text(&off, &m_off),
        "{what}: the metrics count the same"
    );
    let (cached, templates, from_templates) =
        (on.cached_answers(), on.denial_templates(), on.denial_hits());
    println!(
        "{what}: {asked} requests, {nxdomain} NXDOMAIN; {cached} answers cached, {templates} \
         NXDOMAIN templates, which wrote {from_templates} answers ({assembled} with NSEC proofs, \
         equal once parsed)"
    );
    if what == "signed" {
        assert!(
            assembled > nxdomain / 4,
            "{what}: {assembled} of {nxdomain} NXDOMAIN answers assembled with NSEC proofs"
        );
    }
    assert!(
        nxdomain > asked / 3,
        "{what}: {nxdomain} of {asked} NXDOMAIN"
    );
    // The answer cache holds at most the suite's own requests (with and without DO, over UDP
    // and TCP) and the random names that are not NXDOMAIN; a template serves many names.
    assert!(
        cached <= 4 * requests.len() + others,
        "{what}: {cached} answers cached for {} requests and {others} other answers",
        requests.len()
    );
    assert!(
        templates > 0 && templates * 5 < nxdomain,
        "{what}: {templates} templates for {nxdomain} NXDOMAIN answers"
    );
    assert!(
        from_templates as usize > soa_only / 2,
        "{what}: {from_templates} of {soa_only} NXDOMAIN answers without proofs from a template"
    );
}

#[test]
fn random_names_are_answered_from_nxdomain_templates_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    compare_random_names(load_zones(dir.path()), &diff::queries::all(), "unsigned");
}

#[test]
fn random_names_are_answered_from_nxdomain_templates_signed() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let catalog = signed_zones(dir.path(), state.path());
    compare_random_names(catalog, &diff::queries::signed(), "signed");
}

/// The walk the reference way: the catalog's zone for `name` ([`Catalog::find`]), then down
/// from its apex node by node ([`onebox_dns::zone::Zone::node`], a `LowerName` each), as the
/// request path walked before the wire walk: (the zone's apex, the walk).
fn walk_by_name(
    catalog: &Catalog,
    name: &hickory_proto::rr::Name,
) -> Option<(hickory_proto::rr::Name, onebox_dns::zone::Walk)> {
    use hickory_proto::rr::{LowerName, Name, RecordType};
    use onebox_dns::zone::label_count;
    let zone = catalog.find(name)?;
    let (apex, labels) = (label_count(zone.origin()), label_count(name));
    let mut walk = onebox_dns::zone::Walk {
        labels,
        cut: None,
        encloser: apex.min(labels),
        wildcard: false,
    };
    for n in apex + 1..=labels {
        let Some(node) = zone.node(&LowerName::new(&name.trim_to(n))) else {
            break;
        };
        if node.get(RecordType::NS).is_some() && walk.cut.is_none() {
            walk.cut = Some(n);
        }
        walk.encloser = n;
    }
    let encloser = name.trim_to(walk.encloser);
    let wildcard = Name::from_labels(std::iter::once(&b"*"[..]).chain(encloser.iter())).unwrap();
    walk.wildcard = walk.encloser < labels && zone.node(&LowerName::new(&wildcard)).is_some();
    Some((zone.origin().clone(), walk))
}

/// The wire walk ([`Catalog::walk_wire`], what the fast path finds NXDOMAIN names with, on the
/// request's bytes) agrees with the walk by name on every question of the differential suite,
/// unsigned and signed zones, and on random names under each (1 to 3 random labels in front,
/// in either case; a wildcard's `*`; 1 to 120 one-letter labels; a 63-byte label), and its
/// NXDOMAIN verdict is what the engine without the cache answers (asked CNAME).
#[test]
fn the_wire_walk_agrees_with_the_walk_by_name() {
    use hickory_proto::op::Message;
    use hickory_proto::rr::Name;
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let unsigned = load_zones(dir.path());
    let dir2 = tempfile::tempdir().unwrap();
    let signed = signed_zones(dir2.path(), state.path());
    let mut rng = fastrand::Rng::with_seed(0x3a1c);
    let (mut checked, mut nxdomain, mut found) = (0usize, 0usize, 0usize);
    for (catalog, cases) in [
        (unsigned, diff::queries::all()),
        (signed, diff::queries::signed()),
    ] {
        let off = Engine::new(catalog.clone());
        let mut names = Vec::new();
        for request in requests(&cases) {
            let Ok(message) = Message::from_vec(&request) else {
                continue;
            };
            let Some(q) = message.queries.first() else {
                continue;
            };
            let base = q.name.clone();
            names.push(base.clone());
            for _ in 0..6 {
                let labels: Vec<Vec<u8>> = (0..rng.usize(1..=3))
                    .map(|_| random_label(&mut rng))
                    .collect();
                let mut all: Vec<&[u8]> = labels.iter().map(Vec::as_slice).collect();
                all.extend(base.iter());
                names.extend(Name::from_labels(all).ok());
            }
            names.extend(Name::from_labels(std::iter::once(&b"*"[..]).chain(base.iter())).ok());
            let many = vec![&b"x"[..]; rng.usize(1..=120)];
            names.extend(Name::from_labels(many.into_iter().chain(base.iter())).ok());
            let long = [b'L'; 63];
            names.extend(Name::from_labels(std::iter::once(&long[..]).chain(base.iter())).ok());
        }
        let client: SocketAddr = CLIENT.parse().unwrap();
        for name in &names {
            let mut wire = onebox_dns::zone::wire_name(name);
            wire.make_ascii_lowercase();
            let mut starts = [0usize; onebox_dns::zone::MAX_LABELS];
            let by_wire = catalog
                .walk_wire(&wire, &mut starts)
                .map(|(zone, walk)| (zone.origin().clone(), walk));
            assert_eq!(by_wire, walk_by_name(&catalog, name), "{name}");
            checked += 1;
            found += usize::from(by_wire.is_some());
            // The verdict, as the engine answers CNAME (a type no CNAME is followed for: a
            // name that exists is never NXDOMAIN).
            if let Some((_, walk)) = by_wire {
                let mut message = Message::query();
                message.add_query(hickory_proto::op::Query::query(
                    name.clone(),
                    hickory_proto::rr::RecordType::CNAME,
                ));
                let Reply::One(bytes) =
                    off.respond(&message.to_vec().unwrap(), Transport::Tcp, client)
                else {
                    panic!("{name}: no answer");
                };
                assert_eq!(bytes[3] & 0x0f == 3, walk.nxdomain(), "{name}: {walk:?}");
                nxdomain += usize::from(walk.nxdomain());
            }
        }
    }
    println!("{checked} names walked, {found} in a zone, {nxdomain} NXDOMAIN");
    assert!(
        found > checked / 2 && nxdomain > found / 4,
        "{checked} {found} {nxdomain}"
    );
}
