//! NOTIFY out (RFC 1996): when a zone's serial changes, each of its `notify` targets gets a
//! NOTIFY over UDP (signed with its key, if it has one), sent again after 1, 2, 4, 8 and 16
//! seconds until it answers; a newer serial replaces a NOTIFY still being retried. An answer
//! other than NOERROR, a bad signature, or no answer after the last try is logged and counted
//! as failed.

use crate::query::Engine;
use crate::xfr::client::udp_response;
use crate::xfr::tsig;
use crate::zone::Zone;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use onebox_site::dns::Remote;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

/// How long each try waits for the answer: the tries are these many.
const TRIES: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// What became of one NOTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered NOERROR.
    Acked,
    /// It answered with an error, a bad signature, or not at all.
    Failed,
}

/// Sends the NOTIFYs, one task per zone and target.
#[derive(Debug)]
pub struct Notifier {
    engine: Arc<Engine>,
    running: Mutex<HashMap<(LowerName, SocketAddr), AbortHandle>>,
}

impl Notifier {
    /// A notifier using `engine`'s settings, keys and metrics.
    pub fn new(engine: Arc<Engine>) -> Notifier {
        Notifier {
            engine,
            running: Mutex::default(),
        }
    }

    /// Sends `zone`'s current serial to each of its targets, replacing NOTIFYs still being
    /// retried for an older one.
    pub fn announce(&self, zone: &Zone) {
        let apex = LowerName::new(zone.origin());
        let settings = self.engine.zone_settings();
        let Some(targets) = settings.notify.get(&apex) else {
            return;
        };
        let keys = self.engine.xfr().keys.load_full();
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|_, task| !task.is_finished());
        for target in targets {
            let signer = match &target.key {
                None => None,
                Some(name) => match keys.get(name.name()) {
                    Some(signer) => Some(signer.clone()),
                    None => {
                        tracing::error!(
                            "zone {}: NOTIFY to {}: the key {name} is not loaded",
                            zone.origin(),
                            target.addr
                        );
                        continue;
                    }
                },
            };
            let request = request(zone);
            let engine = self.engine.clone();
            let addr = target.addr;
            let target = target.clone();
            let serial = zone.serial();
            let task = tokio::spawn(async move {
                let outcome = send(&engine, &request, &target, signer.as_ref()).await;
                let origin = &request.queries[0].name;
                match outcome {
                    Ok(()) => {
                        tracing::info!(
                            "zone {origin}: NOTIFY of serial {serial} to {target}: acknowledged"
                        );
                        engine.metrics().notify_out(Outcome::Acked);
                    }
                    Err(e) => {
                        tracing::warn!(
                            "zone {origin}: NOTIFY of serial {serial} to {target} failed: {e}"
                        );
                        engine.metrics().notify_out(Outcome::Failed);
                    }
                }
            });
            if let Some(old) = running.insert((apex.clone(), addr), task.abort_handle()) {
                old.abort();
            }
        }
    }
}

/// The NOTIFY message for `zone`: its SOA as question and answer, AA set (RFC 1996 §3.7).
pub fn request(zone: &Zone) -> Message {
    let mut message = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    let mut query = Query::query(zone.origin().clone(), RecordType::SOA);
    query.query_class = DNSClass::IN;
    message.queries.push(query);
    message.answers.push(zone.soa().clone());
    message
}

/// Sends `request` to `target` until it is answered or the tries run out.
async fn send(
    engine: &Engine,
    request: &Message,
    target: &Remote,
    signer: Option<&hickory_proto::rr::TSigner>,
) -> Result<(), String> {
    let bind: SocketAddr = if target.addr.is_ipv4() {
        ([0u8; 4], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("cannot reach it: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut last_error = String::from("no answer");
    for wait in TRIES {
        // Each try is signed afresh (the TSIG time), with a new ID.
        let mut request = request.clone();
        request.metadata.id = fastrand::u16(..);
        let (bytes, mut verifier) = match signer {
            Some(signer) => {
                let (bytes, verifier) = tsig::sign_request(&request, signer)?;
                (bytes, Some(verifier))
            }
            None => (request.to_vec().map_err(|e| e.to_string())?, None),
        };
        engine.metrics().notify_sent();
        if let Err(e) = socket.send(&bytes).await {
            last_error = format!("cannot send: {e}");
            tokio::time::sleep(wait).await;
            continue;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let id = request.metadata.id;
        let Some((len, answer)) = udp_response(
            &socket,
            &mut buf,
            deadline,
            id,
            OpCode::Notify,
            &mut last_error,
        )
        .await
        else {
            continue; // this try timed out
        };
        if let Some(verifier) = verifier.as_mut() {
            verifier.verify(&buf[..len], &answer)?;
        }
        return match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            rcode => Err(format!("it answered {rcode}")),
        };
    }
    Err(format!("{last_error} after {} tries", TRIES.len()))
}
