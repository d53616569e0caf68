//! `onebox doctor`: every check a person would otherwise make by hand, each with its fix in one
//! sentence — the zone's name servers and glue as this box serves them and as the parent zone
//! has them, the site's addresses, the DS at the parent against the DNSKEY, the certificate and
//! its renewal (the edge's metrics), the last backup, disk space, the clock, pending security
//! updates, each service. Exit 0 when nothing fails, 1 otherwise; `--alert` sends what turned
//! bad (and what was fixed) to the webhook and e-mail of `[alerts]`.

use crate::backup::{Site, SiteArgs};
use crate::run::bounded;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use serde::Serialize;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long one DNS or HTTP probe may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// `onebox doctor`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the site lives: `--root`, `--config`.
    #[command(flatten)]
    pub site: SiteArgs,
    /// One JSON object on standard output.
    #[arg(long)]
    pub json: bool,
    /// The recursive resolver used to find the parent zone's servers (`ADDR` or `ADDR:PORT`).
    /// Default: the first `nameserver` of /etc/resolv.conf.
    #[arg(long, value_name = "ADDR")]
    pub resolver: Option<String>,
    /// Ask this server for the parent zone's delegation (NS, glue, DS) instead of the parent's
    /// own servers found through the resolver (`ADDR` or `ADDR:PORT`).
    #[arg(long, value_name = "ADDR")]
    pub parent: Option<String>,
    /// Send an alert for each check that turned bad (at most once per problem per
    /// `[alerts] repeat_secs`) and for each that was fixed.
    #[arg(long)]
    pub alert: bool,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth a look; does not fail the doctor.
    Warn,
    /// Broken: the doctor exits 1 and an alert is sent.
    Fail,
    /// Could not be checked (offline, not under systemd, not installed).
    Unknown,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its name (`dns.parent`, `backup`, `service.onebox-app` …): the key alerts use.
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, in one sentence (absent when all is well).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        name: name.to_string(),
        status,
        detail: detail.into(),
        fix: if status == Status::Ok {
            None
        } else {
            fix.map(str::to_string)
        },
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The site's domain.
    pub domain: String,
    /// Whether no check failed.
    pub ok: bool,
    /// Every check.
    pub checks: Vec<Check>,
    /// What `--alert` did (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<crate::alerts::Sent>,
}

/// Runs the doctor; returns whether nothing failed.
pub async fn run(args: &Args) -> anyhow::Result<bool> {
    let site = args.site.load()?;
    let checks = checks(&site, args).await;
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let alerts = if args.alert {
        Some(crate::alerts::process(&site, &checks).await?)
    } else {
        None
    };
    let report = Report {
        domain: site.file.site.domain.to_string(),
        ok,
        checks,
        alerts,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(ok)
}

/// Every check.
pub async fn checks(site: &Site, args: &Args) -> Vec<Check> {
    let mut out = Vec::new();
    out.extend(dns_checks(site, args));
    let edge_metrics = metrics(site.file.edge.metrics_listen.get());
    out.push(certificate(site, &edge_metrics));
    out.push(edge_memory(&edge_metrics));
    out.push(backup(site));
    out.push(disk(site));
    out.push(clock());
    out.push(updates());
    out.extend(services(site).await);
    out
}

/// The report for people.
pub fn human(r: &Report) -> String {
    let mut out = format!(
        "onebox doctor for {}: {}\n",
        r.domain,
        if r.ok {
            "healthy"
        } else {
            "SOMETHING IS WRONG"
        }
    );
    for c in &r.checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Unknown => "??  ",
        };
        out += &format!("  {mark} {:<20} {}\n", c.name, c.detail);
        if let Some(fix) = &c.fix {
            out += &format!("       {:<20} fix: {fix}\n", "");
        }
    }
    if let Some(a) = &r.alerts {
        out += &format!("  alerts: {}\n", a.summary());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// DNS

/// `ADDR` or `ADDR:PORT` (port 53 by default).
fn server_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok(sa);
    }
    text.trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("`{text}` is not ADDR or ADDR:PORT"))
}

