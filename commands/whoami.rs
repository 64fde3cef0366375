//! `whoami`: who this session is and what it uses.
//!
//! # Format
//! Request: `{"cmd":"whoami"}`.
//! Reply: `{"ok":true,"user":NAME,"files":COUNT,"used":BYTES,"quota":BYTES|null}`.
//! Errors: `NOT_LOGGED_IN`, `INTERNAL`.

use serde::{Deserialize, Serialize};

use super::{reply, Command, Ctx};
use crate::error::Error;
use crate::protocol::{Header, Reply};

/// Reply fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub user: String,
    pub files: u64,
    pub used: u64,
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
        let (files, used) = ctx.shared.storage.usage(&user.key)?;
        Ok(reply(Answer {
            user: user.name.clone(),
            files,
            used,
            quota: ctx.quota(&user),
        }))
    }
}
