//! Asking a primary: the SOA serial (UDP, TCP when truncated) and the zone by IXFR (RFC 1995)
//! or AXFR (RFC 5936) over TCP, signed with the zone's key when it has one and every signed
//! answer checked. A transfer is bounded: at most `transfer_max_bytes` bytes, within
//! `transfer_timeout_secs` from connecting, each message within 10 s of the previous one, and
//! every message must carry records (so the number of messages is bounded by the bytes).

use crate::xfr::journal::{Diff, newer, record_key, serial_of};
use crate::xfr::tsig::{self, Verifier};
use crate::zone::Zone;
use crate::zonefile::LinedRecord;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::TSigner;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Waits until `deadline` for the response to the UDP request `id` with `opcode` on the
/// connected `socket`, skipping datagrams that are not it (another ID, not a response, not a
/// DNS message). A receive error (an ICMP port unreachable and the like) goes to `last_error`
/// and the rest of the wait is slept out, as a lost answer would be. `None` when none came.
pub(crate) async fn udp_response(
    socket: &UdpSocket,
    buf: &mut [u8],
    deadline: tokio::time::Instant,
    id: u16,
    opcode: OpCode,
    last_error: &mut String,
) -> Option<(usize, Message)> {
    loop {
        let len = match tokio::time::timeout_at(deadline, socket.recv(buf)).await {
            Err(_) => return None,
            Ok(Err(e)) => {
                *last_error = e.to_string();
                tokio::time::sleep_until(deadline).await;
                return None;
            }
            Ok(Ok(len)) => len,
        };
        let Some(answer) = buf.get(..len).and_then(|b| Message::from_vec(b).ok()) else {
            continue;
        };
        if answer.metadata.id == id
            && answer.metadata.message_type == MessageType::Response
            && answer.metadata.op_code == opcode
        {
            return Some((len, answer));
        }
    }
}

/// How long a UDP SOA query waits for its answer (then once more, then TCP).
const SOA_WAIT: Duration = Duration::from_secs(2);
/// How long a transfer may wait for its next message.
const MESSAGE_WAIT: Duration = Duration::from_secs(10);

/// Where to ask and how to sign.
#[derive(Clone, Copy)]
pub struct Primary<'a> {
    /// The primary's address.
    pub addr: SocketAddr,
    /// The key that signs our requests and must sign its answers.
    pub signer: Option<&'a TSigner>,
}

/// The bounds on one transfer.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most bytes (messages, length prefixes included).
    pub max_bytes: u64,
    /// Most time, from connecting to the last message.
    pub timeout: Duration,
}

/// What a transfer brought.
#[derive(Debug)]
pub enum Pulled {
    /// The primary has no newer version than ours (its serial).
    UpToDate(u32),
    /// The whole zone (an AXFR, or an IXFR answered in full).
    Full(Vec<Record>),
    /// The differences from our version to the primary's, in order.
    Incremental(Vec<Diff>),
}

/// Asks `primary` for the SOA serial of `zone`.
pub async fn soa_serial(zone: &Name, primary: Primary<'_>) -> Result<u32, String> {
    let mut request = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    request
        .queries
        .push(Query::query(zone.clone(), RecordType::SOA));
    let socket = UdpSocket::bind(unspecified(primary.addr))
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(primary.addr)
        .await
        .map_err(|e| format!("cannot reach {}: {e}", primary.addr))?;
    let mut buf = vec![0u8; 65_535];
    let mut truncated = false;
    let mut last_error = "no answer".to_string();
    for _ in 0..2 {
        request.metadata.id = fastrand::u16(..);
        let (bytes, mut verifier) = encode(&request, primary.signer)?;
        socket
            .send(&bytes)
            .await
            .map_err(|e| format!("cannot send to {}: {e}", primary.addr))?;
        let deadline = tokio::time::Instant::now() + SOA_WAIT;
        let id = request.metadata.id;
        let Some((len, answer)) = udp_response(
            &socket,
            &mut buf,
            deadline,
            id,
            OpCode::Query,
            &mut last_error,
        )
        .await
        else {
            continue;
        };
        if answer.metadata.truncation {
            truncated = true;
            break;
        }
        if let Some(v) = verifier.as_mut() {
            v.verify(&buf[..len], &answer)?;
        }
        return soa_in(zone, &answer);
    }
    if !truncated {
        return Err(format!("{last_error} from {} (UDP, twice)", primary.addr));
    }
    // Truncated: ask again over TCP.
    let deadline = tokio::time::Instant::now() + SOA_WAIT * 2;
    let mut stream = connect(primary.addr, deadline).await?;
    request.metadata.id = fastrand::u16(..);
    let (bytes, mut verifier) = encode(&request, primary.signer)?;
    write_message(&mut stream, &bytes, deadline).await?;
    let (bytes, _) = read_message(&mut stream, deadline, 65_535).await?;
    let answer = Message::from_vec(&bytes).map_err(|e| format!("undecodable answer: {e}"))?;
    if let Some(v) = verifier.as_mut() {
        v.verify(&bytes, &answer)?;
    }
    soa_in(zone, &answer)
}

