//! One request head, parsed by `httparse`, with the few questions the
//! API asks of it.

use percent_encoding::percent_decode_str;

use super::MAX_HEADERS;
use crate::error::Error;

/// A parsed request head.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path, still percent-encoded, without the query.
    pub path: String,
    /// The query string after `?`, still percent-encoded.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header names in lowercase, values as sent.
    pub headers: Vec<(String, String)>,
}

/// What a head with more than [`MAX_HEADERS`] fields is told (with 431).
pub const TOO_MANY_HEADERS: &str = "too many request headers";

/// The status for a head [`Request::parse`] refused: 431 when it is too
/// large (too long, or too many fields), else 400.
pub fn refusal_status(e: &Error, buffered: usize) -> u16 {
    let too_many = matches!(e, Error::BadRequest(m) if m == TOO_MANY_HEADERS);
    if too_many || buffered >= super::MAX_HEAD {
        431
    } else {
        400
    }
}

impl Request {
    /// Parses the head at the start of `bytes`: the request and the length
    /// of its head, or `None` if it is not whole yet.
    ///
    /// # Errors
    /// `BAD_REQUEST` for anything that is not an HTTP/1.x head.
    pub fn parse(bytes: &[u8]) -> Result<Option<(Request, usize)>, Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if bytes.len() >= super::MAX_HEAD => {
                return Err(Error::bad_request("the request head is too long"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Error::bad_request(TOO_MANY_HEADERS))
            }
            Err(e) => return Err(Error::bad_request(format!("not an HTTP request: {e}"))),
        };
        if len > super::MAX_HEAD {
            return Err(Error::bad_request("the request head is too long"));
        }
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            return Err(Error::bad_request("incomplete request line"));
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut fields = Vec::with_capacity(req.headers.len());
        for h in req.headers.iter() {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| Error::bad_request(format!("header {} is not UTF-8", h.name)))?;
            fields.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Ok(Some((
            Request {
                method: method.to_string(),
                path: path.to_string(),
                query: query.to_string(),
                version,
                headers: fields,
            },
            len,
        )))
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the reply.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        let has = |t: &str| {
            connection
                .as_deref()
                .is_some_and(|c| c.split(',').any(|x| x.trim() == t))
        };
        if self.version == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    /// The declared body length (0 without one).
    ///
    /// # Errors
    /// `BAD_REQUEST` for a chunked body (not taken) or a malformed or
    /// repeated `Content-Length`.
    pub fn content_length(&self) -> Result<u64, Error> {
        if self.header("transfer-encoding").is_some() {
            return Err(Error::bad_request(
                "chunked request bodies are not taken; send Content-Length",
            ));
        }
        let mut lens = self.headers.iter().filter(|(n, _)| n == "content-length");
        match (lens.next(), lens.next()) {
            (None, _) => Ok(0),
            (Some((_, v)), None) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
                .parse()
                .map_err(|_| Error::bad_request("Content-Length is too large")),
            _ => Err(Error::bad_request("bad Content-Length")),
        }
    }

    /// The value of cookie `name`, if sent.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Query parameter `key`, percent-decoded once.
    ///
    /// # Errors
    /// `BAD_REQUEST` if its value is not UTF-8 once decoded.
    pub fn param(&self, key: &str) -> Result<Option<String>, Error> {
        for pair in self.query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == key {
                return percent_decode_str(v)
                    .decode_utf8()
                    .map(|s| Some(s.into_owned()))
                    .map_err(|_| Error::bad_request(format!("{key} is not UTF-8")));
            }
        }
        Ok(None)
    }

    /// Query parameter `key` as a number, if present.
    ///
    /// # Errors
    /// `BAD_REQUEST` if it is not a whole number.
    pub fn number(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.param(key)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::bad_request(format!("{key} must be a whole number"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Request {
        Request::parse(head.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn heads_parse_into_their_parts() {
        let r = parse(
            "PUT /api/uploads/a%20b?size=10&offset=0 HTTP/1.1\r\nHost: x\r\n\
             Cookie: a=1; netdisk_session=abc\r\nContent-Length: 10\r\n\r\n",
        );
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path, "/api/uploads/a%20b");
        assert_eq!(r.number("size").unwrap(), Some(10));
        assert_eq!(r.number("md5").unwrap(), None);
        assert_eq!(r.cookie("netdisk_session"), Some("abc"));
        assert_eq!(r.content_length().unwrap(), 10);
        assert!(r.keep_alive());
    }

    #[test]
    fn bodies_must_have_one_plain_length() {
        let chunked = parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(chunked.content_length().is_err());
        let twice = parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n");
        assert!(twice.content_length().is_err());
        let signed = parse("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n");
        assert!(signed.content_length().is_err());
        let old = parse("GET / HTTP/1.0\r\n\r\n");
        assert!(!old.keep_alive());
        assert!(Request::parse(b"\x01\x02 nonsense\r\n\r\n").is_err());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        let e = Request::parse(head.as_bytes()).unwrap_err();
        assert_eq!(refusal_status(&e, head.len()), 431, "{e}");
        let e = Request::parse(b"\x01\x02 nonsense\r\n\r\n").unwrap_err();
        assert_eq!(refusal_status(&e, 20), 400);
    }
}
