//! Value types of the site file, each validated while it is deserialized, so an error points at
//! the offending key's line and column.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, Range};
use std::time::Duration;

/// A value with the byte span of its text in the site file, for the checks that can only be
/// made later (a cross-key rule, a file that must exist on the machine). A value that was not in
/// the file (its default) has an empty span. Dereferences to the value; compares by value only.
#[derive(Clone, Default)]
pub struct At<T> {
    value: T,
    span: Range<usize>,
}

impl<T> At<T> {
    /// A value that was not read from a file (a default): its span is empty.
    pub fn new(value: T) -> Self {
        At { value, span: 0..0 }
    }

    /// Where the value's text is in the file (byte offsets); empty for a default.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Whether the value came from the file rather than from the defaults.
    pub fn is_from_file(&self) -> bool {
        !self.span.is_empty()
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The value, without its span.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for At<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: fmt::Debug> fmt::Debug for At<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<T>::deserialize(de)?;
        let span = spanned.span();
        Ok(At {
            value: spanned.into_inner(),
            span,
        })
    }
}

impl<T: Serialize> Serialize for At<T> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(ser)
    }
}

/// An integer in `MIN..=MAX`, checked when read. Counts, sizes (`_bytes`) and durations
/// (`_secs`, `_ms`) of the site file are of this type; the key's name gives the unit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// `value` if it is in range.
    pub fn new(value: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&value) {
            Ok(Bounded(value))
        } else if MAX == u64::MAX {
            Err(format!("must be at least {MIN}, not {value}"))
        } else {
            Err(format!("must be between {MIN} and {MAX}, not {value}"))
        }
    }

    /// `value` moved into range (for the built-in defaults, which are in range).
    pub const fn clamped(value: u64) -> Self {
        Bounded(if value < MIN {
            MIN
        } else if value > MAX {
            MAX
        } else {
            value
        })
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The number as a `usize` (saturating on a 32-bit machine).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// The number as a `u32` (saturating).
    pub fn as_u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// The number as a `u16` (saturating; for ports).
    pub fn as_u16(self) -> u16 {
        u16::try_from(self.0).unwrap_or(u16::MAX)
    }

    /// The number as seconds (for `_secs` keys).
    pub const fn secs(self) -> Duration {
        Duration::from_secs(self.0)
    }

    /// The number as milliseconds (for `_ms` keys).
    pub const fn millis(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Debug for Bounded<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for Bounded<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(de)?;
        let value = u64::try_from(value).map_err(|_| {
            serde::de::Error::custom(format!("must be at least {MIN}, not {value}"))
        })?;
        Bounded::new(value).map_err(serde::de::Error::custom)
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for Bounded<MIN, MAX> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        // TOML integers are signed 64-bit; every bound the site file uses fits.
        ser.serialize_i64(i64::try_from(self.0).unwrap_or(i64::MAX))
    }
}

/// A DNS domain name in the host-name syntax (letters, digits and hyphens; RFC 952/1123), in
/// ASCII (an internationalised name in its `xn--` form), lower-cased, without a trailing dot.
/// Safe to use in a file name: it has no `/`, no `..`, no spaces or control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain {
    text: String,
    name: hickory_proto::rr::Name,
}

impl Domain {
    /// Parses and normalises `text` (one trailing dot allowed; case is folded).
    pub fn parse(text: &str) -> Result<Domain, String> {
        let shown: String = text.escape_debug().collect();
        if let Some(bad) = text.chars().find(|c| !c.is_ascii()) {
            return Err(format!(
                "`{shown}` is not a domain name: `{bad}` is not ASCII (write an internationalised name in its xn-- form)"
            ));
        }
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        let lower = trimmed.to_ascii_lowercase();
        if lower.is_empty() {
            return Err("the domain name is empty".into());
        }
        if lower.len() > 253 {
            return Err(format!(
                "`{shown}` is not a domain name: longer than 253 characters"
            ));
        }
        for label in lower.split('.') {
            let problem = if label.is_empty() {
                Some("has an empty label".to_string())
            } else if label.len() > 63 {
                Some(format!("label `{label}` is longer than 63 characters"))
            } else if label.starts_with('-') || label.ends_with('-') {
                Some(format!("label `{label}` starts or ends with `-`"))
            } else {
                label
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
                    .map(|c| {
                        format!(
                            "`{}` is not allowed (letters, digits, `-` and `.` only)",
                            c.escape_debug()
                        )
                    })
            };
            if let Some(problem) = problem {
                return Err(format!("`{shown}` is not a domain name: {problem}"));
            }
        }
        let name = hickory_proto::rr::Name::from_ascii(format!("{lower}."))
            .map_err(|e| format!("`{shown}` is not a domain name: {e}"))?;
        Ok(Domain { text: lower, name })
    }

    /// The name as text: lower case, no trailing dot (`foobar.com`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name as a fully qualified DNS name (`foobar.com.`).
    pub fn name(&self) -> &hickory_proto::rr::Name {
        &self.name
    }

    /// Whether this name is `other` or below it.
    pub fn is_within(&self, other: &Domain) -> bool {
        other.name.zone_of(&self.name)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl std::str::FromStr for Domain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Domain::parse(s)
    }
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        Domain::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Domain {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&self.text)
    }
}

/// An IP address or a network in CIDR notation (`192.0.2.53`, `2001:db8::/64`), for access
/// lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressMatch(pub IpNet);

