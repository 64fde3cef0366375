//! Responses: the status for each error code, the headers every response
//! carries (a strict Content-Security-Policy among them), and the bytes of
//! a response head.

use serde_json::{json, Value};

use crate::error::{Error, ErrorCode};

/// The policy of every response: this origin only, no inline script.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// A response whose body is in memory.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &Value) -> Response {
        Response::raw_json(status, value.to_string().into_bytes())
    }

    /// A response whose body is JSON text already.
    pub fn raw_json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", "application/json; charset=utf-8".into()),
                ("Cache-Control", "no-store".into()),
            ],
            body,
        }
    }

    /// The response for `error`: its status and `{"error": CODE, "message": ...}`.
    pub fn error(error: &Error) -> Response {
        let r = Response::code(
            status_of(error.code()),
            error.code(),
            &error.public_message(),
        );
        match error {
            Error::Busy(_) => r.with("Retry-After", "5"),
            Error::RateLimited(secs) | Error::LoginsTooFast(secs) => {
                r.with("Retry-After", secs.to_string())
            }
            _ => r,
        }
    }

    /// An error response with an explicit status.
    pub fn code(status: u16, code: ErrorCode, message: &str) -> Response {
        Response::json(status, &json!({"error": code.as_str(), "message": message}))
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The whole response, head and body.
    pub fn to_bytes(&self, close: bool) -> Vec<u8> {
        let mut out = head(self.status, &self.headers, self.body.len() as u64, close);
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response head with the common headers and `Content-Length: len`.
pub fn head(status: u16, headers: &[(&'static str, String)], len: u64, close: bool) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str("Content-Security-Policy: ");
    h.push_str(CSP);
    h.push_str(
        "\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         X-Frame-Options: DENY\r\nCross-Origin-Opener-Policy: same-origin\r\n\
         Cross-Origin-Resource-Policy: same-origin\r\n",
    );
    h.push_str(&format!("Content-Length: {len}\r\n"));
    if close {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// What the event loop answers an HTTP connection it refuses.
pub fn refusal(code: ErrorCode, why: &str) -> Vec<u8> {
    let status = match code {
        ErrorCode::TlsRequired => 403,
        c => status_of(c),
    };
    let r = Response::code(status, code, why);
    let r = if code == ErrorCode::Busy {
        r.with("Retry-After", "5")
    } else {
        r
    };
    r.to_bytes(true)
}

/// A 301 to the same page over `https://`, for a plain HTTP request
/// `head` (its whole header) from a peer that must use TLS; `None` if it
/// names no host that is only letters, digits, `.`, `-`, `:`, `[` and `]`
/// (nothing could smuggle another header or another place in), or its
/// target is not a path.
pub fn to_https(head: &[u8]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; super::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)?;
    let host = std::str::from_utf8(host).ok()?.trim();
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    let path = req
        .path
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))?;
    if !host_ok || path.bytes().any(|b| !b.is_ascii_graphic()) {
        return None;
    }
    let location = format!("https://{host}{path}");
    let r = Response::code(301, ErrorCode::TlsRequired, &format!("use {location}"))
        .with("Location", location);
    Some(r.to_bytes(true))
}

/// The HTTP status of each protocol error code (docs/HTTP.md).
pub fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::BadFrame
        | ErrorCode::BadRequest
        | ErrorCode::InvalidName
        | ErrorCode::WeakPassword => 400,
        ErrorCode::NotLoggedIn | ErrorCode::AuthFailed => 401,
        ErrorCode::TlsRequired | ErrorCode::RegistrationClosed => 403,
        ErrorCode::NotFound | ErrorCode::UnknownCommand => 404,
        ErrorCode::Timeout => 408,
        ErrorCode::UserExists
        | ErrorCode::Exists
        | ErrorCode::NotAFolder
        | ErrorCode::IsAFolder
        | ErrorCode::NotEmpty => 409,
        ErrorCode::ChecksumMismatch => 422,
        ErrorCode::Locked => 423,
        ErrorCode::RateLimited => 429,
        ErrorCode::Internal => 500,
        ErrorCode::Busy => 503,
        ErrorCode::QuotaExceeded => 507,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Content",
        423 => "Locked",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_an_error_status() {
        for c in ErrorCode::ALL {
            assert!((400..600).contains(&status_of(c)), "{c}");
        }
    }

    #[test]
    fn errors_carry_their_code_and_the_security_headers() {
        let bytes = Response::error(&Error::NotFound).to_bytes(false);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("X-Content-Type-Options: nosniff\r\n"));
        assert!(text.contains("default-src 'self'"));
        assert!(text.ends_with(r#"{"error":"NOT_FOUND","message":"no such file or folder"}"#));
    }
}
