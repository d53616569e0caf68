//! TSIG (RFC 8945): the keys of `[[dns.tsig]]`, checking signed requests and signing their
//! responses (every message of a transfer), and signing our own requests (NOTIFY, SOA queries,
//! transfers) and checking their responses. The MACs are hickory-proto's (`rr::tsig`, HMAC on
//! aws-lc-rs); the message layouts of RFC 8945 §4.3 are built here. Secrets are never logged:
//! [`Keys`] prints only key names.

use crate::config::DnsConfig;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use onebox_site::dns::TsigAlgorithm as Algorithm;
use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds of clock difference accepted between the signer and us (RFC 8945 §10: 300).
pub const FUDGE: u16 = 300;

/// Unsigned messages allowed between two signed ones of a transfer (RFC 8945 §5.3.1).
const MAX_UNSIGNED: usize = 99;

/// The time now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The TSIG keys, by name.
#[derive(Clone, Default)]
pub struct Keys {
    by_name: HashMap<LowerName, TSigner>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<String> = self.by_name.keys().map(|n| n.to_string()).collect();
        names.sort();
        f.debug_struct("Keys").field("names", &names).finish()
    }
}

impl Keys {
    /// The keys of `dns.tsig`, reading `secret_file`s (relative to `base`, the site file's
    /// directory). An error names the key and the file, never the secret.
    pub fn load(dns: &DnsConfig, base: &Path) -> Result<Keys, KeyError> {
        let mut by_name = HashMap::new();
        for (i, key) in dns.tsig.iter().enumerate() {
            let secret = match (&key.secret, &key.secret_file) {
                (Some(secret), _) => secret.bytes().to_vec(),
                (None, Some(file)) => {
                    let path = base.join(file.get());
                    let error = |message: String| KeyError {
                        span: file.span(),
                        key: format!("dns.tsig[{i}].secret_file"),
                        message,
                    };
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
                    onebox_site::dns::Secret::parse(text.trim())
                        .map_err(|e| error(format!("{}: {e}", path.display())))?
                        .bytes()
                        .to_vec()
                }
                (None, None) => {
                    return Err(KeyError {
                        span: key.name.span(),
                        key: format!("dns.tsig[{i}]"),
                        message: "no secret".into(),
                    });
                }
            };
            let signer = TSigner::new(
                secret,
                algorithm(key.algorithm),
                key.name.name().clone(),
                FUDGE,
            )
            .map_err(|e| KeyError {
                span: key.name.span(),
                key: format!("dns.tsig[{i}]"),
                message: e.to_string(),
            })?;
            by_name.insert(LowerName::new(key.name.name()), signer);
        }
        Ok(Keys { by_name })
    }