impl AddressMatch {
    /// Whether `addr` is this address or inside this network (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&addr)
    }

    /// Parses `192.0.2.53` or `192.0.2.0/24`.
    pub fn parse(text: &str) -> Result<AddressMatch, String> {
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(AddressMatch(IpNet::from(addr)));
        }
        text.parse::<IpNet>().map(AddressMatch).map_err(|_| {
            format!(
                "`{}` is not an IP address or a network like 10.0.0.0/8",
                text.escape_debug()
            )
        })
    }
}

impl fmt::Display for AddressMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            self.0.addr().fmt(f)
        } else {
            self.0.fmt(f)
        }
    }
}

impl<'de> Deserialize<'de> for AddressMatch {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        AddressMatch::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for AddressMatch {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

/// A list that must not be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct NonEmpty<T>(Vec<T>);

impl<T> NonEmpty<T> {
    /// `items`, if there is at least one.
    pub fn new(items: Vec<T>) -> Option<Self> {
        (!items.is_empty()).then_some(NonEmpty(items))
    }

    /// `first` followed by `rest`.
    pub fn of(first: T, rest: Vec<T>) -> Self {
        let mut items = Vec::with_capacity(rest.len() + 1);
        items.push(first);
        items.extend(rest);
        NonEmpty(items)
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }
}

impl<T> Deref for NonEmpty<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(de)?;
        NonEmpty::new(items).ok_or_else(|| serde::de::Error::custom("must not be empty"))
    }
}

/// A socket address on the loopback interface (for private endpoints such as metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LoopbackAddr(pub(crate) SocketAddr);

impl LoopbackAddr {
    /// `addr`, if its IP is a loopback address.
    pub fn new(addr: SocketAddr) -> Result<Self, String> {
        if addr.ip().is_loopback() {
            Ok(LoopbackAddr(addr))
        } else {
            Err(format!(
                "`{addr}` must be a loopback address (127.0.0.0/8 or ::1): this endpoint is private"
            ))
        }
    }

    /// The address.
    pub fn get(self) -> SocketAddr {
        self.0
    }
}

impl<'de> Deserialize<'de> for LoopbackAddr {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let addr = SocketAddr::deserialize(de)?;
        LoopbackAddr::new(addr).map_err(serde::de::Error::custom)
    }
}

/// An `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HttpsUrl(String);

impl HttpsUrl {
    /// Parses `text`, which must be an absolute `https://` URL with a host.
    pub fn parse(text: &str) -> Result<HttpsUrl, String> {
        let url = url::Url::parse(text)
            .map_err(|e| format!("`{}` is not a URL: {e}", text.escape_debug()))?;
        if url.scheme() != "https" {
            return Err(format!("`{text}` must be an https:// URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{text}` has no host"));
        }
        Ok(HttpsUrl(text.to_string()))
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL's host (a name or an address), lower-case.
    pub fn host(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for HttpsUrl {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        HttpsUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An e-mail address (`user@host.tld`, no spaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses `text` as an e-mail address.
    pub fn parse(text: &str) -> Result<Email, String> {
        let ok = text.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty()
                && !host.contains('@')
                && Domain::parse(host).is_ok_and(|d| d.as_str().contains('.'))
        }) && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Email(text.to_string()))
        } else {
            Err(format!(
                "`{}` is not an e-mail address",
                text.escape_debug()
            ))
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        Email::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An absolute URL path (`/healthz`): starts with `/`, no spaces or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UrlPath(pub(crate) String);

impl UrlPath {
    /// Parses `text` as an absolute path.
    pub fn parse(text: &str) -> Result<UrlPath, String> {
        if !text.starts_with('/') {
            return Err(format!("`{}` must start with `/`", text.escape_debug()));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{}` must not contain spaces or control characters",
                text.escape_debug()
            ));
        }
        Ok(UrlPath(text.to_string()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UrlPath {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        UrlPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        let d = Domain::parse("Foobar.COM.").expect("valid");
        assert_eq!(d.as_str(), "foobar.com");
        assert_eq!(d.name().to_string(), "foobar.com.");
        for bad in [
            "../../x",
            "a/b.com",
            "foo\nbar.com",
            "no spaces.com",
            "",
            ".",
            "a..b",
            "-a.com",
            "ex_ample.com",
            "bücher.de",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?} accepted");
        }
        let www = Domain::parse("www.foobar.com").expect("valid");
        assert!(www.is_within(&d));
        assert!(!d.is_within(&www));
    }

    #[test]
    fn bounded() {
        assert!(Bounded::<1, 10>::new(0).is_err());
        assert!(Bounded::<1, 10>::new(11).is_err());
        assert_eq!(Bounded::<1, 10>::new(10).map(Bounded::get), Ok(10));
        assert_eq!(Bounded::<5, 10>::clamped(1).get(), 5);
    }

    #[test]
    fn address_match() {
        let m = AddressMatch::parse("192.0.2.0/24").expect("net");
        assert!(m.matches("192.0.2.7".parse().expect("ip")));
        assert!(m.matches("::ffff:192.0.2.7".parse().expect("ip")));
        assert!(!m.matches("192.0.3.7".parse().expect("ip")));
        assert_eq!(
            AddressMatch::parse("::1").expect("ip").to_string(),
            "::1".to_string()
        );
        assert!(AddressMatch::parse("300.1.1.1").is_err());
    }

    #[test]
    fn urls_and_mail() {
        assert_eq!(
            HttpsUrl::parse("https://Acme.Example:14000/dir")
                .expect("url")
                .host(),
            "acme.example"
        );
        assert!(HttpsUrl::parse("http://x/dir").is_err());
        assert!(Email::parse("a@b.example").is_ok());
        assert!(Email::parse("a b@c.example").is_err());
        assert!(Email::parse("a@localhost").is_err());
    }
}
