//! A microbenchmark of the answer cache's miss path, in process (no sockets): the nanoseconds
//! per request of an engine with the answer cache, asked over UDP (no rate limiting) against the
//! benchmark's zones signed (zones/foobar.com.zone, bench/dns/bench.test.zone) and a generated
//! big.test of 5,000 hosts, also signed:
//!   nx        random names under bench.test (NXDOMAIN), type A, EDNS without DO
//!   nx+DO     the same with the DNSSEC OK bit (NSEC proofs)
//!   first     every host of big.test asked once, A with EDNS (a fresh engine each round: each
//!             request a miss for a name that exists)
//!   hit       www.foobar.com A asked again and again (a cache hit)
//! Not a test (no timing is asserted anywhere); for A/B runs of two builds pinned to one CPU:
//! `taskset -c 1 cargo run --release -p onebox-dns --example miss_path`.

use onebox_dns::answer::Transport;
use onebox_dns::query::Engine;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

#[derive(serde::Deserialize)]
struct Zones {
    zone: Vec<onebox_dns::config::ZoneConfig>,
}

/// A query for `name` (dotted, no trailing dot) of type `qtype`, with EDNS (DO if `dnssec`).
fn query(id: u16, name: &str, qtype: u16, dnssec: bool) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("onebox-miss-path-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("zones"))?;
    std::fs::copy(
        root.join("zones/foobar.com.zone"),
        dir.join("zones/foobar.com.zone"),
    )?;
    std::fs::copy(
        root.join("bench/dns/bench.test.zone"),
        dir.join("zones/bench.test.zone"),
    )?;
    let mut big = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\n",
    );
    for i in 0..5000 {
        writeln!(big, "host{i} IN A 10.0.{}.{}", i / 256, i % 256)?;
    }
    std::fs::write(dir.join("zones/big.test.zone"), big)?;
    let loaded =
        onebox_dns::catalog::load(&onebox_dns::catalog::zone_files(&dir.join("zones"))?, None);
    if !loaded.errors.is_empty() {
        return Err(format!("{:?}", loaded.errors).into());
    }
    let zones = toml::from_str::<Zones>(
        "[[zone]]\nname = \"foobar.com\"\ndnssec = true\n\
         [[zone]]\nname = \"bench.test\"\ndnssec = true\n\
         [[zone]]\nname = \"big.test\"\ndnssec = true\n",
    )?
    .zone;
    let signer = onebox_dns::dnssec::Signer::new(
        dir.join("state"),
        onebox_dns::dnssec::Policy::default(),
        &zones,
    );
    let catalog = signer.sign_catalog(loaded.catalog, None, onebox_dns::dnssec::now());
    let client: SocketAddr = "192.0.2.77:5300".parse()?;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = Vec::new();
    let random = |dnssec: bool, rng: &mut fastrand::Rng| -> Vec<Vec<u8>> {
        (0..50_000)
            .map(|i| {
                let label: String = (0..12).map(|_| rng.alphanumeric()).collect();
                query(
                    i as u16,
                    &format!("{}.bench.test", label.to_lowercase()),
                    1,
                    dnssec,
                )
            })
            .collect()
    };
    let hosts: Vec<Vec<u8>> = (0..5000)
        .map(|i| query(i as u16, &format!("host{i}.big.test"), 1, false))
        .collect();
    let hit = vec![query(1, "www.foobar.com", 1, false); 50_000];
    for round in 1..=3 {
        for (what, requests, fresh) in [
            ("nx", random(false, &mut rng), false),
            ("nx+DO", random(true, &mut rng), false),
            ("first", hosts.clone(), true),
            ("hit", hit.clone(), false),
        ] {
            let engine = Engine::new(catalog.clone()).with_answer_cache(true);
            if !fresh {
                // Warm: the templates and the hit's entry exist before the clock starts.
                for r in requests.iter().take(10) {
                    engine.respond_into(r, Transport::Udp, client, &mut out);
                }
            }
            let start = Instant::now();
            for r in &requests {
                engine.respond_into(r, Transport::Udp, client, &mut out);
            }
            let ns = start.elapsed().as_nanos() / requests.len() as u128;
            println!("round {round} {what:6} {ns:6} ns per request");
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
