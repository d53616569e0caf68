//! Request hygiene: header size and count (431), body size (413), request smuggling (400).

use crate::config::LimitsConfig;
use pingora::http::RequestHeader;

/// Why a request is refused before anything else happens.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 431: too many header fields or too many header bytes.
    HeadersTooLarge,
    /// 413: the declared body is larger than the limit.
    BodyTooLarge,
    /// 400: `Content-Length` together with `Transfer-Encoding`, or several differing
    /// `Content-Length`s (request smuggling).
    Smuggling,
}

impl Refusal {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::HeadersTooLarge => 431,
            Refusal::BodyTooLarge => 413,
            Refusal::Smuggling => 400,
        }
    }
}

/// Checks a request. `raw` is the HTTP/1 header block as received (pingora drops
/// `Content-Length` when `Transfer-Encoding` is present, so smuggling is detected on the raw
/// bytes); it is `None` for HTTP/2, whose framing cannot be smuggled this way.
pub fn check(
    req: &RequestHeader,
    raw: Option<&[u8]>,
    limits: &LimitsConfig,
) -> Result<(), Refusal> {
    let count = req.headers.len();
    let bytes = match raw {
        Some(raw) => raw.len(),
        None => {
            req.headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>()
                + req.uri.to_string().len()
        }
    };
    if count > limits.max_headers.as_usize() || bytes > limits.max_header_bytes.as_usize() {
        return Err(Refusal::HeadersTooLarge);
    }
    if let Some(raw) = raw {
        let mut lengths = Vec::new();
        let mut te = false;
        for line in raw.split(|&b| b == b'\n').skip(1) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = line[..colon].trim_ascii();
            let value = line[colon + 1..].trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                lengths.push(value.to_vec());
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te = true;
            }
        }
        lengths.dedup();
        if (te && !lengths.is_empty()) || lengths.len() > 1 {
            return Err(Refusal::Smuggling);
        }
    }
    if let Some(len) = req.headers.get(http::header::CONTENT_LENGTH) {
        match len.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(n) if n > limits.max_body_bytes.get() => return Err(Refusal::BodyTooLarge),
            Some(_) => {}
            None => return Err(Refusal::Smuggling),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).expect("req");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("hdr");
        }
        r
    }

    #[test]
    fn smuggling_and_sizes() {
        let limits = LimitsConfig::default();
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            check(&req(&[("Host", "a")]), Some(raw), &limits),
            Err(Refusal::Smuggling)
        );
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n";
        assert_eq!(
            check(&req(&[("Host", "a")]), Some(raw), &limits),
            Err(Refusal::Smuggling)
        );
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            check(
                &req(&[("Host", "a"), ("Content-Length", "5")]),
                Some(raw),
                &limits
            ),
            Ok(())
        );
        let big = (limits.max_body_bytes.get() + 1).to_string();
        assert_eq!(
            check(&req(&[("Content-Length", &big)]), None, &limits),
            Err(Refusal::BodyTooLarge)
        );
        let many: Vec<(String, String)> = (0..=limits.max_headers.as_usize())
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(
            check(&req(&many), None, &limits),
            Err(Refusal::HeadersTooLarge)
        );
    }
}
