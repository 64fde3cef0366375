//! `quit`: end the session.
//!
//! # Format
//! Request: `{"cmd":"quit"}`.
//! Reply: `{"ok":true}`, then the server closes the connection.

use super::{Command, Ctx};
use crate::error::Error;
use crate::protocol::{Header, Reply};

/// The `quit` command.
pub struct Quit;

impl Command for Quit {
    fn name(&self) -> &'static str {
        "quit"
    }

    fn requires_auth(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut Ctx<'_>, _header: &Header) -> Result<Reply, Error> {
        ctx.close = true;
        Ok(Reply::new())
    }
}
