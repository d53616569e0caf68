//! Reading RFC 1035 master files, entry by entry, so that every error carries its line.
//!
//! The file is split into logical entries here (comments, quotes and parentheses handled, each
//! entry remembering the line it starts on); `$ORIGIN` and `$TTL` are applied here; each record
//! entry is then parsed by hickory-proto's master-file parser with the current origin, default
//! TTL and previous owner name supplied, so one bad entry does not hide the next.

use crate::error::ZoneError;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};
use hickory_proto::serialize::txt::Parser;
use std::path::Path;
use std::str::FromStr;

/// A record read from a zone file, with the line its entry starts on.
#[derive(Debug, Clone)]
pub struct LinedRecord {
    /// The record.
    pub record: Record,
    /// 1-based line of the entry.
    pub line: usize,
}

/// One logical entry of a master file: its text on one line, and where it started.
struct Entry {
    line: usize,
    text: String,
}

/// Reads the master file `text` (from `file`) for the zone `origin`, returning the records that
/// parsed and every error found.
pub fn parse(file: &Path, text: &str, origin: &Name) -> (Vec<LinedRecord>, Vec<ZoneError>) {
    let mut errors = Vec::new();
    let entries = split(file, text, &mut errors);
    let mut records = Vec::new();
    let mut origin = origin.clone();
    let mut default_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let mut last_owner: Option<Name> = None;

    for entry in entries {
        let err = |message: String| ZoneError::new(file, entry.line, message);
        let mut words = entry.text.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.starts_with('$') && !entry.text.starts_with(char::is_whitespace) {
            let args: Vec<&str> = words.collect();
            match first.to_ascii_uppercase().as_str() {
                "$ORIGIN" => match args.as_slice() {
                    [name] => match Name::parse(name, Some(&origin)) {
                        Ok(name) => origin = name,
                        Err(e) => errors.push(err(format!("bad $ORIGIN `{name}`: {e}"))),
                    },
                    _ => errors.push(err("$ORIGIN takes exactly one domain name".into())),
                },
                "$TTL" => match args.as_slice() {
                    [ttl] => match parse_ttl(ttl) {
                        Some(ttl) => default_ttl = Some(ttl),
                        None => errors.push(err(format!("bad $TTL `{ttl}`: not a TTL"))),
                    },
                    _ => errors.push(err("$TTL takes exactly one TTL".into())),
                },
                other => errors.push(err(format!(
                    "the {other} directive is not supported (only $ORIGIN and $TTL are)"
                ))),
            }
            continue;
        }

        let owner_omitted = entry.text.starts_with(char::is_whitespace);
        let ttl = default_ttl.or(last_ttl);
        if let Some(generic) = parse_generic(&entry.text, &origin, last_owner.as_ref(), ttl) {
            match generic {
                Ok(record) => {
                    last_owner = Some(record.name.clone());
                    if default_ttl.is_none() {
                        last_ttl = Some(record.ttl);
                    }
                    records.push(LinedRecord {
                        record,
                        line: entry.line,
                    });
                }
                Err(message) => errors.push(err(message)),
            }
            continue;
        }
        let mut input = format!("$ORIGIN {origin}\n");
        if let Some(ttl) = default_ttl.or(last_ttl) {
            input.push_str(&format!("$TTL {ttl}\n"));
        }
        if owner_omitted {
            match &last_owner {
                Some(owner) => input.push_str(&owner.to_string()),
                None => {
                    errors.push(err("the first record has no owner name".into()));
                    continue;
                }
            }
        }
        input.push_str(&entry.text);
        input.push('\n');

        let parsed = Parser::new(input, None, Some(origin.clone())).parse();
        let rrsets = match parsed {
            Ok((_, rrsets)) => rrsets,
            Err(e) => {
                errors.push(err(describe(&e.to_string(), &entry.text)));
                continue;
            }
        };
        for (_, rrset) in rrsets {
            for record in rrset.records_without_rrsigs() {
                if record.dns_class != DNSClass::IN {
                    errors.push(err(format!(
                        "class {} is not supported (only IN is)",
                        record.dns_class
                    )));
                    continue;
                }
                last_owner = Some(record.name.clone());
                if default_ttl.is_none() {
                    last_ttl = Some(record.ttl);
                }
                records.push(LinedRecord {
                    record: record.clone(),
                    line: entry.line,
                });
            }
        }
    }
    (records, errors)
}

