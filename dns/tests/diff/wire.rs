//! DNS wire format, written out by hand so that the test controls every bit it sends (including
//! requests a client library would refuse to build: QDCOUNT 0 or 2, QR set, odd opcodes) and shows
//! every byte it receives (a response a library would reject is still a response to compare).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Record type numbers used by the query set.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const HINFO: u16 = 13;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const DS: u16 = 43;
    pub const RRSIG: u16 = 46;
    pub const NSEC: u16 = 47;
    pub const DNSKEY: u16 = 48;
    pub const NSEC3: u16 = 50;
    pub const NSEC3PARAM: u16 = 51;
    pub const CDS: u16 = 59;
    pub const CDNSKEY: u16 = 60;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
    pub const CAA: u16 = 257;
}

/// Class numbers used by the query set.
pub mod class {
    pub const IN: u16 = 1;
    pub const CH: u16 = 3;
    pub const HS: u16 = 4;
    pub const NONE: u16 = 254;
    pub const ANY: u16 = 255;
}

/// The mnemonic of a record type, or `TYPEnnn` (RFC 3597).
pub fn type_name(t: u16) -> String {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        59 => "CDS",
        60 => "CDNSKEY",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    s.to_string()
}

/// The mnemonic of a class, or `CLASSnnn` (RFC 3597).
pub fn class_name(c: u16) -> String {
    match c {
        1 => "IN".into(),
        3 => "CH".into(),
        4 => "HS".into(),
        254 => "NONE".into(),
        255 => "ANY".into(),
        _ => format!("CLASS{c}"),
    }
}

/// The mnemonic of a response code (extended codes included).
pub fn rcode_name(r: u16) -> String {
    let s = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        _ => return format!("RCODE{r}"),
    };
    s.to_string()
}

/// The mnemonic of an opcode.
pub fn opcode_name(o: u8) -> String {
    match o {
        0 => "QUERY".into(),
        1 => "IQUERY".into(),
        2 => "STATUS".into(),
        4 => "NOTIFY".into(),
        5 => "UPDATE".into(),
        _ => format!("OPCODE{o}"),
    }
}

/// The OPT pseudo-record of a request (RFC 6891).
#[derive(Clone, Debug)]
pub struct EdnsRequest {
    /// Requestor's UDP payload size.
    pub size: u16,
    /// EDNS version (0 is the only one defined; 1 must get BADVERS).
    pub version: u8,
    /// The DO bit (RFC 3225).
    pub dnssec_ok: bool,
    /// Options as (code, data).
    pub options: Vec<(u16, Vec<u8>)>,
}

/// One request, field by field.
#[derive(Clone, Debug)]
pub struct Request {
    /// Message ID.
    pub id: u16,
    /// QNAME in presentation form, absolute or not (a trailing dot is implied).
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// OPCODE.
    pub opcode: u8,
    /// QR set in the request (a malformed request).
    pub qr: bool,
    /// RD.
    pub rd: bool,
    /// AD (RFC 6840 §5.7: a client may set it to ask for the AD bit in answers).
    pub ad: bool,
    /// CD.
    pub cd: bool,
    /// How many copies of the question to send (0, 1 or 2).
    pub questions: u8,
    /// The OPT record, if any.
    pub edns: Option<EdnsRequest>,
    /// For IXFR: the serial of the SOA put in the authority section (RFC 1995 §3).
    pub ixfr_serial: Option<u32>,
}

impl Request {
    /// A standard query: opcode QUERY, class IN, RD clear, one question, EDNS 1232.
    pub fn new(name: &str, qtype: u16) -> Self {
        Request {
            id: 0,
            name: name.to_string(),
            qtype,
            qclass: class::IN,
            opcode: 0,
            qr: false,
            rd: false,
            ad: false,
            cd: false,
            questions: 1,
            edns: Some(EdnsRequest {
                size: 1232,
                version: 0,
                dnssec_ok: false,
                options: Vec::new(),
            }),
            ixfr_serial: None,
        }
    }