/// The serial of the SOA of `zone` in `answer`.
fn soa_in(zone: &Name, answer: &Message) -> Result<u32, String> {
    if answer.metadata.response_code != ResponseCode::NoError {
        return Err(format!("it answered {}", answer.metadata.response_code));
    }
    answer
        .answers
        .iter()
        .find(|r| {
            r.record_type() == RecordType::SOA && LowerName::new(&r.name) == LowerName::new(zone)
        })
        .map(serial_of)
        .ok_or_else(|| "its answer has no SOA for the zone".to_string())
}

/// Transfers `zone` from `primary`: IXFR from `ours` (the SOA of our copy) when we have one,
/// AXFR otherwise (or with `force_axfr`).
pub async fn transfer(
    zone: &Name,
    primary: Primary<'_>,
    ours: Option<&Record>,
    bounds: Bounds,
) -> Result<Pulled, String> {
    let deadline = tokio::time::Instant::now() + bounds.timeout;
    let result =
        tokio::time::timeout_at(deadline, pull(zone, primary, ours, bounds, deadline)).await;
    match result {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the transfer took longer than {} s (transfer_timeout_secs)",
            bounds.timeout.as_secs()
        )),
    }
}

async fn pull(
    zone: &Name,
    primary: Primary<'_>,
    ours: Option<&Record>,
    bounds: Bounds,
    deadline: tokio::time::Instant,
) -> Result<Pulled, String> {
    let mut request = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    let qtype = if ours.is_some() {
        RecordType::IXFR
    } else {
        RecordType::AXFR
    };
    request.queries.push(Query::query(zone.clone(), qtype));
    if let Some(soa) = ours {
        request.authorities.push(soa.clone());
    }
    let (bytes, mut verifier) = encode(&request, primary.signer)?;
    let mut stream = connect(primary.addr, deadline).await?;
    write_message(&mut stream, &bytes, deadline).await?;
    let mut parser = Parser::new(zone, ours.map(serial_of));
    let mut total = 0u64;
    let mut first = true;
    loop {
        let wait = deadline.min(tokio::time::Instant::now() + MESSAGE_WAIT);
        let left = bounds.max_bytes.saturating_sub(total);
        let (bytes, framed) = read_message(&mut stream, wait, left).await.map_err(|e| {
            if total > 0 {
                format!("{e} after {total} bytes ({} records)", parser.count)
            } else {
                e
            }
        })?;
        total += framed;
        let message =
            Message::from_vec(&bytes).map_err(|e| format!("an undecodable message: {e}"))?;
        if message.metadata.id != request.metadata.id
            || message.metadata.message_type != MessageType::Response
        {
            return Err("a message that does not answer our request".into());
        }
        if let Some(v) = verifier.as_mut() {
            v.verify(&bytes, &message)?;
        }
        if message.metadata.response_code != ResponseCode::NoError {
            return Err(format!("it answered {}", message.metadata.response_code));
        }
        if first
            && message
                .queries
                .first()
                .is_some_and(|q| LowerName::new(&q.name) != LowerName::new(zone))
        {
            return Err("the answer is for another zone".into());
        }
        if message.answers.is_empty() {
            return Err("a message with no records".into());
        }
        for record in message.answers {
            parser.feed(record)?;
        }
        if first && parser.count == 1 {
            // A single SOA: the primary is not newer (RFC 1995 §4), or it says nothing.
            if let Some(s) = parser.final_serial
                && ours.is_some_and(|o| !newer(s, serial_of(o)))
            {
                return Ok(Pulled::UpToDate(s));
            }
        }
        first = false;
        if parser.done {
            if verifier.as_ref().is_some_and(|v| !v.complete()) {
                return Err("the last message is not signed".into());
            }
            return parser.result();
        }
    }
}

