//! `rename`: move a file or a folder (with all it holds) to another path,
//! in one step; MD5s move with the files.
//!
//! # Format
//! Request: `{"cmd":"rename","from":A,"to":B}`.
//! Reply: `{"ok":true}`.
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST` (also a folder moved into
//! itself or below itself), `INVALID_NAME`, `NOT_FOUND` (`from`, or the
//! parent of `to`), `NOT_A_FOLDER` (a parent is a file), `EXISTS` (`to`),
//! `LOCKED` (a file it would move is being uploaded), `INTERNAL`.

use serde::{Deserialize, Serialize};

use super::{parse, Command, Ctx};
use crate::error::Error;
use crate::names::check_path;
use crate::protocol::{Header, Reply};

/// Request fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub from: String,
    pub to: String,
}

/// The `rename` command.
pub struct Rename;

impl Command for Rename {
    fn name(&self) -> &'static str {
        "rename"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        ctx.log_name = Some(format!("{} -> {}", args.from, args.to));
        check_path(&args.from)?;
        check_path(&args.to)?;
        let user = ctx.user()?;
        ctx.unlocked(&user, &args.from, true)?;
        ctx.unlocked(&user, &args.to, true)?;
        ctx.shared.disk.rename(&user.key, &args.from, &args.to)?;
        ctx.shared.locks.forget(&user.key, &args.from);
        Ok(Reply::new())
    }
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::{shared, Session};
    use crate::error::ErrorCode;

    #[test]
    fn renames_and_never_replaces() {
        let (_dir, shared) = shared();
        let mut s = Session::user(&shared, "ann");
        s.store("a", b"one");
        s.store("b", b"two");
        s.fails(r#"{"cmd":"rename","from":"a","to":"b"}"#, ErrorCode::Exists);
        s.ok(r#"{"cmd":"rename","from":"a","to":"报告 😀"}"#);
        s.fails(
            r#"{"cmd":"rename","from":"a","to":"c"}"#,
            ErrorCode::NotFound,
        );
        s.fails(
            r#"{"cmd":"rename","from":"b","to":"x/y"}"#,
            ErrorCode::NotFound,
        );
        s.fails(
            r#"{"cmd":"rename","from":"b","to":"x//y"}"#,
            ErrorCode::InvalidName,
        );
        s.fails(r#"{"cmd":"rename","from":"b"}"#, ErrorCode::BadRequest);
        let names: Vec<_> = shared.disk.list(&s.user.clone().unwrap().key).unwrap();
        let names: Vec<_> = names.into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["b", "报告 😀"]);
    }
}