    /// The request in wire format.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(64);
        m.extend_from_slice(&self.id.to_be_bytes());
        let mut b2 = (self.opcode & 0xf) << 3;
        if self.qr {
            b2 |= 0x80;
        }
        if self.rd {
            b2 |= 0x01;
        }
        let mut b3 = 0u8;
        if self.ad {
            b3 |= 0x20;
        }
        if self.cd {
            b3 |= 0x10;
        }
        m.push(b2);
        m.push(b3);
        m.extend_from_slice(&u16::from(self.questions).to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&u16::from(self.ixfr_serial.is_some()).to_be_bytes());
        m.extend_from_slice(&u16::from(self.edns.is_some()).to_be_bytes());
        for _ in 0..self.questions {
            encode_name(&mut m, &self.name);
            m.extend_from_slice(&self.qtype.to_be_bytes());
            m.extend_from_slice(&self.qclass.to_be_bytes());
        }
        if let Some(serial) = self.ixfr_serial {
            encode_name(&mut m, &self.name);
            m.extend_from_slice(&rtype::SOA.to_be_bytes());
            m.extend_from_slice(&self.qclass.to_be_bytes());
            m.extend_from_slice(&0u32.to_be_bytes());
            let mut rdata = Vec::new();
            encode_name(&mut rdata, "ns1.onebox.test");
            encode_name(&mut rdata, "hostmaster.onebox.test");
            for v in [serial, 7200, 3600, 1_209_600, 900] {
                rdata.extend_from_slice(&v.to_be_bytes());
            }
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(&rdata);
        }
        if let Some(e) = &self.edns {
            m.push(0); // root owner
            m.extend_from_slice(&rtype::OPT.to_be_bytes());
            m.extend_from_slice(&e.size.to_be_bytes());
            m.push(0); // extended RCODE
            m.push(e.version);
            m.extend_from_slice(&(if e.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
            let len: usize = e.options.iter().map(|(_, d)| 4 + d.len()).sum();
            m.extend_from_slice(&(len as u16).to_be_bytes());
            for (code, data) in &e.options {
                m.extend_from_slice(&code.to_be_bytes());
                m.extend_from_slice(&(data.len() as u16).to_be_bytes());
                m.extend_from_slice(data);
            }
        }
        m
    }
}

fn encode_name(m: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
}

/// One resource record, its RDATA in presentation form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rr {
    /// Owner name, as sent (case preserved).
    pub name: String,
    /// TYPE.
    pub rtype: u16,
    /// CLASS.
    pub class: u16,
    /// TTL.
    pub ttl: u32,
    /// RDATA in presentation form.
    pub rdata: String,
}

impl std::fmt::Display for Rr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {} {}",
            self.name,
            self.ttl,
            class_name(self.class),
            type_name(self.rtype),
            self.rdata
        )
    }
}

/// The OPT record of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdnsResponse {
    /// Responder's UDP payload size.
    pub size: u16,
    /// Upper 8 bits of the extended RCODE.
    pub ext_rcode: u8,
    /// EDNS version.
    pub version: u8,
    /// The flags field (DO and Z).
    pub flags: u16,
    /// Options as (code, data).
    pub options: Vec<(u16, Vec<u8>)>,
    /// The owner name (must be the root).
    pub owner: String,
}

/// A parsed response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Message ID.
    pub id: u16,
    /// QR.
    pub qr: bool,
    /// OPCODE.
    pub opcode: u8,
    /// AA.
    pub aa: bool,
    /// TC.
    pub tc: bool,
    /// RD.
    pub rd: bool,
    /// RA.
    pub ra: bool,
    /// The reserved Z bit.
    pub z: bool,
    /// AD.
    pub ad: bool,
    /// CD.
    pub cd: bool,
    /// The full RCODE (the OPT record's upper bits included).
    pub rcode: u16,
    /// Question section as (name, type, class).
    pub question: Vec<(String, u16, u16)>,
    /// Answer section.
    pub answer: Vec<Rr>,
    /// Authority section.
    pub authority: Vec<Rr>,
    /// Additional section without the OPT record.
    pub additional: Vec<Rr>,
    /// The OPT record, if any; `Err` when there were several.
    pub edns: Option<EdnsResponse>,
    /// How many OPT records there were.
    pub opt_count: usize,
}

