//! `ls`: the user's files.
//!
//! # Format
//! Request: `{"cmd":"ls"}`.
//! Reply: `{"ok":true,"files":[{"name","size","mtime","md5"}]}`: regular
//! files only, one level, sorted by UTF-8 bytes; `md5` is `null` only for a
//! file placed by other means whose digest is not known yet.
//! Errors: `NOT_LOGGED_IN`, `INTERNAL` (also for a folder whose listing
//! would not fit in the protocol's 16 MiB response header: the session
//! refuses to send any reply that large).

use serde::{Deserialize, Serialize};

use super::{reply, Command, Ctx};
use crate::error::Error;
use crate::protocol::FileInfo;
use crate::protocol::{Header, Reply};

/// Reply fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub files: Vec<FileInfo>,
}

/// The `ls` command.
pub struct Ls;

impl Command for Ls {
    fn name(&self) -> &'static str {
        "ls"
    }

    fn run(&self, ctx: &mut Ctx<'_>, _header: &Header) -> Result<Reply, Error> {
        let user = ctx.user()?;
        let files = ctx.shared.storage.list(&user.key)?;
        Ok(reply(Answer { files }))
    }
}
