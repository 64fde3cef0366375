//! `get`: resumable, verified download (PROTOCOL.md, "Download").
//!
//! # Format
//! Request: `{"cmd":"get","name":N,"offset":K}` (`offset` absent or `null`: 0).
//! Reply: `{"ok":true,"name":N,"size":S,"offset":K,"md5":D}`, D the MD5 of
//! the whole file, then the raw bytes `[K, S)`.
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST` (also `K > S`), `INVALID_NAME`,
//! `NOT_FOUND`, `IS_A_FOLDER`, `NOT_A_FOLDER` (a parent is a file),
//! `INTERNAL`.
//!
//! The digest of a file the server stored comes from its cache: the file is
//! read once, to send it.

use serde::{Deserialize, Serialize};

use super::{fields, parse, Body, Command, Ctx, Then};
use crate::error::Error;
use crate::names::check_path;
use crate::protocol::{Header, Reply};

/// Request fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub name: String,
    #[serde(default)]
    pub offset: Option<u64>,
}

/// Reply fields; the body follows.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub name: String,
    pub size: u64,
    pub offset: u64,
    pub md5: String,
}

/// The `get` command.
pub struct Get;

impl Command for Get {
    fn name(&self) -> &'static str {
        "get"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        ctx.log_name = Some(args.name.clone());
        check_path(&args.name)?;
        let user = ctx.user()?;
        let storage = &ctx.shared.disk;
        let opened = storage.open_file(&user.key, &args.name)?;
        let size = opened.size;
        let offset = args.offset.unwrap_or(0);
        if offset > size {
            return Err(Error::bad_request(format!(
                "offset {offset} is past the end ({size} bytes)"
            )));
        }
        let md5 = storage.digest(&user.key, &opened)?;
        ctx.log_bytes = size - offset;
        ctx.then = Some(Then::Send(Body {
            source: opened.source,
            mtime: opened.mtime,
            offset,
            len: size - offset,
        }));
        Ok(fields(Answer {
            name: args.name,
            size,
            offset,
            md5,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::Then;
    use crate::commands::testing::{shared, Session};
    use crate::error::ErrorCode;

    #[test]
    fn answers_the_range_and_leaves_the_body_to_send() {
        let (_dir, shared) = shared();
        let mut s = Session::user(&shared, "ann");
        s.store("a", b"hello world");
        let (reply, then) = s.run(r#"{"cmd":"get","name":"a","offset":6}"#).unwrap();
        assert_eq!(reply["size"], 11);
        assert_eq!(reply["offset"], 6);
        assert_eq!(reply["md5"], "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let Some(Then::Send(body)) = then else {
            panic!("get leaves a body to send");
        };
        assert_eq!((body.offset, body.len), (6, 5));
        let (reply, _) = s.run(r#"{"cmd":"get","name":"a","offset":null}"#).unwrap();
        assert_eq!(reply["offset"], 0);
        s.fails(
            r#"{"cmd":"get","name":"a","offset":12}"#,
            ErrorCode::BadRequest,
        );
        s.fails(
            r#"{"cmd":"get","name":"a","offset":-1}"#,
            ErrorCode::BadRequest,
        );
        s.fails(r#"{"cmd":"get","name":"b"}"#, ErrorCode::NotFound);
        s.fails(r#"{"cmd":"get","name":".."}"#, ErrorCode::InvalidName);
    }
}