/// The first `nameserver` of /etc/resolv.conf.
fn system_resolver() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("/etc/resolv.conf: {e}"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|a| server_addr(a.trim()).ok())
        .ok_or_else(|| "no nameserver in /etc/resolv.conf".to_string())
}

/// One DNS query (UDP, then TCP when truncated); `recurse` sets RD.
fn query(
    addr: SocketAddr,
    name: &Name,
    rtype: RecordType,
    recurse: bool,
) -> Result<Message, String> {
    use std::io::{Read, Write};
    let mut q = Message::query();
    q.metadata.id = fastrand::u16(..);
    q.metadata.recursion_desired = recurse;
    q.add_query(Query::query(name.clone(), rtype));
    let bytes = q.to_vec().map_err(|e| e.to_string())?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.send_to(&bytes, addr)
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let n = loop {
        let (n, from) = s
            .recv_from(&mut buf)
            .map_err(|e| format!("{addr}: no answer ({e})"))?;
        if from == addr {
            break n;
        }
    };
    let mut reply = Message::from_vec(&buf[..n]).map_err(|e| format!("{addr}: bad answer: {e}"))?;
    if reply.metadata.truncation {
        let mut t =
            TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
        t.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let len = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
        t.write_all(&len.to_be_bytes())
            .and_then(|()| t.write_all(&bytes))
            .map_err(|e| e.to_string())?;
        let mut l = [0u8; 2];
        t.read_exact(&mut l).map_err(|e| e.to_string())?;
        let mut b = vec![0u8; usize::from(u16::from_be_bytes(l))];
        t.read_exact(&mut b).map_err(|e| e.to_string())?;
        reply = Message::from_vec(&b).map_err(|e| format!("{addr}: bad answer: {e}"))?;
    }
    if reply.metadata.id != q.metadata.id {
        return Err(format!("{addr}: an answer to another query"));
    }
    Ok(reply)
}

fn ns_names(records: &[Record], owner: &Name) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.name.eq_case(owner) || r.name == *owner)
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(lower(&ns.0)),
            _ => None,
        })
        .collect()
}

fn lower(n: &Name) -> String {
    n.to_lowercase().to_ascii()
}