/// The transfer's records read so far, and where they are in the IXFR or AXFR sequence.
struct Parser {
    apex: LowerName,
    ours: Option<u32>,
    final_soa: Option<Record>,
    final_serial: Option<u32>,
    count: usize,
    done: bool,
    style: Style,
    full: Vec<Record>,
    diffs: Vec<Diff>,
}

enum Style {
    Unknown,
    Full,
    Removing(Diff),
    Adding(Diff),
}

impl Parser {
    fn new(zone: &Name, ours: Option<u32>) -> Parser {
        Parser {
            apex: LowerName::new(zone),
            ours,
            final_soa: None,
            final_serial: None,
            count: 0,
            done: false,
            style: Style::Unknown,
            full: Vec::new(),
            diffs: Vec::new(),
        }
    }

    fn feed(&mut self, record: Record) -> Result<(), String> {
        if self.done {
            return Err("records after the transfer's last SOA".into());
        }
        self.count += 1;
        let is_soa = record.record_type() == RecordType::SOA;
        if is_soa && LowerName::new(&record.name) != self.apex {
            return Err(format!("an SOA record of {} in the transfer", record.name));
        }
        if !matches!(record.data, RData::SOA(_)) && is_soa {
            return Err("an SOA record without data".into());
        }
        let Some(final_serial) = self.final_serial else {
            if !is_soa {
                return Err(format!("the transfer starts with {record}, not the SOA"));
            }
            self.final_serial = Some(serial_of(&record));
            self.final_soa = Some(record);
            return Ok(());
        };
        let style = std::mem::replace(&mut self.style, Style::Unknown);
        self.style = match style {
            Style::Unknown
                if is_soa && self.ours == Some(serial_of(&record)) && self.count == 2 =>
            {
                Style::Removing(Diff {
                    from: record,
                    to: Record::from_rdata(Name::root(), 0, RData::Update0(RecordType::SOA)),
                    removed: Vec::new(),
                    added: Vec::new(),
                })
            }
            Style::Unknown | Style::Full => {
                if is_soa {
                    if serial_of(&record) != final_serial {
                        return Err("an SOA record in the middle of the zone".into());
                    }
                    self.done = true;
                } else {
                    self.full.push(record);
                }
                Style::Full
            }
            Style::Removing(mut diff) => {
                if is_soa {
                    diff.to = record;
                    Style::Adding(diff)
                } else {
                    diff.removed.push(record);
                    Style::Removing(diff)
                }
            }
            Style::Adding(mut diff) => {
                if is_soa {
                    let serial = serial_of(&record);
                    let to = diff.to_serial();
                    self.diffs.push(diff);
                    if serial == final_serial && to == final_serial {
                        self.done = true;
                        Style::Unknown
                    } else if serial != to {
                        return Err(format!(
                            "a difference from serial {serial} follows one ending at {to}"
                        ));
                    } else {
                        Style::Removing(Diff {
                            from: record,
                            to: Record::from_rdata(
                                Name::root(),
                                0,
                                RData::Update0(RecordType::SOA),
                            ),
                            removed: Vec::new(),
                            added: Vec::new(),
                        })
                    }
                } else {
                    diff.added.push(record);
                    Style::Adding(diff)
                }
            }
        };
        Ok(())
    }

