//! `ping`: check that the server answers, and which version it runs.
//!
//! # Format
//! Request: `{"cmd":"ping"}` or `{"cmd":"ping","message":TEXT}`, TEXT at
//! most [`MAX_MESSAGE`] bytes of UTF-8 (absent or `null`: no message).
//! Reply: `{"ok":true,"message":TEXT,"version":V}`, `message` the same
//! string and absent when none was sent, `version` the server's version.
//! Allowed anonymously.
//! Errors: `BAD_REQUEST` (`message` not a string, or too long).

use serde::{Deserialize, Serialize};

use super::{fields, parse, Command, Ctx};
use crate::error::Error;
use crate::protocol::{Header, Reply};

/// The longest `message`, in bytes (PROTOCOL.md).
pub const MAX_MESSAGE: usize = 1024;

/// Request fields.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Args {
    /// Text to echo; `None` when absent or `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Reply fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    /// The request's `message`; absent when it had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The server's version (`CARGO_PKG_VERSION`).
    pub version: String,
}

/// The `ping` command.
pub struct Ping;

impl Command for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn requires_auth(&self) -> bool {
        false
    }

    fn run(&self, _ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        answer(args).map(fields)
    }
}

/// The reply to `args`.
fn answer(args: Args) -> Result<Answer, Error> {
    if args.message.as_ref().is_some_and(|m| m.len() > MAX_MESSAGE) {
        return Err(Error::bad_request(format!(
            "message is longer than {MAX_MESSAGE} bytes"
        )));
    }
    Ok(Answer {
        message: args.message,
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(json: &str) -> Result<Args, Error> {
        let h: Header = serde_json::from_str(json).unwrap();
        parse(&h)
    }

    #[test]
    fn echoes_the_message_and_names_the_version() {
        let a = answer(args(r#"{"cmd":"ping","message":"hi 报告"}"#).unwrap()).unwrap();
        assert_eq!(a.message.as_deref(), Some("hi 报告"));
        assert_eq!(a.version, env!("CARGO_PKG_VERSION"));
        let r = fields(a);
        assert_eq!(r["message"], "hi 报告");
    }

    #[test]
    fn no_message_means_none_in_the_reply() {
        for json in [r#"{"cmd":"ping"}"#, r#"{"cmd":"ping","message":null}"#] {
            let r = fields(answer(args(json).unwrap()).unwrap());
            assert!(!r.contains_key("message"), "{json}: {r:?}");
            assert!(r["version"].is_string());
        }
    }

    #[test]
    fn long_or_ill_typed_messages_are_bad_requests() {
        let exact = "é".repeat(MAX_MESSAGE / 2);
        assert!(answer(Args {
            message: Some(exact.clone())
        })
        .is_ok());
        let long = exact + "x";
        assert!(matches!(
            answer(Args {
                message: Some(long)
            }),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            args(r#"{"cmd":"ping","message":5}"#),
            Err(Error::BadRequest(_))
        ));
    }
}
