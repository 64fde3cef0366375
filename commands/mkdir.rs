//! `mkdir`: make a folder, with any missing parents (PROTOCOL.md,
//! "Folders").
//!
//! # Format
//! Request: `{"cmd":"mkdir","path":P}`.
//! Reply: `{"ok":true}`: the folder exists, and so do its parents.
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST`, `INVALID_NAME`, `EXISTS` (P is
//! already a folder or a file), `NOT_A_FOLDER` (a parent is a file),
//! `INTERNAL`.

use serde::{Deserialize, Serialize};

use super::{parse, Command, Ctx};
use crate::error::Error;
use crate::names::check_path;
use crate::protocol::{Header, Reply};

/// Request fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub path: String,
}

/// The `mkdir` command.
pub struct Mkdir;

impl Command for Mkdir {
    fn name(&self) -> &'static str {
        "mkdir"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        ctx.log_name = Some(args.path.clone());
        check_path(&args.path)?;
        let user = ctx.user()?;
        ctx.unlocked(&user, &args.path, false)?;
        ctx.shared.disk.mkdir(&user.key, &args.path)?;
        Ok(Reply::new())
    }
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::{shared, Session};
    use crate::error::ErrorCode;

    #[test]
    fn makes_parents_and_refuses_what_exists() {
        let (_dir, shared) = shared();
        let mut s = Session::user(&shared, "ann");
        s.ok(r#"{"cmd":"mkdir","path":"报告/2024"}"#);
        s.fails(r#"{"cmd":"mkdir","path":"报告/2024"}"#, ErrorCode::Exists);
        s.fails(r#"{"cmd":"mkdir","path":"报告"}"#, ErrorCode::Exists);
        s.store("f", b"x");
        s.fails(r#"{"cmd":"mkdir","path":"f"}"#, ErrorCode::Exists);
        s.fails(r#"{"cmd":"mkdir","path":"f/g"}"#, ErrorCode::NotAFolder);
        s.fails(r#"{"cmd":"mkdir","path":"a/../b"}"#, ErrorCode::InvalidName);
        s.fails(r#"{"cmd":"mkdir","path":"/a"}"#, ErrorCode::InvalidName);
        s.fails(r#"{"cmd":"mkdir"}"#, ErrorCode::BadRequest);
        Session::anonymous(&shared).fails(r#"{"cmd":"mkdir","path":"x"}"#, ErrorCode::NotLoggedIn);
    }
}
