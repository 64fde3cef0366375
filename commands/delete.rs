//! `delete`: remove a file or a folder.
//!
//! # Format
//! Request: `{"cmd":"delete","name":PATH,"recursive":R}`.
//! Reply: `{"ok":true}`. An empty folder is removed; a full one only with
//! `"recursive": true`, all at once for readers (its unfinished uploads
//! are discarded too).
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST`, `INVALID_NAME`, `NOT_FOUND`,
//! `NOT_A_FOLDER` (a parent is a file), `NOT_EMPTY`, `LOCKED` (a file
//! under the folder is being uploaded), `INTERNAL`.

use serde::{Deserialize, Serialize};

use super::{parse, Command, Ctx};
use crate::error::Error;
use crate::names::check_path;
use crate::protocol::{Header, Reply};

/// Request fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub name: String,
    /// A folder with all it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
}

/// The `delete` command.
pub struct Delete;

impl Command for Delete {
    fn name(&self) -> &'static str {
        "delete"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        ctx.log_name = Some(args.name.clone());
        check_path(&args.name)?;
        let user = ctx.user()?;
        let recursive = args.recursive.unwrap_or(false);
        ctx.unlocked(&user, &args.name, true)?;
        ctx.shared.disk.delete(&user.key, &args.name, recursive)?;
        ctx.shared.locks.forget(&user.key, &args.name);
        Ok(Reply::new())
    }
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::{shared, Session};
    use crate::error::ErrorCode;

    #[test]
    fn deletes_a_file_and_refuses_what_is_not_there() {
        let (_dir, shared) = shared();
        let mut s = Session::user(&shared, "ann");
        s.store("a.txt", b"hello");
        s.ok(r#"{"cmd":"delete","name":"a.txt"}"#);
        s.fails(r#"{"cmd":"delete","name":"a.txt"}"#, ErrorCode::NotFound);
        s.fails(r#"{"cmd":"delete","name":"../x"}"#, ErrorCode::InvalidName);
        s.fails(
            r#"{"cmd":"delete","name":".hidden"}"#,
            ErrorCode::InvalidName,
        );
        s.fails(r#"{"cmd":"delete"}"#, ErrorCode::BadRequest);
        s.fails(r#"{"cmd":"delete","name":5}"#, ErrorCode::BadRequest);
        let mut anon = Session::anonymous(&shared);
        anon.fails(r#"{"cmd":"delete","name":"a.txt"}"#, ErrorCode::NotLoggedIn);
    }
}
