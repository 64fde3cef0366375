//! `whoami`: who this session is and what it uses.
//!
//! # Format
//! Request: `{"cmd":"whoami"}`.
//! Reply: `{"ok":true,"user":NAME,"files":COUNT,"used":BYTES,"staged":BYTES,
//! "quota":BYTES|null}`: `used` sums the visible files, `staged` the bytes
//! held by the user's unfinished uploads (see `discard`).
//! Errors: `NOT_LOGGED_IN`, `INTERNAL`.

use serde::{Deserialize, Serialize};

use super::{fields, Command, Ctx};
use crate::error::Error;
use crate::protocol::{Header, Reply};

/// Reply fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub user: String,
    pub files: u64,
    pub used: u64,
    /// Bytes held by unfinished uploads. A server that predates it sends
    /// none: 0.
    #[serde(default)]
    pub staged: u64,
    pub quota: Option<u64>,
}

/// The `whoami` command.
pub struct Whoami;

impl Command for Whoami {
    fn name(&self) -> &'static str {
        "whoami"
    }

    fn run(&self, ctx: &mut Ctx<'_>, _header: &Header) -> Result<Reply, Error> {
        let user = ctx.user()?;
        let (files, used) = ctx.shared.disk.usage(&user.key)?;
        Ok(fields(Answer {
            user: user.name.clone(),
            files,
            used,
            staged: ctx.shared.disk.staged_bytes(&user.key),
            quota: ctx.quota(&user),
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::{shared_with, Session};
    use crate::error::ErrorCode;

    #[test]
    fn counts_files_bytes_staged_and_the_quota() {
        let (_dir, shared) = shared_with(|c| c.quota = Some(1000));
        let mut s = Session::user(&shared, "Ann");
        s.store("a", b"12345");
        // An upload begun and left: its bytes are staged, not used.
        s.run(r#"{"cmd":"put","name":"b","size":10}"#).unwrap();
        let r = s.ok(r#"{"cmd":"whoami"}"#);
        assert_eq!(r["user"], "Ann");
        assert_eq!(r["files"], 1);
        assert_eq!(r["used"], 5);
        assert_eq!(r["staged"], 0);
        assert_eq!(r["quota"], 1000);
        Session::anonymous(&shared).fails(r#"{"cmd":"whoami"}"#, ErrorCode::NotLoggedIn);
    }
}