    /// The key named `name`.
    pub fn get(&self, name: &Name) -> Option<&TSigner> {
        self.by_name.get(&LowerName::new(name))
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// A `[[dns.tsig]]` key that cannot be used: where, which key, what is wrong (never the
/// secret).
#[derive(Debug, Clone)]
pub struct KeyError {
    /// The span of the offending value in the site file.
    pub span: std::ops::Range<usize>,
    /// The key's dotted path.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// hickory's algorithm for the site file's.
fn algorithm(a: Algorithm) -> TsigAlgorithm {
    match a {
        Algorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
        Algorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
        Algorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
    }
}

/// What a request's TSIG says.
#[derive(Clone)]
pub enum Check {
    /// The request is not signed.
    Unsigned,
    /// Signed with a key we have, and the MAC and time are good: the response is signed.
    Signed(Signing),
    /// Signed, but wrongly: the response is this error (NOTAUTH with the TSIG error, RFC 8945
    /// §5.2), already encoded.
    Failed {
        /// The encoded error response.
        response: Vec<u8>,
        /// The TSIG error: `BADKEY`, `BADSIG` or `BADTIME`.
        error: &'static str,
        /// What was wrong, for the log.
        reason: String,
    },
}

/// How to sign the messages answering a verified request.
#[derive(Clone)]
pub struct Signing {
    signer: TSigner,
    /// The request's MAC; then each signed message's.
    previous_mac: Vec<u8>,
    /// Whether the next message is the first of the answer.
    first: bool,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signing({})", self.signer.signer_name())
    }
}

impl Signing {
    /// The key's name.
    pub fn key_name(&self) -> &Name {
        self.signer.signer_name()
    }

    /// Bytes a TSIG record adds to a message (for UDP size limits).
    pub fn overhead(&self) -> usize {
        let name = self.signer.signer_name().len() + 1;
        let algorithm = self.signer.algorithm().to_name().len() + 1;
        name + 10 + algorithm + 16 + 64
    }

    /// Signs the encoded message `bytes` (appending the TSIG record): the first with the full
    /// TSIG variables, the next ones of a transfer with the timers only (RFC 8945 §5.3.1).
    pub fn sign(&mut self, bytes: &mut Vec<u8>) -> Result<(), String> {
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let stub = TSIG::new(
            self.signer.algorithm().clone(),
            now(),
            self.signer.fudge(),
            Vec::new(),
            id,
            None,
            Vec::new(),
        );
        let mut tbs = Vec::with_capacity(bytes.len() + 128);
        {
            let mut e = BinEncoder::new(&mut tbs);
            let prev = &self.previous_mac;
            e.emit_u16(prev.len() as u16).map_err(|e| e.to_string())?;
            e.emit_vec(prev).map_err(|e| e.to_string())?;
            e.emit_vec(bytes).map_err(|e| e.to_string())?;
            if self.first {
                stub.emit_tsig_for_mac(&mut e, self.signer.signer_name())
                    .map_err(|e| e.to_string())?;
            } else {
                e.emit_u16((stub.time >> 32) as u16)
                    .map_err(|e| e.to_string())?;
                e.emit_u32(stub.time as u32).map_err(|e| e.to_string())?;
                e.emit_u16(stub.fudge).map_err(|e| e.to_string())?;
            }
        }
        let mac = self.signer.sign(&tbs).map_err(|e| e.to_string())?;
        self.previous_mac = mac.clone();
        self.first = false;
        append(bytes, self.signer.signer_name().clone(), stub.set_mac(mac))
    }
}

/// Appends a TSIG record to the encoded message `bytes`, counting it in ARCOUNT.
fn append(bytes: &mut Vec<u8>, key_name: Name, tsig: TSIG) -> Result<(), String> {
    if bytes.len() < 12 {
        return Err("a message shorter than its header".into());
    }
    let record = make_tsig_record(key_name, tsig);
    let mut tail = Vec::with_capacity(128);
    record
        .emit(&mut BinEncoder::new(&mut tail))
        .map_err(|e| e.to_string())?;
    let count = u16::from_be_bytes([bytes[10], bytes[11]])
        .checked_add(1)
        .ok_or("too many additional records")?;
    bytes[10..12].copy_from_slice(&count.to_be_bytes());
    bytes.extend_from_slice(&tail);
    Ok(())
}

/// The NOTAUTH answer to a request whose TSIG failed (RFC 8945 §5.2): the question and a TSIG
/// record with the error, unsigned for BADKEY and BADSIG, signed for BADTIME (with our time in
/// Other Data). Within 512 bytes: without the question if need be, or as a bare header when the
/// key and algorithm names alone are too long.
fn error_response(
    request: &Message,
    tsig: &hickory_proto::rr::Record<TSIG>,
    error: TsigError,
    signed_by: Option<(&TSigner, &[u8])>,
    now: u64,
) -> Vec<u8> {
    let (algorithm, other) = match (error, signed_by) {
        (TsigError::BadTime, Some((signer, _))) => {
            (signer.algorithm().clone(), now.to_be_bytes()[2..8].to_vec())
        }
        _ => (tsig.data.algorithm.clone(), Vec::new()),
    };
    for with_question in [true, false] {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.response_code = ResponseCode::NotAuth;
        if with_question {
            response.queries = request.queries.clone();
        }
        let Ok(mut bytes) = response.to_vec() else {
            continue;
        };
        let record = TSIG::new(
            algorithm.clone(),
            tsig.data.time,
            tsig.data.fudge,
            Vec::new(),
            request.metadata.id,
            Some(error),
            other.clone(),
        );
        let record = match signed_by {
            Some((signer, mac)) if error == TsigError::BadTime => {
                let mut tbs = Vec::new();
                let mut e = BinEncoder::new(&mut tbs);
                let _ = e.emit_u16(mac.len() as u16);
                let _ = e.emit_vec(mac);
                let _ = e.emit_vec(&bytes);
                let _ = record.emit_tsig_for_mac(&mut e, signer.signer_name());
                match signer.sign(&tbs) {
                    Ok(mac) => record.set_mac(mac),
                    Err(_) => record,
                }
            }
            _ => record,
        };
        if append(&mut bytes, tsig.name.clone(), record).is_ok() && bytes.len() <= 512 {
            return bytes;
        }
    }
    let id = request.metadata.id.to_be_bytes();
    let opcode = u8::from(request.metadata.op_code) << 3;
    vec![id[0], id[1], 0x80 | opcode, 0x09, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Checks the TSIG of `request` (decoded from `bytes`) against `keys` at time `now`.
pub fn check_request(bytes: &[u8], request: &Message, keys: &Keys, now: u64) -> Check {
    let Some(tsig) = request.signature() else {
        return Check::Unsigned;
    };
    let fail =
        |error: TsigError, signed_by: Option<(&TSigner, &[u8])>, reason: String| Check::Failed {
            response: error_response(request, tsig, error, signed_by, now),
            error: match error {
                TsigError::BadKey => "BADKEY",
                TsigError::BadSig => "BADSIG",
                _ => "BADTIME",
            },
            reason,
        };
    let key = keys
        .get(&tsig.name)
        .filter(|k| *k.algorithm() == tsig.data.algorithm);
    let Some(signer) = key else {
        return fail(
            TsigError::BadKey,
            None,
            format!("unknown TSIG key {} ({})", tsig.name, tsig.data.algorithm),
        );
    };
    match signer.verify_message_byte(bytes, None, true) {
        Err(e) => fail(
            TsigError::BadSig,
            None,
            format!("bad TSIG signature with key {}: {e}", tsig.name),
        ),
        Ok((mac, time, _)) => {
            if now.abs_diff(time) > u64::from(tsig.data.fudge.min(FUDGE)) {
                return fail(
                    TsigError::BadTime,
                    Some((signer, &mac)),
                    format!(
                        "TSIG key {}: signed at {time}, {} s from our clock",
                        tsig.name,
                        now.abs_diff(time)
                    ),
                );
            }
            Check::Signed(Signing {
                signer: signer.clone(),
                previous_mac: mac,
                first: true,
            })
        }
    }
}

/// Signs an outgoing request (NOTIFY, SOA query, transfer) with `signer`; returns the encoded
/// message and the verifier of its response.
pub fn sign_request(request: &Message, signer: &TSigner) -> Result<(Vec<u8>, Verifier), String> {
    let mut bytes = request.to_vec().map_err(|e| e.to_string())?;
    // A request's MAC covers no previous MAC: sign it the way [`Message::finalize`] does.
    let stub = TSIG::new(
        signer.algorithm().clone(),
        now(),
        signer.fudge(),
        Vec::new(),
        request.metadata.id,
        None,
        Vec::new(),
    );
    let mut tbs = Vec::with_capacity(bytes.len() + 128);
    {
        // One encoder from the start: a BinEncoder writes at its own offset, from 0.
        let mut e = BinEncoder::new(&mut tbs);
        e.emit_vec(&bytes).map_err(|e| e.to_string())?;
        stub.emit_tsig_for_mac(&mut e, signer.signer_name())
            .map_err(|e| e.to_string())?;
    }
    let mac = signer.sign(&tbs).map_err(|e| e.to_string())?;
    append(
        &mut bytes,
        signer.signer_name().clone(),
        stub.set_mac(mac.clone()),
    )?;
    Ok((
        bytes,
        Verifier {
            signer: signer.clone(),
            previous_mac: mac,
            unsigned: Vec::new(),
            unsigned_count: 0,
            first: true,
            last_time: 0,
        },
    ))
}

/// Checks the TSIG of each response message to a signed request, in order (RFC 8945 §5.3.1:
/// up to 99 unsigned messages between signed ones; the first and the last signed).
pub struct Verifier {
    signer: TSigner,
    previous_mac: Vec<u8>,
    /// The unsigned messages since the last signed one, back to back.
    unsigned: Vec<u8>,
    unsigned_count: usize,
    first: bool,
    last_time: u64,
}

impl Verifier {
    /// Checks the next message (`bytes`, decoded as `message`).
    pub fn verify(&mut self, bytes: &[u8], message: &Message) -> Result<(), String> {
        let Some(tsig) = message.signature() else {
            if self.first {
                return Err(format!(
                    "the response is not signed (rcode {}); we signed with the key {}",
                    message.metadata.response_code,
                    self.signer.signer_name()
                ));
            }
            self.unsigned_count += 1;
            if self.unsigned_count > MAX_UNSIGNED {
                return Err(format!(
                    "more than {MAX_UNSIGNED} unsigned messages in a row"
                ));
            }
            self.unsigned.extend_from_slice(bytes);
            return Ok(());
        };
        if let Some(error) = tsig.data.error {
            return Err(format!(
                "the peer refused our TSIG key {}: {error:?} (rcode {})",
                self.signer.signer_name(),
                message.metadata.response_code
            ));
        }
        if LowerName::new(&tsig.name) != LowerName::new(self.signer.signer_name())
            || tsig.data.algorithm != *self.signer.algorithm()
        {
            return Err(format!(
                "signed with the key {} ({}), not ours ({})",
                tsig.name,
                tsig.data.algorithm,
                self.signer.signer_name()
            ));
        }
        let (part, _) =
            hickory_proto::rr::rdata::tsig::signed_bitmessage_to_buf(bytes, None, self.first)
                .map_err(|e| e.to_string())?;
        let mut tbs =
            Vec::with_capacity(2 + self.previous_mac.len() + self.unsigned.len() + part.len());
        tbs.extend_from_slice(&(self.previous_mac.len() as u16).to_be_bytes());
        tbs.extend_from_slice(&self.previous_mac);
        tbs.extend_from_slice(&self.unsigned);
        tbs.extend_from_slice(&part);
        self.signer
            .verify(&tbs, &tsig.data.mac)
            .map_err(|_| format!("bad TSIG signature (key {})", self.signer.signer_name()))?;
        let now = now();
        if now.abs_diff(tsig.data.time) > u64::from(tsig.data.fudge.min(FUDGE))
            || tsig.data.time < self.last_time
        {
            return Err(format!(
                "TSIG time {} is {} s from our clock",
                tsig.data.time,
                now.abs_diff(tsig.data.time)
            ));
        }
        self.last_time = tsig.data.time;
        self.previous_mac = tsig.data.mac.clone();
        self.unsigned.clear();
        self.unsigned_count = 0;
        self.first = false;
        Ok(())
    }

    /// Whether the messages so far end with a signed one (a transfer must).
    pub fn complete(&self) -> bool {
        !self.first && self.unsigned_count == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::RecordType;

    fn signer(secret: u8) -> TSigner {
        TSigner::new(
            vec![secret; 32],
            TsigAlgorithm::HmacSha256,
            Name::from_ascii("xfr-key.").unwrap(),
            FUDGE,
        )
        .unwrap()
    }

    fn keys() -> Keys {
        let mut by_name = HashMap::new();
        by_name.insert(
            LowerName::new(&Name::from_ascii("xfr-key.").unwrap()),
            signer(7),
        );
        Keys { by_name }
    }

    fn request() -> Message {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.queries.push(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::AXFR,
        ));
        m
    }

    #[test]
    fn a_signed_request_verifies_and_its_answer_chain_too() {
        let (bytes, mut verifier) = sign_request(&request(), &signer(7)).unwrap();
        // hickory's own check of the request, and ours.
        signer(7).verify_message_byte(&bytes, None, true).unwrap();
        let decoded = Message::from_vec(&bytes).unwrap();
        let Check::Signed(mut signing) = check_request(&bytes, &decoded, &keys(), now()) else {
            panic!("not verified");
        };
        // Three answer messages, signed in a chain; the verifier accepts them in order.
        for i in 0..3u8 {
            let mut answer = Message::new(0x4242, MessageType::Response, OpCode::Query);
            answer.metadata.authoritative = i == 0;
            let mut bytes = answer.to_vec().unwrap();
            signing.sign(&mut bytes).unwrap();
            let decoded = Message::from_vec(&bytes).unwrap();
            verifier.verify(&bytes, &decoded).unwrap();
        }
        assert!(verifier.complete());
    }

    #[test]
    fn a_wrong_secret_or_key_is_refused_with_the_tsig_error() {
        let (bytes, _) = sign_request(&request(), &signer(8)).unwrap();
        let decoded = Message::from_vec(&bytes).unwrap();
        let Check::Failed {
            response, reason, ..
        } = check_request(&bytes, &decoded, &keys(), now())
        else {
            panic!("a wrong secret verified");
        };
        assert!(reason.contains("bad TSIG signature"), "{reason}");
        let response = Message::from_vec(&response).unwrap();
        assert_eq!(response.metadata.response_code, ResponseCode::NotAuth);
        assert_eq!(
            response.signature().unwrap().data.error,
            Some(TsigError::BadSig)
        );
        let Check::Failed { reason, .. } = check_request(&bytes, &decoded, &Keys::default(), now())
        else {
            panic!("an unknown key verified");
        };
        assert!(reason.starts_with("unknown TSIG key"), "{reason}");
        // Signed an hour ago: BADTIME.
        let Check::Failed { reason, .. } = check_request(
            &bytes,
            &decoded,
            &{
                let mut k = keys();
                k.by_name.values_mut().for_each(|s| *s = signer(8));
                k
            },
            now() + 3600,
        ) else {
            panic!("an old signature verified");
        };
        assert!(reason.contains("from our clock"), "{reason}");
    }
}