/// Parses one DNS message.
pub fn parse(msg: &[u8]) -> Result<Response, String> {
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16()?;
    let b2 = r.u8()?;
    let b3 = r.u8()?;
    let qd = r.u16()?;
    let an = r.u16()?;
    let ns = r.u16()?;
    let ar = r.u16()?;
    let mut question = Vec::new();
    for _ in 0..qd {
        let name = r.name()?;
        question.push((name, r.u16()?, r.u16()?));
    }
    let answer = (0..an).map(|_| r.rr()).collect::<Result<Vec<_>, _>>()?;
    let authority = (0..ns).map(|_| r.rr()).collect::<Result<Vec<_>, _>>()?;
    let mut additional = Vec::new();
    let mut edns = None;
    let mut opt_count = 0;
    for _ in 0..ar {
        let start = r.pos;
        let name = r.name()?;
        let t = r.u16()?;
        if t == rtype::OPT {
            opt_count += 1;
            let size = r.u16()?;
            let ext_rcode = r.u8()?;
            let version = r.u8()?;
            let flags = r.u16()?;
            let len = usize::from(r.u16()?);
            let data = r.take(len)?;
            let mut options = Vec::new();
            let mut o = Reader { msg: data, pos: 0 };
            while o.pos < data.len() {
                let code = o.u16()?;
                let l = usize::from(o.u16()?);
                options.push((code, o.take(l)?.to_vec()));
            }
            edns = Some(EdnsResponse {
                size,
                ext_rcode,
                version,
                flags,
                options,
                owner: name,
            });
        } else {
            r.pos = start;
            additional.push(r.rr()?);
        }
    }
    if r.pos != msg.len() {
        return Err(format!(
            "{} trailing bytes after the last record",
            msg.len() - r.pos
        ));
    }
    let ext = edns.as_ref().map_or(0, |e| u16::from(e.ext_rcode));
    Ok(Response {
        id,
        qr: b2 & 0x80 != 0,
        opcode: (b2 >> 3) & 0xf,
        aa: b2 & 0x04 != 0,
        tc: b2 & 0x02 != 0,
        rd: b2 & 0x01 != 0,
        ra: b3 & 0x80 != 0,
        z: b3 & 0x40 != 0,
        ad: b3 & 0x20 != 0,
        cd: b3 & 0x10 != 0,
        rcode: (ext << 4) | u16::from(b3 & 0xf),
        question,
        answer,
        authority,
        additional,
        edns,
        opt_count,
    })
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos + n;
        if end > self.msg.len() {
            return Err(format!(
                "message ends at byte {} but {} more were needed at {}",
                self.msg.len(),
                n,
                self.pos
            ));
        }
        let s = &self.msg[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A possibly compressed name, in presentation form with a trailing dot.
    fn name(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let mut pos = self.pos;
        let mut jumped = false;
        let mut hops = 0;
        loop {
            let len = *self
                .msg
                .get(pos)
                .ok_or_else(|| format!("name runs past the end at byte {pos}"))?;
            if len & 0xc0 == 0xc0 {
                let lo = *self
                    .msg
                    .get(pos + 1)
                    .ok_or_else(|| "truncated compression pointer".to_string())?;
                if !jumped {
                    self.pos = pos + 2;
                }
                jumped = true;
                hops += 1;
                if hops > 64 {
                    return Err("compression pointer loop".into());
                }
                pos = usize::from(len & 0x3f) << 8 | usize::from(lo);
                continue;
            }
            if len & 0xc0 != 0 {
                return Err(format!("bad label type {len:#x} at byte {pos}"));
            }
            if len == 0 {
                if !jumped {
                    self.pos = pos + 1;
                }
                if out.is_empty() {
                    out.push('.');
                }
                return Ok(out);
            }
            let label = self
                .msg
                .get(pos + 1..pos + 1 + usize::from(len))
                .ok_or_else(|| format!("label runs past the end at byte {pos}"))?;
            for &c in label {
                match c {
                    b'.' | b'\\' => {
                        out.push('\\');
                        out.push(char::from(c));
                    }
                    0x21..=0x7e => out.push(char::from(c)),
                    _ => {
                        let _ = write!(out, "\\{c:03}");
                    }
                }
            }
            out.push('.');
            pos += 1 + usize::from(len);
        }
    }

    fn character_string(&mut self) -> Result<String, String> {
        let len = usize::from(self.u8()?);
        let s = self.take(len)?;
        Ok(quote(s))
    }

    fn rr(&mut self) -> Result<Rr, String> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let len = usize::from(self.u16()?);
        let end = self.pos + len;
        if end > self.msg.len() {
            return Err(format!("RDATA of {name} runs past the end"));
        }
        let start = self.pos;
        let rdata = match self.rdata(rtype, end) {
            Ok(s) if self.pos == end => s,
            _ => generic(&self.msg[start..end]),
        };
        self.pos = end;
        Ok(Rr {
            name,
            rtype,
            class,
            ttl,
            rdata,
        })
    }

    fn rdata(&mut self, rtype: u16, end: usize) -> Result<String, String> {
        Ok(match rtype {
            rtype::A => {
                let b = self.take(4)?;
                Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
            }
            rtype::AAAA => {
                let b: [u8; 16] = self.take(16)?.try_into().map_err(|_| "AAAA")?;
                Ipv6Addr::from(b).to_string()
            }
            rtype::NS | rtype::CNAME | rtype::PTR => self.name()?,
            rtype::MX => format!("{} {}", self.u16()?, self.name()?),
            rtype::SRV => format!(
                "{} {} {} {}",
                self.u16()?,
                self.u16()?,
                self.u16()?,
                self.name()?
            ),
            rtype::SOA => format!(
                "{} {} {} {} {} {} {}",
                self.name()?,
                self.name()?,
                self.u32()?,
                self.u32()?,
                self.u32()?,
                self.u32()?,
                self.u32()?
            ),
            rtype::TXT | rtype::HINFO => {
                let mut parts = Vec::new();
                while self.pos < end {
                    parts.push(self.character_string()?);
                }
                parts.join(" ")
            }
            rtype::CAA => {
                let flags = self.u8()?;
                let tag_len = usize::from(self.u8()?);
                let tag = String::from_utf8_lossy(self.take(tag_len)?).into_owned();
                let value = self.take(end - self.pos)?;
                format!("{flags} {tag} {}", quote(value))
            }
            // DNSSEC (RFC 4034): digests, keys and signatures in hex, times as Unix seconds.
            rtype::DS | rtype::CDS => format!(
                "{} {} {} {}",
                self.u16()?,
                self.u8()?,
                self.u8()?,
                hex(self.take(end - self.pos)?)
            ),
            rtype::DNSKEY | rtype::CDNSKEY => format!(
                "{} {} {} {}",
                self.u16()?,
                self.u8()?,
                self.u8()?,
                hex(self.take(end - self.pos)?)
            ),
            rtype::RRSIG => {
                let covered = type_name(self.u16()?);
                let mut s = format!("{covered} {} {}", self.u8()?, self.u8()?);
                for _ in 0..3 {
                    let _ = write!(s, " {}", self.u32()?);
                }
                let _ = write!(s, " {} {}", self.u16()?, self.name()?);
                let _ = write!(s, " {}", hex(self.take(end - self.pos)?));
                s
            }
            rtype::NSEC => {
                let next = self.name()?;
                let types = type_bitmap(self.take(end - self.pos)?)?;
                format!("{next} {types}")
            }
            _ => return Err("generic".into()),
        })
    }
}

fn quote(s: &[u8]) -> String {
    let mut out = String::from("\"");
    for &c in s {
        match c {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(c));
            }
            0x20..=0x7e => out.push(char::from(c)),
            _ => {
                let _ = write!(out, "\\{c:03}");
            }
        }
    }
    out.push('"');
    out
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// The type bit maps of NSEC (RFC 4034 §4.1.2) as type mnemonics, in order.
fn type_bitmap(mut data: &[u8]) -> Result<String, String> {
    let mut types = Vec::new();
    while !data.is_empty() {
        let [window, len, rest @ ..] = data else {
            return Err("truncated type bit map".into());
        };
        let len = usize::from(*len);
        let bits = rest.get(..len).ok_or("type bit map runs past its RDATA")?;
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    let t = u16::from(*window) << 8 | (i * 8 + bit) as u16;
                    types.push(type_name(t));
                }
            }
        }
        data = &rest[len..];
    }
    Ok(types.join(" "))
}

fn generic(data: &[u8]) -> String {
    let mut s = format!("\\# {}", data.len());
    if !data.is_empty() {
        s.push(' ');
        for b in data {
            let _ = write!(s, "{b:02x}");
        }
    }
    s
}
