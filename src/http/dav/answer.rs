//! The responses WebDAV methods give: plain-text errors with the status
//! WebDAV gives each error, empty answers and XML.

use super::Fail;
use crate::error::{Error, ErrorCode};
use crate::http::response::Response;

/// The WebDAV status of an error.
fn status_of(e: &Error) -> u16 {
    match e.code() {
        ErrorCode::Exists | ErrorCode::IsAFolder => 405,
        ErrorCode::ChecksumMismatch => 400,
        code => crate::http::response::status_of(code),
    }
}

/// A plain-text error response, with the headers its status calls for.
pub(super) fn error_response(e: &Error) -> Response {
    let r = text(status_of(e), &e.public_message());
    match e {
        Error::NotLoggedIn | Error::AuthFailed => {
            r.with("WWW-Authenticate", super::auth::CHALLENGE)
        }
        Error::Busy(_) => r.with("Retry-After", "5"),
        Error::RateLimited(secs) | Error::LoginsTooFast(secs) => {
            r.with("Retry-After", secs.to_string())
        }
        _ => r,
    }
}

/// A plain-text response.
pub(super) fn text(status: u16, message: &str) -> Response {
    Response {
        status,
        headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
        body: format!("{message}\n").into_bytes(),
    }
}

/// A response with no body.
pub(super) fn empty(status: u16) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// An XML response (`207 Multi-Status`, a `LOCK` answer).
pub(super) fn xml_response(status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![("Content-Type", "application/xml; charset=utf-8".into())],
        body: body.into_bytes(),
    }
}

/// A failure with a status of its own.
pub(super) fn refuse(status: u16, message: &str) -> Fail {
    Fail::Reply(text(status, message), false)
}
