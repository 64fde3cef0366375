//! One request to the store: sent, retried while its fault may pass, and
//! its answer or fault made into an [`Error`] that names the operation, the
//! key, the status and the store, never a credential or a signed URL.

use std::io::{self, Read};

use super::retry::{transient_status, transient_transport, Attempt};
use super::S3;
use crate::error::Error;

/// The most of an answer's body read for its error code or XML.
const MAX_ANSWER: u64 = 1 << 20;

impl S3 {
    /// Sends the request `make` builds (signed anew each time) until an
    /// answer that is not a passing fault, and hands it to `answered`.
    pub(super) fn call<T>(
        &self,
        op: &str,
        key: &str,
        body: Option<&[u8]>,
        make: impl Fn() -> ureq::Request,
        answered: impl Fn(u16, ureq::Response) -> Attempt<T>,
    ) -> Result<T, Error> {
        self.backoff.run(|| {
            let request = make();
            let sent = match body {
                Some(bytes) => request.send_bytes(bytes),
                None => request.call(),
            };
            match sent {
                Ok(answer) => answered(answer.status(), answer),
                Err(ureq::Error::Status(status, answer)) if transient_status(status) => {
                    Attempt::Again(self.refused(op, key, status, answer))
                }
                Err(ureq::Error::Status(status, answer)) => answered(status, answer),
                Err(ureq::Error::Transport(t)) => {
                    let e = self.fault(op, key, transport_detail(&t));
                    if transient_transport(t.kind()) {
                        Attempt::Again(e)
                    } else {
                        Attempt::Fail(e)
                    }
                }
            }
        })
    }

    pub(super) fn expect_2xx(
        &self,
        op: &str,
        key: &str,
        status: u16,
        answer: ureq::Response,
    ) -> Attempt<()> {
        if (200..300).contains(&status) {
            Attempt::Done(())
        } else {
            Attempt::Fail(self.refused(op, key, status, answer))
        }
    }

    /// An error answer as an error: its status, S3 code and message.
    pub(super) fn refused(
        &self,
        op: &str,
        key: &str,
        status: u16,
        answer: ureq::Response,
    ) -> Error {
        let code = read_answer(answer).ok().and_then(|xml| error_code(&xml));
        if status == 404 && code.as_ref().is_some_and(|(c, _)| c == "NoSuchKey") {
            return Error::NotFound;
        }
        let detail = match code {
            Some((code, message)) if !message.is_empty() => format!("{status} {code}: {message}"),
            Some((code, _)) => format!("{status} {code}"),
            None => format!("status {status}"),
        };
        self.fault(op, key, detail)
    }

    pub(super) fn fault(&self, op: &str, key: &str, detail: String) -> Error {
        let key = if key.is_empty() {
            String::new()
        } else {
            format!(" {key}")
        };
        Error::Internal(format!("S3 {op}{key}: {detail} ({})", self.place))
    }
}

/// A connection fault, without the (signed) URL ureq's `Display` shows.
fn transport_detail(t: &ureq::Transport) -> String {
    let mut detail = t.kind().to_string();
    if let Some(message) = t.message() {
        detail.push_str(": ");
        detail.push_str(message);
    }
    if let Some(source) = std::error::Error::source(t) {
        detail.push_str(": ");
        detail.push_str(&source.to_string());
    }
    detail
}

pub(super) fn read_answer(answer: ureq::Response) -> io::Result<String> {
    let mut text = String::new();
    answer
        .into_reader()
        .take(MAX_ANSWER)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The `Code` and `Message` of an S3 `<Error>` document.
pub(super) fn error_code(xml: &str) -> Option<(String, String)> {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find(&format!("</{name}>"))? + start;
        Some(xml[start..end].trim().to_string())
    };
    if !xml.contains("<Error") {
        return None;
    }
    Some((element("Code")?, element("Message").unwrap_or_default()))
}

pub(super) fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