fn addresses(records: &[Record], owner: &str) -> BTreeSet<IpAddr> {
    records
        .iter()
        .filter(|r| {
            lower(&r.name).trim_end_matches('.') == owner.trim_end_matches('.').to_lowercase()
        })
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The box's own answer for `name`/`rtype` (its answer section).
fn own(dns: SocketAddr, name: &Name, rtype: RecordType) -> Result<Vec<Record>, String> {
    query(dns, name, rtype, false).map(|m| m.answers)
}

/// The DS records (key tag, algorithm, digest type, digest) the box's DNSKEY KSKs make.
fn ds_of(dnskeys: &[Record], owner: &Name) -> BTreeSet<(u16, u8, u8, String)> {
    use sha2::Digest;
    let owner_wire = owner.to_lowercase().to_bytes().unwrap_or_default();
    dnskeys
        .iter()
        .filter(|r| r.record_type() == RecordType::DNSKEY)
        .filter_map(|r| {
            let rdata = r.data.to_bytes().ok()?;
            // Flags 257: a key-signing key (SEP bit).
            (rdata.len() > 4 && rdata[0..2] == [1, 1]).then_some(())?;
            let mut ac: u32 = 0;
            for (i, b) in rdata.iter().enumerate() {
                ac += if i & 1 == 1 {
                    u32::from(*b)
                } else {
                    u32::from(*b) << 8
                };
            }
            ac += (ac >> 16) & 0xFFFF;
            let tag = (ac & 0xFFFF) as u16;
            let mut h = sha2::Sha256::new();
            h.update(&owner_wire);
            h.update(&rdata);
            let digest: String = h.finalize().iter().map(|b| format!("{b:02X}")).collect();
            Some((tag, rdata[3], 2, digest))
        })
        .collect()
}

/// The DS records of the parent's answer.
fn ds_records(records: &[Record]) -> BTreeSet<(u16, u8, u8, String)> {
    records
        .iter()
        .filter(|r| r.record_type() == RecordType::DS)
        .filter_map(|r| {
            let b = r.data.to_bytes().ok()?;
            (b.len() > 4).then_some(())?;
            let digest: String = b[4..].iter().map(|x| format!("{x:02X}")).collect();
            Some((u16::from_be_bytes([b[0], b[1]]), b[2], b[3], digest))
        })
        .collect()
}

fn show<T: std::fmt::Display>(set: &BTreeSet<T>) -> String {
    if set.is_empty() {
        return "none".into();
    }
    set.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The name servers of the parent zone of `domain`, found through the resolver.
fn parent_server(domain: &Name, args: &Args) -> Result<SocketAddr, String> {
    if let Some(p) = &args.parent {
        return server_addr(p);
    }
    let resolver = match &args.resolver {
        Some(r) => server_addr(r)?,
        None => system_resolver()?,
    };
    let parent = domain.base_name();
    let ns = query(resolver, &parent, RecordType::NS, true)?;
    let names = ns_names(&ns.answers, &parent);
    for ns in names {
        let Ok(name) = Name::from_ascii(&ns) else {
            continue;
        };
        for rtype in [RecordType::A, RecordType::AAAA] {
            if let Ok(m) = query(resolver, &name, rtype, true)
                && let Some(ip) = addresses(&m.answers, &lower(&name)).into_iter().next()
            {
                return Ok(SocketAddr::new(ip, 53));
            }
        }
    }
    Err(format!(
        "no address for a name server of {parent} through {resolver}"
    ))
}

fn dns_checks(site: &Site, args: &Args) -> Vec<Check> {
    let mut out = Vec::new();
    let domain = site.file.site.domain.name().clone();
    let apex = lower(&domain);
    let Some(dns) = site
        .file
        .dns
        .listen
        .first()
        .map(|a| crate::status::probe_address(*a))
    else {
        out.push(check(
            "dns.ns",
            Status::Fail,
            "no [dns] listen address",
            Some("set [dns] listen"),
        ));
        return out;
    };
    // The name servers as this box serves them.
    let box_ns = match own(dns, &domain, RecordType::NS) {
        Ok(r) => ns_names(&r, &domain),
        Err(e) => {
            out.push(check(
                "dns.ns",
                Status::Fail,
                format!("onebox-dns does not answer for {apex}: {e}"),
                Some("start onebox-dns (`systemctl restart onebox-dns`) and read its log (`journalctl -u onebox-dns`)"),
            ));
            return out;
        }
    };
    let mut box_glue = BTreeSet::new();
    let mut missing = Vec::new();
    for ns in &box_ns {
        if !(ns == &apex || ns.ends_with(&format!(".{apex}"))) {
            continue; // out of zone: no glue
        }
        let name = Name::from_ascii(ns).unwrap_or_else(|_| domain.clone());
        let mut found = BTreeSet::new();
        for rtype in [RecordType::A, RecordType::AAAA] {
            if let Ok(r) = own(dns, &name, rtype) {
                found.extend(addresses(&r, &lower(&name)));
            }
        }
        if found.is_empty() {
            missing.push(ns.clone());
        }
        for ip in found {
            box_glue.insert(format!("{ns} {ip}"));
        }
    }
    let distinct: BTreeSet<&str> = box_glue
        .iter()
        .filter_map(|g| g.split(' ').nth(1))
        .collect();
    out.push(if box_ns.len() < 2 {
        check(
            "dns.ns",
            Status::Fail,
            format!("{apex} has {} name server(s): {}", box_ns.len(), show(&box_ns)),
            Some("add a second name server (onebox.secondaries in the user-data, or an NS record for a secondary) — registries require two"),
        )
    } else if !missing.is_empty() {
        check(
            "dns.ns",
            Status::Fail,
            format!("no address in the zone for {}", missing.join(", ")),
            Some("add A/AAAA records for these in-zone name servers to the zone file and `systemctl reload onebox-dns`"),
        )
    } else if distinct.len() == 1 && box_glue.len() == box_ns.len() {
        check(
            "dns.ns",
            Status::Warn,
            format!("{}; all on one address ({})", show(&box_ns), show(&distinct.iter().collect())),
            Some("add a secondary name server elsewhere (onebox.secondaries) so the domain resolves while this box is down"),
        )
    } else {
        check("dns.ns", Status::Ok, format!("{}; glue {}", show(&box_ns), show(&box_glue)), None)
    });

    // The site's addresses.
    let site_cfg = &site.file.site;
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    for name in site_cfg.host_names() {
        for (rtype, want) in [
            (RecordType::A, site_cfg.public_ipv4.map(IpAddr::V4)),
            (RecordType::AAAA, site_cfg.public_ipv6.map(IpAddr::V6)),
        ] {
            let got = own(dns, name.name(), rtype)
                .map(|r| addresses(&r, name.as_str()))
                .unwrap_or_default();
            let want: BTreeSet<IpAddr> = want.into_iter().collect();
            seen.push(format!("{} {rtype} {}", name.as_str(), show(&got)));
            if got != want && !(want.is_empty() && rtype == RecordType::AAAA) {
                wrong.push(format!(
                    "{} {rtype} is {}, the box's is {}",
                    name.as_str(),
                    show(&got),
                    show(&want)
                ));
            }
        }
    }
    out.push(if wrong.is_empty() {
        check("dns.address", Status::Ok, seen.join("; "), None)
    } else {
        check(
            "dns.address",
            Status::Fail,
            wrong.join("; "),
            Some("make the zone's A/AAAA records the box's addresses ([site] public_ipv4/public_ipv6) and `systemctl reload onebox-dns`"),
        )
    });

    // The parent's view: delegation, glue, DS.
    let dnskeys = own(dns, &domain, RecordType::DNSKEY).unwrap_or_default();
    let want_ds = ds_of(&dnskeys, &domain);
    let parent = parent_server(&domain, args).and_then(|p| {
        let delegation = query(p, &domain, RecordType::NS, false)?;
        let ds = query(p, &domain, RecordType::DS, false)?;
        Ok((p, delegation, ds))
    });
    match parent {
        Err(e) => {
            out.push(check(
                "dns.parent",
                Status::Unknown,
                format!("could not ask the parent zone: {e}"),
                Some("check again when the box reaches the internet (or give --parent ADDR)"),
            ));
            out.push(check(
                "dns.ds",
                Status::Unknown,
                format!(
                    "could not ask the parent zone; the box publishes {} key-signing key(s)",
                    want_ds.len()
                ),
                Some("check again when the box reaches the internet"),
            ));
        }
        Ok((p, delegation, ds)) => {
            let mut records = delegation.authorities.clone();
            records.extend(delegation.answers.iter().cloned());
            let parent_ns = ns_names(&records, &domain);
            let mut parent_glue = BTreeSet::new();
            for ns in &parent_ns {
                for ip in addresses(&delegation.additionals, ns) {
                    parent_glue.insert(format!("{ns} {ip}"));
                }
            }
            out.push(if parent_ns.is_empty() {
                check(
                    "dns.parent",
                    Status::Fail,
                    format!("the parent ({p}) has no delegation for {apex} ({})", delegation.metadata.response_code),
                    Some("register the domain's name servers (and glue) at your registrar as the dns.ns check lists them"),
                )
            } else if parent_ns != box_ns || parent_glue != box_glue {
                check(
                    "dns.parent",
                    Status::Fail,
                    format!(
                        "the parent ({p}) has NS {} glue {}; the box serves NS {} glue {}",
                        show(&parent_ns),
                        show(&parent_glue),
                        show(&box_ns),
                        show(&box_glue)
                    ),
                    Some("at your registrar, set the name servers and glue to what the box serves (dns.ns)"),
                )
            } else {
                check(
                    "dns.parent",
                    Status::Ok,
                    format!("the parent ({p}) delegates to {} with glue {}", show(&parent_ns), show(&parent_glue)),
                    None,
                )
            });
            let have = ds_records(&ds.answers);
            let fmt = |s: &BTreeSet<(u16, u8, u8, String)>| {
                if s.is_empty() {
                    return "none".to_string();
                }
                s.iter()
                    .map(|(t, a, d, x)| format!("{t} {a} {d} {}…", &x[..x.len().min(16)]))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let ds_cmd = format!("`onebox-dns --config /etc/onebox/site.toml ds {apex}`");
            out.push(match (want_ds.is_empty(), have.is_empty()) {
                (true, true) => check("dns.ds", Status::Ok, "the zone is not signed and the parent has no DS", None),
                (true, false) => check(
                    "dns.ds",
                    Status::Fail,
                    format!("the parent has DS {} but the zone is not signed: validating resolvers fail it", fmt(&have)),
                    Some("remove the DS records at your registrar, or sign the zone again ([[dns.zone]] dnssec = true)"),
                ),
                (false, true) => check(
                    "dns.ds",
                    Status::Warn,
                    format!("the zone is signed (DS {}) but the parent has no DS: not validated yet", fmt(&want_ds)),
                    Some(&format!("give your registrar the DS record {ds_cmd} prints")),
                ),
                (false, false) if have.iter().any(|d| want_ds.contains(d)) => check(
                    "dns.ds",
                    Status::Ok,
                    format!("the parent's DS {} matches the zone's key", fmt(&have)),
                    None,
                ),
                (false, false) => check(
                    "dns.ds",
                    Status::Fail,
                    format!("the parent's DS {} matches no key of the zone (its DS: {})", fmt(&have), fmt(&want_ds)),
                    Some(&format!("replace the DS at your registrar with the one {ds_cmd} prints")),
                ),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Certificate, backup, disk, clock, updates, services

/// The edge's metrics text.
fn metrics(addr: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.take(4 << 20)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text)
}

/// The value of the metric `name` (the first series).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = if rest.starts_with('{') {
            rest.split_once('}')?.1
        } else {
            rest
        };
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The certificate check, from the edge's metrics (`edge_metrics`, as fetched).
fn certificate(site: &Site, edge_metrics: &Result<String, String>) -> Check {
    let edge = &site.file.edge;
    let min_days = site.file.alerts.certificate_min_days.get();
    let text = match edge_metrics {
        Ok(t) => t,
        Err(e) => {
            return check(
                "certificate",
                Status::Fail,
                format!("the edge's metrics do not answer: {e}"),
                Some(
                    "start onebox-edge (`systemctl restart onebox-edge`) and read `journalctl -u onebox-edge`",
                ),
            );
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    // 0 when no CA's certificate is served yet (the self-signed one has no expiry to watch).
    let expiry =
        metric(text, "onebox_edge_certificate_expiry_timestamp_seconds").filter(|e| *e > 0.0);
    let from_ca = metric(text, "onebox_edge_certificate_from_ca").unwrap_or(0.0) >= 1.0;
    let errors = metric(text, "onebox_edge_acme_errors_total").unwrap_or(0.0);
    let last_error = text
        .lines()
        .find(|l| l.starts_with("onebox_edge_acme_last_error_info"))
        .and_then(|l| {
            l.split_once("error=\"")?
                .1
                .rsplit_once("\"}")
                .map(|(e, _)| e.to_string())
        });
    let days = expiry.map(|e| ((e - now) / 86_400.0).floor() as i64);
    let acme_off = matches!(*edge.acme.ca, onebox_site::edge::CertificateAuthority::Off);
    let detail = match days {
        Some(d) => format!(
            "{} certificate, {d} days left{}",
            if from_ca { "a CA's" } else { "a self-signed" },
            if errors > 0.0 {
                format!(
                    "; {errors} ACME errors, last: {}",
                    last_error.as_deref().unwrap_or("?")
                )
            } else {
                String::new()
            }
        ),
        None if !from_ca => "a self-signed certificate".into(),
        None => "no certificate expiry in the edge's metrics".into(),
    };
    if acme_off {
        return check(
            "certificate",
            Status::Warn,
            format!("{detail}; ACME is off ([edge.acme] ca = \"off\")"),
            Some("set [edge.acme] ca (Let's Encrypt is the default) so browsers trust the site"),
        );
    }
    match days {
        Some(d) if from_ca && d >= min_days as i64 => {
            check("certificate", Status::Ok, detail, None)
        }
        Some(_) if from_ca => check(
            "certificate",
            Status::Fail,
            format!("{detail}: renewal has been failing (fewer than {min_days} days left)"),
            Some(
                "make the names resolve to this box and port 80/443 reachable, then read `journalctl -u onebox-edge` for the CA's error",
            ),
        ),
        _ => check(
            "certificate",
            Status::Warn,
            format!("{detail}: no certificate from the CA yet"),
            Some(
                "point the site's names at this box (dns.parent) and open ports 80 and 443; the edge retries by itself",
            ),
        ),
    }
}

/// The edge's memory against its memory guard's budget (`edge/src/memory.rs`), from its
/// metrics (`edge_metrics`, as fetched; the certificate check fails when they do not answer).
fn edge_memory(edge_metrics: &Result<String, String>) -> Check {
    match edge_metrics {
        Ok(text) => edge_memory_from(text),
        Err(e) => check(
            "edge.memory",
            Status::Unknown,
            format!("the edge's metrics do not answer: {e}"),
            None,
        ),
    }
}

/// The `edge.memory` check from the edge's metrics `text`: it fails while the edge is over its
/// budget (new connections refused, the largest client's closed), warns over nine tenths of it
/// or once the guard has closed connections since the edge started.
fn edge_memory_from(text: &str) -> Check {
    let mib = |name: &str| metric(text, name).map(|b| (b / 1_048_576.0).round() as u64);
    let (Some(used), Some(budget)) = (
        mib("onebox_edge_memory_bytes"),
        mib("onebox_edge_memory_budget_bytes"),
    ) else {
        return check(
            "edge.memory",
            Status::Unknown,
            "no memory figures in the edge's metrics",
            None,
        );
    };
    let closed = metric(text, "onebox_edge_memory_closed_connections_total").unwrap_or(0.0);
    let fix = "read `journalctl -u onebox-edge` for the clients the memory guard closed; if the \
               traffic is wanted, give the edge more (MemoryMax= of onebox-edge.service, or \
               [edge.limits] max_memory_mib) or its page cache less ([edge.page_cache] max_bytes)";
    if budget == 0 {
        return check(
            "edge.memory",
            Status::Ok,
            "no memory budget (no [edge.limits] max_memory_mib, no cgroup limit): the guard is off",
            None,
        );
    }
    let detail = format!(
        "{used} MiB of its {budget} MiB budget; the guard closed {closed} connections since the edge started"
    );
    if used > budget {
        check(
            "edge.memory",
            Status::Fail,
            format!("{detail}: over it, new connections are refused"),
            Some(fix),
        )
    } else if used * 10 > budget * 9 || closed > 0.0 {
        check("edge.memory", Status::Warn, detail, Some(fix))
    } else {
        check("edge.memory", Status::Ok, detail, None)
    }
}

fn backup(site: &Site) -> Check {
    let state = site
        .state_dir()
        .map(|d| site.host(&d).join(crate::backup::STATE_FILE))
        .and_then(|p| crate::backup::read_state(&p));
    let max = site.file.alerts.backup_max_age_secs.get() as i64;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match state {
        Err(e) => check(
            "backup",
            Status::Fail,
            format!("{e:#}"),
            Some("run onebox doctor as root"),
        ),
        Ok(s) => match (&s.last, &s.last_success) {
            (None, _) => check(
                "backup",
                Status::Warn,
                "no backup yet",
                Some("run `onebox backup` (the nightly timer onebox-backup.timer does it)"),
            ),
            (Some(l), _) if !l.ok => check(
                "backup",
                Status::Fail,
                format!(
                    "the last backup ({}) to {} FAILED: {}",
                    l.started,
                    l.repository,
                    l.error.as_deref().unwrap_or("?")
                ),
                Some(
                    "fix what the error says, then `onebox backup` (`journalctl -u onebox-backup` has the details)",
                ),
            ),
            (Some(_), Some(ok)) if now - ok.started_unix > max => check(
                "backup",
                Status::Fail,
                format!(
                    "the last successful backup is {} hours old ({})",
                    (now - ok.started_unix) / 3600,
                    ok.started
                ),
                Some(
                    "check that onebox-backup.timer is enabled (`systemctl list-timers onebox-backup`) and run `onebox backup`",
                ),
            ),
            (Some(l), _) => check(
                "backup",
                Status::Ok,
                format!(
                    "snapshot {} at {} to {} ({} bytes, {} added, {:.0} s)",
                    l.snapshot.as_deref().unwrap_or("?"),
                    l.started,
                    l.repository,
                    l.bytes_total,
                    l.bytes_added,
                    l.duration_secs
                ),
                None,
            ),
        },
    }
}

fn disk(site: &Site) -> Check {
    let f = &site.file;
    let max = f.alerts.disk_max_percent.get();
    let mut paths: Vec<PathBuf> = vec![site.root.clone()];
    for p in [
        site.relative(&f.backup.state_dir),
        site.relative(f.edge.web_root.get()),
        site.relative(&f.dns.state_dir),
    ]
    .into_iter()
    .flatten()
    {
        paths.push(site.host(&p));
    }
    if let Some(repo) = f.backup.repository.local_path() {
        paths.push(repo.to_path_buf());
    }
    let mut seen = BTreeSet::new();
    let mut worst: Option<(u64, String)> = None;
    let mut all = Vec::new();
    for p in paths {
        // The nearest existing directory.
        let mut at = p.as_path();
        while !at.exists() {
            at = at.parent().unwrap_or(Path::new("/"));
        }
        let Ok(st) = rustix::fs::statvfs(at) else {
            continue;
        };
        if !seen.insert(st.f_fsid) || st.f_blocks == 0 {
            continue;
        }
        let used = st.f_blocks - st.f_bfree;
        // As df counts: used / (used + available to users).
        let pct = (used * 100).div_ceil((used + st.f_bavail).max(1));
        let free_mb = st.f_bavail * st.f_frsize / 1_048_576;
        all.push(format!("{} {pct}% used ({free_mb} MiB free)", at.display()));
        if worst.as_ref().is_none_or(|(w, _)| pct > *w) {
            worst = Some((pct, at.display().to_string()));
        }
    }
    match worst {
        Some((pct, at)) if pct > max => check(
            "disk",
            Status::Fail,
            format!("{at} is {pct}% full (over {max}%): {}", all.join("; ")),
            Some(
                "free space (`journalctl --vacuum-size=100M`, `apt-get clean`, old releases in the web root's -releases directory) or grow the disk",
            ),
        ),
        Some(_) => check("disk", Status::Ok, all.join("; "), None),
        None => check(
            "disk",
            Status::Unknown,
            "statvfs failed on every path",
            None,
        ),
    }
}

fn systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn clock() -> Check {
    if !systemd() {
        return check(
            "clock",
            Status::Unknown,
            "not under systemd: clock synchronisation not checked",
            Some("run an NTP client (systemd-timesyncd, chrony)"),
        );
    }
    let mut cmd = Command::new("timedatectl");
    cmd.args(["show", "-p", "NTPSynchronized", "--value"]);
    match bounded(&mut cmd, Duration::from_secs(10), "timedatectl") {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "yes" => {
            check("clock", Status::Ok, "synchronised (NTP)", None)
        }
        Ok(out) => check(
            "clock",
            Status::Fail,
            format!(
                "not synchronised (NTPSynchronized={})",
                String::from_utf8_lossy(&out.stdout).trim()
            ),
            Some(
                "`systemctl enable --now systemd-timesyncd` and allow NTP (UDP 123) out; certificates and DNSSEC need the right time",
            ),
        ),
        Err(e) => check("clock", Status::Unknown, format!("{e:#}"), None),
    }
}

fn updates() -> Check {
    if !Path::new("/usr/bin/unattended-upgrade").exists() {
        return check(
            "updates",
            Status::Unknown,
            "unattended-upgrades is not installed: pending security updates not checked",
            Some("`apt-get install unattended-upgrades` to install security updates daily"),
        );
    }
    let mut cmd = Command::new("apt-get");
    cmd.args(["-s", "-o", "Debug::NoLocking=true", "upgrade"])
        .env("LC_ALL", "C");
    let pending = match bounded(&mut cmd, Duration::from_secs(60), "apt-get -s upgrade") {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("Inst ") && l.contains("-security"))
            .count(),
        Err(e) => return check("updates", Status::Unknown, format!("{e:#}"), None),
    };
    let reboot = Path::new("/run/reboot-required").exists();
    match (pending, reboot) {
        (0, false) => check("updates", Status::Ok, "no pending security update", None),
        (n, r) => check(
            "updates",
            Status::Warn,
            format!(
                "{n} security update(s) pending{}",
                if r { "; a reboot is required" } else { "" }
            ),
            Some(
                "unattended-upgrades installs them daily; `apt-get upgrade` now, and reboot when /run/reboot-required exists",
            ),
        ),
    }
}

async fn services(site: &Site) -> Vec<Check> {
    let report = crate::status::report(&site.file, &site.config).await;
    let mut out = Vec::new();
    for service in ["onebox-dns", "onebox-edge", "onebox-app"] {
        let down: Vec<String> = report
            .listeners
            .iter()
            .filter(|l| l.service == service && !l.up)
            .map(|l| {
                format!(
                    "{} {} ({})",
                    l.what,
                    l.address,
                    l.error.as_deref().unwrap_or("down")
                )
            })
            .chain(
                report
                    .units
                    .iter()
                    .filter(|u| u.name == format!("{service}.service") && u.state != "active")
                    .map(|u| format!("unit {}", u.state)),
            )
            .collect();
        out.push(if down.is_empty() {
            check(&format!("service.{service}"), Status::Ok, "up", None)
        } else {
            check(
                &format!("service.{service}"),
                Status::Fail,
                format!("down: {}", down.join("; ")),
                Some(&format!(
                    "`systemctl restart {service}` and read `journalctl -u {service}`"
                )),
            )
        });
    }
    out.push(match &report.database {
        crate::status::Check::Ok(s) => check("service.database", Status::Ok, s.clone(), None),
        crate::status::Check::Error(e) => check(
            "service.database",
            Status::Fail,
            e.clone(),
            Some("`systemctl restart mariadb` and read `journalctl -u mariadb`"),
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The edge's memory figures as its metrics give them.
    fn figures(used_mib: u64, budget_mib: u64, closed: u64) -> String {
        format!(
            "# HELP onebox_edge_memory_bytes The edge's anonymous resident memory.\n\
             # TYPE onebox_edge_memory_bytes gauge\n\
             onebox_edge_memory_bytes {}\n\
             onebox_edge_memory_budget_bytes {}\n\
             onebox_edge_memory_closed_connections_total {closed}\n",
            used_mib << 20,
            budget_mib << 20
        )
    }

    #[test]
    fn edge_memory_fails_over_the_budget_and_warns_near_it_or_after_closing() {
        let status = |text: &str| edge_memory_from(text).status;
        assert_eq!(status(&figures(100, 0, 0)), Status::Ok, "no budget");
        assert_eq!(status(&figures(50, 192, 0)), Status::Ok);
        assert_eq!(status(&figures(180, 192, 0)), Status::Warn);
        assert_eq!(status(&figures(50, 192, 12)), Status::Warn);
        let over = edge_memory_from(&figures(200, 192, 12));
        assert_eq!(over.status, Status::Fail);
        assert!(
            over.detail.contains("200 MiB of its 192 MiB"),
            "{}",
            over.detail
        );
        assert!(over.fix.is_some_and(|f| f.contains("max_memory_mib")));
        assert_eq!(status("onebox_edge_connections 3\n"), Status::Unknown);
    }
}