/// Parses an entry in the RFC 3597 generic form (`TYPE65000 \# 4 0A000001`, or a known type
/// with `\#` data), which hickory's parser does not read. `None` when the entry is not generic.
fn parse_generic(
    text: &str,
    origin: &Name,
    last_owner: Option<&Name>,
    ttl: Option<u32>,
) -> Option<Result<Record, String>> {
    if text.contains('"') {
        return None;
    }
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let generic_type = |t: &str| {
        t.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("TYPE")) && t[4..].parse::<u16>().is_ok()
    };
    if !tokens.iter().any(|t| *t == "\\#" || generic_type(t)) {
        return None;
    }
    Some((|| {
        let mut rest = tokens.iter().copied();
        let owner = if text.starts_with(char::is_whitespace) {
            last_owner
                .cloned()
                .ok_or("the first record has no owner name")?
        } else {
            let owner = rest.next().unwrap_or_default();
            if owner == "@" {
                origin.clone()
            } else {
                Name::parse(owner, Some(origin))
                    .map_err(|e| format!("bad owner name `{owner}`: {e}"))?
            }
        };
        let mut ttl = ttl;
        let rtype = loop {
            let token = rest.next().ok_or("the record has no type")?;
            if let Some(t) = parse_ttl(token) {
                ttl = Some(t);
            } else if token.eq_ignore_ascii_case("IN") {
            } else if generic_type(token) {
                break RecordType::from(token[4..].parse::<u16>().unwrap_or_default());
            } else {
                break RecordType::from_str(&token.to_ascii_uppercase())
                    .map_err(|_| format!("unknown record type `{token}`"))?;
            }
        };
        let ttl = ttl.ok_or("the record has no TTL and there is no $TTL")?;
        if rest.next() != Some("\\#") {
            return Err(format!(
                "a record of type {rtype} must have its data in the RFC 3597 form `\\# LENGTH HEX`"
            ));
        }
        let length: u16 = rest
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or("`\\#` must be followed by the data length")?;
        let hex: String = rest.collect();
        if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the data after `\\# LENGTH` must be hexadecimal".into());
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
        if bytes.len() != usize::from(length) {
            return Err(format!(
                "`\\# {length}` announces {length} bytes but {} follow",
                bytes.len()
            ));
        }
        let mut decoder = BinDecoder::new(&bytes);
        let data = RData::read(&mut decoder, rtype, Restrict::new(length))
            .map_err(|e| format!("the data is not a valid {rtype} record: {e}"))?;
        if !decoder.is_empty() {
            return Err(format!("the data is longer than a {rtype} record"));
        }
        let mut name = owner;
        name.set_fqdn(true);
        Ok(Record::from_rdata(name, ttl, data))
    })())
}

/// Makes hickory's parse error message say which entry it was about when it is terse.
fn describe(message: &str, entry: &str) -> String {
    let entry = entry.trim();
    let shown: String = entry.chars().take(60).collect();
    format!("{message} (in `{shown}`)")
}

/// Splits master-file text into logical entries: comments dropped, parentheses joined onto one
/// line, blank lines skipped. Unbalanced parentheses and unterminated quotes are reported.
fn split(file: &Path, text: &str, errors: &mut Vec<ZoneError>) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut line = 1;
    let mut depth = 0usize;
    let mut paren_line = 0;
    let mut in_quote = false;
    let mut chars = text.chars();
    let finish = |current: &mut String, start: usize, entries: &mut Vec<Entry>| {
        if !current.trim().is_empty() {
            entries.push(Entry {
                line: start,
                text: std::mem::take(current),
            });
        }
        current.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    if next == '\n' {
                        line += 1;
                        current.push(' ');
                    } else {
                        current.push(next);
                    }
                }
            }
            '"' => {
                in_quote = !in_quote;
                current.push(c);
            }
            ';' if !in_quote => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        line += 1;
                        if depth == 0 {
                            finish(&mut current, start, &mut entries);
                            start = line;
                        } else {
                            current.push(' ');
                        }
                        break;
                    }
                }
            }
            '(' if !in_quote => {
                if depth == 0 {
                    paren_line = line;
                }
                depth += 1;
                current.push(' ');
            }
            ')' if !in_quote => {
                if depth == 0 {
                    errors.push(ZoneError::new(file, line, "`)` without a matching `(`"));
                } else {
                    depth -= 1;
                }
                current.push(' ');
            }
            '\n' => {
                if in_quote {
                    errors.push(ZoneError::new(file, line, "unterminated quoted string"));
                    in_quote = false;
                }
                line += 1;
                if depth == 0 {
                    finish(&mut current, start, &mut entries);
                    start = line;
                } else {
                    current.push(' ');
                }
            }
            '\r' => {}
            _ => current.push(c),
        }
    }
    if in_quote {
        errors.push(ZoneError::new(file, line, "unterminated quoted string"));
    }
    if depth > 0 {
        errors.push(ZoneError::new(
            file,
            paren_line,
            "`(` is never closed before the end of the file",
        ));
    } else {
        finish(&mut current, start, &mut entries);
    }
    entries
}

/// Parses a TTL: seconds, or BIND-style units (`1h30m`, `2d`, `1w`).
pub fn parse_ttl(text: &str) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<u32>() {
        return Some(secs);
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(d))?,
            );
            if number? > u64::from(u32::MAX) {
                return None;
            }
        } else {
            let unit = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return None,
            };
            total = total.checked_add(number.take()?.checked_mul(unit)?)?;
        }
    }
    if number.is_some() {
        return None;
    }
    u32::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600"), Some(3600));
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("1W"), Some(604_800));
        assert_eq!(parse_ttl("1x"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("1h30"), None);
    }

    #[test]
    fn every_bad_line_is_reported() {
        let origin = Name::from_ascii("example.").expect("name");
        let text = "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\n  IN NS ns\nbad IN A 1.2.3\nns IN A 1.2.3.4\nx IN FOO y\n";
        let (records, errors) = parse(Path::new("z"), text, &origin);
        assert_eq!(records.len(), 3, "{errors:?}");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 6], "{errors:?}");
    }

    #[test]
    fn parentheses_keep_the_first_line() {
        let origin = Name::from_ascii("example.").expect("name");
        let text = "@ 60 IN SOA ns hm (\n 1 ; serial\n 2 3 4 5 )\n( oops\n";
        let (records, errors) = parse(Path::new("z"), text, &origin);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].line, 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 4);
    }
}
