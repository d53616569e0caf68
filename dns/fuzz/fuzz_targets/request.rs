//! Fuzzes the request path: any bytes, as a UDP datagram and as a TCP message, against the
//! integration tests' zones, with response rate limiting on at a rate the fuzzer exceeds (so
//! answers sent whole, empty with TC, and dropped are all exercised). The reply must be a
//! decodable response echoing the ID, and a UDP reply must fit the client's size. The answer
//! cache (dns/src/fastpath.rs) is on; and to a plain query two engines without rate limiting,
//! one with the cache and one without, must give the same UDP reply, asked twice (the second
//! may be a hit).
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

#[derive(serde::Deserialize)]
struct Zones {
    zone: Vec<onebox_dns::config::ZoneConfig>,
}

fuzz_target!(|data: &[u8]| {
    let client = "127.0.0.1:5300".parse().expect("addr");
    if onebox_dns::fastpath::parse(data).is_some() {
        // A plain query: the cache's domain (anything else takes today's path in both).
        let (cached, plain) = pair();
        for _ in 0..2 {
            assert_eq!(
                cached.respond(data, Transport::Udp, client),
                plain.respond(data, Transport::Udp, client)
            );
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
