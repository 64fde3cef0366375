//! `discard`: drop the unfinished upload of a name, and what it held.
//!
//! # Format
//! Request: `{"cmd":"discard","name":N}`.
//! Reply: `{"ok":true}`: the staged bytes of N are gone, and no longer
//! count against the quota (`whoami`'s `staged`, PROTOCOL.md "Limits").
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST`, `INVALID_NAME`, `NOT_FOUND`
//! (N has no unfinished upload), `LOCKED` (a connection is uploading N
//! right now), `INTERNAL`.

use super::delete::Args;
use super::{parse, Command, Ctx};
use crate::error::Error;
use crate::names::check_file_name;
use crate::protocol::{Header, Reply};

/// The `discard` command.
pub struct Discard;

impl Command for Discard {
    fn name(&self) -> &'static str {
        "discard"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        ctx.log_name = Some(args.name.clone());
        check_file_name(&args.name)?;
        let user = ctx.user()?;
        ctx.shared.storage.discard(&user.key, &args.name)?;
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
        s.fails(r#"{"cmd":"discard","name":"a/b"}"#, ErrorCode::InvalidName);
    }
}