    fn result(self) -> Result<Pulled, String> {
        let Some(soa) = self.final_soa else {
            return Err("an empty transfer".into());
        };
        if !self.diffs.is_empty() {
            return Ok(Pulled::Incremental(self.diffs));
        }
        let mut records = Vec::with_capacity(self.full.len() + 1);
        records.push(soa);
        records.extend(self.full);
        Ok(Pulled::Full(records))
    }
}

/// Builds the zone `apex` from the records of a full transfer (checked as a zone file is).
pub fn build(apex: &Name, records: Vec<Record>, source: &str) -> Result<Zone, String> {
    let lined = records
        .into_iter()
        .map(|record| LinedRecord { record, line: 0 })
        .collect();
    Zone::build(Path::new(source), apex, lined).map_err(|errors| {
        let shown: Vec<String> = errors.iter().take(3).map(|e| e.message.clone()).collect();
        format!("the transferred zone is not valid: {}", shown.join("; "))
    })
}

/// Applies `diffs` to `zone`: every record removed must be there, every record added must not.
pub fn apply(zone: &Zone, diffs: &[Diff], source: &str) -> Result<Zone, String> {
    let mut records: HashMap<Vec<u8>, Record> = zone
        .records()
        .skip(1)
        .map(|r| (record_key(r), r.clone()))
        .collect();
    let mut soa = zone.soa().clone();
    for diff in diffs {
        if diff.from_serial() != serial_of(&soa) {
            return Err(format!(
                "a difference from serial {} to a copy at {}",
                diff.from_serial(),
                serial_of(&soa)
            ));
        }
        for record in &diff.removed {
            if records.remove(&record_key(record)).is_none() {
                return Err(format!("it removes {record}, which our copy has not got"));
            }
        }
        for record in &diff.added {
            if records.insert(record_key(record), record.clone()).is_some() {
                return Err(format!("it adds {record}, which our copy has already"));
            }
        }
        soa = diff.to.clone();
    }
    let mut all = Vec::with_capacity(records.len() + 1);
    all.push(soa);
    all.extend(records.into_values());
    build(zone.origin(), all, source)
}

fn unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        ([0u8; 4], 0).into()
    } else {
        ([0u16; 8], 0).into()
    }
}

/// Encodes `request`, signed when there is a key.
fn encode(
    request: &Message,
    signer: Option<&TSigner>,
) -> Result<(Vec<u8>, Option<Verifier>), String> {
    match signer {
        Some(signer) => {
            let (bytes, verifier) = tsig::sign_request(request, signer)?;
            Ok((bytes, Some(verifier)))
        }
        None => Ok((request.to_vec().map_err(|e| e.to_string())?, None)),
    }
}

async fn connect(addr: SocketAddr, deadline: tokio::time::Instant) -> Result<TcpStream, String> {
    match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => Err(format!("connecting to {addr} timed out")),
    }
}

async fn write_message(
    stream: &mut TcpStream,
    bytes: &[u8],
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    framed.extend_from_slice(bytes);
    match tokio::time::timeout_at(deadline, stream.write_all(&framed)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot send the request: {e}")),
        Err(_) => Err("sending the request timed out".into()),
    }
}

/// Reads one length-prefixed message of at most `left` bytes (prefix included); returns it
/// and the bytes it took.
async fn read_message(
    stream: &mut TcpStream,
    deadline: tokio::time::Instant,
    left: u64,
) -> Result<(Vec<u8>, u64), String> {
    let mut len = [0u8; 2];
    let read = async {
        stream.read_exact(&mut len).await?;
        let len = usize::from(u16::from_be_bytes(len));
        if len as u64 + 2 > left {
            return Ok(Err(len));
        }
        let mut message = vec![0u8; len];
        stream.read_exact(&mut message).await?;
        Ok::<_, std::io::Error>(Ok(message))
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(Ok(message))) => {
            let taken = message.len() as u64 + 2;
            Ok((message, taken))
        }
        Ok(Ok(Err(_))) => Err("the transfer is larger than transfer_max_bytes".into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err("the connection was closed in the middle of the transfer".into())
        }
        Ok(Err(e)) => Err(format!("reading the transfer: {e}")),
        Err(_) => Err("no message within the time allowed".into()),
    }
}
