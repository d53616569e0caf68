//! Fuzzes the request path: any bytes, as a UDP datagram and as a TCP message, against the
//! integration tests' zones. The reply must be a decodable response echoing the ID, and a UDP
//! reply must fit the client's size.
#![no_main]

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use onebox_dns::answer::{Reply, Transport};
use onebox_dns::query::Engine;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static ANSWERER: OnceLock<Engine> = OnceLock::new();
    ANSWERER.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/zones");
        let files = onebox_dns::catalog::zone_files(&dir).expect("test zones");
        let loaded = onebox_dns::catalog::load(&files, None);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let allow: Vec<onebox_dns::config::ZoneConfig> = toml::from_str::<Zones>(
            "[[zone]]\nname = \"example.test\"\nallow_transfer = [\"127.0.0.1\"]\n",
        )
        .expect("acl")
        .zone;
        let engine = Engine::new(loaded.catalog);
        engine.set_zone_settings(&allow);
        engine
    })
}

#[derive(serde::Deserialize)]
struct Zones {
    zone: Vec<onebox_dns::config::ZoneConfig>,
}

fuzz_target!(|data: &[u8]| {
    let client = "127.0.0.1:5300".parse().expect("addr");
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
