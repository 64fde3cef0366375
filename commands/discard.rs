//! `discard`: drop the unfinished upload of a name, and what it held.
//!
//! # Format
//! Request: `{"cmd":"discard","name":N}`.
//! Reply: `{"ok":true}`: the staged bytes of N are gone, and no longer
//! count against the quota (`whoami`'s `staged`, PROTOCOL.md "Limits").
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST`, `INVALID_NAME`, `NOT_FOUND`
//! (N has no unfinished upload), `IS_A_FOLDER`, `NOT_A_FOLDER` (a parent
//! is a file), `LOCKED` (a connection is uploading N
//! right now), `INTERNAL`.

use serde::{Deserialize, Serialize};

use super::{parse, Command, Ctx};
use crate::error::Error;
use crate::names::check_path;
use crate::protocol::{Header, Reply};
use crate::storage::Kind;

/// Request fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub name: String,
}

/// The `discard` command.
pub struct Discard;

impl Command for Discard {
    fn name(&self) -> &'static str {
        "discard"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        ctx.log_name = Some(args.name.clone());
        check_path(&args.name)?;
        let user = ctx.user()?;
        let storage = &ctx.shared.disk;
        if let Kind::Folder(_) = storage.kind(&user.key, &args.name)? {
            return Err(Error::IsAFolder);
        }
        storage.discard(&user.key, &args.name)?;
        Ok(Reply::new())
    }
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::{shared, Session};
    use crate::error::ErrorCode;

    #[test]
    fn drops_an_unfinished_upload_and_only_that() {
        let (_dir, shared) = shared();
        let mut s = Session::user(&shared, "ann");
        s.fails(r#"{"cmd":"discard","name":"a"}"#, ErrorCode::NotFound);
        let (_, up) = s.run(r#"{"cmd":"put","name":"a","size":10}"#).unwrap();
        // Being uploaded: locked until the upload lets go.
        s.fails(r#"{"cmd":"discard","name":"a"}"#, ErrorCode::Locked);
        drop(up);
        s.ok(r#"{"cmd":"discard","name":"a"}"#);
        s.fails(r#"{"cmd":"discard","name":"a"}"#, ErrorCode::NotFound);
        s.fails(r#"{"cmd":"discard","name":"a//b"}"#, ErrorCode::InvalidName);
        s.fails(r#"{"cmd":"discard","name":"a/b"}"#, ErrorCode::NotFound);
        s.ok(r#"{"cmd":"mkdir","path":"d"}"#);
        s.fails(r#"{"cmd":"discard","name":"d"}"#, ErrorCode::IsAFolder);
    }
}
